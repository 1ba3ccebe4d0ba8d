//! Probes and metrics.

use super::AppState;
use crate::domain::lifecycle::Phase;
use crate::metrics::label;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::collections::HashMap;

pub async fn livez() -> &'static str {
    "ok"
}

/// Ready only when the Demo cache has synced: before that, lists would be wrong.
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced yet")
    }
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut counts: HashMap<(Phase, String), i64> = HashMap::new();
    for d in s.demos.state() {
        *counts
            .entry((d.phase(), d.spec.template.clone()))
            .or_default() += 1;
    }
    s.metrics.demos.clear();
    for t in s.catalogue.templates.keys() {
        for p in Phase::ALL {
            let n = counts.get(&(p, t.clone())).copied().unwrap_or(0);
            let mut l = label("phase", p.as_str());
            l.push(("template".into(), t.clone()));
            s.metrics.demos.get_or_create(&l).set(n);
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}
