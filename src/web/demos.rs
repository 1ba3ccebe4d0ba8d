//! `/api/v1/demos`: start, list, inspect, sleep, wake, extend, touch and delete demos.

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, from_json_rejection};
use crate::cluster::actions::{patch_spec, request_delete};
use crate::cluster::cache::ListKey;
use crate::cluster::crd::DemoTemplate;
use crate::cluster::crd::*;
use crate::cluster::lease;
use crate::cluster::saving::{self, SaveError};
use crate::cluster::start::{Request as StartRequest, StartError, Starter};
use crate::domain::duration;
use crate::domain::lifecycle::{self, Overrides, Phase};
use crate::domain::saved::SaveRequest;
use crate::domain::users::User;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

/// A demo as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DemoView {
    pub name: String,
    pub template: String,
    pub owner: String,
    pub title: String,
    pub phase: Phase,
    pub desired_state: DesiredState,
    pub message: Option<String>,
    pub progress: Vec<ProgressStep>,
    pub namespace: Option<String>,
    pub created_at: DateTime<Utc>,
    pub ready_at: Option<DateTime<Utc>>,
    pub last_activity: Option<DateTime<Utc>>,
    pub sleeping_since: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    pub lifecycle: DemoLifecycle,
    pub share_links: Vec<super::links::LinkView>,
    /// The announced next sleep or deletion, when it is near.
    pub notice: Option<crate::cluster::crd::Notice>,
    /// Claimed from the template's warm pool (it was ready at once).
    pub from_pool: bool,
    /// Resets asked for, and carried out.
    pub reset_generation: u32,
    /// The latest save of this demo as a template.
    pub save: Option<crate::cluster::crd::SaveStatus>,
    /// While it starts, wakes or resets: what that usually takes, measured.
    pub wait: Option<WaitView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitView {
    /// The median of the template's recent starts (or wakes); absent until measured.
    pub expected_seconds: Option<i64>,
    pub elapsed_seconds: i64,
    pub late: bool,
    pub message: String,
}

impl DemoView {
    pub fn of(d: &Demo, s: &AppState) -> Self {
        let st = d.status.clone().unwrap_or_default();
        DemoView {
            name: d.name_any(),
            template: d.spec.template.clone(),
            owner: d.spec.owner.clone(),
            title: d.spec.title.clone().unwrap_or_default(),
            phase: if d.metadata.deletion_timestamp.is_some() {
                Phase::Deleting
            } else {
                st.phase.unwrap_or_default()
            },
            desired_state: d.spec.desired_state,
            message: st.message,
            progress: st.progress,
            namespace: st.namespace,
            created_at: lease::created_at(d),
            ready_at: st.ready_at,
            last_activity: st.last_activity,
            sleeping_since: st.sleeping_since,
            expires_at: lease::expires_at(d),
            lifecycle: d.spec.lifecycle.clone(),
            share_links: super::links::views(d, s),
            notice: d.status.as_ref().and_then(|st| st.notice.clone()),
            from_pool: d.spec.claimed_at.is_some(),
            reset_generation: d.spec.reset_generation,
            save: d.status.as_ref().and_then(|st| st.save.clone()),
            wait: super::pools::wait_of(s, d).map(|w| WaitView {
                expected_seconds: w.expected.map(|e| e.num_seconds()),
                elapsed_seconds: w.elapsed.num_seconds(),
                late: w.is_late(),
                message: w.describe(),
            }),
        }
    }
}

