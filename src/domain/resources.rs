//! What a demo's pods ask of its namespace's quota: the provisioning Job's pod (it
//! runs the vcluster CLI) and the vcluster's own pod run at the same time, and each
//! container that names no resources gets the template's container defaults (the
//! LimitRange next to the quota). A template whose quota cannot hold them would never
//! start a demo, so `templates check` refuses it.

use super::quantity::Quantity;
use serde_json::Value;
use std::collections::BTreeMap;

/// Requests and limits of one pod (summed over its containers), by resource name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodResources {
    pub requests: BTreeMap<String, String>,
    pub limits: BTreeMap<String, String>,
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The provisioning Job's container (the vcluster CLI: a helm install and a restore).
pub fn provisioner() -> PodResources {
    PodResources {
        requests: map(&[("cpu", "50m"), ("memory", "64Mi")]),
        limits: map(&[("cpu", "500m"), ("memory", "256Mi")]),
    }
}

/// The vcluster chart's default resources for its control plane (vcluster 0.36).
fn chart_defaults() -> PodResources {
    PodResources {
        requests: map(&[("cpu", "200m"), ("memory", "256Mi")]),
        limits: map(&[("memory", "2Gi")]),
    }
}

/// The vcluster pod's resources as the chart renders them: the template's values
/// (`controlPlane.statefulSet.resources`) merged over the chart's defaults.
pub fn vcluster(values: &Value) -> PodResources {
    let mut r = chart_defaults();
    let set = values.pointer("/controlPlane/statefulSet/resources");
    for (part, out) in [("requests", &mut r.requests), ("limits", &mut r.limits)] {
        if let Some(m) = set.and_then(|s| s.get(part)).and_then(Value::as_object) {
            for (k, v) in m {
                match v {
                    Value::Null => {
                        out.remove(k);
                    }
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => {
                        out.insert(k.clone(), other.to_string());
                    }
                }
            }
        }
    }
    r
}

/// The pod's resources after the LimitRanger admission plugin filled in what it left
/// out: a missing limit from the default limits; a missing request from the default
/// requests, else from the (possibly defaulted) limit.
pub fn with_defaults(
    pod: &PodResources,
    default_requests: &BTreeMap<String, String>,
    default_limits: &BTreeMap<String, String>,
) -> PodResources {
    let mut out = pod.clone();
    for (k, v) in default_limits {
        out.limits.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in default_requests {
        out.requests.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in out.limits.clone() {
        out.requests.entry(k).or_insert(v);
    }
    out
}

/// What a pod counts against a quota key (`requests.cpu`, `cpu`, `limits.memory`, ...);
/// None for keys that are not about compute resources.
pub fn usage_of(pod: &PodResources, key: &str) -> Option<Option<Quantity>> {
    let (part, res) = match key.split_once('.') {
        Some(("requests", r)) => (&pod.requests, r),
        Some(("limits", r)) => (&pod.limits, r),
        None if matches!(key, "cpu" | "memory" | "ephemeral-storage") => (&pod.requests, key),
        _ => return None,
    };
    if !matches!(res, "cpu" | "memory" | "ephemeral-storage") {
        return None;
    }
    Some(part.get(res).and_then(|v| Quantity::parse(v).ok()))
}

/// Checks that the pods, running together, fit in the quota. Err names the quota key
/// and says which pod needs what.
pub fn check_quota(
    hard: &BTreeMap<String, String>,
    pods: &[(&str, PodResources)],
) -> Result<(), (String, String)> {
    for (key, limit) in hard {
        let Ok(limit_q) = Quantity::parse(limit) else {
            continue;
        };
        let mut total = Quantity::default();
        let mut parts = Vec::new();
        for (who, pod) in pods {
            match usage_of(pod, key) {
                None => break,
                Some(None) => {
                    return Err((
                        key.clone(),
                        format!(
                            "{who} names no {key} and the container defaults give none: the quota would refuse its pod"
                        ),
                    ));
                }
                Some(Some(q)) => {
                    total = total + q;
                    let (part, res) = key.split_once('.').unwrap_or(("requests", key));
                    let src = if part == "limits" {
                        &pod.limits
                    } else {
                        &pod.requests
                    };
                    parts.push(format!(
                        "{who} {}",
                        src.get(res).map_or("?", String::as_str)
                    ));
                }
            }
        }
        if total > limit_q {
            return Err((
                key.clone(),
                format!(
                    "{limit} cannot hold the pods that run while a demo starts ({})",
                    parts.join(" + ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_override_the_chart_and_defaults_fill_the_gaps() {
        let v = vcluster(
            &json!({"controlPlane": {"statefulSet": {"resources": {"requests": {"cpu": "500m"}}}}}),
        );
        assert_eq!(v.requests["cpu"], "500m");
        assert_eq!(v.requests["memory"], "256Mi");
        assert_eq!(v.limits["memory"], "2Gi");
        assert!(!v.limits.contains_key("cpu"));
        let d = with_defaults(&v, &map(&[("cpu", "100m")]), &map(&[("cpu", "1")]));
        assert_eq!(d.limits["cpu"], "1");
        assert_eq!(d.requests["cpu"], "500m", "a request it names stays");
    }

    #[test]
    fn a_quota_too_small_or_without_defaults_is_named() {
        let pods = [("vcluster", vcluster(&json!({}))), ("job", provisioner())];
        let hard = map(&[("limits.cpu", "4")]);
        let (key, msg) = check_quota(&hard, &pods).unwrap_err();
        assert_eq!(key, "limits.cpu");
        assert!(msg.contains("vcluster names no limits.cpu"), "{msg}");
        let filled: Vec<_> = pods
            .iter()
            .map(|(w, p)| {
                (
                    *w,
                    with_defaults(p, &BTreeMap::new(), &map(&[("cpu", "1")])),
                )
            })
            .collect();
        assert!(check_quota(&hard, &filled).is_ok());
        let small = map(&[("limits.memory", "1Gi"), ("pods", "10")]);
        let (key, msg) = check_quota(&small, &filled).unwrap_err();
        assert_eq!(key, "limits.memory");
        assert!(msg.contains("vcluster 2Gi + job 256Mi"), "{msg}");
    }
}
