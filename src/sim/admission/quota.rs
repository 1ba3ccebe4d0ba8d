//! The admission plugins that stand between a pod and its namespace: ServiceAccount
//! (the pod's account must exist), LimitRanger (containers that name no resources get
//! the namespace's defaults) and ResourceQuota (a pod that would pass a hard limit, or
//! that names no value for a limited resource, is refused).

use crate::domain::quantity::Quantity;
use crate::sim::error::ApiError;
use crate::sim::object::meta;
use crate::sim::store::State;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn forbidden(pod: &Value, why: String) -> ApiError {
    let name = meta(pod, "name").unwrap_or_default();
    ApiError::new(
        403,
        "Forbidden",
        format!("pods \"{name}\" is forbidden: {why}"),
    )
}

/// The ServiceAccount plugin: the pod runs as `default` unless it names another, and
/// that account must exist.
pub fn service_account(st: &State, ns: &str, pod: &mut Value) -> Result<(), ApiError> {
    let spec = &mut pod["spec"];
    let sa = spec["serviceAccountName"]
        .as_str()
        .or(spec["serviceAccount"].as_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(sa);
    spec["serviceAccount"] = json!(sa);
    let exists = st.contains("", "serviceaccounts", ns, &sa);
    if !exists {
        return Err(forbidden(
            pod,
            format!(
                "error looking up service account {ns}/{sa}: serviceaccount \"{sa}\" not found"
            ),
        ));
    }
    Ok(())
}

/// The LimitRanger plugin: fills in missing requests and limits of each container from
/// the namespace's LimitRanges (`default` for limits, `defaultRequest` for requests).
pub fn limit_ranges(st: &State, ns: &str, pod: &mut Value) {
    let mut set: Vec<String> = Vec::new();
    for lr in st.objects_of("", "limitranges", ns) {
        for item in lr["spec"]["limits"].as_array().into_iter().flatten() {
            if item["type"] != "Container" {
                continue;
            }
            let Some(Value::Array(containers)) = pod.pointer_mut("/spec/containers") else {
                continue;
            };
            for c in containers.iter_mut() {
                let cname = c["name"].as_str().unwrap_or_default().to_string();
                if !c["resources"].is_object() {
                    c["resources"] = json!({});
                }
                let mut filled = Vec::new();
                for (part, from) in [("limits", "default"), ("requests", "defaultRequest")] {
                    for (k, v) in item[from].as_object().into_iter().flatten() {
                        if !c["resources"][part].is_object() {
                            c["resources"][part] = json!({});
                        }
                        if c["resources"][part].get(k).is_none() {
                            c["resources"][part][k] = v.clone();
                            filled.push(format!(
                                "{k} {}",
                                if part == "limits" { "limit" } else { "request" }
                            ));
                        }
                    }
                }
                // A request left out defaults to the limit.
                let limits = c["resources"]["limits"].clone();
                for (k, v) in limits.as_object().into_iter().flatten() {
                    if !c["resources"]["requests"].is_object() {
                        c["resources"]["requests"] = json!({});
                    }
                    if c["resources"]["requests"].get(k).is_none() {
                        c["resources"]["requests"][k] = v.clone();
                        filled.push(format!("{k} request"));
                    }
                }
                if !filled.is_empty() {
                    set.push(format!("{} for container {cname}", filled.join(", ")));
                }
            }
        }
    }
    if !set.is_empty() {
        if !pod["metadata"]["annotations"].is_object() {
            pod["metadata"]["annotations"] = json!({});
        }
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"] =
            json!(format!("LimitRanger plugin set: {}", set.join("; ")));
    }
}

/// Of a pod, what quota counting reads: its deletion, its containers' resources, its
/// phase. Every change of a pod recounts its namespace, and parsing each pod whole
/// (some 3 KiB of JSON, managedFields and all) was a fifth of the simulation's CPU
/// while it filled to 4,000 demos (perf).
#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct Counted {
    metadata: CountedMeta,
    spec: CountedSpec,
    status: CountedStatus,
}

