//! Leader election with a `coordination.k8s.io` Lease (kube-lease-manager): every
//! replica serves HTTP from its own caches; only the leader runs the controller's
//! writes and the scheduled sweep. Another replica takes over within the lease duration.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// Unique per replica (the pod name in a Deployment).
    pub identity: String,
    /// A leader that has not renewed for this long loses the lease.
    pub duration_secs: u64,
    /// Renew this long before the lease would expire.
    pub grace_secs: u64,
}

/// A running election: `is_leader` follows this replica's state.
pub struct Election {
    pub is_leader: watch::Receiver<bool>,
    task: JoinHandle<kube_lease_manager::Result<LeaseManager>>,
}

impl Election {
    pub async fn start(client: Client, cfg: &LeaderConfig) -> anyhow::Result<Election> {
        let manager = LeaseManagerBuilder::new(client, &cfg.lease_name)
            .with_namespace(&cfg.namespace)
            .with_identity(&cfg.identity)
            .with_duration(cfg.duration_secs)
            .with_grace(cfg.grace_secs)
            .build()
            .await?;
        let (is_leader, task) = manager.watch().await;
        Ok(Election { is_leader, task })
    }

    /// Gives the lease up so that another replica takes over at once (graceful stop).
    pub async fn release(self) {
        drop(self.is_leader);
        match self.task.await {
            Ok(Ok(manager)) => {
                if let Err(e) = manager.release().await {
                    tracing::warn!(error = %e, "could not release the leader lease");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "leader election ended with an error"),
            Err(e) => tracing::warn!(error = %e, "leader election task failed"),
        }
    }

    /// Stops renewing without releasing, as a crash would.
    pub fn abandon(self) {
        self.task.abort();
    }
}
