//! The controller: reconciles each Demo towards its desired state, acts on the
//! lifecycle's decision, and requeues at the next deadline so demos sleep on time.

use super::actions::{
    self, Written, namespace_of, now, patch_status, ready_condition, vcluster_of,
};
use super::cache::DemoCache;
use super::crd::*;
use super::lease;
use super::notifier::Notifier;
use super::provisioner::{self, Outcome, Progress};
use super::sleeper;
use crate::domain::lifecycle::{Action as LifecycleAction, Phase, decide, notice_due, upcoming};
use crate::domain::template::Catalogue;
use crate::metrics::{Metrics, label};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub struct Context {
    pub client: Client,
    /// The per-user and run slots a demo holds, freed when it stops counting.
    pub slots: super::slots::Slots,
    /// The installation whose Demos this controller reconciles.
    pub instance: Instance,
    pub catalogue: Arc<Catalogue>,
    pub metrics: Arc<Metrics>,
    /// Kubernetes Events, published in the background.
    pub events: tokio::sync::mpsc::Sender<(Event, ObjectReference)>,
    /// Expiry notices: how long before a sleep or deletion, and where to post them.
    pub notice_lead: chrono::Duration,
    pub notifier: Option<Arc<Notifier>>,
    /// The replica's Demo cache, which the controller reads its Demos from.
    pub demos: DemoCache,
    /// Where the demos' Jobs and vclusters stand, as the watches below last said.
    pub workloads: super::workloads::Workloads,
}

impl Context {
    pub fn new(
        client: Client,
        instance: Instance,
        catalogue: Arc<Catalogue>,
        metrics: Arc<Metrics>,
        slots: super::slots::Slots,
        demos: DemoCache,
    ) -> Self {
        let reporter = Reporter {
            controller: "showroom".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            events: publish_events(client.clone(), reporter),
            client,
            slots,
            instance,
            catalogue,
            metrics,
            notice_lead: chrono::Duration::minutes(15),
            notifier: None,
            demos,
            workloads: Default::default(),
        }
    }

    /// Look again at once, but only once the cache shows `written` (this reconcile's
    /// own write): a look at the older copy would take the same step again (at 10,000
    /// demos, a demo became Ready up to 12 times, each with a status write, an Event
    /// and a second count in the provisioning histogram).
    async fn again_once_seen(&self, written: &Written) -> Action {
        self.until_seen(written).await;
        Action::requeue(Duration::ZERO)
    }

    /// Returns once the cache shows `written` (at most 5 s). The runtime never runs two
    /// reconciles of one Demo at once: a change that arrives meanwhile (the namespace or
    /// Job this reconcile just created) waits for this one to end, and then must see
    /// this write. On the older copy it took the steps again: at 1,000 demos about 1.7
    /// extra create attempts of each namespace object per demo, each refused with 409.
    async fn until_seen(&self, written: &Written) {
        if let Some(rv) = written.resource_version() {
            self.demos
                .wait_for(written.name(), rv, Duration::from_secs(5))
                .await;
        }
    }

