//! The simulated API server's HTTP side: the Kubernetes REST paths, discovery and
//! OpenAPI documents, watches, Tables for kubectl, and fault injection. Bodies are
//! JSON (or YAML); a protobuf body is answered 415, on which kubectl falls back to
//! JSON, as it does with any server that cannot take protobuf.

mod discovery;
mod openapi;
pub mod protobuf;
mod table;
mod watch;
mod writes;

use super::faults::{Faults, Injected};
use super::resources::{ResourceType, TypeKey};
use super::selector::Selector;
use super::store::{ApiError, Committed, Part, Store, partial};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
pub use table::human_duration;

pub struct SimApi {
    pub store: Arc<Store>,
    pub faults: Arc<Faults>,
    /// Bumped to end every open watch.
    pub watch_epoch: tokio::sync::watch::Sender<u64>,
    pub bookmark_interval: Duration,
    /// Requests served, by verb, resource and status code, as `apiserver_request_total`
    /// counts them (the code shows e.g. creates refused as AlreadyExists).
    pub requests: std::sync::Mutex<std::collections::BTreeMap<(&'static str, String, u16), u64>>,
    /// Watches closed for falling behind the event log, by resource, as the API
    /// server's `apiserver_terminated_watchers_total` counts them: each costs its
    /// watcher a relist.
    pub terminated_watchers: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl SimApi {
    fn count(&self, verb: &'static str, resource: &str, code: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((verb, resource.to_string(), code)).or_default() += 1;
    }

    fn terminated(&self, resource: &str) {
        let mut m = self
            .terminated_watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry(resource.to_string()).or_default() += 1;
    }

    /// `/metrics`: the request counts, in the API server's own metric and labels.
    fn metrics(&self) -> Response {
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::from(
            "# HELP apiserver_request_total Counter of apiserver requests broken out for each verb and resource.\n# TYPE apiserver_request_total counter\n",
        );
        for ((verb, resource, code), n) in m.iter() {
            out.push_str(&format!(
                "apiserver_request_total{{code=\"{code}\",resource=\"{resource}\",verb=\"{verb}\"}} {n}\n"
            ));
        }
        drop(m);
        out.push_str("# HELP apiserver_terminated_watchers_total Counter of watchers closed due to unresponsiveness broken by resource type.\n# TYPE apiserver_terminated_watchers_total counter\n");
        let t = self
            .terminated_watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (resource, n) in t.iter() {
            out.push_str(&format!(
                "apiserver_terminated_watchers_total{{resource=\"{resource}\"}} {n}\n"
            ));
        }
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
    }
}

/// The verb `apiserver_request_total` counts a request under.
fn verb_of(method: &Method, t: &Target, watch: bool) -> &'static str {
    match (method, &t.name) {
        (&Method::GET, None) if watch => "WATCH",
        (&Method::GET, None) => "LIST",
        (&Method::GET, Some(_)) => "GET",
        (&Method::POST, _) => "POST",
        (&Method::PUT, _) => "PUT",
        (&Method::PATCH, _) => "PATCH",
        (&Method::DELETE, None) => "DELETECOLLECTION",
        (&Method::DELETE, Some(_)) => "DELETE",
        _ => "OTHER",
    }
}

pub(crate) fn json_response(code: u16, v: &Value) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// A request's answer: an object to serialize, or one as a write stored it (its JSON is
/// sent as it is).
pub(super) enum Answer {
    Value(Value),
    Stored(Committed),
}

impl Answer {
    fn value(&self) -> &Value {
        match self {
            Answer::Value(v) => v,
            Answer::Stored(c) => c,
        }
    }

