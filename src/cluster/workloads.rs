//! What the controller last heard of the Jobs it runs and the vclusters they make: a
//! few bytes each, kept from the watches that trigger its reconciles. A provisioning
//! step reads here whether its Job finished or its vcluster is up, instead of a GET on
//! every look: a demo is looked at on every change of its Job and vcluster, and those
//! GETs were the controller's most frequent requests (at 1,000 demos, some 3.7 Job and
//! 2.6 StatefulSet GETs per demo).
//!
//! Only what a watch said is trusted, and only for objects made after the Demo (a
//! namespace of the same name may have held an older demo's Job). Whatever is not
//! known here is read from the API server as before, and a failed Job is always read
//! (its message is in it).

use futures::{Stream, StreamExt};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// Where a Job stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Running,
    Complete,
    Failed,
}

impl JobState {
    pub fn of(job: &JobView) -> JobState {
        let conds = job.status.as_ref().and_then(|s| s.conditions.as_ref());
        let is =
            |t: &str| conds.is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"));
        if is("Failed") {
            JobState::Failed
        } else if is("Complete") {
            JobState::Complete
        } else {
            JobState::Running
        }
    }
}

/// A Job as its watch needs it: metadata and conditions. Parsing whole Jobs, each with
/// its pod template, was 4.8% of showroom's CPU while demos started (perf); the rest of
/// a Job is skipped unread.
#[derive(Clone, Debug, Deserialize)]
pub struct JobView {
    metadata: ObjectMeta,
    status: Option<JobStatusView>,
}

#[derive(Clone, Debug, Deserialize)]
struct JobStatusView {
    conditions: Option<Vec<JobConditionView>>,
}

#[derive(Clone, Debug, Deserialize)]
struct JobConditionView {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

/// A view is found where the whole type is: same group, version, kind and plural.
macro_rules! view_of {
    ($view:ty, $whole:ty) => {
        impl Resource for $view {
            type DynamicType = ();
            type Scope = NamespaceResourceScope;

            fn kind(_: &()) -> Cow<'_, str> {
                <$whole>::kind(&())
            }
            fn group(_: &()) -> Cow<'_, str> {
                <$whole>::group(&())
            }
            fn version(_: &()) -> Cow<'_, str> {
                <$whole>::version(&())
            }
            fn plural(_: &()) -> Cow<'_, str> {
                <$whole>::plural(&())
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
view_of!(JobView, Job);
view_of!(StatefulSetView, StatefulSet);

/// A vcluster's StatefulSet as its watch needs it: replicas wanted and ready (its pod
/// template, 2.9% of showroom's CPU while demos started, is skipped unread).
#[derive(Clone, Debug, Deserialize)]
pub struct StatefulSetView {
    metadata: ObjectMeta,
    spec: Option<ReplicasWanted>,
    status: Option<ReplicasReady>,
}

#[derive(Clone, Debug, Deserialize)]
struct ReplicasWanted {
    replicas: Option<i32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplicasReady {
    ready_replicas: Option<i32>,
}

impl StatefulSetView {
    /// As `sleeper::is_ready` says of the whole StatefulSet.
    pub fn is_ready(&self) -> bool {
        super::sleeper::ready(
            self.spec.as_ref().and_then(|s| s.replicas),
            self.status.as_ref().and_then(|s| s.ready_replicas),
        )
    }
}

type Key = (String, String);

#[derive(Clone, Copy)]
struct Seen<T> {
    created: Option<jiff::Timestamp>,
    state: T,
}

/// One kind's states, kept current by its watch (a relist drops what is gone).
struct Kept<T> {
    states: RwLock<HashMap<Key, Seen<T>>>,
}

impl<T: Copy + Send + Sync + 'static> Kept<T> {
    fn new() -> Arc<Self> {
        Arc::new(Kept {
            states: RwLock::default(),
        })
    }

    /// The state of `ns/name`, if a watch showed it and it was made at or after `not_before`.
    fn get(&self, ns: &str, name: &str, not_before: Option<jiff::Timestamp>) -> Option<T> {
        let states = self.states.read().unwrap_or_else(|p| p.into_inner());
        let seen = states.get(&(ns.to_string(), name.to_string()))?;
        match (seen.created, not_before) {
            (Some(c), Some(nb)) if c >= nb => Some(seen.state),
            _ => None,
        }
    }

