//! Slots: limits that hold exactly, across replicas, with the API server's uniqueness
//! of names as the lock (no recount, no withdrawal).
//!
//! - A user may hold `limit` active demos: user slots `showroom-user-<instance>-<owner>-<k>`
//!   for k < limit.
//! - The host cluster runs at most `capacity` demos at once (pool members included):
//!   run slots `showroom-run-<instance>-<k>`. A sleeping demo holds none.
//!
//! Taking a slot is creating its Lease in showroom's namespace (AlreadyExists: taken),
//! labelled with the demo it is for (known before the Demo is made). A slot is then
//! bound to its Demo (ownerReference, so the garbage collector frees it with the Demo)
//! and freed explicitly when the demo stops counting: asleep (run slots), failed or
//! deleting (both). A slot whose demo does not exist `PENDING_GRACE` after it was
//! taken (its replica died mid-start, or the start ended otherwise) is freed by the
//! janitor; one whose demo exists counts for it, bound or not, so binding can happen
//! after the start has answered.

use super::crd::*;
use super::meta::Meta;
use crate::k8s::{create_unread, is_already_exists, is_not_found, patch_unread};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, ListParams, Patch};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// `user` or `run`.
pub const SLOT_LABEL: &str = "showroom.dev/slot";
/// How long a slot may stay unbound before the janitor frees it.
pub const PENDING_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Run,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Run => "run",
        }
    }
}

/// Who takes a slot, by its holder identity.
pub enum Holder<'a> {
    /// May come again while its first attempt is under way (a start's Idempotency-Key,
    /// a wake of one demo), and must then find the slot it holds (`Take::Same`).
    Repeatable(&'a str),
    /// New with every request: a slot taken already is never its own.
    Unique(&'a str),
}

/// The outcome of trying to take a slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Take {
    /// This slot is now ours.
    Taken(String),
    /// Every slot is held.
    Full,
    /// A slot is held by the same holder already (the same Idempotency-Key, sent
    /// twice): its Lease, to wait for the demo it gets bound to.
    Same(String),
}

#[derive(Clone)]
pub struct Slots {
    pub client: Client,
    /// showroom's own namespace, where the slot Leases live.
    pub namespace: String,
    pub instance: Instance,
    /// This replica's watch of the slot Leases: freeing a demo's slots looks there
    /// instead of listing (None: list).
    pub cache: Option<super::cache::MetaCache<Lease>>,
}

fn now_micro() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

