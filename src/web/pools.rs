//! What the warm pools hold, and how long a start takes: for the catalogue (sales
//! staff see "starts instantly" or "about 40 s"), the admins' pool table and
//! `GET /api/v1/pools`.

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::cluster::crd::{Demo, REVISION_LABEL};
use crate::cluster::pool;
use crate::domain::lifecycle::Phase;
use crate::domain::template::{PoolState, Template};
use crate::domain::waits::{Wait, median};
use axum::Json;
use axum::extract::State;
use chrono::Duration;
use kube::ResourceExt;
use serde::Serialize;
use serde_json::json;

/// One template's pool, as admins see it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolView {
    pub template: String,
    pub display_name: String,
    pub size: u32,
    pub state: String,
    /// Members ready to be claimed now.
    pub ready: usize,
    /// Members on their way (provisioning, or waking into a sleeping pool).
    pub starting: usize,
    /// Members from an older revision of the template, being replaced.
    pub replacing: usize,
}

pub fn views(s: &AppState) -> Vec<PoolView> {
    s.catalogue
        .listed()
        .iter()
        .filter_map(|l| {
            let t = &l.template;
            let p = t.warm_pool.as_ref()?;
            let members = s.demos.pool_members(&t.name);
            let ready = members.iter().filter(|d| pool::claimable(d, t)).count();
            let replacing = members
                .iter()
                .filter(|d| d.labels().get(REVISION_LABEL) != Some(&t.revision()))
                .count();
            Some(PoolView {
                template: t.name.clone(),
                display_name: t.display_name.clone(),
                size: p.size,
                state: match p.state {
                    PoolState::Running => "Running",
                    PoolState::Sleeping => "Sleeping",
                }
                .into(),
                ready,
                starting: members.len().saturating_sub(ready + replacing),
                replacing,
            })
        })
        .collect()
}

/// `GET /api/v1/pools` (admins).
pub async fn api(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    if !user.is_admin() {
        return Err(ApiError::forbidden("only admins may see the warm pools"));
    }
    Ok(Json(json!({"pools": views(&s)})))
}

/// How long a start of a template takes now.
#[derive(Debug, Clone, PartialEq)]
pub enum Estimate {
    /// A warm-pool member is ready: the start is a claim.
    Instant,
    /// The median of the template's recent cold starts.
    About(Duration),
    /// Nothing measured yet.
    Unknown,
}

impl Estimate {
    pub fn describe(&self) -> String {
        match self {
            Estimate::Instant => "starts instantly (from the warm pool)".into(),
            Estimate::About(d) => format!("starts in about {}", crate::domain::duration::human(*d)),
            Estimate::Unknown => "starts in a few minutes".into(),
        }
    }
}

/// How many recent cold starts an estimate is made from.
const RECENT: usize = 20;

/// From creation to Ready of a demo's cold start, if it is one to learn from.
fn start_time(d: &Demo, t: &Template) -> Option<Duration> {
    if d.spec.template != t.name || d.spec.claimed_at.is_some() {
        return None;
    }
    let created = crate::cluster::lease::created_at(d);
    let st = d.status.as_ref()?;
    // The first Ready of a demo that has not slept since (readyAt moves on wakes).
    if st.sleeping_since.is_some() || d.phase() == Phase::Failed {
        return None;
    }
    let ready = st.ready_at?;
    (st.reset_generation == 0).then_some(ready - created)
}

/// How long the demo's last wake took, if it is one of the template's.
fn wake_time(d: &Demo, t: &Template) -> Option<Duration> {
    if d.spec.template != t.name {
        return None;
    }
    let secs = d.status.as_ref()?.last_wake_seconds?;
    Some(Duration::milliseconds((secs * 1000.0) as i64))
}

