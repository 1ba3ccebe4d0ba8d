//! Test harness: the two worlds a scenario runs in.
//!
//! - `sim`: a fresh simulated cluster per test (`src/sim`), with its own agent.
//! - `real`: one real control plane per test process (kube-apiserver, etcd and
//!   kube-controller-manager from `$SHOWROOM_REALKUBE`, started on first use and torn
//!   down with the process), or any cluster named by `$SHOWROOM_TEST_KUBECONFIG`, with
//!   one agent playing the node. Tests share it: each has its own showroom instance
//!   (label `showroom.dev/instance`), users, names and namespaces.
//!
//! `scenarios!(a, b)` makes `sim::a` and `real::a` from `async fn a(tc: TestCluster)`.
//! Without a real cluster the `real::` tests print why they are skipped and pass.
#![allow(dead_code)]

pub mod harness;
pub mod web;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use showroom::cluster::crd::{Demo, Instance};
use showroom::sim::agent::{Agent, Snapshots, StandIns};
use showroom::sim::realkube::{self, ControlPlane};
use showroom::sim::{SimCluster, SimOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Makes `sim::NAME` and `real::NAME` tests from `async fn NAME(tc: TestCluster)`.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sim {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::TestCluster::sim().await).await
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let test = concat!(module_path!(), "::", stringify!($name));
                    if let Some(tc) = $crate::common::TestCluster::real(test).await {
                        super::$name(tc).await
                    }
                }
            )*
        }
    };
}

pub struct TestCluster {
    pub client: Client,
    /// The simulation, in the sim world.
    pub sim: Option<SimCluster>,
    pub kubeconfig: PathBuf,
    /// This test's showroom instance: its Demos and namespaces carry this label.
    pub instance: Instance,
    /// The snapshots the agent restores (the harness publishes the test catalogue's).
    pub snapshots: Arc<Snapshots>,
    /// The agent's stand-in apps, for showroom's proxy.
    pub apps: Arc<StandIns>,
    namespaces: Vec<String>,
}

/// The real world: one per test process.
struct RealEnv {
    kubeconfig: PathBuf,
    /// Runs the agent and teardown work; it outlives every test's own runtime.
    rt: tokio::runtime::Runtime,
    snapshots: Arc<Snapshots>,
    apps: Arc<StandIns>,
    _agent: Agent,
    _control_plane: Option<ControlPlane>,
}

static REAL: OnceLock<Result<RealEnv, String>> = OnceLock::new();

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Printed past the test harness's output capture, so a skip is always seen.
fn say(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn start_real(kubeconfig: Option<PathBuf>, bin: Option<PathBuf>) -> Result<RealEnv, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("real-world")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let snapshots = Arc::new(Snapshots::default());
    harness::publish_test_snapshots(&snapshots);
    let (kubeconfig, control_plane) = match (kubeconfig, bin) {
        (Some(k), _) => (k, None),
        (None, Some(bin)) => {
            let cp = rt
                .block_on(ControlPlane::start(&bin))
                .map_err(|e| format!("starting the real control plane: {e:#}"))?;
            say(&format!(
                "real control plane (kube-apiserver, etcd, kube-controller-manager from {}) up in {:.1} s",
                bin.display(),
                cp.startup.as_secs_f64()
            ));
            (cp.kubeconfig_path.clone(), Some(cp))
        }
        (None, None) => unreachable!("start_real needs a cluster"),
    };
    let agent = rt
        .block_on(async {
            let client = client_for(&kubeconfig).await?;
            let node = format!("showroom-agent-{}", std::process::id());
            Agent::start(client, &node, snapshots.clone())
                .await
                .map_err(anyhow::Error::from)
        })
        .map_err(|e| format!("starting the agent: {e:#}"))?;
    Ok(RealEnv {
        kubeconfig,
        snapshots,
        apps: agent.apps.clone(),
        rt,
        _agent: agent,
        _control_plane: control_plane,
    })
}

async fn client_for(path: &PathBuf) -> anyhow::Result<Client> {
    let kc = kube::config::Kubeconfig::read_from(path)?;
    showroom::sim::client_from_kubeconfig(kc).await
}

impl TestCluster {
    /// A fresh simulation with an agent that restores the test catalogue's snapshots.
    pub async fn sim() -> TestCluster {
        Self::sim_with(SimOptions::default()).await
    }

    pub async fn sim_with(opts: SimOptions) -> TestCluster {
        init_logs();
        harness::publish_test_snapshots(&opts.snapshots);
        let snapshots = opts.snapshots.clone();
        let sim = SimCluster::start(opts).await.expect("start simulation");
        let client = sim.client().await.expect("client");
        let apps = sim
            .agent
            .as_ref()
            .map(|a| a.apps.clone())
            .unwrap_or_default();
        TestCluster {
            kubeconfig: sim.kubeconfig_path.clone(),
            client,
            sim: Some(sim),
            instance: Instance::new(&unique("t-")).unwrap(),
            snapshots,
            apps,
            namespaces: vec![],
        }
    }

