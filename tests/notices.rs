//! Expiry notices: announced once, before the sleep, on the Demo, in the UI and to the
//! webhook (retried when it fails); withdrawn when they no longer apply.

mod common;

use axum::http::StatusCode;
use common::harness::*;
use common::{TestCluster, eventually};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

scenarios!(a_notice_precedes_the_sleep_and_a_failing_webhook_is_retried);

async fn a_notice_precedes_the_sleep_and_a_failing_webhook_is_retried(tc: TestCluster) {
    // A webhook that fails its first call, then records what it gets.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let hook = {
        let (received, calls) = (received.clone(), calls.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let (received, calls) = (received.clone(), calls.clone());
                async move {
                    if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    received.lock().unwrap().push(body);
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hook).await });

    let mut cfg = test_config();
    cfg.notice_lead = chrono::Duration::seconds(3);
    cfg.notice_webhook = Some(hook_url);
    let app = start_showroom(&tc, cfg).await;
    let alice = Client::new(&app, SALES);
    let name = alice
        .start(r#"{"template": "shop", "title": "ACME", "sleepAfterIdle": "5s"}"#)
        .await["name"]
        .as_str()
        .unwrap()
        .to_string();
    alice.wait_phase(&name, Some("Ready"), T).await;

    // Within 3s of the sleep, the notice is on the demo...
    let notice = eventually(T, "notice on the demo", || async {
        let (_, d) = alice.get(&format!("/api/v1/demos/{name}")).await;
        d["notice"].is_object().then(|| d["notice"].clone())
    })
    .await;
    assert_eq!(notice["kind"], "Sleep");
    let msg = notice["message"].as_str().unwrap();
    assert!(
        msg.contains("ACME") && msg.contains("put to sleep"),
        "{msg}"
    );
    assert_eq!(
        alice.phase(&name).await.as_deref(),
        Some("Ready"),
        "announced before it happens"
    );
    // ...and reaches the webhook after one failed attempt, exactly once.
    eventually(T, "webhook received the notice", || async {
        (!received.lock().unwrap().is_empty()).then_some(())
    })
    .await;
    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
    assert!(
        v["text"].as_str().unwrap().contains("put to sleep"),
        "Slack-compatible body: {v}"
    );
    assert!(
        calls.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        "the failed call was retried"
    );

    // Then it sleeps on time, and the notice is withdrawn (the next event is far away).
    alice.wait_phase(&name, Some("Sleeping"), T).await;
    eventually(T, "notice withdrawn", || async {
        let (_, d) = alice.get(&format!("/api/v1/demos/{name}")).await;
        d["notice"].is_null().then_some(())
    })
    .await;
    app.stop().await;
}
