//! Starting a demo: a user slot first (the per-user limit, exact across replicas), then
//! a warm-pool member if one is ready, else a run slot (the cluster's ceiling) and a new
//! Demo. Slots are freed again if the start does not happen; a replica that dies
//! midway leaves slots the janitor frees (see `slots`).

use super::cache::DemoCache;
use super::crd::*;
use super::pool::{self, Claim};
use super::slots::{Holder, Slots, Take};
use crate::domain::template::{PoolState, Template};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};
use std::time::Duration;

/// Where a start runs.
pub struct Starter<'a> {
    pub client: &'a Client,
    pub instance: &'a Instance,
    pub cache: &'a DemoCache,
    pub slots: &'a Slots,
    /// The most demos running at once (0: no ceiling).
    pub capacity: u32,
}

/// What is asked for.
pub struct Request<'a> {
    pub template: &'a Template,
    pub owner: &'a str,
    pub title: &'a str,
    pub lifecycle: DemoLifecycle,
    /// The user's limit of active demos.
    pub limit: u32,
    /// A hash of (instance, owner, Idempotency-Key), when the request carried one.
    pub idempotency: Option<String>,
    /// The Demo's name for a new demo (derived from the key when there is one).
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("you already have {held} active demos (limit {limit}); delete one first")]
    UserLimit { held: usize, limit: u32 },
    #[error(
        "the cluster already runs its maximum of {capacity} demos at once; one frees when a running demo is put to sleep or deleted"
    )]
    AtCapacity { capacity: u32 },
    #[error("a start with this Idempotency-Key is still under way; try again in a moment")]
    InProgress,
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// How a start ended.
pub struct Started {
    pub demo: Demo,
    /// Claimed from the template's warm pool (instant), rather than made.
    pub claimed: bool,
}

