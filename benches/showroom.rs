//! `cargo bench --bench showroom`: showroom's own numbers, on the simulation and (when
//! `SHOWROOM_REALKUBE` names the control plane's binaries) on a real control plane, side
//! by side in one table. The machine is shared and noisy: compare within a run.
//!
//! Sections: starts (a claim from a warm pool against a cold start).

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros, unused_imports)]
mod common;

use common::TestCluster;
use common::harness::*;
use showroom::sim::agent::{App, Snapshot};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// One row of the table: a measurement in each world.
struct Row {
    what: String,
    sim: String,
    real: String,
}

const SNAPSHOT: &str = "oci://example.test/snap/bench:1";

/// Median time from `POST /api/v1/demos` to the demo reading Ready through the API.
async fn start_to_ready(api: &Client, template: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let d = api.start(&format!(r#"{{"template": "{template}"}}"#)).await;
        let name = d["name"].as_str().unwrap().to_string();
        if d["phase"] != "Ready" {
            api.wait_phase(&name, Some("Ready"), Duration::from_secs(300))
                .await;
        }
        times.push(t.elapsed());
        let _ = api.delete(&format!("/api/v1/demos/{name}")).await;
    }
    median(times)
}

/// Starts section: (claim median, cold median).
async fn starts(tc: TestCluster, n: usize) -> (Duration, Duration) {
    tc.snapshots.publish(
        SNAPSHOT,
        Snapshot {
            apps: vec![App {
                namespace: "shop".into(),
                service: "storefront".into(),
                port: 80,
            }],
            restore_time: Duration::ZERO,
            boot_time: Duration::ZERO,
        },
    );
    let mut cfg = test_config();
    cfg.max_demos_per_user = 1000;
    let cat = catalogue_of(vec![
        template("pooled", SNAPSHOT, &format!("warmPool: {{size: {n}}}")),
        template("cold", SNAPSHOT, ""),
    ]);
    let app = start_showroom_full(&tc, cfg, test_users(), cat).await;
    let carol = Client::new(&app, ADMIN);
    common::eventually(Duration::from_secs(300), "the pool ready", || async {
        let (_, v) = carol.get("/api/v1/pools").await;
        (v["pools"][0]["ready"].as_u64() == Some(n as u64)).then_some(())
    })
    .await;
    // Claims one after another, without waiting for the refill: each finds a member.
    let mut claims = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let d = carol.start(r#"{"template": "pooled"}"#).await;
        assert_eq!(d["fromPool"], true, "{d}");
        if d["phase"] != "Ready" {
            carol
                .wait_phase(
                    d["name"].as_str().unwrap(),
                    Some("Ready"),
                    Duration::from_secs(60),
                )
                .await;
        }
        claims.push(t.elapsed());
    }
    let cold = start_to_ready(&carol, "cold", n).await;
    app.stop().await;
    (median(claims), cold)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 3 } else { 5 };
    let real = showroom::sim::realkube::binaries_from_env()
        .unwrap_or_else(|e| panic!("{e}"))
        .is_some()
        || std::env::var_os("SHOWROOM_TEST_KUBECONFIG").is_some();
    let (sim_claim, sim_cold) = starts(TestCluster::sim().await, n).await;
    let (real_claim, real_cold) = if real {
        let tc = TestCluster::real("bench").await.expect("a real cluster");
        let (c, k) = starts(tc, n).await;
        (ms(c), ms(k))
    } else {
        ("(no control plane)".into(), "(no control plane)".into())
    };
    let rows = [
        Row {
            what: format!("start to Ready: claim from a Running warm pool (median of {n})"),
            sim: ms(sim_claim),
            real: real_claim,
        },
        Row {
            what: format!("start to Ready: cold start, boot time 0 (median of {n})"),
            sim: ms(sim_cold),
            real: real_cold,
        },
    ];
    println!("| measurement | simulation | real control plane |\n|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} |", r.what, r.sim, r.real);
    }
}