    fn forget(&self, ns: &str, name: &str) {
        self.states
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(ns.to_string(), name.to_string()));
    }

    /// Applies the watch's events and passes on the objects they touch (the triggers).
    fn follow<K>(
        self: Arc<Self>,
        api: Api<K>,
        labels: &str,
        state: fn(&K) -> T,
    ) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
        K: Send + Sync + 'static,
    {
        let key = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        let mut relisted: Option<HashSet<Key>> = None;
        watcher(api, watcher::Config::default().labels(labels))
            .default_backoff()
            .map(move |ev| {
                if let Ok(ev) = &ev {
                    let mut states = self.states.write().unwrap_or_else(|p| p.into_inner());
                    let seen = |o: &K| Seen {
                        created: o.meta().creation_timestamp.as_ref().map(|t| t.0),
                        state: state(o),
                    };
                    match ev {
                        watcher::Event::Apply(o) => {
                            states.insert(key(o), seen(o));
                        }
                        watcher::Event::Delete(o) => {
                            states.remove(&key(o));
                        }
                        watcher::Event::Init => relisted = Some(HashSet::new()),
                        watcher::Event::InitApply(o) => {
                            relisted.get_or_insert_default().insert(key(o));
                            states.insert(key(o), seen(o));
                        }
                        watcher::Event::InitDone => {
                            let listed = relisted.take().unwrap_or_default();
                            states.retain(|k, _| listed.contains(k));
                        }
                    }
                }
                ev
            })
            .touched_objects()
    }
}

/// The Jobs and vclusters of all demos. Cheap to clone.
#[derive(Clone)]
pub struct Workloads {
    jobs: Arc<Kept<JobState>>,
    vclusters: Arc<Kept<bool>>,
}

impl Default for Workloads {
    fn default() -> Self {
        Workloads {
            jobs: Kept::new(),
            vclusters: Kept::new(),
        }
    }
}

impl Workloads {
    /// The Job `ns/name` as last seen, if made at or after `not_before`.
    pub fn job(
        &self,
        ns: &str,
        name: &str,
        not_before: Option<jiff::Timestamp>,
    ) -> Option<JobState> {
        self.jobs.get(ns, name, not_before)
    }

    /// Whether the vcluster `ns/name` was last seen up, if made at or after `not_before`.
    pub fn vcluster_up(
        &self,
        ns: &str,
        name: &str,
        not_before: Option<jiff::Timestamp>,
    ) -> Option<bool> {
        self.vclusters.get(ns, name, not_before)
    }

    /// Drops what is kept of a Job once its step is done: at 10,000 demos the finished
    /// ones were most of this. (Should it be wanted again, it is read, as if unknown.)
    pub fn forget_job(&self, ns: &str, name: &str) {
        self.jobs.forget(ns, name);
    }

    /// Drops what is kept of a vcluster once its boot step is done.
    pub fn forget_vcluster(&self, ns: &str, name: &str) {
        self.vclusters.forget(ns, name);
    }

