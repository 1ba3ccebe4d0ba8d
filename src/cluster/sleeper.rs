//! Sleep and wake exactly as `vcluster pause` and `vcluster resume` do, so that an
//! operator's vcluster CLI and showroom agree about a demo's state.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;

pub const PAUSED: &str = "loft.sh/paused";
pub const PAUSED_REPLICAS: &str = "loft.sh/paused-replicas";
pub const PAUSED_DATE: &str = "loft.sh/paused-date";
pub const MANAGED_BY: &str = "vcluster.loft.sh/managed-by";

/// Scales the vcluster to 0 with the pause annotations, then deletes its workload pods.
/// Safe to repeat: a second pause keeps the replica count recorded by the first.
pub async fn pause(client: &Client, ns: &str, name: &str) -> Result<(), kube::Error> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    if let Some(sts) = sets.get_opt(name).await? {
        let already = sts.annotations().get(PAUSED).is_some_and(|v| v == "true");
        if !already {
            let replicas = sts
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1)
                .max(1);
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let patch = json!({
                "metadata": {"annotations": {PAUSED: "true", PAUSED_REPLICAS: replicas.to_string(), PAUSED_DATE: now}},
                "spec": {"replicas": 0},
            });
            sets.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(&format!("{MANAGED_BY}={name}")),
    )
    .await?;
    Ok(())
}

/// Restores the recorded replicas and removes the pause annotations; the syncer
/// recreates the workload pods.
pub async fn resume(client: &Client, ns: &str, name: &str) -> Result<(), kube::Error> {
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let Some(sts) = sets.get_opt(name).await? else {
        return Ok(());
    };
    let replicas: i32 = sts
        .annotations()
        .get(PAUSED_REPLICAS)
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
        .max(1);
    let current = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    if current == replicas && !sts.annotations().contains_key(PAUSED) {
        return Ok(());
    }
    let patch = json!({
        "metadata": {"annotations": {PAUSED: null, PAUSED_REPLICAS: null, PAUSED_DATE: null}},
        "spec": {"replicas": replicas},
    });
    sets.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}

/// Running with every wanted replica ready.
pub fn is_ready(sts: &StatefulSet) -> bool {
    ready(
        sts.spec.as_ref().and_then(|s| s.replicas),
        sts.status.as_ref().and_then(|s| s.ready_replicas),
    )
}

/// Running with every wanted replica ready, from the two counts (a missing spec count
/// means 1, as in Kubernetes).
pub fn ready(wanted: Option<i32>, ready: Option<i32>) -> bool {
    let want = wanted.unwrap_or(1);
    want > 0 && ready.unwrap_or(0) >= want
}
