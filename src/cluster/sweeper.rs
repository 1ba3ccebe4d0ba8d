//! The cleanup sweep: the backstop for whatever the event-driven path missed.
//! It runs the lifecycle's `decide` over every Demo, retries stuck deletions, and
//! deletes orphaned demo namespaces, but only those that pass every ownership check.
//!
//! In-process, the sweep plans from the replica's caches (no LIST); `showroom sweep`
//! lists, a page at a time. Either way each destructive step is guarded against a view
//! that has gone stale: a Demo is deleted only at the resourceVersion the plan saw, and
//! an orphan is checked again on the live objects just before it goes.

use super::actions;
use super::crd::*;
use super::lease;
use super::meta::Meta;
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
use std::sync::Arc;

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
    Sleep(Arc<Demo>),
    /// Delete the Demo, if it is still at the version planned from.
    DeleteDemo(Arc<Demo>),
    Fail(Arc<Demo>, String),
    RetryDelete(Arc<Demo>),
    /// Delete the namespace (name, uid), after checking again that it is an orphan.
    DeleteOrphan(String, String),
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
    ns: &Meta,
    demo_uids: &HashSet<String>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Option<String> {
    if !ns.name.starts_with(NAME_PREFIX) {
        return Some(format!("name lacks the {NAME_PREFIX:?} prefix"));
    }
    if ns.label(MANAGED_BY_LABEL) != Some(MANAGED_BY_VALUE) {
        return Some(format!("no {MANAGED_BY_LABEL}={MANAGED_BY_VALUE} label"));
    }
    if ns.label(INSTANCE_LABEL) != Some(instance.name()) {
        return Some(format!("no {} label", instance.selector()));
    }
    let Some(uid) = ns.annotation(DEMO_UID_ANNOTATION) else {
        return Some(format!("no {DEMO_UID_ANNOTATION} annotation"));
    };
    if demo_uids.contains(uid) {
        return Some("its Demo exists".into());
    }
    let age = ns.created.map_or(Duration::zero(), |c| now - c);
    if age < grace {
        return Some(format!(
            "younger than the {} grace period",
            crate::domain::duration::format(grace)
        ));
    }
    None
}

/// Everything, a page at a time: what `showroom sweep` plans from.
pub async fn list_all(
    client: &Client,
    instance: &Instance,
) -> Result<(Vec<Arc<Demo>>, Vec<Arc<Meta>>), kube::Error> {
    let demos_api = Api::<Demo>::all(client.clone());
    let demos = paged(ListParams::default().labels(&instance.selector()), |lp| {
        let api = demos_api.clone();
        async move { api.list(&lp).await }
    });
    // Every namespace, not only labelled ones: a lookalike is reported, never deleted.
    let ns_api = Api::<Namespace>::all(client.clone());
    let namespaces = paged(ListParams::default(), |lp| {
        let api = ns_api.clone();
        async move { api.list_metadata(&lp).await }
    });
    // Both at once: the server writes one list's pages while this process reads the
    // other's (one after the other, `showroom sweep` took 0.9 to 2.1 s at 10,000 demos
    // on a slow day). The order never mattered for safety: a namespace made after the
    // Demos were read looks orphaned either way, and the grace period and the checks
    // made again before each deletion keep it.
    let (demos, namespaces) = tokio::try_join!(demos, namespaces)?;
    let namespaces = namespaces
        .iter()
        .map(|n| Arc::new(Meta::of(&n.metadata)))
        .collect();
    Ok((demos, namespaces))
}

/// Every item of a list, read in pages of 500 (`list` reads one page).
async fn paged<T, F, Fut>(lp: ListParams, list: F) -> Result<Vec<Arc<T>>, kube::Error>
where
    T: Clone + serde::de::DeserializeOwned,
    F: Fn(ListParams) -> Fut,
    Fut: std::future::Future<Output = Result<kube::core::ObjectList<T>, kube::Error>>,
{
    let mut lp = lp.limit(500);
    let mut all = Vec::new();
    loop {
        let page = list(lp.clone()).await?;
        all.extend(page.items.into_iter().map(Arc::new));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = lp.continue_token(&c),
            None => return Ok(all),
        }
    }
}