fn valid_demo_name(name: &str) -> bool {
    name.starts_with(NAME_PREFIX)
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A demo the caller may act on: from the cache, falling back to one GET for a demo
/// created a moment ago that the cache has not seen yet.
pub async fn find(s: &AppState, user: &User, name: &str) -> Result<Demo, ApiError> {
    if !valid_demo_name(name) {
        return Err(ApiError::not_found(format!("no demo named {name:?}")));
    }
    let fetch = || async {
        Api::<Demo>::all(s.client.clone())
            .get_opt(name)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no demo named {name:?}")))
    };
    let mut demo = match s.demos.get(name) {
        Some(d) => (*d).clone(),
        None => fetch().await?,
    };
    if !user.is_admin() && demo.spec.owner != user.name {
        // The cache may not show a claim yet (a pool member just handed to this user,
        // claimed on another replica): a refusal is made on the stored Demo only.
        demo = fetch().await?;
    }
    if !user.is_admin() && demo.spec.owner != user.name {
        return Err(ApiError::forbidden(format!(
            "demo {name:?} belongs to another user"
        )));
    }
    Ok(demo)
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateDemo {
    pub template: String,
    pub title: Option<String>,
    pub sleep_after_idle: Option<String>,
    pub delete_after_idle: Option<String>,
    pub max_lifetime: Option<String>,
}

fn parse_opt(field: &str, v: &Option<String>) -> Result<Option<chrono::Duration>, ApiError> {
    v.as_deref()
        .map(|t| duration::parse(t).map_err(|e| ApiError::bad_request(format!("{field}: {e}"))))
        .transpose()
}

/// Read-modify-write of a Demo's spec at the API server (`guarded_write`): `f` sees the
/// stored Demo (never the cache) and returns the spec fields to merge, so concurrent
/// changes never lose one another.
pub(super) async fn update_spec(
    s: &AppState,
    name: &str,
    f: impl Fn(&Demo) -> Result<serde_json::Value, ApiError>,
) -> Result<Demo, ApiError> {
    let d = crate::cluster::actions::guarded_write(
        &s.client,
        name,
        None,
        crate::cluster::actions::Part::Spec,
        f,
        || ApiError::conflict("the demo kept changing; try again"),
    )
    .await?;
    Ok(shown(s, d).await)
}

/// A Demo just written, once this replica's cache shows it (or after a short wait):
/// the page or answer that follows a click then shows what the click did.
pub(super) async fn shown(s: &AppState, d: Demo) -> Demo {
    if let Some(rv) = d.resource_version() {
        s.demos
            .wait_for(&d.name_any(), &rv, std::time::Duration::from_secs(2))
            .await;
    }
    d
}

/// A hash of (instance, owner, Idempotency-Key): what a retried or double-clicked
/// request is recognised by, even across replicas.
fn idempotency_hash(instance: &Instance, owner: &str, key: &str) -> String {
    hex::encode(Sha256::digest(
        format!("{}\n{owner}\n{key}", instance.name()).as_bytes(),
    ))[..20]
        .to_string()
}

/// A new demo's name: random, or derived from the Idempotency-Key's hash, so that the
/// API server's AlreadyExists is the lock for two starts with the same key.
fn demo_name(instance: &Instance, owner: &str, key: Option<&str>) -> String {
    match key {
        Some(k) => {
            let h = idempotency_hash(instance, owner, k);
            format!("{NAME_PREFIX}{}", &h[..10])
        }
        None => format!(
            "{NAME_PREFIX}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        ),
    }
}

pub async fn create(
    State(s): State<AppState>,
    Caller(user): Caller,
    headers: HeaderMap,
    body: Result<Json<CreateDemo>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(from_json_rejection)?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be printable ASCII"))?
                .to_string(),
        ),
        None => None,
    };
    let demo = start_demo(&s, &user, &req, key.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(DemoView::of(&demo, &s))).into_response())
}

