//! The share-link proxy. Each link has its own host name (`<link-id>.<share domain>`),
//! so a real web app's absolute links (`/static/app.js`) keep working. Requests there
//! go to the demo's entrypoint Service; a sleeping demo is woken and the browser sees a
//! "waking up" page that moves on by itself. Upgrades (WebSockets) pass through.

use super::AppState;
use super::links;
use super::share::{inactive, too_many};
use super::ui::{self, render};
use crate::cluster::actions::{namespace_of, vcluster_of};
use crate::cluster::crd::{Demo, DesiredState};
use crate::domain::lifecycle::Phase;
use crate::domain::share::Inactive;
use askama::Template;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::ResourceExt;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub const LINK_COOKIE: &str = "showroom_link";
/// Paths under this prefix on a link host are showroom's own (status, assets).
const OWN: &str = "/_showroom";

/// Where the dev and test worlds serve what a cluster's DNS would resolve: given the
/// entrypoint's host name and port, the socket address to connect to instead. Only
/// `showroom dev` and the tests install one; production resolves through DNS.
pub type UpstreamOverride = Arc<dyn Fn(&str, u16) -> Option<SocketAddr> + Send + Sync>;

pub struct Upstreams {
    http: HttpClient<HttpConnector, Body>,
    overrides: Option<UpstreamOverride>,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Upstreams {
    pub fn new(overrides: Option<UpstreamOverride>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        Upstreams {
            http: HttpClient::builder(TokioExecutor::new()).build(connector),
            overrides,
        }
    }

    /// The demo's entrypoint: the Service the vcluster syncer makes for the template's
    /// entrypoint, `<svc>-x-<vns>-x-<vcluster>.<namespace>.svc:<port>`. Derived by
    /// showroom from the template and the Demo alone: nothing that the demo's own cluster
    /// can write (annotations, Service fields) steers where the proxy connects.
    fn entrypoint(s: &AppState, d: &Demo) -> Option<(String, u16)> {
        let t = s.catalogue.get(&d.spec.template)?;
        let host = format!(
            "{}-x-{}-x-{}.{}.svc",
            t.entrypoint.service,
            t.entrypoint.namespace,
            vcluster_of(d),
            namespace_of(d)
        );
        Some((host, t.entrypoint.port))
    }

    /// host:port to connect to for an entrypoint.
    fn connect_to(&self, host: &str, port: u16) -> String {
        self.overrides
            .as_ref()
            .and_then(|f| f(host, port))
            .map_or_else(|| format!("{host}:{port}"), |a| a.to_string())
    }
}

/// Middleware: a request for `<link>.<share domain>` is the demo's, not showroom's.
pub async fn by_host(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let host = host.split(':').next().unwrap_or("");
    let suffix = format!(".{}", s.urls.share_host());
    if let Some(link) = host.strip_suffix(&suffix)
        && link.starts_with('l')
        && link.len() <= 16
        && link.chars().all(|c| c.is_ascii_alphanumeric())
    {
        let link = link.to_string();
        return handle(s, link, req).await;
    }
    next.run(req).await
}

#[derive(Template)]
#[template(path = "share_waking.html")]
struct Waking<'a> {
    assets: &'a str,
    title: &'a str,
    headline: &'a str,
    phase: &'a str,
    message: &'a str,
    status_url: &'a str,
    then: &'a str,
    brand: super::share::BrandView,
    sender: Option<super::share::SenderView>,
    /// How long it usually takes, and how far along it is (or that it is late).
    eta: String,
    late: bool,
}

fn wants_html(h: &HeaderMap) -> bool {
    h.get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|a| a.contains("text/html") || a.contains("*/*"))
}

