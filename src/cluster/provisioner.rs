//! Provisioning: the demo namespace and its guard rails, then a Job that runs the
//! template's pinned vcluster CLI (`vcluster create --restore`) inside that namespace.
//! Every step is create-if-absent, so a crash at any point resumes where it stopped.

use super::crd::*;
use super::sleeper;
use super::workloads::{JobState, Workloads};
use crate::domain::template::Template;
use crate::k8s::{create_if_absent, create_unread, is_already_exists};
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Pod, ResourceQuota, Secret, ServiceAccount,
};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, ListParams};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub const PROVISIONER_SA: &str = "showroom-provisioner";
pub const VALUES_CONFIGMAP: &str = "showroom-vcluster-values";
pub const JOB_NAME: &str = "showroom-vcluster-create";
pub const QUOTA_NAME: &str = "demo-quota";
pub const LIMITS_NAME: &str = "demo-limits";

#[derive(Debug)]
pub enum Outcome {
    InProgress,
    Ready,
    Failed(String),
}

/// Tracks the user-visible progress steps.
pub struct Progress {
    pub steps: Vec<ProgressStep>,
    now: DateTime<Utc>,
}

impl Progress {
    pub fn from(existing: &[ProgressStep], now: DateTime<Utc>) -> Self {
        let steps = STEPS
            .iter()
            .map(|name| {
                existing
                    .iter()
                    .find(|s| s.name == *name)
                    .cloned()
                    .unwrap_or(ProgressStep {
                        name: name.to_string(),
                        state: StepState::Pending,
                        started_at: None,
                        finished_at: None,
                        message: None,
                    })
            })
            .collect();
        Progress { steps, now }
    }
    fn get(&mut self, name: &str) -> &mut ProgressStep {
        let i = self
            .steps
            .iter()
            .position(|s| s.name == name)
            .expect("known step");
        &mut self.steps[i]
    }
    pub fn running(&mut self, name: &str) {
        let now = self.now;
        let s = self.get(name);
        if s.state == StepState::Pending {
            s.state = StepState::Running;
            s.started_at = Some(now);
        }
    }
    pub fn done(&mut self, name: &str) {
        self.running(name);
        let now = self.now;
        let s = self.get(name);
        if s.state != StepState::Done {
            s.state = StepState::Done;
            s.finished_at = Some(now);
        }
    }
    pub fn failed(&mut self, name: &str, msg: &str) {
        self.running(name);
        let now = self.now;
        let s = self.get(name);
        s.state = StepState::Failed;
        s.finished_at = Some(now);
        s.message = Some(msg.to_string());
    }
    pub fn is_done(&self, name: &str) -> bool {
        self.steps
            .iter()
            .any(|s| s.name == name && s.state == StepState::Done)
    }
    /// The step now running, for a failure message.
    pub fn current(&self) -> Option<&str> {
        self.steps
            .iter()
            .find(|s| s.state != StepState::Done)
            .map(|s| s.name.as_str())
    }
}

fn obj<T: DeserializeOwned>(v: Value) -> Result<T, kube::Error> {
    serde_json::from_value(v).map_err(kube::Error::SerdeError)
}

/// The namespace's labels and annotations that prove showroom created it for this Demo.
pub fn namespace_object(
    demo: &Demo,
    instance: &Instance,
    ns: &str,
) -> Result<Namespace, kube::Error> {
    let owner = demo
        .controller_owner_ref(&())
        .map(|o| serde_json::to_value(o).unwrap_or_default());
    obj(json!({"metadata": {
        "name": ns,
        "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, INSTANCE_LABEL: instance.name(),
                   DEMO_LABEL: demo.name_any(), TEMPLATE_LABEL: demo.spec.template},
        "annotations": {DEMO_UID_ANNOTATION: demo.uid().unwrap_or_default()},
        "ownerReferences": owner.into_iter().collect::<Vec<_>>(),
    }}))
}

