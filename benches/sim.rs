//! Benchmarks for the simulated cluster and showroom's paths over it.
//! `cargo bench --bench sim` prints a table; numbers go into the README.
//! Run on a shared, noisy machine: compare ratios within one run, not across runs.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;
use showroom::sim::{SimCluster, SimOptions};
use std::time::{Duration, Instant};

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let objects = if quick { 1000 } else { 10_000 };
    println!("| measurement | value |\n|---|---|");

    // Memory while holding N objects created over HTTP.
    let sim = SimCluster::start(SimOptions {
        agent: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = sim.client().await.unwrap();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "bench"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let before = rss_mib();
    println!("| process RSS with an empty simulation running | {before:.0} MiB |");
    let t = Instant::now();
    let per_task = objects / 8;
    let tasks: Vec<_> = (0..8)
        .map(|w| {
            let cms = cms.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let cm: ConfigMap = serde_json::from_value(json!({
                        "metadata": {"name": format!("cm-{w}-{i}"), "labels": {"app": "bench", "worker": w.to_string()}},
                        "data": {"payload": "x".repeat(200)}})).unwrap();
                    cms.create(&PostParams::default(), &cm).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let took = t.elapsed();
    let after = rss_mib();
    println!(
        "| create {objects} ConfigMaps over HTTP (8 clients) | {:.2} s ({:.0}/s) |",
        took.as_secs_f64(),
        objects as f64 / took.as_secs_f64()
    );
    println!(
        "| process RSS holding {} objects | {:.0} MiB (+{:.0} MiB over empty) |",
        sim.store.object_count(),
        after,
        after - before
    );

    // List and watch.
    let mut lists = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let l = cms
            .list(&ListParams::default().labels("worker=3"))
            .await
            .unwrap();
        assert_eq!(l.items.len(), per_task);
        lists.push(t.elapsed());
    }
    println!(
        "| list with labelSelector over {objects} objects ({per_task} match, median of 5) | {:.1} ms |",
        median(lists).as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let all = cms.list(&ListParams::default()).await.unwrap();
    println!(
        "| list all {} objects | {:.1} ms |",
        all.items.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let rv = all.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut lat = Vec::new();
    for i in 0..50 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("w-{i}")}})).unwrap();
        let t = Instant::now();
        cms.create(&PostParams::default(), &cm).await.unwrap();
        let _ = stream.next().await;
        lat.push(t.elapsed());
    }
    println!(
        "| create-to-watch-event latency (median of 50) | {:.2} ms |",
        median(lat).as_secs_f64() * 1e3
    );
    drop(sim);

    // Start-up: from nothing to a served, client-ready API (agent included).
    let mut starts = Vec::new();
    for _ in 0..15 {
        let t = Instant::now();
        let sim = SimCluster::start(SimOptions::default()).await.unwrap();
        let client = sim.client().await.unwrap();
        Api::<Namespace>::all(client).get("default").await.unwrap();
        starts.push(t.elapsed());
    }
    println!(
        "| sim start-up to first answered request (median of 15) | {:.1} ms |",
        median(starts).as_secs_f64() * 1e3
    );

    // showroom over the simulation: from POST to Ready with a zero boot delay.
    demo_bench(quick).await;
}

async fn demo_bench(quick: bool) {
    use showroom::app;
    use showroom::domain::template::Catalogue;
    use showroom::domain::users::{Role, UserEntry, Users, hash_token};
    use std::sync::Arc;
    let cat = Arc::new(
        Catalogue::load_dir(std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/snapshots"
        )))
        .unwrap(),
    );
    let snapshots = Arc::new(showroom::sim::agent::Snapshots::default());
    snapshots.publish_catalogue(&cat, Duration::ZERO, Duration::ZERO);
    let sim = SimCluster::start(SimOptions {
        snapshots,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = sim.client().await.unwrap();
    app::install_crd(&client).await.unwrap();
    let users = Arc::new(
        Users::from_entries(vec![UserEntry {
            name: "bench".into(),
            role: Role::Admin,
            token_sha256: vec![hash_token("t")],
            max_demos: Some(1000),
            password_argon2: None,
        }])
        .unwrap(),
    );
    let mut cfg = app::Config::new("127.0.0.1:0".parse().unwrap());
    cfg.max_demos_per_user = 1000;
    let running = app::start(client.clone(), cat, users, cfg).await.unwrap();
    let demos: Api<showroom::cluster::crd::Demo> = Api::all(client.clone());
    let n = if quick { 5 } else { 20 };
    let t = Instant::now();
    for i in 0..n {
        let mut d = showroom::cluster::crd::Demo::new(
            &format!("demo-bench{i}"),
            showroom::cluster::crd::DemoSpec {
                template: "web-shop".into(),
                owner: "bench".into(),
                title: None,
                lifecycle: showroom::cluster::crd::DemoLifecycle {
                    sleep_after_idle: "1h".into(),
                    delete_after_idle: "2h".into(),
                    max_lifetime: "1d".into(),
                    extension: None,
                },
                desired_state: Default::default(),
                share_links: vec![],
                pool: None,
                claimed_at: None,
                reset_generation: 0,
            },
        );
        d.metadata.labels = Some(
            [(
                showroom::cluster::crd::INSTANCE_LABEL.to_string(),
                "default".to_string(),
            )]
            .into(),
        );
        demos.create(&PostParams::default(), &d).await.unwrap();
    }
    loop {
        let ready = demos
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            // Only these (a template's warm pool adds demos of its own).
            .filter(|d| d.name_any().starts_with("demo-bench"))
            .filter(|d| d.phase() == showroom::domain::lifecycle::Phase::Ready)
            .count();
        if ready == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "| {n} demos from create to Ready, boot delay 0 (controller + sim agent overhead) | {:.2} s |",
        t.elapsed().as_secs_f64()
    );
    running.stop().await;
}
