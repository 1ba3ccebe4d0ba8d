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

pub fn extension(d: &Demo) -> Duration {
    d.spec
        .lifecycle
        .extension
        .as_deref()
        .map_or(Duration::zero(), |e| dur(e, Duration::zero()))
}

/// maxLifetime from creation, plus any extension granted.
pub fn expires_at(d: &Demo) -> DateTime<Utc> {
    created_at(d) + dur(&d.spec.lifecycle.max_lifetime, Duration::days(1)) + extension(d)
}

/// The demo's policy; timeouts come from its template (defaults if it was removed).
pub fn policy(d: &Demo, template: Option<&Template>) -> Policy {
    let lc = template.map(|t| &t.lifecycle);
    Policy {
        sleep_after_idle: dur(&d.spec.lifecycle.sleep_after_idle, Duration::minutes(30)),
        delete_after_idle: dur(&d.spec.lifecycle.delete_after_idle, Duration::days(1)),
        provision_timeout: lc.map_or(Duration::minutes(10), |l| l.provision_timeout()),
        wake_timeout: lc.map_or(Duration::minutes(5), |l| l.wake_timeout()),
    }
}

pub fn facts(d: &Demo) -> Facts {
    let created = created_at(d);
    let st = d.status.clone().unwrap_or_default();
    Facts {
        phase: st.phase.unwrap_or(Phase::Pending),
        phase_since: st.phase_since.unwrap_or(created),
        last_activity: st.last_activity.unwrap_or(created),
        ready_at: st.ready_at,
        expires_at: expires_at(d),
        deleting: d.metadata.deletion_timestamp.is_some(),
    }
}
