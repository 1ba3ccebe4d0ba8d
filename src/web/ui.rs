//! The sales web UI: server-rendered askama pages, a signed session cookie, CSRF
//! tokens on every form, and a few lines of JavaScript for live progress.

use super::AppState;
use super::demos::{self, CreateDemo, ops};
use super::error::ApiError;
use super::links::{self, CreateLink};
use super::session::{self, COOKIE};
use crate::cluster::crd::{Demo, StepState};
use crate::cluster::lease;
use crate::domain::duration::{self, human};
use crate::domain::lifecycle::Phase;
use crate::domain::users::{Role, User};
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use serde::Deserialize;
use std::net::SocketAddr;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(catalogue))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/dev/login/{who}", get(dev_login))
        .route("/demos", get(demos_page).post(start))
        .route("/demos/{name}", get(demo_page))
        .route("/demos/{name}/state", get(demo_state))
        .route("/demos/{name}/links", post(create_link))
        .route("/demos/{name}/links/{id}/revoke", post(revoke_link))
        .route("/demos/{name}/links/{id}/preview", get(preview_link))
        .route("/demos/{name}/save", post(save_as_template))
        .route("/demos/{name}/{action}", post(action))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
}

pub const CSS: &str = include_str!("../../templates/static/app.css");
pub const JS: &str = include_str!("../../templates/static/app.js");

pub async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        CSS,
    )
}

pub async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        JS,
    )
}

/// What every page's header needs.
pub struct Nav {
    pub user: Option<String>,
    pub admin: bool,
    pub csrf: String,
    pub section: &'static str,
    pub flash: Option<String>,
    pub flash_kind: &'static str,
}

impl Nav {
    fn anonymous() -> Self {
        Nav {
            user: None,
            admin: false,
            csrf: String::new(),
            section: "",
            flash: None,
            flash_kind: "ok",
        }
    }
    fn of(u: &UiUser, section: &'static str) -> Self {
        Nav {
            user: Some(u.user.name.clone()),
            admin: u.user.is_admin(),
            csrf: u.csrf.clone(),
            section,
            flash: None,
            flash_kind: "ok",
        }
    }
}

/// A user-visible error: a page in plain words with the right status.
pub struct UiError {
    pub status: StatusCode,
    pub message: String,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    heading: &'a str,
    message: &'a str,
}

pub fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template rendering failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Html("<h1>Something went wrong</h1><p>It has been logged.</p>".to_string()),
            )
                .into_response()
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let heading = match self.status.as_u16() {
            403 => "Not allowed",
            404 => "Not found",
            409 => "Not possible right now",
            429 => "Limit reached",
            400 | 413 | 422 => "That did not work",
            _ => "Something went wrong",
        };
        render(
            self.status,
            &ErrorPage {
                heading,
                message: &self.message,
            },
        )
    }
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError {
            status: e.status,
            message: e.message,
        }
    }
}

/// The signed-in user of a page; anonymous requests are sent to the sign-in page.
pub struct UiUser {
    pub user: User,
    session: String,
    pub csrf: String,
}

impl FromRequestParts<AppState> for UiUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        // Behind an SSO proxy: trust its headers only when it is the peer.
        if !s.sso.trusted_proxies.is_empty() {
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            let email = parts
                .headers
                .get("x-forwarded-email")
                .and_then(|v| v.to_str().ok());
            if let (Some(ip), Some(email)) = (peer, email)
                && s.sso.trusted_proxies.contains(&ip)
                && !email.is_empty()
            {
                let groups = parts
                    .headers
                    .get("x-forwarded-groups")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let admin = !s.sso.admin_group.is_empty()
                    && groups.split(',').any(|g| g.trim() == s.sso.admin_group);
                let configured = s.users.by_name(email).cloned();
                let user = configured.unwrap_or(User {
                    name: email.to_string(),
                    role: if admin { Role::Admin } else { Role::Sales },
                    max_demos: None,
                });
                let session = format!("sso|{email}");
                return Ok(UiUser {
                    csrf: s.session_key.csrf(&session),
                    user,
                    session,
                });
            }
        }
        let cookie = parts
            .headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|c| session::cookie(c, COOKIE));
        let user = cookie
            .and_then(|c| s.session_key.verify(c, Utc::now().timestamp()))
            .and_then(|name| s.users.by_name(&name).cloned());
        match (cookie, user) {
            (Some(c), Some(user)) => Ok(UiUser {
                csrf: s.session_key.csrf(c),
                user,
                session: c.to_string(),
            }),
            _ => Err(Redirect::to("/login").into_response()),
        }
    }
}

