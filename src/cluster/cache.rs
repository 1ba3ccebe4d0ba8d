//! What every replica keeps in memory, each from one watch: the Demos, with indexes for
//! the lookups on hot paths (a share link by its token's hash, a user's demos, a page
//! of the list, a warm pool's members, an Idempotency-Key), and the metadata of
//! namespaces and slot Leases for the sweep and the slot janitor.
//!
//! managedFields are dropped on the way in: nothing here reads them, and after a few
//! writes by different managers they are a large part of an object's bytes. Nothing on
//! a request path lists from the API server; the controller is fed from the same Demo
//! watch (`triggers`), so the Demos are held once.

use super::crd::*;
use super::meta::Meta;
use super::slots::SLOT_LABEL;
use base64::Engine;
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Where a demo sorts in lists: newest first, then by name. A page resumes after the
/// key of the last demo it showed, so a demo made or removed meanwhile neither repeats
/// nor skips one.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListKey {
    newest_first: Reverse<i64>,
    name: String,
}

impl ListKey {
    fn of(d: &Demo) -> ListKey {
        ListKey {
            newest_first: Reverse(super::lease::created_at(d).timestamp_millis()),
            name: d.name_any(),
        }
    }

    /// The `continue` token of a page that ends here.
    pub fn token(&self) -> String {
        let raw = format!("{}/{}", self.newest_first.0, self.name);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads a `continue` token; None if this server could not have issued it.
    pub fn from_token(token: &str) -> Option<ListKey> {
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (millis, name) = raw.split_once('/')?;
        (!name.is_empty() && name.len() <= 253).then_some(())?;
        Some(ListKey {
            newest_first: Reverse(millis.parse().ok()?),
            name: name.to_string(),
        })
    }
}

/// What the index holds of one demo, to take it out again when it changes.
struct Entry {
    key: ListKey,
    /// The owner, for a demo that is someone's (not an unclaimed pool member).
    owner: Option<String>,
    pool: Option<String>,
    idempotency: Option<String>,
    tokens: Vec<String>,
}

#[derive(Default)]
struct Index {
    entries: HashMap<String, Entry>,
    /// A share link's token hash: (demo, link id).
    tokens: HashMap<String, (String, String)>,
    /// Every demo that is someone's, in list order.
    listed: BTreeSet<ListKey>,
    by_owner: HashMap<String, BTreeSet<ListKey>>,
    by_idempotency: HashMap<String, String>,
    pools: HashMap<String, BTreeSet<String>>,
}

impl Index {
    fn insert(&mut self, d: &Demo) {
        let name = d.name_any();
        self.remove(&name);
        let key = ListKey::of(d);
        let owner = d.spec.pool.is_none().then(|| d.spec.owner.clone());
        if let Some(o) = &owner {
            self.listed.insert(key.clone());
            self.by_owner
                .entry(o.clone())
                .or_default()
                .insert(key.clone());
        }
        if let Some(p) = &d.spec.pool {
            self.pools
                .entry(p.clone())
                .or_default()
                .insert(name.clone());
        }
        let idempotency = d.labels().get(IDEMPOTENCY_LABEL).cloned();
        if let Some(k) = &idempotency {
            self.by_idempotency.insert(k.clone(), name.clone());
        }
        let mut tokens = Vec::new();
        for l in &d.spec.share_links {
            self.tokens
                .insert(l.token_sha256.clone(), (name.clone(), l.id.clone()));
            tokens.push(l.token_sha256.clone());
        }
        self.entries.insert(
            name,
            Entry {
                key,
                owner,
                pool: d.spec.pool.clone(),
                idempotency,
                tokens,
            },
        );
    }

