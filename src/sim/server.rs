//! The simulated API server's HTTP side: the Kubernetes REST paths, discovery,
//! watches as newline-delimited JSON, Tables for kubectl, and fault injection.

use super::faults::{Faults, Injected};
use super::resources::{ResourceType, TypeKey};
use super::selector::{Selector, fields_of, labels_of};
use super::store::{ApiError, Part, Propagation, Store, WatchEvent};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub struct SimApi {
    pub store: Arc<Store>,
    pub faults: Arc<Faults>,
    /// Bumped to end every open watch.
    pub watch_epoch: watch::Sender<u64>,
    pub bookmark_interval: Duration,
}

fn json_response(code: u16, v: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.status_json());
    if e.code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// What a resource path names.
struct Target {
    rt: Arc<ResourceType>,
    ns: String,
    name: Option<String>,
    sub: Option<String>,
}

pub async fn handle(
    State(api): State<Arc<SimApi>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_end_matches('/').to_string();
    let query: HashMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if let Some(r) = discovery(&api.store, &path) {
        return r;
    }
    let latency = api.faults.get().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let is_write = method == Method::PUT || method == Method::PATCH;
    match api.faults.roll(is_write) {
        Injected::None => {}
        Injected::Error => {
            return error_response(&ApiError::new(
                500,
                "InternalError",
                "injected fault: internal error",
            ));
        }
        Injected::Throttle => {
            return error_response(&ApiError::new(
                429,
                "TooManyRequests",
                "injected fault: too many requests, please try again later",
            ));
        }
        Injected::Conflict => {
            return error_response(&ApiError::new(
                409,
                "Conflict",
                "injected fault: the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
    }
    let target = match parse_target(&api.store, &path) {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let wants_table = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"));
    let result = match (&method, &target.name) {
        (&Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            return watch_response(&api, &target, &query);
        }
        (&Method::GET, None) => list(&api.store, &target, &query, wants_table),
        (&Method::GET, Some(name)) => get(&api.store, &target, name, wants_table),
        (&Method::POST, None) => parse_body(&body).and_then(|mut obj| {
            super::fields::record(
                None,
                &mut obj,
                None,
                &manager(&query),
                &target.rt.api_version(),
            );
            api.store
                .create(&target.rt, &target.ns, obj)
                .map(|o| (201, (*o).clone()))
        }),
        (&Method::PUT, Some(name)) => {
            parse_body(&body).and_then(|obj| put(&api.store, &target, name, obj, &manager(&query)))
        }
        (&Method::PATCH, Some(name)) => patch(&api.store, &target, name, &headers, &body, &query),
        (&Method::DELETE, Some(name)) => delete(&api.store, &target, name, &body, &query),
        (&Method::DELETE, None) => delete_collection(&api.store, &target, &body, &query),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )),
    };
    match result {
        Ok((code, v)) => json_response(code, &v),
        Err(e) => error_response(&e),
    }
}

/// The field manager a write is recorded under.
fn manager(q: &HashMap<String, String>) -> String {
    q.get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .or_else(|_| {
            std::str::from_utf8(body)
                .map_err(|e| e.to_string())
                .and_then(|s| serde_saphyr::from_str::<Value>(s).map_err(|e| e.to_string()))
        })
        .map_err(|e| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        })
}

fn parse_target(store: &Store, path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return Err(not_found()),
    };
    let lookup = |plural: &str| -> Result<Arc<ResourceType>, ApiError> {
        let key: TypeKey = (group.clone(), version.clone(), plural.to_string());
        store.resource_type(&key).ok_or_else(not_found)
    };
    let opt = |s: Option<&&str>| s.map(|s| s.to_string());
    // /namespaces/{ns}/{plural}/... is namespaced, except that /namespaces/{name}[/{sub}]
    // is the Namespace object itself.
    if let ["namespaces", ns, plural, rest2 @ ..] = rest
        && !(group.is_empty() && matches!(*plural, "status" | "finalize"))
    {
        let rt = lookup(plural)?;
        if !rt.namespaced {
            return Err(not_found());
        }
        return Ok(Target {
            rt,
            ns: ns.to_string(),
            name: opt(rest2.first()),
            sub: opt(rest2.get(1)),
        });
    }
    match rest {
        [plural, tail @ ..] if tail.len() <= 2 => {
            let rt = lookup(plural)?;
            if rt.namespaced && !tail.is_empty() {
                return Err(not_found());
            }
            Ok(Target {
                rt,
                ns: String::new(),
                name: opt(tail.first()),
                sub: opt(tail.get(1)),
            })
        }
        _ => Err(not_found()),
    }
}

