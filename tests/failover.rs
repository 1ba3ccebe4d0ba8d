//! Two replicas, one leader: kill the leader and the other takes over within the lease
//! duration; demos keep sleeping and being deleted on time, and no action is taken twice.

mod common;

use common::harness::*;
use common::{TestCluster, eventually};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use showroom::cluster::leader::LeaderConfig;
use showroom::metrics::{Metrics, label};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(60);

// The per-user limit over two replicas: tests/pools.rs (exact, with slots).
scenarios!(the_other_replica_takes_over_and_nothing_is_done_twice);

/// A replica of this test's installation: its own Lease, so tests can share a cluster.
fn leader_cfg(tc: &TestCluster, identity: &str) -> showroom::app::Config {
    let mut c = test_config();
    c.leader = Some(LeaderConfig {
        namespace: "default".into(),
        lease_name: format!("showroom-leader-{}", tc.instance.name()),
        identity: identity.into(),
        duration_secs: 2,
        grace_secs: 1,
    });
    c
}

fn actions(m: &Metrics, kind: &str) -> u64 {
    m.lifecycle_actions
        .get_or_create(&label("action", kind))
        .get()
}

async fn the_other_replica_takes_over_and_nothing_is_done_twice(tc: TestCluster) {
    let a = start_showroom(&tc, leader_cfg(&tc, "replica-a")).await;
    let b = start_showroom(&tc, leader_cfg(&tc, "replica-b")).await;
    let (ma, mb): (Arc<Metrics>, Arc<Metrics>) = (a.state.metrics.clone(), b.state.metrics.clone());
    let leaders = || ma.leader.get() + mb.leader.get();
    eventually(T, "exactly one leader", || async {
        (leaders() == 1).then_some(())
    })
    .await;
    // Stays exactly one while both renew.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(leaders(), 1, "never two leaders");
    }

    // Both replicas serve the API from their own caches.
    let carol = Client::new(&b, ADMIN);
    let mut names = Vec::new();
    for _ in 0..3 {
        let d = carol
            .start(r#"{"template": "slow", "sleepAfterIdle": "4s", "deleteAfterIdle": "12s"}"#)
            .await;
        names.push(d["name"].as_str().unwrap().to_string());
    }
    let reader = Client::new(&a, ADMIN);
    eventually(T, "replica a sees the demos", || async {
        (reader.get("/api/v1/demos?all=true").await.1["demos"]
            .as_array()
            .unwrap()
            .len()
            == 3)
            .then_some(())
    })
    .await;

    // Kill the leader while the demos are still provisioning.
    let (dead, survivor, survivor_m) = if ma.leader.get() == 1 {
        (a, b, mb.clone())
    } else {
        (b, a, ma.clone())
    };
    let dead_m = dead.state.metrics.clone();
    let killed = Instant::now();
    dead.kill();
    eventually(T, "the survivor leads", || async {
        (survivor_m.leader.get() == 1).then_some(())
    })
    .await;
    let takeover = killed.elapsed();
    assert!(
        takeover < Duration::from_secs(10),
        "took over in {takeover:?}"
    );
    eprintln!("takeover after the leader was killed: {takeover:?}");

    let api = Client::new(&survivor, ADMIN);
    for n in &names {
        api.wait_phase(n, Some("Ready"), T).await;
    }
    for n in &names {
        api.wait_phase(n, Some("Sleeping"), T).await;
    }
    for n in &names {
        api.wait_phase(n, None, T).await;
    }
    let left = Api::<Namespace>::all(tc.client.clone())
        .list(&ListParams::default().labels(&tc.instance.selector()))
        .await
        .unwrap();
    assert!(left.items.is_empty(), "no demo namespace left");
    // Each demo was put to sleep once and deleted once, by exactly one replica.
    assert_eq!(actions(&survivor_m, "sleep") + actions(&dead_m, "sleep"), 3);
    assert_eq!(
        actions(&survivor_m, "delete-idle") + actions(&dead_m, "delete-idle"),
        3
    );
    survivor.stop().await;
}
