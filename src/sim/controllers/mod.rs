//! The simulation's controller-manager part: what showroom relies on from
//! kube-controller-manager. Jobs run pods and get their status from them; StatefulSets
//! keep their pods (and PVCs) and count the ready ones; namespaces get the `default`
//! ServiceAccount and `kube-root-ca.crt`; ResourceQuotas show what is used; terminating
//! namespaces are emptied and garbage is collected (`gc`). Like the real controllers,
//! they react to changes and never do what the agent (the node) does.

mod gc;
mod job;
mod namespace;
mod quota;
mod statefulset;

use super::store::{Change, EventType, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// One object for one controller to look at.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Work {
    Job(String, String),
    StatefulSet(String, String),
    Namespace(String),
    Quota(String),
}

/// The controllers, and the collector; they stop when the handles are aborted.
pub fn start(store: Arc<Store>) -> Vec<JoinHandle<()>> {
    let collector = store.clone();
    vec![
        tokio::spawn(async move {
            loop {
                // Repeat while there is work, but never spin on a stuck finalizer.
                let started = std::time::Instant::now();
                for _ in 0..20 {
                    if !collector.collect_once() {
                        break;
                    }
                }
                // A pass scans the whole store under its lock (some 300,000 objects at
                // 10,000 demos): between passes, wait at least twice as long as the last
                // took, so that collecting never holds the store more than a third of
                // the time, and a burst of deletions (a namespace's contents) is
                // collected in one pass. Every deletion wakes it, and so does a write of
                // an object whose owners are all missing (`State::is_garbage`); the rare
                // timer is a safety net.
                let pause = (started.elapsed() * 2).max(Duration::from_millis(25));
                tokio::select! {
                    _ = collector.collect.notified() => tokio::time::sleep(pause).await,
                    _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                }
            }
        }),
        tokio::spawn(run(store)),
    ]
}

fn route(ev: &Change, queue: &mut BTreeSet<Work>) {
    let (group, _, plural) = &ev.key;
    let ns = ev.namespace.clone();
    let name = ev.name.clone();
    let owned_by = |kind: &str| {
        ev.owner
            .as_ref()
            .filter(|(k, _)| k == kind)
            .map(|(_, n)| n.clone())
    };
    match (group.as_str(), plural.as_str()) {
        ("batch", "jobs") => {
            queue.insert(Work::Job(ns, name));
        }
        ("apps", "statefulsets") => {
            queue.insert(Work::StatefulSet(ns, name));
        }
        ("", "pods") => {
            if let Some(j) = owned_by("Job") {
                queue.insert(Work::Job(ns.clone(), j));
            }
            if let Some(s) = owned_by("StatefulSet") {
                queue.insert(Work::StatefulSet(ns.clone(), s));
            }
            // As kube-controller-manager's quota monitor: a pod's update recounts its
            // namespace only when the pod stops counting (finished, or past its
            // deletion), not on every status change the kubelet writes. A new pod is
            // counted at once: the real API server's quota admission adds it to
            // `status.used` as it admits it, which this recount stands in for.
            if ev.kind != EventType::Modified || ev.released_quota {
                queue.insert(Work::Quota(ns));
            }
        }
        ("", "resourcequotas") if ev.kind != EventType::Deleted => {
            queue.insert(Work::Quota(ns));
        }
        ("", "namespaces") if ev.kind != EventType::Deleted => {
            queue.insert(Work::Namespace(name));
        }
        // The root-CA publisher and the ServiceAccount controller put these back.
        ("", "configmaps" | "serviceaccounts") if ev.kind == EventType::Deleted => {
            queue.insert(Work::Namespace(ns));
        }
        _ => {}
    }
}

/// Everything, as after a start or a missed event.
fn resync(store: &Store, queue: &mut BTreeSet<Work>) {
    let st = store.lock();
    for ((ns, name), _) in st.stored_of("batch", "jobs") {
        queue.insert(Work::Job(ns.clone(), name.clone()));
    }
    for ((ns, name), _) in st.stored_of("apps", "statefulsets") {
        queue.insert(Work::StatefulSet(ns.clone(), name.clone()));
    }
    for ((_, name), _) in st.stored_of("", "namespaces") {
        queue.insert(Work::Namespace(name.clone()));
    }
    for ((ns, _), _) in st.stored_of("", "resourcequotas") {
        queue.insert(Work::Quota(ns.clone()));
    }
}

async fn run(store: Arc<Store>) {
    let mut rx = store.subscribe();
    let mut queue = BTreeSet::new();
    let mut later: BTreeMap<Instant, BTreeSet<Work>> = BTreeMap::new();
    resync(&store, &mut queue);
    loop {
        for w in std::mem::take(&mut queue) {
            let again = match &w {
                Work::Job(ns, name) => job::sync(&store, ns, name),
                Work::StatefulSet(ns, name) => statefulset::sync(&store, ns, name),
                Work::Namespace(name) => namespace::sync(&store, name),
                Work::Quota(ns) => quota::sync(&store, ns),
            };
            if let Some(after) = again {
                later.entry(Instant::now() + after).or_default().insert(w);
            }
        }
        let next = later.keys().next().copied();
        let wake = async {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = rx.recv() => match ev {
                Ok(ev) => {
                    route(&ev, &mut queue);
                    while let Ok(ev) = rx.try_recv() {
                        route(&ev, &mut queue);
                    }
                }
                Err(RecvError::Lagged(_)) => resync(&store, &mut queue),
                Err(RecvError::Closed) => return,
            },
            _ = wake => {}
            // A slow resync as a safety net.
            _ = tokio::time::sleep(Duration::from_secs(30)) => resync(&store, &mut queue),
        }
        let now = Instant::now();
        while let Some(entry) = later.first_entry() {
            if *entry.key() > now {
                break;
            }
            queue.extend(entry.remove());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_change(kind: EventType, pod: serde_json::Value) -> Change {
        Change::of((String::new(), "v1".into(), "pods".into()), kind, &pod)
    }

    fn recounts(ev: &Change) -> bool {
        let mut queue = BTreeSet::new();
        route(ev, &mut queue);
        queue.contains(&Work::Quota("ns".into()))
    }

    #[test]
    fn a_pod_recounts_its_namespace_when_it_comes_goes_or_stops_counting() {
        let meta = json!({"name": "p", "namespace": "ns"});
        let running = json!({"metadata": meta, "status": {"phase": "Running"}});
        assert!(recounts(&pod_change(EventType::Added, running.clone())));
        assert!(recounts(&pod_change(EventType::Deleted, running.clone())));
        // The kubelet's status updates change nothing quota counts.
        assert!(!recounts(&pod_change(EventType::Modified, running)));
        let graceful = json!({"metadata": {"name": "p", "namespace": "ns",
            "deletionTimestamp": "2026-11-28T12:00:00Z", "deletionGracePeriodSeconds": 30}});
        assert!(!recounts(&pod_change(EventType::Modified, graceful)));
        let gone = json!({"metadata": {"name": "p", "namespace": "ns",
            "deletionTimestamp": "2026-11-28T12:00:00Z", "deletionGracePeriodSeconds": 0}});
        assert!(recounts(&pod_change(EventType::Modified, gone)));
        for phase in ["Succeeded", "Failed"] {
            let done = json!({"metadata": meta, "status": {"phase": phase}});
            assert!(recounts(&pod_change(EventType::Modified, done)), "{phase}");
        }
    }
}