#[derive(serde::Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct CountedMeta {
    deletion_timestamp: Option<String>,
    deletion_grace_period_seconds: Option<i64>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct CountedSpec {
    containers: Vec<CountedContainer>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct CountedContainer {
    name: String,
    resources: Value,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct CountedStatus {
    phase: Option<String>,
}

impl Counted {
    /// A pod as admission sees it (a JSON value); a malformed part counts as absent.
    fn of(pod: &Value) -> Counted {
        serde::Deserialize::deserialize(pod).unwrap_or_default()
    }

    /// What the pod counts against a compute key (None: a container names no value).
    fn usage(&self, key: &str) -> Option<Option<Quantity>> {
        if key == "pods" || key == "count/pods" {
            return Some(Some(Quantity::parse("1").expect("1 is a quantity")));
        }
        let (part, res) = compute_key(key)?;
        let mut total = Quantity::default();
        for c in &self.spec.containers {
            let q = match &c.resources[part][res] {
                Value::String(s) => Quantity::parse(s).ok(),
                Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
                _ => None,
            };
            match q {
                Some(q) => total = total + q,
                None => return Some(None),
            }
        }
        Some(Some(total))
    }

    fn counts(&self) -> bool {
        counts(
            self.status.phase.as_deref(),
            self.metadata.deletion_timestamp.is_some(),
            self.metadata.deletion_grace_period_seconds,
        )
    }
}

/// Whether a pod counts against a quota: not finished, and not past its deletion.
fn counts(phase: Option<&str>, deleting: bool, grace: Option<i64>) -> bool {
    let finished = matches!(phase, Some("Succeeded" | "Failed"));
    let confirmed_gone = deleting && grace == Some(0);
    !(finished || confirmed_gone)
}

/// Whether a pod (as JSON) counts against a quota, read without parsing it further.
pub fn pod_counts(pod: &Value) -> bool {
    counts(
        pod.pointer("/status/phase").and_then(Value::as_str),
        pod.pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null()),
        pod.pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64),
    )
}

/// A compute key as (part of `resources`, resource): "limits.cpu" → ("limits", "cpu");
/// a bare "cpu" means its request. None for keys that are not compute resources.
fn compute_key(key: &str) -> Option<(&'static str, &str)> {
    let (part, res) = match key.split_once('.') {
        Some(("requests", r)) => ("requests", r),
        Some(("limits", r)) => ("limits", r),
        None if matches!(key, "cpu" | "memory" | "ephemeral-storage") => ("requests", key),
        _ => return None,
    };
    matches!(res, "cpu" | "memory" | "ephemeral-storage").then_some((part, res))
}

/// Usage of every key a namespace's quotas limit, over its live pods.
pub fn usage(st: &State, ns: &str, keys: &[String]) -> BTreeMap<String, Quantity> {
    let mut used: BTreeMap<String, Quantity> = keys
        .iter()
        .map(|k| (k.clone(), Quantity::default()))
        .collect();
    let pods = st
        .stored_in("", "pods", ns)
        .map(|o| serde_json::from_slice::<Counted>(&o.json).unwrap_or_default());
    for pod in pods.filter(Counted::counts) {
        for k in keys {
            if let Some(Some(q)) = pod.usage(k) {
                let e = used.entry(k.clone()).or_default();
                *e = *e + q;
            }
        }
    }
    used
}

fn hard_of(quota: &Value) -> BTreeMap<String, Quantity> {
    quota["spec"]["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let s = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            Some((k.clone(), Quantity::parse(&s).ok()?))
        })
        .collect()
}

