//! The simulated API server's storage: objects as JSON, one global resourceVersion,
//! a bounded event log per type for watches, and the namespace and garbage collectors.

use super::resources::{ResourceType, TypeKey, builtins};
use super::selector::{Selector, fields_of, labels_of};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
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

#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub key: TypeKey,
    pub rv: u64,
    pub kind: EventType,
    pub obj: Arc<Value>,
}

/// An error answered as a Kubernetes `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }
    pub fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = json!({"name": name, "group": rt.group, "kind": rt.plural});
        self
    }
    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.qualified()),
        )
        .with_details(rt, name)
    }
    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
        )
        .with_details(rt, name)
    }
    pub fn conflict(rt: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                rt.qualified()
            ),
        )
        .with_details(rt, name)
    }
    pub fn invalid(rt: &ResourceType, name: &str, why: impl std::fmt::Display) -> Self {
        Self::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {why}", rt.kind),
        )
        .with_details(rt, name)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    pub fn status_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            v["details"] = self.details.clone();
        }
        v
    }
}

type Objects = BTreeMap<(String, String), Arc<Value>>;

#[derive(Default)]
struct Log {
    events: VecDeque<WatchEvent>,
    /// The resourceVersion of the newest event dropped from the log.
    compacted: u64,
}

struct State {
    rv: u64,
    types: BTreeMap<TypeKey, Arc<ResourceType>>,
    objects: HashMap<TypeKey, Objects>,
    logs: HashMap<TypeKey, Log>,
}

/// Which part of an object an update may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Main,
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

pub struct Store {
    state: Mutex<State>,
    events: broadcast::Sender<WatchEvent>,
    /// Wakes the namespace and garbage collectors.
    pub collect: Notify,
}

