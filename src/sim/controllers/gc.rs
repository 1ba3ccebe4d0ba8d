//! The namespace controller's and the garbage collector's work, in one pass over the
//! store: contents of terminating namespaces are deleted and an emptied namespace goes;
//! dependents whose owners are gone are deleted, foreground deletions wait for their
//! dependents, and pods bound to a node that does not exist are removed (pod GC).

use crate::sim::object::*;
use crate::sim::resources::TypeKey;
use crate::sim::store::{DeleteOptions, EventType, FOREGROUND, Part, State, Store};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// What a pass does to one object.
enum Todo {
    Delete,
    ForceDelete,
    DropForeground,
    RemoveNamespace,
}

/// One pass's work: (type, namespace, name, what to do). The whole store is scanned,
/// reading only the facts kept beside each object's JSON (nothing is parsed, and the
/// sets borrow their strings): at 10,000 demos that is some 300,000 objects a pass.
fn plan(st: &State) -> Vec<(TypeKey, String, String, Todo)> {
    let all = || st.objects.values().flat_map(BTreeMap::values);
    let live_uids: HashSet<&str> = all()
        .filter(|o| !o.uid.is_empty())
        .map(|o| &*o.uid)
        .collect();
    let mut todo = Vec::new();
    let ns_key: TypeKey = (String::new(), "v1".into(), "namespaces".into());
    let terminating: HashSet<&str> = st
        .objects
        .get(&ns_key)
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.deleting)
                .map(|((_, name), _)| name.as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut nonempty: HashSet<&str> = HashSet::new();
    let foreground_owners: HashSet<&str> =
        all().filter(|o| o.foreground).map(|o| &*o.uid).collect();
    let mut owners_with_dependents: HashSet<&str> = HashSet::new();
    let pods_key: TypeKey = (String::new(), "v1".into(), "pods".into());
    let nodes: HashSet<&str> = st
        .objects
        .get(&(String::new(), "v1".into(), "nodes".into()))
        .map(|m| m.keys().map(|(_, name)| name.as_str()).collect())
        .unwrap_or_default();
    for (key, objs) in &st.objects {
        for ((ons, oname), o) in objs {
            // The pod garbage collector: a pod bound to a node that does not exist
            // will never be confirmed gone by a kubelet.
            if *key == pods_key && !o.node.is_empty() && !nodes.contains(&*o.node) {
                todo.push((key.clone(), ons.clone(), oname.clone(), Todo::ForceDelete));
                continue;
            }
            if !ons.is_empty() {
                nonempty.insert(ons.as_str());
            }
            for u in &o.owners {
                owners_with_dependents.insert(u);
            }
            if o.deleting {
                continue;
            }
            let in_terminating = !ons.is_empty() && terminating.contains(ons.as_str());
            let owners_gone =
                !o.owners.is_empty() && o.owners.iter().all(|u| !live_uids.contains(&**u));
            let owner_foreground = o.owners.iter().any(|u| foreground_owners.contains(&**u));
            if in_terminating || owners_gone || owner_foreground {
                todo.push((key.clone(), ons.clone(), oname.clone(), Todo::Delete));
            }
        }
    }
    if !foreground_owners.is_empty() {
        for (key, objs) in &st.objects {
            for ((ons, oname), o) in objs {
                if foreground_owners.contains(&*o.uid) && !owners_with_dependents.contains(&*o.uid)
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
    }
    for ns in terminating {
        if !nonempty.contains(ns) {
            todo.push((
                ns_key.clone(),
                String::new(),
                ns.to_string(),
                Todo::RemoveNamespace,
            ));
        }
    }
    todo
}

impl Store {
    /// One pass of the namespace controller and the garbage collector. Returns whether
    /// it changed anything (the caller repeats until it does not).
    pub fn collect_once(&self) -> bool {
        let mut st = self.lock();
        let todo = plan(&st);
        let changed = !todo.is_empty();
        for (key, ons, oname, what) in todo {
            let Some(rt) = st.types.get(&key).cloned() else {
                continue;
            };
            let Some(cur) = st
                .objects
                .get(&key)
                .and_then(|m| m.get(&(ons.clone(), oname.clone())))
                .map(|o| Arc::new(o.value()))
            else {
                continue;
            };
            match what {
                Todo::Delete => {
                    self.delete_locked(&mut st, &rt, &ons, &oname, &cur, &DeleteOptions::default());
                }
                Todo::ForceDelete => {
                    let opts = DeleteOptions {
                        grace: Some(0),
                        ..Default::default()
                    };
                    self.delete_locked(&mut st, &rt, &ons, &oname, &cur, &opts);
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
