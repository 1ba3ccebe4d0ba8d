//! Coalesced activity: however busy a demo is, at most one status write per demo per
//! interval reaches the API server. The latest activity is never lost, only delayed.

use crate::cluster::actions::patch_status;
use chrono::{DateTime, Utc};
use kube::Client;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Entry {
    last_write: Option<Instant>,
    pending: Option<DateTime<Utc>>,
}

pub struct ActivityTracker {
    client: Client,
    interval: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    writes: std::sync::atomic::AtomicU64,
}

impl ActivityTracker {
    pub fn new(client: Client, interval: Duration) -> Arc<Self> {
        Arc::new(ActivityTracker {
            client,
            interval,
            entries: Mutex::new(HashMap::new()),
            writes: Default::default(),
        })
    }

    /// Status writes made so far (for tests and metrics).
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn record(self: &Arc<Self>, demo: &str) {
        let now = Utc::now();
        let write_now = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let e = map.entry(demo.to_string()).or_default();
            if e.last_write.is_none_or(|w| w.elapsed() >= self.interval) {
                e.last_write = Some(Instant::now());
                e.pending = None;
                true
            } else {
                e.pending = Some(now);
                false
            }
        };
        if write_now {
            let me = self.clone();
            let name = demo.to_string();
            tokio::spawn(async move { me.write(&name, now).await });
        }
    }

    async fn write(&self, name: &str, at: DateTime<Utc>) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(e) = patch_status(&self.client, name, json!({"lastActivity": at})).await
            && !crate::k8s::is_not_found(&e)
        {
            {
                // Keep it pending so the flusher tries again.
                let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                let entry = map.entry(name.to_string()).or_default();
                entry.pending = Some(entry.pending.map_or(at, |p| p.max(at)));
                tracing::debug!(demo = name, error = %e, "activity write failed; will retry");
            }
        }
    }

    /// Writes what was held back, once each demo's interval has passed.
    pub async fn flush_loop(self: Arc<Self>) {
        let tick = (self.interval / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(tick).await;
            let due: Vec<(String, DateTime<Utc>)> = {
                let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|_, e| {
                    e.pending.is_some()
                        || e.last_write
                            .is_some_and(|w| w.elapsed() < self.interval * 4)
                });
                map.iter_mut()
                    .filter(|(_, e)| {
                        e.pending.is_some()
                            && e.last_write.is_none_or(|w| w.elapsed() >= self.interval)
                    })
                    .map(|(k, e)| {
                        e.last_write = Some(Instant::now());
                        (k.clone(), e.pending.take().unwrap_or_else(Utc::now))
                    })
                    .collect()
            };
            for (name, at) in due {
                self.write(&name, at).await;
            }
        }
    }
}