    /// Announces the next sleep or deletion once it is within the lead time (status,
    /// UI and webhook), and withdraws the notice when it no longer applies. Returns
    /// when to look again for the next notice.
    async fn announce(
        &self,
        demo: &Demo,
        template: Option<&crate::domain::template::Template>,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, kube::Error> {
        let facts = lease::facts(demo);
        let next = upcoming(&facts, &lease::policy(demo, template));
        let current = demo.status.as_ref().and_then(|s| s.notice.clone());
        let announced = current.as_ref().map(|n| (n.kind, n.at));
        let t = now();
        if let Some((kind, at)) = next
            && notice_due(next, announced, self.notice_lead, t)
        {
            let title = demo.spec.title.clone().unwrap_or_else(|| demo.name_any());
            let message = format!(
                "Demo \"{title}\" ({}, owner {}) will be {} at {} (in {}). Open it or extend it to keep it.",
                demo.name_any(),
                demo.spec.owner,
                kind.describe(),
                at.format("%H:%M UTC"),
                crate::domain::duration::human(at - t)
            );
            patch_status(
                &self.client,
                &demo.name_any(),
                json!({"notice": {"kind": kind, "at": at, "message": message}}),
            )
            .await?;
            self.event(demo, false, "ExpiryNotice", message.clone());
            if let Some(n) = &self.notifier {
                n.send(message);
            }
            return Ok(None);
        }
        let still_ahead = next.is_some_and(|(_, at)| at - t <= self.notice_lead && at > t);
        if current.is_some() && !still_ahead {
            patch_status(&self.client, &demo.name_any(), json!({"notice": null})).await?;
        }
        Ok(next.map(|(_, at)| at - self.notice_lead).filter(|w| *w > t))
    }

    /// Frees the slots a demo holds (its run slot, or all with `kind` None), best effort:
    /// the janitor frees whatever is missed.
    async fn free_slots(&self, demo: &str, kind: Option<super::slots::Kind>) {
        if let Err(e) = self.slots.free_for(demo, kind).await {
            tracing::debug!(demo, error = %e, "could not free slots; the janitor will");
        }
    }

    /// A Kubernetes Event on the Demo (`kubectl describe demo`). Best effort: an Event
    /// that cannot be written never holds up the lifecycle.
    pub(super) fn event(&self, demo: &Demo, warning: bool, reason: &str, note: String) {
        let reference = demo.object_ref(&());
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if self.events.try_send((ev, reference)).is_err() {
            tracing::debug!(demo = %demo.name_any(), reason, "event dropped: too many waiting");
        }
    }
}

/// How many Events may wait to be published. A burst beyond it (thousands of demos
/// changing at once while the API server is slow) drops Events rather than holding a
/// task and a request for each one: at 1,000 demos those took 40 MiB at the peak.
const EVENTS_WAITING: usize = 512;

/// Starts the task that publishes Events, a few at a time, in the order they came.
///
/// Each is written as one object. (kube's `Recorder` keeps every Event of the last six
/// minutes in a map, to count repeats as a series; showroom's Events, one per
/// transition, do not repeat, and that map, which never shrinks, held 5.9 MiB at
/// 1,000 demos and grows with the rate of Events: heaptrack.)
fn publish_events(
    client: Client,
    reporter: Reporter,
) -> tokio::sync::mpsc::Sender<(Event, ObjectReference)> {
    let (tx, rx) = tokio::sync::mpsc::channel::<(Event, ObjectReference)>(EVENTS_WAITING);
    let queued = futures::stream::unfold(rx, |mut rx| async move { Some((rx.recv().await?, rx)) });
    let reporter = Arc::new(reporter);
    tokio::spawn(queued.for_each_concurrent(4, move |(ev, reference)| {
        let (client, reporter) = (client.clone(), reporter.clone());
        async move {
            let event = k8s_event(&reporter, &ev, &reference);
            let ns = event.metadata.namespace.clone().unwrap_or_default();
            let api: Api<K8sEvent> = Api::namespaced(client, &ns);
            if let Err(e) = crate::k8s::create_unread(&api, &event).await {
                tracing::debug!(error = %e, "could not record an event");
            }
        }
    }));
    tx
}

/// An events.k8s.io/v1 Event about `reference` (in "default" for cluster-scoped
/// objects such as a Demo), named like kube's recorder names them.
fn k8s_event(reporter: &Reporter, ev: &Event, reference: &ObjectReference) -> K8sEvent {
    let now = jiff::Timestamp::now();
    let namespace = reference
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    K8sEvent {
        action: Some(ev.action.clone()),
        reason: Some(ev.reason.clone()),
        note: ev.note.clone(),
        event_time: Some(MicroTime(now)),
        regarding: Some(reference.clone()),
        related: ev.secondary.clone(),
        metadata: kube::core::ObjectMeta {
            namespace: Some(namespace),
            name: Some(format!(
                "{}.{:x}",
                reference.name.as_deref().unwrap_or("showroom"),
                now.as_nanosecond()
            )),
            ..Default::default()
        },
        reporting_controller: Some(reporter.controller.clone()),
        reporting_instance: Some(
            reporter
                .instance
                .clone()
                .unwrap_or_else(|| reporter.controller.clone()),
        ),
        type_: Some(
            match ev.type_ {
                EventType::Normal => "Normal",
                EventType::Warning => "Warning",
            }
            .into(),
        ),
        ..Default::default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// How many demos are reconciled at once. Unbounded, a fill of 1,000 demos ran a
/// reconcile (and its requests, each with a connection and buffers) for every one at
/// once; bounded, the same work queues in the controller at a few bytes a demo. A
/// reconcile mostly waits for the API server, so a few suffice to keep it busy; more
/// only queue there ahead of the users' own requests (at 64, a burst of starts had a
/// p99 1.5 to 2 times as long, for a fill 5% faster: README, "After 14:30").
const RECONCILES_AT_ONCE: u16 = 16;

/// While something is in motion, look again this often.
const POLL: Duration = Duration::from_millis(500);
/// The kubeconfig step (its Secret is not watched), in its first seconds.
const KUBECONFIG_FIRST_POLL: Duration = Duration::from_millis(100);
/// A provisioning step that waits on a watched object (namespace, Job, StatefulSet):
/// looked at this often even if no change arrives.
const WATCHED_STEP_POLL: Duration = Duration::from_secs(5);
/// While a deleted demo's namespace terminates: look again this often if no watch
/// event came first.
const NAMESPACE_GONE_FALLBACK: Duration = Duration::from_secs(5);

/// Runs until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let cache = ctx.demos.clone();
    // A demo's namespace, vcluster and Job share the Demo's name: map events by namespace.
    let by_namespace = |ns: Option<String>| ns.map(|n| ObjectRef::<Demo>::new(&n));
    let mine = ctx.instance.selector();
    // The Demos come from the replica's cache (held once). Of namespaces only metadata
    // is watched: a change is all the controller needs to hear of. Of Jobs and
    // vclusters only their state is kept (`workloads`), which provisioning reads.
    Controller::for_shared_stream(cache.triggers(), cache.store().clone())
        .owns_stream(crate::k8s::changes_of(
            Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
            &format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{mine}"),
        ))
        .watches_stream(
            ctx.workloads
                .follow_vclusters(Api::all(client.clone()), "app=vcluster"),
            move |s| by_namespace(s.namespace()),
        )
        .watches_stream(
            ctx.workloads.follow_jobs(
                Api::all(client.clone()),
                &format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"),
            ),
            move |j| by_namespace(j.namespace()),
        )
        .with_config(kube::runtime::controller::Config::default().concurrency(RECONCILES_AT_ONCE))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "reconcile did not complete");
            }
        })
        .await;
}