/// Plans a sweep of this instance's Demos and every candidate namespace, from what the
/// caller has seen of them (the caches, or `list_all`).
pub fn plan(
    demos: &[Arc<Demo>],
    namespaces: &[Arc<Meta>],
    instance: &Instance,
    catalogue: &Catalogue,
    opts: &SweepOptions,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    let demo_uids: HashSet<String> = demos.iter().filter_map(|d| d.uid()).collect();
    for d in demos {
        // Another installation's Demos (a cache holds only ours; a list is filtered).
        if !instance.owns(d.labels()) {
            continue;
        }
        let name = d.name_any();
        if let Some(deleted) = time::deleted_at(&d.metadata) {
            if now - deleted >= opts.stuck_after {
                let why = format!(
                    "deletion requested {} ago has not finished",
                    crate::domain::duration::format(now - deleted)
                );
                plan.steps.push((
                    item("demo", &name, "retry-delete", why),
                    Step::RetryDelete(d.clone()),
                ));
            }
            continue;
        }
        let policy = lease::policy(d, catalogue.get(&d.spec.template).as_deref());
        let decision = decide(&lease::facts(d), &policy, now);
        let kind = decision.action.kind();
        let step = match decision.action {
            Action::Nothing => continue,
            Action::Sleep => (
                item("demo", &name, "sleep", "idle past sleepAfterIdle"),
                Step::Sleep(d.clone()),
            ),
            Action::Delete(reason) => {
                let it = item("demo", &name, kind, format!("{reason:?}").to_lowercase());
                (it, Step::DeleteDemo(d.clone()))
            }
            Action::Fail(msg) => (
                item("demo", &name, "fail", msg.clone()),
                Step::Fail(d.clone(), msg),
            ),
        };
        plan.steps.push(step);
    }
    for ns in namespaces {
        if let Some(step) = namespace_step(ns, instance, &demo_uids, opts, now) {
            plan.steps.push(step);
        }
    }
    plan
}

