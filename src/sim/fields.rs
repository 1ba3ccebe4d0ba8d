//! Server-side apply's field ownership, simplified: each manager owns leaf paths,
//! recorded in `metadata.managedFields` in the real `FieldsV1` shape. An apply that
//! would change a field another manager owns is a 409 Conflict unless forced, which is
//! what leader election (kube-lease-manager) relies on.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

pub type Path = Vec<String>;

/// Leaf paths of an object, skipping identity fields that every apply repeats.
pub fn leaves(v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    walk(v, &mut vec![], &mut out);
    out
}

/// Whether the path is one `leaves` leaves out. Checked on the way down, so that
/// `metadata.managedFields` (the largest part of many objects) is never walked.
fn skipped(p: &Path) -> bool {
    match p.as_slice() {
        [first] => matches!(first.as_str(), "apiVersion" | "kind"),
        [first, second] => {
            first == "metadata"
                && matches!(
                    second.as_str(),
                    "name" | "namespace" | "managedFields" | "resourceVersion"
                )
        }
        _ => false,
    }
}

fn walk(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    if skipped(prefix) {
        return;
    }
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                prefix.push(k.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => {
            out.insert(prefix.clone());
        }
        _ => {}
    }
}

fn get<'a>(v: &'a Value, p: &Path) -> Option<&'a Value> {
    p.iter()
        .try_fold(v, |cur, k| cur.get(k))
        .filter(|x| !x.is_null())
}

fn to_fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for k in p {
            let entry = cur.entry(format!("f:{k}")).or_insert_with(|| json!({}));
            cur = entry.as_object_mut().expect("fieldsV1 nodes are objects");
        }
    }
    Value::Object(root)
}

fn from_fields_v1(v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    fn go(v: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
        match v.as_object() {
            Some(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.trim_start_matches("f:").to_string());
                    go(child, prefix, out);
                    prefix.pop();
                }
            }
            _ if !prefix.is_empty() => {
                out.insert(prefix.clone());
            }
            _ => {}
        }
    }
    go(v, &mut vec![], &mut out);
    out
}

/// (manager, operation, owned paths) for each managedFields entry.
fn entries(obj: &Value) -> Vec<(String, String, BTreeSet<Path>)> {
    obj.pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or_default().to_string(),
                        e["operation"].as_str().unwrap_or("Update").to_string(),
                        from_fields_v1(e.get("fieldsV1").unwrap_or(&Value::Null)),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn write(obj: &mut Value, list: Vec<(String, String, BTreeSet<Path>)>, api_version: &str) {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let arr: Vec<Value> = list
        .into_iter()
        .filter(|(_, _, p)| !p.is_empty())
        .map(|(m, op, p)| json!({"manager": m, "operation": op, "apiVersion": api_version, "time": now, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&p)}))
        .collect();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("managedFields".into(), Value::Array(arr));
    }
}

fn dotted(p: &Path) -> String {
    format!(".{}", p.join("."))
}

/// Checks an apply by `manager` against the current object. Conflicts (when not
/// forced) are returned as "conflict with \"m\": .spec.x" lines.
pub fn apply_conflicts(current: &Value, applied: &Value, manager: &str) -> Vec<String> {
    let owners = entries(current);
    let mut out = Vec::new();
    for p in leaves(applied) {
        let (cur, new) = (get(current, &p), get(applied, &p));
        if cur.is_none() || cur == new {
            continue;
        }
        for (m, _, paths) in &owners {
            if m != manager && paths.contains(&p) {
                out.push(format!("conflict with \"{m}\": {}", dotted(&p)));
            }
        }
    }
    out
}

/// What server-side apply removes: the paths `manager` applied before and applies no
/// more, when no other manager owns them too.
pub fn dropped_by_apply(current: &Value, applied: &Value, manager: &str) -> Vec<Path> {
    let owners = entries(current);
    let now = leaves(applied);
    let mine = |m: &str, op: &str| m == manager && op == "Apply";
    owners
        .iter()
        .filter(|(m, op, _)| mine(m, op))
        .flat_map(|(_, _, paths)| paths.iter().cloned())
        .filter(|p| !now.contains(p))
        .filter(|p| {
            !owners
                .iter()
                .any(|(m, op, paths)| !mine(m, op) && paths.contains(p))
        })
        .collect()
}

