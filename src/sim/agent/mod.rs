//! The agent: what a real cluster has outside its API server and controller manager.
//! It plays a node (scheduler and kubelet), the vcluster CLI that a provisioning Job's
//! pod runs, and each vcluster's syncer with a stand-in app. It talks to the API server
//! only through a `kube::Client` and never writes a controller's status, so the same
//! agent runs against the simulation and against a real control plane.

pub mod kubelet;
pub mod snapshot_create;
pub mod snapshots;
pub mod standin;
pub mod syncer;
pub mod vcluster;

use kube::runtime::controller::Controller;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource};
use std::sync::Arc;
use tokio::task::JoinHandle;

pub use snapshots::{App, Snapshot, Snapshots};
pub use standin::StandIns;

/// A running agent; its tasks stop when it is dropped.
pub struct Agent {
    pub node: String,
    pub snapshots: Arc<Snapshots>,
    pub apps: Arc<StandIns>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Agent {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Agent {
    /// Registers a node named `node` and starts serving it.
    pub async fn start(
        client: Client,
        node: &str,
        snapshots: Arc<Snapshots>,
    ) -> Result<Agent, kube::Error> {
        let apps = Arc::new(StandIns::default());
        let kubelet = Arc::new(kubelet::Kubelet {
            client: client.clone(),
            node: node.to_string(),
            snapshots: snapshots.clone(),
            starting: Default::default(),
        });
        kubelet.register().await?;
        let syncer = Arc::new(syncer::Syncer {
            client,
            node: node.to_string(),
            snapshots: snapshots.clone(),
            apps: apps.clone(),
        });
        let tasks = vec![
            tokio::spawn(kubelet.clone().heartbeat()),
            tokio::spawn(kubelet.run()),
            tokio::spawn(syncer.run()),
        ];
        Ok(Agent {
            node: node.to_string(),
            snapshots,
            apps,
            tasks,
        })
    }
}

/// A controller of `api`. Its store holds every object the watch selects (all 30,000
/// pods of the cluster at 10,000 demos, for the kubelet), so `K` is a kept shape (see
/// [`kept_as`]), not the whole object: kept whole, the agent's stores were the largest
/// part of the simulation's memory after its objects (heaptrack).
///
/// With `resync`, every object is reconciled again that often, as a kubelet syncs its
/// pods every minute: kube's controller drops the triggers of a relist for objects its
/// store did not hold yet (made while the watch was down), and nothing triggers them
/// again until they change. At 10,000 demos the kubelet relisted, and some 500 pods
/// made meanwhile were never started.
fn lean_controller<K>(
    api: Api<K>,
    cfg: watcher::Config,
    resync: Option<std::time::Duration>,
) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, cfg).default_backoff()).applied_objects();
    let controller = Controller::for_stream(stream, reader);
    match resync {
        Some(period) => controller.reconcile_all_on(crate::k8s::every(period)),
        None => controller,
    }
}

/// Makes `$kept`, a struct with a `metadata: ObjectMeta` field made `From` the whole
/// `$of` when a watch's JSON is read, a Kubernetes resource at `$of`'s API path: a
/// watch of it reads `$of`s and keeps only what the struct holds. (A `Pod` is 2,248
/// bytes before any of its strings, a `StatefulSet` 2,560, however little of them is
/// set.)
macro_rules! kept_as {
    ($kept:ty, $of:ty) => {
        impl k8s_openapi::Resource for $kept {
            const API_VERSION: &'static str = <$of as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$of as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$of as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$of as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str = <$of as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$of as k8s_openapi::Resource>::Scope;
        }
        impl k8s_openapi::Metadata for $kept {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }
            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }
    };
}
use kept_as;

/// Of an object's metadata, what the agent's stores read: who it is, its
/// resourceVersion (a watch resumes from it), its deletion, and (`labels`) its labels.
fn kept_meta(
    m: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    labels: bool,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        creation_timestamp: m.creation_timestamp,
        deletion_timestamp: m.deletion_timestamp,
        labels: if labels { m.labels } else { None },
        ..Default::default()
    }
}
