//! Small helpers over kube (its errors, a resync timer), shared by showroom's cluster
//! code and the simulation's node agent.

use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::{Serialize, de::DeserializeOwned, de::IgnoredAny};
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

/// Creates the object unless one of that name exists; either way the step is done.
/// This is what makes every provisioning step safe to repeat after a crash. True if
/// this call made it, false if it was there already.
pub async fn create_if_absent<K>(api: &Api<K>, obj: &K) -> Result<bool, kube::Error>
where
    K: kube::Resource + Clone + Serialize,
{
    match create_unread(api, obj).await {
        Ok(()) => Ok(true),
        Err(e) if is_already_exists(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Creates the object and skips the answer (the object as stored) instead of parsing
/// it into `K`: `Api::create` reads it whole, managedFields included, and provisioning,
/// slots and Events never look at it.
pub async fn create_unread<K: kube::Resource + Clone + Serialize>(
    api: &Api<K>,
    obj: &K,
) -> Result<(), kube::Error> {
    let body = serde_json::to_vec(obj).map_err(kube::Error::SerdeError)?;
    let req = kube::core::Request::new(api.resource_url()).create(&PostParams::default(), body);
    send_unread(api, req).await
}

/// Merges `patch` into the object named `name`, skipping the answer (see `create_unread`).
pub async fn patch_unread<K: kube::Resource + Clone, P: Serialize + Debug>(
    api: &Api<K>,
    name: &str,
    patch: &Patch<P>,
) -> Result<(), kube::Error> {
    let _: IgnoredAny = patch_reading(api, name, None, patch).await?;
    Ok(())
}

/// Merges `patch` into the object named `name` (or its subresource) and parses the
/// answer only as `T`: the fields its caller reads, not the whole object.
pub async fn patch_reading<K, P, T>(
    api: &Api<K>,
    name: &str,
    subresource: Option<&str>,
    patch: &Patch<P>,
) -> Result<T, kube::Error>
where
    K: kube::Resource + Clone,
    P: Serialize + Debug,
    T: DeserializeOwned,
{
    let request = kube::core::Request::new(api.resource_url());
    let pp = PatchParams::default();
    let req = match subresource {
        Some(sub) => request.patch_subresource(sub, name, &pp, patch),
        None => request.patch(name, &pp, patch),
    };
    send_reading(api, req).await
}

async fn send_unread<K: kube::Resource + Clone>(
    api: &Api<K>,
    req: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<(), kube::Error> {
    let _: IgnoredAny = send_reading(api, req).await?;
    Ok(())
}

async fn send_reading<K: kube::Resource + Clone, T: DeserializeOwned>(
    api: &Api<K>,
    req: Result<http::Request<Vec<u8>>, kube::core::request::Error>,
) -> Result<T, kube::Error> {
    let req = req.map_err(kube::Error::BuildRequest)?;
    // The answer is still checked: an error status comes back as `kube::Error::Api`.
    api.clone().into_client().request(req).await
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