/// Removes a field, and the maps it leaves empty below the top level.
pub fn remove_path(obj: &mut Value, p: &Path) {
    fn go(v: &mut Value, p: &[String], depth: usize) {
        let Some(m) = v.as_object_mut() else { return };
        match p {
            [] => {}
            [last] => {
                m.remove(last);
            }
            [first, rest @ ..] => {
                if let Some(child) = m.get_mut(first) {
                    go(child, rest, depth + 1);
                    if depth > 0 && child.as_object().is_some_and(Map::is_empty) {
                        m.remove(first);
                    }
                }
            }
        }
    }
    go(obj, p, 0);
}

/// Records ownership after a write: an apply owns every path it set; an update owns
/// the paths it changed. Either takes those paths away from other managers.
pub fn record(
    before: Option<&Value>,
    after: &mut Value,
    applied: Option<&Value>,
    manager: &str,
    api_version: &str,
) {
    let empty = json!({});
    let before_v = before.unwrap_or(&empty);
    let (op, taken): (&str, BTreeSet<Path>) = match applied {
        Some(a) => ("Apply", leaves(a)),
        None => {
            let mut changed: BTreeSet<Path> = leaves(after)
                .into_iter()
                .filter(|p| get(before_v, p) != get(after, p))
                .collect();
            changed.extend(
                leaves(before_v)
                    .into_iter()
                    .filter(|p| get(after, p).is_none()),
            );
            ("Update", changed)
        }
    };
    let mut list = entries(before_v);
    for (m, o, paths) in list.iter_mut() {
        if !(m == manager && o == op) {
            paths.retain(|p| !taken.contains(p));
        }
    }
    // Paths whose values vanished are owned by nobody.
    for (_, _, paths) in list.iter_mut() {
        paths.retain(|p| get(after, p).is_some());
    }
    match list.iter_mut().find(|(m, o, _)| m == manager && o == op) {
        Some((_, _, paths)) => {
            if op == "Apply" {
                *paths = taken.clone();
            } else {
                paths.extend(taken.iter().cloned());
            }
        }
        None => list.push((manager.to_string(), op.to_string(), taken)),
    }
    list.iter_mut()
        .for_each(|(_, _, paths)| paths.retain(|p| get(after, p).is_some()));
    write(after, list, api_version);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaves_leave_out_identity_and_server_owned_metadata() {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "resourceVersion": "7",
                "labels": {"a": "b"},
                "managedFields": [{"manager": "m", "fieldsV1": {"f:data": {"f:x": {}}}}]},
            "data": {"x": "1", "y": {}},
        });
        let got: Vec<String> = leaves(&obj).iter().map(dotted).collect();
        assert_eq!(got, vec![".data.x", ".data.y", ".metadata.labels.a"]);
    }

    #[test]
    fn a_second_manager_conflicts_unless_values_agree() {
        let applied_a = json!({"spec": {"holderIdentity": "a", "renewTime": "t1"}});
        let mut obj =
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a", "renewTime": "t1"}});
        record(
            None,
            &mut obj,
            Some(&applied_a),
            "mgr-a",
            "coordination.k8s.io/v1",
        );
        let b = json!({"spec": {"holderIdentity": "b"}});
        assert_eq!(
            apply_conflicts(&obj, &b, "mgr-b"),
            vec!["conflict with \"mgr-a\": .spec.holderIdentity".to_string()]
        );
        assert!(
            apply_conflicts(&obj, &json!({"spec": {"holderIdentity": "a"}}), "mgr-b").is_empty(),
            "same value: shared"
        );
        assert!(apply_conflicts(&obj, &b, "mgr-a").is_empty(), "own field");
        // An update that clears the field releases it.
        let before = obj.clone();
        obj["spec"]["holderIdentity"] = Value::Null;
        if let Some(s) = obj["spec"].as_object_mut() {
            s.remove("holderIdentity");
        }
        record(
            Some(&before),
            &mut obj,
            None,
            "mgr-b",
            "coordination.k8s.io/v1",
        );
        assert!(apply_conflicts(&obj, &b, "mgr-b").is_empty());
        assert!(
            obj.pointer("/metadata/managedFields/0/fieldsV1/f:spec")
                .is_some(),
            "{obj}"
        );
    }
}
