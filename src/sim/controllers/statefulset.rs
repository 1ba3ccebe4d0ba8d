//! The StatefulSet controller: keeps pods `<name>-0 .. <name>-(n-1)` (in order, or all
//! at once with `podManagementPolicy: Parallel`), makes each pod's PVCs from the
//! volume claim templates (kept after the pods, as `Retain` says), removes pods past
//! the replica count, and counts ready pods into the status.

use crate::sim::object::*;
use crate::sim::store::{DeleteOptions, OwnedPod, Part, Store};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

fn ready(p: &OwnedPod) -> bool {
    p.state.ready && !p.deleting
}

/// A core/v1 Event about an object, as controllers leave them (`kubectl describe`).
pub fn record_event(store: &Store, ns: &str, kind: &str, name: &str, reason: &str, msg: &str) {
    let Some(rt) = store.resource_type(&(String::new(), "v1".into(), "events".into())) else {
        return;
    };
    let now = now_rfc3339();
    let _ = store.create(
        &rt,
        ns,
        json!({"metadata": {"generateName": format!("{name}.")},
            "involvedObject": {"kind": kind, "name": name, "namespace": ns},
            "reason": reason, "message": msg, "type": "Warning", "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
            "source": {"component": "showroom-sim-controller-manager"}}),
    );
}

pub fn sync(store: &Store, ns: &str, name: &str) -> Option<Duration> {
    let sts_rt = store.resource_type(&("apps".into(), "v1".into(), "statefulsets".into()))?;
    let pod_rt = store.resource_type(&(String::new(), "v1".into(), "pods".into()))?;
    let pvc_rt =
        store.resource_type(&(String::new(), "v1".into(), "persistentvolumeclaims".into()))?;
    let sts = store.get(&sts_rt, ns, name).ok()?;
    if is_deleting(&sts) {
        return None;
    }
    let uid = meta(&sts, "uid")?;
    let spec = &sts["spec"];
    let want = spec["replicas"].as_u64().unwrap_or(1) as usize;
    let parallel = spec["podManagementPolicy"] == "Parallel";
    let pods: HashMap<String, OwnedPod> = store
        .lock()
        .pods_owned_by(ns, &uid)
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    let mut again = None;
    for i in 0..want {
        let pod_name = format!("{name}-{i}");
        match pods.get(&pod_name) {
            Some(p) if ready(p) => continue,
            Some(_) => {}
            None => {
                if let Err(e) = create_pod(store, &pod_rt, &pvc_rt, ns, name, &uid, spec, i) {
                    record_event(store, ns, "StatefulSet", name, "FailedCreate", &e);
                    again = Some(Duration::from_secs(1));
                }
            }
        }
        // OrderedReady: the next pod waits until this one is Running and Ready.
        if !parallel {
            break;
        }
    }
    for (pod_name, p) in &pods {
        let index = pod_name
            .rsplit('-')
            .next()
            .and_then(|i| i.parse::<usize>().ok());
        if index.is_some_and(|i| i >= want) && !p.deleting {
            let _ = store.delete(&pod_rt, ns, pod_name, &DeleteOptions::default());
        }
    }
    let live: Vec<_> = pods.values().filter(|p| !p.deleting).collect();
    let ready_n = live.iter().filter(|p| ready(p)).count();
    let mut status = json!({"replicas": live.len(), "observedGeneration": sts["metadata"]["generation"],
        "collisionCount": 0, "currentRevision": format!("{name}-1"), "updateRevision": format!("{name}-1")});
    // Counts of zero are left out, as the real status does.
    for (k, v) in [
        ("readyReplicas", ready_n),
        ("availableReplicas", ready_n),
        ("currentReplicas", live.len()),
        ("updatedReplicas", live.len()),
    ] {
        if v > 0 {
            status[k] = json!(v);
        }
    }
    // Unchanged (most syncs): no write; the store would find it a no-op too, but only
    // after parsing, copying and admitting the whole object.
    if sts.get("status") != Some(&status) {
        let _ = store.modify(&sts_rt, ns, name, Part::Status, |cur| {
            let mut n = cur.clone();
            n["status"] = status;
            Ok(n)
        });
    }
    again
}

#[allow(clippy::too_many_arguments)]
fn create_pod(
    store: &Store,
    pod_rt: &crate::sim::resources::ResourceType,
    pvc_rt: &crate::sim::resources::ResourceType,
    ns: &str,
    sts: &str,
    uid: &str,
    spec: &Value,
    index: usize,
) -> Result<(), String> {
    let pod_name = format!("{sts}-{index}");
    let selector = spec["selector"]["matchLabels"].clone();
    let mut volumes = spec["template"]["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for t in spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let tpl = t["metadata"]["name"].as_str().unwrap_or("data");
        let claim = format!("{tpl}-{pod_name}");
        if store.get(pvc_rt, ns, &claim).is_err() {
            let pvc =
                json!({"metadata": {"name": claim, "labels": selector}, "spec": t["spec"].clone()});
            if let Err(e) = store.create(pvc_rt, ns, pvc)
                && e.code != 409
            {
                return Err(e.message);
            }
        }
        volumes.push(json!({"name": tpl, "persistentVolumeClaim": {"claimName": claim}}));
    }
    let mut meta = spec["template"]
        .get("metadata")
        .cloned()
        .unwrap_or(json!({}));
    meta["name"] = json!(pod_name);
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    meta["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
    meta["labels"]["apps.kubernetes.io/pod-index"] = json!(index.to_string());
    meta["labels"]["controller-revision-hash"] = json!(format!("{sts}-1"));
    meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts,
        "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    let mut pod_spec = spec["template"]["spec"].clone();
    pod_spec["hostname"] = json!(pod_name);
    if let Some(svc) = spec["serviceName"].as_str() {
        pod_spec["subdomain"] = json!(svc);
    }
    if !volumes.is_empty() {
        pod_spec["volumes"] = json!(volumes);
    }
    match store.create(pod_rt, ns, json!({"metadata": meta, "spec": pod_spec})) {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e.message),
    }
}