impl UiUser {
    fn check(&self, s: &AppState, token: &str) -> Result<(), UiError> {
        if s.session_key.check_csrf(&self.session, token) {
            Ok(())
        } else {
            Err(UiError { status: StatusCode::FORBIDDEN, message: "This form has expired or did not come from showroom. Reload the page and try again.".into() })
        }
    }
}

fn session_cookie(s: &AppState, value: &str, max_age: i64) -> HeaderValue {
    let secure = if s.urls.secure() { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .unwrap_or(HeaderValue::from_static(""))
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    nav: Nav,
    error: Option<String>,
    dev: bool,
}

async fn login_page(State(s): State<AppState>) -> Response {
    render(
        StatusCode::OK,
        &LoginPage {
            nav: Nav::anonymous(),
            error: None,
            dev: s.dev_login,
        },
    )
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

fn signed_in(s: &AppState, name: &str) -> Response {
    let value = s.session_key.issue(name, Utc::now().timestamp());
    let mut r = Redirect::to("/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(s, &value, session::TTL_SECS),
    );
    r
}

async fn login(State(s): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    match s.users.login(f.user.trim(), &f.password) {
        Some(u) => {
            tracing::info!(user = %u.name, "signed in");
            signed_in(&s, &u.name.clone())
        }
        None => render(
            StatusCode::UNAUTHORIZED,
            &LoginPage {
                nav: Nav::anonymous(),
                error: Some("Unknown user name or wrong password.".into()),
                dev: s.dev_login,
            },
        ),
    }
}

async fn dev_login(State(s): State<AppState>, Path(who): Path<String>) -> Response {
    if !s.dev_login || !matches!(who.as_str(), "sales" | "admin") || s.users.by_name(&who).is_none()
    {
        return UiError {
            status: StatusCode::NOT_FOUND,
            message: "There is no such page.".into(),
        }
        .into_response();
    }
    signed_in(&s, &who)
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(s): State<AppState>,
    u: UiUser,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    u.check(&s, &f.csrf)?;
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&s, "", 0));
    Ok(r)
}

struct TemplateCard {
    /// A fresh idempotency key per rendered form: a double click starts one demo.
    key: String,
    /// "starts instantly", "starts in about 40 s", ...
    estimate: String,
    instant: bool,
    name: String,
    display_name: String,
    description: String,
    sleep: String,
    delete: String,
    lifetime: String,
    /// "Saved by alice from web-shop on ...", for templates saved from a demo.
    saved: Option<String>,
}

#[derive(Template)]
#[template(path = "catalogue.html")]
struct CataloguePage {
    nav: Nav,
    templates: Vec<TemplateCard>,
    /// For admins: what the warm pools hold.
    pools: Vec<super::pools::PoolView>,
}

