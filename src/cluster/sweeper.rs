//! The cleanup sweep: the backstop for whatever the event-driven path missed.
//! It runs the lifecycle's `decide` over every Demo, retries stuck deletions, and
//! deletes orphaned demo namespaces, but only those that pass every ownership check.

use super::actions;
use super::crd::*;
use super::lease;
use super::time;
use crate::domain::lifecycle::{Action, decide};
use crate::domain::template::Catalogue;
use crate::metrics::{Metrics, label};
use chrono::{DateTime, Duration, Utc};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use serde::Serialize;
use std::collections::HashSet;

#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// A namespace younger than this is never deleted as an orphan.
    pub orphan_grace: Duration,
    /// A deletion or termination older than this is retried and reported.
    pub stuck_after: Duration,
}

impl Default for SweepOptions {
    fn default() -> Self {
        SweepOptions {
            orphan_grace: Duration::minutes(10),
            stuck_after: Duration::minutes(10),
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlanItem {
    /// `demo` or `namespace`.
    pub kind: String,
    pub name: String,
    /// What the sweep does: sleep, delete-idle, delete-expired, fail, retry-delete,
    /// delete-orphan, or report (changes nothing).
    pub action: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
enum Step {
    Sleep(Box<Demo>),
    DeleteDemo(String),
    Fail(Box<Demo>, String),
    RetryDelete(Box<Demo>),
    DeleteOrphan(String),
    Report,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    steps: Vec<(PlanItem, Step)>,
}

impl Plan {
    pub fn items(&self) -> Vec<PlanItem> {
        self.steps.iter().map(|(i, _)| i.clone()).collect()
    }

    /// The plan as an aligned table, for `showroom sweep --dry-run`.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .steps
            .iter()
            .map(|(i, _)| {
                [
                    i.kind.clone(),
                    i.name.clone(),
                    i.action.clone(),
                    i.reason.clone(),
                ]
            })
            .collect();
        let head = ["KIND", "NAME", "ACTION", "REASON"].map(String::from);
        let mut w = head.clone().map(|h| h.len());
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                w[i] = w[i].max(c.len());
            }
        }
        let line = |r: &[String; 4]| {
            format!(
                "{:<a$}  {:<b$}  {:<c$}  {}\n",
                r[0],
                r[1],
                r[2],
                r[3],
                a = w[0],
                b = w[1],
                c = w[2]
            )
        };
        let mut out = line(&head);
        for r in &rows {
            out.push_str(&line(r));
        }
        if rows.is_empty() {
            out.push_str("(nothing to do)\n");
        }
        out
    }
}

fn item(kind: &str, name: &str, action: &str, reason: impl Into<String>) -> PlanItem {
    PlanItem {
        kind: kind.into(),
        name: name.into(),
        action: action.into(),
        reason: reason.into(),
    }
}

/// Why a namespace may not be deleted as an orphan (None: it is an orphan).
fn orphan_objection(
    instance: &Instance,
    ns: &Namespace,
    demo_uids: &HashSet<String>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Option<String> {
    let name = ns.name_any();
    if !name.starts_with(NAME_PREFIX) {
        return Some(format!("name lacks the {NAME_PREFIX:?} prefix"));
    }
    if ns.labels().get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY_VALUE) {
        return Some(format!("no {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} label"));
    }
    if !instance.owns(ns.labels()) {
        return Some(format!("no {} label", instance.selector()));
    }
    let Some(uid) = ns.annotations().get(DEMO_UID_ANNOTATION) else {
        return Some(format!("no {DEMO_UID_ANNOTATION} annotation"));
    };
    if demo_uids.contains(uid) {
        return Some("its Demo exists".into());
    }
    let age = time::created_at(&ns.metadata).map_or(Duration::zero(), |c| now - c);
    if age < grace {
        return Some(format!(
            "younger than the {} grace period",
            crate::domain::duration::format(grace)
        ));
    }
    None
}

/// Looks at this instance's Demos and every candidate namespace (one LIST each) and
/// plans.
pub async fn plan(
    client: &Client,
    instance: &Instance,
    catalogue: &Catalogue,
    opts: &SweepOptions,
) -> Result<Plan, kube::Error> {
    let now = Utc::now();
    let demos = Api::<Demo>::all(client.clone())
        .list(&ListParams::default().labels(&instance.selector()))
        .await?
        .items;
    let namespaces = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?
        .items;
    let mut plan = Plan::default();
    let demo_uids: HashSet<String> = demos.iter().filter_map(|d| d.uid()).collect();
    for d in demos {
        let name = d.name_any();
        if let Some(deleted) = time::deleted_at(&d.metadata) {
            if now - deleted >= opts.stuck_after {
                let why = format!(
                    "deletion requested {} ago has not finished",
                    crate::domain::duration::format(now - deleted)
                );
                plan.steps.push((
                    item("demo", &name, "retry-delete", why),
                    Step::RetryDelete(Box::new(d)),
                ));
            }
            continue;
        }
        let policy = lease::policy(&d, catalogue.get(&d.spec.template));
        let decision = decide(&lease::facts(&d), &policy, now);
        let kind = decision.action.kind();
        let step = match decision.action {
            Action::Nothing => continue,
            Action::Sleep => (
                item("demo", &name, "sleep", "idle past sleepAfterIdle"),
                Step::Sleep(Box::new(d)),
            ),
            Action::Delete(reason) => {
                let it = item("demo", &name, kind, format!("{reason:?}").to_lowercase());
                (it, Step::DeleteDemo(name))
            }
            Action::Fail(msg) => (
                item("demo", &name, "fail", msg.clone()),
                Step::Fail(Box::new(d), msg),
            ),
        };
        plan.steps.push(step);
    }
    for ns in namespaces {
        let name = ns.name_any();
        let looks_ours = name.starts_with(NAME_PREFIX)
            || ns.labels().contains_key(MANAGED_BY_LABEL)
                && ns.labels()[MANAGED_BY_LABEL] == MANAGED_BY_VALUE
            || ns.annotations().contains_key(DEMO_UID_ANNOTATION);
        // Another installation's namespaces are its own business.
        let other_instance = ns
            .labels()
            .get(INSTANCE_LABEL)
            .is_some_and(|i| i != instance.name());
        if !looks_ours || other_instance {
            continue;
        }
        if let Some(deleted) = time::deleted_at(&ns.metadata) {
            if now - deleted >= opts.stuck_after {
                let why = format!(
                    "terminating for {}; check finalizers on its objects",
                    crate::domain::duration::format(now - deleted)
                );
                plan.steps
                    .push((item("namespace", &name, "report", why), Step::Report));
            }
            continue;
        }
        match orphan_objection(instance, &ns, &demo_uids, now, opts.orphan_grace) {
            None => plan.steps.push((
                item(
                    "namespace",
                    &name,
                    "delete-orphan",
                    "its Demo no longer exists",
                ),
                Step::DeleteOrphan(name),
            )),
            Some(why) if why == "its Demo exists" => {}
            Some(why) => plan.steps.push((
                item(
                    "namespace",
                    &name,
                    "report",
                    format!("looks like a demo namespace but is kept: {why}"),
                ),
                Step::Report,
            )),
        }
    }
    Ok(plan)
}

/// Carries out the plan; one failing step does not stop the others.
pub async fn execute(
    client: &Client,
    plan: &Plan,
    metrics: &Metrics,
) -> Vec<(PlanItem, Result<(), kube::Error>)> {
    let mut out = Vec::new();
    for (it, step) in &plan.steps {
        let r = match step {
            Step::Sleep(d) => actions::sleep(client, d, "asleep after being idle (sweep)").await,
            Step::DeleteDemo(name) => actions::request_delete(client, name).await,
            Step::Fail(d, msg) => actions::fail(client, d, msg).await,
            Step::RetryDelete(d) => actions::delete_namespace_if_ours(client, d)
                .await
                .map(|_| ()),
            Step::DeleteOrphan(name) => {
                crate::k8s::delete_if_present(&Api::<Namespace>::all(client.clone()), name).await
            }
            Step::Report => Ok(()),
        };
        if r.is_ok() {
            metrics
                .sweep_actions
                .get_or_create(&label("action", &it.action))
                .inc();
        }
        match &r {
            Ok(()) if it.action == "report" => {
                tracing::warn!(kind = %it.kind, name = %it.name, reason = %it.reason, "sweep: reported, not changed")
            }
            Ok(()) => {
                tracing::info!(kind = %it.kind, name = %it.name, action = %it.action, reason = %it.reason, "sweep: done")
            }
            Err(e) => {
                tracing::warn!(kind = %it.kind, name = %it.name, action = %it.action, error = %e, "sweep: step failed")
            }
        }
        out.push((it.clone(), r));
    }
    out
}

/// One complete pass, timed into the metrics.
pub async fn sweep(
    client: &Client,
    instance: &Instance,
    catalogue: &Catalogue,
    opts: &SweepOptions,
    metrics: &Metrics,
) -> Result<Vec<PlanItem>, kube::Error> {
    let start = std::time::Instant::now();
    let plan = plan(client, instance, catalogue, opts).await?;
    execute(client, &plan, metrics).await;
    metrics.sweep_seconds.observe(start.elapsed().as_secs_f64());
    Ok(plan.items())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ns(
        name: &str,
        labels: serde_json::Value,
        annotations: serde_json::Value,
        age_min: i64,
    ) -> Namespace {
        let created = (Utc::now() - Duration::minutes(age_min)).to_rfc3339();
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels, "annotations": annotations, "creationTimestamp": created}})).unwrap()
    }

    #[test]
    fn only_a_namespace_passing_every_check_is_an_orphan() {
        let live: HashSet<String> = ["live-uid".to_string()].into();
        let g = Duration::minutes(10);
        let me = Instance::default();
        let good_l = json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE, INSTANCE_LABEL: "default"});
        let good_a = json!({DEMO_UID_ANNOTATION: "dead-uid"});
        let now = Utc::now();
        assert_eq!(
            orphan_objection(
                &me,
                &ns("demo-1", good_l.clone(), good_a.clone(), 60),
                &live,
                now,
                g
            ),
            None
        );
        let cases = [
            ns("prod-1", good_l.clone(), good_a.clone(), 60),
            ns("demo-2", json!({}), good_a.clone(), 60),
            ns(
                "demo-3",
                json!({MANAGED_BY_LABEL: "helm"}),
                good_a.clone(),
                60,
            ),
            ns("demo-4", good_l.clone(), json!({}), 60),
            ns(
                "demo-5",
                good_l.clone(),
                json!({DEMO_UID_ANNOTATION: "live-uid"}),
                60,
            ),
            ns("demo-6", good_l.clone(), good_a.clone(), 1),
            ns(
                "demo-7",
                json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE, INSTANCE_LABEL: "staging"}),
                good_a.clone(),
                60,
            ),
            ns(
                "demo-8",
                json!({MANAGED_BY_LABEL: MANAGED_BY_VALUE}),
                good_a.clone(),
                60,
            ),
        ];
        for c in cases {
            assert!(
                orphan_objection(&me, &c, &live, now, g).is_some(),
                "{} must not be an orphan",
                c.name_any()
            );
        }
    }
}
