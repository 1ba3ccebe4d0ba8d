//! A demo's whole life through the JSON API, in both worlds: the simulation and a real
//! control plane (tests/common).

mod common;

use common::harness::*;
use common::{TestCluster, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::Value;
use showroom::cluster::crd::Demo;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

scenarios!(
    whole_life_start_ready_sleep_wake_idle_delete,
    delete_goes_through_deleting_and_removes_the_namespace,
    a_demo_made_with_kubectl_gets_the_finalizer_and_is_cleaned_up,
    a_demo_made_while_no_controller_ran_is_provisioned_not_timed_out,
    max_lifetime_deletes_and_extension_is_bounded,
    a_failing_restore_ends_in_failed_and_leaves_nothing_behind,
    idempotency_key_and_per_user_limit,
    users_see_and_touch_only_their_own_demos,
    activity_is_coalesced,
);

fn name_of(v: &Value) -> String {
    v["name"].as_str().expect("demo name").to_string()
}

async fn namespace_exists(tc: &TestCluster, ns: &str) -> bool {
    Api::<Namespace>::all(tc.client.clone())
        .get_opt(ns)
        .await
        .unwrap()
        .is_some()
}

async fn whole_life_start_ready_sleep_wake_idle_delete(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let demo = alice.start(r#"{"template": "shop", "title": "ACME", "sleepAfterIdle": "2s", "deleteAfterIdle": "12s"}"#).await;
    let name = name_of(&demo);
    assert_eq!(demo["owner"], "alice");
    assert_eq!(demo["title"], "ACME");

    // Provisioning shows its steps, then Ready.
    let progress = eventually(T, "progress steps", || async {
        let (_, v) = alice.get(&format!("/api/v1/demos/{name}")).await;
        let steps = v["progress"].as_array().cloned().unwrap_or_default();
        steps.iter().any(|s| s["state"] == "Done").then_some(steps)
    })
    .await;
    assert_eq!(progress.len(), 6, "{progress:?}");
    alice.wait_phase(&name, Some("Ready"), T).await;
    let (_, v) = alice.get(&format!("/api/v1/demos/{name}")).await;
    assert!(
        v["readyAt"].is_string() && v["namespace"] == name.as_str(),
        "{v}"
    );
    assert!(
        v["progress"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] == "Done"),
        "{v}"
    );

    // Idle: falls asleep by itself, exactly as `vcluster pause` leaves it.
    alice.wait_phase(&name, Some("Sleeping"), T).await;
    let sts = Api::<StatefulSet>::namespaced(tc.client.clone(), &name)
        .get(&name)
        .await
        .unwrap();
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(0));
    assert_eq!(
        sts.annotations().get("loft.sh/paused").map(String::as_str),
        Some("true")
    );
    assert_eq!(
        sts.annotations()
            .get("loft.sh/paused-replicas")
            .map(String::as_str),
        Some("1")
    );
    assert!(sts.annotations().contains_key("loft.sh/paused-date"));
    let pods = Api::<Pod>::namespaced(tc.client.clone(), &name);
    eventually(T, "workload pods gone", || async {
        pods.list(&ListParams::default().labels(&format!("vcluster.loft.sh/managed-by={name}")))
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;

    // Wake: Waking, then Ready, annotations removed.
    let (code, _) = alice.post(&format!("/api/v1/demos/{name}/wake"), "").await;
    assert_eq!(code, 202);
    alice.wait_phase(&name, Some("Ready"), T).await;
    let sts = Api::<StatefulSet>::namespaced(tc.client.clone(), &name)
        .get(&name)
        .await
        .unwrap();
    assert_eq!(sts.spec.as_ref().unwrap().replicas, Some(1));
    assert!(!sts.annotations().contains_key("loft.sh/paused"));

    // Manual sleep through the API.
    let (code, _) = alice.post(&format!("/api/v1/demos/{name}/sleep"), "").await;
    assert_eq!(code, 202);
    alice.wait_phase(&name, Some("Sleeping"), T).await;

    // Each transition is a Kubernetes Event on the Demo (kubectl describe demo).
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(tc.client.clone(), "default");
    let reasons = eventually(T, "events recorded", || async {
        let list = events.list(&ListParams::default()).await.unwrap();
        let r: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|o| o.name.as_deref()) == Some(name.as_str()))
            .filter_map(|e| e.reason.clone())
            .collect();
        ["Provisioning", "Ready", "Sleeping", "Waking"]
            .iter()
            .all(|x| r.iter().any(|y| y == x))
            .then_some(r)
    })
    .await;
    assert!(!reasons.is_empty());

    // Idle deletion: the demo and its namespace disappear.
    alice.wait_phase(&name, None, T).await;
    eventually(T, "namespace gone", || async {
        (!namespace_exists(&tc, &name).await).then_some(())
    })
    .await;
    app.stop().await;
}