async fn catalogue(State(s): State<AppState>, u: UiUser) -> Response {
    let templates = s
        .catalogue
        .listed()
        .into_iter()
        .map(|l| {
            let t = &l.template;
            let estimate = super::pools::estimate(&s, t);
            TemplateCard {
                key: uuid::Uuid::new_v4().simple().to_string(),
                instant: estimate == super::pools::Estimate::Instant,
                estimate: estimate.describe(),
                name: t.name.clone(),
                display_name: t.display_name.clone(),
                description: t.description.clone(),
                sleep: human(t.lifecycle.defaults.sleep_after_idle),
                delete: human(t.lifecycle.defaults.delete_after_idle),
                lifetime: human(t.lifecycle.defaults.max_lifetime),
                saved: l.provenance.map(|p| {
                    format!(
                        "Saved by {} from {} on {}",
                        p.saved_by,
                        p.from_template,
                        p.saved_at.format("%Y-%m-%d %H:%M UTC")
                    )
                }),
            }
        })
        .collect();
    let pools = if u.user.is_admin() {
        super::pools::views(&s)
    } else {
        vec![]
    };
    render(
        StatusCode::OK,
        &CataloguePage {
            nav: Nav::of(&u, "catalogue"),
            templates,
            pools,
        },
    )
}

/// A demo as the pages show it.
pub struct DemoRow {
    pub name: String,
    pub title: String,
    pub template: String,
    pub owner: String,
    pub phase: String,
    pub message: String,
    pub idle: String,
    pub sleeps_in: String,
    pub deleted_in: String,
    pub expires_at: String,
    pub links: String,
    pub in_progress: bool,
    pub can_sleep: bool,
    pub can_wake: bool,
    pub can_extend: bool,
    pub can_share: bool,
    pub failed_retry: bool,
    pub can_reset: bool,
    /// Claimed from a warm pool: ready at once.
    pub from_pool: bool,
    /// The expiry notice, if one is out.
    pub notice: Option<String>,
    /// Running: it may be saved as a template (unless a save is under way).
    pub can_save: bool,
    /// The latest save as a template.
    pub save: Option<SaveRow>,
}

/// A save as template, as the demo page shows it.
pub struct SaveRow {
    pub template: String,
    /// Saving, Saved or Failed.
    pub phase: String,
    pub message: String,
    pub snapshot: String,
    /// "for 12 s" while saving, "in 40 s" when done.
    pub took: String,
}

fn until(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    if t <= now {
        "now".into()
    } else {
        human(t - now)
    }
}

impl DemoRow {
    pub fn of(d: &Demo) -> Self {
        let now = Utc::now();
        let st = d.status.clone().unwrap_or_default();
        let phase = if d.metadata.deletion_timestamp.is_some() {
            Phase::Deleting
        } else {
            d.phase()
        };
        let facts = lease::facts(d);
        let policy = lease::policy(d, None);
        let idle_from = facts
            .ready_at
            .map_or(facts.last_activity, |r| r.max(facts.last_activity));
        let delete_at = (facts.last_activity + policy.delete_after_idle).min(facts.expires_at);
        let active_links = d
            .spec
            .share_links
            .iter()
            .filter(|l| l.revoked_at.is_none())
            .count();
        let gone = matches!(phase, Phase::Deleting | Phase::Failed);
        DemoRow {
            name: d.name_any(),
            title: d.spec.title.clone().unwrap_or_else(|| d.name_any()),
            template: d.spec.template.clone(),
            owner: d.spec.owner.clone(),
            phase: phase.as_str().into(),
            message: st.message.unwrap_or_default(),
            idle: human(now - facts.last_activity),
            sleeps_in: if phase == Phase::Ready {
                until(idle_from + policy.sleep_after_idle, now)
            } else {
                "—".into()
            },
            deleted_in: if phase == Phase::Deleting {
                "now".into()
            } else {
                until(delete_at, now)
            },
            expires_at: facts.expires_at.format("%Y-%m-%d %H:%M UTC").to_string(),
            links: if active_links == 0 {
                "—".into()
            } else {
                active_links.to_string()
            },
            in_progress: matches!(
                phase,
                Phase::Pending | Phase::Provisioning | Phase::Resetting
            ) || (phase == Phase::Failed && st.ready_at.is_none()),
            can_sleep: matches!(phase, Phase::Ready | Phase::Waking),
            can_wake: phase == Phase::Sleeping,
            can_extend: !gone,
            can_share: !gone,
            failed_retry: phase == Phase::Failed,
            can_reset: phase.can_reset(),
            from_pool: d.spec.claimed_at.is_some(),
            notice: st.notice.map(|n| n.message),
            can_save: phase == Phase::Ready
                && st
                    .save
                    .as_ref()
                    .is_none_or(|v| v.phase != crate::cluster::crd::SavePhase::Saving),
            save: st.save.map(|v| SaveRow {
                took: match v.finished_at {
                    Some(f) => format!("in {}", human(f - v.started_at)),
                    None => format!("for {}", human(now - v.started_at)),
                },
                template: v.template,
                phase: format!("{:?}", v.phase),
                message: v.message.unwrap_or_default(),
                snapshot: v.snapshot,
            }),
        }
    }
}