const FOREGROUND: &str = "foregroundDeletion";

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata")?
        .get(field)?
        .as_str()
        .map(str::to_string)
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(obj: &Value) -> Vec<String> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// A Secret's `stringData` is write-only: the API server folds it into `data`.
fn fold_string_data(rt: &ResourceType, obj: &mut Value) {
    use base64::Engine;
    if rt.kind != "Secret" || !rt.group.is_empty() {
        return;
    }
    let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in sd {
        let text = v.as_str().unwrap_or_default();
        obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

/// DNS-1123 subdomain: what Kubernetes accepts as most object names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

impl Store {
    pub fn new() -> Arc<Self> {
        let mut types = BTreeMap::new();
        for rt in builtins() {
            types.insert(rt.key(), Arc::new(rt));
        }
        let (events, _) = broadcast::channel(65536);
        Arc::new(Store {
            state: Mutex::new(State {
                rv: 1,
                types,
                objects: HashMap::new(),
                logs: HashMap::new(),
            }),
            events,
            collect: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in the simulation; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn types(&self) -> Vec<Arc<ResourceType>> {
        self.lock().types.values().cloned().collect()
    }

    pub fn resource_type(&self, key: &TypeKey) -> Option<Arc<ResourceType>> {
        self.lock().types.get(key).cloned()
    }

    pub fn object_count(&self) -> usize {
        self.lock().objects.values().map(BTreeMap::len).sum()
    }

    pub fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        let st = self.lock();
        st.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
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
    ) -> (Vec<Arc<Value>>, u64, Option<(String, String)>) {
        let st = self.lock();
        let mut items = Vec::new();
        let mut next = None;
        if let Some(m) = st.objects.get(&rt.key()) {
            let start = after.clone().unwrap_or_default();
            for ((ons, oname), obj) in m.range(start.clone()..) {
                if after.is_some() && (ons, oname) == (&start.0, &start.1) {
                    continue;
                }
                if ns.is_some_and(|n| n != ons) {
                    continue;
                }
                if !labels.matches(&labels_of(obj)) || !fields.matches(&fields_of(obj)) {
                    continue;
                }
                if limit.is_some_and(|l| items.len() >= l) {
                    next = items.last().map(|o: &Arc<Value>| {
                        (
                            meta(o, "namespace").unwrap_or_default(),
                            meta(o, "name").unwrap_or_default(),
                        )
                    });
                    break;
                }
                items.push(obj.clone());
            }
        }
        (items, st.rv, next)
    }

    /// Starts a watch: the events after `from` (or the current objects as ADDED when
    /// `from` is None), and a receiver for what follows, with no gap between the two.
    pub fn watch(
        &self,
        rt: &ResourceType,
        from: Option<u64>,
    ) -> Result<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>), ApiError> {
        let st = self.lock();
        let key = rt.key();
        let backlog = match from {
            Some(rv) => {
                let log = st.logs.get(&key);
                let compacted = log.map_or(0, |l| l.compacted);
                if rv < compacted {
                    return Err(ApiError::gone(format!(
                        "too old resource version: {rv} ({compacted})"
                    )));
                }
                log.map(|l| l.events.iter().filter(|e| e.rv > rv).cloned().collect())
                    .unwrap_or_default()
            }
            None => st
                .objects
                .get(&key)
                .map(|m| {
                    m.values()
                        .map(|o| WatchEvent {
                            key: key.clone(),
                            rv: meta(o, "resourceVersion")
                                .and_then(|v| v.parse().ok())
                                .unwrap_or(0),
                            kind: EventType::Added,
                            obj: o.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        };
        Ok((backlog, self.events.subscribe()))
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    /// Writes a new version (or a removal) and publishes the event.
    fn commit(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut obj: Value,
        kind: EventType,
    ) -> Arc<Value> {
        st.rv += 1;
        let rv = st.rv;
        if kind != EventType::Deleted {
            metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        }
        let obj = Arc::new(obj);
        let key = rt.key();
        let objects = st.objects.entry(key.clone()).or_default();
        let id = (ns.to_string(), name.to_string());
        if kind == EventType::Deleted {
            objects.remove(&id);
        } else {
            objects.insert(id, obj.clone());
        }
        let ev = WatchEvent {
            key: key.clone(),
            rv,
            kind,
            obj: obj.clone(),
        };
        let log = st.logs.entry(key).or_default();
        log.events.push_back(ev.clone());
        while log.events.len() > LOG_CAPACITY {
            if let Some(old) = log.events.pop_front() {
                log.compacted = old.rv;
            }
        }
        let _ = self.events.send(ev);
        if rt.plural == "customresourcedefinitions" && rt.group == "apiextensions.k8s.io" {
            Self::sync_crd(st, &obj, kind);
        }
        obj
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
            return;
        }
        if let Ok(types) = ResourceType::from_crd(crd) {
            for t in types {
                st.types.insert(t.key(), Arc::new(t));
            }
        }
    }

    /// The stored object, or NotFound.
    fn current(
        st: &State,
        rt: &ResourceType,
        ns_key: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        st.objects
            .get(&rt.key())
            .and_then(|m| m.get(&(ns_key.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    fn namespace_state(st: &State, ns: &str) -> Option<Arc<Value>> {
        st.objects
            .get(&(String::new(), "v1".into(), "namespaces".into()))
            .and_then(|m| m.get(&(String::new(), ns.to_string())))
            .cloned()
    }

    pub fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
    ) -> Result<Arc<Value>, ApiError> {
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
        if !valid_name(&name) {
            return Err(ApiError::invalid(
                rt,
                &name,
                format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
                ),
            ));
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
            match Self::namespace_state(&st, ns) {
                None => {
                    return Err(ApiError::new(
                        404,
                        "NotFound",
                        format!("namespaces \"{ns}\" not found"),
                    ));
                }
                Some(n) if is_deleting(&n) => {
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
        if (rt.crd.is_some() || rt.plural == "customresourcedefinitions")
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if rt.plural == "customresourcedefinitions" {
            let mut probe = obj.clone();
            metadata_mut(&mut probe).insert("name".into(), json!(name));
            ResourceType::from_crd(&probe).map_err(|e| ApiError::invalid(rt, &name, e))?;
            obj["status"] = json!({"conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "lastTransitionTime": now_rfc3339()},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "lastTransitionTime": now_rfc3339()},
            ]});
        }
        if rt.plural == "namespaces" && rt.group.is_empty() {
            obj["status"] = json!({"phase": "Active"});
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
        m.remove("resourceVersion");
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
    ) -> Result<Arc<Value>, ApiError> {
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
    fn update_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        current: &Value,
        wanted: Value,
        part: Part,
    ) -> Result<Arc<Value>, ApiError> {
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
        let cur_meta = current["metadata"].clone();
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
            if deleting {
                // New finalizers may not be added to an object being deleted.
                let old = finalizers(current);
                if let Some(Value::Array(fs)) = m.get_mut("finalizers") {
                    fs.retain(|f| f.as_str().is_some_and(|f| old.iter().any(|o| o == f)));
                }
            }
        }
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(m) = v.as_object_mut() {
                m.remove("metadata");
                m.remove("status");
            }
            v
        };
        if part == Part::Main && strip(&next) != strip(current) {
            let g = cur_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            metadata_mut(&mut next).insert("generation".into(), json!(g + 1));
        }
        let mut cmp = current.clone();
        metadata_mut(&mut cmp).remove("resourceVersion");
        if cmp == next {
            // A no-op write does not bump the resourceVersion, as in Kubernetes.
            return Ok(Arc::new(current.clone()));
        }
        if rt.plural == "customresourcedefinitions" {
            ResourceType::from_crd(&next).map_err(|e| ApiError::invalid(rt, name, e))?;
        }
        if deleting
            && finalizers(&next).is_empty()
            && !(rt.plural == "namespaces" && rt.group.is_empty())
        {
            let out = self.commit(st, rt, ns, name, next, EventType::Modified);
            let gone = (*out).clone();
            self.commit(st, rt, ns, name, gone, EventType::Deleted);
            self.collect.notify_one();
            return Ok(out);
        }
        if deleting && rt.plural == "namespaces" {
            self.collect.notify_one();
        }
        Ok(self.commit(st, rt, ns, name, next, EventType::Modified))
    }

    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        propagation: Propagation,
        precondition_uid: Option<String>,
    ) -> Result<Arc<Value>, ApiError> {
        let mut st = self.lock();
        let ns_key = if rt.namespaced { ns } else { "" };
        let current = Self::current(&st, rt, ns_key, name)?;
        if let Some(uid) = precondition_uid
            && Some(&uid) != meta(&current, "uid").as_ref()
        {
            return Err(ApiError::conflict(rt, name));
        }
        let uid = meta(&current, "uid").unwrap_or_default();
        let result = self.delete_locked(&mut st, rt, ns_key, name, &current, propagation, &uid);
        self.collect.notify_one();
        Ok(result)
    }

    #[allow(clippy::too_many_arguments)]
    fn delete_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        current: &Arc<Value>,
        propagation: Propagation,
        uid: &str,
    ) -> Arc<Value> {
        if propagation == Propagation::Orphan {
            self.orphan_dependents(st, uid);
        }
        let is_namespace = rt.plural == "namespaces" && rt.group.is_empty();
        let mut fins = finalizers(current);
        if propagation == Propagation::Foreground
            && !is_deleting(current)
            && Self::has_dependents(st, uid)
        {
            fins.push(FOREGROUND.into());
        }
        if is_namespace || !fins.is_empty() {
            if is_deleting(current) && !is_namespace {
                return current.clone();
            }
            let mut next = (**current).clone();
            let m = metadata_mut(&mut next);
            if !m.contains_key("deletionTimestamp") {
                m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            m.insert("finalizers".into(), json!(fins));
            if fins.is_empty() {
                m.remove("finalizers");
            }
            if is_namespace {
                next["status"] = json!({"phase": "Terminating"});
                if **current == next {
                    return current.clone();
                }
            }
            return self.commit(st, rt, ns, name, next, EventType::Modified);
        }
        self.commit(st, rt, ns, name, (**current).clone(), EventType::Deleted)
    }

    fn has_dependents(st: &State, uid: &str) -> bool {
        st.objects
            .values()
            .flat_map(BTreeMap::values)
            .any(|o| owner_uids(o).iter().any(|u| u == uid))
    }

    fn orphan_dependents(&self, st: &mut State, uid: &str) {
        let mut changes = Vec::new();
        for (key, objs) in &st.objects {
            for ((ons, oname), o) in objs {
                if owner_uids(o).iter().any(|u| u == uid) {
                    let mut n = (**o).clone();
                    if let Some(Value::Array(refs)) = n.pointer_mut("/metadata/ownerReferences") {
                        refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                    }
                    changes.push((key.clone(), ons.clone(), oname.clone(), n));
                }
            }
        }
        for (key, ons, oname, n) in changes {
            if let Some(rt) = st.types.get(&key).cloned() {
                self.commit(st, &rt, &ons, &oname, n, EventType::Modified);
            }
        }
    }

    /// One pass of the namespace controller and the garbage collector. Returns whether
    /// it changed anything (the caller repeats until it does not).
    pub fn collect_once(&self) -> bool {
        let mut st = self.lock();
        let mut live_uids = HashSet::new();
        for o in st.objects.values().flat_map(BTreeMap::values) {
            if let Some(u) = meta(o, "uid") {
                live_uids.insert(u);
            }
        }
        // (type, ns, name, what to do)
        enum Todo {
            Delete,
            DropForeground,
            RemoveNamespace,
        }
        let mut todo: Vec<(TypeKey, String, String, Todo)> = Vec::new();
        let ns_key: TypeKey = (String::new(), "v1".into(), "namespaces".into());
        let terminating: HashSet<String> = st
            .objects
            .get(&ns_key)
            .map(|m| {
                m.values()
                    .filter(|n| is_deleting(n))
                    .filter_map(|n| meta(n, "name"))
                    .collect()
            })
            .unwrap_or_default();
        let mut nonempty = HashSet::new();
        let foreground_owners: HashSet<String> = st
            .objects
            .values()
            .flat_map(BTreeMap::values)
            .filter(|o| is_deleting(o) && finalizers(o).iter().any(|f| f == FOREGROUND))
            .filter_map(|o| meta(o, "uid"))
            .collect();
        let mut owners_with_dependents = HashSet::new();
        for (key, objs) in &st.objects {
            for ((ons, oname), o) in objs {
                if !ons.is_empty() {
                    nonempty.insert(ons.clone());
                }
                let owners = owner_uids(o);
                for u in &owners {
                    owners_with_dependents.insert(u.clone());
                }
                if is_deleting(o) {
                    continue;
                }
                let in_terminating = !ons.is_empty() && terminating.contains(ons);
                let owners_gone =
                    !owners.is_empty() && owners.iter().all(|u| !live_uids.contains(u));
                let owner_foreground = owners.iter().any(|u| foreground_owners.contains(u));
                if in_terminating || owners_gone || owner_foreground {
                    todo.push((key.clone(), ons.clone(), oname.clone(), Todo::Delete));
                }
            }
        }
        for (key, objs) in &st.objects {
            for ((ons, oname), o) in objs {
                if let Some(u) = meta(o, "uid")
                    && foreground_owners.contains(&u)
                    && !owners_with_dependents.contains(&u)
                {
                    todo.push((
                        key.clone(),
                        ons.clone(),
                        oname.clone(),
                        Todo::DropForeground,
                    ));
                }
            }
        }
        for ns in &terminating {
            if !nonempty.contains(ns) {
                todo.push((
                    ns_key.clone(),
                    String::new(),
                    ns.clone(),
                    Todo::RemoveNamespace,
                ));
            }
        }
        let changed = !todo.is_empty();
        for (key, ons, oname, what) in todo {
            let Some(rt) = st.types.get(&key).cloned() else {
                continue;
            };
            let Some(cur) = st
                .objects
                .get(&key)
                .and_then(|m| m.get(&(ons.clone(), oname.clone())))
                .cloned()
            else {
                continue;
            };
            match what {
                Todo::Delete => {
                    let uid = meta(&cur, "uid").unwrap_or_default();
                    self.delete_locked(
                        &mut st,
                        &rt,
                        &ons,
                        &oname,
                        &cur,
                        Propagation::Background,
                        &uid,
                    );
                }
                Todo::DropForeground => {
                    let mut n = (*cur).clone();
                    if let Some(Value::Array(fs)) = n.pointer_mut("/metadata/finalizers") {
                        fs.retain(|f| f.as_str() != Some(FOREGROUND));
                    }
                    let _ = self.update_locked(&mut st, &rt, &ons, &oname, &cur, n, Part::Main);
                }
                Todo::RemoveNamespace => {
                    if finalizers(&cur).is_empty() {
                        self.commit(&mut st, &rt, "", &oname, (*cur).clone(), EventType::Deleted);
                    }
                }
            }
        }
        changed
    }
}
