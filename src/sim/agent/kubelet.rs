//! The node: what a scheduler and a kubelet do, through the API only. It registers a
//! Node and renews its heartbeat Lease, binds unscheduled pods to it, and reports the
//! status of its pods: Running and Ready after the start-up time, or, for a Job's pod,
//! Succeeded or Failed once its command (the simulated vcluster CLI) has run. Deleted
//! pods are confirmed gone, as a kubelet does once their containers stopped.

use super::snapshots::Snapshots;
use super::vcluster::{self, RESTORED_FROM};
use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Kubelet {
    pub client: Client,
    pub node: String,
    pub snapshots: Arc<Snapshots>,
    /// The start-up time of each pod starting now, by uid, as a kubelet knows what it
    /// is starting: taken once (for a vcluster's pod it is read from its config
    /// Secret) and dropped once the pod's outcome is written or it is deleted. A pod
    /// removed at once (grace period 0) is never reconciled again, so entries also
    /// lapse a while after their start-up time (see `Starting::insert`).
    pub starting: std::sync::Mutex<Starting>,
}

/// The start-up times of the pods starting now, by uid, each with when it was looked
/// up.
#[derive(Default)]
pub struct Starting(std::collections::HashMap<String, (Duration, Instant)>);

/// How long past its start-up time an entry is kept: a pod still starting then has
/// its time looked up again, which gives the same answer.
const STARTING_LAPSES_AFTER: Duration = Duration::from_secs(300);

impl Starting {
    fn get(&self, uid: &str) -> Option<Duration> {
        self.0.get(uid).map(|(needed, _)| *needed)
    }
    /// Keeps `needed` for `uid`, and lets go of the entries that have lapsed.
    fn insert(&mut self, uid: String, needed: Duration, now: Instant) {
        self.0.retain(|_, (needed, since)| {
            now.saturating_duration_since(*since) < *needed + STARTING_LAPSES_AFTER
        });
        self.0.insert(uid, (needed, now));
    }
    fn remove(&mut self, uid: &str) {
        self.0.remove(uid);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Error(#[from] kube::Error);

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

fn micro_now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

fn node_conditions() -> Value {
    let t = now();
    let c = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": "showroom agent",
            "lastHeartbeatTime": t, "lastTransitionTime": t})
    };
    json!([
        c("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        c("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        c("PIDPressure", "False", "KubeletHasSufficientPID"),
        c("Ready", "True", "KubeletReady"),
    ])
}

impl Kubelet {
    /// Registers the Node (or takes over one of the same name) and reports it Ready.
    pub async fn register(&self) -> Result<(), kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node: Node = serde_json::from_value(json!({"metadata": {"name": self.node,
            "labels": {"kubernetes.io/hostname": self.node, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", "showroom.dev/agent": "true"}}}))
        .map_err(kube::Error::SerdeError)?;
        crate::k8s::create_if_absent(&nodes, &node).await?;
        let capacity =
            json!({"cpu": "64", "memory": "256Gi", "pods": "100000", "ephemeral-storage": "1Ti"});
        nodes
            .patch_status(
                &self.node,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "conditions": node_conditions(), "capacity": capacity, "allocatable": capacity,
                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": self.node}],
                    "nodeInfo": {"kubeletVersion": "v1.36.2-showroom-agent", "kubeProxyVersion": "", "operatingSystem": "linux",
                        "architecture": "amd64", "containerRuntimeVersion": "showroom://1", "osImage": "showroom agent",
                        "kernelVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
                }})),
            )
            .await?;
        Ok(())
    }

    /// Renews the node's Lease every 10 s and its Ready condition every minute, so the
    /// node lifecycle controller keeps the node Ready.
    pub async fn heartbeat(self: Arc<Self>) {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), "kube-node-lease");
        let nodes: Api<Node> = Api::all(self.client.clone());
        let mut beats = 0u64;
        loop {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.node},
                "spec": {"holderIdentity": self.node, "leaseDurationSeconds": 40, "renewTime": micro_now()}});
            if let Err(e) = leases
                .patch(
                    &self.node,
                    &PatchParams::apply("showroom-agent").force(),
                    &Patch::Apply(&lease),
                )
                .await
            {
                tracing::debug!(error = %e, "agent: node lease not renewed");
            }
            if beats.is_multiple_of(6) {
                let _ = nodes
                    .patch_status(
                        &self.node,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"status": {"conditions": node_conditions()}})),
                    )
                    .await;
            }
            beats += 1;
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }

    /// Schedules and runs pods until the stream ends (it does not).
    pub async fn run(self: Arc<Self>) {
        super::lean_controller(
            Api::<NodePod>::all(self.client.clone()),
            watcher::Config::default(),
            Some(Duration::from_secs(30)),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(32))
        .run(reconcile, error_policy, self)
        .for_each(|_| async {})
        .await;
    }

    /// How long the pod's containers take to start (or, for a Job's pod, to run):
    /// looked up once a pod.
    async fn startup_time(&self, pod: &Pod) -> Duration {
        let uid = pod.uid().unwrap_or_default();
        if let Some(t) = self.starting.lock().unwrap().get(&uid) {
            return t;
        }
        let t = self.look_up_startup_time(pod).await;
        // Zero is written as the outcome at once: nothing to keep.
        if !t.is_zero() {
            self.starting.lock().unwrap().insert(uid, t, Instant::now());
        }
        t
    }

    /// Done with a pod's start: its outcome is written, or it is going.
    fn started(&self, pod: &NodePod) {
        if let Some(uid) = &pod.metadata.uid {
            self.starting.lock().unwrap().remove(uid);
        }
    }

    async fn look_up_startup_time(&self, pod: &Pod) -> Duration {
        let cmd = vcluster::command_line(pod);
        let restoring = vcluster::parse_create(&cmd)
            .and_then(|c| c.restore)
            .or_else(|| vcluster::parse_restore(&cmd).map(|c| c.url));
        if let Some(url) = restoring {
            return self
                .snapshots
                .get(&url)
                .map_or(Duration::ZERO, |s| s.restore_time);
        }
        if let Some(release) = vcluster_release(pod) {
            let secrets: Api<Secret> =
                Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let from = secrets
                .get_opt(&format!("vc-config-{release}"))
                .await
                .ok()
                .flatten()
                .and_then(|s| s.annotations().get(RESTORED_FROM).cloned());
            return from
                .and_then(|u| self.snapshots.get(&u))
                .map_or(Duration::ZERO, |s| s.boot_time);
        }
        Duration::ZERO
    }
}