    /// Watches the Jobs labelled `labels`, keeping their states.
    pub fn follow_jobs(
        &self,
        api: Api<JobView>,
        labels: &str,
    ) -> impl Stream<Item = Result<JobView, watcher::Error>> + Send + 'static {
        self.jobs.clone().follow(api, labels, JobState::of)
    }

    /// Watches the vclusters' StatefulSets labelled `labels`, keeping whether each is up.
    pub fn follow_vclusters(
        &self,
        api: Api<StatefulSetView>,
        labels: &str,
    ) -> impl Stream<Item = Result<StatefulSetView, watcher::Error>> + Send + 'static {
        self.vclusters
            .clone()
            .follow(api, labels, StatefulSetView::is_ready)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> JobView {
        serde_json::from_value(
            json!({"metadata": {"name": "j"}, "status": {"conditions": conditions}}),
        )
        .unwrap()
    }

    #[test]
    fn a_job_state_is_read_from_its_conditions() {
        assert_eq!(JobState::of(&job(json!(null))), JobState::Running);
        assert_eq!(
            JobState::of(&job(
                json!([{"type": "SuccessCriteriaMet", "status": "True"}])
            )),
            JobState::Running,
            "complete only once Complete says so"
        );
        assert_eq!(
            JobState::of(&job(json!([{"type": "Complete", "status": "True"}]))),
            JobState::Complete
        );
        assert_eq!(
            JobState::of(&job(json!([{"type": "Failed", "status": "True"}]))),
            JobState::Failed
        );
        assert_eq!(
            JobState::of(&job(json!([{"type": "Complete", "status": "False"}]))),
            JobState::Running
        );
    }

    #[test]
    fn a_job_view_reads_a_whole_job_and_is_found_where_jobs_are() {
        // A Job as the API server sends it, spec and managedFields included.
        let whole = json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "create", "namespace": "demo-1",
                "creationTimestamp": "2026-12-03T10:00:00Z",
                "labels": {"app.kubernetes.io/managed-by": "showroom"},
                "managedFields": [{"manager": "showroom", "operation": "Update",
                    "apiVersion": "batch/v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "vcluster", "image": "cli", "args": ["create"]}]}}},
            "status": {"active": 0, "failed": 1, "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                {"type": "Failed", "status": "True", "message": "Job has reached the specified backoff limit"}]}
        });
        let view: JobView = serde_json::from_value(whole).unwrap();
        assert_eq!(JobState::of(&view), JobState::Failed);
        assert_eq!(view.name_any(), "create");
        assert_eq!(view.namespace().as_deref(), Some("demo-1"));
        assert!(view.creation_timestamp().is_some());
        let running: JobView = serde_json::from_value(json!({"metadata": {"name": "j"}})).unwrap();
        assert_eq!(JobState::of(&running), JobState::Running, "no status yet");
        assert_eq!(
            (
                JobView::api_version(&()),
                JobView::plural(&()),
                JobView::kind(&())
            ),
            (Job::api_version(&()), Job::plural(&()), Job::kind(&()))
        );
    }

    #[test]
    fn a_statefulset_view_is_ready_when_the_whole_one_is() {
        for (spec, status) in [
            (json!({"replicas": 1}), json!({"readyReplicas": 1})),
            (json!({"replicas": 1}), json!({"replicas": 1})),
            (json!({"replicas": 0}), json!({"readyReplicas": 0})),
            (json!({}), json!({"readyReplicas": 1})),
            (json!({}), json!(null)),
            (json!({"replicas": 2}), json!({"readyReplicas": 1})),
        ] {
            // A StatefulSet as the API server sends it, pod template included.
            let mut whole_spec = json!({"serviceName": "vc1-headless",
                "selector": {"matchLabels": {"app": "vcluster"}},
                "template": {"metadata": {"labels": {"app": "vcluster"}},
                    "spec": {"containers": [{"name": "syncer", "image": "vcluster"}]}}});
            whole_spec
                .as_object_mut()
                .unwrap()
                .extend(spec.as_object().unwrap().clone());
            let whole = json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "vc1", "namespace": "demo-1", "labels": {"app": "vcluster"}},
                "spec": whole_spec, "status": status});
            let sts: StatefulSet = serde_json::from_value(whole.clone()).unwrap();
            let view: StatefulSetView = serde_json::from_value(whole).unwrap();
            assert_eq!(
                view.is_ready(),
                super::super::sleeper::is_ready(&sts),
                "{spec} {status}"
            );
        }
        assert_eq!(
            (
                StatefulSetView::api_version(&()),
                StatefulSetView::plural(&())
            ),
            (StatefulSet::api_version(&()), StatefulSet::plural(&()))
        );
    }

    #[test]
    fn only_what_was_made_after_the_demo_is_trusted() {
        let kept = Kept::new();
        let t = |s: i64| Some(jiff::Timestamp::from_second(s).unwrap());
        kept.states.write().unwrap().insert(
            ("ns".into(), "j".into()),
            Seen {
                created: t(100),
                state: JobState::Complete,
            },
        );
        assert_eq!(kept.get("ns", "j", t(100)), Some(JobState::Complete));
        assert_eq!(kept.get("ns", "j", t(101)), None, "an older demo's Job");
        assert_eq!(kept.get("ns", "j", None), None);
        assert_eq!(kept.get("ns", "other", t(0)), None);
        kept.forget("ns", "j");
        assert_eq!(kept.get("ns", "j", t(100)), None, "forgotten: read again");
    }
}