/// Starts a demo (or returns the one this Idempotency-Key already started).
pub async fn start_demo(
    s: &AppState,
    user: &User,
    req: &CreateDemo,
    key: Option<&str>,
) -> Result<Demo, ApiError> {
    if let Some(k) = key
        && (k.is_empty() || k.len() > 200)
    {
        return Err(ApiError::bad_request(
            "Idempotency-Key must be 1 to 200 characters",
        ));
    }
    if !s.ready.is_ready() {
        return Err(ApiError::unavailable(format!(
            "showroom is not ready: {}",
            s.ready.why()
        )));
    }
    let Some(template) = s.catalogue.startable(&req.template) else {
        let known: Vec<String> = s
            .catalogue
            .listed()
            .iter()
            .map(|l| l.template.name.clone())
            .collect();
        return Err(ApiError::unprocessable(format!(
            "unknown template {:?} (available: {})",
            req.template,
            known.join(", ")
        )));
    };
    if let Some(t) = &req.title
        && (t.chars().count() > 100 || t.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "title: at most 100 characters, no control characters",
        ));
    }
    let overrides = Overrides {
        sleep_after_idle: parse_opt("sleepAfterIdle", &req.sleep_after_idle)?,
        delete_after_idle: parse_opt("deleteAfterIdle", &req.delete_after_idle)?,
        max_lifetime: parse_opt("maxLifetime", &req.max_lifetime)?,
    };
    let lifetimes =
        lifecycle::resolve(&template.lifecycle, &overrides, user.is_admin()).map_err(|e| {
            if e.contains("admins only") {
                ApiError::forbidden(e)
            } else {
                ApiError::bad_request(e)
            }
        })?;
    let title = req
        .title
        .clone()
        .unwrap_or_else(|| template.display_name.clone());
    let starter = Starter {
        client: &s.client,
        instance: &s.instance,
        cache: &s.demos,
        slots: &s.slots,
        capacity: s.limits.max_running_demos,
    };
    let request = StartRequest {
        template: &template,
        owner: &user.name,
        title: &title,
        lifecycle: DemoLifecycle {
            sleep_after_idle: duration::format(lifetimes.sleep_after_idle),
            delete_after_idle: duration::format(lifetimes.delete_after_idle),
            max_lifetime: duration::format(lifetimes.max_lifetime),
            extension: None,
        },
        limit: user.max_demos.unwrap_or(s.limits.max_demos_per_user),
        idempotency: key.map(|k| idempotency_hash(&s.instance, &user.name, k)),
        name: demo_name(&s.instance, &user.name, key),
    };
    let started = match starter.start(request).await {
        Ok(started) => started,
        Err(StartError::UserLimit { held, limit }) => {
            return Err(ApiError::too_many(format!(
                "you already have {held} active demos (limit {limit}); delete one first"
            )));
        }
        Err(e @ StartError::AtCapacity { .. }) => {
            s.metrics.capacity_refusals.inc();
            return Err(ApiError::too_many(e.to_string()));
        }
        Err(e @ StartError::InProgress) => return Err(ApiError::conflict(e.to_string())),
        Err(StartError::Kube(e)) => return Err(e.into()),
    };
    if template.warm_pool.is_some() {
        let l = crate::metrics::label("template", &template.name);
        if started.claimed {
            s.metrics.pool_claims.get_or_create(&l).inc();
        } else {
            s.metrics.pool_misses.get_or_create(&l).inc();
        }
    }
    if started.demo.spec.owner != user.name {
        return Err(ApiError::conflict("that Idempotency-Key is in use"));
    }
    if started.claimed {
        // A claimed member is in the cache already, as the pool's: until the cache
        // shows the claim, the new owner's list lacks it and its page would refuse
        // them. (A demo made anew is not cached yet, and `find` reads it from the API.)
        return Ok(shown(s, started.demo).await);
    }
    Ok(started.demo)
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    all: bool,
    /// At most this many demos (1 to `MAX_PAGE`); all of them when absent.
    limit: Option<usize>,
    /// Where the previous page ended, as it said in `continue`.
    #[serde(rename = "continue")]
    continue_: Option<String>,
}

/// The largest page a list returns.
pub const MAX_PAGE: usize = 1000;