    fn response(&self, code: u16) -> Response {
        match self {
            Answer::Value(v) => json_response(code, v),
            Answer::Stored(c) => (
                StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
                [(header::CONTENT_TYPE, "application/json")],
                c.json.clone(),
            )
                .into_response(),
        }
    }
}

pub(crate) fn error_response(e: &ApiError) -> Response {
    let mut r = json_response(e.code, &e.status_json());
    if e.code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
}

/// What a resource path names.
pub(crate) struct Target {
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
    if path == "/metrics" {
        return api.metrics();
    }
    if let Some(r) = discovery::discovery(&api.store, &path) {
        return r;
    }
    if let Some(r) = openapi::serve(&api.store, &path) {
        return r;
    }
    // kubectl sends built-in kinds as protobuf: decoded here to JSON.
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let body = if content_type.starts_with("application/vnd.kubernetes.protobuf")
        && !body.is_empty()
    {
        match protobuf::decode(&body) {
            Ok(v) => Bytes::from(v.to_string()),
            Err(protobuf::Refused::UnknownKind(what)) => {
                return error_response(&ApiError::new(
                    415,
                    "UnsupportedMediaType",
                    format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (no protobuf decoding for {what})"
                    ),
                ));
            }
            Err(protobuf::Refused::Malformed(why)) => {
                return error_response(&ApiError::bad_request(format!(
                    "the body of the request could not be decoded: {why}"
                )));
            }
        }
    } else {
        body
    };
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
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = verb_of(&method, &target, watching);
    let r = serve(
        &api, &method, &target, &query, &headers, &body, &path, watching,
    );
    api.count(verb, &target.rt.plural, r.status().as_u16());
    r
}

/// A request on a resource path, after faults and the target are settled.
#[allow(clippy::too_many_arguments)]
fn serve(
    api: &Arc<SimApi>,
    method: &Method,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
    path: &str,
    watching: bool,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let wants_table = accept.contains("as=Table");
    let meta_only = accept.contains("as=PartialObjectMetadata");
    let result = match (method, &target.name) {
        (&Method::GET, None) if watching => {
            return watch::watch_response(api, target, query, meta_only);
        }
        (&Method::POST, Some(name)) if target.sub.as_deref() == Some("binding") => parse_body(body)
            .and_then(|b| writes::bind(&api.store, target, name, &b))
            .map(|(c, v)| (c, Answer::Value(v))),
        (&Method::GET, None) => return list(&api.store, target, query, wants_table, meta_only),
        // The object as stored: its JSON was serialized when it was written, and is
        // sent as it is (no parse and serialize again: GETs are most of the requests).
        (&Method::GET, Some(name)) if !wants_table && !meta_only && target.sub.is_none() => {
            return match api.store.get_json(&target.rt, &target.ns, name) {
                Ok(json) => (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    json,
                )
                    .into_response(),
                Err(e) => error_response(&e),
            };
        }
        (&Method::GET, Some(name)) => get(&api.store, target, name, wants_table).map(|(c, v)| {
            if meta_only && c == 200 {
                (c, Answer::Value(partial(&v)))
            } else {
                (c, Answer::Value(v))
            }
        }),
        (&Method::POST, None) => parse_body(body).and_then(|mut obj| {
            super::fields::record(
                None,
                &mut obj,
                None,
                &manager(query),
                &target.rt.api_version(),
            );
            api.store
                .create(&target.rt, &target.ns, obj)
                .map(|o| (201, Answer::Stored(o)))
        }),
        (&Method::PUT, Some(name)) => parse_body(body)
            .and_then(|obj| writes::put(&api.store, target, name, obj, &manager(query))),
        (&Method::PATCH, Some(name)) => {
            writes::patch(&api.store, target, name, headers, body, query)
        }
        (&Method::DELETE, Some(name)) => writes::delete(&api.store, target, name, body, query)
            .map(|(c, v)| (c, Answer::Value(v))),
        (&Method::DELETE, None) => writes::delete_collection(&api.store, target, body, query)
            .map(|(c, v)| (c, Answer::Value(v))),
        _ => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{method} is not supported on {path}"),
        )),
    };
    match result {
        Ok((code, answer)) => {
            let mut r = answer.response(code);
            // The API server warns about schema formats it does not know.
            if target.rt.plural == "customresourcedefinitions" && code < 300 {
                for w in super::admission::schema::unknown_formats(answer.value()) {
                    if let Ok(h) = header::HeaderValue::from_str(&format!("299 - {w:?}")) {
                        r.headers_mut().append("warning", h);
                    }
                }
            }
            r
        }
        Err(e) => error_response(&e),
    }
}

/// The field manager a write is recorded under.
pub(super) fn manager(q: &HashMap<String, String>) -> String {
    q.get("fieldManager")
        .filter(|m| !m.is_empty())
        .cloned()
        .unwrap_or_else(|| "unknown".into())
}

pub(super) fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
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

