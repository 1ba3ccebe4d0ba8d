//! The simulated API server's storage: objects as JSON, one global resourceVersion,
//! and a bounded event log per type for watches. Every write goes through admission
//! (`sim::admission`) under the store's lock, as one atomic step; the controllers
//! (`sim::controllers`) read and write through the same methods.

pub use super::error::ApiError;
use super::object::*;
use super::resources::{ResourceType, TypeKey, builtins};
use super::selector::{Selector, fields_of, labels_of};
use bytes::Bytes;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::{Notify, broadcast};

/// How many events per resource type a watch can resume from; older ones get 410 Gone.
pub const LOG_CAPACITY: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One write as watchers see it. The object is serialized once, here, for every
/// watcher; the event log keeps these bytes, not the objects, so history costs little.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub rv: u64,
    pub kind: EventType,
    pub json: Bytes,
    pub namespace: Arc<str>,
    /// What watch filters look at.
    pub labels: Arc<BTreeMap<String, String>>,
    pub fields: Arc<BTreeMap<String, String>>,
    /// The object as `PartialObjectMetadata`, made when a metadata-only watcher asks.
    partial: Arc<std::sync::OnceLock<Bytes>>,
}

impl WatchEvent {
    /// The event of a write: `json` is `obj` serialized, the same bytes the store keeps.
    fn of(rv: u64, kind: EventType, obj: &Value, json: Bytes) -> WatchEvent {
        WatchEvent {
            rv,
            kind,
            json,
            namespace: Arc::from(meta(obj, "namespace").unwrap_or_default()),
            labels: Arc::new(labels_of(obj)),
            fields: Arc::new(fields_of(obj)),
            partial: Default::default(),
        }
    }

    /// The object as a metadata-only client asks for it.
    pub fn partial_json(&self) -> Bytes {
        self.partial
            .get_or_init(|| {
                let obj: Value = serde_json::from_slice(&self.json).unwrap_or_default();
                Bytes::from(serde_json::to_vec(&partial(&obj)).unwrap_or_default())
            })
            .clone()
    }
}

/// An object as a metadata-only client asks for it (`as=PartialObjectMetadata`).
pub fn partial(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A write as the controllers hear of it: which object, not the object itself.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: TypeKey,
    pub kind: EventType,
    pub namespace: String,
    pub name: String,
    /// The object's controller owner: (kind, name).
    pub owner: Option<(String, String)>,
    /// A pod that no longer counts against quotas (finished, or past its deletion);
    /// false for every other object.
    pub released_quota: bool,
}

impl Change {
    pub(crate) fn of(key: TypeKey, kind: EventType, obj: &Value) -> Change {
        let owner = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .and_then(|refs| {
                refs.iter()
                    .find(|r| r["controller"] == Value::Bool(true))
                    .map(|r| {
                        let s = |f: &str| r[f].as_str().unwrap_or_default().to_string();
                        (s("kind"), s("name"))
                    })
            });
        Change {
            kind,
            namespace: meta(obj, "namespace").unwrap_or_default(),
            name: meta(obj, "name").unwrap_or_default(),
            owner,
            released_quota: key.0.is_empty()
                && key.2 == "pods"
                && !super::admission::quota::pod_counts(obj),
            key,
        }
    }
}

/// An object as the store keeps it: its JSON, serialized once when it was written and
/// shared with the watch log (parsed into a `Value`, an object takes about seven times
/// its JSON's bytes, which at 10,000 demos is gigabytes), and the few facts that the
/// garbage collector scans the whole store for, so that a pass parses nothing.
#[derive(Debug, Clone)]
pub struct Stored {
    pub json: Bytes,
    pub uid: Box<str>,
    /// The uids in its ownerReferences.
    pub owners: Box<[Box<str>]>,
    pub deleting: bool,
    /// Deleting, and held by the foreground-deletion finalizer.
    pub foreground: bool,
    /// A pod's `spec.nodeName` (empty: not bound).
    pub node: Box<str>,
    /// Its labels, sorted by key: a LIST by label selector reads these, not the JSON.
    pub labels: Box<[(Box<str>, Box<str>)]>,
    /// A pod's phase and readiness (other objects: Pending, not ready).
    pub pod: PodState,
}

