//! A simulated Kubernetes host cluster: an in-process API server speaking the real
//! REST protocol (`api`, `store`, `admission`), the controller-manager part showroom
//! relies on (`controllers`), and the agent that plays what runs on nodes (`agent`).
//! `realkube` starts a real control plane instead, for the same agent and tests.
//!
//! It exists so that every test runs showroom's real `kube` client code over HTTP and
//! so that `showroom dev` needs no cluster. Where it and a real API server disagree,
//! the real one is right (tests/sim_conformance.rs runs on both).

pub mod admission;
pub mod agent;
pub mod api;
pub mod controllers;
mod deletion;
pub mod error;
pub mod faults;
pub mod fields;
pub mod object;
pub mod realkube;
pub mod resources;
pub mod selector;
pub mod store;

use anyhow::Context;
use faults::Faults;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::Store;
use tokio::task::JoinHandle;

/// How the simulation behaves.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Run the agent (a node, the vcluster CLI and syncers, stand-in apps).
    pub agent: bool,
    /// The snapshots the agent's `vcluster create --restore` can restore.
    pub snapshots: Arc<agent::Snapshots>,
    /// How often a watch that asked for bookmarks gets one.
    pub bookmark_interval: Duration,
    /// Where to write the kubeconfig; a fresh temporary directory when None.
    pub state_dir: Option<PathBuf>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            agent: true,
            snapshots: Default::default(),
            bookmark_interval: Duration::from_secs(5),
            state_dir: None,
        }
    }
}

/// A running simulation; it shuts down when dropped.
pub struct SimCluster {
    pub url: String,
    pub kubeconfig_path: PathBuf,
    pub faults: Arc<Faults>,
    pub store: Arc<Store>,
    api: Arc<api::SimApi>,
    /// The node, the vcluster CLI and syncers (when started).
    pub agent: Option<agent::Agent>,
    tasks: Vec<JoinHandle<()>>,
    temp_dir: Option<PathBuf>,
    kubeconfig: Kubeconfig,
}

impl SimCluster {
    pub async fn start(opts: SimOptions) -> anyhow::Result<SimCluster> {
        let store = Store::new();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let rt = store
                .resource_type(&(String::new(), "v1".into(), "namespaces".into()))
                .context("namespaces type")?;
            store
                .create(&rt, "", json!({"metadata": {"name": ns}}))
                .map_err(|e| anyhow::anyhow!(e.message))?;
        }
        let faults = Arc::new(Faults::default());
        let (epoch, _) = tokio::sync::watch::channel(0);
        let api = Arc::new(api::SimApi {
            store: store.clone(),
            faults: faults.clone(),
            watch_epoch: epoch,
            bookmark_interval: opts.bookmark_interval,
            requests: Default::default(),
            terminated_watchers: Default::default(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let router = axum::Router::new()
            .fallback(api::handle)
            .with_state(api.clone());
        let mut tasks = vec![tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        })];
        tasks.extend(controllers::start(store.clone()));
        let (dir, temp_dir) = match &opts.state_dir {
            Some(d) => (d.clone(), None),
            None => {
                let d = std::env::temp_dir().join(format!(
                    "showroom-sim-{}-{}",
                    std::process::id(),
                    addr.port()
                ));
                (d.clone(), Some(d))
            }
        };
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let kubeconfig_path = dir.join("kubeconfig");
        let yaml = kubeconfig_yaml(&url);
        std::fs::write(&kubeconfig_path, &yaml)
            .with_context(|| format!("writing {}", kubeconfig_path.display()))?;
        let kubeconfig = Kubeconfig::from_yaml(&yaml)?;
        let mut sim = SimCluster {
            url,
            kubeconfig_path,
            faults,
            store,
            api,
            agent: None,
            tasks,
            temp_dir,
            kubeconfig,
        };
        if opts.agent {
            let client = sim.client().await?;
            sim.agent =
                Some(agent::Agent::start(client, "sim-node", opts.snapshots.clone()).await?);
        }
        Ok(sim)
    }

    /// A kube client for the simulation, built from its kubeconfig like any other.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_from_kubeconfig(self.kubeconfig.clone()).await
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// Ends every open watch, as an API server restart or a load balancer would.
    pub fn drop_watches(&self) {
        self.api.watch_epoch.send_modify(|e| *e += 1);
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(d) = &self.temp_dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: showroom-sim
  cluster:
    server: {url}
contexts:
- name: showroom-sim
  context:
    cluster: showroom-sim
    user: showroom-sim
current-context: showroom-sim
users:
- name: showroom-sim
  user: {{}}
"
    )
}

pub async fn client_from_kubeconfig(kc: Kubeconfig) -> anyhow::Result<kube::Client> {
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