    fn remove(&mut self, name: &str) {
        let Some(e) = self.entries.remove(name) else {
            return;
        };
        if let Some(o) = &e.owner {
            self.listed.remove(&e.key);
            if let Some(set) = self.by_owner.get_mut(o) {
                set.remove(&e.key);
                if set.is_empty() {
                    self.by_owner.remove(o);
                }
            }
        }
        if let Some(p) = &e.pool
            && let Some(set) = self.pools.get_mut(p)
        {
            set.remove(name);
            if set.is_empty() {
                self.pools.remove(p);
            }
        }
        if let Some(k) = &e.idempotency
            && self.by_idempotency.get(k).map(String::as_str) == Some(name)
        {
            self.by_idempotency.remove(k);
        }
        for t in &e.tokens {
            if self.tokens.get(t).is_some_and(|(d, _)| d == name) {
                self.tokens.remove(t);
            }
        }
    }
}

/// One page of a list.
pub struct Page {
    pub demos: Vec<Arc<Demo>>,
    /// Where the next page starts; None on the last page.
    pub next: Option<ListKey>,
    /// How many demos the whole list holds.
    pub total: usize,
}

/// The Demos of this installation, indexed. Cheap to clone.
#[derive(Clone)]
pub struct DemoCache {
    store: Store<Demo>,
    index: Arc<RwLock<Index>>,
    /// The name of each Demo as it changes, for the controller (names, not objects:
    /// the channel keeps its last 4,096 messages, and those were 4,096 stale Demos).
    changes: broadcast::Sender<String>,
    ready: Ready,
    /// Counts the watch events applied, to wake those waiting for a write to show.
    applied: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Whether a cache has listed once. (kube's `Store::wait_until_ready` wakes only the
/// last of several tasks waiting at once, so every waiter here uses this instead.)
#[derive(Clone)]
pub struct Ready(Arc<tokio::sync::watch::Sender<bool>>);

impl Ready {
    pub(super) fn new() -> Ready {
        Ready(Arc::new(tokio::sync::watch::channel(false).0))
    }
    pub(super) fn set(&self) {
        self.0.send_replace(true);
    }
    pub fn is_ready(&self) -> bool {
        *self.0.borrow()
    }
    pub async fn wait(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

impl DemoCache {
    fn index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The reflector store under the indexes (the controller reads from it).
    pub fn store(&self) -> &Store<Demo> {
        &self.store
    }

    pub fn get(&self, name: &str) -> Option<Arc<Demo>> {
        self.store.get(&ObjectRef::new(name))
    }

    /// Every Demo, in no order.
    pub fn all(&self) -> Vec<Arc<Demo>> {
        self.store.state()
    }

    pub fn len(&self) -> usize {
        self.index().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub async fn wait_until_ready(&self) {
        self.ready.wait().await
    }

    /// Waits (up to `timeout`) until the cache holds `name` at `resource_version` or
    /// later, so that a page or answer after a write shows that write. True once it
    /// does. resourceVersions are compared as numbers: Kubernetes calls them opaque, but
    /// etcd's and the simulation's are increasing integers; for any other kind this
    /// does not wait.
    pub async fn wait_for(
        &self,
        name: &str,
        resource_version: &str,
        timeout: std::time::Duration,
    ) -> bool {
        let Ok(want) = resource_version.parse::<u64>() else {
            return false;
        };
        // Subscribed before looking, so an event applied in between still wakes us.
        let mut applied = self.applied.subscribe();
        let seen = || {
            self.get(name)
                .and_then(|d| d.resource_version()?.parse::<u64>().ok())
                .is_some_and(|have| have >= want)
        };
        tokio::time::timeout(timeout, async {
            while !seen() {
                if applied.changed().await.is_err() {
                    return false;
                }
            }
            true
        })
        .await
        .unwrap_or(false)
    }

    /// The demo holding a share link whose token hashes to `hash`, and the link's id.
    pub fn by_token_hash(&self, hash: &str) -> Option<(Arc<Demo>, String)> {
        let (name, link) = self.index().tokens.get(hash).cloned()?;
        Some((self.get(&name)?, link))
    }

    /// The demo an earlier start with this Idempotency-Key hash made or claimed.
    pub fn by_idempotency(&self, key: &str) -> Option<Arc<Demo>> {
        let name = self.index().by_idempotency.get(key).cloned()?;
        self.get(&name)
    }

    /// A user's demos, newest first.
    pub fn of_owner(&self, owner: &str) -> Vec<Arc<Demo>> {
        let names: Vec<String> = self
            .index()
            .by_owner
            .get(owner)
            .map(|s| s.iter().map(|k| k.name.clone()).collect())
            .unwrap_or_default();
        names.iter().filter_map(|n| self.get(n)).collect()
    }

    /// The members of a template's warm pool not yet claimed (deleting ones included).
    pub fn pool_members(&self, template: &str) -> Vec<Arc<Demo>> {
        let names: Vec<String> = self
            .index()
            .pools
            .get(template)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        names.iter().filter_map(|n| self.get(n)).collect()
    }

    /// Up to `limit` demos (of `owner`, or everyone's), newest first, after `after`.
    pub fn page(&self, owner: Option<&str>, after: Option<&ListKey>, limit: usize) -> Page {
        let (names, next, total) = {
            let ix = self.index();
            let empty = BTreeSet::new();
            let set = match owner {
                Some(o) => ix.by_owner.get(o).unwrap_or(&empty),
                None => &ix.listed,
            };
            let range = match after {
                Some(k) => set.range((
                    std::ops::Bound::Excluded(k.clone()),
                    std::ops::Bound::Unbounded,
                )),
                None => set.range::<ListKey, _>(..),
            };
            let mut keys: Vec<ListKey> = range.take(limit.saturating_add(1)).cloned().collect();
            let next = if keys.len() > limit {
                keys.truncate(limit);
                keys.last().cloned()
            } else {
                None
            };
            (keys, next, set.len())
        };
        Page {
            demos: names.iter().filter_map(|k| self.get(&k.name)).collect(),
            next,
            total,
        }
    }

    /// What the controller reconciles: every Demo once the cache has synced, then each
    /// Demo as it changes (everything again after a relist, or if it fell behind).
    pub fn triggers(&self) -> impl Stream<Item = Arc<Demo>> + Send + use<> {
        let mut rx = self.changes.subscribe();
        let store = self.store.clone();
        let ready = self.ready.clone();
        async_stream::stream! {
            ready.wait().await;
            for d in store.state() {
                yield d;
            }
            loop {
                match rx.recv().await {
                    // The current version (gone since: nothing to reconcile).
                    Ok(name) => {
                        if let Some(d) = store.get(&ObjectRef::new(&name)) {
                            yield d;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        for d in store.state() {
                            yield d;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    }
}

/// The caches of one replica.
#[derive(Clone)]
pub struct Caches {
    pub demos: DemoCache,
    pub namespaces: MetaCache<Namespace>,
    pub slots: MetaCache<Lease>,
    /// The saved templates; it keeps the catalogue's saved part current.
    pub saved: super::saving::SavedCache,
}

impl Caches {
    /// Starts every cache; the tasks keep them current until aborted.
    pub fn start(
        client: &Client,
        namespace: &str,
        instance: &Instance,
        catalogue: Arc<crate::domain::template::Catalogue>,
    ) -> (Caches, Vec<JoinHandle<()>>) {
        let (demos, a) = demos(client, instance);
        let (namespaces, b) = namespaces(client);
        let (slots, c) = slots(client, namespace, instance);
        let (saved, d) = super::saving::watch(client, namespace, instance, catalogue);
        (
            Caches {
                demos,
                namespaces,
                slots,
                saved,
            },
            vec![a, b, c, d],
        )
    }

    /// Until every cache has listed once: before that, a missing object proves nothing.
    pub async fn wait_until_ready(&self) {
        self.demos.wait_until_ready().await;
        self.namespaces.wait_until_ready().await;
        self.slots.wait_until_ready().await;
        // Before this, a saved template's demos would look orphaned of their template.
        self.saved.wait_until_ready().await;
    }
}

/// Whether `after` differs from `before` only in the provisioning progress and its
/// message: the controller's own record of a step, written by a reconcile that has
/// already looked as far as it could and set when to look again. Reconciling on it
/// repeated that look (and its GETs of the Job, the vcluster or the kubeconfig) for
/// nothing: several times per demo. Every other change (spec, labels, annotations,
/// deletion, any other status field) still triggers.
fn only_progress(before: &Demo, after: &Demo) -> bool {
    let (b, a) = (&before.metadata, &after.metadata);
    if before.spec != after.spec
        || b.labels != a.labels
        || b.annotations != a.annotations
        || b.finalizers != a.finalizers
        || b.deletion_timestamp != a.deletion_timestamp
        || b.uid != a.uid
    {
        return false;
    }
    match (&before.status, &after.status) {
        (Some(b), Some(a)) => {
            let a_without = DemoStatus {
                progress: b.progress.clone(),
                message: b.message.clone(),
                ..a.clone()
            };
            (b.progress != a.progress || b.message != a.message) && *b == a_without
        }
        _ => false,
    }
}

/// What a watch keeps current (the Demo index, a metadata map), one object at a time.
trait Follows<K> {
    fn apply(&mut self, o: &K);
    fn delete(&mut self, o: &K);
}

/// A relist under way, and the fresh view it builds. Changes apply in place; a relist
/// builds a new view that replaces the old one when it ends, so that what was removed
/// while the watch was down goes too. (`workloads` keeps its states in place through a
/// relist instead: provisioning reads them meanwhile.)
struct Relist<T>(Option<T>);

impl<T> Default for Relist<T> {
    fn default() -> Self {
        Relist(None)
    }
}

impl<T> Relist<T> {
    /// Applies `ev` to `live`, or to the view a relist builds; true when a relist ended.
    fn apply<K>(&mut self, ev: &watcher::Event<K>, live: &RwLock<T>, fresh: impl Fn() -> T) -> bool
    where
        T: Follows<K>,
    {
        let live = || live.write().unwrap_or_else(|p| p.into_inner());
        match ev {
            watcher::Event::Apply(o) => live().apply(o),
            watcher::Event::Delete(o) => live().delete(o),
            watcher::Event::Init => self.0 = Some(fresh()),
            watcher::Event::InitApply(o) => self.0.get_or_insert_with(&fresh).apply(o),
            watcher::Event::InitDone => {
                *live() = self.0.take().unwrap_or_else(fresh);
                return true;
            }
        }
        false
    }
}

impl Follows<Demo> for Index {
    fn apply(&mut self, d: &Demo) {
        self.insert(d);
    }
    fn delete(&mut self, d: &Demo) {
        self.remove(&d.name_any());
    }
}

/// A metadata map's key: "namespace/name".
fn meta_key<K>(o: &PartialObjectMeta<K>) -> String {
    format!(
        "{}/{}",
        o.metadata.namespace.as_deref().unwrap_or_default(),
        o.metadata.name.as_deref().unwrap_or_default()
    )
}

impl<K> Follows<PartialObjectMeta<K>> for Metas {
    fn apply(&mut self, o: &PartialObjectMeta<K>) {
        self.insert(meta_key(o), Arc::new(Meta::of(&o.metadata)));
    }
    fn delete(&mut self, o: &PartialObjectMeta<K>) {
        self.remove(&meta_key(o));
    }
}

/// Drops what no reader of the Demo cache uses: managedFields, and the Ready
/// condition (written for `kubectl wait` and other tools; showroom reads the phase).
/// Nothing writes a cached Demo back whole, so nothing dropped here is lost.
fn strip(d: &mut Demo) {
    d.metadata.managed_fields = None;
    if let Some(st) = &mut d.status {
        st.conditions = Vec::new();
    }
}

/// Starts the Demo cache of `instance`; it keeps itself current until aborted.
pub fn demos(client: &Client, instance: &Instance) -> (DemoCache, JoinHandle<()>) {
    let mut writer = reflector::store::Writer::<Demo>::default();
    let cache = DemoCache {
        store: writer.as_reader(),
        index: Default::default(),
        changes: broadcast::channel(4096).0,
        ready: Ready::new(),
        applied: Arc::new(tokio::sync::watch::channel(0).0),
    };
    let stream = watcher(
        Api::<Demo>::all(client.clone()),
        watcher::Config::default().labels(&instance.selector()),
    )
    .default_backoff()
    .modify(strip);
    let c = cache.clone();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        let mut relist = Relist::default();
        while let Some(ev) = stream.next().await {
            let ev = match ev {
                Ok(ev) => ev,
                Err(e) => {
                    tracing::debug!(error = %e, "demo watch interrupted; retrying");
                    continue;
                }
            };
            let before = match &ev {
                watcher::Event::Apply(d) => c.store.get(&ObjectRef::from_obj(d)),
                _ => None,
            };
            writer.apply_watcher_event(&ev);
            let relisted = relist.apply(&ev, &c.index, Index::default);
            if let watcher::Event::Apply(d) = &ev
                && !before.is_some_and(|b| only_progress(&b, d))
            {
                let _ = c.changes.send(d.name_any());
            }
            if relisted {
                c.ready.set();
                // Whatever changed while the watch was down: look at everything.
                for d in c.store.state() {
                    let _ = c.changes.send(d.name_any());
                }
            }
            c.applied.send_modify(|n| *n += 1);
        }
    });
    (cache, task)
}

/// A metadata-only cache of a kind, kept current until the task is aborted. It keeps a
/// compact [`Meta`] of each object (see there why), keyed by namespace and name.
fn metadata<K>(
    api: Api<PartialObjectMeta<K>>,
    cfg: watcher::Config,
    index: Option<&'static str>,
) -> (MetaCache<K>, JoinHandle<()>)
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let cache = MetaCache {
        objects: Arc::new(RwLock::new(Metas::new(index))),
        ready: Ready::new(),
        kind: std::marker::PhantomData,
    };
    let c = cache.clone();
    let task = tokio::spawn(async move {
        let stream = watcher(api, cfg).default_backoff();
        futures::pin_mut!(stream);
        let mut relist = Relist::default();
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if relist.apply(&ev, &c.objects, || Metas::new(index)) {
                        c.ready.set();
                    }
                }
                Err(e) => tracing::debug!(error = %e, "metadata watch interrupted; retrying"),
            }
        }
    });
    (cache, task)
}

/// The metadata of every object of a kind that a watch selects.
#[derive(Clone)]
pub struct MetaCache<K> {
    objects: Arc<RwLock<Metas>>,
    ready: Ready,
    kind: std::marker::PhantomData<fn() -> K>,
}

/// The objects by "namespace/name", and by the value of one label when asked for (the
/// slot Leases by the demo they are for: freeing a demo's slots looked at every slot,
/// 10,000 of them at 10,000 demos, on each deletion).
struct Metas {
    all: HashMap<String, Arc<Meta>>,
    index: Option<&'static str>,
    by_label: HashMap<Box<str>, HashSet<String>>,
}

impl Metas {
    fn new(index: Option<&'static str>) -> Metas {
        Metas {
            all: HashMap::new(),
            index,
            by_label: HashMap::new(),
        }
    }

    fn insert(&mut self, key: String, m: Arc<Meta>) {
        self.remove(&key);
        if let Some(v) = self.index.and_then(|l| m.label(l)) {
            self.by_label
                .entry(v.into())
                .or_default()
                .insert(key.clone());
        }
        self.all.insert(key, m);
    }

    fn remove(&mut self, key: &str) {
        let Some(old) = self.all.remove(key) else {
            return;
        };
        if let Some(v) = self.index.and_then(|l| old.label(l))
            && let Some(keys) = self.by_label.get_mut(v)
        {
            keys.remove(key);
            if keys.is_empty() {
                self.by_label.remove(v);
            }
        }
    }
}

impl<K> MetaCache<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Metas> {
        self.objects.read().unwrap_or_else(|p| p.into_inner())
    }
    pub fn state(&self) -> Vec<Arc<Meta>> {
        self.read().all.values().cloned().collect()
    }
    /// The objects whose indexed label has `value` (none if the cache has no index).
    pub fn labelled(&self, value: &str) -> Vec<Arc<Meta>> {
        let kept = self.read();
        kept.by_label
            .get(value)
            .into_iter()
            .flatten()
            .filter_map(|k| kept.all.get(k).cloned())
            .collect()
    }
    pub async fn wait_until_ready(&self) {
        self.ready.wait().await
    }
}

/// Every namespace's metadata: the sweep looks for demo namespaces and lookalikes.
pub fn namespaces(client: &Client) -> (MetaCache<Namespace>, JoinHandle<()>) {
    metadata(Api::all(client.clone()), watcher::Config::default(), None)
}

/// The metadata of this installation's slot Leases, for the janitor.
pub fn slots(
    client: &Client,
    namespace: &str,
    instance: &Instance,
) -> (MetaCache<Lease>, JoinHandle<()>) {
    metadata(
        Api::namespaced(client.clone(), namespace),
        watcher::Config::default().labels(&format!("{},{SLOT_LABEL}", instance.selector())),
        Some(DEMO_LABEL),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn demo(name: &str, owner: &str, created_s: i64, pool: Option<&str>, tokens: &[&str]) -> Demo {
        let created = chrono::DateTime::from_timestamp(created_s, 0).unwrap();
        let links: Vec<_> = tokens
            .iter()
            .map(|t| json!({"id": format!("l{t}"), "tokenSha256": t, "createdAt": created}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "showroom.dev/v1alpha1", "kind": "Demo",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"template": "t", "owner": owner, "pool": pool, "shareLinks": links,
                     "lifecycle": {"sleepAfterIdle": "30m", "deleteAfterIdle": "24h", "maxLifetime": "72h"},
                     "desiredState": "Running"}
        }))
        .unwrap()
    }

    fn names(ix: &Index, owner: Option<&str>) -> Vec<String> {
        let set = match owner {
            Some(o) => ix.by_owner.get(o).cloned().unwrap_or_default(),
            None => ix.listed.clone(),
        };
        set.into_iter().map(|k| k.name).collect()
    }

    #[test]
    fn the_index_follows_changes_and_removals() {
        let mut ix = Index::default();
        ix.insert(&demo("demo-a", "alice", 100, None, &["ta"]));
        ix.insert(&demo("demo-b", "bob", 200, None, &[]));
        ix.insert(&demo("demo-p", "", 300, Some("shop"), &[]));
        assert_eq!(
            names(&ix, None),
            ["demo-b", "demo-a"],
            "newest first, no pool members"
        );
        assert_eq!(names(&ix, Some("alice")), ["demo-a"]);
        assert_eq!(ix.tokens["ta"], ("demo-a".to_string(), "lta".to_string()));
        assert!(ix.pools["shop"].contains("demo-p"));

        // Claimed: the pool member becomes carol's, with a link.
        ix.insert(&demo("demo-p", "carol", 300, None, &["tp"]));
        assert!(!ix.pools.contains_key("shop"));
        assert_eq!(names(&ix, None), ["demo-p", "demo-b", "demo-a"]);
        assert_eq!(names(&ix, Some("carol")), ["demo-p"]);
        // A revoked link stays in the spec; a link removed from it leaves the index.
        ix.insert(&demo("demo-a", "alice", 100, None, &[]));
        assert!(!ix.tokens.contains_key("ta"));
        ix.remove("demo-b");
        assert_eq!(names(&ix, None), ["demo-p", "demo-a"]);
        assert!(!ix.by_owner.contains_key("bob"));
    }

    #[test]
    fn only_the_controllers_own_progress_record_goes_unannounced() {
        let step = |state: &str| {
            serde_json::from_value::<ProgressStep>(
                json!({"name": "restore", "state": state, "startedAt": "2026-11-28T00:00:00Z"}),
            )
            .unwrap()
        };
        let mut before = demo("demo-a", "alice", 100, None, &[]);
        before.status = Some(DemoStatus {
            phase: Some(crate::domain::lifecycle::Phase::Provisioning),
            progress: vec![step("Running")],
            message: Some("provisioning: restore".into()),
            ..Default::default()
        });
        let mut progressed = before.clone();
        let st = progressed.status.as_mut().unwrap();
        st.progress = vec![step("Done")];
        st.message = Some("provisioning: boot".into());
        assert!(only_progress(&before, &progressed));
        assert!(
            !only_progress(&before, &before),
            "nothing changed: a relist, a resync"
        );

        let mut ready = progressed.clone();
        ready.status.as_mut().unwrap().phase = Some(crate::domain::lifecycle::Phase::Ready);
        assert!(!only_progress(&before, &ready), "another status field");
        let mut extended = progressed.clone();
        extended.spec.lifecycle.extension = Some("1h".into());
        assert!(!only_progress(&before, &extended), "the spec");
        let mut annotated = progressed.clone();
        annotated
            .annotations_mut()
            .insert("showroom.dev/x".into(), "y".into());
        assert!(!only_progress(&before, &annotated), "an annotation");
        let mut deleted = progressed.clone();
        deleted.metadata.deletion_timestamp = before.metadata.creation_timestamp.clone();
        assert!(!only_progress(&before, &deleted), "the deletion");
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_what_was_not_issued() {
        let k = ListKey::of(&demo("demo-x", "a", 1_700_000_000, None, &[]));
        assert_eq!(ListKey::from_token(&k.token()), Some(k));
        for bad in ["", "!!", "bm9zbGFzaA", "eC95"] {
            assert_eq!(ListKey::from_token(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_label_index_follows_changes_removals_and_relists() {
        let slot = |name: &str, demo: Option<&str>| {
            let mut m = kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            };
            if let Some(d) = demo {
                m.labels = Some([(DEMO_LABEL.to_string(), d.to_string())].into());
            }
            Arc::new(Meta::of(&m))
        };
        let names = |v: Vec<Arc<Meta>>| {
            let mut n: Vec<String> = v.iter().map(|m| m.name.to_string()).collect();
            n.sort();
            n
        };
        let mut k = Metas::new(Some(DEMO_LABEL));
        k.insert("ns/a".into(), slot("a", Some("d1")));
        k.insert("ns/b".into(), slot("b", Some("d1")));
        k.insert("ns/c".into(), slot("c", None));
        let cache = MetaCache::<Lease> {
            objects: Arc::new(RwLock::new(k)),
            ready: Ready::new(),
            kind: std::marker::PhantomData,
        };
        assert_eq!(names(cache.labelled("d1")), ["a", "b"]);
        // Relabelled: it moves; unlabelled: it leaves the index, not the cache.
        let event = |name: &str, demo: Option<&str>| {
            let mut m = kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            };
            if let Some(d) = demo {
                m.labels = Some([(DEMO_LABEL.to_string(), d.to_string())].into());
            }
            kube::core::PartialObjectMetaExt::into_response_partial::<Lease>(m)
        };
        let mut relist = Relist::default();
        let fresh = || Metas::new(Some(DEMO_LABEL));
        let apply = |relist: &mut Relist<Metas>, ev| relist.apply(&ev, &cache.objects, fresh);
        apply(&mut relist, watcher::Event::Apply(event("b", Some("d2"))));
        apply(&mut relist, watcher::Event::Apply(event("a", None)));
        assert_eq!(names(cache.labelled("d1")), Vec::<String>::new());
        assert_eq!(names(cache.labelled("d2")), ["b"]);
        assert_eq!(cache.state().len(), 3);
        apply(&mut relist, watcher::Event::Delete(event("b", Some("d2"))));
        assert!(cache.labelled("d2").is_empty());
        assert!(cache.read().by_label.is_empty(), "no empty entries kept");
        // A relist: until it ends, the cache stays as it was; then it holds what the
        // relist listed, and nothing removed while the watch was down.
        assert!(!apply(&mut relist, watcher::Event::Init));
        apply(
            &mut relist,
            watcher::Event::InitApply(event("d", Some("d3"))),
        );
        assert_eq!(cache.state().len(), 2, "a and c, until the relist ends");
        assert!(apply(&mut relist, watcher::Event::InitDone));
        assert_eq!(names(cache.state()), ["d"]);
        assert_eq!(names(cache.labelled("d3")), ["d"]);
        // Without an index, nothing is labelled.
        let mut plain = Metas::new(None);
        plain.insert("ns/a".into(), slot("a", Some("d1")));
        assert!(plain.by_label.is_empty());
    }
}