#[derive(Template)]
#[template(path = "demos.html")]
struct DemosPage {
    nav: Nav,
    demos: Vec<DemoRow>,
    /// How many demos the whole list holds, and where this page starts (1-based).
    total: usize,
    first: usize,
    /// The link to the next (older) page.
    older: Option<String>,
}

/// Demos on one page of the list, unless `?limit=` says otherwise.
const UI_PAGE: usize = 50;

#[derive(Deserialize)]
struct DemosQuery {
    #[serde(rename = "continue")]
    continue_: Option<String>,
    limit: Option<usize>,
    /// How many came before this page (only for "showing 51-100").
    #[serde(default)]
    from: usize,
}

async fn demos_page(
    State(s): State<AppState>,
    u: UiUser,
    q: Result<Query<DemosQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, UiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (limit, after) =
        super::demos::page_params(Some(q.limit.unwrap_or(UI_PAGE)), q.continue_.as_deref())?;
    let owner = (!u.user.is_admin()).then_some(u.user.name.as_str());
    let page = s.demos.page(owner, after.as_ref(), limit);
    let from = if after.is_some() { q.from } else { 0 };
    let older = page.next.map(|k| {
        let limit = q.limit.map_or(String::new(), |l| format!("&limit={l}"));
        format!(
            "/demos?continue={}&from={}{limit}",
            k.token(),
            from + page.demos.len()
        )
    });
    Ok(render(
        StatusCode::OK,
        &DemosPage {
            nav: Nav::of(&u, "demos"),
            demos: page.demos.iter().map(|d| DemoRow::of(d)).collect(),
            total: page.total,
            first: from + 1,
            older,
        },
    ))
}

#[derive(Deserialize)]
struct StartForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    key: String,
}

async fn start(
    State(s): State<AppState>,
    u: UiUser,
    Form(f): Form<StartForm>,
) -> Result<Response, UiError> {
    u.check(&s, &f.csrf)?;
    let title = f.title.trim();
    let req = CreateDemo {
        template: f.template,
        title: (!title.is_empty()).then(|| title.to_string()),
        ..Default::default()
    };
    let key = (!f.key.is_empty()).then_some(f.key.as_str());
    let d = demos::start_demo(&s, &u.user, &req, key).await?;
    Ok(Redirect::to(&format!("/demos/{}", d.name_any())).into_response())
}

struct StepRow {
    name: String,
    label: &'static str,
    state: String,
    took: String,
}

fn step_label(name: &str) -> &'static str {
    match name {
        "namespace" => "Reserving a namespace",
        "quota" => "Setting resource limits",
        "access" => "Granting the installer access",
        "restore" => "Restoring the demo snapshot",
        "boot" => "Starting the virtual cluster",
        "kubeconfig" => "Publishing access",
        _ => "Working",
    }
}

struct LinkRow {
    id: String,
    label: String,
    status: String,
    visits: u64,
    first_opened: String,
    last_opened: String,
    expires: String,
    active: bool,
    passcode: bool,
}

struct NewLink {
    url: String,
    label: String,
}

#[derive(Template)]
#[template(path = "demo.html")]
struct DemoPage {
    nav: Nav,
    d: DemoRow,
    steps: Vec<StepRow>,
    links: Vec<LinkRow>,
    new_link: Option<NewLink>,
    /// How long the start, wake or reset in progress usually takes ("" when none).
    eta: String,
    late: bool,
}

