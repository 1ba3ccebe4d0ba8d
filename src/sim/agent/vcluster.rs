//! The simulated `vcluster create NAME --namespace NS --restore URL -f values.yaml`, as
//! the provisioning Job's pod runs it: it creates what the vcluster chart creates
//! (DESIGN.md) and records which snapshot the backing store was restored from.

use super::snapshots::Snapshots;
use crate::k8s::create_if_absent;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::Api;
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// On the vcluster's config Secret: the snapshot its backing store holds. The
/// simulation's stand-in for the data on the vcluster's volume; nothing in showroom
/// reads it.
pub const RESTORED_FROM: &str = "sim.showroom.dev/restored-from";
/// On the same Secret: how many times the snapshot was restored (each restore starts
/// the apps' data afresh).
pub const RESTORES: &str = "sim.showroom.dev/restores";
pub const SYNCER_IMAGE: &str = "ghcr.io/loft-sh/vcluster-pro:0.36.1";

/// What `vcluster create` was asked to do, read from a container's command line.
#[derive(Debug, PartialEq)]
pub struct CreateCall {
    pub name: String,
    pub namespace: Option<String>,
    pub restore: Option<String>,
    pub values_file: Option<String>,
}

pub fn parse_create(args: &[String]) -> Option<CreateCall> {
    let pos = args.iter().position(|a| a == "create")?;
    // `vcluster create`, not `vcluster snapshot create`.
    if pos == 0 || !args[pos - 1].ends_with("vcluster") {
        return None;
    }
    let name = args.get(pos + 1)?.clone();
    let flag = |f: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            if a == f {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&format!("{f}=")).map(str::to_string)
            }
        })
    };
    Some(CreateCall {
        name,
        namespace: flag("--namespace").or_else(|| flag("-n")),
        restore: flag("--restore"),
        values_file: flag("-f").or_else(|| flag("--values")),
    })
}

/// What `vcluster restore NAME URL` was asked to do.
#[derive(Debug, PartialEq)]
pub struct RestoreCall {
    pub name: String,
    pub url: String,
    pub namespace: Option<String>,
}

pub fn parse_restore(args: &[String]) -> Option<RestoreCall> {
    let pos = args.iter().position(|a| a == "restore")?;
    if !args[..pos].iter().any(|a| a.ends_with("vcluster")) {
        return None;
    }
    let (name, url, namespace) = name_url_namespace(&args[pos + 1..])?;
    Some(RestoreCall {
        name,
        url,
        namespace,
    })
}

/// `NAME URL [--namespace NS]` in any order of flags, as `vcluster restore` and
/// `vcluster snapshot create` take them.
pub(super) fn name_url_namespace(rest: &[String]) -> Option<(String, String, Option<String>)> {
    let mut positional = Vec::new();
    let mut namespace = None;
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i].as_str();
        if a == "--namespace" || a == "-n" {
            namespace = rest.get(i + 1).cloned();
            i += 2;
            continue;
        }
        if let Some(ns) = a.strip_prefix("--namespace=") {
            namespace = Some(ns.to_string());
        } else if !a.starts_with('-') {
            positional.push(a.to_string());
        }
        i += 1;
    }
    Some((
        positional.first()?.clone(),
        positional.get(1)?.clone(),
        namespace,
    ))
}

