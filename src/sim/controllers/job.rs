//! The Job controller: runs the Job's pod (one completion, one at a time), retries a
//! failed pod after a back-off until `backoffLimit`, enforces `activeDeadlineSeconds`,
//! and reports in the Job's status what its pods did. The pods themselves are run by
//! the node (the agent), as on a real cluster.

use crate::sim::object::*;
use crate::sim::store::{DeleteOptions, OwnedPod, Part, Phase, Store};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use std::time::Duration;

fn time(v: Option<&Value>) -> Option<DateTime<Utc>> {
    v.and_then(Value::as_str)
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// When a failed pod stopped.
fn finished_at(p: &OwnedPod) -> Option<DateTime<Utc>> {
    let p = p.value();
    p.pointer("/status/containerStatuses/0/state/terminated/finishedAt")
        .and_then(|v| time(Some(v)))
        .or_else(|| time(p.pointer("/metadata/creationTimestamp")))
}

fn condition(type_: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": type_, "status": "True", "reason": reason, "message": message,
        "lastProbeTime": now, "lastTransitionTime": now})
}

pub fn sync(store: &Store, ns: &str, name: &str) -> Option<Duration> {
    let job_rt = store.resource_type(&("batch".into(), "v1".into(), "jobs".into()))?;
    let pod_rt = store.resource_type(&(String::new(), "v1".into(), "pods".into()))?;
    let job = store.get(&job_rt, ns, name).ok()?;
    if is_deleting(&job) {
        return None;
    }
    let uid = meta(&job, "uid")?;
    let pods = store.lock().pods_owned_by(ns, &uid);
    let spec = &job["spec"];
    let status = job.get("status").cloned().unwrap_or(json!({}));
    let finished = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True");
    let succeeded = pods
        .iter()
        .filter(|p| p.state.phase == Phase::Succeeded)
        .count();
    let failed = pods
        .iter()
        .filter(|p| p.state.phase == Phase::Failed)
        .count();
    let active: Vec<_> = pods
        .iter()
        .filter(|p| !p.state.finished() && !p.deleting)
        .collect();
    let now = Utc::now();
    let now_s = now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let start = time(status.get("startTime")).unwrap_or(now);
    let mut next = json!({
        "active": active.len(), "succeeded": succeeded, "failed": failed,
        "ready": active.iter().filter(|p| p.state.ready).count(), "terminating": 0,
        "startTime": start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "uncountedTerminatedPods": {},
        "conditions": status["conditions"].clone(),
    });
    if let Some(ct) = status.get("completionTime") {
        next["completionTime"] = ct.clone();
    }
    let mut again = None;
    if !finished {
        let backoff_limit = spec["backoffLimit"].as_u64().unwrap_or(6) as usize;
        let completions = spec["completions"].as_u64().unwrap_or(1) as usize;
        let deadline = spec["activeDeadlineSeconds"]
            .as_i64()
            .map(|s| start + chrono::Duration::seconds(s));
        let failure = if deadline.is_some_and(|d| now >= d) {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else if failed > backoff_limit {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else {
            None
        };
        if let Some((reason, message)) = failure {
            for p in &active {
                let _ = store.delete(&pod_rt, ns, &p.name, &DeleteOptions::default());
            }
            next["active"] = json!(0);
            next["conditions"] = json!([
                condition("FailureTarget", reason, message, &now_s),
                condition("Failed", reason, message, &now_s),
            ]);
        } else if succeeded >= completions {
            let msg = "Reached expected number of succeeded pods";
            next["conditions"] = json!([
                condition("SuccessCriteriaMet", "CompletionsReached", msg, &now_s),
                condition("Complete", "CompletionsReached", msg, &now_s),
            ]);
            next["completionTime"] = json!(now_s);
        } else if active.is_empty() {
            // After a failure, wait (1 s, doubling) before the next try.
            let last_failure = pods
                .iter()
                .filter(|p| p.state.phase == Phase::Failed)
                .filter_map(finished_at)
                .max();
            let wait = chrono::Duration::seconds((1i64 << failed.saturating_sub(1).min(4)).min(10));
            match last_failure.map(|t| t + wait) {
                Some(at) if failed > 0 && at > now => {
                    again = (at - now).to_std().ok();
                }
                _ => {
                    if let Err(e) = create_pod(store, &pod_rt, ns, name, &uid, spec) {
                        super::statefulset::record_event(
                            store,
                            ns,
                            "Job",
                            name,
                            "FailedCreate",
                            &e,
                        );
                        again = Some(Duration::from_secs(1));
                    }
                }
            }
        }
        if again.is_none()
            && next["conditions"].is_null()
            && let Some(d) = deadline
        {
            again = (d - now)
                .to_std()
                .ok()
                .map(|d| d + Duration::from_millis(10));
        }
    }
    if next["conditions"].is_null() {
        next.as_object_mut().map(|m| m.remove("conditions"));
    }
    // Unchanged (most syncs: each of its pods' changes brings one): no write.
    if job.get("status") != Some(&next) {
        let _ = store.modify(&job_rt, ns, name, Part::Status, |cur| {
            let mut n = cur.clone();
            n["status"] = next;
            Ok(n)
        });
    }
    again
}

fn create_pod(
    store: &Store,
    pod_rt: &crate::sim::resources::ResourceType,
    ns: &str,
    job: &str,
    uid: &str,
    spec: &Value,
) -> Result<(), String> {
    let t = &spec["template"];
    let mut meta = t.get("metadata").cloned().unwrap_or(json!({}));
    meta["generateName"] = json!(format!("{job}-"));
    meta["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": job,
        "uid": uid, "controller": true, "blockOwnerDeletion": true}]);
    let pod = json!({"metadata": meta, "spec": t["spec"].clone()});
    store
        .create(pod_rt, ns, pod)
        .map(|_| ())
        .map_err(|e| e.message)
}
