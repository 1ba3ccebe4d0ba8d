//! Starting a demo: a user slot first (the per-user limit, exact across replicas), then
//! a warm-pool member if one is ready, else a run slot (the cluster's ceiling) and a new
//! Demo. Slots are freed again if the start does not happen; a replica that dies
//! midway leaves slots the janitor frees (see `slots`).

use super::cache::DemoCache;
use super::crd::*;
use super::pool::{self, Claim};
use super::slots::{Slots, Take};
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
        let holder = match &req.idempotency {
            Some(k) => format!("key-{k}"),
            None => format!("req-{}", uuid::Uuid::new_v4().simple()),
        };
        let user_slot = match self
            .slots
            .take_user(&owner_hash(req.owner), req.limit, held as u32, &holder)
            .await?
        {
            Take::Taken(s) => s,
            Take::Full => {
                return Err(StartError::UserLimit {
                    held: req.limit as usize,
                    limit: req.limit,
                });
            }
            Take::Same(slot) => {
                let demo = self.wait_for(&slot).await?;
                return Ok(Started {
                    claimed: demo.spec.claimed_at.is_some(),
                    demo,
                });
            }
        };
        let mut run_slot = None;
        let outcome = self.place(&req, &holder, &mut run_slot).await;
        match outcome {
            Ok(started) => {
                // The demo exists: an error now must not read as "not started" (the
                // caller would start another), so binding is retried and, failing
                // that, left to the janitor.
                for slot in std::iter::once(&user_slot).chain(run_slot.iter()) {
                    let mut bound = false;
                    for attempt in 0..3u64 {
                        if self.slots.bind(slot, &started.demo).await.is_ok() {
                            bound = true;
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
                    }
                    if !bound {
                        tracing::warn!(slot = %slot, demo = %started.demo.name_any(), "could not bind a slot to its demo");
                    }
                }
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

    async fn take_run(&self, holder: &str, into: &mut Option<String>) -> Result<(), StartError> {
        if self.capacity == 0 || into.is_some() {
            return Ok(());
        }
        match self.slots.take_run(self.capacity, holder).await? {
            Take::Taken(s) => {
                *into = Some(s);
                Ok(())
            }
            _ => Err(StartError::AtCapacity {
                capacity: self.capacity,
            }),
        }
    }

    /// Claims a pool member or makes a new demo.
    async fn place(
        &self,
        req: &Request<'_>,
        holder: &str,
        run_slot: &mut Option<String>,
    ) -> Result<Started, StartError> {
        let t = req.template;
        if let Some(p) = &t.warm_pool {
            // A sleeping member wakes when claimed: it needs a run slot; a running one
            // holds its own already.
            let ready = pool::members(self.cache, &t.name)
                .iter()
                .any(|d| pool::claimable(d, t));
            if ready {
                if p.state == PoolState::Sleeping {
                    self.take_run(holder, run_slot).await?;
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
        self.take_run(holder, run_slot).await?;
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