/// How soon to look again at a provisioning demo. Changes of its namespace, Job and
/// vcluster trigger a look anyway, so a step waiting on one of those is polled only as
/// a safety net; the poll is for what is not watched (the kubeconfig Secret). A step
/// that has run a while is looked at less often, so that a thousand demos waiting on
/// slow boots do not cost two reconciles (and their GETs) a second each. (Polling every
/// step at that pace was a fifth of the simulation's requests during a fill of 1,000.)
fn poll_while(progress: &provisioner::Progress) -> Duration {
    let running = progress
        .steps
        .iter()
        .find(|s| s.state == StepState::Running);
    if running.is_some_and(|s| s.name != "kubeconfig") {
        return WATCHED_STEP_POLL;
    }
    let running_for = running
        .and_then(|s| s.started_at)
        .map(|t| (now() - t).num_seconds())
        .unwrap_or(0);
    match running_for {
        // The syncer publishes the kubeconfig about when the vcluster comes up: the
        // first look often just misses it, and a demo should not wait a whole POLL.
        ..2 => KUBECONFIG_FIRST_POLL,
        2..10 => POLL,
        10..60 => Duration::from_secs(2),
        _ => Duration::from_secs(5),
    }
}

fn error_policy(demo: Arc<Demo>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(demo = %demo.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_millis(500 + fastrand::u64(..1000)))
}

fn requeue_at(next: Option<chrono::DateTime<chrono::Utc>>, at_most: Option<Duration>) -> Action {
    let until_next =
        next.map(|n| (n - now()).to_std().unwrap_or(Duration::ZERO) + Duration::from_millis(50));
    match (until_next, at_most) {
        (Some(a), Some(b)) => Action::requeue(a.min(b)),
        (Some(a), None) => Action::requeue(a),
        (None, Some(b)) => Action::requeue(b),
        // Nothing scheduled: the sweep and the next change will bring it back.
        (None, None) => Action::requeue(Duration::from_secs(300)),
    }
}