/// Reads `limit` and `continue` as Kubernetes does: a page and where the next starts.
pub fn page_params(
    limit: Option<usize>,
    continue_: Option<&str>,
) -> Result<(usize, Option<ListKey>), ApiError> {
    let limit = match limit {
        None => usize::MAX,
        Some(l) if (1..=MAX_PAGE).contains(&l) => l,
        Some(l) => {
            return Err(ApiError::bad_request(format!(
                "limit: must be 1 to {MAX_PAGE}, not {l}"
            )));
        }
    };
    let after = match continue_.filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(ListKey::from_token(c).ok_or_else(|| {
            ApiError::bad_request("continue: not a token from a previous page of this list")
        })?),
    };
    Ok((limit, after))
}

pub async fn list(
    State(s): State<AppState>,
    Caller(user): Caller,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if q.all && !user.is_admin() {
        return Err(ApiError::forbidden(
            "only admins may list every user's demos",
        ));
    }
    let (limit, after) = page_params(q.limit, q.continue_.as_deref())?;
    // Newest first. Unclaimed warm-pool members are nobody's demos yet: see /api/v1/pools.
    let owner = (!q.all).then_some(user.name.as_str());
    let page = s.demos.page(owner, after.as_ref(), limit);
    let demos: Vec<DemoView> = page.demos.iter().map(|d| DemoView::of(d, &s)).collect();
    Ok(Json(json!({
        "demos": demos,
        "continue": page.next.map(|k| k.token()),
        "total": page.total,
    })))
}