async fn delete_goes_through_deleting_and_removes_the_namespace(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let name = name_of(&alice.start(r#"{"template": "shop"}"#).await);
    alice.wait_phase(&name, Some("Ready"), T).await;
    let (code, v) = alice.delete(&format!("/api/v1/demos/{name}")).await;
    assert_eq!((code, v["phase"].as_str()), (202, Some("Deleting")));
    alice.wait_phase(&name, None, T).await;
    assert!(
        !namespace_exists(&tc, &name).await,
        "the Demo is released only once its namespace is gone"
    );
    app.stop().await;
}

/// A Demo as an admin would write it for kubectl: alice's, of `template`, in this
/// installation, without the finalizer or any status.
fn demo_made_by_hand(tc: &TestCluster, name: &str, template: &str) -> Demo {
    use showroom::cluster::crd::{INSTANCE_LABEL, owner_hash};
    serde_json::from_value(serde_json::json!({
        "apiVersion": "showroom.dev/v1alpha1", "kind": "Demo",
        "metadata": {"name": name, "labels": {INSTANCE_LABEL: tc.instance.name(),
            "showroom.dev/owner-hash": owner_hash("alice")}},
        "spec": {"template": template, "owner": "alice", "desiredState": "Running",
            "lifecycle": {"sleepAfterIdle": "30m", "deleteAfterIdle": "24h", "maxLifetime": "72h"}}
    }))
    .unwrap()
}

/// A start makes its Demo with the controller's finalizer; one an admin makes by hand
/// (kubectl apply, with the instance label) gets it from the controller, so that its
/// deletion still waits for its namespace to go.
async fn a_demo_made_with_kubectl_gets_the_finalizer_and_is_cleaned_up(tc: TestCluster) {
    use showroom::cluster::crd::FINALIZER;
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let name = "demo-byhand0001";
    let demo = demo_made_by_hand(&tc, name, "shop");
    let api = Api::<Demo>::all(tc.client.clone());
    let made = api.create(&Default::default(), &demo).await.unwrap();
    assert!(made.finalizers().is_empty(), "made without the finalizer");
    alice.wait_phase(name, Some("Ready"), T).await;
    let d = api.get(name).await.unwrap();
    assert!(
        d.finalizers().iter().any(|f| f == FINALIZER),
        "{:?}",
        d.finalizers()
    );
    assert!(namespace_exists(&tc, name).await);
    api.delete(name, &Default::default()).await.unwrap();
    alice.wait_phase(name, None, T).await;
    assert!(
        !namespace_exists(&tc, name).await,
        "the Demo is released only once its namespace is gone"
    );
    app.stop().await;
}

/// A Demo made while showroom was down (a restart, an upgrade) for longer than its
/// template's provision timeout: the timeout counts from when showroom takes it up,
/// so it is provisioned, not failed on first sight.
async fn a_demo_made_while_no_controller_ran_is_provisioned_not_timed_out(tc: TestCluster) {
    const TIMEOUT: u64 = 20;
    let mut late = template("late", "oci://example.test/snap/shop:1", "");
    late.lifecycle.provision_timeout = Some(chrono::Duration::seconds(TIMEOUT as i64));
    let name = "demo-madewhiledown1";
    let demo = demo_made_by_hand(&tc, name, "late");
    showroom::app::install_crd(&tc.client).await.unwrap();
    let api = Api::<Demo>::all(tc.client.clone());
    // Until the API server serves the new CRD.
    eventually(T, "the Demo made", || async {
        api.create(&Default::default(), &demo).await.ok()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(TIMEOUT + 1)).await;
    let app = start_showroom_full(&tc, test_config(), test_users(), catalogue_of(vec![late])).await;
    let alice = Client::new(&app, SALES);
    let phase = eventually(T, "Ready or Failed", || async {
        alice
            .phase(name)
            .await
            .filter(|p| p == "Ready" || p == "Failed")
    })
    .await;
    let (_, v) = alice.get(&format!("/api/v1/demos/{name}")).await;
    assert_eq!(phase, "Ready", "{v}");
    app.stop().await;
}

async fn max_lifetime_deletes_and_extension_is_bounded(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let name = name_of(&alice.start(r#"{"template": "shop"}"#).await);
    let (_, before) = alice.get(&format!("/api/v1/demos/{name}")).await;
    // Within the template's 1h maxExtension: accepted, expiry moves by 30m.
    let (code, after) = alice
        .post(&format!("/api/v1/demos/{name}/extend"), r#"{"by": "30m"}"#)
        .await;
    assert_eq!(code, 200, "{after}");
    let t =
        |v: &Value| chrono::DateTime::parse_from_rfc3339(v["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!((t(&after) - t(&before)).num_minutes(), 30);
    // Beyond it: refused, nothing changed.
    let (code, err) = alice
        .post(&format!("/api/v1/demos/{name}/extend"), r#"{"by": "31m"}"#)
        .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("limit"),
        "{err}"
    );
    let (_, now) = alice.get(&format!("/api/v1/demos/{name}")).await;
    assert_eq!(t(&now), t(&after));
    let (code, _) = alice
        .post(&format!("/api/v1/demos/{name}/extend"), r#"{"by": "soon"}"#)
        .await;
    assert_eq!(code, 400);

    // An admin may create a demo with a 3s lifetime: it is deleted at expiry.
    let carol = Client::new(&app, ADMIN);
    let short = name_of(
        &carol
            .start(r#"{"template": "shop", "maxLifetime": "3s"}"#)
            .await,
    );
    carol.wait_phase(&short, None, T).await;
    eventually(T, "namespace gone", || async {
        (!namespace_exists(&tc, &short).await).then_some(())
    })
    .await;
    app.stop().await;
}

async fn a_failing_restore_ends_in_failed_and_leaves_nothing_behind(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let name = name_of(&alice.start(r#"{"template": "broken"}"#).await);
    alice.wait_phase(&name, Some("Failed"), T).await;
    let (_, v) = alice.get(&format!("/api/v1/demos/{name}")).await;
    let msg = v["message"].as_str().unwrap();
    // The vcluster CLI's own words reach the user.
    assert!(
        msg.contains("restore failed") && msg.contains("oci://example.test/snap/missing:1"),
        "{msg}"
    );
    let restore = v["progress"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "restore")
        .unwrap()
        .clone();
    assert_eq!(restore["state"], "Failed");
    eventually(T, "namespace cleaned up", || async {
        (!namespace_exists(&tc, &name).await).then_some(())
    })
    .await;
    // A failed demo cannot be woken; it can be deleted.
    assert_eq!(
        alice
            .post(&format!("/api/v1/demos/{name}/wake"), "")
            .await
            .0,
        409
    );
    assert_eq!(alice.delete(&format!("/api/v1/demos/{name}")).await.0, 202);
    alice.wait_phase(&name, None, T).await;
    app.stop().await;
}

async fn idempotency_key_and_per_user_limit(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let url = format!("http://{}/api/v1/demos", app.addr);
    let body = r#"{"template": "shop"}"#;
    let key = [("Idempotency-Key", "click-1")];
    let (c1, a) = http_with("POST", &url, Some(SALES), Some(body), &key).await;
    let (c2, b) = http_with("POST", &url, Some(SALES), Some(body), &key).await;
    assert_eq!((c1, c2), (202, 202));
    assert_eq!(a["name"], b["name"], "the same key makes one demo");
    let demos = tc.demos().await;
    assert_eq!(demos.iter().filter(|d| d.spec.owner == "alice").count(), 1);

    // 20 concurrent starts by bob, whose limit is 3: exactly 3 demos.
    let starts = (0..20).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            http("POST", &url, Some(OTHER), Some(r#"{"template": "shop"}"#)).await
        })
    });
    let mut codes = Vec::new();
    for s in starts {
        codes.push(s.await.unwrap().0);
    }
    assert_eq!(codes.iter().filter(|c| **c == 202).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 17, "{codes:?}");
    let demos = tc.demos().await;
    assert_eq!(demos.iter().filter(|d| d.spec.owner == "bob").count(), 3);
    app.stop().await;
}

async fn users_see_and_touch_only_their_own_demos(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let (alice, bob, carol) = (
        Client::new(&app, SALES),
        Client::new(&app, OTHER),
        Client::new(&app, ADMIN),
    );
    let name = name_of(&alice.start(r#"{"template": "shop"}"#).await);
    eventually(T, "cache has the demo", || async {
        (alice.get("/api/v1/demos").await.1["demos"]
            .as_array()
            .unwrap()
            .len()
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(
        bob.get("/api/v1/demos").await.1["demos"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    for (method, path) in [
        ("GET", ""),
        ("POST", "/sleep"),
        ("POST", "/wake"),
        ("POST", "/activity"),
        ("DELETE", ""),
    ] {
        let url = format!("{}/api/v1/demos/{name}{path}", bob.base);
        let (code, v) = http(method, &url, Some(OTHER), None).await;
        assert_eq!(code, 403, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "forbidden");
    }
    let (code, _) = bob
        .post(&format!("/api/v1/demos/{name}/extend"), r#"{"by": "1m"}"#)
        .await;
    assert_eq!(code, 403);
    assert_eq!(bob.get("/api/v1/demos?all=true").await.0, 403);
    let (code, all) = carol.get("/api/v1/demos?all=true").await;
    assert_eq!((code, all["demos"].as_array().unwrap().len()), (200, 1));
    assert_eq!(carol.get(&format!("/api/v1/demos/{name}")).await.0, 200);
    // Bad input: clear errors, nothing created.
    let anon = http("GET", &format!("{}/api/v1/demos", alice.base), None, None).await;
    assert_eq!(anon.0, 401);
    assert_eq!(
        http(
            "GET",
            &format!("{}/api/v1/demos", alice.base),
            Some("nope"),
            None
        )
        .await
        .0,
        401
    );
    let cases: [(&str, u16, &str); 6] = [
        ("{not json", 400, "bad_request"),
        (r#"{"template": "nope"}"#, 422, "unprocessable"),
        (
            r#"{"template": "shop", "colour": "red"}"#,
            400,
            "bad_request",
        ),
        (
            r#"{"template": "shop", "sleepAfterIdle": "forever"}"#,
            400,
            "bad_request",
        ),
        (
            r#"{"template": "shop", "sleepAfterIdle": "5h"}"#,
            403,
            "forbidden",
        ),
        (r#"{"template": 7}"#, 400, "bad_request"),
    ];
    for (body, code, kind) in cases {
        let (c, v) = alice.post("/api/v1/demos", body).await;
        assert_eq!(
            (c, v["error"]["code"].as_str()),
            (code, Some(kind)),
            "{body}: {v}"
        );
    }
    let (_, v) = alice.post("/api/v1/demos", r#"{"template": "nope"}"#).await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("\"nope\""),
        "names the template: {v}"
    );
    let (_, v) = alice
        .post(
            "/api/v1/demos",
            r#"{"template": "shop", "sleepAfterIdle": "forever"}"#,
        )
        .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sleepAfterIdle"),
        "names the field: {v}"
    );
    let big = format!(
        r#"{{"template": "shop", "title": "{}"}}"#,
        "x".repeat(100_000)
    );
    assert_eq!(alice.post("/api/v1/demos", &big).await.0, 413);
    assert_eq!(alice.get("/api/v1/demos/demo-doesnotexist").await.0, 404);
    assert_eq!(alice.get("/api/v1/nowhere").await.0, 404);
    let demos = tc.demos().await;
    assert_eq!(demos.len(), 1, "bad requests created nothing");
    // Templates are listed; metrics and probes answer.
    let (code, t) = alice.get("/api/v1/templates").await;
    assert_eq!((code, t["templates"].as_array().unwrap().len()), (200, 3));
    let (code, m) = http("GET", &format!("{}/metrics", alice.base), None, None).await;
    let m = m.as_str().unwrap_or_default().to_string();
    assert_eq!(code, 200);
    assert!(
        m.contains("showroom_demos{") && m.contains("showroom_api_errors_total"),
        "{m}"
    );
    app.stop().await;
}

async fn activity_is_coalesced(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let name = name_of(&alice.start(r#"{"template": "shop"}"#).await);
    alice.wait_phase(&name, Some("Ready"), T).await;
    let writes_before = app.state.activity.writes();
    for _ in 0..30 {
        assert_eq!(
            alice
                .post(&format!("/api/v1/demos/{name}/activity"), "")
                .await
                .0,
            202
        );
    }
    // The interval is 500ms: a burst makes one immediate write and at most one more.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let writes = app.state.activity.writes() - writes_before;
    assert!(
        (1..=2).contains(&writes),
        "{writes} status writes for 30 activity calls"
    );
    let d = Api::<Demo>::all(tc.client.clone())
        .get(&name)
        .await
        .unwrap();
    let last = d.status.unwrap().last_activity.unwrap();
    assert!(
        (chrono::Utc::now() - last).num_seconds() < 5,
        "lastActivity was written"
    );
    app.stop().await;
}