async fn reconcile(demo: Arc<Demo>, ctx: Arc<Context>) -> Result<Action, Error> {
    let client = &ctx.client;
    let name = demo.name_any();
    if demo.metadata.deletion_timestamp.is_some() {
        return finish_deletion(&demo, &ctx).await;
    }
    if !demo.finalizers().iter().any(|f| f == FINALIZER) {
        let mut fins = demo.finalizers().to_vec();
        fins.push(FINALIZER.to_string());
        let written = actions::patch_demo(
            client,
            &name,
            None,
            json!({"metadata": {"finalizers": fins}}),
        )
        .await?;
        return Ok(ctx.again_once_seen(&written).await);
    }
    let template = ctx.catalogue.get(&demo.spec.template);
    let template = template.as_deref();
    let status = demo.status.clone().unwrap_or_default();
    let first_sight = FirstSight::of(&demo);
    if !first_sight.is_due() && status.expires_at != Some(lease::expires_at(&demo)) {
        patch_status(
            client,
            &name,
            json!({"expiresAt": lease::expires_at(&demo)}),
        )
        .await?;
    }

    let mut decision = decide(&facts_of(&demo), &lease::policy(&demo, template), now());
    let mut demo = demo;
    if decision.action != LifecycleAction::Nothing {
        // The cache may lag behind our own last write (or another replica's); decide
        // again on a fresh read so that an action is never taken twice.
        let Some(fresh) = Api::<Demo>::all(client.clone()).get_opt(&name).await? else {
            return Ok(Action::await_change());
        };
        if fresh.metadata.deletion_timestamp.is_some() {
            return Ok(ctx.again_once_seen(&Written::from(&fresh)).await);
        }
        decision = decide(&facts_of(&fresh), &lease::policy(&fresh, template), now());
        demo = Arc::new(fresh);
    }
    let status = demo.status.clone().unwrap_or_default();
    match &decision.action {
        LifecycleAction::Nothing => {}
        LifecycleAction::Delete(reason) => {
            tracing::info!(demo = %name, ?reason, "deleting demo");
            ctx.event(
                &demo,
                false,
                "Deleting",
                format!("{} ({reason:?})", decision.action.kind()),
            );
            ctx.metrics
                .lifecycle_actions
                .get_or_create(&label("action", decision.action.kind()))
                .inc();
            actions::request_delete(client, &name).await?;
            return Ok(Action::requeue(POLL));
        }
        LifecycleAction::Fail(msg) => {
            tracing::warn!(demo = %name, %msg, "demo failed");
            ctx.event(&demo, true, "Failed", msg.clone());
            ctx.metrics
                .lifecycle_actions
                .get_or_create(&label("action", "fail"))
                .inc();
            actions::fail(client, &demo, msg).await?;
            ctx.free_slots(&name, None).await;
            return Ok(Action::requeue(POLL));
        }
        LifecycleAction::Sleep => {
            tracing::info!(demo = %name, "idle: putting demo to sleep");
            ctx.event(
                &demo,
                false,
                "Sleeping",
                "idle past sleepAfterIdle: paused like `vcluster pause`".into(),
            );
            ctx.metrics
                .lifecycle_actions
                .get_or_create(&label("action", "sleep"))
                .inc();
            actions::sleep(client, &demo, "asleep after being idle").await?;
            ctx.free_slots(&name, Some(super::slots::Kind::Run)).await;
            return Ok(Action::requeue(POLL));
        }
    }

    let notice_at = ctx.announce(&demo, template).await?;
    let decision = crate::domain::lifecycle::Decision {
        next: match (decision.next, notice_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        },
        ..decision
    };
    let ns = namespace_of(&demo);
    let vc = vcluster_of(&demo);
    let desired = demo.spec.desired_state;
    let phase = status.phase.unwrap_or_default();
    if demo.reset_pending() && phase.can_reset() {
        return begin_reset(&ctx, &demo, &status).await;
    }
    match phase {
        Phase::Pending | Phase::Provisioning => {
            let Some(t) = template else {
                if first_sight.is_due() {
                    // Its lease and namespace on record before it fails, as for any demo.
                    patch_status(client, &name, first_sight.under(json!({}))).await?;
                }
                actions::fail(
                    client,
                    &demo,
                    &format!("template {:?} no longer exists", demo.spec.template),
                )
                .await?;
                return Ok(Action::requeue(POLL));
            };
            let mut progress = Progress::from(&status.progress, now());
            let outcome = provisioner::step(
                client,
                &ctx.instance,
                &demo,
                t,
                (&ns, &vc),
                &ctx.workloads,
                &mut progress,
            )
            .await;
            let outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    // Keep what progressed before the error, then retry.
                    if first_sight.is_due() || progress.steps != status.progress {
                        let fields = json!({"progress": progress.steps});
                        first_sight.write(&ctx, &demo, fields).await?;
                    }
                    return Err(e.into());
                }
            };
            match outcome {
                Outcome::InProgress => {
                    let message = format!(
                        "provisioning: {}",
                        progress.current().unwrap_or("finishing")
                    );
                    if first_sight.is_due()
                        || progress.steps != status.progress
                        || status.message.as_deref() != Some(&message)
                    {
                        let fields = json!({"progress": progress.steps, "message": message});
                        let written = first_sight.write(&ctx, &demo, fields).await?;
                        ctx.until_seen(&written).await;
                    }
                    Ok(requeue_at(decision.next, Some(poll_while(&progress))))
                }
                Outcome::Failed(msg) => {
                    let fields = json!({"progress": progress.steps});
                    first_sight.write(&ctx, &demo, fields).await?;
                    ctx.event(&demo, true, "Failed", msg.clone());
                    ctx.metrics
                        .lifecycle_actions
                        .get_or_create(&label("action", "fail"))
                        .inc();
                    actions::fail(client, &demo, &msg).await?;
                    ctx.free_slots(&name, None).await;
                    Ok(Action::requeue(POLL))
                }
                Outcome::Ready => {
                    let t = now();
                    let took = (t - lease::created_at(&demo)).num_milliseconds() as f64 / 1000.0;
                    ctx.metrics.provisioning_seconds.observe(took.max(0.0));
                    let fields = json!({
                        "phase": "Ready", "phaseSince": t, "readyAt": t, "progress": progress.steps,
                        "message": "ready", "conditions": ready_condition("Ready", "ready"),
                    });
                    let written = first_sight.write(&ctx, &demo, fields).await?;
                    tracing::info!(demo = %name, seconds = took, "demo ready");
                    ctx.event(&demo, false, "Ready", format!("ready after {took:.1}s"));
                    Ok(ctx.again_once_seen(&written).await)
                }
            }
        }
        Phase::Ready => {
            // A member of a sleeping warm pool waits asleep (no compute) to be claimed.
            let pool_sleeps = lease::pooled(&demo)
                && template
                    .and_then(|t| t.warm_pool.as_ref())
                    .is_some_and(|p| p.state == crate::domain::template::PoolState::Sleeping);
            if desired == DesiredState::Sleeping || pool_sleeps {
                let why = if pool_sleeps {
                    "asleep in the warm pool"
                } else {
                    "asleep"
                };
                actions::sleep(client, &demo, why).await?;
                ctx.free_slots(&name, Some(super::slots::Kind::Run)).await;
                ctx.event(&demo, false, "Sleeping", format!("put to sleep: {why}"));
                return Ok(Action::requeue(POLL));
            }
            Ok(requeue_at(decision.next, None))
        }
        Phase::Sleeping => {
            if desired == DesiredState::Running {
                sleeper::resume(client, &ns, &vc).await?;
                patch_status(
                    client,
                    &name,
                    json!({
                        "phase": "Waking", "phaseSince": now(), "message": "waking up",
                        "conditions": ready_condition("Waking", "waking up"),
                    }),
                )
                .await?;
                ctx.event(
                    &demo,
                    false,
                    "Waking",
                    "resumed like `vcluster resume`".into(),
                );
                return Ok(Action::requeue(POLL));
            }
            // Keep the vcluster paused even if someone resumed it by hand.
            sleeper::pause(client, &ns, &vc).await?;
            Ok(requeue_at(decision.next, None))
        }
        Phase::Waking => {
            if desired == DesiredState::Sleeping {
                actions::sleep(client, &demo, "asleep").await?;
                ctx.free_slots(&name, Some(super::slots::Kind::Run)).await;
                return Ok(Action::requeue(POLL));
            }
            sleeper::resume(client, &ns, &vc).await?;
            let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
            if sets
                .get_opt(&vc)
                .await?
                .as_ref()
                .is_some_and(sleeper::is_ready)
            {
                let t = now();
                let took = status
                    .phase_since
                    .map(|since| ((t - since).num_milliseconds() as f64 / 1000.0).max(0.0));
                if let Some(secs) = took {
                    ctx.metrics.wake_seconds.observe(secs);
                }
                let written = patch_status(client, &name, json!({
                    "phase": "Ready", "phaseSince": t, "readyAt": t, "sleepingSince": null, "message": "ready",
                    "conditions": ready_condition("Ready", "ready"), "lastWakeSeconds": took,
                }))
                .await?;
                return Ok(ctx.again_once_seen(&written).await);
            }
            Ok(requeue_at(decision.next, Some(POLL)))
        }
        Phase::Failed => {
            // Make sure nothing is left behind by a failure.
            let gone = actions::delete_namespace_if_ours(client, &demo).await?;
            Ok(requeue_at(
                decision.next,
                (!gone).then_some(Duration::from_secs(2)),
            ))
        }
        Phase::Resetting => {
            let Some(t) = template else {
                actions::fail(client, &demo, "its template no longer exists").await?;
                ctx.free_slots(&name, None).await;
                return Ok(Action::requeue(POLL));
            };
            reset(&ctx, &demo, t, &status).await
        }
        Phase::Deleting => Ok(Action::requeue(POLL)),
    }
}