pub async fn get(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<DemoView>, ApiError> {
    Ok(Json(DemoView::of(&find(&s, &user, &name).await?, &s)))
}

fn accepted(d: &Demo, s: &AppState) -> Response {
    (StatusCode::ACCEPTED, Json(DemoView::of(d, s))).into_response()
}

fn refuse_if_gone(d: &Demo, verb: &str) -> Result<(), ApiError> {
    if d.metadata.deletion_timestamp.is_some() || d.phase() == Phase::Deleting {
        return Err(ApiError::conflict(format!(
            "cannot {verb} demo {:?}: it is being deleted",
            d.name_any()
        )));
    }
    if d.phase() == Phase::Failed {
        return Err(ApiError::conflict(format!(
            "cannot {verb} demo {:?}: it failed ({}); delete it and start a new one",
            d.name_any(),
            d.status
                .as_ref()
                .and_then(|s| s.message.clone())
                .unwrap_or_default()
        )));
    }
    Ok(())
}

/// The operations behind both the JSON API and the web UI.
pub mod ops {
    use super::*;

    pub async fn sleep(s: &AppState, user: &User, name: &str) -> Result<Demo, ApiError> {
        let d = find(s, user, name).await?;
        refuse_if_gone(&d, "put to sleep")?;
        if matches!(d.phase(), Phase::Pending | Phase::Provisioning) {
            return Err(ApiError::conflict(format!(
                "demo {name:?} is still being provisioned; it can sleep once Ready"
            )));
        }
        if d.spec.desired_state == DesiredState::Sleeping {
            return Ok(d);
        }
        let asleep = patch_spec(&s.client, name, json!({"desiredState": "Sleeping"})).await?;
        let asleep = shown(s, asleep).await;
        // The controller frees it too; freeing here lets the next start use it at once.
        let _ = s
            .slots
            .free_for(name, Some(crate::cluster::slots::Kind::Run))
            .await;
        Ok(asleep)
    }

    pub async fn wake(s: &AppState, user: &User, name: &str) -> Result<Demo, ApiError> {
        let d = find(s, user, name).await?;
        refuse_if_gone(&d, "wake")?;
        wake_demo(s, &d).await
    }

    /// Wakes a demo (for its owner, or for a prospect's share link). A sleeping demo
    /// needs one of the cluster's run slots first: past the ceiling it stays asleep and
    /// the answer says why (429).
    pub async fn wake_demo(s: &AppState, d: &Demo) -> Result<Demo, ApiError> {
        if d.spec.desired_state == DesiredState::Running {
            return Ok(d.clone());
        }
        let slot = take_run_slot(s, d).await?;
        match patch_spec(&s.client, &d.name_any(), json!({"desiredState": "Running"})).await {
            Ok(woken) => {
                if let Some(slot) = slot {
                    s.slots.bind(&slot, &woken).await?;
                }
                Ok(shown(s, woken).await)
            }
            Err(e) => {
                if let Some(slot) = slot {
                    let _ = s.slots.free(&slot).await;
                }
                Err(e.into())
            }
        }
    }

    /// A run slot for a demo about to run again (None: no ceiling, or it holds one).
    async fn take_run_slot(s: &AppState, d: &Demo) -> Result<Option<String>, ApiError> {
        let capacity = s.limits.max_running_demos;
        if capacity == 0 || s.slots.holds_run(&d.name_any()).await? {
            return Ok(None);
        }
        match s
            .slots
            .take_run(capacity, &format!("wake-{}", d.name_any()), &d.name_any())
            .await?
        {
            crate::cluster::slots::Take::Taken(slot) => Ok(Some(slot)),
            _ => {
                s.metrics.capacity_refusals.inc();
                Err(ApiError::too_many(
                    crate::cluster::start::StartError::AtCapacity { capacity }.to_string(),
                ))
            }
        }
    }

    /// Back to the template's snapshot, keeping name, share links, lease and URL.
    pub async fn reset(s: &AppState, user: &User, name: &str) -> Result<Demo, ApiError> {
        let d = find(s, user, name).await?;
        refuse_if_gone(&d, "reset")?;
        // A reset already asked for (a double click whose first half the controller has
        // begun: Resetting) is joined below, on the stored Demo, not refused here.
        if !d.reset_pending() && !d.phase().can_reset() {
            return Err(ApiError::conflict(format!(
                "demo {name:?} is {}; it can be reset once it is Ready",
                d.phase().as_str()
            )));
        }
        let slot = if d.spec.desired_state == DesiredState::Sleeping {
            take_run_slot(s, &d).await?
        } else {
            None
        };
        // Judged again on the stored Demo: a second click (or a cache that lags behind
        // the first) joins the reset already asked for instead of starting another.
        let reset = update_spec(s, name, |fresh| {
            if fresh.reset_pending() {
                return Ok(json!({}));
            }
            if !fresh.phase().can_reset() {
                return Err(ApiError::conflict(format!(
                    "demo {name:?} is {}; it can be reset once it is Ready",
                    fresh.phase().as_str()
                )));
            }
            Ok(json!({"resetGeneration": fresh.spec.reset_generation + 1, "desiredState": "Running"}))
        })
        .await;
        match (&reset, slot) {
            (Ok(r), Some(slot)) => s.slots.bind(&slot, r).await?,
            (Err(_), Some(slot)) => {
                let _ = s.slots.free(&slot).await;
            }
            _ => {}
        }
        tracing::info!(demo = %name, by = %user.name, "demo reset requested");
        reset
    }

    pub async fn extend(s: &AppState, user: &User, name: &str, by: &str) -> Result<Demo, ApiError> {
        let by = duration::parse(by).map_err(|e| ApiError::bad_request(format!("by: {e}")))?;
        let d = find(s, user, name).await?;
        refuse_if_gone(&d, "extend")?;
        let max = s
            .catalogue
            .get(&d.spec.template)
            .map(|t| t.lifecycle.max_extension)
            .unwrap_or_default();
        // The total is computed from the stored demo, not the cache: two extensions
        // at once must add up, never overwrite one another.
        update_spec(s, name, |fresh| {
            refuse_if_gone(fresh, "extend")?;
            let total = lifecycle::extend(lease::extension(fresh), by, max, user.is_admin())
                .map_err(ApiError::unprocessable)?;
            Ok(json!({"lifecycle": {"extension": duration::format(total)}}))
        })
        .await
    }

    /// Saves a running demo as a new template (`vcluster snapshot create`); the
    /// template joins the catalogue once the snapshot is written.
    pub async fn save(
        s: &AppState,
        user: &User,
        name: &str,
        req: &SaveRequest,
    ) -> Result<DemoTemplate, ApiError> {
        let d = find(s, user, name).await?;
        refuse_if_gone(&d, "save")?;
        let (dt, marked) = saving::request(
            &s.client,
            &s.slots.namespace,
            &s.instance,
            &s.catalogue,
            &d,
            req,
            &user.name,
        )
        .await
        .map_err(|e| match e {
            SaveError::NotNow(m) => ApiError::conflict(m),
            SaveError::NameTaken(_) => ApiError::conflict(e.to_string()),
            SaveError::Invalid(_) => ApiError::bad_request(e.to_string()),
            SaveError::Kube(k) => k.into(),
        })?;
        // The demo page a browser is sent to next reads the cache: it must show the save.
        shown(s, marked).await;
        tracing::info!(demo = %name, template = %dt.name_any(), by = %user.name, "save as template requested");
        Ok(dt)
    }

    pub async fn delete(s: &AppState, user: &User, name: &str) -> Result<Demo, ApiError> {
        let d = find(s, user, name).await?;
        if let Some(deleting) = request_delete(&s.client, name).await? {
            shown(s, deleting).await;
        }
        // A deleted demo counts no more: its slots are free for the next start now.
        let _ = s.slots.free_for(name, None).await;
        tracing::info!(demo = %name, by = %user.name, "demo deletion requested");
        Ok(d)
    }
}

pub async fn reset(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(&ops::reset(&s, &user, &name).await?, &s))
}

