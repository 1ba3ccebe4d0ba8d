//! Watches: newline-delimited JSON events from a resourceVersion, bookmarks, 410 Gone
//! as an ERROR event, and an end when the server drops its watches.

use super::{SimApi, Target, error_response, selectors};
use crate::sim::error::ApiError;
use crate::sim::store::WatchEvent;
use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub fn watch_response(
    api: &Arc<SimApi>,
    t: &Target,
    q: &HashMap<String, String>,
    meta_only: bool,
) -> Response {
    let (labels, fields) = match selectors(&t.rt, q) {
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
    let (backlog, reached, mut rx) = match api.store.watch(&t.rt, from) {
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
    let ns = t.ns.clone();
    let rt = t.rt.clone();
    let store = api.store.clone();
    let interval = api.bookmark_interval;
    let faults = api.faults.clone();
    let sim = api.clone();
    let matches = move |ev: &WatchEvent| {
        (ns.is_empty() || *ev.namespace == *ns)
            && labels.matches(&ev.labels)
            && fields.matches(&ev.fields)
    };
    // The object was serialized once, when it was written, for every watcher.
    let line = move |ev: &WatchEvent| {
        let object = if meta_only {
            ev.partial_json()
        } else {
            ev.json.clone()
        };
        let mut s = Vec::with_capacity(object.len() + 32);
        s.extend_from_slice(b"{\"type\":\"");
        s.extend_from_slice(ev.kind.as_str().as_bytes());
        s.extend_from_slice(b"\",\"object\":");
        s.extend_from_slice(&object);
        s.extend_from_slice(b"}\n");
        Bytes::from(s)
    };
    let stream = async_stream::stream! {
        let mut last = from.unwrap_or(0);
        for ev in backlog.iter() {
            last = last.max(ev.rv);
            if matches(ev) {
                yield Ok::<Bytes, std::convert::Infallible>(line(ev));
            }
        }
        // The backlog held everything up to the version the store had when the watch
        // started; not up to the newest one now: sending the backlog to a slow client
        // takes a while, and what was written meanwhile comes next (`rx` has seen it
        // change, so the loop drains it at once).
        last = last.max(reached);
        // The type's events after `last`, as this watch's lines (moving `last` on);
        // None when the log no longer holds them.
        let drain = |last: &mut u64| -> Option<Vec<Bytes>> {
            let mut lines = Vec::new();
            for ev in store.events_since(&rt, *last).ok()? {
                *last = ev.rv;
                if matches(&ev) {
                    lines.push(line(&ev));
                }
            }
            Some(lines)
        };
        // A bookmark promises that every event up to its version was sent: whatever of
        // this type is newer than `last` goes first (a watcher that resumes from a
        // bookmark ahead of unsent events never gets them). None as for `drain`.
        let bookmark = |last: &mut u64| -> Option<Vec<Bytes>> {
            let rv = store.current_rv();
            let mut lines = drain(last)?;
            *last = rv.max(*last);
            let b = json!({"type": "BOOKMARK", "object": {
                "kind": rt.kind, "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": last.to_string(), "annotations": {}}}});
            lines.push(Bytes::from(format!("{b}\n")));
            Some(lines)
        };
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                changed = rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    rx.borrow_and_update();
                    let lag = faults.get().watch_delay;
                    if !lag.is_zero() {
                        tokio::time::sleep(lag).await;
                    }
                    // Fell behind what the log holds: closed, as the real server
                    // closes a watcher too slow to keep up.
                    let Some(lines) = drain(&mut last) else {
                        sim.terminated(&rt.plural);
                        break;
                    };
                    for l in lines {
                        yield Ok(l);
                    }
                },
                _ = epoch.changed() => break,
                _ = &mut deadline => {
                    // As the real watch cache does (shortly before the deadline): the
                    // watcher resumes from here, not from a bookmark seconds old that
                    // a busy type's short log may no longer reach (410, a relist).
                    if bookmarks && let Some(lines) = bookmark(&mut last) {
                        for l in lines {
                            yield Ok(l);
                        }
                    }
                    break;
                }
                _ = tick.tick() => {
                    if bookmarks {
                        let Some(lines) = bookmark(&mut last) else {
                            sim.terminated(&rt.plural);
                            break;
                        };
                        for l in lines {
                            yield Ok(l);
                        }
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
