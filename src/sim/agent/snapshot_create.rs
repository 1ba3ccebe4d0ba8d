//! The simulated `vcluster snapshot create NAME URL --namespace NS`: like the real CLI
//! it only files a snapshot request (a ConfigMap labelled
//! `vcluster.loft.sh/snapshot-request` in the vcluster's namespace) and returns; the
//! vcluster's control plane then writes the snapshot and records how that went in the
//! request. Here the agent plays that control plane: after the time the origin
//! snapshot takes to restore, it publishes the new URL with the same content, or marks
//! the request Failed when the registry refuses the push.

use super::snapshots::Snapshots;
use super::vcluster::{RESTORED_FROM, retrying};
use crate::cluster::saving::{SNAPSHOT_REQUEST_KEY, SNAPSHOT_REQUEST_LABEL};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::sync::Arc;

/// What `vcluster snapshot create` was asked to do.
#[derive(Debug, PartialEq)]
pub struct SnapshotCall {
    pub name: String,
    pub url: String,
    pub namespace: Option<String>,
}

pub fn parse(args: &[String]) -> Option<SnapshotCall> {
    let pos = args
        .windows(2)
        .position(|w| w[0] == "snapshot" && w[1] == "create")?;
    if pos == 0 || !args[pos - 1].ends_with("vcluster") {
        return None;
    }
    let (name, url, namespace) = super::vcluster::name_url_namespace(&args[pos + 2..])?;
    Some(SnapshotCall {
        name,
        url,
        namespace,
    })
}

fn request_json(url: &str, phase: &str, error: Option<&str>) -> String {
    let mut v = json!({"spec": {"url": url}, "status": {"phase": phase}});
    if let Some(e) = error {
        v["status"]["error"] = json!({"message": e});
    }
    v.to_string()
}

/// Files the request (Ok: what the CLI prints) and carries it out in the background.
pub async fn create(
    client: &Client,
    snapshots: &Arc<Snapshots>,
    pod: &Pod,
    call: &SnapshotCall,
) -> Result<String, String> {
    let ns = call
        .namespace
        .clone()
        .unwrap_or_else(|| pod.namespace().unwrap_or_default());
    let name = &call.name;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
    let running = retrying(|| sets.get_opt(name))
        .await?
        .is_some_and(|s| s.spec.and_then(|sp| sp.replicas).unwrap_or(1) > 0);
    if !running {
        return Err(format!(
            "fatal: vcluster {name} is not running in namespace {ns}"
        ));
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let config = format!("vc-config-{name}");
    let from = retrying(|| secrets.get_opt(&config))
        .await?
        .and_then(|s| s.annotations().get(RESTORED_FROM).cloned());
    let content = from.and_then(|u| snapshots.get(&u));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let req_name = format!("{name}-snapshot-request-{}", fastrand::u32(..));
    let cm: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": req_name, "labels": {SNAPSHOT_REQUEST_LABEL: "true", "vcluster.loft.sh/managed-by": name}},
        "data": {SNAPSHOT_REQUEST_KEY: request_json(&call.url, "InProgress", None)},
    }))
    .map_err(|e| e.to_string())?;
    let pp = PostParams::default();
    retrying(|| cms.create(&pp, &cm)).await?;

    // The vcluster's control plane writes the snapshot.
    let (client, snapshots, url) = (client.clone(), snapshots.clone(), call.url.clone());
    tokio::spawn(async move {
        let outcome = match (&content, snapshots.refuses_push(&url)) {
            (_, Some(why)) => Err(format!("push {url}: {why}")),
            (None, _) => Err("the vcluster's data could not be read".to_string()),
            (Some(c), None) => {
                tokio::time::sleep(c.restore_time).await;
                snapshots.publish(&url, c.clone());
                Ok(())
            }
        };
        let data = match &outcome {
            Ok(()) => request_json(&url, "Completed", None),
            Err(e) => request_json(&url, "Failed", Some(e)),
        };
        let patch = Patch::Merge(json!({"data": {SNAPSHOT_REQUEST_KEY: data}}));
        let pp = PatchParams::default();
        let _ = retrying(|| cms.patch(&req_name, &pp, &patch)).await;
        drop(client);
    });
    Ok(format!(
        "snapshot request for vcluster {name} to {} created",
        call.url
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vcluster_snapshot_create_arguments() {
        let args: Vec<String> = [
            "vcluster",
            "snapshot",
            "create",
            "demo-1",
            "oci://r/x:1",
            "--namespace",
            "demo-1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            parse(&args),
            Some(SnapshotCall {
                name: "demo-1".into(),
                url: "oci://r/x:1".into(),
                namespace: Some("demo-1".into()),
            })
        );
        assert_eq!(
            super::super::vcluster::parse_create(&args),
            None,
            "not a vcluster create"
        );
    }
}