impl Slots {
    pub fn api(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The label selector for this instance's slots of a kind.
    pub fn selector(&self, kind: Kind) -> String {
        format!(
            "{},{SLOT_LABEL}={}",
            self.instance.selector(),
            kind.as_str()
        )
    }

    fn lease(
        &self,
        name: &str,
        kind: Kind,
        owner_hash: Option<&str>,
        holder: &str,
        demo: &str,
    ) -> Lease {
        let mut labels = json!({
            INSTANCE_LABEL: self.instance.name(),
            SLOT_LABEL: kind.as_str(),
            DEMO_LABEL: demo,
        });
        if let Some(h) = owner_hash {
            labels[super::crd::OWNER_LABEL] = json!(h);
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"holderIdentity": holder, "acquireTime": now_micro()},
        }))
        .expect("a Lease")
    }

    /// Tries the slots `names` in order, for `demo`; the first one created is ours.
    /// A slot taken already is read only when `holder` may hold it itself (`Take::Same`):
    /// a holder that is new with every request never does, and the read was half the
    /// requests of a refused slot (20,000 GETs in a 10,000 fill).
    async fn take(
        &self,
        names: impl Iterator<Item = String>,
        kind: Kind,
        owner_hash: Option<&str>,
        holder: &Holder<'_>,
        demo: &str,
    ) -> Result<Take, kube::Error> {
        let api = self.api();
        let (holder, repeats) = match *holder {
            Holder::Repeatable(h) => (h, true),
            Holder::Unique(h) => (h, false),
        };
        for name in names {
            match create_unread(&api, &self.lease(&name, kind, owner_hash, holder, demo)).await {
                Ok(_) => return Ok(Take::Taken(name)),
                Err(e) if is_already_exists(&e) => {
                    if repeats
                        && let Some(l) = api.get_opt(&name).await?
                        && l.spec.and_then(|s| s.holder_identity).as_deref() == Some(holder)
                    {
                        return Ok(Take::Same(name));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Take::Full)
    }

    /// One of the owner's `limit` user slots, for `holder`, labelled for `demo`. The
    /// search starts at slot `held` (how many the cache says the owner holds, usually
    /// slots 0..held), so a start costs one create, not one per demo the user already
    /// has.
    pub async fn take_user(
        &self,
        owner_hash: &str,
        limit: u32,
        held: u32,
        holder: &Holder<'_>,
        demo: &str,
    ) -> Result<Take, kube::Error> {
        let prefix = format!("showroom-user-{}-{owner_hash}", self.instance.name());
        let start = if limit == 0 { 0 } else { held % limit };
        let names = (0..limit).map(move |i| format!("{prefix}-{}", (start + i) % limit));
        self.take(names, Kind::User, Some(owner_hash), holder, demo)
            .await
    }

    /// One of the `capacity` run slots, labelled for `demo`. The search starts at a
    /// random slot, so that concurrent starts rarely meet on the same name.
    pub async fn take_run(
        &self,
        capacity: u32,
        holder: &str,
        demo: &str,
    ) -> Result<Take, kube::Error> {
        let start = fastrand::u32(..capacity.max(1));
        let instance = self.instance.name().to_string();
        let names = (0..capacity)
            .map(move |i| format!("showroom-run-{instance}-{}", (start + i) % capacity));
        self.take(names, Kind::Run, None, &Holder::Repeatable(holder), demo)
            .await
    }

    /// Binds a slot to its demo: the garbage collector frees it with the Demo.
    pub async fn bind(&self, slot: &str, demo: &Demo) -> Result<(), kube::Error> {
        let owner = demo.controller_owner_ref(&()).map(|mut o| {
            o.controller = Some(false);
            o.block_owner_deletion = Some(false);
            o
        });
        let patch = json!({
            "metadata": {"labels": {DEMO_LABEL: demo.name_any()}, "ownerReferences": owner.into_iter().collect::<Vec<_>>()},
            "spec": {"holderIdentity": demo.name_any()},
        });
        patch_unread(&self.api(), slot, &Patch::Merge(&patch)).await
    }

    /// Frees a slot only if it is still as the cache saw it (`resource_version`): true
    /// if it is gone now.
    pub async fn free_unchanged(
        &self,
        slot: &str,
        resource_version: Option<String>,
    ) -> Result<bool, kube::Error> {
        let dp = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version,
                uid: None,
            }),
            ..Default::default()
        };
        match self.api().delete(slot, &dp).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(true),
            // Changed meanwhile (bound, or taken anew): look again next time.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn free(&self, slot: &str) -> Result<(), kube::Error> {
        match self.api().delete(slot, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Frees what a demo holds: its run slot, or (`kind` None) every slot.
    pub async fn free_for(&self, demo: &str, kind: Option<Kind>) -> Result<(), kube::Error> {
        let Some(cache) = &self.cache else {
            return self.free_listed(demo, kind).await;
        };
        for l in cache.labelled(demo) {
            if !self.is_slot_of(&l, demo, kind) {
                continue;
            }
            // The cache may be behind: a slot freed and taken again since then has a
            // new uid, and is someone else's now. The precondition leaves it alone.
            let dp = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: l.uid.as_deref().map(String::from),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match self.api().delete(&l.name, &dp).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) || crate::k8s::is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether a Lease is this instance's slot of `kind` (any, if None) bound to `demo`.
    fn is_slot_of(&self, m: &Meta, demo: &str, kind: Option<Kind>) -> bool {
        let label = |k: &str| m.label(k);
        label(INSTANCE_LABEL) == Some(self.instance.name())
            && label(DEMO_LABEL) == Some(demo)
            && kind.is_none_or(|k| label(SLOT_LABEL) == Some(k.as_str()))
    }

    /// `free_for` without a cache: lists the demo's slots.
    async fn free_listed(&self, demo: &str, kind: Option<Kind>) -> Result<(), kube::Error> {
        let mut sel = format!("{},{DEMO_LABEL}={demo}", self.instance.selector());
        if let Some(k) = kind {
            sel.push_str(&format!(",{SLOT_LABEL}={}", k.as_str()));
        }
        for l in self
            .api()
            .list(&ListParams::default().labels(&sel))
            .await?
            .items
        {
            self.free(&l.name_any()).await?;
        }
        Ok(())
    }

    /// Whether the demo holds a run slot: the slot cache names the candidates, and a
    /// GET confirms one is still bound to it (the cache may lag a free).
    pub async fn holds_run(&self, demo: &str) -> Result<bool, kube::Error> {
        let Some(cache) = &self.cache else {
            return self.holds_run_listed(demo).await;
        };
        for l in cache.labelled(demo) {
            if !self.is_slot_of(&l, demo, Some(Kind::Run)) {
                continue;
            }
            if let Some(fresh) = self.api().get_opt(&l.name).await?
                && self.is_slot_of(&Meta::of(&fresh.metadata), demo, Some(Kind::Run))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `holds_run` without a cache: lists the demo's run slots.
    async fn holds_run_listed(&self, demo: &str) -> Result<bool, kube::Error> {
        let sel = format!("{},{DEMO_LABEL}={demo}", self.selector(Kind::Run));
        Ok(!self
            .api()
            .list(&ListParams::default().labels(&sel))
            .await?
            .items
            .is_empty())
    }
}

/// Which of the instance's slots should be freed: taken but never bound for longer than
/// `PENDING_GRACE` (its replica died mid-start), or bound to a demo that no longer
/// counts (`counts(kind, demo)` false, or the demo gone).
pub fn orphaned(
    leases: &[Arc<Meta>],
    counts: impl Fn(Kind, &str) -> bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    leases
        .iter()
        .filter(|l| {
            let kind = match l.label(SLOT_LABEL) {
                Some("user") => Kind::User,
                Some("run") => Kind::Run,
                _ => return false,
            };
            match l.label(DEMO_LABEL) {
                Some(demo) => !counts(kind, demo),
                None => l.created.is_some_and(|c| {
                    now - c > chrono::Duration::from_std(PENDING_GRACE).expect("a minute")
                }),
            }
        })
        .map(|l| l.name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(name: &str, kind: &str, demo: Option<&str>, age_s: i64) -> Arc<Meta> {
        let created = (chrono::Utc::now() - chrono::Duration::seconds(age_s)).to_rfc3339();
        let mut labels = json!({SLOT_LABEL: kind});
        if let Some(d) = demo {
            labels[DEMO_LABEL] = json!(d);
        }
        let m: kube::core::ObjectMeta = serde_json::from_value(
            json!({"name": name, "labels": labels, "creationTimestamp": created}),
        )
        .unwrap();
        Arc::new(Meta::of(&m))
    }

    #[test]
    fn the_janitor_frees_unbound_old_slots_and_slots_of_demos_that_stopped_counting() {
        let leases = [
            lease("young-pending", "user", None, 5),
            lease("old-pending", "user", None, 600),
            lease("live-user", "user", Some("demo-live"), 600),
            lease("asleep-run", "run", Some("demo-asleep"), 600),
            lease("live-run", "run", Some("demo-live"), 600),
            lease("gone-user", "user", Some("demo-gone"), 600),
        ];
        let counts = |kind: Kind, demo: &str| match demo {
            "demo-live" => true,
            "demo-asleep" => kind == Kind::User,
            _ => false,
        };
        let mut freed = orphaned(&leases, counts, chrono::Utc::now());
        freed.sort();
        assert_eq!(freed, ["asleep-run", "gone-user", "old-pending"]);
    }
}