fn part_of(t: &Target) -> Result<Part, ApiError> {
    match t.sub.as_deref() {
        None => Ok(Part::Main),
        Some("status") if t.rt.status => Ok(Part::Status),
        Some("finalize") if t.rt.plural == "namespaces" => Ok(Part::Main),
        Some(s) => Err(ApiError::new(
            404,
            "NotFound",
            format!(
                "the server could not find the requested resource ({}/{s})",
                t.rt.plural
            ),
        )),
    }
}

fn scale_of(sts: &Value) -> Value {
    let name = sts.pointer("/metadata/name").cloned().unwrap_or_default();
    let selector = sts
        .pointer("/spec/selector/matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": name, "namespace": sts.pointer("/metadata/namespace"),
            "uid": sts.pointer("/metadata/uid"), "resourceVersion": sts.pointer("/metadata/resourceVersion"),
            "creationTimestamp": sts.pointer("/metadata/creationTimestamp"),
        },
        "spec": {"replicas": sts.pointer("/spec/replicas").cloned().unwrap_or(json!(1))},
        "status": {"replicas": sts.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector},
    })
}

fn is_scale(t: &Target) -> bool {
    t.rt.scale && t.sub.as_deref() == Some("scale")
}

fn get(store: &Store, t: &Target, name: &str, table: bool) -> Result<(u16, Value), ApiError> {
    let obj = store.get(&t.rt, &t.ns, name)?;
    if is_scale(t) {
        return Ok((200, scale_of(&obj)));
    }
    part_of(t)?;
    if table {
        return Ok((200, to_table(&t.rt, &[obj], store.current_rv())));
    }
    Ok((200, (*obj).clone()))
}

fn selectors(q: &HashMap<String, String>) -> Result<(Selector, Selector), ApiError> {
    let labels = Selector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = Selector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
    fields
        .check_field_selector()
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

fn encode_continue(key: &(String, String)) -> String {
    hex::encode(format!("{}\n{}", key.0, key.1))
}

fn decode_continue(token: &str) -> Result<(String, String), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let raw = String::from_utf8(hex::decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let (ns, name) = raw.split_once('\n').ok_or_else(bad)?;
    Ok((ns.to_string(), name.to_string()))
}

fn list(
    store: &Store,
    t: &Target,
    q: &HashMap<String, String>,
    table: bool,
) -> Result<(u16, Value), ApiError> {
    let (labels, fields) = selectors(q)?;
    let limit = match q.get("limit") {
        Some(l) => match l.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => return Err(ApiError::bad_request(format!("limit: invalid value {l:?}"))),
        },
        None => None,
    };
    let after = match q.get("continue") {
        Some(c) if !c.is_empty() => Some(decode_continue(c)?),
        _ => None,
    };
    let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
    let (items, rv, next) = store.list(&t.rt, ns, &labels, &fields, limit, after);
    if table {
        return Ok((200, to_table(&t.rt, &items, rv)));
    }
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(n) = next {
        metadata["continue"] = json!(encode_continue(&n));
    }
    Ok((
        200,
        json!({
            "kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(),
            "metadata": metadata, "items": items.iter().map(|o| (**o).clone()).collect::<Vec<_>>(),
        }),
    ))
}

fn put(
    store: &Store,
    t: &Target,
    name: &str,
    obj: Value,
    mgr: &str,
) -> Result<(u16, Value), ApiError> {
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
        return Ok((200, scale_of(&out)));
    }
    let part = part_of(t)?;
    let av = t.rt.api_version();
    let out = store.modify(&t.rt, &t.ns, name, part, |cur| {
        let mut obj = obj;
        super::fields::record(Some(cur), &mut obj, None, mgr, &av);
        Ok(obj)
    })?;
    Ok((200, (*out).clone()))
}