fn link_cookie(s: &AppState, token: &str) -> HeaderValue {
    let secure = if s.urls.share_scheme == "https" {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{LINK_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(""))
}

async fn handle(s: AppState, link_id: String, req: Request) -> Response {
    let path = req.uri().path().to_string();
    match path.as_str() {
        "/_showroom/static/app.css" => return ui::css().await.into_response(),
        "/_showroom/static/app.js" => return ui::js().await.into_response(),
        "/_showroom/brand/logo" => return super::share::logo(State(s)).await,
        _ => {}
    }
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if ip.is_some_and(|ip| s.share_guard.blocked(ip)) {
        return too_many(&s, OWN);
    }
    let fail = |why: Inactive| {
        if let Some(ip) = ip {
            s.share_guard.failed(ip);
        }
        inactive(&s, why, OWN, None)
    };
    // A token opens only the host of its own link.
    let for_this_host = |token: &str| match links::lookup(&s, token) {
        Ok(x) if x.1.id == link_id => Ok(x),
        Ok(_) => Err(Inactive::Unknown),
        Err(why) => Err(why),
    };
    // Entering: the link's token moves from the URL into a cookie of this host only.
    if path == "/_showroom/enter" {
        let q: HashMap<String, String> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let token = q.get("token").cloned().unwrap_or_default();
        let d = match for_this_host(&token) {
            Ok((d, _)) => d,
            Err(why) => return fail(why),
        };
        let start = s
            .catalogue
            .get(&d.spec.template)
            .map_or("/".to_string(), |t| t.entrypoint.path.clone());
        let mut r = Redirect::to(&start).into_response();
        r.headers_mut()
            .insert(header::SET_COOKIE, link_cookie(&s, &token));
        return r;
    }
    let cookies = req
        .headers()
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = super::session::cookie(cookies, LINK_COOKIE)
        .unwrap_or("")
        .to_string();
    let (d, link) = match for_this_host(&token) {
        Ok(x) => x,
        Err(why) => return fail(why),
    };
    let phase = if d.metadata.deletion_timestamp.is_some() {
        Phase::Deleting
    } else {
        d.phase()
    };
    let mut message = d
        .status
        .as_ref()
        .and_then(|st| st.message.clone())
        .unwrap_or_default();
    // A visit to a sleeping demo wakes it (a wake is not activity). Past the cluster's
    // ceiling it cannot wake yet: the page says so and keeps trying.
    if d.spec.desired_state == DesiredState::Sleeping
        && !matches!(phase, Phase::Failed | Phase::Deleting)
        && let Err(e) = super::demos::ops::wake_demo(&s, &d).await
    {
        tracing::info!(demo = %d.name_any(), reason = %e.message, "could not wake demo from its link yet");
        message = format!(
            "All demo places are taken at the moment; this page keeps trying and opens the demo as soon as one frees. ({})",
            e.message
        );
    }
    if path == "/_showroom/status" {
        let progress = d
            .status
            .as_ref()
            .map(|st| st.progress.clone())
            .unwrap_or_default();
        let wait = super::pools::wait_of(&s, &d);
        return axum::Json(json!({
            "phase": phase.as_str(), "message": message, "progress": progress,
            "eta": wait.as_ref().map(|w| w.describe()),
            "late": wait.as_ref().is_some_and(|w| w.is_late()),
        }))
        .into_response();
    }
    let title = d
        .spec
        .title
        .clone()
        .unwrap_or_else(|| d.spec.template.clone());
    match phase {
        Phase::Ready => {
            s.activity.record(&d.name_any());
            forward(&s, &d, req).await
        }
        Phase::Failed | Phase::Deleting => inactive(
            &s,
            Inactive::Expired,
            OWN,
            super::share::SenderView::of(&link),
        ),
        _ => {
            if !wants_html(req.headers()) {
                let mut r = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the demo is waking up; retry shortly\n",
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
                return r;
            }
            let then = req
                .uri()
                .path_and_query()
                .map_or("/".to_string(), |p| p.to_string());
            let headline = match phase {
                Phase::Pending | Phase::Provisioning => "Setting up the demo…",
                Phase::Resetting => "Resetting the demo to a clean start…",
                _ => "Waking up the demo…",
            };
            let wait = super::pools::wait_of(&s, &d);
            let page = Waking {
                brand: super::share::BrandView::of(&s, OWN),
                sender: super::share::SenderView::of(&link),
                eta: wait.as_ref().map(|w| w.describe()).unwrap_or_default(),
                late: wait.as_ref().is_some_and(|w| w.is_late()),
                assets: OWN,
                title: &title,
                headline,
                phase: phase.as_str(),
                message: &message,
                status_url: "/_showroom/status",
                then: &then,
            };
            let mut r = render(StatusCode::SERVICE_UNAVAILABLE, &page);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    for name in HOP_BY_HOP {
        if keep_upgrade && (name == "upgrade" || name == "connection") {
            continue;
        }
        h.remove(name);
    }
}

/// The Cookie header without showroom's own cookie: the demo app never sees the token.
fn without_link_cookie(h: &mut HeaderMap) {
    if let Some(c) = h.get(header::COOKIE).and_then(|v| v.to_str().ok()) {
        let rest: Vec<&str> = c
            .split(';')
            .map(str::trim)
            .filter(|kv| !kv.starts_with(&format!("{LINK_COOKIE}=")))
            .collect();
        if rest.is_empty() {
            h.remove(header::COOKIE);
        } else if let Ok(v) = HeaderValue::from_str(&rest.join("; ")) {
            h.insert(header::COOKIE, v);
        }
    }
}

fn bad_gateway(s: &AppState) -> Response {
    let page = super::share::InactivePage {
        assets: OWN,
        detail: "The demo did not answer. It may still be starting; try again in a moment.",
        brand: super::share::BrandView::of(s, OWN),
        sender: None,
    };
    let mut r = render(StatusCode::BAD_GATEWAY, &page);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    r
}

async fn forward(s: &AppState, d: &Demo, mut req: Request) -> Response {
    let Some((host_name, port)) = Upstreams::entrypoint(s, d) else {
        return bad_gateway(s);
    };
    let addr = s.proxy.connect_to(&host_name, port);
    let upgrade = req.headers().contains_key(header::UPGRADE);
    let host = req.headers().get(header::HOST).cloned();
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let Ok(uri) = format!("http://{addr}{pq}").parse::<Uri>() else {
        return bad_gateway(s);
    };
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    without_link_cookie(&mut parts.headers);
    if let Some(h) = host {
        parts.headers.insert("x-forwarded-host", h);
    }
    parts.headers.insert(
        "x-forwarded-proto",
        HeaderValue::from_str(&s.urls.share_scheme).unwrap_or(HeaderValue::from_static("http")),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{host_name}:{port}")) {
        parts.headers.insert(header::HOST, v);
    }
    let upstream_req = Request::from_parts(parts, body);
    if let Some(client_upgrade) = client_upgrade {
        return forward_upgrade(&addr, upstream_req, client_upgrade)
            .await
            .unwrap_or_else(|e| {
                tracing::debug!(error = %e, "upgrade to demo failed");
                bad_gateway(s)
            });
    }
    match s.proxy.http.request(upstream_req).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            strip_hop_by_hop(&mut parts.headers, false);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => {
            tracing::debug!(demo = %d.name_any(), error = %e, "demo did not answer");
            bad_gateway(s)
        }
    }
}

/// An HTTP/1.1 upgrade (WebSocket or any other protocol): relay the handshake, then
/// copy bytes both ways until either side closes.
async fn forward_upgrade(
    addr: &str,
    req: Request,
    client: hyper::upgrade::OnUpgrade,
) -> anyhow::Result<Response> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut resp = sender.send_request(req).await?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(a), Ok(b)) = (client.await, upstream.await) {
                let _ =
                    tokio::io::copy_bidirectional(&mut TokioIo::new(a), &mut TokioIo::new(b)).await;
            }
        });
    }
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, Body::new(body)))
}