fn ago(t: Option<DateTime<Utc>>) -> String {
    t.map_or("never".into(), |t| format!("{} ago", human(Utc::now() - t)))
}

fn demo_page_for(
    s: &AppState,
    u: &UiUser,
    d: &Demo,
    flash: Option<String>,
    new_link: Option<NewLink>,
) -> Response {
    let st = d.status.clone().unwrap_or_default();
    let steps = st
        .progress
        .iter()
        .map(|p| StepRow {
            name: p.name.clone(),
            label: step_label(&p.name),
            state: format!("{:?}", p.state),
            took: match (p.started_at, p.finished_at, p.state) {
                (Some(a), Some(b), StepState::Done) => {
                    format!("{:.1}s", (b - a).num_milliseconds() as f64 / 1000.0)
                }
                _ => String::new(),
            },
        })
        .collect();
    let links = links::views(d, s)
        .into_iter()
        .rev()
        .map(|l| LinkRow {
            status: if l.revoked_at.is_some() {
                "revoked".into()
            } else if l.active {
                "active".into()
            } else {
                "expired".into()
            },
            label: l.label.clone().unwrap_or_else(|| "(no label)".into()),
            visits: l.visits,
            first_opened: ago(l.first_opened_at),
            last_opened: ago(l.last_opened_at),
            expires: l.expires_at.map_or("with the demo".into(), |e| {
                e.format("%Y-%m-%d %H:%M UTC").to_string()
            }),
            active: l.active,
            passcode: l.passcode,
            id: l.id,
        })
        .collect();
    let mut nav = Nav::of(u, "demos");
    nav.flash = flash;
    let wait = super::pools::wait_of(s, d);
    render(
        StatusCode::OK,
        &DemoPage {
            nav,
            d: DemoRow::of(d),
            steps,
            links,
            new_link,
            eta: wait.as_ref().map(|w| w.describe()).unwrap_or_default(),
            late: wait.as_ref().is_some_and(|w| w.is_late()),
        },
    )
}

#[derive(Deserialize)]
struct Done {
    done: Option<String>,
}

async fn demo_page(
    State(s): State<AppState>,
    u: UiUser,
    Path(name): Path<String>,
    Query(q): Query<Done>,
) -> Result<Response, UiError> {
    let d = demos::find(&s, &u.user, &name).await?;
    let flash = q.done.as_deref().and_then(|a| match a {
        "sleep" => Some("The demo is going to sleep.".to_string()),
        "wake" => Some("The demo is waking up.".to_string()),
        "extend" => Some("The demo's lease was extended.".to_string()),
        "revoke" => Some("The link was revoked; it stops working at once.".to_string()),
        "save" => Some(
            "Saving the demo as a template: it joins the catalogue when the snapshot is written."
                .to_string(),
        ),
        _ => None,
    });
    Ok(demo_page_for(&s, &u, &d, flash, None))
}

/// Polled by the progress view.
async fn demo_state(
    State(s): State<AppState>,
    u: UiUser,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    let d = demos::find(&s, &u.user, &name).await?;
    let row = DemoRow::of(&d);
    let progress = d
        .status
        .as_ref()
        .map(|st| st.progress.clone())
        .unwrap_or_default();
    let save = d.status.as_ref().and_then(|st| st.save.clone());
    let wait = super::pools::wait_of(&s, &d);
    Ok(axum::Json(serde_json::json!({
        "phase": row.phase, "message": row.message, "progress": progress, "save": save,
        "eta": wait.as_ref().map(|w| w.describe()),
        "late": wait.as_ref().is_some_and(|w| w.is_late()),
    }))
    .into_response())
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    by: String,
}

