//! Warm pools: unclaimed demos kept ready per template (`warmPool` in a template), so
//! that a start is a claim instead of a provisioning. The leader keeps each pool at its
//! size with `domain::pool::plan`; a start claims a member with an update guarded by
//! its resourceVersion, so two starts never claim the same member, on any replica.

use super::actions;
use super::cache::DemoCache;
use super::crd::*;
use super::slots::{self, Kind, Slots, Take};
use crate::domain::duration;
use crate::domain::lifecycle::Phase;
use crate::domain::pool::{Member, Step, plan};
use crate::domain::template::{Catalogue, PoolState, Template};
use crate::metrics::{Metrics, label};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Whether an unclaimed member can be claimed now: ready as its pool keeps it.
pub fn claimable(d: &Demo, t: &Template) -> bool {
    let want = match t.warm_pool.as_ref().map(|p| p.state) {
        Some(PoolState::Sleeping) => Phase::Sleeping,
        _ => Phase::Ready,
    };
    d.spec.pool.as_deref() == Some(t.name.as_str())
        && d.metadata.deletion_timestamp.is_none()
        && d.phase() == want
        && d.labels().get(REVISION_LABEL) == Some(&t.revision())
}

/// The unclaimed members of a template's pool in the cache.
pub fn members(cache: &DemoCache, template: &str) -> Vec<Arc<Demo>> {
    cache
        .pool_members(template)
        .into_iter()
        .filter(|d| d.metadata.deletion_timestamp.is_none())
        .collect()
}

/// What a claim makes of a member: the new owner's demo.
pub struct Claim<'a> {
    pub owner: &'a str,
    pub title: &'a str,
    pub lifecycle: &'a DemoLifecycle,
    pub idempotency: Option<&'a str>,
}