/// What the Job and StatefulSet controllers count of a pod. They look at all of an
/// owner's pods on every change of one of them; parsing each pod's JSON for these two
/// facts was most of their CPU in a fill (some 10% of the simulation's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodState {
    pub phase: Phase,
    /// Its `Ready` condition is True.
    pub ready: bool,
}

/// A pod's `status.phase`; a pod without one is Pending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl PodState {
    fn of(pod: &Value) -> PodState {
        let phase = match pod.pointer("/status/phase").and_then(Value::as_str) {
            Some("Running") => Phase::Running,
            Some("Succeeded") => Phase::Succeeded,
            Some("Failed") => Phase::Failed,
            Some("Unknown") => Phase::Unknown,
            _ => Phase::Pending,
        };
        let ready = pod
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
        PodState { phase, ready }
    }

    /// Finished: its phase is final.
    pub fn finished(self) -> bool {
        matches!(self.phase, Phase::Succeeded | Phase::Failed)
    }
}

/// A pod an owner's controller looks at: its name, what it counts, and its JSON for
/// the rare look further.
#[derive(Debug, Clone)]
pub struct OwnedPod {
    pub name: String,
    pub state: PodState,
    pub deleting: bool,
    pub json: Bytes,
}

impl OwnedPod {
    /// The pod, parsed.
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

impl Stored {
    fn of(obj: &Value, json: Bytes) -> Stored {
        let deleting = is_deleting(obj);
        Stored {
            json,
            uid: meta(obj, "uid").unwrap_or_default().into(),
            owners: owner_uids(obj).into_iter().map(Into::into).collect(),
            deleting,
            foreground: deleting && finalizers(obj).iter().any(|f| f == FOREGROUND),
            node: obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .into(),
            labels: labels_of(obj)
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            pod: if obj.get("kind").and_then(Value::as_str) == Some("Pod") {
                PodState::of(obj)
            } else {
                PodState::default()
            },
        }
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// The object, parsed (a copy: changing it changes nothing stored).
    pub fn value(&self) -> Value {
        serde_json::from_slice(&self.json).unwrap_or(Value::Null)
    }
}

pub type Objects = BTreeMap<(String, String), Stored>;

/// An object as a write left it: parsed, and the JSON the store keeps, which the
/// write's answer sends as it is (copying the object to serialize it again cost the
/// simulation a few percent of its CPU in a fill).
#[derive(Clone, Debug)]
pub struct Committed {
    pub obj: Arc<Value>,
    pub json: Bytes,
}

impl Committed {
    fn serialized(obj: Value) -> Committed {
        let json = Bytes::from(serde_json::to_vec(&obj).unwrap_or_default());
        Committed {
            obj: Arc::new(obj),
            json,
        }
    }
}

impl std::ops::Deref for Committed {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.obj
    }
}

/// An object's JSON, parsed.
pub fn parse(json: &[u8]) -> Arc<Value> {
    Arc::new(serde_json::from_slice(json).unwrap_or(Value::Null))
}

#[derive(Default)]
pub(super) struct Log {
    events: VecDeque<WatchEvent>,
    /// The resourceVersion of the newest event dropped from the log.
    compacted: u64,
}

pub struct State {
    pub(super) rv: u64,
    pub(super) types: BTreeMap<TypeKey, Arc<ResourceType>>,
    /// The types by (group, version, kind), as ownerReferences name them: the collector
    /// looks up an owner's type on every write that has one. Rebuilt when `types`
    /// changes (a CRD is written).
    kinds: HashMap<(String, String, String), TypeKey>,
    pub(super) objects: HashMap<TypeKey, Objects>,
    logs: HashMap<TypeKey, Log>,
}

impl State {
    /// The objects of a `v1` type of a group (core: "") in one namespace, parsed.
    pub(super) fn objects_of<'a>(
        &'a self,
        group: &str,
        plural: &str,
        ns: &'a str,
    ) -> impl Iterator<Item = Value> + 'a {
        self.stored_in(group, plural, ns).map(Stored::value)
    }

    /// The stored objects of a `v1` type of a group in one namespace (not parsed).
    pub(super) fn stored_in<'a>(
        &'a self,
        group: &str,
        plural: &str,
        ns: &'a str,
    ) -> impl Iterator<Item = &'a Stored> + 'a {
        self.named_in(group, plural, ns).map(|(_, o)| o)
    }

    /// The same, with their names.
    fn named_in<'a>(
        &'a self,
        group: &str,
        plural: &str,
        ns: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Stored)> + 'a {
        let key: TypeKey = (group.to_string(), "v1".to_string(), plural.to_string());
        self.objects
            .get(&key)
            .into_iter()
            .flat_map(move |m| in_namespace(m, ns))
    }

    /// The objects of a `v1` type of a group, as stored, keyed by (namespace, name).
    pub(super) fn stored_of<'a>(
        &'a self,
        group: &str,
        plural: &str,
    ) -> impl Iterator<Item = (&'a (String, String), &'a Stored)> + 'a {
        let key: TypeKey = (group.to_string(), "v1".to_string(), plural.to_string());
        self.objects.get(&key).into_iter().flat_map(|m| m.iter())
    }

    /// The pods of a namespace that `uid` owns (not parsed).
    pub(super) fn pods_owned_by(&self, ns: &str, uid: &str) -> Vec<OwnedPod> {
        self.named_in("", "pods", ns)
            .filter(|(_, o)| o.owners.iter().any(|u| &**u == uid))
            .map(|(name, o)| OwnedPod {
                name: name.to_string(),
                state: o.pod,
                deleting: o.deleting,
                json: o.json.clone(),
            })
            .collect()
    }

    /// Whether an object of a `v1` type of a group exists (no parsing).
    pub(super) fn contains(&self, group: &str, plural: &str, ns: &str, name: &str) -> bool {
        let key: TypeKey = (group.to_string(), "v1".to_string(), plural.to_string());
        self.objects
            .get(&key)
            .is_some_and(|m| m.contains_key(&(ns.to_string(), name.to_string())))
    }

    fn index_kinds(&mut self) {
        self.kinds = self
            .types
            .iter()
            .map(|(key, t)| {
                let kind = (t.group.clone(), t.version.clone(), t.kind.clone());
                (kind, key.clone())
            })
            .collect();
    }

    /// Whether the collector has work with `obj` that no deletion announces: all its
    /// owners missing (made after, or with a wrong uid), or a pod bound to a node that
    /// does not exist. (Deletions and terminating namespaces announce themselves.)
    fn is_garbage(&self, obj: &Value) -> bool {
        let ns = meta(obj, "namespace").unwrap_or_default();
        let refs = obj
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let exists = |r: &Value| {
            let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or_default();
            let (group, version) = s("apiVersion")
                .rsplit_once('/')
                .unwrap_or(("", s("apiVersion")));
            let Some((key, rt)) = self
                .kinds
                .get(&(
                    group.to_string(),
                    version.to_string(),
                    s("kind").to_string(),
                ))
                .and_then(|key| self.types.get_key_value(key))
            else {
                return false;
            };
            let owner_ns = if rt.namespaced { ns.as_str() } else { "" };
            self.objects
                .get(key)
                .and_then(|m| m.get(&(owner_ns.to_string(), s("name").to_string())))
                .is_some_and(|o| &*o.uid == s("uid"))
        };
        if !refs.is_empty() && !refs.iter().any(exists) {
            return true;
        }
        let node = obj.pointer("/spec/nodeName").and_then(Value::as_str);
        node.is_some_and(|n| {
            !n.is_empty()
                && obj.get("kind").and_then(Value::as_str) == Some("Pod")
                && !self.contains("", "nodes", "", n)
        })
    }

    pub(super) fn namespace(&self, ns: &str) -> Option<&Stored> {
        self.objects
            .get(&(String::new(), "v1".into(), "namespaces".into()))
            .and_then(|m| m.get(&(String::new(), ns.to_string())))
    }
}