async fn action(
    State(s): State<AppState>,
    u: UiUser,
    Path((name, act)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    u.check(&s, &f.csrf)?;
    match act.as_str() {
        "sleep" => ops::sleep(&s, &u.user, &name).await?,
        "wake" => ops::wake(&s, &u.user, &name).await?,
        "reset" => ops::reset(&s, &u.user, &name).await?,
        "extend" => {
            ops::extend(
                &s,
                &u.user,
                &name,
                if f.by.is_empty() { "1h" } else { &f.by },
            )
            .await?
        }
        "delete" => {
            ops::delete(&s, &u.user, &name).await?;
            return Ok(Redirect::to("/demos").into_response());
        }
        _ => {
            return Err(UiError {
                status: StatusCode::NOT_FOUND,
                message: "There is no such action.".into(),
            });
        }
    };
    Ok(Redirect::to(&format!("/demos/{name}?done={act}")).into_response())
}

/// What the prospect will see on the link's landing page.
async fn preview_link(
    State(s): State<AppState>,
    u: UiUser,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let d = demos::find(&s, &u.user, &name).await?;
    let Some(l) = d.spec.share_links.iter().find(|l| l.id == id) else {
        return Err(UiError {
            status: StatusCode::NOT_FOUND,
            message: "There is no such share link on this demo.".into(),
        });
    };
    Ok(super::share::preview(&s, &d, l))
}

#[derive(Deserialize)]
struct SaveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    template: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
}

/// "Save as template" on the demo page.
async fn save_as_template(
    State(s): State<AppState>,
    u: UiUser,
    Path(name): Path<String>,
    Form(f): Form<SaveForm>,
) -> Result<Response, UiError> {
    u.check(&s, &f.csrf)?;
    let some = |t: String| (!t.trim().is_empty()).then_some(t);
    let req = crate::domain::saved::SaveRequest {
        template: f.template,
        display_name: some(f.display_name),
        description: some(f.description),
    };
    ops::save(&s, &u.user, &name, &req).await?;
    Ok(Redirect::to(&format!("/demos/{name}?done=save")).into_response())
}

#[derive(Deserialize)]
struct LinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    expires: String,
    #[serde(default)]
    passcode: String,
    #[serde(default)]
    contact: String,
    #[serde(default)]
    message: String,
}

async fn create_link(
    State(s): State<AppState>,
    u: UiUser,
    Path(name): Path<String>,
    Form(f): Form<LinkForm>,
) -> Result<Response, UiError> {
    u.check(&s, &f.csrf)?;
    let d = demos::find(&s, &u.user, &name).await?;
    let expires_at = match f.expires.as_str() {
        "" => None,
        e => Some(
            Utc::now()
                + duration::parse(e).map_err(|e| UiError {
                    status: StatusCode::BAD_REQUEST,
                    message: e,
                })?,
        ),
    };
    // "in 7 days" on a demo that ends sooner simply ends with the demo.
    let expires_at = expires_at.filter(|e| *e < lease::expires_at(&d));
    let req = CreateLink {
        label: Some(f.label.clone()),
        expires_at,
        passcode: Some(f.passcode),
        sender_name: None,
        sender_contact: Some(f.contact),
        message: Some(f.message),
    };
    let (link, token) = links::create(&s, &d, &req, &u.user.name).await?;
    let fresh = demos::find(&s, &u.user, &name).await.unwrap_or(d);
    // The cache may not have the new link yet: show it from what was just written.
    let mut shown = fresh.clone();
    if !shown.spec.share_links.iter().any(|l| l.id == link.id) {
        shown.spec.share_links.push(link.clone());
    }
    let new_link = NewLink {
        url: s.urls.share_url(&token),
        label: link.label.unwrap_or_default(),
    };
    let mut r = demo_page_for(&s, &u, &shown, None, Some(new_link));
    // The token is on this page only: keep it out of caches.
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn revoke_link(
    State(s): State<AppState>,
    u: UiUser,
    Path((name, id)): Path<(String, String)>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    u.check(&s, &f.csrf)?;
    let d = demos::find(&s, &u.user, &name).await?;
    links::revoke(&s, &d, &id).await?;
    Ok(Redirect::to(&format!("/demos/{name}?done=revoke")).into_response())
}
