//! Deletion as the API server does it: finalizers and deletionTimestamp, the three
//! propagation policies, graceful deletion of pods bound to a node (they go once the
//! kubelet confirms), and a namespace's termination.

use super::object::*;
use super::resources::ResourceType;
use super::store::{ApiError, DeleteOptions, EventType, FOREGROUND, Propagation, State, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

impl Store {
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let mut st = self.lock();
        let ns_key = if rt.namespaced { ns } else { "" };
        let current = Self::current(&st, rt, ns_key, name)?;
        let precondition = |what: &str, want: &Option<String>, field: &str| match want {
            Some(w) if Some(w) != meta(&current, field).as_ref() => Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} {name:?}: Precondition failed: {what} in precondition: {w}, {what} in object meta: {}",
                    rt.plural,
                    meta(&current, field).unwrap_or_default()
                ),
            )),
            _ => Ok(()),
        };
        precondition("UID", &opts.uid, "uid")?;
        precondition("ResourceVersion", &opts.resource_version, "resourceVersion")?;
        let result = self.delete_locked(&mut st, rt, ns_key, name, &current, opts);
        self.collect.notify_one();
        Ok(result)
    }

    /// A pod bound to a node is deleted gracefully: it is marked, and goes when the
    /// kubelet confirms that its containers stopped (a delete with grace period 0).
    fn graceful_pod(rt: &ResourceType, pod: &Value, grace: Option<i64>) -> Option<i64> {
        if rt.kind != "Pod" || !rt.group.is_empty() || grace == Some(0) {
            return None;
        }
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        let phase = pod.pointer("/status/phase").and_then(Value::as_str);
        if !bound || matches!(phase, Some("Succeeded" | "Failed")) {
            return None;
        }
        Some(grace.unwrap_or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(30)
        }))
    }

    pub(super) fn delete_locked(
        &self,
        st: &mut State,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        current: &Arc<Value>,
        opts: &DeleteOptions,
    ) -> Arc<Value> {
        let uid = meta(current, "uid").unwrap_or_default();
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(st, &uid);
        }
        let is_namespace = rt.plural == "namespaces" && rt.group.is_empty();
        let mut fins = finalizers(current);
        if opts.propagation == Propagation::Foreground
            && !is_deleting(current)
            && Self::has_dependents(st, &uid)
        {
            fins.push(FOREGROUND.into());
        }
        let graceful = Self::graceful_pod(rt, current, opts.grace);
        if is_namespace || !fins.is_empty() || graceful.is_some() {
            if is_deleting(current) && !is_namespace {
                // A pod's deletion confirmed while finalizers still hold it: it goes as
                // soon as they are removed.
                let pending_grace = current
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if opts.grace == Some(0) && pending_grace != 0 {
                    let mut next = (**current).clone();
                    metadata_mut(&mut next).insert("deletionGracePeriodSeconds".into(), json!(0));
                    return self.commit(st, rt, ns, name, next, EventType::Modified).obj;
                }
                return current.clone();
            }
            let mut next = (**current).clone();
            let m = metadata_mut(&mut next);
            if !m.contains_key("deletionTimestamp") {
                let grace = graceful.unwrap_or(0);
                let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
                m.insert(
                    "deletionTimestamp".into(),
                    json!(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                m.insert("deletionGracePeriodSeconds".into(), json!(grace));
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
            return self.commit(st, rt, ns, name, next, EventType::Modified).obj;
        }
        self.commit(st, rt, ns, name, (**current).clone(), EventType::Deleted)
            .obj
    }

    pub(super) fn has_dependents(st: &State, uid: &str) -> bool {
        st.objects
            .values()
            .flat_map(BTreeMap::values)
            .any(|o| o.owners.iter().any(|u| &**u == uid))
    }

    fn orphan_dependents(&self, st: &mut State, uid: &str) {
        let mut changes = Vec::new();
        for (key, objs) in &st.objects {
            for ((ons, oname), o) in objs {
                if o.owners.iter().any(|u| &**u == uid) {
                    let mut n = o.value();
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
}
