//! Defaulting a client can see: the fields the real API server fills in when they are
//! left out, for the kinds showroom, the agent and kubectl users write.

use crate::sim::resources::ResourceType;
use crate::sim::store::State;
use serde_json::{Map, Value, json};

fn obj_mut<'a>(v: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !v.get(key).is_some_and(Value::is_object) {
        v[key] = json!({});
    }
    v[key].as_object_mut().expect("just made an object")
}

fn default(m: &mut Map<String, Value>, key: &str, v: Value) {
    if m.get(key).is_none_or(Value::is_null) {
        m.insert(key.to_string(), v);
    }
}

pub fn apply(_st: &State, rt: &ResourceType, obj: &mut Value, old: Option<&Value>) {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => namespace(obj),
        ("", "Service") => service(obj, old),
        ("", "Pod") => {
            pod_spec(obj_mut(obj, "spec"), true);
            if old.is_none() {
                let qos = qos_class(&obj["spec"]);
                obj["status"] = json!({"phase": "Pending", "qosClass": qos});
            }
        }
        ("", "Secret") => default(
            obj.as_object_mut().expect("object"),
            "type",
            json!("Opaque"),
        ),
        ("", "PersistentVolumeClaim") => {
            default(obj_mut(obj, "spec"), "volumeMode", json!("Filesystem"));
            if old.is_none() {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        ("batch", "Job") => job(obj, old),
        ("apiextensions.k8s.io", "CustomResourceDefinition") if old.is_none() => {
            // Names are accepted and the types served at once (a real server takes a
            // moment: clients wait for Established).
            let now = crate::sim::object::now_rfc3339();
            let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
            obj["status"] = json!({"acceptedNames": names, "storedVersions": [], "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
            ]});
        }
        ("apps", "StatefulSet") => statefulset(obj),
        _ => {}
    }
}

fn namespace(obj: &mut Value) {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let meta = obj_mut(obj, "metadata");
    if !meta.get("labels").is_some_and(Value::is_object) {
        meta.insert("labels".into(), json!({}));
    }
    meta["labels"]["kubernetes.io/metadata.name"] = name;
    default(obj_mut(obj, "spec"), "finalizers", json!(["kubernetes"]));
    default(obj_mut(obj, "status"), "phase", json!("Active"));
}

fn service(obj: &mut Value, old: Option<&Value>) {
    let spec = obj_mut(obj, "spec");
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if spec["type"] == "ClusterIP" || spec["type"] == "NodePort" || spec["type"] == "LoadBalancer" {
        // The cluster IP is allocated once and kept.
        let kept = old
            .and_then(|o| o.pointer("/spec/clusterIP"))
            .cloned()
            .filter(|v| v.is_string());
        if let Some(ip) = kept {
            spec.insert("clusterIP".into(), ip);
        }
        if spec.get("clusterIP").is_none_or(|v| v.is_null() || v == "") {
            let n = fastrand::u32(1..(1 << 20) - 1);
            let ip = format!("10.{}.{}.{}", 96 + (n >> 16), (n >> 8) & 255, n & 255);
            spec.insert("clusterIP".into(), json!(ip));
        }
        let ip = spec["clusterIP"].clone();
        spec.insert("clusterIPs".into(), json!([ip]));
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            let port = p.get("port").cloned().unwrap_or(Value::Null);
            default(p, "targetPort", port);
        }
    }
}

/// The pod spec's defaults; `pod` adds what only a pod (not a template) gets.
fn pod_spec(spec: &mut Map<String, Value>, pod: bool) {
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    for key in ["containers", "initContainers"] {
        if let Some(Value::Array(cs)) = spec.get_mut(key) {
            for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let last = image.rsplit('/').next().unwrap_or("");
                let pull =
                    if !last.contains(':') && !image.contains('@') || last.ends_with(":latest") {
                        "Always"
                    } else {
                        "IfNotPresent"
                    };
                default(c, "imagePullPolicy", json!(pull));
                default(c, "terminationMessagePath", json!("/dev/termination-log"));
                default(c, "terminationMessagePolicy", json!("File"));
                default(c, "resources", json!({}));
                if let Some(Value::Array(ports)) = c.get_mut("ports") {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
    if pod {
        default(spec, "enableServiceLinks", json!(true));
        default(spec, "priority", json!(0));
        default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
        default(
            spec,
            "tolerations",
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ]),
        );
    }
}

/// Guaranteed when every container's requests equal its limits for cpu and memory;
/// BestEffort when no container names any; Burstable otherwise.
fn qos_class(spec: &Value) -> &'static str {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    let mut any = false;
    let mut guaranteed = !containers.is_empty();
    for c in &containers {
        let r = &c["resources"];
        for res in ["cpu", "memory"] {
            let (req, lim) = (&r["requests"][res], &r["limits"][res]);
            any |= !req.is_null() || !lim.is_null();
            guaranteed &= !lim.is_null() && (req.is_null() || req == lim);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn job(obj: &mut Value, old: Option<&Value>) {
    let uid = obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null);
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or(Value::Null);
    let spec = obj_mut(obj, "spec");
    default(spec, "parallelism", json!(1));
    default(spec, "completions", json!(1));
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    default(spec, "manualSelector", json!(false));
    default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if obj.pointer("/spec/template").is_some_and(Value::is_object) {
        pod_spec(obj_mut(&mut obj["spec"]["template"], "spec"), false);
    }
    if old.is_none() {
        // The Job's own labels and the selector that ties its pods to it.
        let labels = json!({
            "batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
            "controller-uid": uid, "job-name": name,
        });
        for ptr in ["/metadata", "/spec/template/metadata"] {
            if obj.pointer(ptr).is_none() {
                if ptr == "/metadata" {
                    obj["metadata"] = json!({});
                } else {
                    obj["spec"]["template"]["metadata"] = json!({});
                }
            }
            let target = obj.pointer_mut(ptr).expect("just made");
            if !target.is_object() {
                *target = json!({});
            }
            if !target["labels"].is_object() {
                target["labels"] = json!({});
            }
            for (k, v) in labels.as_object().expect("labels") {
                if target["labels"].get(k).is_none() {
                    target["labels"][k] = v.clone();
                }
            }
        }
        if obj.pointer("/spec/selector").is_none_or(Value::is_null) {
            obj["spec"]["selector"] =
                json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        }
    }
}

fn statefulset(obj: &mut Value) {
    let spec = obj_mut(obj, "spec");
    default(spec, "replicas", json!(1));
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    default(
        spec,
        "updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    );
    default(spec, "revisionHistoryLimit", json!(10));
    default(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    if let Some(Value::Array(tpls)) = spec.get_mut("volumeClaimTemplates") {
        for t in tpls.iter_mut() {
            default(obj_mut(t, "spec"), "volumeMode", json!("Filesystem"));
        }
    }
    if obj.pointer("/spec/template").is_some_and(Value::is_object) {
        pod_spec(obj_mut(&mut obj["spec"]["template"], "spec"), false);
    }
}
