//! A demo's lifecycle as a pure function: `decide(facts, policy, now) -> Decision`.
//! The controller acts on it and requeues at `Decision::next`; the sweep runs the
//! same function over every demo as the backstop.

use super::template::{Lifecycle, Lifetimes};
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, schemars::JsonSchema,
)]
pub enum Phase {
    #[default]
    Pending,
    Provisioning,
    Ready,
    Sleeping,
    Waking,
    /// Going back to its template's snapshot (keeping name, links and lease).
    Resetting,
    Deleting,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 8] = [
        Phase::Pending,
        Phase::Provisioning,
        Phase::Ready,
        Phase::Sleeping,
        Phase::Waking,
        Phase::Resetting,
        Phase::Deleting,
        Phase::Failed,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Provisioning => "Provisioning",
            Phase::Ready => "Ready",
            Phase::Sleeping => "Sleeping",
            Phase::Waking => "Waking",
            Phase::Resetting => "Resetting",
            Phase::Deleting => "Deleting",
            Phase::Failed => "Failed",
        }
    }
    /// Counts against a user's limit of demos.
    pub fn is_active(self) -> bool {
        !matches!(self, Phase::Deleting | Phase::Failed)
    }
    /// A reset may begin from here: one rule for the UI's button, the reset request and
    /// the controller.
    pub fn can_reset(self) -> bool {
        matches!(self, Phase::Ready | Phase::Sleeping | Phase::Waking)
    }
}

/// The timing rules that apply to one demo (template defaults with its overrides).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub sleep_after_idle: Duration,
    pub delete_after_idle: Duration,
    pub provision_timeout: Duration,
    pub wake_timeout: Duration,
}

/// What the lifecycle needs to know about a demo.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub phase: Phase,
    /// When the demo entered its current phase.
    pub phase_since: DateTime<Utc>,
    pub last_activity: DateTime<Utc>,
    /// When it last became Ready (after provisioning or a wake).
    pub ready_at: Option<DateTime<Utc>>,
    pub expires_at: DateTime<Utc>,
    /// Deletion has been requested already.
    pub deleting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteReason {
    Idle,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    Sleep,
    Delete(DeleteReason),
    Fail(String),
}

impl Action {
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Nothing => "none",
            Action::Sleep => "sleep",
            Action::Delete(DeleteReason::Idle) => "delete-idle",
            Action::Delete(DeleteReason::Expired) => "delete-expired",
            Action::Fail(_) => "fail",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    /// When to look again if nothing else happens: the earliest upcoming deadline.
    pub next: Option<DateTime<Utc>>,
}

pub fn decide(f: &Facts, p: &Policy, now: DateTime<Utc>) -> Decision {
    if f.deleting || f.phase == Phase::Deleting {
        return Decision {
            action: Action::Nothing,
            next: None,
        };
    }
    let delete_idle_at = f.last_activity + p.delete_after_idle;
    let mut deadlines = vec![f.expires_at, delete_idle_at];
    if now >= f.expires_at {
        return Decision {
            action: Action::Delete(DeleteReason::Expired),
            next: None,
        };
    }
    // Idle counts from the last activity, asleep or not.
    if now >= delete_idle_at {
        return Decision {
            action: Action::Delete(DeleteReason::Idle),
            next: None,
        };
    }
    match f.phase {
        Phase::Pending | Phase::Provisioning => {
            let limit = f.phase_since + p.provision_timeout;
            if now >= limit {
                return Decision {
                    action: Action::Fail(format!(
                        "provisioning did not finish within {}",
                        super::duration::format(p.provision_timeout)
                    )),
                    next: None,
                };
            }
            deadlines.push(limit);
        }
        Phase::Waking => {
            let limit = f.phase_since + p.wake_timeout;
            if now >= limit {
                return Decision {
                    action: Action::Fail(format!(
                        "waking did not finish within {}",
                        super::duration::format(p.wake_timeout)
                    )),
                    next: None,
                };
            }
            deadlines.push(limit);
        }
        // A reset restores the snapshot and boots again: a provisioning's time.
        Phase::Resetting => {
            let limit = f.phase_since + p.provision_timeout;
            if now >= limit {
                return Decision {
                    action: Action::Fail(format!(
                        "resetting did not finish within {}",
                        super::duration::format(p.provision_timeout)
                    )),
                    next: None,
                };
            }
            deadlines.push(limit);
        }
        Phase::Ready => {
            // A wake is not activity, but a freshly woken demo gets a full idle period
            // before it is put back to sleep.
            let idle_from = f
                .ready_at
                .map_or(f.last_activity, |r| r.max(f.last_activity));
            let sleep_at = idle_from + p.sleep_after_idle;
            if now >= sleep_at {
                return Decision {
                    action: Action::Sleep,
                    next: None,
                };
            }
            deadlines.push(sleep_at);
        }
        Phase::Sleeping | Phase::Failed | Phase::Deleting => {}
    }
    Decision {
        action: Action::Nothing,
        next: deadlines.into_iter().min(),
    }
}