/// The objects of one namespace: a range of the map, ordered by (namespace, name).
fn in_namespace<'a>(
    m: &'a Objects,
    ns: &'a str,
) -> impl Iterator<Item = (&'a str, &'a Stored)> + 'a {
    m.range((ns.to_string(), String::new())..)
        .take_while(move |((ons, _), _)| ons == ns)
        .map(|((_, name), v)| (name.as_str(), v))
}

/// How a DELETE asks for an object to go.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    /// Only if the object still has this UID.
    pub uid: Option<String>,
    /// Only if the object is still at this resourceVersion.
    pub resource_version: Option<String>,
    /// `gracePeriodSeconds`: 0 deletes a pod at once (the kubelet's confirmation).
    pub grace: Option<i64>,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

pub struct Store {
    state: Mutex<State>,
    /// Every write, for the controllers.
    events: broadcast::Sender<Change>,
    /// The newest resourceVersion of each type, for that type's watches, which read
    /// what is new from the log: a watch of pods never wakes for other types' writes,
    /// and nothing but the log holds old versions.
    by_type: Mutex<HashMap<TypeKey, tokio::sync::watch::Sender<u64>>>,
    /// Wakes the namespace and garbage collectors.
    pub collect: Notify,
    /// A copy of `State::types`, replaced when a CRD is written: every request looks up
    /// its type first, and under the state lock those lookups queued behind the writes
    /// (1.6% of the simulation's CPU spent spinning in a fill to 1,000).
    types: RwLock<Arc<BTreeMap<TypeKey, Arc<ResourceType>>>>,
}

