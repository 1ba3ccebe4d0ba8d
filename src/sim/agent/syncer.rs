//! What a running vcluster's syncer does on the host, for each vcluster whose pod runs
//! on this node: syncs the snapshot's apps as host pods labelled
//! `vcluster.loft.sh/managed-by=NAME` and Services `<svc>-x-<vns>-x-NAME`, and serves
//! each app (a stand-in page). When the vcluster's pod stops (paused or deleted), its
//! apps stop too. The kubeconfig Secret `vc-NAME` it publishes as its container starts
//! (`publish_kubeconfig`, which the kubelet runs before it reports the pod Ready).

use super::snapshots::Snapshots;
use super::standin::{StandIns, host_service};
use super::vcluster::{RESTORED_FROM, RESTORES};
use crate::k8s::create_if_absent;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct Syncer {
    pub client: Client,
    pub node: String,
    pub snapshots: Arc<Snapshots>,
    pub apps: Arc<StandIns>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

pub const MANAGED_BY: &str = "vcluster.loft.sh/managed-by";

/// The syncer's objects whose deletion its watches have shown and that it has not made
/// again: (kind, namespace, name) → their vcluster.
type Gone = HashMap<(&'static str, String, String), String>;

/// What reconciling reads besides the API: the syncer's own objects as its watches
/// last saw them, so that it creates only what is missing (it POSTed each one on every
/// pass before, and at 10,000 demos most of its requests were refused creates).
struct Ctx {
    syncer: Arc<Syncer>,
    /// The vclusters' own pods, as far as `syncer_running` reads them.
    vcluster_pods: reflector::Store<VclusterPod>,
    pods: reflector::Store<PartialObjectMeta<Pod>>,
    services: reflector::Store<PartialObjectMeta<Service>>,
    /// While a vcluster's apps run, an object its store lacks is made again only if
    /// it is here: otherwise the watch has not shown this syncer's own create yet (a
    /// pass that came soon after the one that made it created it again, refused:
    /// half a refused create a demo). Pruned with the vclusters that are gone.
    gone: Arc<Mutex<Gone>>,
}

/// What the syncer does as its container starts, before its readiness probe passes:
/// publishes the vcluster's kubeconfig in Secret `vc-NAME` (one left from an earlier
/// start is kept). So the Secret is there by the time the StatefulSet counts the pod
/// ready, as with a real vcluster; published after, on the syncer's first pass, it
/// was missing when showroom first looked for most demos (a GET answered 404, a
/// progress write and a poll a demo).
pub(super) async fn publish_kubeconfig(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<(), kube::Error> {
    let kubeconfig = crate::sim::kubeconfig_yaml("https://localhost:8443");
    let vc: Secret = serde_json::from_value(json!({
        "metadata": {"name": format!("vc-{name}"), "labels": {"app": "vcluster", "release": name}},
        "stringData": {"config": kubeconfig}}))
    .map_err(kube::Error::SerdeError)?;
    create_if_absent(&Api::namespaced(client.clone(), ns), &vc)
        .await
        .map(drop)
}

/// A metadata-only watch of the objects a syncer made, kept in `writer`; only their
/// deletion triggers a pass (one deleted by hand is made again). Every change of them
/// triggered one before, each with its GETs: at 10,000 demos, some ten passes a demo.
fn made<K>(
    api: Api<PartialObjectMeta<K>>,
    writer: reflector::store::Writer<PartialObjectMeta<K>>,
    gone: Arc<Mutex<Gone>>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: k8s_openapi::Resource + Send + Sync + 'static,
{
    reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().labels(MANAGED_BY))
            .default_backoff()
            // Kept: who it is, and the label that names its vcluster.
            .modify(|o| {
                let mut m = super::kept_meta(std::mem::take(&mut o.metadata), true);
                if let Some(l) = &mut m.labels {
                    l.retain(|k, _| k == MANAGED_BY);
                }
                o.metadata = m;
            }),
    )
    .filter_map(move |event| {
        let gone = gone.clone();
        async move {
            match event {
                Ok(watcher::Event::Delete(o)) => {
                    // Noted before the pass it triggers runs.
                    if let (Some(ns), Some(vcluster)) = (
                        o.metadata.namespace.clone(),
                        o.metadata.labels.as_ref().and_then(|l| l.get(MANAGED_BY)),
                    ) {
                        gone.lock().unwrap().insert(
                            (
                                <K as k8s_openapi::Resource>::KIND,
                                ns,
                                o.metadata.name.clone().unwrap_or_default(),
                            ),
                            vcluster.clone(),
                        );
                    }
                    Some(Ok(o))
                }
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            }
        }
    })
}

impl Syncer {
    pub async fn run(self: Arc<Self>) {
        let c = self.client.clone();
        let gone = Arc::new(Mutex::new(Gone::new()));
        let (pods, pod_writer) = reflector::store();
        let (services, service_writer) = reflector::store();
        let (vcluster_pods, vcluster_pod_writer) = reflector::store();
        // What a vcluster's syncer hears of: its vcluster's own pod (kept, trimmed to
        // what `syncer_running` reads: a pass GOT it, some six passes per demo), and
        // the deletion of host pods and Services it made (one deleted by hand is made
        // again, as the syncer does; only their metadata).
        let controller = super::lean_controller(
            Api::<VclusterSet>::all(c.clone()),
            watcher::Config::default().labels("app=vcluster"),
            // Its objects' pods trigger it (the kubelet, resyncing, starts them).
            None,
        )
        .watches_stream(
            reflector::reflector(
                vcluster_pod_writer,
                watcher(
                    Api::<VclusterPod>::all(c.clone()),
                    watcher::Config::default().labels("app=vcluster"),
                )
                .default_backoff(),
            )
            .touched_objects(),
            |pod| {
                let release = pod.labels().get("release")?.clone();
                Some(ObjectRef::new(&release).within(&pod.namespace()?))
            },
        )
        .watches_stream(
            made(Api::all(c.clone()), pod_writer, gone.clone()),
            made_by::<Pod>,
        )
        .watches_stream(
            made(Api::all(c), service_writer, gone.clone()),
            made_by::<Service>,
        );
        // Apps of vclusters that no longer exist stop too (their namespace was deleted).
        let sets = controller.store();
        let apps = self.apps.clone();
        let was_gone = gone.clone();
        // Part of this future, not a task of its own: it ends with the agent (a spawned
        // one outlived it, with every stand-in app it held).
        let prune = async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                apps.retain(|ns, name| {
                    sets.get(&ObjectRef::new(name).within(ns))
                        .is_some_and(|s| s.metadata.deletion_timestamp.is_none())
                });
                was_gone.lock().unwrap().retain(|(_, ns, _), vcluster| {
                    sets.get(&ObjectRef::new(vcluster).within(ns)).is_some()
                });
            }
        };
        let ctx = Arc::new(Ctx {
            syncer: self,
            vcluster_pods,
            pods,
            services,
            gone,
        });
        let run = controller
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {});
        futures::future::join(run, prune).await;
    }
}