fn error_policy(_pod: Arc<NodePod>, err: &Error, _k: Arc<Kubelet>) -> Action {
    tracing::debug!(error = %err, "agent: pod step failed; retrying");
    Action::requeue(Duration::from_millis(200 + fastrand::u64(..300)))
}

/// The vcluster whose own pod this is (labels `app=vcluster`, `release=NAME`).
fn vcluster_release(pod: &Pod) -> Option<&str> {
    let labels = pod.labels();
    (labels.get("app").map(String::as_str) == Some("vcluster") && !is_job_pod(pod))
        .then(|| labels.get("release").map(String::as_str))
        .flatten()
}

fn is_job_pod(pod: &Pod) -> bool {
    pod.owner_references()
        .iter()
        .any(|o| o.kind == "Job" && o.controller == Some(true))
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_conditions(ready: bool, reason: Option<&str>) -> Value {
    let t = now();
    let c = |type_: &str, ok: bool| {
        let mut v = json!({"type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": t});
        if !ok && let Some(r) = reason {
            v["reason"] = json!(r);
        }
        v
    };
    json!([
        c("PodReadyToStartContainers", true),
        c("Initialized", true),
        c("Ready", ready),
        c("ContainersReady", ready),
        c("PodScheduled", true),
    ])
}

fn container_statuses(pod: &Pod, state: &Value, ready: bool) -> Value {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    json!(
        containers
            .iter()
            .map(
                |c| json!({"name": c.name, "image": c.image.clone().unwrap_or_default(),
                "imageID": "", "ready": ready, "started": ready, "restartCount": 0, "state": state})
            )
            .collect::<Vec<_>>()
    )
}

/// A pod as the kubelet keeps it (it keeps every pod of the cluster: 30,000 at 10,000
/// demos): the whole pod while it has work with it; of one it is done with (finished,
/// or running and Ready: only its deletion changes anything then), who it is and its
/// node. Settled pods kept as trimmed `Pod`s were still some 80 MiB at 10,000 demos.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(from = "Pod")]
pub struct NodePod {
    metadata: ObjectMeta,
    /// `spec.nodeName` (None: not bound).
    node: Option<String>,
    /// The whole pod, until it is settled.
    whole: Option<Box<Pod>>,
}
super::kept_as!(NodePod, Pod);

impl From<Pod> for NodePod {
    fn from(pod: Pod) -> NodePod {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let settled = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Succeeded" | "Failed") => true,
            Some("Running") => ready(&pod),
            _ => false,
        };
        if settled {
            NodePod {
                metadata: super::kept_meta(pod.metadata, false),
                node,
                whole: None,
            }
        } else {
            let mut whole = pod;
            whole.metadata.managed_fields = None;
            NodePod {
                metadata: whole.metadata.clone(),
                node,
                whole: Some(Box::new(whole)),
            }
        }
    }
}