/// The lifecycle's facts as the controller decides on them. A demo not seen before is
/// taken as Provisioning from now, as its first-sight write will say: its provision
/// timeout counts from when the controller takes it up, so a demo created while no
/// controller ran (a restart, an upgrade) is provisioned, not failed at once.
fn facts_of(demo: &Demo) -> crate::domain::lifecycle::Facts {
    let mut facts = lease::facts(demo);
    if demo.status.as_ref().and_then(|s| s.phase).is_none() {
        facts.phase = Phase::Provisioning;
        facts.phase_since = now();
    }
    facts
}

/// A demo's first-sight status: phase Provisioning, its lease, namespace and vcluster.
/// It rides on the demo's first provisioning write rather than a write and a pass of
/// its own (one PATCH, one watch event and one reconcile fewer a demo).
struct FirstSight(Option<serde_json::Map<String, serde_json::Value>>);

impl FirstSight {
    /// Due for a demo whose status has no phase yet.
    fn of(demo: &Demo) -> Self {
        let due = demo.status.as_ref().and_then(|s| s.phase).is_none();
        FirstSight(due.then(|| {
            json!({
                "phase": "Provisioning", "phaseSince": now(), "namespace": demo.name_any(),
                "vcluster": demo.name_any(), "lastActivity": lease::created_at(demo),
                "expiresAt": lease::expires_at(demo), "message": "starting",
                "conditions": ready_condition("Provisioning", "starting"),
            })
            .as_object()
            .cloned()
            .unwrap_or_default()
        }))
    }