/// Runs `vcluster restore`: the vcluster's backing store gets the snapshot's data
/// again and the vcluster restarts; like the CLI, it returns once the vcluster is up.
pub async fn restore(
    client: &Client,
    snapshots: &Snapshots,
    pod: &Pod,
    call: &RestoreCall,
) -> Result<String, String> {
    let ns = call
        .namespace
        .clone()
        .unwrap_or_else(|| pod.namespace().unwrap_or_default());
    let name = &call.name;
    let Some(snapshot) = snapshots.get(&call.url) else {
        return Err(format!(
            "fatal: restore vcluster {name}: pull snapshot {}: not found",
            call.url
        ));
    };
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let config_name = format!("vc-config-{name}");
    let config = retrying(|| secrets.get_opt(&config_name))
        .await?
        .ok_or_else(|| format!("fatal: vcluster {name} not found in namespace {ns}"))?;
    let restores: u64 = config
        .annotations()
        .get(RESTORES)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let patch = kube::api::Patch::Merge(
        json!({"metadata": {"annotations": {RESTORED_FROM: call.url, RESTORES: (restores + 1).to_string()}}}),
    );
    let pp = kube::api::PatchParams::default();
    retrying(|| secrets.patch(&config_name, &pp, &patch)).await?;
    // The vcluster restarts on the restored data.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod_name = format!("{name}-0");
    let old = retrying(|| pods.get_opt(&pod_name)).await?;
    let _ = pods.delete(&format!("{name}-0"), &Default::default()).await;
    let old_uid = old.and_then(|p| p.uid());
    let deadline =
        std::time::Instant::now() + snapshot.boot_time + std::time::Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(p)) = pods.get_opt(&format!("{name}-0")).await
            && p.uid() != old_uid
            && p.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        {
            return Ok(format!("done: vcluster {name} restored from {}", call.url));
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(format!(
        "fatal: vcluster {name} did not come back after the restore"
    ))
}

/// The command line of a pod's first container.
pub fn command_line(pod: &Pod) -> Vec<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| {
            c.command
                .clone()
                .unwrap_or_default()
                .into_iter()
                .chain(c.args.clone().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn from_json<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

/// The values file the pod mounts, read the way the kubelet would: from the ConfigMap
/// behind the volume mounted at the file's directory.
async fn values_of(client: &Client, pod: &Pod, file: &str) -> Result<Value, String> {
    let ns = pod.namespace().unwrap_or_default();
    let spec = pod.spec.as_ref().ok_or("pod has no spec")?;
    let container = spec.containers.first().ok_or("pod has no container")?;
    let (dir, key) = file.rsplit_once('/').ok_or("values path is not absolute")?;
    let mount = container
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path.trim_end_matches('/') == dir)
        .ok_or_else(|| format!("open {file}: no such file or directory"))?;
    let cm_name = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .and_then(|v| v.config_map.as_ref())
        .map(|c| c.name.clone())
        .ok_or_else(|| format!("open {file}: no such file or directory"))?;
    let cms = Api::<ConfigMap>::namespaced(client.clone(), &ns);
    let cm = retrying(|| cms.get_opt(&cm_name))
        .await?
        .ok_or_else(|| format!("open {file}: configmap {cm_name} not found"))?;
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| format!("open {file}: no such file or directory"))?;
    serde_saphyr::from_str::<Value>(text).map_err(|e| format!("parsing {file}: {e}"))
}

/// Like client-go under helm: a throttled request (429) or a server error (5xx) is
/// tried again a few times before the CLI gives up.
pub(super) async fn retrying<T, F, Fut>(mut call: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let mut last = String::new();
    for attempt in 0..6u64 {
        match call().await {
            Ok(v) => return Ok(v),
            Err(kube::Error::Api(s)) if s.code == 429 || s.code >= 500 => last = s.message,
            Err(e) => return Err(e.to_string()),
        }
        tokio::time::sleep(std::time::Duration::from_millis(50 * (attempt + 1))).await;
    }
    Err(last)
}

/// Runs `vcluster create` for a pod: Ok(output) or Err(error output), like the CLI's
/// exit status and what it prints.
pub async fn create(
    client: &Client,
    snapshots: &Snapshots,
    pod: &Pod,
    call: &CreateCall,
) -> Result<String, String> {
    let ns = call
        .namespace
        .clone()
        .unwrap_or_else(|| pod.namespace().unwrap_or_default());
    let name = &call.name;
    let values = match &call.values_file {
        Some(f) => values_of(client, pod, f).await?,
        None => json!({}),
    };
    if let Some(url) = &call.restore
        && snapshots.get(url).is_none()
    {
        return Err(format!(
            "fatal: restore vcluster {name}: pull snapshot {url}: not found"
        ));
    }
    objects(client, &ns, name, &values, call.restore.as_deref())
        .await
        .map_err(|e| format!("fatal: create vcluster {name}: {e}"))?;
    Ok(format!("done: vcluster {name} created in namespace {ns}"))
}