pub(super) fn part_of(t: &Target) -> Result<Part, ApiError> {
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

pub(super) fn scale_of(sts: &Value) -> Value {
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

pub(super) fn is_scale(t: &Target) -> bool {
    t.rt.scale && t.sub.as_deref() == Some("scale")
}

fn get(store: &Store, t: &Target, name: &str, table: bool) -> Result<(u16, Value), ApiError> {
    let obj = store.get(&t.rt, &t.ns, name)?;
    if is_scale(t) {
        return Ok((200, scale_of(&obj)));
    }
    part_of(t)?;
    if table {
        return Ok((200, table::to_table(&t.rt, &[obj], store.current_rv())));
    }
    Ok((200, (*obj).clone()))
}

pub(crate) fn selectors(
    rt: &ResourceType,
    q: &HashMap<String, String>,
) -> Result<(Selector, Selector), ApiError> {
    let labels = Selector::parse(q.get("labelSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = Selector::parse(q.get("fieldSelector").map_or("", String::as_str))
        .map_err(|e| ApiError::bad_request(format!("invalid field selector: {e}")))?;
    fields
        .check_field_selector(&rt.kind)
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

/// A continue token: the resourceVersion of the list's first page, and the key the
/// next page starts after.
fn encode_continue(rv: u64, key: &(String, String)) -> String {
    hex::encode(format!("{rv}\n{}\n{}", key.0, key.1))
}

fn decode_continue(token: &str) -> Result<(u64, (String, String)), ApiError> {
    let bad = || ApiError::bad_request("continue key is not valid");
    let raw = String::from_utf8(hex::decode(token).map_err(|_| bad())?).map_err(|_| bad())?;
    let mut parts = raw.splitn(3, '\n');
    let (Some(rv), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let rv = rv.parse().map_err(|_| bad())?;
    Ok((rv, (ns.to_string(), name.to_string())))
}

/// A list, written out item by item: a large list is never copied whole.
fn list(
    store: &Store,
    t: &Target,
    q: &HashMap<String, String>,
    table: bool,
    meta_only: bool,
) -> Response {
    match list_inner(store, t, q, table, meta_only) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => error_response(&e),
    }
}

fn list_inner(
    store: &Store,
    t: &Target,
    q: &HashMap<String, String>,
    table: bool,
    meta_only: bool,
) -> Result<Vec<u8>, ApiError> {
    let (labels, fields) = selectors(&t.rt, q)?;
    let limit = match q.get("limit") {
        Some(l) => match l.parse::<usize>() {
            Ok(0) => None,
            Ok(n) => Some(n),
            Err(_) => return Err(ApiError::bad_request(format!("limit: invalid value {l:?}"))),
        },
        None => None,
    };
    let (first_rv, after) = match q.get("continue") {
        Some(c) if !c.is_empty() => {
            let (rv, key) = decode_continue(c)?;
            (Some(rv), Some(key))
        }
        _ => (None, None),
    };
    let ns = (!t.ns.is_empty()).then_some(t.ns.as_str());
    let (items, rv, next) = store.list(&t.rt, ns, &labels, &fields, limit, after);
    // Every page of a list answers with its first page's resourceVersion, so that a
    // watch from there misses nothing: an object made while the pages were read, with
    // a key before the page being read, is in no page but in the watch. (The real API
    // server reads every page from the first page's snapshot; these pages may be
    // newer, which a watcher takes as it takes any event it has seen.)
    let rv = first_rv.unwrap_or(rv);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(n) = next {
        metadata["continue"] = json!(encode_continue(rv, &n));
    }
    if table {
        // kubectl asks for tables in pages of 500 and follows the continue token: a
        // table without one showed only the first 500 demos.
        let items: Vec<_> = items.iter().map(|j| crate::sim::store::parse(j)).collect();
        let mut table = table::to_table(&t.rt, &items, rv);
        table["metadata"] = metadata;
        return Ok(table.to_string().into_bytes());
    }
    let (kind, api_version) = if meta_only {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (format!("{}List", t.rt.kind), t.rt.api_version())
    };
    let mut out = Vec::with_capacity(256 + items.iter().map(|j| j.len() + 1).sum::<usize>());
    let head = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
    let head = head.to_string();
    // `{...head fields...,"items":[` then each item, then `]}`.
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"items\":[");
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Stored as JSON: written as it is, unless only the metadata is asked for.
        if meta_only {
            serde_json::to_writer(&mut out, &partial(&crate::sim::store::parse(o)))
                .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))?;
        } else {
            out.extend_from_slice(o);
        }
    }
    out.extend_from_slice(b"]}");
    Ok(out)
}
