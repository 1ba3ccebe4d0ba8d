//! `showroom dev`, the README's first command: it starts, writes dev.json, serves the
//! API with the printed tokens, and kubectl works against its kubeconfig (`get demos`,
//! and create, apply and delete as on any cluster). And `showroom serve` on a cluster
//! without the Demo CRD says what is missing.

mod common;

use common::eventually;
use common::harness::{http, try_http};
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
    std::fs::create_dir_all(&state).unwrap();
    let log = state.join("stderr.log");
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_showroom"))
            .args(["dev", "--port", "0", "--boot-delay", "300ms", "--state-dir"])
            .arg(&state)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
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
    // dev.json is written once showroom is ready: a start at once is not refused.
    let (code, r) = try_http("GET", &format!("{url}/readyz"), None, None, &[])
        .await
        .expect("an answer from /readyz");
    assert_eq!(code, 200, "ready when dev.json is written: {r}");
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

    // A newcomer's kubectl: create (protobuf bodies), apply, delete.
    let kubeconfig = info["kubeconfig"].as_str().unwrap().to_string();
    let kubectl = move |args: &[&str], stdin: Option<&str>| {
        use std::io::Write;
        let mut c = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(t) = stdin {
            c.stdin.take().unwrap().write_all(t.as_bytes()).unwrap();
        }
        drop(c.stdin.take());
        let out = c.wait_with_output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "kubectl {args:?}: {text}");
        text
    };
    let out = tokio::task::spawn_blocking(move || {
        let mut out = kubectl(&["create", "namespace", "newcomer"], None);
        out += &kubectl(
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hello, namespace: newcomer}\ndata: {greeting: hi}\n"),
        );
        out += &kubectl(&["-n", "newcomer", "get", "configmap", "hello", "-o", "jsonpath={.data.greeting}"], None);
        out += &kubectl(&["delete", "namespace", "newcomer"], None);
        out
    })
    .await
    .unwrap();
    for want in [
        "namespace/newcomer created",
        "configmap/hello created",
        "hi",
        "deleted",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // Logs go to a file here: plain text, no terminal colour codes.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("showroom listening"), "{logged}");
    assert!(
        !logged.contains('\u{1b}'),
        "colour codes in a log file: {logged:?}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// `showroom serve` against a cluster that lacks the Demo CRD: not ready, and it says
/// why in `/readyz`, in the log and to a start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_without_the_crd_says_what_is_missing() {
    let tc = common::TestCluster::sim().await;
    let dir = std::env::temp_dir().join(format!("showroom-nocrd-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("users.yaml"),
        format!(
            "users:\n- name: alice\n  role: sales\n  tokenSha256: [{}]\n",
            showroom::domain::users::hash_token("t")
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.join("stderr.log");
    let _child = Child(
        Command::new(env!("CARGO_BIN_EXE_showroom"))
            .args(["serve", "--leader-election=false", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--users")
            .arg(dir.join("users.yaml"))
            .env("KUBECONFIG", &tc.kubeconfig)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let body = eventually(Duration::from_secs(30), "/readyz names the CRD", || async {
        let (code, v) = try_http("GET", &format!("{url}/readyz"), None, None, &[])
            .await
            .ok()?;
        let text = v.as_str().unwrap_or_default().to_string();
        (code == 503 && text.contains("demos.showroom.dev")).then_some(text)
    })
    .await;
    assert!(body.contains("showroom crd | kubectl apply -f -"), "{body}");
    let (code, v) = http(
        "POST",
        &format!("{url}/api/v1/demos"),
        Some("t"),
        Some(r#"{"template": "web-shop"}"#),
    )
    .await;
    assert_eq!(code, 503, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not installed"),
        "{v}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("not installed"),
        "the log says it: {logged}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