impl Ctx {
    /// Whether a pass makes one of its objects (`seen`: the watch's store has it).
    /// Apps that start now get whatever is missing; while they run, only what was
    /// deleted since (see `gone`).
    fn to_make<K: k8s_openapi::Resource>(
        &self,
        apps_are: &AppsAre,
        ns: &str,
        name: &str,
        seen: bool,
    ) -> bool {
        let key = (
            <K as k8s_openapi::Resource>::KIND,
            ns.to_string(),
            name.to_string(),
        );
        let deleted = self.gone.lock().unwrap().remove(&key).is_some();
        !seen && (deleted || matches!(apps_are, AppsAre::ToStart { .. }))
    }
}

fn error_policy(_sts: Arc<VclusterSet>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::debug!(error = %err, "agent: syncer step failed; retrying");
    Action::requeue(Duration::from_millis(200 + fastrand::u64(..300)))
}

/// A vcluster's StatefulSet as the syncer keeps it: who it is and its replicas.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(from = "StatefulSet")]
pub struct VclusterSet {
    metadata: ObjectMeta,
    replicas: Option<i32>,
}
super::kept_as!(VclusterSet, StatefulSet);

impl From<StatefulSet> for VclusterSet {
    fn from(s: StatefulSet) -> VclusterSet {
        VclusterSet {
            replicas: s.spec.and_then(|s| s.replicas),
            metadata: super::kept_meta(s.metadata, false),
        }
    }
}

/// A vcluster's own pod as the syncer keeps it: what `syncer_running` reads, and its
/// labels (they name the vcluster it triggers).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(from = "Pod")]
pub struct VclusterPod {
    metadata: ObjectMeta,
    node: Option<String>,
    /// Running and Ready.
    ready: bool,
}
super::kept_as!(VclusterPod, Pod);

impl From<Pod> for VclusterPod {
    fn from(pod: Pod) -> VclusterPod {
        let status = pod.status.unwrap_or_default();
        VclusterPod {
            node: pod.spec.and_then(|s| s.node_name),
            ready: status.phase.as_deref() == Some("Running")
                && status
                    .conditions
                    .iter()
                    .flatten()
                    .any(|c| c.type_ == "Ready" && c.status == "True"),
            metadata: super::kept_meta(pod.metadata, true),
        }
    }
}

