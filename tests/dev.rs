//! `showroom dev`, the README's first command: it starts, writes dev.json, serves the
//! API with the printed tokens, and `kubectl get demos` works against its kubeconfig.

mod common;

use common::eventually;
use common::harness::http;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn showroom_dev_serves_the_api_and_kubectl_sees_demos() {
    let state = std::env::temp_dir().join(format!("showroom-dev-test-{}", uuid::Uuid::new_v4()));
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_showroom"))
            .args(["dev", "--port", "0", "--boot-delay", "300ms", "--state-dir"])
            .arg(&state)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let dev_json = state.join("dev.json");
    let info: serde_json::Value =
        eventually(Duration::from_secs(30), "dev.json written", || async {
            std::fs::read_to_string(&dev_json)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
        })
        .await;
    let url = info["url"].as_str().unwrap().to_string();
    let sales = info["salesToken"].as_str().unwrap().to_string();
    assert!(
        info["adminToken"].is_string() && info["kubeconfig"].is_string(),
        "{info}"
    );
    let (code, t) = http(
        "GET",
        &format!("{url}/api/v1/templates"),
        Some(&sales),
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert!(t.to_string().contains("web-shop"), "{t}");
    let (code, d) = http(
        "POST",
        &format!("{url}/api/v1/demos"),
        Some(&sales),
        Some(r#"{"template": "web-shop"}"#),
    )
    .await;
    assert_eq!(code, 202, "{d}");
    let name = d["name"].as_str().unwrap().to_string();
    eventually(
        Duration::from_secs(30),
        "Ready within the boot delay plus a few seconds",
        || async {
            let (_, v) = http(
                "GET",
                &format!("{url}/api/v1/demos/{name}"),
                Some(&sales),
                None,
            )
            .await;
            (v["phase"] == "Ready").then_some(())
        },
    )
    .await;
    if Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        assert!(std::env::var_os("CI").is_none(), "CI installs kubectl");
        return;
    }
    let kubeconfig = info["kubeconfig"].as_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("kubectl")
            .args(["--kubeconfig", &kubeconfig, "get", "demos"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for col in [
        "NAME", "TEMPLATE", "OWNER", "PHASE", "IDLE", "EXPIRES", "AGE",
    ] {
        assert!(table.contains(col), "printer column {col}: {table}");
    }
    assert!(
        table.contains(&name) && table.contains("web-shop") && table.contains("Ready"),
        "{table}"
    );
    let _ = std::fs::remove_dir_all(&state);
}
