//! Saving a live demo as a new template (`vcluster snapshot create`), and the catalogue
//! of saved templates every replica keeps from the cluster.
//!
//! A save is a `DemoTemplate` in showroom's namespace, created at once (its name is
//! the lock: two saves cannot write the same template) but offered only when its
//! `status.phase` is `Ready`. The leader runs the template's pinned vcluster CLI in a
//! Job in the demo's namespace; the CLI only files a snapshot request, which the
//! vcluster's control plane carries out and reports on in a ConfigMap labelled
//! `vcluster.loft.sh/snapshot-request`. When the request has completed, the template
//! is Ready; when anything fails, the DemoTemplate is deleted (no half template) and
//! the demo's `status.save` says why.

use super::actions::{Part, guarded_write, namespace_of, patch_status, vcluster_of};
use super::cache::DemoCache;
use super::controller::Context;
use super::crd::*;
use super::provisioner::{Outcome, job_object, run_job};
use crate::domain::lifecycle::Phase;
use crate::domain::saved::{Provenance, SaveRequest, derive};
use crate::domain::template::{Catalogue, SavedTemplate, Template, TemplateError};
use crate::k8s::{is_already_exists, is_not_found};
use chrono::Utc;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The label vcluster puts on the ConfigMap of a snapshot request.
pub const SNAPSHOT_REQUEST_LABEL: &str = "vcluster.loft.sh/snapshot-request";
/// The ConfigMap key holding the request (spec.url, status.phase, status.error).
pub const SNAPSHOT_REQUEST_KEY: &str = "snapshotRequest";
/// While a save is in motion, look again this often.
const POLL: Duration = Duration::from_secs(1);

/// The Job that snapshots a demo for the template `name`.
pub fn job_name(template: &str) -> String {
    format!("showroom-snapshot-{template}")
}

/// The vcluster CLI call the save Job makes.
pub fn snapshot_args(vcluster: &str, ns: &str, url: &str) -> Vec<String> {
    ["snapshot", "create", vcluster, url, "--namespace", ns]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Why a save was refused.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("{0}")]
    NotNow(String),
    #[error("a template named {0:?} exists already; choose another name")]
    NameTaken(String),
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(TemplateError),
    #[error(transparent)]
    Kube(#[from] kube::Error),
}

/// Starts saving `demo` as a new template: the DemoTemplate (not offered yet) and the
/// demo's `status.save`. The leader does the rest.
///
/// `demo` may come from a cache that lags: the `status.save` write is guarded by the
/// resourceVersion the checks saw, and on a conflict the checks run again on the stored
/// Demo, so two saves of one demo never both start, however close together.
pub async fn request(
    client: &Client,
    namespace: &str,
    instance: &Instance,
    catalogue: &Catalogue,
    demo: &Demo,
    req: &SaveRequest,
    by: &str,
) -> Result<(DemoTemplate, Demo), SaveError> {
    let name = demo.name_any();
    may_save(demo)?;
    let Some(origin) = catalogue.get(&demo.spec.template) else {
        return Err(SaveError::NotNow(format!(
            "the template {:?} of demo {name:?} no longer exists",
            demo.spec.template
        )));
    };
    let provenance = Provenance {
        saved_by: by.to_string(),
        from_demo: name.clone(),
        from_template: origin.name.clone(),
        saved_at: Utc::now(),
    };
    let template = derive(&origin, req, &provenance).map_err(SaveError::Invalid)?;
    if catalogue.contains(&template.name) {
        return Err(SaveError::NameTaken(template.name));
    }
    let dt: DemoTemplate = serde_json::from_value(json!({
        "apiVersion": "showroom.dev/v1alpha1", "kind": "DemoTemplate",
        "metadata": {
            "name": template.name,
            "labels": {INSTANCE_LABEL: instance.name(), DEMO_LABEL: name},
            "annotations": {DEMO_UID_ANNOTATION: demo.uid().unwrap_or_default()},
            "finalizers": [TEMPLATE_IN_USE_FINALIZER],
        },
        "spec": {"template": template, "provenance": provenance},
    }))
    .expect("a DemoTemplate");
    let api: Api<DemoTemplate> = Api::namespaced(client.clone(), namespace);
    let created = match api.create(&PostParams::default(), &dt).await {
        Ok(c) => c,
        Err(e) if is_already_exists(&e) => return Err(SaveError::NameTaken(template.name)),
        Err(e) => return Err(e.into()),
    };
    let save = SaveStatus {
        template: template.name.clone(),
        phase: SavePhase::Saving,
        snapshot: template.snapshot.clone(),
        started_at: provenance.saved_at,
        finished_at: None,
        message: Some("writing the snapshot".into()),
    };
    match mark_saving(client, demo, &save).await {
        Ok(marked) => Ok((created, marked)),
        Err(e) => {
            // Refused (another save won, the demo changed) or gone: take the reservation back.
            let _ = forget(&api, &template.name).await;
            Err(e)
        }
    }
}