/// What the sweep does about one namespace, if anything.
fn namespace_step(
    ns: &Meta,
    instance: &Instance,
    demo_uids: &HashSet<String>,
    opts: &SweepOptions,
    now: DateTime<Utc>,
) -> Option<(PlanItem, Step)> {
    let name = ns.name.to_string();
    let looks_ours = name.starts_with(NAME_PREFIX)
        || ns.label(MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE)
        || ns.annotation(DEMO_UID_ANNOTATION).is_some();
    // Another installation's namespaces are its own business.
    let other_instance = ns
        .label(INSTANCE_LABEL)
        .is_some_and(|i| i != instance.name());
    if !looks_ours || other_instance {
        return None;
    }
    if let Some(deleted) = ns.deleted {
        if now - deleted >= opts.stuck_after {
            let why = format!(
                "terminating for {}; check finalizers on its objects",
                crate::domain::duration::format(now - deleted)
            );
            return Some((item("namespace", &name, "report", why), Step::Report));
        }
        return None;
    }
    match orphan_objection(instance, ns, demo_uids, now, opts.orphan_grace) {
        None => Some((
            item(
                "namespace",
                &name,
                "delete-orphan",
                "its Demo no longer exists",
            ),
            Step::DeleteOrphan(name, ns.uid.as_deref().unwrap_or_default().to_string()),
        )),
        Some(why) if why == "its Demo exists" => None,
        Some(why) => Some((
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

/// Deletes an orphan namespace only if the live objects still say it is one: the
/// namespace as planned (same UID), and no Demo with the UID it names.
async fn delete_orphan(
    client: &Client,
    instance: &Instance,
    name: &str,
    uid: &str,
    opts: &SweepOptions,
) -> Result<bool, kube::Error> {
    let api = Api::<Namespace>::all(client.clone());
    let Some(ns) = api.get_metadata_opt(name).await? else {
        return Ok(false);
    };
    if ns.uid().as_deref() != Some(uid) {
        return Ok(false);
    }
    let owner = ns.annotations().get(DEMO_UID_ANNOTATION).cloned();
    // The Demo of a demo namespace has the namespace's name.
    let live: HashSet<String> = Api::<Demo>::all(client.clone())
        .get_opt(name)
        .await?
        .and_then(|d| d.uid())
        .into_iter()
        .collect();
    if owner.is_none()
        || orphan_objection(
            instance,
            &Meta::of(&ns.metadata),
            &live,
            Utc::now(),
            opts.orphan_grace,
        )
        .is_some()
    {
        return Ok(false);
    }
    let dp = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(true),
        Err(e) if crate::k8s::is_not_found(&e) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes a Demo only at the resourceVersion the plan saw: a demo used, extended or
/// changed since is looked at again by the next sweep instead.
async fn delete_demo(client: &Client, d: &Demo) -> Result<bool, kube::Error> {
    let dp = kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: d.uid(),
            resource_version: d.resource_version(),
        }),
        ..Default::default()
    };
    match Api::<Demo>::all(client.clone())
        .delete(&d.name_any(), &dp)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if crate::k8s::is_not_found(&e) => Ok(false),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Carries out the plan; one failing step does not stop the others.
pub async fn execute(
    client: &Client,
    instance: &Instance,
    plan: &Plan,
    opts: &SweepOptions,
    metrics: &Metrics,
) -> Vec<(PlanItem, Result<(), kube::Error>)> {
    let mut out = Vec::new();
    for (it, step) in &plan.steps {
        // Ok(false): skipped, because what the plan saw has changed meanwhile.
        let r = match step {
            Step::Sleep(d) => actions::sleep(client, d, "asleep after being idle (sweep)")
                .await
                .map(|_| true),
            Step::DeleteDemo(d) => delete_demo(client, d).await,
            Step::Fail(d, msg) => actions::fail(client, d, msg).await.map(|_| true),
            Step::RetryDelete(d) => actions::delete_namespace_if_ours(client, d)
                .await
                .map(|_| true),
            Step::DeleteOrphan(name, uid) => delete_orphan(client, instance, name, uid, opts).await,
            Step::Report => Ok(true),
        };
        if matches!(r, Ok(true)) {
            metrics
                .sweep_actions
                .get_or_create(&label("action", &it.action))
                .inc();
        }
        match &r {
            Ok(true) if it.action == "report" => {
                tracing::warn!(kind = %it.kind, name = %it.name, reason = %it.reason, "sweep: reported, not changed")
            }
            Ok(true) => {
                tracing::info!(kind = %it.kind, name = %it.name, action = %it.action, reason = %it.reason, "sweep: done")
            }
            Ok(false) => {
                tracing::info!(kind = %it.kind, name = %it.name, action = %it.action, "sweep: skipped, it changed since the plan")
            }
            Err(e) => {
                tracing::warn!(kind = %it.kind, name = %it.name, action = %it.action, error = %e, "sweep: step failed")
            }
        }
        out.push((it.clone(), r.map(|_| ())));
    }
    out
}

/// One complete pass from the replica's caches (the in-process schedule), timed into
/// the metrics. The caches must have synced: until then, a missing Demo proves nothing.
pub async fn sweep_cached(
    client: &Client,
    caches: &super::cache::Caches,
    instance: &Instance,
    catalogue: &Arc<Catalogue>,
    opts: &SweepOptions,
    metrics: &Metrics,
) -> Vec<PlanItem> {
    caches.wait_until_ready().await;
    let start = std::time::Instant::now();
    // Planning reads every demo (some 30 ms at 10,000): on a blocking thread, not on a
    // runtime worker, where the requests queued behind it would wait that long.
    let (demos, namespaces) = (caches.demos.all(), caches.namespaces.state());
    let (inst, cat, o) = (instance.clone(), catalogue.clone(), opts.clone());
    let plan =
        tokio::task::spawn_blocking(move || plan(&demos, &namespaces, &inst, &cat, &o, Utc::now()))
            .await
            .expect("the sweep plan does not panic");
    metrics
        .sweep_plan_seconds
        .set(start.elapsed().as_secs_f64());
    execute(client, instance, &plan, opts, metrics).await;
    metrics.sweep_seconds.observe(start.elapsed().as_secs_f64());
    plan.items()
}

/// One complete pass from fresh lists (`showroom sweep`).
pub async fn sweep_listed(
    client: &Client,
    instance: &Instance,
    catalogue: &Catalogue,
    opts: &SweepOptions,
    metrics: &Metrics,
) -> Result<Vec<PlanItem>, kube::Error> {
    let start = std::time::Instant::now();
    let (demos, namespaces) = list_all(client, instance).await?;
    let plan = plan(&demos, &namespaces, instance, catalogue, opts, Utc::now());
    execute(client, instance, &plan, opts, metrics).await;
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
    ) -> Meta {
        let created = (Utc::now() - Duration::minutes(age_min)).to_rfc3339();
        let n: Namespace = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels, "annotations": annotations, "creationTimestamp": created}})).unwrap();
        Meta::of(&n.metadata)
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
                c.name
            );
        }
    }
}
