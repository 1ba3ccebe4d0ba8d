//! The prospect's side of a share link on showroom's own host: the landing page and
//! "Open demo", which wakes a sleeping demo and sends the browser to the link's host.

use super::AppState;
use super::links;
use super::ui::render;
use crate::cluster::crd::{DesiredState, ShareLinkSpec};
use crate::domain::lifecycle::Phase;
use crate::domain::share::{self, Inactive};
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kube::ResourceExt;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/s/{token}", get(landing))
        .route("/s/{token}/open", post(open))
        .route("/brand/logo", get(logo))
}

/// Failed link lookups (and wrong passcodes) per client: at most `max` per `window`.
pub struct FailureLimiter {
    max: u32,
    window: Duration,
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl FailureLimiter {
    pub fn new(max: u32, window: Duration) -> Self {
        FailureLimiter {
            max,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }
    pub fn blocked(&self, ip: IpAddr) -> bool {
        let map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip)
            .is_some_and(|(n, since)| *n >= self.max && since.elapsed() < self.window)
    }
    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (_, since)| since.elapsed() < self.window);
        }
        let e = map.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }
}

#[derive(Template)]
#[template(path = "share_inactive.html")]
pub struct InactivePage<'a> {
    pub assets: &'a str,
    pub detail: &'a str,
    pub brand: BrandView,
    pub sender: Option<SenderView>,
}

/// The vendor's brand as a prospect page shows it.
pub struct BrandView {
    pub product: String,
    pub color: String,
    pub logo_url: Option<String>,
}

impl BrandView {
    /// `assets`: "" on showroom's host, "/_showroom" on a link's host.
    pub fn of(s: &AppState, assets: &str) -> BrandView {
        BrandView {
            product: s.brand.product.clone(),
            color: s.brand.color.clone(),
            logo_url: s
                .brand
                .logo
                .as_ref()
                .map(|_| format!("{assets}/brand/logo")),
        }
    }
}

/// Who sent a link, and their note, as the prospect sees it.
pub struct SenderView {
    pub name: String,
    pub contact: String,
    pub message: String,
}

impl SenderView {
    pub fn of(l: &ShareLinkSpec) -> Option<SenderView> {
        Some(SenderView {
            name: l.sender_name.clone()?,
            contact: l.sender_contact.clone().unwrap_or_default(),
            message: l.message.clone().unwrap_or_default(),
        })
    }
}

