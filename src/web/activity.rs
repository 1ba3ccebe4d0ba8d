//! Coalesced activity: however busy a demo is, at most one status write per demo per
//! interval reaches the API server. The latest activity and every share-link visit are
//! kept, only delayed.

use crate::cluster::actions::patch_status;
use crate::cluster::crd::{Demo, LinkVisits};
use chrono::{DateTime, Utc};
use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Entry {
    last_write: Option<Instant>,
    pending: Option<DateTime<Utc>>,
    /// Visits per link not yet written: (count, first, last).
    visits: HashMap<String, (u64, DateTime<Utc>, DateTime<Utc>)>,
}

impl Entry {
    fn has_pending(&self) -> bool {
        self.pending.is_some() || !self.visits.is_empty()
    }
}

struct Batch {
    at: DateTime<Utc>,
    visits: HashMap<String, (u64, DateTime<Utc>, DateTime<Utc>)>,
}

pub struct ActivityTracker {
    client: Client,
    demos: Store<Demo>,
    interval: Duration,
    entries: Mutex<HashMap<String, Entry>>,
    writes: std::sync::atomic::AtomicU64,
}

impl ActivityTracker {
    pub fn new(client: Client, demos: Store<Demo>, interval: Duration) -> Arc<Self> {
        Arc::new(ActivityTracker {
            client,
            demos,
            interval,
            entries: Mutex::new(HashMap::new()),
            writes: Default::default(),
        })
    }

    /// Status writes made so far (for tests and metrics).
    pub fn writes(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Someone used the demo (API heartbeat, proxied traffic).
    pub fn record(self: &Arc<Self>, demo: &str) {
        self.note(demo, None);
    }

    /// A prospect opened a share link: activity, and one visit for the link.
    pub fn record_visit(self: &Arc<Self>, demo: &str, link: &str) {
        self.note(demo, Some(link));
    }

    fn note(self: &Arc<Self>, demo: &str, link: Option<&str>) {
        let now = Utc::now();
        let batch = {
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let e = map.entry(demo.to_string()).or_default();
            e.pending = Some(now);
            if let Some(l) = link {
                let v = e.visits.entry(l.to_string()).or_insert((0, now, now));
                v.0 += 1;
                v.2 = now;
            }
            self.take_if_due(e)
        };
        if let Some(b) = batch {
            let me = self.clone();
            let name = demo.to_string();
            tokio::spawn(async move { me.write(&name, b).await });
        }
    }

    fn take_if_due(&self, e: &mut Entry) -> Option<Batch> {
        if !e.has_pending() || e.last_write.is_some_and(|w| w.elapsed() < self.interval) {
            return None;
        }
        e.last_write = Some(Instant::now());
        Some(Batch {
            at: e.pending.take().unwrap_or_else(Utc::now),
            visits: std::mem::take(&mut e.visits),
        })
    }

    async fn write(&self, name: &str, b: Batch) {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut status = json!({"lastActivity": b.at});
        if !b.visits.is_empty() {
            // Absolute figures: what the cache holds plus what happened here since.
            let known = self
                .demos
                .get(&ObjectRef::new(name))
                .and_then(|d| d.status.clone())
                .map(|s| s.share_link_visits)
                .unwrap_or_default();
            let mut out = serde_json::Map::new();
            for (id, (n, first, last)) in &b.visits {
                let old = known.get(id).cloned().unwrap_or_default();
                let v = LinkVisits {
                    visits: old.visits + n,
                    first_opened_at: Some(old.first_opened_at.map_or(*first, |f| f.min(*first))),
                    last_opened_at: Some(old.last_opened_at.map_or(*last, |l| l.max(*last))),
                };
                out.insert(id.clone(), serde_json::to_value(v).unwrap_or(Value::Null));
            }
            status["shareLinkVisits"] = Value::Object(out);
        }
        if let Err(e) = patch_status(&self.client, name, status).await
            && !crate::k8s::is_not_found(&e)
        {
            // Put it back so the flusher tries again; nothing is lost.
            let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
            let entry = map.entry(name.to_string()).or_default();
            entry.pending = Some(entry.pending.map_or(b.at, |p| p.max(b.at)));
            for (id, (n, first, last)) in b.visits {
                let v = entry.visits.entry(id).or_insert((0, first, last));
                v.0 += n;
                v.1 = v.1.min(first);
                v.2 = v.2.max(last);
            }
            tracing::debug!(demo = name, error = %e, "activity write failed; will retry");
        }
    }

    /// Writes what was held back, once each demo's interval has passed.
    pub async fn flush_loop(self: Arc<Self>) {
        let tick = (self.interval / 4).max(Duration::from_millis(50));
        loop {
            tokio::time::sleep(tick).await;
            let due: Vec<(String, Batch)> = {
                let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
                map.retain(|_, e| {
                    e.has_pending()
                        || e.last_write
                            .is_some_and(|w| w.elapsed() < self.interval * 4)
                });
                map.iter_mut()
                    .filter_map(|(k, e)| self.take_if_due(e).map(|b| (k.clone(), b)))
                    .collect()
            };
            for (name, b) in due {
                self.write(&name, b).await;
            }
        }
    }
}