fn patch(
    store: &Store,
    t: &Target,
    name: &str,
    headers: &HeaderMap,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(u16, Value), ApiError> {
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
        return Ok((200, scale_of(&out)));
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
            super::fields::record(None, &mut obj, Some(&patch), &manager, &av);
            return store.create(&t.rt, &t.ns, obj).map(|o| (201, (*o).clone()));
        }
        let force = q.get("force").is_some_and(|f| f == "true");
        let out = store.modify(&t.rt, &t.ns, name, part, |cur| {
            let conflicts = super::fields::apply_conflicts(cur, &patch, &manager);
            if !force && !conflicts.is_empty() {
                let msg = format!(
                    "Apply failed with {} conflict(s): {}",
                    conflicts.len(),
                    conflicts.join(", ")
                );
                return Err(ApiError::new(409, "Conflict", msg).with_details(&t.rt, name));
            }
            let mut d = apply(cur)?;
            super::fields::record(Some(cur), &mut d, Some(&patch), &manager, &av);
            Ok(d)
        })?;
        return Ok((200, (*out).clone()));
    }
    let mgr = manager(q);
    let av = t.rt.api_version();
    let out = store.modify(&t.rt, &t.ns, name, part, |cur| {
        let mut d = apply(cur)?;
        super::fields::record(Some(cur), &mut d, None, &mgr, &av);
        Ok(d)
    })?;
    Ok((200, (*out).clone()))
}

fn propagation(
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(Propagation, Option<String>), ApiError> {
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
    let p = match policy.as_deref() {
        None | Some("Background") => Propagation::Background,
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: unsupported value {other:?}"
            )));
        }
    };
    let uid = opts
        .pointer("/preconditions/uid")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((p, uid))
}

fn delete(
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
    let (p, uid) = propagation(body, q)?;
    let out = store.delete(&t.rt, &t.ns, name, p, uid)?;
    Ok((200, (*out).clone()))
}

fn delete_collection(
    store: &Store,
    t: &Target,
    body: &Bytes,
    q: &HashMap<String, String>,
) -> Result<(u16, Value), ApiError> {
    let (labels, fields) = selectors(q)?;
    let (p, _) = propagation(body, q)?;
    let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
    let (items, rv, _) = store.list(&t.rt, ns, &labels, &fields, None, None);
    let mut deleted = Vec::new();
    for o in items {
        let name = o
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let ons = o
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Ok(d) = store.delete(&t.rt, ons, name, p, None) {
            deleted.push((*d).clone());
        }
    }
    Ok((
        200,
        json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": rv.to_string()}, "items": deleted}),
    ))
}

fn watch_response(api: &Arc<SimApi>, t: &Target, q: &HashMap<String, String>) -> Response {
    let (labels, fields) = match selectors(q) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(v) => Some(v),
            Err(_) => {
                return error_response(&ApiError::bad_request(format!(
                    "resourceVersion: invalid value {rv:?}"
                )));
            }
        },
    };
    let (backlog, mut rx) = match api.store.watch(&t.rt, from) {
        Ok(x) => x,
        // A watch from a compacted version opens, then reports 410 as an ERROR event,
        // which is what kube's watcher expects from a real API server.
        Err(e) if e.code == 410 => {
            let line = format!("{}\n", json!({"type": "ERROR", "object": e.status_json()}));
            return Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(line))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        Err(e) => return error_response(&e),
    };
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let mut epoch = api.watch_epoch.subscribe();
    epoch.mark_unchanged();
    let key = t.rt.key();
    let ns = t.ns.clone();
    let rt = t.rt.clone();
    let store = api.store.clone();
    let interval = api.bookmark_interval;
    let matches = move |ev: &WatchEvent| {
        ev.key == key
            && (ns.is_empty()
                || ev
                    .obj
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    == Some(ns.as_str()))
            && labels.matches(&labels_of(&ev.obj))
            && fields.matches(&fields_of(&ev.obj))
    };
    let line = |ev: &WatchEvent| {
        let mut s = json!({"type": ev.kind.as_str(), "object": &*ev.obj}).to_string();
        s.push('\n');
        Bytes::from(s)
    };
    let stream = async_stream::stream! {
        let mut last = from.unwrap_or(0);
        for ev in backlog.iter().filter(|e| matches(e)) {
            last = last.max(ev.rv);
            yield Ok::<Bytes, std::convert::Infallible>(line(ev));
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv > last && matches(&ev) {
                            last = ev.rv;
                            yield Ok(line(&ev));
                        }
                    }
                    // A watcher that falls behind is closed, as the real server does.
                    Err(_) => break,
                },
                _ = epoch.changed() => break,
                _ = &mut deadline => break,
                _ = tick.tick() => {
                    if bookmarks {
                        let rv = store.current_rv();
                        let b = json!({"type": "BOOKMARK", "object": {
                            "kind": rt.kind, "apiVersion": rt.api_version(),
                            "metadata": {"resourceVersion": rv.to_string(), "annotations": {}}}});
                        yield Ok(Bytes::from(format!("{b}\n")));
                    }
                }
            }
        }
    };
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Kubernetes' short relative durations ("45s", "3m12s", "5h", "2d3h").
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ => format!("{d}d"),
    }
}