pub async fn sleep(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(&ops::sleep(&s, &user, &name).await?, &s))
}

pub async fn wake(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(&ops::wake(&s, &user, &name).await?, &s))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extend {
    by: String,
}

pub async fn extend(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
    body: Result<Json<Extend>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(from_json_rejection)?;
    let d = ops::extend(&s, &user, &name, &req.by).await?;
    Ok((StatusCode::OK, Json(DemoView::of(&d, &s))).into_response())
}

pub async fn activity(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let d = find(&s, &user, &name).await?;
    refuse_if_gone(&d, "record activity on")?;
    s.activity.record(&name);
    Ok(accepted(&d, &s))
}

pub async fn delete(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let d = ops::delete(&s, &user, &name).await?;
    let mut view = DemoView::of(&d, &s);
    view.phase = Phase::Deleting;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

/// `POST /api/v1/demos/{name}/snapshot`: 202 while the snapshot is written.
pub async fn save(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
    body: Result<Json<SaveRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(from_json_rejection)?;
    let dt = ops::save(&s, &user, &name, &req).await?;
    let t = &dt.spec.template;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "template": dt.name_any(),
            "displayName": t.get("displayName"),
            "snapshot": t.get("snapshot"),
            "phase": "Saving",
            "provenance": dt.spec.provenance,
        })),
    )
        .into_response())
}

pub async fn templates(State(s): State<AppState>, Caller(_): Caller) -> Json<serde_json::Value> {
    let list: Vec<_> = s
        .catalogue
        .listed()
        .into_iter()
        .map(|l| {
            let t = &l.template;
            json!({
                "name": t.name, "displayName": t.display_name, "description": t.description,
                "vclusterVersion": t.vcluster.version,
                "snapshot": t.snapshot,
                "entrypoint": {"namespace": t.entrypoint.namespace, "service": t.entrypoint.service, "port": t.entrypoint.port, "path": t.entrypoint.path},
                "lifecycle": t.lifecycle,
                "origin": if l.provenance.is_some() { "saved" } else { "shipped" },
                // Measured: the median of recent cold starts (0: a warm-pool member is
                // ready) and wakes; null until there is something to measure.
                "startEstimateSeconds": match super::pools::estimate(&s, t) {
                    super::pools::Estimate::Instant => Some(0),
                    super::pools::Estimate::About(d) => Some(d.num_seconds()),
                    super::pools::Estimate::Unknown => None,
                },
                "wakeEstimateSeconds": super::pools::wake_estimate(&s, t).map(|d| d.num_seconds()),
                "provenance": l.provenance,
            })
        })
        .collect();
    Json(json!({"templates": list}))
}