    /// The real cluster of this process, or None (printing why `test` is skipped) when
    /// none is configured. A configured cluster that cannot be used fails the test.
    pub async fn real(test: &str) -> Option<TestCluster> {
        let kubeconfig = std::env::var_os("SHOWROOM_TEST_KUBECONFIG")
            .filter(|k| !k.is_empty())
            .map(PathBuf::from);
        let bin = realkube::binaries_from_env().unwrap_or_else(|e| panic!("{e}"));
        if kubeconfig.is_none() && bin.is_none() {
            say(&format!(
                "{test}: SKIPPED, no real control plane: set {}=<dir with the unpacked etcd, kube-apiserver, kube-controller-manager> (bash .ci/run does) or SHOWROOM_TEST_KUBECONFIG=<a cluster you may use>",
                realkube::ENV
            ));
            return None;
        }
        // The first test to get here starts the control plane; the others wait for it.
        let env = tokio::task::block_in_place(|| {
            REAL.get_or_init(|| {
                std::thread::spawn(move || start_real(kubeconfig, bin))
                    .join()
                    .unwrap_or_else(|_| Err("the real world's start-up panicked".into()))
            })
        });
        let env = env.as_ref().unwrap_or_else(|e| panic!("{e}"));
        let client = client_for(&env.kubeconfig).await.expect("client");
        Some(TestCluster {
            client,
            sim: None,
            kubeconfig: env.kubeconfig.clone(),
            instance: Instance::new(&unique("t-")).unwrap(),
            snapshots: env.snapshots.clone(),
            apps: env.apps.clone(),
            namespaces: vec![],
        })
    }

    pub fn is_sim(&self) -> bool {
        self.sim.is_some()
    }

    /// A fresh namespace `showroom-test-<random>`, removed when the test ends. Returns
    /// once its `default` ServiceAccount exists (pods need it), as on any cluster.
    pub async fn namespace(&mut self) -> String {
        let name = unique("showroom-test-");
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        self.namespaces.push(name.clone());
        let sas: Api<ServiceAccount> = Api::namespaced(self.client.clone(), &name);
        eventually(
            Duration::from_secs(30),
            "the default ServiceAccount",
            || async { sas.get_opt("default").await.ok().flatten().map(|_| ()) },
        )
        .await;
        name
    }

    /// This test's Demos (its showroom instance's), at the API server.
    pub async fn demos(&self) -> Vec<Demo> {
        Api::<Demo>::all(self.client.clone())
            .list(&ListParams::default().labels(&self.instance.selector()))
            .await
            .expect("list demos")
            .items
    }

    /// What showroom's proxy uses to reach the stand-in apps.
    pub fn upstream_override(&self) -> showroom::web::proxy::UpstreamOverride {
        let apps = self.apps.clone();
        Arc::new(move |host: &str, port: u16| apps.resolve(host, port))
    }
}

impl Drop for TestCluster {
    /// On a shared real cluster, removes what the test made: its namespaces, and its
    /// instance's demo namespaces and Demos (whose controller has stopped, so their
    /// finalizers are lifted). It runs on the real world's own runtime, without
    /// blocking the test's.
    fn drop(&mut self) {
        let Some(Ok(env)) = REAL.get() else { return };
        if self.sim.is_some() {
            return;
        }
        let names = std::mem::take(&mut self.namespaces);
        let selector = self.instance.selector();
        let kubeconfig = env.kubeconfig.clone();
        env.rt.spawn(async move {
            // The test's client lived on the test's runtime, which is ending.
            let Ok(client) = client_for(&kubeconfig).await else {
                return;
            };
            let nss = Api::<Namespace>::all(client.clone());
            let demos = Api::<Demo>::all(client);
            let lp = ListParams::default().labels(&selector);
            let mut doomed = names;
            if let Ok(list) = nss.list(&lp).await {
                doomed.extend(list.items.into_iter().filter_map(|n| n.metadata.name));
            }
            for n in doomed {
                let _ = nss.delete(&n, &DeleteParams::default()).await;
            }
            if let Ok(list) = demos.list(&lp).await {
                for d in list.items {
                    let Some(name) = d.metadata.name else {
                        continue;
                    };
                    let _ = demos
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(serde_json::json!({"metadata": {"finalizers": null}})),
                        )
                        .await;
                    let _ = demos.delete(&name, &DeleteParams::default()).await;
                }
            }
        });
    }
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `SHOWROOM_TEST_LOG=showroom=debug cargo nextest run --no-capture ...` shows what
/// showroom logs during a test (a filter as in RUST_LOG).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("SHOWROOM_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}