    fn is_due(&self) -> bool {
        self.0.is_some()
    }

    /// `fields` with the first-sight fields under them, when due (the write's own win:
    /// a demo found Ready on its first pass is Ready, not Provisioning).
    fn under(&self, fields: serde_json::Value) -> serde_json::Value {
        let (Some(first), serde_json::Value::Object(fields)) = (&self.0, &fields) else {
            return fields;
        };
        let mut merged = first.clone();
        merged.extend(fields.clone());
        serde_json::Value::Object(merged)
    }

    /// Writes a provisioning status with the first-sight fields under it and, when
    /// they were due, tells the demo's events that provisioning began.
    async fn write(
        &self,
        ctx: &Context,
        demo: &Demo,
        fields: serde_json::Value,
    ) -> Result<Written, kube::Error> {
        let written = patch_status(&ctx.client, &demo.name_any(), self.under(fields)).await?;
        if self.is_due() {
            ctx.event(
                demo,
                false,
                "Provisioning",
                format!(
                    "creating vcluster {} from template {}",
                    demo.name_any(),
                    demo.spec.template
                ),
            );
        }
        Ok(written)
    }
}

/// Begins a reset asked for by `spec.resetGeneration`: phase Resetting, with the
/// restore, boot and kubeconfig steps to do again.
async fn begin_reset(ctx: &Context, demo: &Demo, status: &DemoStatus) -> Result<Action, Error> {
    let mut steps = Progress::from(&status.progress, now()).steps;
    for s in steps
        .iter_mut()
        .filter(|s| matches!(s.name.as_str(), "restore" | "boot" | "kubeconfig"))
    {
        s.state = StepState::Pending;
        s.started_at = None;
        s.finished_at = None;
        s.message = None;
    }
    patch_status(
        &ctx.client,
        &demo.name_any(),
        json!({
            "phase": "Resetting", "phaseSince": now(), "progress": steps,
            "message": "going back to the template's snapshot",
            "conditions": ready_condition("Resetting", "resetting"),
        }),
    )
    .await?;
    ctx.event(
        demo,
        false,
        "Resetting",
        "restoring the snapshot in place with `vcluster restore`".into(),
    );
    Ok(Action::requeue(POLL))
}

