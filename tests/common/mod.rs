//! Test harness: a simulated cluster, or a real one when SHOWROOM_TEST_KUBECONFIG names
//! a kubeconfig (then only namespaces prefixed `showroom-test-` are created).
#![allow(dead_code)]

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
pub mod harness;
use kube::api::{Api, PostParams};
use showroom::sim::{SimCluster, SimOptions};
use std::time::Duration;

pub struct TestCluster {
    pub client: Client,
    pub sim: Option<SimCluster>,
    pub kubeconfig: std::path::PathBuf,
    namespaces: Vec<String>,
}

pub fn real_kubeconfig() -> Option<std::path::PathBuf> {
    std::env::var_os("SHOWROOM_TEST_KUBECONFIG").map(Into::into)
}

impl TestCluster {
    pub async fn start() -> TestCluster {
        Self::start_with(SimOptions::default()).await
    }

    pub async fn start_with(opts: SimOptions) -> TestCluster {
        if let Some(path) = real_kubeconfig() {
            let kc =
                kube::config::Kubeconfig::read_from(&path).expect("read SHOWROOM_TEST_KUBECONFIG");
            let client = showroom::sim::client_from_kubeconfig(kc)
                .await
                .expect("client");
            return TestCluster {
                client,
                sim: None,
                kubeconfig: path,
                namespaces: vec![],
            };
        }
        let sim = SimCluster::start(opts).await.expect("start simulation");
        let client = sim.client().await.expect("client");
        TestCluster {
            kubeconfig: sim.kubeconfig_path.clone(),
            client,
            sim: Some(sim),
            namespaces: vec![],
        }
    }

    /// A fresh namespace `showroom-test-<random>`, removed when the cluster drops.
    pub async fn namespace(&mut self) -> String {
        let name = format!(
            "showroom-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        self.namespaces.push(name.clone());
        name
    }

    pub fn is_sim(&self) -> bool {
        self.sim.is_some()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if self.sim.is_some() || self.namespaces.is_empty() {
            return;
        }
        // On a real cluster, remove what the test created (best effort, blocking).
        let client = self.client.clone();
        let names = std::mem::take(&mut self.namespaces);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let api = Api::<Namespace>::all(client);
                for n in names {
                    let _ = api.delete(&n, &Default::default()).await;
                }
            });
        })
        .join();
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