/// What will happen to a demo next if nobody touches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum NoticeKind {
    Sleep,
    DeleteIdle,
    Expire,
}

impl NoticeKind {
    pub fn describe(self) -> &'static str {
        match self {
            NoticeKind::Sleep => "put to sleep for being idle",
            NoticeKind::DeleteIdle => "deleted for being idle",
            NoticeKind::Expire => "deleted at the end of its lifetime",
        }
    }
}

/// The earliest sleep or deletion ahead, for expiry notices.
pub fn upcoming(f: &Facts, p: &Policy) -> Option<(NoticeKind, DateTime<Utc>)> {
    if f.deleting
        || matches!(
            f.phase,
            Phase::Deleting | Phase::Pending | Phase::Provisioning
        )
    {
        return None;
    }
    let mut ahead = vec![
        (NoticeKind::Expire, f.expires_at),
        (
            NoticeKind::DeleteIdle,
            f.last_activity + p.delete_after_idle,
        ),
    ];
    if f.phase == Phase::Ready {
        let idle_from = f
            .ready_at
            .map_or(f.last_activity, |r| r.max(f.last_activity));
        ahead.push((NoticeKind::Sleep, idle_from + p.sleep_after_idle));
    }
    ahead.into_iter().min_by_key(|(_, at)| *at)
}

/// A notice is due when the next event is within `lead` and this exact event (kind
/// and time) has not been announced yet.
pub fn notice_due(
    next: Option<(NoticeKind, DateTime<Utc>)>,
    announced: Option<(NoticeKind, DateTime<Utc>)>,
    lead: Duration,
    now: DateTime<Utc>,
) -> bool {
    match next {
        Some((kind, at)) => at - now <= lead && at > now && announced != Some((kind, at)),
        None => false,
    }
}

/// A request's lifetime overrides, checked against the template's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Overrides {
    pub sleep_after_idle: Option<Duration>,
    pub delete_after_idle: Option<Duration>,
    pub max_lifetime: Option<Duration>,
}

/// The lifetimes a demo gets. Overrides beyond the template's limits are refused
/// unless `admin` (an error message names the field).
pub fn resolve(lc: &Lifecycle, o: &Overrides, admin: bool) -> Result<Lifetimes, String> {
    let pick = |name: &str, want: Option<Duration>, default: Duration, limit: Duration| {
        let v = want.unwrap_or(default);
        if v <= Duration::zero() {
            return Err(format!("{name} must be longer than 0s"));
        }
        if v > limit && !admin {
            return Err(format!(
                "{name} {} is beyond the template's limit of {} (admins only)",
                super::duration::format(v),
                super::duration::format(limit)
            ));
        }
        Ok(v)
    };
    let (d, l) = (&lc.defaults, &lc.limits);
    let out = Lifetimes {
        sleep_after_idle: pick(
            "sleepAfterIdle",
            o.sleep_after_idle,
            d.sleep_after_idle,
            l.sleep_after_idle,
        )?,
        delete_after_idle: pick(
            "deleteAfterIdle",
            o.delete_after_idle,
            d.delete_after_idle,
            l.delete_after_idle,
        )?,
        max_lifetime: pick(
            "maxLifetime",
            o.max_lifetime,
            d.max_lifetime,
            l.max_lifetime,
        )?,
    };
    Ok(out)
}