/// Whether `demo`, as read, may start a save.
fn may_save(demo: &Demo) -> Result<(), SaveError> {
    let name = demo.name_any();
    if demo.phase() != Phase::Ready {
        return Err(SaveError::NotNow(format!(
            "demo {name:?} is {}; a demo is saved while it runs (wake it first)",
            demo.phase().as_str()
        )));
    }
    if let Some(s) = demo.status.as_ref().and_then(|s| s.save.as_ref())
        && s.phase == SavePhase::Saving
    {
        return Err(SaveError::NotNow(format!(
            "demo {name:?} is being saved as {:?} already; wait until that is done",
            s.template
        )));
    }
    Ok(())
}

/// Writes `status.save` only onto a Demo the checks pass on (see `guarded_write`).
/// Returns the Demo as written, so that the caller can wait for its cache to show it.
async fn mark_saving(client: &Client, demo: &Demo, save: &SaveStatus) -> Result<Demo, SaveError> {
    let name = demo.name_any();
    guarded_write(
        client,
        &name,
        Some(demo.clone()),
        Part::Status,
        |d| {
            may_save(d)?;
            Ok(json!({"save": save}))
        },
        || SaveError::NotNow(format!("demo {name:?} kept changing; try again")),
    )
    .await
}

/// Removes a DemoTemplate for good (finalizer first).
async fn forget(api: &Api<DemoTemplate>, name: &str) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {"finalizers": null}});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    }
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether a DemoTemplate's snapshot is written.
pub fn is_ready(dt: &DemoTemplate) -> bool {
    dt.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")
}

/// What the catalogue holds of the saved templates in `store`: the Ready ones whose
/// template reads back (an invalid one is left out, with a log line).
fn catalogued(items: &[Arc<DemoTemplate>]) -> BTreeMap<String, SavedTemplate> {
    items
        .iter()
        .filter(|dt| is_ready(dt))
        .filter_map(|dt| {
            let source = format!("demotemplate/{}", dt.name_any());
            match Template::from_value(&source, dt.spec.template.clone()) {
                Ok(t) if t.name == dt.name_any() => Some((
                    t.name.clone(),
                    SavedTemplate {
                        template: Arc::new(t),
                        provenance: dt.spec.provenance.clone(),
                        retiring: dt.metadata.deletion_timestamp.is_some(),
                    },
                )),
                Ok(t) => {
                    tracing::warn!(%source, name = %t.name, "saved template's name differs from its resource's; left out");
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, "saved template is invalid; left out");
                    None
                }
            }
        })
        .collect()
}

/// This replica's view of the saved templates: it keeps `catalogue` current.
#[derive(Clone)]
pub struct SavedCache {
    store: Store<DemoTemplate>,
    ready: super::cache::Ready,
}

impl SavedCache {
    pub fn state(&self) -> Vec<Arc<DemoTemplate>> {
        self.store.state()
    }
    pub async fn wait_until_ready(&self) {
        self.ready.wait().await
    }
    /// The saves of a demo still being written.
    pub fn saving_from(&self, demo: &str) -> Vec<Arc<DemoTemplate>> {
        self.state()
            .into_iter()
            .filter(|dt| {
                !is_ready(dt) && dt.labels().get(DEMO_LABEL).map(String::as_str) == Some(demo)
            })
            .collect()
    }
}