impl Starter<'_> {
    fn active_of(&self, owner: &str) -> usize {
        self.cache
            .of_owner(owner)
            .iter()
            .filter(|d| d.metadata.deletion_timestamp.is_none() && d.phase().is_active())
            .count()
    }

    /// A demo an earlier request with the same Idempotency-Key made or claimed.
    async fn earlier(&self, req: &Request<'_>) -> Result<Option<Demo>, kube::Error> {
        let Some(key) = &req.idempotency else {
            return Ok(None);
        };
        if let Some(d) = self.cache.by_idempotency(key) {
            return Ok(Some((*d).clone()));
        }
        Api::<Demo>::all(self.client.clone())
            .get_opt(&req.name)
            .await
    }

    /// Waits for the demo a same-key request is binding to `slot`.
    async fn wait_for(&self, slot: &str) -> Result<Demo, StartError> {
        let demos: Api<Demo> = Api::all(self.client.clone());
        for _ in 0..100 {
            let lease = self.slots.api().get_opt(slot).await?;
            let Some(lease) = lease else {
                return Err(StartError::InProgress);
            };
            if let Some(name) = lease.labels().get(DEMO_LABEL)
                && let Some(d) = demos.get_opt(name).await?
            {
                return Ok(d);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(StartError::InProgress)
    }

    pub async fn start(&self, req: Request<'_>) -> Result<Started, StartError> {
        if let Some(d) = self.earlier(&req).await? {
            return Ok(Started {
                claimed: d.spec.claimed_at.is_some(),
                demo: d,
            });
        }
        // The cache answers the common refusal without a request to the API server.
        let held = self.active_of(req.owner);
        if held >= req.limit as usize {
            return Err(StartError::UserLimit {
                held,
                limit: req.limit,
            });
        }
        // A keyed start may come again (its slot is then its own); any other is new.
        let (holder, keyed) = match &req.idempotency {
            Some(k) => (format!("key-{k}"), true),
            None => (format!("req-{}", uuid::Uuid::new_v4().simple()), false),
        };
        // A new demo needs a run slot too: both are taken at once (one round trip, not
        // two). A claim of a ready pool member takes its run slot itself, if any.
        let new_demo_runs = self.capacity > 0 && !self.pool_ready(req.template);
        let owner = owner_hash(req.owner);
        let user_holder = if keyed {
            Holder::Repeatable(&holder)
        } else {
            Holder::Unique(&holder)
        };
        let user_take =
            self.slots
                .take_user(&owner, req.limit, held as u32, &user_holder, &req.name);
        let (user_take, mut run_slot) = if new_demo_runs {
            let (u, r) = tokio::join!(user_take, self.take_run_slot(&holder, &req.name));
            match (u, r) {
                (Ok(u), Ok(r)) => (u, Some(r)),
                (Ok(Take::Taken(u)), Err(e)) => {
                    let _ = self.slots.free(&u).await;
                    return Err(e);
                }
                // The user slot was refused (or is another request's): said below.
                (Ok(u), Err(_)) => (u, None),
                (Err(e), r) => {
                    if let Ok(r) = r {
                        let _ = self.slots.free(&r).await;
                    }
                    return Err(e.into());
                }
            }
        } else {
            (user_take.await?, None)
        };
        let user_slot = match user_take {
            Take::Taken(s) => s,
            refused => {
                if let Some(r) = &run_slot {
                    let _ = self.slots.free(r).await;
                }
                return match refused {
                    Take::Same(slot) => {
                        let demo = self.wait_for(&slot).await?;
                        Ok(Started {
                            claimed: demo.spec.claimed_at.is_some(),
                            demo,
                        })
                    }
                    _ => Err(StartError::UserLimit {
                        held: req.limit as usize,
                        limit: req.limit,
                    }),
                };
            }
        };
        match self.place(&req, &holder, &mut run_slot).await {
            Ok(started) => {
                // The slots are labelled with the demo already, so they count for it
                // from now on: binding them (the ownerReference that lets the garbage
                // collector free them with the Demo) need not hold up the answer.
                let slots = self.slots.clone();
                let demo = started.demo.clone();
                tokio::spawn(async move {
                    for slot in std::iter::once(user_slot).chain(run_slot) {
                        bind_soon(&slots, &slot, &demo).await;
                    }
                });
                Ok(started)
            }
            Err(e) => {
                let _ = self.slots.free(&user_slot).await;
                if let Some(r) = &run_slot {
                    let _ = self.slots.free(r).await;
                }
                Err(e)
            }
        }
    }

    /// Whether the template's warm pool has a member to claim now.
    fn pool_ready(&self, t: &Template) -> bool {
        t.warm_pool.is_some()
            && pool::members(self.cache, &t.name)
                .iter()
                .any(|d| pool::claimable(d, t))
    }

    async fn take_run_slot(&self, holder: &str, demo: &str) -> Result<String, StartError> {
        match self.slots.take_run(self.capacity, holder, demo).await? {
            Take::Taken(s) => Ok(s),
            _ => Err(StartError::AtCapacity {
                capacity: self.capacity,
            }),
        }
    }

    async fn take_run(
        &self,
        holder: &str,
        demo: &str,
        into: &mut Option<String>,
    ) -> Result<(), StartError> {
        if self.capacity == 0 || into.is_some() {
            return Ok(());
        }
        *into = Some(self.take_run_slot(holder, demo).await?);
        Ok(())
    }

    /// Claims a pool member or makes a new demo.
    async fn place(
        &self,
        req: &Request<'_>,
        holder: &str,
        run_slot: &mut Option<String>,
    ) -> Result<Started, StartError> {
        let t = req.template;
        // A run slot taken already is for a new demo (no member was ready then): a
        // member that became ready since is left for the next start.
        if let Some(p) = &t.warm_pool
            && run_slot.is_none()
        {
            // A sleeping member wakes when claimed: it needs a run slot; a running one
            // holds its own already.
            if self.pool_ready(t) {
                if p.state == PoolState::Sleeping {
                    self.take_run(holder, &req.name, run_slot).await?;
                }
                let claim = Claim {
                    owner: req.owner,
                    title: req.title,
                    lifecycle: &req.lifecycle,
                    idempotency: req.idempotency.as_deref(),
                };
                if let Some(demo) = pool::claim(self.client, self.cache, t, &claim).await? {
                    tracing::info!(demo = %demo.name_any(), owner = %req.owner, template = %t.name, "claimed from the warm pool");
                    return Ok(Started {
                        demo,
                        claimed: true,
                    });
                }
            }
        }
        self.take_run(holder, &req.name, run_slot).await?;
        let mut demo = Demo::new(
            &req.name,
            DemoSpec {
                template: t.name.clone(),
                owner: req.owner.to_string(),
                title: Some(req.title.to_string()),
                lifecycle: req.lifecycle.clone(),
                desired_state: DesiredState::Running,
                share_links: vec![],
                pool: None,
                claimed_at: None,
                reset_generation: 0,
            },
        );
        let mut labels = std::collections::BTreeMap::from([
            (OWNER_LABEL.to_string(), owner_hash(req.owner)),
            (INSTANCE_LABEL.to_string(), self.instance.name().to_string()),
            (REVISION_LABEL.to_string(), t.revision()),
        ]);
        if let Some(k) = &req.idempotency {
            labels.insert(IDEMPOTENCY_LABEL.to_string(), k.clone());
        }
        demo.metadata.labels = Some(labels);
        // Made with the finalizer the controller would add first (a PATCH, and a
        // reconcile waiting for the cache to show it, per demo). A Demo made elsewhere
        // (kubectl) still gets it from the controller.
        demo.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
        let api: Api<Demo> = Api::all(self.client.clone());
        let demo = match api.create(&PostParams::default(), &demo).await {
            Ok(d) => d,
            // The same key, started before (its slot since freed): that demo.
            Err(e) if crate::k8s::is_already_exists(&e) && req.idempotency.is_some() => {
                api.get(&req.name).await?
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(demo = %demo.name_any(), owner = %req.owner, template = %t.name, "demo requested");
        Ok(Started {
            demo,
            claimed: false,
        })
    }
}

/// Binds a slot to its started demo, retrying a little: an error here does not undo the
/// start (the slot is labelled for the demo, so it counts for it; the janitor frees it
/// once the demo is gone, as the ownerReference would have).
async fn bind_soon(slots: &Slots, slot: &str, demo: &Demo) {
    for attempt in 0..3u64 {
        match slots.bind(slot, demo).await {
            Ok(()) => return,
            Err(e) if attempt == 2 => {
                tracing::warn!(slot = %slot, demo = %demo.name_any(), error = %e, "could not bind a slot to its demo; the janitor frees it when the demo is gone");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await,
        }
    }
}
