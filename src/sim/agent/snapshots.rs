//! The snapshot registry the simulated `vcluster create --restore` reads from: what an
//! OCI registry or bucket would hold, reduced to what the simulation needs to know.

use crate::domain::template::Catalogue;
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// A web app inside the snapshot, reached through its Service.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    /// Namespace inside the vcluster.
    pub namespace: String,
    pub service: String,
    pub port: u16,
}

/// What restoring a snapshot brings back, and how long it takes.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub apps: Vec<App>,
    /// How long `vcluster create --restore` runs.
    pub restore_time: Duration,
    /// How long the vcluster's pod takes to become Ready after it starts.
    pub boot_time: Duration,
}

/// Snapshots by URL. A URL that is not here fails to restore, as a missing image or
/// object would.
#[derive(Debug, Default)]
pub struct Snapshots {
    by_url: RwLock<HashMap<String, Snapshot>>,
    /// URL prefixes the registry refuses pushes to, with the registry's words.
    refused: RwLock<Vec<(String, String)>>,
}

impl Snapshots {
    pub fn publish(&self, url: &str, snapshot: Snapshot) {
        self.by_url
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(url.to_string(), snapshot);
    }

    /// Takes a snapshot away (a deleted image or object): restoring it fails.
    pub fn withdraw(&self, url: &str) {
        self.by_url
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url);
    }

    /// The registry refuses pushes under `prefix` from now on (a read-only registry,
    /// missing credentials).
    pub fn refuse_pushes(&self, prefix: &str, why: &str) {
        self.refused
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push((prefix.to_string(), why.to_string()));
    }

    /// Why a push to `url` is refused, if it is.
    pub fn refuses_push(&self, url: &str) -> Option<String> {
        self.refused
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|(p, _)| url.starts_with(p.as_str()))
            .map(|(_, why)| why.clone())
    }

    pub fn get(&self, url: &str) -> Option<Snapshot> {
        self.by_url
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            .cloned()
    }

    /// Publishes each template's snapshot with its entrypoint as the one app, as if the
    /// templates' authors had pushed them.
    pub fn publish_catalogue(&self, cat: &Catalogue, restore_time: Duration, boot_time: Duration) {
        for t in cat.templates.values() {
            self.publish(
                &t.snapshot,
                Snapshot {
                    apps: vec![App {
                        namespace: t.entrypoint.namespace.clone(),
                        service: t.entrypoint.service.clone(),
                        port: t.entrypoint.port,
                    }],
                    restore_time,
                    boot_time,
                },
            );
        }
    }
}
