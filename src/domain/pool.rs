//! Warm pools: what the pool of a template should do next, given its members. A pure
//! function, so that the rules are tested apart from Kubernetes:
//!
//! - members that failed are removed (they will never be ready);
//! - a pool below its size is refilled;
//! - a member that is stale (made from an older revision of the template, or older
//!   than `maxAge`) is replaced one at a time, without ever lowering the number of
//!   ready members: a replacement is made first, and a stale ready member goes only
//!   once more than `size` members are ready; a stale member that is not ready yet
//!   goes at once;
//! - members beyond the size (after the size was lowered) go, those not ready first.

use chrono::{DateTime, Duration, Utc};

/// One unclaimed member, as the pool sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub name: String,
    pub created: DateTime<Utc>,
    /// The template revision it was made from.
    pub revision: String,
    /// Ready to be claimed (Running, or Sleeping in a sleeping pool).
    pub ready: bool,
    pub failed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Make this many new members.
    Create(usize),
    /// Remove this member.
    Delete(String),
}

/// What a pool of `size` should do now.
pub fn plan(
    size: usize,
    max_age: Option<Duration>,
    revision: &str,
    members: &[Member],
    now: DateTime<Utc>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let stale = |m: &Member| m.revision != revision || max_age.is_some_and(|a| now - m.created > a);
    let mut live: Vec<&Member> = Vec::new();
    for m in members {
        if m.failed || (stale(m) && !m.ready) {
            steps.push(Step::Delete(m.name.clone()));
        } else {
            live.push(m);
        }
    }
    let ready = live.iter().filter(|m| m.ready).count();
    let mut stale_ready: Vec<&&Member> = live.iter().filter(|m| stale(m)).collect();
    stale_ready.sort_by_key(|m| m.created);
    if live.len() < size {
        steps.push(Step::Create(size - live.len()));
    } else if !stale_ready.is_empty() {
        if ready > size {
            // A replacement is ready: the oldest stale member can go.
            steps.push(Step::Delete(stale_ready[0].name.clone()));
        } else if live.len() == size {
            steps.push(Step::Create(1));
        }
    } else if live.len() > size {
        let mut extra: Vec<&&Member> = live.iter().collect();
        // Not ready first, then the newest.
        extra.sort_by_key(|m| (m.ready, std::cmp::Reverse(m.created)));
        for m in extra.into_iter().take(live.len() - size) {
            steps.push(Step::Delete(m.name.clone()));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn m(name: &str, age_min: i64, revision: &str, ready: bool) -> Member {
        Member {
            name: name.into(),
            created: t0() - Duration::minutes(age_min),
            revision: revision.into(),
            ready,
            failed: false,
        }
    }

    #[test]
    fn an_empty_pool_fills_and_a_full_one_rests() {
        assert_eq!(plan(3, None, "r1", &[], t0()), vec![Step::Create(3)]);
        let full = [
            m("a", 5, "r1", true),
            m("b", 4, "r1", false),
            m("c", 3, "r1", true),
        ];
        assert_eq!(plan(3, None, "r1", &full, t0()), vec![]);
        assert_eq!(
            plan(3, None, "r1", &full[..1], t0()),
            vec![Step::Create(2)],
            "refilled after claims"
        );
    }

    #[test]
    fn failed_members_are_replaced() {
        let mut f = m("a", 5, "r1", false);
        f.failed = true;
        assert_eq!(
            plan(1, None, "r1", &[f], t0()),
            vec![Step::Delete("a".into()), Step::Create(1)]
        );
    }

    #[test]
    fn stale_members_rotate_one_at_a_time_without_emptying_the_pool() {
        // All three from an older revision and ready: one replacement first.
        let old = [
            m("a", 30, "r0", true),
            m("b", 20, "r0", true),
            m("c", 10, "r0", true),
        ];
        assert_eq!(plan(3, None, "r1", &old, t0()), vec![Step::Create(1)]);
        // The replacement is provisioning: wait.
        let mut with_new = old.to_vec();
        with_new.push(m("d", 0, "r1", false));
        assert_eq!(plan(3, None, "r1", &with_new, t0()), vec![]);
        // It is ready: the oldest stale member goes; three stay ready.
        with_new[3].ready = true;
        assert_eq!(
            plan(3, None, "r1", &with_new, t0()),
            vec![Step::Delete("a".into())]
        );
        // maxAge makes a member stale too.
        let aged = [m("x", 120, "r1", true)];
        assert_eq!(
            plan(1, Some(Duration::minutes(60)), "r1", &aged, t0()),
            vec![Step::Create(1)]
        );
        // A stale member that is not ready yet is simply replaced.
        let unready = [m("y", 1, "r0", false)];
        assert_eq!(
            plan(1, None, "r1", &unready, t0()),
            vec![Step::Delete("y".into()), Step::Create(1)]
        );
    }

    #[test]
    fn a_smaller_pool_sheds_unready_and_newest_members_first() {
        let members = [
            m("a", 30, "r1", true),
            m("b", 20, "r1", true),
            m("c", 10, "r1", false),
        ];
        assert_eq!(
            plan(2, None, "r1", &members, t0()),
            vec![Step::Delete("c".into())]
        );
        assert_eq!(
            plan(1, None, "r1", &members, t0()),
            vec![Step::Delete("c".into()), Step::Delete("b".into())]
        );
    }
}