pub(super) const FOREGROUND: &str = "foregroundDeletion";

impl Store {
    pub fn new() -> Arc<Self> {
        let mut types = BTreeMap::new();
        for rt in builtins() {
            types.insert(rt.key(), Arc::new(rt));
        }
        let (events, _) = broadcast::channel(8192);
        let mut state = State {
            rv: 1,
            types,
            kinds: HashMap::new(),
            objects: HashMap::new(),
            logs: HashMap::new(),
        };
        state.index_kinds();
        Arc::new(Store {
            types: RwLock::new(Arc::new(state.types.clone())),
            state: Mutex::new(state),
            events,
            by_type: Mutex::new(HashMap::new()),
            collect: Notify::new(),
        })
    }

    /// The channel announcing a type's newest resourceVersion.
    fn channel(&self, key: &TypeKey, rv: u64) -> tokio::sync::watch::Sender<u64> {
        self.by_type
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key.clone())
            .or_insert_with(|| tokio::sync::watch::channel(rv).0)
            .clone()
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the simulation; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every write, as it happens (the controllers' informer).
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.events.subscribe()
    }

    fn types_now(&self) -> Arc<BTreeMap<TypeKey, Arc<ResourceType>>> {
        self.types.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn types(&self) -> Vec<Arc<ResourceType>> {
        self.types_now().values().cloned().collect()
    }

    pub fn resource_type(&self, key: &TypeKey) -> Option<Arc<ResourceType>> {
        self.types_now().get(key).cloned()
    }

    pub fn object_count(&self) -> usize {
        self.lock().objects.values().map(BTreeMap::len).sum()
    }

    /// What the store holds, per type: (plural, objects, bytes as JSON), largest first.
    pub fn stats(&self) -> Vec<(String, usize, usize)> {
        let st = self.lock();
        let mut out: Vec<(String, usize, usize)> = st
            .objects
            .iter()
            .map(|((_, _, plural), m)| {
                let bytes = m.values().map(|o| o.json.len()).sum();
                (plural.clone(), m.len(), bytes)
            })
            .collect();
        out.sort_by_key(|(_, _, b)| std::cmp::Reverse(*b));
        out
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        // Parsed outside the lock.
        let json = self.get_json(rt, ns, name)?;
        Ok(Arc::new(
            serde_json::from_slice(&json).unwrap_or(Value::Null),
        ))
    }

    /// The object's JSON as stored (shared, not copied).
    pub fn get_json(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Bytes, ApiError> {
        let st = self.lock();
        st.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .map(|o| o.json.clone())
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Lists objects in key order; `after` resumes after a key (the continue token).
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        limit: Option<usize>,
        after: Option<(String, String)>,
    ) -> (Vec<Bytes>, u64, Option<(String, String)>) {
        let st = self.lock();
        let mut items: Vec<Bytes> = Vec::new();
        let mut next = None;
        let mut last = None;
        if let Some(m) = st.objects.get(&rt.key()) {
            let start = match (&after, ns) {
                (Some(a), _) => a.clone(),
                (None, Some(n)) => (n.to_string(), String::new()),
                (None, None) => Default::default(),
            };
            for ((ons, oname), obj) in m.range(start.clone()..) {
                if after.is_some() && (ons, oname) == (&start.0, &start.1) {
                    continue;
                }
                if let Some(n) = ns
                    && n != ons
                {
                    // Keys are ordered by namespace: nothing further matches.
                    break;
                }
                if !labels.matches_with(|k| obj.label(k)) {
                    continue;
                }
                // Parsed only when a field selector needs it.
                if !fields.is_empty() && !fields.matches(&fields_of(&obj.value())) {
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    next = last;
                    break;
                }
                last = Some((ons.clone(), oname.clone()));
                items.push(obj.json.clone());
            }
        }
        (items, st.rv, next)
    }

    /// Starts a watch: the events after `from` (or the current objects as ADDED when
    /// `from` is None), the store's version they reach, and a receiver of the type's
    /// newest resourceVersion for what follows (`events_since` that version), with no
    /// gap between the two.
    pub fn watch(
        &self,
        rt: &ResourceType,
        from: Option<u64>,
    ) -> Result<(Vec<WatchEvent>, u64, tokio::sync::watch::Receiver<u64>), ApiError> {
        let key = rt.key();
        let (backlog, reached, current) = {
            let st = self.lock();
            let backlog = match from {
                Some(rv) => Ok(Self::log_since(&st, &key, rv)?),
                None => Err(st
                    .objects
                    .get(&key)
                    .map(|m| m.values().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()),
            };
            // Subscribed under the store's lock: nothing written after the backlog is
            // missed.
            (backlog, st.rv, self.channel(&key, st.rv).subscribe())
        };
        // The current objects are read outside the lock.
        let backlog = backlog.unwrap_or_else(|objects| {
            objects
                .iter()
                .map(|o| {
                    let v = o.value();
                    let rv = meta(&v, "resourceVersion")
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    WatchEvent::of(rv, EventType::Added, &v, o.json.clone())
                })
                .collect()
        });
        Ok((backlog, reached, current))
    }

    fn log_since(st: &State, key: &TypeKey, rv: u64) -> Result<Vec<WatchEvent>, ApiError> {
        let Some(log) = st.logs.get(key) else {
            return Ok(Vec::new());
        };
        if rv < log.compacted {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                log.compacted
            )));
        }
        let from = log.events.partition_point(|e| e.rv <= rv);
        Ok(log.events.range(from..).cloned().collect())
    }

