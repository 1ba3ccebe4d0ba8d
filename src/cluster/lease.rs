//! Reading a Demo's lease and lifetimes into the domain's terms.

use super::crd::Demo;
use super::time;
use crate::domain::duration;
use crate::domain::lifecycle::{Facts, Phase, Policy};
use crate::domain::template::Template;
use chrono::{DateTime, Duration, Utc};

fn dur(text: &str, fallback: Duration) -> Duration {
    duration::parse(text).unwrap_or(fallback)
}

pub fn created_at(d: &Demo) -> DateTime<Utc> {
    time::created_at(&d.metadata).unwrap_or_else(Utc::now)
}

/// Where the lease starts: at the claim for a demo taken from a warm pool, else at
/// its creation.
pub fn lease_start(d: &Demo) -> DateTime<Utc> {
    d.spec.claimed_at.unwrap_or_else(|| created_at(d))
}

/// An unclaimed warm-pool member: idle by design, so no idle rule or expiry applies
/// (the pool replaces members past maxAge, one at a time).
pub fn pooled(d: &Demo) -> bool {
    d.spec.pool.is_some()
}

/// Far enough to never come.
fn never() -> Duration {
    Duration::days(365 * 100)
}

pub fn extension(d: &Demo) -> Duration {
    d.spec
        .lifecycle
        .extension
        .as_deref()
        .map_or(Duration::zero(), |e| dur(e, Duration::zero()))
}

/// maxLifetime from the lease's start, plus any extension granted.
pub fn expires_at(d: &Demo) -> DateTime<Utc> {
    if pooled(d) {
        return created_at(d) + never();
    }
    lease_start(d) + dur(&d.spec.lifecycle.max_lifetime, Duration::days(1)) + extension(d)
}

/// The demo's policy; timeouts come from its template (defaults if it was removed).
pub fn policy(d: &Demo, template: Option<&Template>) -> Policy {
    let lc = template.map(|t| &t.lifecycle);
    let (sleep, delete) = if pooled(d) {
        (never(), never())
    } else {
        (
            dur(&d.spec.lifecycle.sleep_after_idle, Duration::minutes(30)),
            dur(&d.spec.lifecycle.delete_after_idle, Duration::days(1)),
        )
    };
    Policy {
        sleep_after_idle: sleep,
        delete_after_idle: delete,
        provision_timeout: lc.map_or(Duration::minutes(10), |l| l.provision_timeout()),
        wake_timeout: lc.map_or(Duration::minutes(5), |l| l.wake_timeout()),
    }
}

pub fn facts(d: &Demo) -> Facts {
    let created = created_at(d);
    let start = lease_start(d);
    let st = d.status.clone().unwrap_or_default();
    Facts {
        phase: st.phase.unwrap_or(Phase::Pending),
        phase_since: st.phase_since.unwrap_or(created),
        // Nothing before the claim counts as the new owner's activity.
        last_activity: st.last_activity.unwrap_or(start).max(start),
        ready_at: st.ready_at,
        expires_at: expires_at(d),
        deleting: d.metadata.deletion_timestamp.is_some(),
    }
}