/// `GET /brand/logo` (and `/_showroom/brand/logo` on a link's host).
pub async fn logo(State(s): State<AppState>) -> Response {
    match &s.brand.logo {
        Some(l) => (
            [
                (header::CONTENT_TYPE, l.content_type),
                (header::CACHE_CONTROL, "public, max-age=300"),
                // An SVG logo is an image, never a document that runs script.
                (
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; style-src 'unsafe-inline'",
                ),
            ],
            l.bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The same page for unknown, revoked and expired links; only the status differs.
/// (Who to ask for a new link is said only where the link was real: `sender`.)
pub fn inactive(s: &AppState, why: Inactive, assets: &str, sender: Option<SenderView>) -> Response {
    let status = StatusCode::from_u16(why.status()).unwrap_or(StatusCode::NOT_FOUND);
    render(
        status,
        &InactivePage {
            assets,
            detail: "It may have expired or been withdrawn.",
            brand: BrandView::of(s, assets),
            sender,
        },
    )
}

pub fn too_many(s: &AppState, assets: &str) -> Response {
    render(
        StatusCode::TOO_MANY_REQUESTS,
        &InactivePage {
            assets,
            detail: "Too many attempts from your network; please wait a few minutes.",
            brand: BrandView::of(s, assets),
            sender: None,
        },
    )
}

#[derive(Template)]
#[template(path = "share_landing.html")]
struct Landing<'a> {
    title: &'a str,
    /// The template's name and description, so a prospect knows what they will see.
    about: String,
    token: &'a str,
    passcode: bool,
    /// When the demo sleeps: how long waking it usually takes.
    sleeping: Option<String>,
    error: Option<&'a str>,
    brand: BrandView,
    sender: Option<SenderView>,
    /// Shown to the salesperson before sending: the same page, nothing opens.
    preview: bool,
}

/// "usually about 8s" from the template's measured wakes, for a sleeping demo.
fn wake_eta(s: &AppState, d: &crate::cluster::crd::Demo) -> Option<String> {
    if d.phase() != Phase::Sleeping {
        return None;
    }
    let usual = s
        .catalogue
        .get(&d.spec.template)
        .and_then(|t| super::pools::wake_estimate(s, &t));
    Some(match usual {
        Some(e) => format!("usually in about {}", crate::domain::waits::about(e)),
        None => "usually within a minute".into(),
    })
}

fn about(s: &AppState, d: &crate::cluster::crd::Demo) -> String {
    s.catalogue
        .get(&d.spec.template)
        .map_or(String::new(), |t| {
            format!("{}: {}", t.display_name, t.description)
        })
}

/// The landing page of a link as its prospect will see it, for the salesperson to
/// check before sending it (the token is not known here; nothing can be opened).
pub fn preview(s: &AppState, d: &crate::cluster::crd::Demo, l: &ShareLinkSpec) -> Response {
    let title = d
        .spec
        .title
        .clone()
        .unwrap_or_else(|| d.spec.template.clone());
    render(
        StatusCode::OK,
        &Landing {
            about: about(s, d),
            title: &title,
            token: "preview",
            passcode: l.passcode_hash.is_some(),
            sleeping: wake_eta(s, d),
            error: None,
            brand: BrandView::of(s, ""),
            sender: SenderView::of(l),
            preview: true,
        },
    )
}

fn peer(ci: &ConnectInfo<SocketAddr>) -> IpAddr {
    ci.0.ip()
}

async fn landing(
    State(s): State<AppState>,
    ci: ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Response {
    let ip = peer(&ci);
    if s.share_guard.blocked(ip) {
        return too_many(&s, "");
    }
    let found = links::lookup(&s, &token);
    match found {
        Ok((d, l)) => {
            let title = d
                .spec
                .title
                .clone()
                .unwrap_or_else(|| d.spec.template.clone());
            let sleeping = wake_eta(&s, &d);
            render(
                StatusCode::OK,
                &Landing {
                    about: about(&s, &d),
                    title: &title,
                    token: &token,
                    passcode: l.passcode_hash.is_some(),
                    sleeping,
                    error: None,
                    brand: BrandView::of(&s, ""),
                    sender: SenderView::of(&l),
                    preview: false,
                },
            )
        }
        Err(why) => {
            s.share_guard.failed(ip);
            inactive(&s, why, "", None)
        }
    }
}

async fn open(
    State(s): State<AppState>,
    ci: ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    // A form post, but a bare POST (no body, no content type) opens a link too.
    let passcode: String = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "passcode")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let ip = peer(&ci);
    if s.share_guard.blocked(ip) {
        return too_many(&s, "");
    }
    let found = links::lookup(&s, &token);
    let (d, l) = match found {
        Ok(x) => x,
        Err(why) => {
            s.share_guard.failed(ip);
            return inactive(&s, why, "", None);
        }
    };
    let title = d
        .spec
        .title
        .clone()
        .unwrap_or_else(|| d.spec.template.clone());
    if let Some(hash) = &l.passcode_hash
        && !share::verify_secret(&passcode, hash)
    {
        s.share_guard.failed(ip);
        let page = Landing {
            about: about(&s, &d),
            title: &title,
            token: &token,
            passcode: true,
            sleeping: None,
            error: Some("That passcode is not right."),
            brand: BrandView::of(&s, ""),
            sender: SenderView::of(&l),
            preview: false,
        };
        return render(StatusCode::UNAUTHORIZED, &page);
    }
    s.activity.record_visit(&d.name_any(), &l.id);
    s.metrics.share_link_visits.inc();
    // Wakes it now (past the ceiling, the waking page keeps trying).
    if d.spec.desired_state == DesiredState::Sleeping
        && let Err(e) = super::demos::ops::wake_demo(&s, &d).await
    {
        tracing::info!(demo = %d.name_any(), reason = %e.message, "could not wake demo from a share link yet");
    }
    tracing::info!(demo = %d.name_any(), link = %l.id, "share link opened");
    let enter = format!("{}_showroom/enter?token={token}", s.urls.app_url(&l.id));
    Redirect::to(&enter).into_response()
}