/// A reset under way: when the restore Job is done and the vcluster is up, Ready. A
/// failed restore leaves the demo as it was when the vcluster still runs (Ready, with
/// the reason), and Failed when it does not: never half reset.
async fn reset(
    ctx: &Context,
    demo: &Demo,
    t: &crate::domain::template::Template,
    status: &DemoStatus,
) -> Result<Action, Error> {
    let client = &ctx.client;
    let name = demo.name_any();
    let (ns, vc) = (namespace_of(demo), vcluster_of(demo));
    let generation = demo.spec.reset_generation;
    let mut progress = Progress::from(&status.progress, now());
    match provisioner::reset_step(
        client,
        demo,
        t,
        (&ns, &vc),
        &ctx.workloads,
        generation,
        &mut progress,
    )
    .await?
    {
        Outcome::InProgress => {
            let message = format!("resetting: {}", progress.current().unwrap_or("finishing"));
            if progress.steps != status.progress || status.message.as_deref() != Some(&message) {
                let written = patch_status(
                    client,
                    &name,
                    json!({"progress": progress.steps, "message": message}),
                )
                .await?;
                ctx.until_seen(&written).await;
            }
            Ok(Action::requeue(POLL))
        }
        Outcome::Ready => {
            let t = now();
            let written = patch_status(
                client,
                &name,
                json!({
                    "phase": "Ready", "phaseSince": t, "readyAt": t, "progress": progress.steps,
                    "resetGeneration": generation, "sleepingSince": null,
                    "message": "ready: back to the template's snapshot",
                    "conditions": ready_condition("Ready", "ready"),
                }),
            )
            .await?;
            ctx.event(
                demo,
                false,
                "Reset",
                "back to the template's snapshot".into(),
            );
            Ok(ctx.again_once_seen(&written).await)
        }
        Outcome::Failed(msg) => {
            let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
            let running = sets
                .get_opt(&vc)
                .await?
                .as_ref()
                .is_some_and(sleeper::is_ready);
            ctx.event(demo, true, "ResetFailed", msg.clone());
            if running {
                let t = now();
                patch_status(
                    client,
                    &name,
                    json!({
                        "phase": "Ready", "phaseSince": t, "progress": progress.steps,
                        "resetGeneration": generation,
                        "message": format!("the reset failed and the demo is as it was: {msg}"),
                        "conditions": ready_condition("Ready", "ready"),
                    }),
                )
                .await?;
            } else {
                actions::fail(client, demo, &format!("the reset failed: {msg}")).await?;
                ctx.free_slots(&name, None).await;
            }
            Ok(Action::requeue(POLL))
        }
    }
}

/// Deletion: show Deleting, remove the namespace, and release the Demo only when the
/// namespace is verifiably gone.
async fn finish_deletion(demo: &Demo, ctx: &Context) -> Result<Action, Error> {
    let client = &ctx.client;
    let name = demo.name_any();
    if !demo.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(Action::await_change());
    }
    if demo.phase() != Phase::Deleting {
        patch_status(client, &name, json!({
            "phase": "Deleting", "phaseSince": now(), "message": "deleting the demo's namespace",
            "conditions": ready_condition("Deleting", "deleting"),
        }))
        .await?;
    }
    ctx.free_slots(&name, None).await;
    if !actions::delete_namespace_if_ours(client, demo).await? {
        // The namespace's own watch brings the Demo back the moment it is gone (it is
        // owned by the Demo); this look is only a fallback. Polling every 500 ms made
        // tens of thousands of GETs when many demos were deleted at once.
        return Ok(Action::requeue(NAMESPACE_GONE_FALLBACK));
    }
    let fins: Vec<String> = demo
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    // The resourceVersion makes this a no-op if the Demo changed since we read it.
    let patch =
        json!({"metadata": {"finalizers": fins, "resourceVersion": demo.resource_version()}});
    actions::patch_demo(client, &name, None, patch).await?;
    tracing::info!(demo = %name, "demo deleted; namespace gone");
    ctx.event(
        demo,
        false,
        "Deleted",
        "the demo's namespace is gone".into(),
    );
    Ok(Action::await_change())
}