/// The template's most recent measured times (`time_of` each demo) in the cache:
/// read newest first, a page at a time, until there are enough.
fn recent_times(
    s: &AppState,
    t: &Template,
    time_of: fn(&Demo, &Template) -> Option<Duration>,
) -> Vec<Duration> {
    let mut times = Vec::new();
    let mut after = None;
    loop {
        let page = s.demos.page(None, after.as_ref(), 200);
        times.extend(page.demos.iter().filter_map(|d| time_of(d, t)));
        match page.next {
            Some(k) if times.len() < RECENT => after = Some(k),
            _ => break,
        }
    }
    times.truncate(RECENT);
    times
}

pub fn estimate(s: &AppState, t: &Template) -> Estimate {
    if t.warm_pool.is_some()
        && s.demos
            .pool_members(&t.name)
            .iter()
            .any(|d| pool::claimable(d, t))
    {
        return Estimate::Instant;
    }
    match start_estimate(s, t) {
        Some(d) => Estimate::About(d),
        None => Estimate::Unknown,
    }
}

/// The median of the template's recent wakes (None: none measured yet).
pub fn wake_estimate(s: &AppState, t: &Template) -> Option<Duration> {
    s.estimates
        .get(t, "wake", || median(recent_times(s, t, wake_time)))
}

/// The median of the template's recent cold starts (None: none measured yet).
fn start_estimate(s: &AppState, t: &Template) -> Option<Duration> {
    s.estimates
        .get(t, "start", || median(recent_times(s, t, start_time)))
}

/// Measured estimates, each kept for a few seconds: finding a template's recent times reads
/// the cache page by page, and a list of demos, the catalogue or a busy landing page
/// asks for the same few estimates over and over.
#[derive(Default)]
pub struct Estimates(std::sync::Mutex<std::collections::HashMap<EstimateKey, Measured>>);

/// (template, "start" or "wake").
type EstimateKey = (String, &'static str);
/// When it was measured, and the estimate.
type Measured = (std::time::Instant, Option<Duration>);

impl Estimates {
    const FRESH: std::time::Duration = std::time::Duration::from_secs(5);

    fn get(
        &self,
        t: &Template,
        what: &'static str,
        measure: impl FnOnce() -> Option<Duration>,
    ) -> Option<Duration> {
        let key = (t.name.clone(), what);
        let lock = || self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, v)) = lock().get(&key)
            && at.elapsed() < Self::FRESH
        {
            return *v;
        }
        let v = measure();
        // "Nothing measured yet" is not kept: the first measurement shows at once.
        if v.is_some() {
            lock().insert(key, (std::time::Instant::now(), v));
        }
        v
    }
}

/// The wait someone looking at this demo is in, with what it usually takes: a start
/// (from creation), a wake (from when it began) or a reset. None when nothing is
/// being waited for.
pub fn wait_of(s: &AppState, d: &Demo) -> Option<Wait> {
    let t = s.catalogue.get(&d.spec.template)?;
    let st = d.status.clone().unwrap_or_default();
    let now = chrono::Utc::now();
    let since = st.phase_since.unwrap_or(now);
    let (expected, elapsed, gives_up_after) = match d.phase() {
        Phase::Pending | Phase::Provisioning => (
            start_estimate(s, &t),
            now - crate::cluster::lease::created_at(d),
            t.lifecycle.provision_timeout(),
        ),
        Phase::Waking => (
            wake_estimate(s, &t),
            now - since,
            t.lifecycle.wake_timeout(),
        ),
        // Asked to wake a moment ago: the controller has not begun yet.
        Phase::Sleeping if d.spec.desired_state == crate::cluster::crd::DesiredState::Running => (
            wake_estimate(s, &t),
            Duration::zero(),
            t.lifecycle.wake_timeout(),
        ),
        Phase::Resetting => (
            start_estimate(s, &t),
            now - since,
            t.lifecycle.provision_timeout(),
        ),
        _ => return None,
    };
    Some(Wait {
        expected,
        elapsed: elapsed.max(Duration::zero()),
        gives_up_after,
    })
}