/// Watches this instance's DemoTemplates and publishes the Ready ones to `catalogue`.
pub fn watch(
    client: &Client,
    namespace: &str,
    instance: &Instance,
    catalogue: Arc<Catalogue>,
) -> (SavedCache, JoinHandle<()>) {
    let api: Api<DemoTemplate> = Api::namespaced(client.clone(), namespace);
    let (reader, writer) = reflector::store();
    let ready = super::cache::Ready::new();
    let r = ready.clone();
    let store = reader.clone();
    let cfg = watcher::Config::default().labels(&instance.selector());
    let task = tokio::spawn(async move {
        let mut events =
            reflector::reflector(writer, watcher::watcher(api, cfg).default_backoff()).boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => {
                    catalogue.set_saved(catalogued(&store.state()));
                    r.set();
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) if r.is_ready() => {
                    catalogue.set_saved(catalogued(&store.state()));
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "template watch interrupted; retrying"),
            }
        }
    });
    (
        SavedCache {
            store: reader,
            ready,
        },
        task,
    )
}

/// What the leader needs to carry saves through.
pub struct Saver {
    pub ctx: Arc<Context>,
    pub demos: DemoCache,
    pub namespace: String,
}

/// Runs until aborted: carries each save to its end, and lets a deleted template go
/// once no demo uses it.
pub async fn run(saver: Arc<Saver>) {
    let api: Api<DemoTemplate> = Api::namespaced(saver.ctx.client.clone(), &saver.namespace);
    let cfg = watcher::Config::default().labels(&saver.ctx.instance.selector());
    Controller::new(api, cfg)
        // kube's controller drops a relist's triggers for objects its store did not
        // hold yet: a save filed while the watch was down would wait until it changed.
        // A look at every template each minute is cheap (a Ready one is done at once).
        .reconcile_all_on(crate::k8s::every(Duration::from_secs(60)))
        .run(
            reconcile,
            |_, e, _| {
                tracing::warn!(error = %e, "save step failed; retrying");
                Action::requeue(Duration::from_secs(2))
            },
            saver,
        )
        .for_each(|_| async {})
        .await;
}

async fn reconcile(dt: Arc<DemoTemplate>, s: Arc<Saver>) -> Result<Action, kube::Error> {
    let client = &s.ctx.client;
    let api: Api<DemoTemplate> = Api::namespaced(client.clone(), &s.namespace);
    let name = dt.name_any();
    if dt.metadata.deletion_timestamp.is_some() {
        // Deleting a template never breaks a demo made from it: it goes once none is left.
        let in_use = s
            .demos
            .all()
            .iter()
            .any(|d| d.spec.template == name && d.metadata.deletion_timestamp.is_none());
        if in_use {
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
        forget(&api, &name).await?;
        return Ok(Action::await_change());
    }
    if is_ready(&dt) {
        return Ok(Action::await_change());
    }
    let demo_name = dt.spec.provenance.from_demo.clone();
    let demos: Api<Demo> = Api::all(client.clone());
    let demo = demos.get_opt(&demo_name).await?.filter(|d| {
        d.uid().as_deref()
            == dt
                .annotations()
                .get(DEMO_UID_ANNOTATION)
                .map(String::as_str)
            && d.metadata.deletion_timestamp.is_none()
    });
    let Some(demo) = demo else {
        forget(&api, &name).await?;
        tracing::info!(template = %name, demo = %demo_name, "save abandoned: the demo is gone");
        return Ok(Action::await_change());
    };
    let template = match Template::from_value(&name, dt.spec.template.clone()) {
        Ok(t) => t,
        Err(e) => {
            return give_up(
                &s,
                &api,
                &dt,
                &demo,
                format!("the saved template is invalid: {e}"),
            )
            .await;
        }
    };
    let started = dt.spec.provenance.saved_at;
    let limit = template.lifecycle.provision_timeout();
    if Utc::now() - started > limit {
        let msg = format!(
            "the snapshot was not done after {}",
            crate::domain::duration::human(limit)
        );
        return give_up(&s, &api, &dt, &demo, msg).await;
    }
    let (ns, vc) = (namespace_of(&demo), vcluster_of(&demo));
    let make = || {
        let args = snapshot_args(&vc, &ns, &template.snapshot);
        Ok((job_object(&demo, &template, &job_name(&name), args)?, None))
    };
    match run_job(client, &ns, make, None, "snapshot").await? {
        Outcome::Failed(msg) => return give_up(&s, &api, &dt, &demo, msg).await,
        Outcome::InProgress => return Ok(Action::requeue(POLL)),
        Outcome::Ready => {}
    }
    // The CLI has filed the request; the vcluster carries it out.
    match request_state(client, &ns, &template.snapshot).await? {
        RequestState::Completed => {}
        RequestState::Failed(why) => {
            return give_up(
                &s,
                &api,
                &dt,
                &demo,
                format!("the vcluster could not write the snapshot: {why}"),
            )
            .await;
        }
        RequestState::Pending => return Ok(Action::requeue(POLL)),
    }
    let now = Utc::now();
    api.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Ready", "readyAt": now}})),
    )
    .await?;
    let mut save = demo
        .status
        .as_ref()
        .and_then(|st| st.save.clone())
        .filter(|v| v.template == name);
    if let Some(v) = save.as_mut() {
        v.phase = SavePhase::Saved;
        v.finished_at = Some(now);
        v.message = Some(format!(
            "saved: {:?} is in the catalogue",
            template.display_name
        ));
        patch_status(client, &demo_name, json!({"save": v})).await?;
    }
    s.ctx.event(
        &demo,
        false,
        "Saved",
        format!("saved as template {name} ({})", template.snapshot),
    );
    tracing::info!(template = %name, demo = %demo_name, snapshot = %template.snapshot, "demo saved as a template");
    Ok(Action::await_change())
}