/// The vcluster CLI call the provisioning Job makes.
pub fn create_args(t: &Template, vcluster: &str, ns: &str) -> Vec<String> {
    [
        "create",
        vcluster,
        "--namespace",
        ns,
        "--chart-version",
        &t.vcluster.version,
        "--restore",
        &t.snapshot,
        "-f",
        "/values/vcluster.yaml",
        "--connect=false",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The vcluster CLI call that puts a demo back to its snapshot, in place: the
/// vcluster keeps its name, namespace, Services and volume; its backing store is
/// restored and it restarts.
pub fn restore_args(t: &Template, vcluster: &str, ns: &str) -> Vec<String> {
    ["restore", vcluster, &t.snapshot, "--namespace", ns]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// The Job of the reset with this generation.
pub fn restore_job_name(generation: u32) -> String {
    format!("showroom-vcluster-restore-{generation}")
}

/// A Job running the template's pinned vcluster CLI with `args`, as the namespace's
/// provisioner (admin of this namespace only).
pub(super) fn job_object(
    demo: &Demo,
    t: &Template,
    name: &str,
    args: Vec<String>,
) -> Result<Job, kube::Error> {
    let r = crate::domain::resources::provisioner();
    obj(json!({
        "metadata": {"name": name, "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, DEMO_LABEL: demo.name_any()}},
        "spec": {
            // One retry for a passing hiccup (a registry timeout); a restore that fails
            // twice fails the demo with the CLI's own words.
            "backoffLimit": 1,
            "activeDeadlineSeconds": t.lifecycle.provision_timeout().num_seconds(),
            "template": {
                "metadata": {
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, DEMO_LABEL: demo.name_any()},
                },
                "spec": {
                    "serviceAccountName": PROVISIONER_SA,
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "vcluster",
                        "image": t.vcluster.cli_image,
                        "command": ["vcluster"],
                        "args": args,
                        "env": [{"name": "HOME", "value": "/tmp"}],
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        "resources": {"requests": r.requests, "limits": r.limits},
                        // The CLI's error output becomes the pod's termination message,
                        // which the demo's failure message quotes.
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "volumeMounts": [{"name": "values", "mountPath": "/values", "readOnly": true}, {"name": "tmp", "mountPath": "/tmp"}],
                    }],
                    "volumes": [{"name": "values", "configMap": {"name": VALUES_CONFIGMAP}}, {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }))
}

/// What the vcluster CLI printed when it last failed: the termination message of the
/// Job's newest failed pod.
async fn cli_error(client: &Client, ns: &str, job: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .ok()?;
    let mut failed: Vec<_> = list
        .items
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed"))
        .collect();
    failed.sort_by_key(|p| p.metadata.creation_timestamp.clone().map(|t| t.0));
    let status = failed.last()?.status.as_ref()?;
    let msg = status
        .container_statuses
        .iter()
        .flatten()
        .find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())?;
    let msg = msg.trim();
    (!msg.is_empty()).then(|| msg.chars().take(300).collect())
}

/// Does the next provisioning step(s) and reports where the demo stands.
pub async fn step(
    client: &Client,
    instance: &Instance,
    demo: &Demo,
    t: &Template,
    (ns, vcluster): (&str, &str),
    w: &Workloads,
    p: &mut Progress,
) -> Result<Outcome, kube::Error> {
    let since = demo.metadata.creation_timestamp.as_ref().map(|t| t.0);
    // A step recorded as done in the status is not done again: a provisioning demo is
    // reconciled many times (every change to it or its objects), and each pass would
    // otherwise repeat every create.
    if !p.is_done("access") {
        let outcome = prepare_namespace(client, instance, demo, t, ns, p).await?;
        if !matches!(outcome, Outcome::Ready) {
            return Ok(outcome);
        }
    }
    if !p.is_done("restore") {
        // 4. The restore, by the real vcluster CLI.
        p.running("restore");
        let seen = w.job(ns, JOB_NAME, since);
        let make = || {
            let values = if t.vcluster.values.is_null() {
                json!({})
            } else {
                t.vcluster.values.clone()
            };
            let values_yaml = serde_saphyr::to_string(&values).unwrap_or_default();
            let cm: ConfigMap = obj(
                json!({"metadata": {"name": VALUES_CONFIGMAP}, "data": {"vcluster.yaml": values_yaml}}),
            )?;
            Ok((
                job_object(demo, t, JOB_NAME, create_args(t, vcluster, ns))?,
                Some(cm),
            ))
        };
        if let Some(waiting) = restore_step(client, ns, make, seen, p).await? {
            return Ok(waiting);
        }
        w.forget_job(ns, JOB_NAME);
    }
    up_and_published(client, ns, vcluster, (w, since), p).await
}

/// Steps namespace, quota and access: what the restore Job runs in. Ready when all
/// three are done.
async fn prepare_namespace(
    client: &Client,
    instance: &Instance,
    demo: &Demo,
    t: &Template,
    ns: &str,
    p: &mut Progress,
) -> Result<Outcome, kube::Error> {
    // 1. The namespace, owned by the Demo; a foreign namespace of that name is never used.
    p.running("namespace");
    // Created first, read only if one exists: a new demo's namespace never does, and
    // this saves that demo a GET.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let existing = match create_unread(&namespaces, &namespace_object(demo, instance, ns)?).await {
        Ok(()) => None,
        Err(e) if is_already_exists(&e) => match namespaces.get_opt(ns).await? {
            Some(existing) => Some(existing),
            // Deleted between the two calls: look again.
            None => return Ok(Outcome::InProgress),
        },
        Err(e) => return Err(e),
    };
    if let Some(existing) = existing {
        let ours = existing.annotations().get(DEMO_UID_ANNOTATION) == demo.uid().as_ref();
        if !ours {
            let msg = format!(
                "namespace {ns} exists and was not created for this demo; it was left untouched"
            );
            p.failed("namespace", &msg);
            return Ok(Outcome::Failed(msg));
        }
        if existing.metadata.deletion_timestamp.is_some() {
            return Ok(Outcome::InProgress);
        }
    }
    p.done("namespace");

    // 2. Quota, so one demo cannot starve the host, and the defaults for containers
    //    that name no resources, without which such a quota refuses their pods.
    p.running("quota");
    let (requests, limits) = (t.default_requests(), t.default_limits());
    if !requests.is_empty() || !limits.is_empty() {
        let mut item = json!({"type": "Container"});
        if !limits.is_empty() {
            item["default"] = json!(limits);
        }
        if !requests.is_empty() {
            item["defaultRequest"] = json!(requests);
        }
        let lr: LimitRange =
            obj(json!({"metadata": {"name": LIMITS_NAME}, "spec": {"limits": [item]}}))?;
        create_if_absent(&Api::namespaced(client.clone(), ns), &lr).await?;
    }
    let hard = t.quota_hard();
    if !hard.is_empty() {
        let quota: ResourceQuota =
            obj(json!({"metadata": {"name": QUOTA_NAME}, "spec": {"hard": hard}}))?;
        create_if_absent(&Api::namespaced(client.clone(), ns), &quota).await?;
    }
    p.done("quota");

    // 3. The Job's identity: admin of this namespace only.
    p.running("access");
    let sa: ServiceAccount = obj(json!({"metadata": {"name": PROVISIONER_SA}}))?;
    create_if_absent(&Api::namespaced(client.clone(), ns), &sa).await?;
    let rb: RoleBinding = obj(json!({"metadata": {"name": PROVISIONER_SA},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
        "subjects": [{"kind": "ServiceAccount", "name": PROVISIONER_SA, "namespace": ns}]}))?;
    create_if_absent(&Api::namespaced(client.clone(), ns), &rb).await?;
    p.done("access");
    Ok(Outcome::Ready)
}

/// What `run_job` runs: the Job and the ConfigMap it reads, if any.
pub(super) type JobAndInput = (Job, Option<ConfigMap>);

/// Runs a CLI Job to its end: Ready when it completed, Failed with the CLI's words.
/// The Job (and its input ConfigMap) is created when it does not exist.
/// `seen`: where a watch last saw this Job (see `workloads`); else it is read.
/// `make` builds them, only when they are to be made or read: a demo is reconciled
/// many times while its Job runs, and building them on every pass took 5.7% of
/// showroom's CPU while 500 demos started (perf), 2.2% now.
pub(super) async fn run_job(
    client: &Client,
    ns: &str,
    make: impl FnOnce() -> Result<JobAndInput, kube::Error>,
    seen: Option<JobState>,
    what: &str,
) -> Result<Outcome, kube::Error> {
    match seen {
        Some(JobState::Complete) => return Ok(Outcome::Ready),
        Some(JobState::Running) => return Ok(Outcome::InProgress),
        // A failure is read: its message is in the Job.
        Some(JobState::Failed) | None => {}
    }
    let (job, input) = make()?;
    let (job, input) = (&job, input.as_ref());
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    // Its input first: the Job's pod reads it as it starts. True if this made the Job.
    let create = || async {
        if let Some(cm) = input {
            create_if_absent(&Api::namespaced(client.clone(), ns), cm).await?;
        }
        create_if_absent(&jobs, job).await
    };
    // Not seen by the watch: almost always not made yet, so it is made outright and
    // read only if it was there after all (a restart, or a watch that lags). Reading
    // first cost a GET answered 404 for every demo (1 of some 40 requests a demo).
    if seen.is_none() && create().await? {
        return Ok(Outcome::InProgress);
    }
    let Some(job) = jobs.get_opt(&job.name_any()).await? else {
        // Not there: not made yet, or gone since the watch saw it.
        create().await?;
        return Ok(Outcome::InProgress);
    };
    let job = Some(job);
    let conds = job
        .as_ref()
        .and_then(|j| j.status.as_ref())
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    if let Some(failed) = conds
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
    {
        let job_says = failed
            .message
            .clone()
            .or(failed.reason.clone())
            .unwrap_or_else(|| "no reason given".into());
        let name = job.as_ref().map(|j| j.name_any()).unwrap_or_default();
        let msg = match cli_error(client, ns, &name).await {
            Some(cli) => format!("the vcluster {what} failed: {cli} ({job_says})"),
            None => format!("the vcluster {what} job failed: {job_says}"),
        };
        return Ok(Outcome::Failed(msg));
    }
    if conds
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True")
    {
        return Ok(Outcome::Ready);
    }
    Ok(Outcome::InProgress)
}

/// Puts a demo back to its template's snapshot with `vcluster restore`, then waits for
/// it to be up again (steps restore, boot, kubeconfig).
pub async fn reset_step(
    client: &Client,
    demo: &Demo,
    t: &Template,
    (ns, vcluster): (&str, &str),
    w: &Workloads,
    generation: u32,
    p: &mut Progress,
) -> Result<Outcome, kube::Error> {
    let since = demo.metadata.creation_timestamp.as_ref().map(|t| t.0);
    p.running("restore");
    // A sleeping demo is reset awake.
    sleeper::resume(client, ns, vcluster).await?;
    let make = || {
        let name = restore_job_name(generation);
        Ok((
            job_object(demo, t, &name, restore_args(t, vcluster, ns))?,
            None,
        ))
    };
    let seen = w.job(ns, &restore_job_name(generation), since);
    if let Some(waiting) = restore_step(client, ns, make, seen, p).await? {
        return Ok(waiting);
    }
    w.forget_job(ns, &restore_job_name(generation));
    up_and_published(client, ns, vcluster, (w, since), p).await
}

/// Runs a restoring Job (`vcluster create --restore` or `vcluster restore`) as the
/// step "restore": None once it succeeded, else what the demo waits on (or failed of).
async fn restore_step(
    client: &Client,
    ns: &str,
    make: impl FnOnce() -> Result<JobAndInput, kube::Error>,
    seen: Option<JobState>,
    p: &mut Progress,
) -> Result<Option<Outcome>, kube::Error> {
    match run_job(client, ns, make, seen, "restore").await? {
        Outcome::Failed(msg) => {
            p.failed("restore", &msg);
            Ok(Some(Outcome::Failed(msg)))
        }
        Outcome::InProgress => Ok(Some(Outcome::InProgress)),
        Outcome::Ready => {
            p.done("restore");
            Ok(None)
        }
    }
}

/// Steps boot and kubeconfig: the vcluster's control plane is up and its syncer
/// published the kubeconfig. Whether the vcluster is up is read from what its watch
/// last said (see `workloads`), or from the API server when that is not known.
async fn up_and_published(
    client: &Client,
    ns: &str,
    vcluster: &str,
    (w, since): (&Workloads, Option<jiff::Timestamp>),
    p: &mut Progress,
) -> Result<Outcome, kube::Error> {
    // The vcluster's control plane is up.
    if !p.is_done("boot") {
        p.running("boot");
        let up = match w.vcluster_up(ns, vcluster, since) {
            Some(up) => up,
            None => {
                let sets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
                sets.get_opt(vcluster)
                    .await?
                    .is_some_and(|sts| sleeper::is_ready(&sts))
            }
        };
        if !up {
            return Ok(Outcome::InProgress);
        }
        p.done("boot");
        w.forget_vcluster(ns, vcluster);
    }

    // 6. The syncer published the kubeconfig.
    p.running("kubeconfig");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    if secrets.get_opt(&format!("vc-{vcluster}")).await?.is_none() {
        return Ok(Outcome::InProgress);
    }
    p.done("kubeconfig");
    Ok(Outcome::Ready)
}