/// The vcluster's own pod runs on this node and is Ready.
fn syncer_running(pod: Option<&VclusterPod>, node: &str) -> bool {
    pod.is_some_and(|p| {
        p.metadata.deletion_timestamp.is_none() && p.node.as_deref() == Some(node) && p.ready
    })
}

/// Whether a pass finds a vcluster's apps running or starts them.
enum AppsAre {
    Running,
    /// Not running yet (just up, or up again after a restore): started as the
    /// `generation`-th restore's apps.
    ToStart {
        generation: u64,
    },
}

async fn reconcile(sts: Arc<VclusterSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let s = &ctx.syncer;
    let ns = sts.namespace().unwrap_or_default();
    let name = sts.name_any();
    let pods: Api<Pod> = Api::namespaced(s.client.clone(), &ns);
    let pod = ctx
        .vcluster_pods
        .get(&ObjectRef::new(&format!("{name}-0")).within(&ns));
    let scaled_down = sts.replicas == Some(0);
    if scaled_down || !syncer_running(pod.as_deref(), &s.node) {
        s.apps.stop(&ns, &name);
        return Ok(Action::await_change());
    }
    let secrets: Api<Secret> = Api::namespaced(s.client.clone(), &ns);
    // Apps already running are the ones the config named when they started: a restore
    // changes the config only while the vcluster's pod is down (and its apps stopped).
    // Reading it again on each pass was a GET for each change of the StatefulSet.
    let (apps, apps_are) = match s.apps.running_apps(&ns, &name) {
        Some(apps) => (apps, AppsAre::Running),
        None => {
            let config = secrets.get_opt(&format!("vc-config-{name}")).await?;
            let annotation = |key: &str| {
                config
                    .as_ref()
                    .and_then(|c| c.annotations().get(key).cloned())
            };
            let generation: u64 = annotation(RESTORES)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let apps = annotation(RESTORED_FROM)
                .and_then(|u| s.snapshots.get(&u))
                .map(|snap| snap.apps)
                .unwrap_or_default();
            (apps, AppsAre::ToStart { generation })
        }
    };
    let services: Api<Service> = Api::namespaced(s.client.clone(), &ns);
    for app in &apps {
        let host = host_service(app, &name);
        let labels = json!({MANAGED_BY: name, "vcluster.loft.sh/namespace": app.namespace,
            "vcluster.loft.sh/label-app": app.service});
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": format!("{}-0-x-{}-x-{name}", app.service, app.namespace), "labels": labels},
            "spec": {"serviceAccountName": format!("vc-workload-{name}"), "automountServiceAccountToken": false,
                "containers": [{"name": app.service, "image": "ghcr.io/showroom-demos/stand-in:1",
                    "ports": [{"containerPort": app.port, "protocol": "TCP"}]}]}}),
        )?;
        // Only what is missing: one deleted by hand is made again when its deletion
        // arrives (the store has it by then).
        let seen = ctx
            .pods
            .get(&ObjectRef::new(&pod.name_any()).within(&ns))
            .is_some();
        if ctx.to_make::<Pod>(&apps_are, &ns, &pod.name_any(), seen) {
            create_if_absent(&pods, &pod).await?;
        }
        let svc: Service = serde_json::from_value(
            json!({"metadata": {"name": host, "labels": {MANAGED_BY: name}},
            "spec": {"selector": labels, "ports": [{"name": "http", "port": app.port, "targetPort": app.port, "protocol": "TCP"}]}}),
        )?;
        let seen = ctx
            .services
            .get(&ObjectRef::new(&host).within(&ns))
            .is_some();
        if ctx.to_make::<Service>(&apps_are, &ns, &host, seen) {
            create_if_absent(&services, &svc).await?;
        }
    }
    if let AppsAre::ToStart { generation } = apps_are {
        s.apps.start(&ns, &name, &apps, generation).await?;
    }
    // Nothing to poll: a synced pod or Service deleted by hand triggers this again.
    // (It requeued every 10 s once: at 10,000 vclusters, 5,000 API calls a second
    // while nothing changed.)
    Ok(Action::await_change())
}

/// The vcluster whose syncer made an object.
fn made_by<K>(o: PartialObjectMeta<K>) -> Option<ObjectRef<VclusterSet>> {
    let vcluster = o.metadata.labels.as_ref()?.get(MANAGED_BY)?;
    Some(ObjectRef::new(vcluster).within(o.metadata.namespace.as_deref()?))
}