/// Evaluates the simple JSONPaths printer columns use: `.a.b`, `.a[0].b`.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn age_cell(v: Option<&Value>) -> Value {
    let Some(ts) = v.and_then(Value::as_str) else {
        return json!("<unknown>");
    };
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => json!(human_duration(
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
        )),
        Err(_) => json!("<invalid>"),
    }
}

/// Computes one Table cell from an object.
type CellFn = Box<dyn Fn(&Value) -> Value>;

fn to_table(rt: &ResourceType, items: &[Arc<Value>], rv: u64) -> Value {
    let col = |name: &str, ty: &str, format: &str| json!({"name": name, "type": ty, "format": format, "description": "", "priority": 0});
    let mut defs = vec![col("Name", "string", "name")];
    let mut cells: Vec<CellFn> = vec![Box::new(|o: &Value| {
        o.pointer("/metadata/name").cloned().unwrap_or_default()
    })];
    if !rt.columns.is_empty() {
        for c in &rt.columns {
            defs.push(json!({"name": c.name, "type": c.type_, "format": "", "description": "", "priority": c.priority}));
            let (path, ty) = (c.json_path.clone(), c.type_.clone());
            cells.push(Box::new(move |o: &Value| {
                let v = json_path(o, &path);
                match ty.as_str() {
                    "date" => match v {
                        Some(_) => age_cell(v),
                        None => json!("<none>"),
                    },
                    _ => v.cloned().unwrap_or(json!("<none>")),
                }
            }));
        }
    } else {
        match rt.plural.as_str() {
            "namespaces" => {
                defs.push(col("Status", "string", ""));
                cells.push(Box::new(|o| {
                    o.pointer("/status/phase")
                        .cloned()
                        .unwrap_or(json!("Active"))
                }));
            }
            "statefulsets" => {
                defs.push(col("Ready", "string", ""));
                cells.push(Box::new(|o| {
                    let ready = o
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let want = o
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    json!(format!("{ready}/{want}"))
                }));
            }
            "jobs" => {
                defs.push(col("Status", "string", ""));
                cells.push(Box::new(|o| {
                    let conds = o
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let s = conds
                        .iter()
                        .find(|c| c["status"] == "True")
                        .and_then(|c| c["type"].as_str())
                        .unwrap_or("Running");
                    json!(s)
                }));
            }
            "pods" => {
                defs.push(col("Status", "string", ""));
                cells.push(Box::new(|o| {
                    o.pointer("/status/phase")
                        .cloned()
                        .unwrap_or(json!("Pending"))
                }));
            }
            _ => {}
        }
        defs.push(col("Age", "string", ""));
        cells.push(Box::new(|o| {
            age_cell(o.pointer("/metadata/creationTimestamp"))
        }));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cells.iter().map(|f| f(o)).collect::<Vec<_>>(),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": defs, "rows": rows})
}

/// `/api`, `/apis`, `/api/v1`, `/apis/{g}/{v}`, `/version`.
fn discovery(store: &Store, path: &str) -> Option<Response> {
    let types = store.types();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let resources = |g: &str, v: &str| {
        let list: Vec<Value> = types
            .iter()
            .filter(|t| t.group == g && t.version == v)
            .flat_map(|t| t.discovery())
            .collect();
        let gv = if g.is_empty() {
            v.to_string()
        } else {
            format!("{g}/{v}")
        };
        (!list.is_empty()).then(|| json_response(200, &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})))
    };
    match segs.as_slice() {
        ["version"] => Some(json_response(
            200,
            &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-showroom-sim", "platform": "linux/amd64"}),
        )),
        ["api"] => Some(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        )),
        ["api", v] => Some(resources("", v).unwrap_or_else(|| {
            error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        })),
        ["apis"] => {
            let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for t in types.iter().filter(|t| !t.group.is_empty()) {
                let vs = groups.entry(t.group.clone()).or_default();
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            let list: Vec<Value> = groups
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            Some(json_response(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
            ))
        }
        ["apis", g, v] => Some(resources(g, v).unwrap_or_else(|| {
            error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        })),
        _ => None,
    }
}
