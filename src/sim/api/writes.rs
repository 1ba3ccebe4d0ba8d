//! The writing verbs: update (PUT), the patch types (merge, JSON, strategic as merge,
//! server-side apply), delete and deletecollection, and a scheduler's pod binding.

use super::{Answer, Target, is_scale, manager, parse_body, part_of, scale_of, selectors};
use crate::sim::store::{ApiError, DeleteOptions, Part, Propagation, Store};
use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde_json::{Value, json};
use std::collections::HashMap;

/// `POST pods/{name}/binding`: what a scheduler does. A pod is bound once.
pub(super) fn bind(
    store: &Store,
    t: &Target,
    name: &str,
    body: &Value,
) -> Result<(u16, Value), ApiError> {
    if !(t.rt.kind == "Pod" && t.rt.group.is_empty()) {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid(&t.rt, name, "target.name: Required value"))?
        .to_string();
    store.modify(&t.rt, &t.ns, name, Part::Main, |cur| {
        let bound = cur
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if bound {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node {:?}", cur["spec"]["nodeName"].as_str().unwrap_or_default()),
            ));
        }
        if crate::sim::object::is_deleting(cur) {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let mut n = cur.clone();
        n["spec"]["nodeName"] = json!(node);
        let now = crate::sim::object::now_rfc3339();
        let mut conds = n["status"]["conditions"].as_array().cloned().unwrap_or_default();
        conds.retain(|c| c["type"] != "PodScheduled");
        conds.push(json!({"type": "PodScheduled", "status": "True", "lastTransitionTime": now}));
        n["status"]["conditions"] = json!(conds);
        Ok(n)
    })?;
    Ok((
        201,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}),
    ))
}

pub(super) fn put(
    store: &Store,
    t: &Target,
    name: &str,
    obj: Value,
    mgr: &str,
) -> Result<(u16, Answer), ApiError> {
    if is_scale(t) {
        let replicas = obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
        let rv = obj.pointer("/metadata/resourceVersion").cloned();
        let out = store.modify(&t.rt, &t.ns, name, Part::Main, |cur| {
            let mut n = cur.clone();
            n["spec"]["replicas"] = replicas;
            if let Some(rv) = rv {
                n["metadata"]["resourceVersion"] = rv;
            }
            Ok(n)
        })?;
        return Ok((200, Answer::Value(scale_of(&out))));
    }
    let part = part_of(t)?;
    let av = t.rt.api_version();
    let out = store.modify(&t.rt, &t.ns, name, part, |cur| {
        let mut obj = obj;
        crate::sim::fields::record(Some(cur), &mut obj, None, mgr, &av);
        Ok(obj)
    })?;
    Ok((200, Answer::Stored(out)))
}

pub(super) fn patch(
    store: &Store,
    t: &Target,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(u16, Answer), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let patch = parse_body(body)?;
    let apply = |doc: &Value| -> Result<Value, ApiError> {
        let mut d = doc.clone();
        match ct.as_str() {
            "application/json-patch+json" => {
                let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(&mut d, &ops).map_err(|e| {
                    ApiError::new(
                        422,
                        "Invalid",
                        format!("the JSON patch could not be applied: {e}"),
                    )
                })?;
            }
            "application/merge-patch+json"
            | "application/strategic-merge-patch+json"
            | "application/apply-patch+yaml" => {
                json_patch::merge(&mut d, &patch);
            }
            other => {
                return Err(ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other:?})"
                    ),
                ));
            }
        }
        Ok(d)
    };
    if is_scale(t) {
        let out = store.modify(&t.rt, &t.ns, name, Part::Main, |cur| {
            let scale = apply(&scale_of(cur))?;
            let mut n = cur.clone();
            n["spec"]["replicas"] = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
            Ok(n)
        })?;
        return Ok((200, Answer::Value(scale_of(&out))));
    }
    let part = part_of(t)?;
    let is_apply = ct == "application/apply-patch+yaml";
    if is_apply {
        let manager = q.get("fieldManager").cloned().unwrap_or_default();
        if manager.is_empty() {
            return Err(ApiError::bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            ));
        }
        let av = t.rt.api_version();
        if part == Part::Main && store.get(&t.rt, &t.ns, name).is_err() {
            let mut obj = patch.clone();
            obj["metadata"]["name"] = json!(name);
            crate::sim::fields::record(None, &mut obj, Some(&patch), &manager, &av);
            return store
                .create(&t.rt, &t.ns, obj)
                .map(|o| (201, Answer::Stored(o)));
        }
        let force = q.get("force").is_some_and(|f| f == "true");
        let out = store.modify(&t.rt, &t.ns, name, part, |cur| {
            let conflicts = crate::sim::fields::apply_conflicts(cur, &patch, &manager);
            if !force && !conflicts.is_empty() {
                let msg = format!(
                    "Apply failed with {} conflict(s): {}",
                    conflicts.len(),
                    conflicts.join(", ")
                );
                return Err(ApiError::new(409, "Conflict", msg).with_details(&t.rt, name));
            }
            let mut d = apply(cur)?;
            for gone in crate::sim::fields::dropped_by_apply(cur, &patch, &manager) {
                crate::sim::fields::remove_path(&mut d, &gone);
            }
            crate::sim::fields::record(Some(cur), &mut d, Some(&patch), &manager, &av);
            Ok(d)
        })?;
        return Ok((200, Answer::Stored(out)));
    }
    let mgr = manager(q);
    let av = t.rt.api_version();
    let out = store.modify(&t.rt, &t.ns, name, part, |cur| {
        let mut d = apply(cur)?;
        crate::sim::fields::record(Some(cur), &mut d, None, &mgr, &av);
        Ok(d)
    })?;
    Ok((200, Answer::Stored(out)))
}

/// DeleteOptions from the query and the body.
fn delete_options(body: &Bytes, q: &HashMap<String, String>) -> Result<DeleteOptions, ApiError> {
    let opts: Value = if body.is_empty() {
        json!({})
    } else {
        parse_body(body)?
    };
    let policy = q.get("propagationPolicy").cloned().or_else(|| {
        opts.get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let propagation = match policy.as_deref() {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: unsupported value {other:?}"
            )));
        }
    };
    let grace = match q.get("gracePeriodSeconds") {
        Some(g) => Some(g.parse::<i64>().map_err(|_| {
            ApiError::bad_request(format!("gracePeriodSeconds: invalid value {g:?}"))
        })?),
        None => opts.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    Ok(DeleteOptions {
        propagation,
        uid: opts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: opts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        grace,
    })
}

pub(super) fn delete(
    store: &Store,
    t: &Target,
    name: &str,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(u16, Value), ApiError> {
    if t.sub.is_some() {
        return Err(ApiError::new(
            405,
            "MethodNotAllowed",
            "subresources cannot be deleted",
        ));
    }
    let out = store.delete(&t.rt, &t.ns, name, &delete_options(body, q)?)?;
    Ok((200, (*out).clone()))
}

pub(super) fn delete_collection(
    store: &Store,
    t: &Target,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(u16, Value), ApiError> {
    let (labels, fields) = selectors(&t.rt, q)?;
    let opts = DeleteOptions {
        uid: None,
        resource_version: None,
        ..delete_options(body, q)?
    };
    let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
    let (items, rv, _) = store.list(&t.rt, ns, &labels, &fields, None, None);
    let mut deleted = Vec::new();
    for o in items.iter().map(|j| crate::sim::store::parse(j)) {
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ons = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Ok(d) = store.delete(&t.rt, ons, name, &opts) {
            deleted.push((*d).clone());
        }
    }
    Ok((
        200,
        json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
    ))
}