/// The ResourceQuota plugin for a new pod.
pub fn admit_pod(st: &State, ns: &str, pod: &Value) -> Result<(), ApiError> {
    let counted = Counted::of(pod);
    for quota in st.objects_of("", "resourcequotas", ns) {
        let qname = meta(&quota, "name").unwrap_or_default();
        let hard = hard_of(&quota);
        let keys: Vec<String> = hard.keys().cloned().collect();
        // Resources the quota limits that the pod names no value for.
        let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in &keys {
            if let (Some(None), Some((part, res))) = (counted.usage(k), compute_key(k)) {
                for c in &counted.spec.containers {
                    if c.resources[part][res].is_null() {
                        missing.entry(k.clone()).or_default().push(c.name.clone());
                    }
                }
            }
        }
        if !missing.is_empty() {
            let parts: Vec<String> = missing
                .iter()
                .map(|(k, cs)| format!("{k} for: {}", cs.join(",")))
                .collect();
            return Err(forbidden(
                pod,
                format!("failed quota: {qname}: must specify {}", parts.join("; ")),
            ));
        }
        let used = usage(st, ns, &keys);
        let mut over = Vec::new();
        for (k, limit) in &hard {
            if let Some(Some(want)) = counted.usage(k) {
                let now = used.get(k).copied().unwrap_or_default();
                if now + want > *limit {
                    over.push(k.clone());
                }
            }
        }
        if !over.is_empty() {
            let fmt = |f: &dyn Fn(&String) -> String| {
                over.iter()
                    .map(|k| format!("{k}={}", f(k)))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let show = |q: Quantity| format_quantity(q);
            let requested = fmt(&|k| counted.usage(k).flatten().map(show).unwrap_or_default());
            let used_s = fmt(&|k| show(used.get(k).copied().unwrap_or_default()));
            let limited = fmt(&|k| show(hard[k]));
            return Err(forbidden(
                pod,
                format!(
                    "exceeded quota: {qname}, requested: {requested}, used: {used_s}, limited: {limited}"
                ),
            ));
        }
    }
    Ok(())
}

/// A quantity as Kubernetes prints it: whole units, or thousandths ("500m"), or binary
/// multiples for large whole numbers.
pub fn format_quantity(q: Quantity) -> String {
    let m = q.millis();
    if m % 1000 != 0 {
        return format!("{m}m");
    }
    let n = m / 1000;
    for (suffix, unit) in [("Gi", 1i128 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)] {
        if n >= unit && n % unit == 0 {
            return format!("{}{suffix}", n / unit);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(extra: Value) -> Counted {
        let mut p = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}},
            {"name": "b", "resources": {"requests": {"cpu": 1}}},
        ]}});
        for (part, fields) in extra.as_object().unwrap() {
            for (k, v) in fields.as_object().unwrap() {
                p[part][k] = v.clone();
            }
        }
        Counted::of(&p)
    }

    #[test]
    fn a_pod_counts_its_containers_and_names_what_is_missing() {
        let p = pod(json!({}));
        let show = |k: &str| p.usage(k).map(|q| q.map(format_quantity));
        assert_eq!(show("requests.cpu"), Some(Some("1250m".into())));
        assert_eq!(show("cpu"), Some(Some("1250m".into())));
        assert_eq!(show("pods"), Some(Some("1".into())));
        // Container b names no memory limit: the pod cannot be counted against it.
        assert_eq!(show("limits.memory"), Some(None));
        // Not a compute resource: the quota's other keys do not apply to a pod.
        assert_eq!(show("requests.storage"), None);
        assert_eq!(show("services"), None);
    }

    #[test]
    fn finished_and_confirmed_deleted_pods_count_no_more() {
        assert!(pod(json!({})).counts());
        assert!(pod(json!({"status": {"phase": "Running"}})).counts());
        assert!(!pod(json!({"status": {"phase": "Succeeded"}})).counts());
        assert!(!pod(json!({"status": {"phase": "Failed"}})).counts());
        // Deleting with a grace period: it still runs, and counts.
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-11-28T00:00:00Z",
            "deletionGracePeriodSeconds": 30}});
        assert!(pod(deleting).counts());
        let gone = json!({"metadata": {"deletionTimestamp": "2026-11-28T00:00:00Z",
            "deletionGracePeriodSeconds": 0}});
        assert!(!pod(gone).counts());
    }
}
