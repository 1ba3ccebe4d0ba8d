//! Honest waits: a start, a wake and a prospect's landing page say how long it takes,
//! from the times showroom measured for the template (median of recent starts and
//! wakes); the catalogue (`GET /api/v1/templates`) shows the same estimates.

mod common;

use common::TestCluster;
use common::harness::*;
use kube::ResourceExt;
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

scenarios!(waits_are_estimated_from_measured_starts_and_wakes);

async fn template_listing(c: &Client, name: &str) -> Value {
    let (_, v) = c.get("/api/v1/templates").await;
    v["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap()
}

async fn demo(c: &Client, name: &str) -> Value {
    let (code, v) = c.get(&format!("/api/v1/demos/{name}")).await;
    assert_eq!(code, 200, "{v}");
    v
}

fn secs_between(v: &Value, from: &str, to: &str) -> i64 {
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(v[k].as_str().unwrap()).unwrap();
    (at(to) - at(from)).num_seconds()
}

async fn waits_are_estimated_from_measured_starts_and_wakes(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    // Nothing measured yet: the wait says so, and the catalogue has no figure.
    assert!(template_listing(&alice, "slow").await["startEstimateSeconds"].is_null());
    let first = alice.start(r#"{"template": "slow"}"#).await;
    let first = first["name"].as_str().unwrap().to_string();
    let w = &demo(&alice, &first).await["wait"];
    assert!(w["expectedSeconds"].is_null(), "{w}");
    assert!(
        w["message"].as_str().unwrap().contains("a minute or two"),
        "{w}"
    );
    alice.wait_phase(&first, Some("Ready"), T).await;
    let d = demo(&alice, &first).await;
    assert!(d["wait"].is_null(), "nothing to wait for once Ready: {d}");
    let measured = secs_between(&d, "createdAt", "readyAt");

    // The next start of the template is told what the first one took.
    let listing = template_listing(&alice, "slow").await;
    assert_eq!(listing["startEstimateSeconds"], measured, "{listing}");
    let second = alice.start(r#"{"template": "slow"}"#).await;
    let second = second["name"].as_str().unwrap().to_string();
    let w = demo(&alice, &second).await["wait"].clone();
    assert_eq!(w["expectedSeconds"], measured, "{w}");
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .starts_with("Usually ready in about"),
        "{w}"
    );
    alice.wait_phase(&second, Some("Ready"), T).await;

    // A sleeping demo's landing page says how long opening it takes: unknown at first,
    // then what its wakes took.
    let (_, link) = alice
        .post(
            &format!("/api/v1/demos/{first}/share-links"),
            r#"{"label": "Dana"}"#,
        )
        .await;
    let landing = link["url"].as_str().unwrap().to_string();
    let page = || async {
        common::web::send("GET", &landing, &[("accept", "text/html")], None)
            .await
            .unwrap()
            .text
    };
    let (code, _) = alice
        .post(&format!("/api/v1/demos/{first}/sleep"), "")
        .await;
    assert_eq!(code, 202);
    alice.wait_phase(&first, Some("Sleeping"), T).await;
    assert!(page().await.contains("usually within a minute"));
    let (code, _) = alice.post(&format!("/api/v1/demos/{first}/wake"), "").await;
    assert_eq!(code, 202);
    alice.wait_phase(&first, Some("Ready"), T).await;
    let woke = tc
        .demos()
        .await
        .into_iter()
        .find(|d| d.name_any() == first)
        .and_then(|d| d.status?.last_wake_seconds)
        .expect("the wake was measured");
    let listing = template_listing(&alice, "slow").await;
    assert_eq!(listing["wakeEstimateSeconds"], woke as i64, "{listing}");
    let (code, _) = alice
        .post(&format!("/api/v1/demos/{first}/sleep"), "")
        .await;
    assert_eq!(code, 202);
    alice.wait_phase(&first, Some("Sleeping"), T).await;
    let expected =
        showroom::domain::waits::about(chrono::Duration::milliseconds((woke * 1000.0) as i64));
    let text = page().await;
    assert!(
        text.contains(&format!("usually in about {expected}")),
        "{expected}: {text}"
    );
    app.stop().await;
}
