//! Probes and metrics.

use super::AppState;
use crate::domain::lifecycle::Phase;
use crate::metrics::label;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

pub async fn livez() -> &'static str {
    "ok"
}

/// Whether this replica can serve, and if not, why (said by `/readyz`, in the log and
/// to anyone who tries to start a demo meanwhile).
pub struct Readiness {
    ready: AtomicBool,
    why: Mutex<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            ready: AtomicBool::new(false),
            why: Mutex::new("waiting for the Demo cache to sync".into()),
        }
    }
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
    pub fn not_ready(&self, why: impl Into<String>) {
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = why.into();
    }
    pub fn why(&self) -> String {
        self.why.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Ready only when the Demo cache has synced: before that, lists would be wrong. The
/// body says what is missing.
pub async fn readyz(State(s): State<AppState>) -> impl IntoResponse {
    if s.ready.is_ready() {
        (StatusCode::OK, "ready".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", s.ready.why()),
        )
    }
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut counts: HashMap<(Phase, String), i64> = HashMap::new();
    for d in s.demos.all() {
        *counts
            .entry((d.phase(), d.spec.template.clone()))
            .or_default() += 1;
    }
    s.metrics.demos.clear();
    for t in s.catalogue.all() {
        for p in Phase::ALL {
            let n = counts.get(&(p, t.name.clone())).copied().unwrap_or(0);
            let mut l = label("phase", p.as_str());
            l.push(("template".into(), t.name.clone()));
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
