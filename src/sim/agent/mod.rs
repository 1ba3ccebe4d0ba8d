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

/// A controller of `api` whose store keeps each object as `trim` leaves it. The agent
/// watches every pod of the cluster; kept whole (managedFields and all, and the spec
/// and status of every finished Job pod), they were most of its memory at 10,000 demos.
///
/// With `resync`, every object is reconciled again that often, as a kubelet syncs its
/// pods every minute: kube's controller drops the triggers of a relist for objects its
/// store did not hold yet (made while the watch was down), and nothing triggers them
/// again until they change. At 10,000 demos the kubelet relisted, and some 500 pods
/// made meanwhile were never started.
fn lean_controller<K>(
    api: Api<K>,
    cfg: watcher::Config,
    trim: fn(&mut K),
    resync: Option<std::time::Duration>,
) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, cfg).default_backoff().modify(trim))
        .applied_objects();
    let controller = Controller::for_stream(stream, reader);
    match resync {
        Some(period) => controller.reconcile_all_on(crate::k8s::every(period)),
        None => controller,
    }
}