/// Claims a ready member for `claim.owner`, oldest first. None: no member is ready.
/// A member someone else claimed meanwhile is skipped; one that merely changed (its
/// status was written) is tried again with its new resourceVersion.
pub async fn claim(
    client: &Client,
    cache: &DemoCache,
    t: &Template,
    claim: &Claim<'_>,
) -> Result<Option<Demo>, kube::Error> {
    let api: Api<Demo> = Api::all(client.clone());
    let mut candidates: Vec<Arc<Demo>> = members(cache, &t.name)
        .into_iter()
        .filter(|d| claimable(d, t))
        .collect();
    candidates.sort_by_key(|d| d.metadata.creation_timestamp.clone().map(|c| c.0));
    for candidate in candidates {
        let mut current: Demo = (*candidate).clone();
        for _ in 0..3 {
            let mut labels = json!({POOL_LABEL: null, OWNER_LABEL: owner_hash(claim.owner)});
            if let Some(i) = claim.idempotency {
                labels[IDEMPOTENCY_LABEL] = json!(i);
            }
            let patch = json!({
                "metadata": {"resourceVersion": current.resource_version(), "labels": labels},
                "spec": {"owner": claim.owner, "title": claim.title, "lifecycle": claim.lifecycle,
                         "pool": null, "claimedAt": chrono::Utc::now(), "desiredState": "Running"},
            });
            match api
                .patch(
                    &current.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(d) => return Ok(Some(d)),
                Err(e) if crate::k8s::is_conflict(&e) => {
                    match api.get_opt(&current.name_any()).await? {
                        Some(fresh) if fresh.spec.pool.is_some() && claimable(&fresh, t) => {
                            current = fresh;
                        }
                        // Claimed by another start, or no longer ready: the next one.
                        _ => break,
                    }
                }
                Err(e) if crate::k8s::is_not_found(&e) => break,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}

/// A new member of a template's pool: it provisions like any demo, owned by nobody.
fn member(t: &Template, instance: &Instance) -> Demo {
    let d = &t.lifecycle.defaults;
    let mut demo = Demo::new(
        &format!(
            "{NAME_PREFIX}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..10]
        ),
        DemoSpec {
            template: t.name.clone(),
            owner: String::new(),
            title: Some(t.display_name.clone()),
            lifecycle: DemoLifecycle {
                sleep_after_idle: duration::format(d.sleep_after_idle),
                delete_after_idle: duration::format(d.delete_after_idle),
                max_lifetime: duration::format(d.max_lifetime),
                extension: None,
            },
            desired_state: DesiredState::Running,
            share_links: vec![],
            pool: Some(t.name.clone()),
            claimed_at: None,
            reset_generation: 0,
        },
    );
    demo.metadata.labels = Some(
        [
            (INSTANCE_LABEL.to_string(), instance.name().to_string()),
            (POOL_LABEL.to_string(), t.name.clone()),
            (REVISION_LABEL.to_string(), t.revision()),
        ]
        .into(),
    );
    // Made with the controller's finalizer, as a start does (see there).
    demo.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    demo
}

/// What the leader needs to keep pools.
pub struct Pools {
    pub client: Client,
    pub instance: Instance,
    pub catalogue: Arc<Catalogue>,
    pub cache: DemoCache,
    pub slots: Slots,
    /// The slot Leases' metadata, for the janitor.
    pub slot_cache: super::cache::MetaCache<Lease>,
    /// The most demos running at once (0: no ceiling).
    pub capacity: u32,
    pub metrics: Arc<Metrics>,
    /// Members made a moment ago that the cache may not show yet, so that a pool is
    /// not filled twice: (template, name, when).
    pub fresh: std::sync::Mutex<Vec<(String, String, std::time::Instant)>>,
}

impl Pools {
    /// Brings each pool one step towards its plan.
    pub async fn reconcile(&self) -> Result<(), kube::Error> {
        let now = chrono::Utc::now();
        for listed in self.catalogue.listed() {
            let t = &*listed.template;
            let Some(pool) = &t.warm_pool else { continue };
            let mine = members(&self.cache, &t.name);
            let mut list: Vec<Member> = mine
                .iter()
                .map(|d| Member {
                    name: d.name_any(),
                    created: super::lease::created_at(d),
                    revision: d.labels().get(REVISION_LABEL).cloned().unwrap_or_default(),
                    ready: claimable(d, t)
                        || (d.phase() == Phase::Ready && pool.state == PoolState::Sleeping),
                    failed: d.phase() == Phase::Failed,
                })
                .collect();
            {
                let mut fresh = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
                fresh.retain(|(_, n, at)| {
                    at.elapsed() < Duration::from_secs(10) && !list.iter().any(|m| m.name == *n)
                });
                for (_, n, _) in fresh.iter().filter(|(tn, _, _)| *tn == t.name) {
                    list.push(Member {
                        name: n.clone(),
                        created: now,
                        revision: t.revision(),
                        ready: false,
                        failed: false,
                    });
                }
            }
            let ready = mine.iter().filter(|d| claimable(d, t)).count() as i64;
            let l = label("template", &t.name);
            self.metrics
                .pool_size
                .get_or_create(&l)
                .set(pool.size as i64);
            self.metrics.pool_ready.get_or_create(&l).set(ready);
            for step in plan(pool.size as usize, pool.max_age, &t.revision(), &list, now) {
                match step {
                    Step::Create(n) => {
                        for _ in 0..n {
                            if !self.create(t).await? {
                                break;
                            }
                        }
                    }
                    Step::Delete(name) => {
                        tracing::info!(demo = %name, template = %t.name, "retiring a warm-pool member");
                        actions::request_delete(&self.client, &name).await?;
                        self.slots.free_for(&name, None).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Makes one member; false when the cluster is at its capacity.
    async fn create(&self, t: &Template) -> Result<bool, kube::Error> {
        let demo = member(t, &self.instance);
        let slot = if self.capacity > 0 {
            match self
                .slots
                .take_run(
                    self.capacity,
                    &format!("pool-{}", demo.name_any()),
                    &demo.name_any(),
                )
                .await?
            {
                Take::Taken(s) => Some(s),
                _ => {
                    tracing::debug!(template = %t.name, "at capacity: the warm pool waits");
                    return Ok(false);
                }
            }
        } else {
            None
        };
        let created = match Api::<Demo>::all(self.client.clone())
            .create(&PostParams::default(), &demo)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                if let Some(s) = &slot {
                    let _ = self.slots.free(s).await;
                }
                return Err(e);
            }
        };
        self.fresh.lock().unwrap_or_else(|p| p.into_inner()).push((
            t.name.clone(),
            created.name_any(),
            std::time::Instant::now(),
        ));
        if let Some(s) = &slot {
            self.slots.bind(s, &created).await?;
        }
        tracing::info!(demo = %created.name_any(), template = %t.name, "new warm-pool member");
        Ok(true)
    }

    /// Frees slots whose demo no longer counts, or that were never bound. Works from
    /// the caches; a slot that changed since the cache saw it is left for next time.
    pub async fn janitor(&self) -> Result<usize, kube::Error> {
        let leases = self.slot_cache.state();
        let demos = &self.cache;
        let now = chrono::Utc::now();
        let counts = |kind: Kind, name: &str| match demos.get(name) {
            // Not in the cache yet (just made), or gone: only a young slot is kept.
            None => false,
            Some(d) => {
                let live = d.metadata.deletion_timestamp.is_none() && d.phase() != Phase::Failed;
                match kind {
                    Kind::User => live,
                    Kind::Run => live && runs(&d),
                }
            }
        };
        let young = |l: &super::meta::Meta| {
            l.created.is_some_and(|c| {
                now - c < chrono::Duration::from_std(slots::PENDING_GRACE).expect("grace")
            })
        };
        // A young slot is left alone: its start or wake may still be under way (a wake's
        // slot names a demo the cache still shows asleep until the wake is written).
        // Slots of demos that stop counting are freed by the controller at once; this
        // is the backstop.
        let doomed: Vec<String> = slots::orphaned(&leases, counts, now)
            .into_iter()
            .filter(|n| {
                !leases
                    .iter()
                    .find(|l| *l.name == **n)
                    .is_some_and(|l| young(l))
            })
            .collect();
        let mut freed = 0;
        for n in &doomed {
            let rv = leases
                .iter()
                .find(|l| *l.name == **n)
                .and_then(|l| l.resource_version.as_deref().map(String::from));
            if self.slots.free_unchanged(n, rv).await? {
                tracing::info!(slot = %n, "freed a slot whose demo no longer holds it");
                freed += 1;
            }
        }
        Ok(freed)
    }
}

/// A demo that uses the cluster's compute (holds a run slot): anything but asleep.
pub fn runs(d: &Demo) -> bool {
    !(d.spec.desired_state == DesiredState::Sleeping && d.phase() == Phase::Sleeping)
}

/// The leader's loop: pools every second, the slot janitor every ten.
pub async fn run(pools: Pools) {
    let mut tick = 0u64;
    loop {
        if let Err(e) = pools.reconcile().await {
            tracing::warn!(error = %e, "keeping the warm pools failed; will retry");
        }
        if tick.is_multiple_of(10)
            && let Err(e) = pools.janitor().await
        {
            tracing::warn!(error = %e, "freeing orphaned slots failed; will retry");
        }
        tick += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