async fn reconcile(kept: Arc<NodePod>, k: Arc<Kubelet>) -> Result<Action, Error> {
    let ns = kept.namespace().unwrap_or_default();
    let name = kept.name_any();
    let pods: Api<Pod> = Api::namespaced(k.client.clone(), &ns);
    if kept.metadata.deletion_timestamp.is_some() {
        k.started(&kept);
        if kept.node.as_deref() == Some(k.node.as_str()) {
            // The containers have stopped: confirm the deletion, as the kubelet does.
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: kept.uid(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match pods.delete(&name, &dp).await {
                Ok(_) => {}
                Err(e) if crate::k8s::is_not_found(&e) || crate::k8s::is_conflict(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        return Ok(Action::await_change());
    }
    // Settled: finished, or running and Ready.
    let Some(pod) = kept.whole.as_deref() else {
        return Ok(Action::await_change());
    };
    let Some(node) = kept.node.as_deref() else {
        if pod
            .spec
            .as_ref()
            .and_then(|s| s.scheduler_name.as_deref())
            .is_some_and(|s| s != "default-scheduler")
        {
            return Ok(Action::await_change());
        }
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": k.node}});
        match pods
            .create_subresource::<_, Value>("binding", &name, &PostParams::default(), &binding)
            .await
        {
            Ok(_) => {}
            // Bound by someone else meanwhile, or gone.
            Err(e) if crate::k8s::is_not_found(&e) || crate::k8s::is_conflict(&e) => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(Action::await_change());
    };
    if node != k.node {
        return Ok(Action::await_change());
    }
    let needed = k.startup_time(pod).await;
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0);
    let accepted_now = started.is_none();
    let started = match started {
        Some(t) => t,
        // Started at once: the first status the kubelet writes is the outcome (its
        // status manager sends only the latest status; a Pending it never got to send
        // is not sent). One write a pod instead of two: 3 of some 43 requests a demo.
        None if needed.is_zero() => jiff::Timestamp::now(),
        None => {
            // Accepted: the clock of its start-up begins.
            let patch = json!({"status": {"phase": "Pending", "startTime": now(), "hostIP": "127.0.0.1",
                "conditions": pod_conditions(false, Some("ContainersNotReady")),
                "containerStatuses": container_statuses(pod, &json!({"waiting": {"reason": "ContainerCreating"}}), false)}});
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            return Ok(Action::await_change());
        }
    };
    let elapsed = jiff::Timestamp::now()
        .duration_since(started)
        .unsigned_abs();
    if elapsed < needed {
        return Ok(Action::requeue(needed - elapsed));
    }
    let t = now();
    let mut patch = if is_job_pod(pod) {
        let cmd = vcluster::command_line(pod);
        let result = if let Some(call) = vcluster::parse_create(&cmd) {
            vcluster::create(&k.client, &k.snapshots, pod, &call).await
        } else if let Some(call) = vcluster::parse_restore(&cmd) {
            vcluster::restore(&k.client, &k.snapshots, pod, &call).await
        } else if let Some(call) = super::snapshot_create::parse(&cmd) {
            super::snapshot_create::create(&k.client, &k.snapshots, pod, &call).await
        } else {
            Ok(String::new())
        };
        let (phase, code, reason, message) = match result {
            Ok(out) => ("Succeeded", 0, "Completed", out),
            Err(err) => ("Failed", 1, "Error", err),
        };
        let state = json!({"terminated": {"exitCode": code, "reason": reason, "message": message,
            "startedAt": started.to_string(), "finishedAt": t}});
        json!({"status": {"phase": phase, "conditions": pod_conditions(false, Some("PodCompleted")),
            "containerStatuses": container_statuses(pod, &state, false)}})
    } else {
        // A vcluster's container: its syncer publishes the kubeconfig as it starts,
        // before the pod reports Ready.
        if let Some(release) = vcluster_release(pod) {
            super::syncer::publish_kubeconfig(&k.client, &ns, release).await?;
        }
        let state = json!({"running": {"startedAt": t}});
        json!({"status": {"phase": "Running", "podIP": "127.0.0.1", "conditions": pod_conditions(true, None),
            "containerStatuses": container_statuses(pod, &state, true)}})
    };
    if accepted_now {
        patch["status"]["startTime"] = json!(started.to_string());
        patch["status"]["hostIP"] = json!("127.0.0.1");
    }
    pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await?;
    k.started(&kept);
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_entries_lapse_after_their_start_up_time() {
        let t0 = Instant::now();
        let mut s = Starting::default();
        s.insert("a".into(), Duration::from_secs(10), t0);
        s.insert("b".into(), Duration::from_secs(60), t0);
        // Within a's time and grace: both kept.
        s.insert(
            "c".into(),
            Duration::from_secs(1),
            t0 + Duration::from_secs(309),
        );
        assert_eq!(s.get("a"), Some(Duration::from_secs(10)));
        // Past a's time and grace, within b's: a lapses (its pod went unseen).
        s.insert(
            "d".into(),
            Duration::from_secs(1),
            t0 + Duration::from_secs(311),
        );
        assert_eq!(s.get("a"), None);
        assert_eq!(s.get("b"), Some(Duration::from_secs(60)));
        assert_eq!(s.get("c"), Some(Duration::from_secs(1)));
        s.remove("b");
        assert_eq!(s.get("b"), None);
    }
}