/// Ends a save that cannot succeed: nothing stays in the catalogue, the demo says why.
async fn give_up(
    s: &Saver,
    api: &Api<DemoTemplate>,
    dt: &DemoTemplate,
    demo: &Demo,
    why: String,
) -> Result<Action, kube::Error> {
    let name = dt.name_any();
    tracing::warn!(template = %name, demo = %demo.name_any(), %why, "save failed");
    let save = SaveStatus {
        template: name.clone(),
        phase: SavePhase::Failed,
        snapshot: dt
            .spec
            .template
            .get("snapshot")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        started_at: dt.spec.provenance.saved_at,
        finished_at: Some(Utc::now()),
        message: Some(why.clone()),
    };
    patch_status(&s.ctx.client, &demo.name_any(), json!({"save": save})).await?;
    s.ctx.event(
        demo,
        true,
        "SaveFailed",
        format!("saving as template {name} failed: {why}"),
    );
    forget(api, &name).await?;
    Ok(Action::await_change())
}

enum RequestState {
    Pending,
    Completed,
    Failed(String),
}

/// Where the vcluster's snapshot request for `url` stands, from its ConfigMap.
async fn request_state(client: &Client, ns: &str, url: &str) -> Result<RequestState, kube::Error> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let list = cms
        .list(&ListParams::default().labels(SNAPSHOT_REQUEST_LABEL))
        .await?;
    for cm in list.items {
        let Some(text) = cm.data.as_ref().and_then(|d| d.get(SNAPSHOT_REQUEST_KEY)) else {
            continue;
        };
        let Ok(req) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        if req.pointer("/spec/url").and_then(Value::as_str) != Some(url) {
            continue;
        }
        return Ok(match req.pointer("/status/phase").and_then(Value::as_str) {
            Some("Completed") => RequestState::Completed,
            Some("Failed") => RequestState::Failed(
                req.pointer("/status/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .chars()
                    .take(300)
                    .collect(),
            ),
            _ => RequestState::Pending,
        });
    }
    Ok(RequestState::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_calls_vcluster_snapshot_create() {
        assert_eq!(
            snapshot_args("demo-1", "demo-1", "oci://r/x:1"),
            [
                "snapshot",
                "create",
                "demo-1",
                "oci://r/x:1",
                "--namespace",
                "demo-1"
            ]
        );
    }
}
