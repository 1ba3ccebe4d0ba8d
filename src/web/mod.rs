//! HTTP: the JSON API, probes and metrics. Reads come from the Demo cache
//! (`cluster::cache`), never from a LIST.

pub mod activity;
pub mod auth;
pub mod demos;
pub mod error;
pub mod health;
pub mod links;
pub mod pools;
pub mod proxy;
pub mod session;
pub mod share;
pub mod ui;

use crate::domain::template::Catalogue;
use crate::domain::users::Users;
use crate::metrics::{Metrics, label};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::Request;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use error::ApiError;
use kube::Client;
use std::sync::Arc;

/// Largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Where showroom is reached from outside.
#[derive(Debug, Clone)]
pub struct Urls {
    /// Base URL of the UI and of share links (`{public}/s/{token}`).
    pub public: String,
    /// Scheme of the per-link proxy hosts.
    pub share_scheme: String,
    /// Host (and port) under which each link gets its own proxy host: `{link}.{suffix}`.
    pub share_suffix: String,
}

impl Urls {
    pub fn share_url(&self, token: &str) -> String {
        format!("{}/s/{token}", self.public.trim_end_matches('/'))
    }
    pub fn app_url(&self, link_id: &str) -> String {
        format!("{}://{link_id}.{}/", self.share_scheme, self.share_suffix)
    }
    pub fn secure(&self) -> bool {
        self.public.starts_with("https://")
    }
    /// The host name (no port) that proxy hosts end with.
    pub fn share_host(&self) -> &str {
        self.share_suffix.split(':').next().unwrap_or_default()
    }
}

/// Trust `X-Forwarded-Email` / `X-Forwarded-Groups` from these proxy addresses only.
#[derive(Debug, Clone, Default)]
pub struct Sso {
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub admin_group: String,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_demos_per_user: u32,
    /// The most demos running at once on the cluster, pool members included (0: none).
    pub max_running_demos: u32,
}

/// What every handler reads, behind one `Arc`: axum clones the state for each
/// extractor of each request, and cloning some twenty fields (each an `Arc` or a
/// handle to a cache) cost the share landing page about 15% of its CPU.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub client: Client,
    pub demos: crate::cluster::cache::DemoCache,
    pub catalogue: Arc<Catalogue>,
    pub users: Arc<Users>,
    pub metrics: Arc<Metrics>,
    pub activity: Arc<activity::ActivityTracker>,
    pub limits: Arc<Limits>,
    pub ready: Arc<health::Readiness>,
    /// The Leases that hold the per-user and cluster-wide limits.
    pub slots: crate::cluster::slots::Slots,
    pub urls: Arc<Urls>,
    pub session_key: session::SessionKey,
    /// `showroom dev`: one-click sign-in as the sales or admin user.
    pub dev_login: bool,
    pub sso: Arc<Sso>,
    pub share_guard: Arc<share::FailureLimiter>,
    pub proxy: Arc<proxy::Upstreams>,
    /// The installation this replica belongs to; it sees only that one's demos.
    pub instance: crate::cluster::crd::Instance,
    /// The vendor's brand on prospect pages.
    pub brand: Arc<crate::domain::brand::Brand>,
    /// How long starts and wakes of each template take, measured; kept a few seconds.
    pub estimates: Arc<pools::Estimates>,
}

async fn count_errors(
    State(s): State<AppState>,
    req: Request<axum::body::Body>,
    next: Next,
) -> Response {
    let res = next.run(req).await;
    if res.status().is_client_error() || res.status().is_server_error() {
        s.metrics
            .api_errors
            .get_or_create(&label("code", res.status().as_str()))
            .inc();
    }
    res
}

/// The span every request runs in: method, route template and request id. Never the
/// URI itself, which can carry a share-link token.
fn request_span(req: &Request<axum::body::Body>) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("(share-link host or unmatched)", |m| m.as_str());
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = req.method().as_str(),
        route,
        request_id = id
    )
}

/// Request ids shaped as UUIDs (v4): a random base drawn once, plus a counter. An id
/// only ties log lines together, so it need be unique, not unpredictable; tower-http's
/// `MakeRequestUuid` read the kernel's random source for every request, 2% of the
/// share landing page's CPU.
#[derive(Clone)]
struct RequestIds {
    base: u128,
    next: Arc<std::sync::atomic::AtomicU64>,
}

impl RequestIds {
    fn new() -> RequestIds {
        RequestIds {
            base: uuid::Uuid::new_v4().as_u128(),
            next: Arc::default(),
        }
    }
}

impl tower_http::request_id::MakeRequestId for RequestIds {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<tower_http::request_id::RequestId> {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The counter changes the low bits only, far below the variant's (bits 62-63).
        let id = uuid::Builder::from_u128(self.base ^ u128::from(n))
            .with_version(uuid::Version::Random)
            .with_variant(uuid::Variant::RFC4122)
            .into_uuid();
        let value = axum::http::HeaderValue::from_str(&id.to_string()).ok()?;
        Some(tower_http::request_id::RequestId::new(value))
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; it has been logged",
    )
    .into_response()
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/templates", get(demos::templates))
        .route("/api/v1/demos", get(demos::list).post(demos::create))
        .route(
            "/api/v1/demos/{name}",
            get(demos::get).delete(demos::delete),
        )
        .route("/api/v1/demos/{name}/sleep", post(demos::sleep))
        .route("/api/v1/demos/{name}/wake", post(demos::wake))
        .route("/api/v1/demos/{name}/reset", post(demos::reset))
        .route("/api/v1/demos/{name}/snapshot", post(demos::save))
        .route("/api/v1/pools", get(pools::api))
        .route("/api/v1/demos/{name}/extend", post(demos::extend))
        .route("/api/v1/demos/{name}/activity", post(demos::activity))
        .route(
            "/api/v1/demos/{name}/share-links",
            get(links::api_list).post(links::api_create),
        )
        .route(
            "/api/v1/demos/{name}/share-links/{id}",
            axum::routing::delete(links::api_revoke),
        )
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(ui::routes())
        .merge(share::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        // One stack, outermost first, applied to each route once: a `.layer` call per
        // middleware wrapped every route again in a boxed service, cloned and boxed
        // again on every request (7 times on the share landing page).
        .layer(
            tower::ServiceBuilder::new()
                // A request id for every request (kept if the ingress set one), echoed back.
                .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                    RequestIds::new(),
                ))
                .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
                .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(request_span))
                .layer(tower_http::catch_panic::CatchPanicLayer::custom(
                    panic_response,
                ))
                .layer(DefaultBodyLimit::max(BODY_LIMIT))
                // Requests for a share link's own host go to the demo, not to showroom's
                // pages.
                .layer(middleware::from_fn_with_state(
                    state.clone(),
                    proxy::by_host,
                ))
                .layer(middleware::from_fn_with_state(state.clone(), count_errors)),
        )
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_http::request_id::MakeRequestId;

    #[test]
    fn request_ids_are_distinct_v4_uuids() {
        let mut ids = RequestIds::new();
        let req = Request::new(());
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let id = ids.make_request_id(&req).expect("an id");
            let text = id.header_value().to_str().expect("ascii").to_string();
            let parsed = uuid::Uuid::parse_str(&text).expect("a UUID");
            assert_eq!(parsed.get_version(), Some(uuid::Version::Random), "{text}");
            assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122, "{text}");
            assert!(seen.insert(text.clone()), "{text} given twice");
        }
        // A clone (as each connection's service is) shares the counter.
        let mut other = ids.clone();
        let id = other.make_request_id(&req).expect("an id");
        assert!(!seen.contains(id.header_value().to_str().unwrap()));
    }
}
