//! Small helpers over kube (its errors, a resync timer), shared by showroom's cluster
//! code and the simulation's node agent.

use kube::api::{Api, PostParams};
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;

fn status(e: &kube::Error) -> Option<&kube::core::Status> {
    match e {
        kube::Error::Api(s) => Some(s),
        _ => None,
    }
}

pub fn is_not_found(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| s.is_not_found())
}

pub fn is_already_exists(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| s.is_already_exists())
}

pub fn is_conflict(e: &kube::Error) -> bool {
    status(e).is_some_and(|s| s.is_conflict() && !s.is_already_exists())
}

/// (wanted, ready) replicas of a StatefulSet; a missing spec count means 1, as in
/// Kubernetes.
pub fn replicas(sts: &k8s_openapi::api::apps::v1::StatefulSet) -> (i32, i32) {
    let want = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ready = sts
        .status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    (want, ready)
}

/// Creates the object unless one of that name exists; either way the step is done.
/// This is what makes every provisioning step safe to repeat after a crash.
pub async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + Debug + Serialize + DeserializeOwned,
{
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(()),
        Err(e) if is_already_exists(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes the object; one that is already gone counts as deleted.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: kube::Resource + Clone + Debug + DeserializeOwned,
{
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A stream that yields every `period` (the first after one period): a controller's
/// `reconcile_all_on` resync.
pub fn every(period: std::time::Duration) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold((), move |()| async move {
        tokio::time::sleep(period).await;
        Some(((), ()))
    })
}

/// A metadata-only watch of the objects with these labels, as a trigger stream for a
/// controller: a change is all it needs to hear of; it reads the rest itself.
pub fn changes_of<K>(
    api: Api<kube::api::PartialObjectMeta<K>>,
    labels: &str,
) -> impl futures::Stream<Item = Result<kube::api::PartialObjectMeta<K>, kube::runtime::watcher::Error>>
+ Send
+ 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    use kube::runtime::{WatchStreamExt, watcher};
    watcher::watcher(api, watcher::Config::default().labels(labels))
        .default_backoff()
        .touched_objects()
}