async fn objects(
    client: &Client,
    ns: &str,
    name: &str,
    values: &Value,
    restored_from: Option<&str>,
) -> Result<(), String> {
    async fn put<K>(client: &Client, ns: &str, v: Value) -> Result<(), String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + DeserializeOwned,
        K::DynamicType: Default,
    {
        let obj: K = from_json(v)?;
        let api = Api::<K>::namespaced(client.clone(), ns);
        retrying(|| create_if_absent(&api, &obj)).await.map(drop)
    }
    let labels = json!({"app": "vcluster", "release": name});
    for sa in [format!("vc-{name}"), format!("vc-workload-{name}")] {
        put::<ServiceAccount>(
            client,
            ns,
            json!({"metadata": {"name": sa, "labels": labels}}),
        )
        .await?;
    }
    put::<Role>(
        client,
        ns,
        json!({"metadata": {"name": format!("vc-{name}"), "labels": labels},
        "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
    )
    .await?;
    put::<RoleBinding>(client, ns, json!({"metadata": {"name": format!("vc-{name}"), "labels": labels},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("vc-{name}")},
        "subjects": [{"kind": "ServiceAccount", "name": format!("vc-{name}"), "namespace": ns}]}))
    .await?;
    let mut annotations = json!({});
    if let Some(url) = restored_from {
        annotations[RESTORED_FROM] = json!(url);
    }
    let config = serde_saphyr::to_string(values).unwrap_or_default();
    put::<Secret>(client, ns, json!({"metadata": {"name": format!("vc-config-{name}"), "labels": labels, "annotations": annotations},
        "stringData": {"config.yaml": config}}))
    .await?;
    let ports = json!([{"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"}]);
    put::<Service>(
        client,
        ns,
        json!({"metadata": {"name": name, "labels": labels},
        "spec": {"selector": labels, "ports": ports}}),
    )
    .await?;
    put::<Service>(
        client,
        ns,
        json!({"metadata": {"name": format!("{name}-headless"), "labels": labels},
        "spec": {"clusterIP": "None", "selector": labels, "ports": ports}}),
    )
    .await?;
    // The chart's defaults, overridden by values, as `helm install` would render them.
    let resources = values
        .pointer("/controlPlane/statefulSet/resources")
        .cloned()
        .unwrap_or_else(
            || json!({"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}),
        );
    put::<StatefulSet>(client, ns, json!({"metadata": {"name": name, "labels": labels},
        "spec": {"replicas": 1, "serviceName": format!("{name}-headless"), "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}],
            "template": {"metadata": {"labels": labels}, "spec": {
                "serviceAccountName": format!("vc-{name}"), "terminationGracePeriodSeconds": 10,
                "containers": [{"name": "syncer", "image": SYNCER_IMAGE, "resources": resources,
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}}}))
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vcluster_create_arguments() {
        let args: Vec<String> = [
            "vcluster",
            "create",
            "demo-1",
            "--namespace",
            "demo-1",
            "--restore=oci://x/y:1",
            "-f",
            "/v/vcluster.yaml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            parse_create(&args),
            Some(CreateCall {
                name: "demo-1".into(),
                namespace: Some("demo-1".into()),
                restore: Some("oci://x/y:1".into()),
                values_file: Some("/v/vcluster.yaml".into()),
            })
        );
        assert_eq!(parse_create(&["echo".to_string()]), None);
        assert_eq!(
            parse_create(&["kubectl".to_string(), "create".to_string(), "x".to_string()]),
            None
        );
    }
}