/// Extending moves the expiry; the total extension is bounded by the template
/// (admins may go further). Returns the new total extension.
pub fn extend(
    current: Duration,
    by: Duration,
    max_extension: Duration,
    admin: bool,
) -> Result<Duration, String> {
    if by <= Duration::zero() {
        return Err("by must be longer than 0s".into());
    }
    let total = current + by;
    if total > max_extension && !admin {
        return Err(format!(
            "extending by {} would extend this demo by {} in total, beyond the template's limit of {}",
            super::duration::format(by),
            super::duration::format(total),
            super::duration::format(max_extension)
        ));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }
    fn m(n: i64) -> Duration {
        Duration::minutes(n)
    }
    fn policy() -> Policy {
        Policy {
            sleep_after_idle: m(30),
            delete_after_idle: m(240),
            provision_timeout: m(10),
            wake_timeout: m(5),
        }
    }
    fn facts(phase: Phase) -> Facts {
        Facts {
            phase,
            phase_since: t0(),
            last_activity: t0(),
            ready_at: Some(t0()),
            expires_at: t0() + m(1000),
            deleting: false,
        }
    }

    #[test]
    fn a_ready_demo_sleeps_after_its_idle_time_and_not_before() {
        let f = facts(Phase::Ready);
        let d = decide(&f, &policy(), t0() + m(29));
        assert_eq!(d.action, Action::Nothing);
        assert_eq!(
            d.next,
            Some(t0() + m(30)),
            "requeues exactly at the sleep deadline"
        );
        assert_eq!(decide(&f, &policy(), t0() + m(30)).action, Action::Sleep);
    }

    #[test]
    fn activity_postpones_sleep() {
        let mut f = facts(Phase::Ready);
        f.last_activity = t0() + m(20);
        assert_eq!(decide(&f, &policy(), t0() + m(40)).action, Action::Nothing);
        assert_eq!(decide(&f, &policy(), t0() + m(50)).action, Action::Sleep);
    }

    #[test]
    fn a_wake_is_not_activity_but_a_woken_demo_gets_a_full_idle_period() {
        let mut f = facts(Phase::Ready);
        f.ready_at = Some(t0() + m(100)); // woke at +100, last activity at 0
        assert_eq!(decide(&f, &policy(), t0() + m(110)).action, Action::Nothing);
        assert_eq!(decide(&f, &policy(), t0() + m(130)).action, Action::Sleep);
        // ...and the wake did not postpone deletion for idleness.
        assert_eq!(
            decide(&f, &policy(), t0() + m(240)).action,
            Action::Delete(DeleteReason::Idle)
        );
    }

    #[test]
    fn idle_deletion_counts_from_last_activity_asleep_or_not() {
        for phase in [Phase::Ready, Phase::Sleeping, Phase::Failed, Phase::Waking] {
            let f = facts(phase);
            let d = decide(&f, &policy(), t0() + m(240));
            assert_eq!(d.action, Action::Delete(DeleteReason::Idle), "{phase:?}");
        }
        let f = facts(Phase::Sleeping);
        assert_eq!(
            decide(&f, &policy(), t0() + m(239)).next,
            Some(t0() + m(240))
        );
    }

    #[test]
    fn expiry_deletes_even_a_busy_demo() {
        let mut f = facts(Phase::Ready);
        f.expires_at = t0() + m(60);
        f.last_activity = t0() + m(59);
        assert_eq!(
            decide(&f, &policy(), t0() + m(60)).action,
            Action::Delete(DeleteReason::Expired)
        );
        assert_eq!(decide(&f, &policy(), t0() + m(59)).next, Some(t0() + m(60)));
    }

    #[test]
    fn a_stuck_provisioning_fails_at_its_timeout() {
        let f = facts(Phase::Provisioning);
        let d = decide(&f, &policy(), t0() + m(9));
        assert_eq!(d.action, Action::Nothing);
        assert_eq!(d.next, Some(t0() + m(10)));
        assert!(
            matches!(decide(&f, &policy(), t0() + m(10)).action, Action::Fail(msg) if msg.contains("10m"))
        );
        assert!(matches!(
            decide(&facts(Phase::Pending), &policy(), t0() + m(11)).action,
            Action::Fail(_)
        ));
    }

    #[test]
    fn a_stuck_wake_fails_at_its_timeout() {
        let f = facts(Phase::Waking);
        assert!(
            matches!(decide(&f, &policy(), t0() + m(5)).action, Action::Fail(msg) if msg.contains("waking"))
        );
    }

    #[test]
    fn deleting_demos_are_left_to_the_deletion_path() {
        let mut f = facts(Phase::Ready);
        f.deleting = true;
        assert_eq!(
            decide(&f, &policy(), t0() + m(10_000)).action,
            Action::Nothing
        );
    }

    #[test]
    fn a_sleeping_demo_does_not_sleep_again() {
        let f = facts(Phase::Sleeping);
        assert_eq!(decide(&f, &policy(), t0() + m(100)).action, Action::Nothing);
    }

    #[test]
    fn the_next_event_and_when_to_announce_it() {
        let f = facts(Phase::Ready);
        assert_eq!(
            upcoming(&f, &policy()),
            Some((NoticeKind::Sleep, t0() + m(30)))
        );
        let f = facts(Phase::Sleeping);
        assert_eq!(
            upcoming(&f, &policy()),
            Some((NoticeKind::DeleteIdle, t0() + m(240)))
        );
        let mut f = facts(Phase::Sleeping);
        f.expires_at = t0() + m(100);
        assert_eq!(
            upcoming(&f, &policy()),
            Some((NoticeKind::Expire, t0() + m(100)))
        );
        assert_eq!(upcoming(&facts(Phase::Provisioning), &policy()), None);
        let next = Some((NoticeKind::Sleep, t0() + m(30)));
        assert!(
            !notice_due(next, None, m(10), t0() + m(19)),
            "not yet within the lead time"
        );
        assert!(notice_due(next, None, m(10), t0() + m(20)));
        assert!(
            !notice_due(next, next, m(10), t0() + m(25)),
            "announced once"
        );
        assert!(
            notice_due(
                Some((NoticeKind::Sleep, t0() + m(40))),
                next,
                m(10),
                t0() + m(35)
            ),
            "a new deadline gets its own notice"
        );
        assert!(
            !notice_due(next, None, m(10), t0() + m(31)),
            "past events are not announced"
        );
    }

    fn lifecycle() -> Lifecycle {
        let l = |s, d, x| Lifetimes {
            sleep_after_idle: m(s),
            delete_after_idle: m(d),
            max_lifetime: m(x),
        };
        Lifecycle {
            defaults: l(30, 240, 1000),
            limits: l(60, 480, 2000),
            max_extension: m(600),
            provision_timeout: None,
            wake_timeout: None,
        }
    }

    #[test]
    fn overrides_within_limits_are_allowed_beyond_them_admin_only() {
        let lc = lifecycle();
        let o = Overrides {
            sleep_after_idle: Some(m(45)),
            ..Default::default()
        };
        assert_eq!(resolve(&lc, &o, false).unwrap().sleep_after_idle, m(45));
        let o = Overrides {
            sleep_after_idle: Some(m(90)),
            ..Default::default()
        };
        let e = resolve(&lc, &o, false).unwrap_err();
        assert!(
            e.contains("sleepAfterIdle") && e.contains("admins only"),
            "{e}"
        );
        assert_eq!(resolve(&lc, &o, true).unwrap().sleep_after_idle, m(90));
        assert_eq!(
            resolve(&lc, &Overrides::default(), false).unwrap(),
            lc.defaults
        );
    }

    #[test]
    fn extension_is_bounded() {
        assert_eq!(extend(m(0), m(60), m(600), false).unwrap(), m(60));
        assert_eq!(extend(m(540), m(60), m(600), false).unwrap(), m(600));
        assert!(
            extend(m(600), m(1), m(600), false)
                .unwrap_err()
                .contains("beyond")
        );
        assert_eq!(extend(m(600), m(60), m(600), true).unwrap(), m(660));
        assert!(extend(m(0), m(0), m(600), false).is_err());
    }
}
