//! The writes that move a demo through its lifecycle, shared by the controller and the
//! sweep so that both act the same way. Each is safe to repeat.

use super::crd::*;
use super::sleeper;
use crate::k8s::is_not_found;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

pub async fn patch_status(
    client: &Client,
    name: &str,
    status: Value,
) -> Result<Written, kube::Error> {
    patch_demo(client, name, Some("status"), json!({ "status": status })).await
}

/// Merges `patch` into the Demo (or its subresource) and reads back only what the
/// callers use (see `Written`).
pub async fn patch_demo(
    client: &Client,
    name: &str,
    subresource: Option<&str>,
    patch: Value,
) -> Result<Written, kube::Error> {
    let api: Api<Demo> = Api::all(client.clone());
    crate::k8s::patch_reading(&api, name, subresource, &Patch::Merge(patch)).await
}

/// What the controller reads from the answer to its own write: the name and the new
/// resourceVersion (to wait until its cache shows the write). The answer is the whole
/// Demo, managedFields included; parsing all of it into a `Demo` made `patch_status`
/// 5 to 6% of showroom's CPU in a fill (perf), for two strings.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Written {
    metadata: WrittenMeta,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WrittenMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    resource_version: Option<String>,
}

impl Written {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    pub fn resource_version(&self) -> Option<&str> {
        self.metadata.resource_version.as_deref()
    }
}

impl From<&Demo> for Written {
    fn from(d: &Demo) -> Written {
        Written {
            metadata: WrittenMeta {
                name: d.name_any(),
                resource_version: d.resource_version(),
            },
        }
    }
}

/// The part of a Demo a guarded write changes.
#[derive(Clone, Copy)]
pub enum Part {
    Spec,
    Status,
}

/// Read-modify-write of a Demo at the API server, guarded by its resourceVersion and
/// retried on conflict. `judge` sees the Demo the write will land on: `seen` first (a
/// cached copy, to save a GET; None reads the stored one), then the stored one after
/// each conflict. It returns the fields of `part` to merge, or refuses. So a check is
/// never passed on a stale copy alone (a cache lagging a double click), and concurrent
/// changes never overwrite one another. `busy` is the error once it kept changing.
pub async fn guarded_write<E: From<kube::Error>>(
    client: &Client,
    name: &str,
    seen: Option<Demo>,
    part: Part,
    judge: impl Fn(&Demo) -> Result<Value, E>,
    busy: impl FnOnce() -> E,
) -> Result<Demo, E> {
    let api: Api<Demo> = Api::all(client.clone());
    let mut current = match seen {
        Some(d) => d,
        None => api.get(name).await?,
    };
    let pp = PatchParams::default();
    for _ in 0..5 {
        let fields = judge(&current)?;
        let rv = json!({"resourceVersion": current.resource_version()});
        let written = match part {
            Part::Spec => {
                let patch = Patch::Merge(json!({"metadata": rv, "spec": fields}));
                api.patch(name, &pp, &patch).await
            }
            Part::Status => {
                let patch = Patch::Merge(json!({"metadata": rv, "status": fields}));
                api.patch_status(name, &pp, &patch).await
            }
        };
        match written {
            Ok(d) => return Ok(d),
            Err(e) if crate::k8s::is_conflict(&e) => current = api.get(name).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(busy())
}

pub async fn patch_spec(client: &Client, name: &str, spec: Value) -> Result<Demo, kube::Error> {
    let api: Api<Demo> = Api::all(client.clone());
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
}

/// The condition list with `Ready` set for a phase.
pub fn ready_condition(phase: &str, message: &str) -> Value {
    json!([{
        "type": "Ready",
        "status": if phase == "Ready" { "True" } else { "False" },
        "reason": phase,
        "message": message,
        "lastTransitionTime": now(),
    }])
}

pub fn namespace_of(d: &Demo) -> String {
    d.status
        .as_ref()
        .and_then(|s| s.namespace.clone())
        .unwrap_or_else(|| d.name_any())
}

pub fn vcluster_of(d: &Demo) -> String {
    d.status
        .as_ref()
        .and_then(|s| s.vcluster.clone())
        .unwrap_or_else(|| d.name_any())
}

/// Puts the demo to sleep: records the intent in spec (so it stays asleep), pauses the
/// vcluster, then records the phase.
pub async fn sleep(client: &Client, d: &Demo, message: &str) -> Result<(), kube::Error> {
    if d.spec.desired_state != DesiredState::Sleeping {
        patch_spec(client, &d.name_any(), json!({"desiredState": "Sleeping"})).await?;
    }
    sleeper::pause(client, &namespace_of(d), &vcluster_of(d)).await?;
    let t = now();
    patch_status(
        client,
        &d.name_any(),
        json!({
            "phase": "Sleeping", "phaseSince": t, "sleepingSince": t, "message": message,
            "conditions": ready_condition("Sleeping", message),
        }),
    )
    .await?;
    Ok(())
}

/// Asks Kubernetes to delete the Demo; its finalizer then removes the namespace.
/// Returns the Demo as it now stands (marked for deletion), if it still exists.
pub async fn request_delete(client: &Client, name: &str) -> Result<Option<Demo>, kube::Error> {
    let api: Api<Demo> = Api::all(client.clone());
    match api.delete(name, &Default::default()).await {
        // Left: still there, finalizing; Right: already gone.
        Ok(answer) => Ok(answer.left()),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Ends in Failed with a message, and removes what provisioning created.
pub async fn fail(client: &Client, d: &Demo, message: &str) -> Result<(), kube::Error> {
    patch_status(
        client,
        &d.name_any(),
        json!({
            "phase": "Failed", "phaseSince": now(), "message": message,
            "conditions": ready_condition("Failed", message),
        }),
    )
    .await?;
    delete_namespace_if_ours(client, d).await?;
    Ok(())
}

/// Deletes the demo's namespace if it carries this Demo's UID. Returns true when the
/// namespace is verifiably gone (a Terminating namespace is not gone).
pub async fn delete_namespace_if_ours(client: &Client, d: &Demo) -> Result<bool, kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = namespace_of(d);
    let Some(existing) = api.get_opt(&ns).await? else {
        return Ok(true);
    };
    if existing.annotations().get(DEMO_UID_ANNOTATION) != d.uid().as_ref() {
        // Not ours: never touched. For the Demo, there is nothing left to remove.
        return Ok(true);
    }
    if existing.metadata.deletion_timestamp.is_none() {
        match api.delete(&ns, &Default::default()).await {
            // Its content goes first: never gone at once. The namespace watch says when.
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(true),
            Err(e) => return Err(e),
        }
    }
    Ok(false)
}