    /// What a running watch has not seen yet: the type's events after `rv`. Gone when
    /// the watch fell so far behind that the log no longer holds them.
    pub fn events_since(&self, rt: &ResourceType, rv: u64) -> Result<Vec<WatchEvent>, ApiError> {
        Self::log_since(&self.lock(), &rt.key(), rv)
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Writes a new version (or a removal) and publishes the event.
    pub(super) fn commit(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        kind: EventType,
    ) -> Committed {
        st.rv += 1;
        let rv = st.rv;
        if kind != EventType::Deleted {
            metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        }
        // Serialized once: the store and every watcher share these bytes. Copied out of
        // the serializer's buffer, which grows by doubling: kept as it was, up to half of
        // each object's allocation was slack (heaptrack at 10,000 demos: 455 MiB held
        // for 315 MiB of JSON), and shrinking it in place frees nothing with mimalloc.
        let json = Bytes::copy_from_slice(&serde_json::to_vec(&obj).unwrap_or_default());
        let key = rt.key();
        let objects = st.objects.entry(key.clone()).or_default();
        let id = (ns.to_string(), name.to_string());
        if kind == EventType::Deleted {
            objects.remove(&id);
        } else {
            objects.insert(id, Stored::of(&obj, json.clone()));
            // The collector passes only when told: a pass scans the whole store under
            // this lock (16 to 35 ms at 1,000 demos, growing with the store), which
            // every request waited out when it also ran every 5 s on a timer.
            if st.is_garbage(&obj) {
                self.collect.notify_one();
            }
        }
        let obj = Arc::new(obj);
        let log = st.logs.entry(key.clone()).or_default();
        log.events
            .push_back(WatchEvent::of(rv, kind, &obj, json.clone()));
        while log.events.len() > LOG_CAPACITY {
            if let Some(old) = log.events.pop_front() {
                log.compacted = old.rv;
            }
        }
        if let Some(tx) = self
            .by_type
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            tx.send_replace(rv);
        }
        let _ = self.events.send(Change::of(key, kind, &obj));
        if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
            Self::sync_crd(st, &obj, kind);
            // Published under the state lock, so copies replace each other in order.
            *self.types.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(st.types.clone());
        }
        Committed { obj, json }
    }

    /// Registers (or drops) the types a CRD serves.
    fn sync_crd(st: &mut State, crd: &Value, kind: EventType) {
        let name = meta(crd, "name").unwrap_or_default();
        let old: Vec<TypeKey> = st
            .types
            .iter()
            .filter(|(_, t)| t.crd.as_deref() == Some(name.as_str()))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            st.types.remove(k);
        }
        if kind == EventType::Deleted {
            for k in old {
                st.objects.remove(&k);
            }
        } else if let Ok(types) = ResourceType::from_crd(crd) {
            for t in types {
                st.types.insert(t.key(), Arc::new(t));
            }
        }
        st.index_kinds();
    }

    /// The stored object, or NotFound.
    pub(super) fn current(
        st: &State,
        rt: &ResourceType,
        ns_key: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        st.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(ns_key.to_string(), name.to_string())))
            .map(|o| Arc::new(o.value()))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
    ) -> Result<Committed, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let mut st = self.lock();
        // Types may change under us when a CRD is removed.
        if !st.types.contains_key(&rt.key()) {
            return Err(ApiError::new(
                404,
                "NotFound",
                format!(
                    "the server could not find the requested resource ({})",
                    rt.qualified()
                ),
            ));
        }
        let mut name = meta(&obj, "name").unwrap_or_default();
        if name.is_empty() {
            match meta(&obj, "generateName") {
                Some(prefix) if !prefix.is_empty() => {
                    let suffix: String = (0..5)
                        .map(|_| {
                            let c = b"bcdfghjklmnpqrstvwxz2456789";
                            c[fastrand::usize(..c.len())] as char
                        })
                        .collect();
                    name = format!("{prefix}{suffix}");
                }
                _ => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        "metadata.name: Required value: name or generateName is required",
                    ));
                }
            }
        }
        if rt.namespaced {
            if ns.is_empty() {
                return Err(ApiError::bad_request(
                    "a namespace is required for this resource",
                ));
            }
            if let Some(given) = meta(&obj, "namespace")
                && !given.is_empty()
                && given != ns
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            match st.namespace(ns) {
                None => {
                    return Err(ApiError::new(
                        404,
                        "NotFound",
                        format!("namespaces \"{ns}\" not found"),
                    ));
                }
                Some(n) if n.deleting => {
                    return Err(ApiError::new(
                        403,
                        "Forbidden",
                        format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            rt.qualified()
                        ),
                    ));
                }
                _ => {}
            }
        }
        let ns_key = if rt.namespaced { ns } else { "" };
        if st
            .objects
            .get(&rt.key())
            .is_some_and(|m| m.contains_key(&(ns_key.to_string(), name.clone())))
        {
            return Err(ApiError::already_exists(rt, &name));
        }
        // Status belongs to its subresource (a Node registers with its own, as the
        // kubelet does).
        if rt.status
            && rt.kind != "Node"
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        fold_string_data(rt, &mut obj);
        let m = metadata_mut(&mut obj);
        m.insert("name".into(), json!(name));
        if rt.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        m.insert("generation".into(), json!(1));
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.remove("resourceVersion");
        super::admission::on_create(&st, rt, ns, &mut obj)?;
        Ok(self.commit(&mut st, rt, ns_key, &name, obj, EventType::Added))
    }

    /// Read-modify-write under the lock: `change` gets the current object and returns
    /// the desired one. A resourceVersion in the result must match the current one.
    pub fn modify(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        part: Part,
        change: impl FnOnce(&Value) -> Result<Value, ApiError>,
    ) -> Result<Committed, ApiError> {
        let mut st = self.lock();
        let ns_key = if rt.namespaced { ns } else { "" };
        let current = Self::current(&st, rt, ns_key, name)?;
        let wanted = change(&current)?;
        if !wanted.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        self.update_locked(&mut st, rt, ns_key, name, &current, wanted, part)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        current: &Value,
        wanted: Value,
        part: Part,
    ) -> Result<Committed, ApiError> {
        if let Some(rv) = meta(&wanted, "resourceVersion")
            && !rv.is_empty()
            && Some(&rv) != meta(current, "resourceVersion").as_ref()
        {
            return Err(ApiError::conflict(rt, name));
        }
        if let Some(n) = meta(&wanted, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let mut next = match part {
            Part::Status => {
                let mut n = current.clone();
                n["status"] = wanted.get("status").cloned().unwrap_or(Value::Null);
                n
            }
            Part::Main => {
                let mut n = wanted;
                if rt.status {
                    match current.get("status") {
                        Some(s) => n["status"] = s.clone(),
                        None => {
                            if let Some(m) = n.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                n
            }
        };
        fold_string_data(rt, &mut next);
        // Fields the server owns.
        next["apiVersion"] = json!(rt.api_version());
        next["kind"] = json!(rt.kind);
        let cur_meta = &current["metadata"];
        let deleting = is_deleting(current);
        {
            let m = metadata_mut(&mut next);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "namespace",
                "name",
                "generation",
            ] {
                match cur_meta.get(f) {
                    Some(v) => m.insert(f.into(), v.clone()),
                    None => m.remove(f),
                };
            }
            m.remove("resourceVersion");
            match cur_meta.get("deletionGracePeriodSeconds") {
                Some(v) => m.insert("deletionGracePeriodSeconds".into(), v.clone()),
                None => m.remove("deletionGracePeriodSeconds"),
            };
        }
        if deleting {
            let old = finalizers(current);
            let added: Vec<String> = finalizers(&next)
                .into_iter()
                .filter(|f| !old.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    rt,
                    name,
                    format!(
                        "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                ));
            }
        }
        super::admission::on_update(st, rt, ns, current, &mut next, part)?;
        if part == Part::Main && !same_except(&next, current, &["metadata", "status"]) {
            let g = cur_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata_mut(&mut next).insert("generation".into(), json!(g + 1));
        }
        if same_except(&next, current, &["metadata"])
            && same_except(&next["metadata"], cur_meta, &["resourceVersion"])
        {
            // A no-op write does not bump the resourceVersion, as in Kubernetes.
            return Ok(Committed::serialized(current.clone()));
        }
        if rt.plural == "customresourcedefinitions" {
            ResourceType::from_crd(&next).map_err(|e| ApiError::invalid(rt, name, e))?;
        }
        let waiting_for_grace = next
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            != 0;
        if deleting
            && finalizers(&next).is_empty()
            && !waiting_for_grace
            && !(rt.plural == "namespaces" && rt.group.is_empty())
        {
            let out = self.commit(st, rt, ns, name, next, EventType::Modified);
            let gone = (*out.obj).clone();
            self.commit(st, rt, ns, name, gone, EventType::Deleted);
            self.collect.notify_one();
            return Ok(out);
        }
        if deleting && rt.plural == "namespaces" {
            self.collect.notify_one();
        }
        Ok(self.commit(st, rt, ns, name, next, EventType::Modified))
    }
}

/// Whether two objects are equal but for the fields `except` (compared in place: a write
/// path that cloned whole objects to compare them spent a tenth of a fill's CPU on it).
fn same_except(a: &Value, b: &Value, except: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept = |m: &'_ serde_json::Map<String, Value>| {
        m.iter()
            .filter(|(k, _)| !except.contains(&k.as_str()))
            .count()
    };
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !except.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

#[cfg(test)]
mod tests {
    use super::same_except;
    use serde_json::json;

    #[test]
    fn objects_compare_equal_but_for_the_fields_left_out() {
        let a = json!({"metadata": {"resourceVersion": "1"}, "spec": {"x": 1}, "status": {"y": 1}});
        let b = json!({"metadata": {"resourceVersion": "2"}, "spec": {"x": 1}, "status": {"y": 2}});
        assert!(same_except(&a, &b, &["metadata", "status"]));
        assert!(!same_except(&a, &b, &["metadata"]));
        assert!(same_except(
            &a["metadata"],
            &json!({}),
            &["resourceVersion"]
        ));
        // A field only one side has is a difference, on either side.
        let c = json!({"metadata": {}, "spec": {"x": 1}, "extra": true});
        assert!(!same_except(&a, &c, &["metadata", "status"]));
        assert!(!same_except(&c, &a, &["metadata", "status"]));
        assert!(!same_except(
            &json!({"spec": {"x": 2}}),
            &json!({"spec": {"x": 1}}),
            &[]
        ));
        assert!(same_except(&json!(null), &json!(null), &[]));
    }
}
