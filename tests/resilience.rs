//! Crashes, restarts, API errors, conflicts and dropped watches: every demo still
//! converges and nothing is orphaned.

mod common;

use common::harness::*;
use common::{TestCluster, eventually};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use showroom::sim::faults::FaultSettings;
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

scenarios!(killed_and_restarted_while_provisioning_sleeping_and_deleting);

async fn demo_namespaces(tc: &TestCluster) -> Vec<String> {
    Api::<Namespace>::all(tc.client.clone())
        .list(&ListParams::default().labels(&tc.instance.selector()))
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect()
}

async fn killed_and_restarted_while_provisioning_sleeping_and_deleting(tc: TestCluster) {
    // Killed while provisioning (the slow template's vcluster takes 2 s to boot).
    let app = start_showroom(&tc, test_config()).await;
    let name = Client::new(&app, SALES)
        .start(r#"{"template": "slow"}"#)
        .await["name"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(T, "provisioning underway", || async {
        (Client::new(&app, SALES).phase(&name).await.as_deref() == Some("Provisioning"))
            .then_some(())
    })
    .await;
    app.kill();
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    alice.wait_phase(&name, Some("Ready"), T).await;

    // Killed right after asking it to sleep.
    assert_eq!(
        alice
            .post(&format!("/api/v1/demos/{name}/sleep"), "")
            .await
            .0,
        202
    );
    app.kill();
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    alice.wait_phase(&name, Some("Sleeping"), T).await;

    // Killed right after asking it to delete.
    assert_eq!(alice.delete(&format!("/api/v1/demos/{name}")).await.0, 202);
    app.kill();
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    alice.wait_phase(&name, None, T).await;
    assert!(demo_namespaces(&tc).await.is_empty(), "nothing orphaned");
    app.stop().await;
}

/// Fault injection exists only in the simulation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_demo_converges_under_injected_faults() {
    let tc = TestCluster::sim().await;
    let sim = tc.sim.as_ref().expect("the simulation");
    let app = start_showroom(&tc, test_config()).await;
    sim.faults.set(FaultSettings {
        error_rate: 0.1,
        throttle_rate: 0.05,
        conflict_rate: 0.15,
        latency: Duration::from_millis(2),
        ..Default::default()
    });
    let (alice, carol) = (Client::new(&app, SALES), Client::new(&app, ADMIN));
    let mut names = Vec::new();
    for c in [&alice, &alice, &carol] {
        names.push(
            c.start(r#"{"template": "shop"}"#).await["name"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        sim.drop_watches();
    }
    // A start that answered with an error created nothing: exactly the demos we know.
    let all = Api::<showroom::cluster::crd::Demo>::all(tc.client.clone());
    let listed = eventually(T, "list demos through the faults", || async {
        all.list(&ListParams::default().labels(&tc.instance.selector()))
            .await
            .ok()
    })
    .await;
    let mut seen: Vec<String> = listed.items.iter().map(|d| d.name_any()).collect();
    seen.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(seen, want, "no demo was created behind an error answer");
    for n in &names {
        carol.wait_phase(n, Some("Ready"), T).await;
        sim.drop_watches();
    }
    for n in &names {
        eventually(T, "delete accepted", || async {
            (carol.delete(&format!("/api/v1/demos/{n}")).await.0 == 202).then_some(())
        })
        .await;
    }
    sim.drop_watches();
    for n in &names {
        carol.wait_phase(n, None, T).await;
    }
    sim.faults.clear();
    let deadline = tokio::time::Instant::now() + T;
    while !demo_namespaces(&tc).await.is_empty() {
        if tokio::time::Instant::now() > deadline {
            let left = Api::<Namespace>::all(tc.client.clone())
                .list(&ListParams::default().labels(&tc.instance.selector()))
                .await
                .unwrap();
            let objects = sim.store.object_count();
            panic!(
                "demo namespaces left: {:#?}\n({objects} objects in the store)",
                left.items
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// A watch that lags behind the writes (as a busy API server's does) makes the
/// controller's cache older than its own last write: each step must still be taken
/// once. (At 10,000 demos a demo became Ready up to 12 times: 12 status writes, 12
/// Events and 12 counts in the provisioning histogram.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_cache_does_not_repeat_a_step() {
    let tc = TestCluster::sim().await;
    let sim = tc.sim.as_ref().expect("the simulation");
    let app = start_showroom(&tc, test_config()).await;
    sim.faults.set(FaultSettings {
        watch_delay: Duration::from_millis(300),
        ..Default::default()
    });
    let alice = Client::new(&app, SALES);
    alice.start_ready("shop", T).await;
    // Long enough for any repeat to have been written and seen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, m) = http("GET", &format!("{}/metrics", alice.base), None, None).await;
    assert_eq!(code, 200);
    let m = m.as_str().unwrap_or_default().to_string();
    let count = m
        .lines()
        .find(|l| l.starts_with("showroom_provisioning_duration_seconds_count"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok());
    assert_eq!(count, Some(1), "one demo became Ready once:\n{m}");
    sim.faults.clear();
    app.stop().await;
}

/// Read your own writes through a lagging cache: after an action's answer, the next
/// read (pages and the API both read the cache) shows what the action wrote. A demo
/// page without the save card never polls, so a browser sent there after "Save as
/// template" showed no save until reloaded (a CI failure on the real control plane).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_read_shows_what_an_action_wrote_despite_a_lagging_cache() {
    let tc = TestCluster::sim().await;
    let sim = tc.sim.as_ref().expect("the simulation");
    let app = start_showroom(&tc, test_config()).await;
    let alice = Client::new(&app, SALES);
    let name = alice.start_ready("shop", T).await;
    sim.faults.set(FaultSettings {
        watch_delay: Duration::from_millis(500),
        ..Default::default()
    });
    let path = format!("/api/v1/demos/{name}");

    let (code, v) = alice
        .post(&format!("{path}/extend"), r#"{"by": "30m"}"#)
        .await;
    assert_eq!(code, 200, "{v}");
    let (_, v) = alice.get(&path).await;
    assert_eq!(v["lifecycle"]["extension"], "30m", "{v}");

    let (code, v) = alice
        .post(&format!("{path}/share-links"), r#"{"label": "ACME"}"#)
        .await;
    assert_eq!(code, 201, "{v}");
    let (_, v) = alice.get(&path).await;
    assert_eq!(v["shareLinks"].as_array().map(Vec::len), Some(1), "{v}");

    let (code, v) = alice
        .post(&format!("{path}/snapshot"), r#"{"template": "lagged"}"#)
        .await;
    assert_eq!(code, 202, "{v}");
    let (_, v) = alice.get(&path).await;
    assert_eq!(v["save"]["phase"], "Saving", "{v}");
    let (code, v) = alice.post(&format!("{path}/sleep"), "").await;
    assert_eq!(code, 202, "{v}");
    let (_, v) = alice.get(&path).await;
    assert_eq!(v["desiredState"], "Sleeping", "{v}");
    sim.faults.clear();
    app.stop().await;
}
