//! The command line: templates check, crd, help, and refusing bad input at start.

use std::process::Command;

fn showroom(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_showroom"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn the_shipped_templates_check_out() {
    let (ok, out, err) = showroom(&["templates", "check", &format!("{ROOT}/snapshots")]);
    assert!(ok, "{err}");
    assert!(
        out.contains("web-shop") && out.contains("data-pipeline"),
        "{out}"
    );
}

#[test]
fn a_bad_template_names_the_file_and_the_field_and_serve_refuses_it() {
    let dir = std::env::temp_dir().join(format!("showroom-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(format!("{ROOT}/snapshots/web-shop.yaml")).unwrap();
    std::fs::write(
        dir.join("bad.yaml"),
        good.replace("sleepAfterIdle: 30m", "sleepAfterIdle: half an hour"),
    )
    .unwrap();
    let (ok, _, err) = showroom(&["templates", "check", dir.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.yaml") && err.contains("lifecycle.defaults.sleepAfterIdle"),
        "{err}"
    );
    let (ok, _, err) = showroom(&[
        "serve",
        "--snapshots",
        dir.to_str().unwrap(),
        "--users",
        "/nonexistent",
    ]);
    assert!(
        !ok && err.contains("bad.yaml"),
        "serve refuses to start: {err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_quota_on_cpu_or_memory_without_container_defaults_is_refused() {
    // On a real cluster such a quota refuses every pod that names no resources: the
    // vcluster's, and every workload it syncs. The check names the file and the field.
    let dir = std::env::temp_dir().join(format!("showroom-cli-quota-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = std::fs::read_to_string(format!("{ROOT}/snapshots/web-shop.yaml")).unwrap();
    let without = good[..good.find("containerDefaults:").unwrap()].to_string();
    std::fs::write(dir.join("shop.yaml"), &without).unwrap();
    let (ok, _, err) = showroom(&["templates", "check", dir.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("shop.yaml")
            && err.contains("quota.limits.cpu")
            && err.contains("containerDefaults.limits.cpu"),
        "{err}"
    );
    // A quota too small for the vcluster's own pod (2Gi memory limit by the chart).
    std::fs::write(
        dir.join("shop.yaml"),
        good.replace("limits.memory: 16Gi", "limits.memory: 1Gi"),
    )
    .unwrap();
    let (ok, _, err) = showroom(&["templates", "check", dir.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("quota.limits.memory") && err.contains("cannot hold"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_crd_in_deploy_is_the_generated_one() {
    let (ok, out, _) = showroom(&["crd"]);
    assert!(ok);
    let shipped = std::fs::read_to_string(format!("{ROOT}/deploy/base/crd.yaml")).unwrap();
    assert_eq!(
        out, shipped,
        "deploy/base/crd.yaml is stale: run `cargo run -- crd > deploy/base/crd.yaml`"
    );
    assert!(
        out.contains("shortNames:\n    - demo") && out.contains("name: Idle"),
        "{out}"
    );
}

#[test]
fn help_explains_every_subcommand_and_flag() {
    let (ok, out, _) = showroom(&["--help"]);
    assert!(ok);
    for sub in ["serve", "dev", "sweep", "crd", "templates"] {
        assert!(out.contains(sub), "{out}");
    }
    let (_, out, _) = showroom(&["serve", "--help"]);
    assert!(
        out.contains("--sweep-schedule") && out.contains("SHOWROOM_SWEEP_SCHEDULE"),
        "{out}"
    );
    let (ok, _, err) = showroom(&[
        "serve",
        "--sweep-schedule",
        "every minute",
        "--snapshots",
        &format!("{ROOT}/snapshots"),
        "--users",
        "/nonexistent",
    ]);
    assert!(!ok, "{err}");
}

#[test]
fn the_snapshots_configmap_in_deploy_is_generated_from_snapshots() {
    let (ok, out, err) = showroom(&["templates", "configmap", &format!("{ROOT}/snapshots")]);
    assert!(ok, "{err}");
    let shipped = std::fs::read_to_string(format!("{ROOT}/deploy/base/snapshots.yaml")).unwrap();
    assert_eq!(
        out, shipped,
        "deploy/base/snapshots.yaml is stale: run `cargo run -- templates configmap snapshots > deploy/base/snapshots.yaml`"
    );
}

#[test]
fn new_token_keeps_the_token_out_of_the_entry() {
    let (ok, out, err) = showroom(&["users", "new-token", "alice", "--role", "admin"]);
    assert!(ok, "{err}");
    let token = err.trim().rsplit(' ').next().unwrap();
    assert!(
        token.starts_with("sr_") && !out.contains(token),
        "stdout: {out}"
    );
    let file = format!("users:\n{out}");
    let users = showroom::domain::users::Users::parse("users.yaml", &file).unwrap();
    assert!(users.authenticate(token).is_some_and(|u| u.is_admin()));
}
