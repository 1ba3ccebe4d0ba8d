//! The cleanup sweep: same lifecycle rules as the controller, and it never deletes a
//! namespace that fails any ownership check.

mod common;

use common::harness::*;
use common::{TestCluster, eventually};
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use serde_json::json;
use showroom::cluster::crd::Demo;
use showroom::cluster::sweeper::{self, SweepOptions};
use showroom::metrics::Metrics;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

async fn make_ns(
    tc: &TestCluster,
    name: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) {
    let ns: Namespace = serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels, "annotations": annotations}}),
    )
    .unwrap();
    Api::<Namespace>::all(tc.client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

async fn exists(tc: &TestCluster, name: &str) -> bool {
    Api::<Namespace>::all(tc.client.clone())
        .get_opt(name)
        .await
        .unwrap()
        .is_some_and(|n| n.metadata.deletion_timestamp.is_none())
}

scenarios!(
    orphans_are_deleted_only_when_every_check_passes,
    the_sweep_applies_the_lifecycle_when_the_controller_is_down,
    the_scheduled_sweep_works_from_the_caches_without_listing,
    a_sweep_skips_what_changed_since_it_planned,
);

/// How many times the API server has listed `resource` (its apiserver_request_total).
async fn lists_of(tc: &TestCluster, resource: &str) -> u64 {
    let req = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = tc
        .client
        .request_text(req)
        .await
        .expect("API server metrics");
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("verb=\"LIST\"")
                && l.contains(&format!("resource=\"{resource}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

async fn orphans_are_deleted_only_when_every_check_passes(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let live = Client::new(&app, SALES)
        .start(r#"{"template": "shop"}"#)
        .await["name"]
        .as_str()
        .unwrap()
        .to_string();
    let uid = eventually(T, "demo uid", || async {
        Api::<Demo>::all(tc.client.clone())
            .get(&live)
            .await
            .ok()
            .and_then(|d| d.uid())
    })
    .await;
    let s = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let instance = tc.instance.name();
    let managed =
        json!({"app.kubernetes.io/managed-by": "showroom", "showroom.dev/instance": instance});
    let dead = json!({"showroom.dev/demo-uid": "no-such-demo"});
    let orphan = format!("demo-orphan-{s}");
    // Another installation's demo namespace: not this sweep's business at all.
    let foreign = format!("demo-staging-{s}");
    make_ns(
        &tc,
        &foreign,
        json!({"app.kubernetes.io/managed-by": "showroom", "showroom.dev/instance": "staging"}),
        dead.clone(),
    )
    .await;
    let kept = [
        (format!("demo-nolabel-{s}"), json!({}), dead.clone()),
        (
            format!("demo-helm-{s}"),
            json!({"app.kubernetes.io/managed-by": "helm"}),
            dead.clone(),
        ),
        (format!("team-{s}"), managed.clone(), dead.clone()),
        (format!("demo-noanno-{s}"), managed.clone(), json!({})),
        (
            format!("demo-noinstance-{s}"),
            json!({"app.kubernetes.io/managed-by": "showroom"}),
            dead.clone(),
        ),
        (
            format!("demo-live-{s}"),
            managed.clone(),
            json!({"showroom.dev/demo-uid": uid}),
        ),
    ];
    make_ns(&tc, &orphan, managed.clone(), dead.clone()).await;
    for (n, l, a) in &kept {
        make_ns(&tc, n, l.clone(), a.clone()).await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let young = format!("demo-young-{s}");
    make_ns(&tc, &young, managed.clone(), dead.clone()).await;
    let opts = SweepOptions {
        orphan_grace: chrono::Duration::seconds(2),
        stuck_after: chrono::Duration::minutes(10),
    };

    // --dry-run through the CLI: a table, and nothing changes.
    let kubeconfig = tc.kubeconfig.clone();
    let instance = instance.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let instance = instance.as_str();
        std::process::Command::new(env!("CARGO_BIN_EXE_showroom"))
            .args([
                "sweep",
                "--dry-run",
                "--instance",
                instance,
                "--orphan-grace",
                "2s",
                "--snapshots",
                concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
            ])
            .env("KUBECONFIG", kubeconfig)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{table} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.starts_with("KIND") && table.contains("dry run"),
        "{table}"
    );
    let row = |n: &str| {
        table
            .lines()
            .find(|l| l.contains(n))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(&orphan).contains("delete-orphan"), "{table}");
    for n in [
        format!("demo-nolabel-{s}"),
        format!("demo-helm-{s}"),
        format!("demo-noanno-{s}"),
        format!("demo-noinstance-{s}"),
        young.clone(),
        format!("team-{s}"),
    ] {
        assert!(
            row(&n).contains("report"),
            "{n} is reported, not deleted:\n{table}"
        );
    }
    assert!(
        row(&format!("demo-live-{s}")).is_empty(),
        "a live demo's namespace is not even reported"
    );
    assert!(
        row(&foreign).is_empty(),
        "another installation's namespace is not even reported"
    );
    assert!(exists(&tc, &orphan).await, "dry run changed nothing");

    // The real pass: only the orphan goes.
    sweeper::sweep_listed(
        &tc.client,
        &tc.instance,
        &test_catalogue(),
        &opts,
        &Metrics::default(),
    )
    .await
    .unwrap();
    eventually(T, "orphan deleted", || async {
        (!exists(&tc, &orphan).await).then_some(())
    })
    .await;
    for (n, _, _) in &kept {
        assert!(exists(&tc, n).await, "{n} must be kept");
    }
    assert!(exists(&tc, &young).await, "too young to be deleted");
    assert!(exists(&tc, &foreign).await, "another installation's");
    assert!(
        exists(&tc, &live).await,
        "the live demo's namespace is untouched"
    );
    app.stop().await;
}

/// One sweep pass, which must have planned `action` for demo `name`.
async fn sweep_expecting(tc: &TestCluster, opts: &SweepOptions, name: &str, action: &str) {
    let items = sweeper::sweep_listed(
        &tc.client,
        &tc.instance,
        &test_catalogue(),
        opts,
        &Metrics::default(),
    )
    .await
    .unwrap();
    assert!(
        items.iter().any(|i| i.name == name && i.action == action),
        "expected {action} for {name}: {items:?}"
    );
}

async fn the_sweep_applies_the_lifecycle_when_the_controller_is_down(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let carol = Client::new(&app, ADMIN);
    let name = carol
        .start(r#"{"template": "shop", "sleepAfterIdle": "2s", "deleteAfterIdle": "5s"}"#)
        .await["name"]
        .as_str()
        .unwrap()
        .to_string();
    carol.wait_phase(&name, Some("Ready"), T).await;
    app.kill(); // no controller from here on
    let demos: Api<Demo> = Api::all(tc.client.clone());
    let opts = SweepOptions {
        orphan_grace: chrono::Duration::minutes(10),
        stuck_after: chrono::Duration::zero(),
    };
    let phase = |d: Demo| {
        d.status
            .and_then(|s| s.phase)
            .map(|p| p.as_str().to_string())
    };
    tokio::time::sleep(Duration::from_millis(2200)).await;
    sweep_expecting(&tc, &opts, &name, "sleep").await;
    assert_eq!(
        phase(demos.get(&name).await.unwrap()).as_deref(),
        Some("Sleeping")
    );
    tokio::time::sleep(Duration::from_millis(3000)).await;
    sweep_expecting(&tc, &opts, &name, "delete-idle").await;
    // Without a controller the finalizer holds the Demo; the next sweep retries the
    // namespace deletion, and a restarted showroom releases the Demo.
    sweep_expecting(&tc, &opts, &name, "retry-delete").await;
    let app = start_showroom(&tc, test_config()).await;
    Client::new(&app, ADMIN).wait_phase(&name, None, T).await;
    assert!(!exists(&tc, &name).await);
    app.stop().await;
}

async fn the_scheduled_sweep_works_from_the_caches_without_listing(tc: TestCluster) {
    let mut cfg = test_config();
    cfg.sweep_schedule = Some("* * * * * *".into());
    cfg.sweep.orphan_grace = chrono::Duration::seconds(1);
    let app = start_showroom(&tc, cfg).await;
    // Ready: the caches have listed once.
    eventually(T, "ready", || async {
        let url = format!("http://{}/readyz", app.addr);
        (http("GET", &url, None, None).await.0 == 200).then_some(())
    })
    .await;
    let listed = lists_of(&tc, "demos").await;
    let s = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let managed = json!({"app.kubernetes.io/managed-by": "showroom", "showroom.dev/instance": tc.instance.name()});
    let orphan = format!("demo-orphan-{s}");
    let unannotated = format!("demo-noanno-{s}");
    make_ns(
        &tc,
        &orphan,
        managed.clone(),
        json!({"showroom.dev/demo-uid": "gone"}),
    )
    .await;
    make_ns(&tc, &unannotated, managed, json!({})).await;
    eventually(T, "the orphan deleted by the scheduled sweep", || async {
        (!exists(&tc, &orphan).await).then_some(())
    })
    .await;
    // A few more sweeps: the lookalike stays, and the sweeps read only the caches.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        exists(&tc, &unannotated).await,
        "an unannotated namespace is kept"
    );
    assert_eq!(
        lists_of(&tc, "demos").await,
        listed,
        "the scheduled sweeps listed no Demos: they plan from the cache"
    );
    app.stop().await;
}

async fn a_sweep_skips_what_changed_since_it_planned(tc: TestCluster) {
    let app = start_showroom(&tc, test_config()).await;
    let carol = Client::new(&app, ADMIN);
    let name = carol
        .start(r#"{"template": "shop", "sleepAfterIdle": "2s", "deleteAfterIdle": "5s"}"#)
        .await["name"]
        .as_str()
        .unwrap()
        .to_string();
    carol.wait_phase(&name, Some("Ready"), T).await;
    app.kill(); // the sweep alone from here on
    let s = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let orphan = format!("demo-orphan-{s}");
    let managed = json!({"app.kubernetes.io/managed-by": "showroom", "showroom.dev/instance": tc.instance.name()});
    let dead = json!({"showroom.dev/demo-uid": "gone"});
    make_ns(&tc, &orphan, managed.clone(), dead.clone()).await;
    tokio::time::sleep(Duration::from_millis(5500)).await;
    let opts = SweepOptions {
        orphan_grace: chrono::Duration::zero(),
        stuck_after: chrono::Duration::minutes(10),
    };
    let catalogue = test_catalogue();
    let plan_now = || async {
        let (demos, namespaces) = sweeper::list_all(&tc.client, &tc.instance).await.unwrap();
        sweeper::plan(
            &demos,
            &namespaces,
            &tc.instance,
            &catalogue,
            &opts,
            chrono::Utc::now(),
        )
    };
    let plan = plan_now().await;
    let planned = |p: &sweeper::Plan, n: &str, action: &str| {
        p.items().iter().any(|i| i.name == n && i.action == action)
    };
    assert!(planned(&plan, &name, "delete-idle"), "{:?}", plan.items());
    assert!(
        planned(&plan, &orphan, "delete-orphan"),
        "{:?}",
        plan.items()
    );

    // Meanwhile the demo changes, and the orphan's name is taken by a new namespace.
    let demos: Api<Demo> = Api::all(tc.client.clone());
    demos
        .patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    Api::<Namespace>::all(tc.client.clone())
        .delete(&orphan, &Default::default())
        .await
        .unwrap();
    eventually(T, "the first namespace gone", || async {
        Api::<Namespace>::all(tc.client.clone())
            .get_opt(&orphan)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    make_ns(&tc, &orphan, managed, dead).await;

    // The stale plan changes neither.
    let results =
        sweeper::execute(&tc.client, &tc.instance, &plan, &opts, &Metrics::default()).await;
    assert!(
        results.iter().all(|(_, r)| r.is_ok()),
        "skipped, not failed"
    );
    let d = demos.get(&name).await.unwrap();
    assert!(
        d.metadata.deletion_timestamp.is_none(),
        "a demo changed since the plan is not deleted"
    );
    assert!(
        exists(&tc, &orphan).await,
        "a namespace that is not the planned one is not deleted"
    );

    // A fresh plan sees them as they are now, and acts.
    let plan = plan_now().await;
    assert!(planned(&plan, &name, "delete-idle"), "{:?}", plan.items());
    sweeper::execute(&tc.client, &tc.instance, &plan, &opts, &Metrics::default()).await;
    let d = demos.get(&name).await.unwrap();
    assert!(
        d.metadata.deletion_timestamp.is_some(),
        "deleted (its finalizer waits for showroom)"
    );
    eventually(T, "the new orphan deleted", || async {
        (!exists(&tc, &orphan).await).then_some(())
    })
    .await;
}
