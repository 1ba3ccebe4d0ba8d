//! Validation of the built-in fields that showroom, the agent and kubectl users write,
//! with the API server's messages: a 422 Invalid naming each bad field.

use super::names::*;
use crate::domain::quantity::Quantity;
use crate::sim::error::ApiError;
use crate::sim::resources::ResourceType;
use serde_json::Value;
use std::collections::HashSet;

struct Errors(Vec<String>);

impl Errors {
    fn required(&mut self, field: &str) {
        self.0.push(format!("{field}: Required value"));
    }
    fn invalid(&mut self, field: &str, value: &Value, why: &str) {
        self.0
            .push(format!("{field}: Invalid value: {value}: {why}"));
    }
    fn unsupported(&mut self, field: &str, value: &Value, allowed: &[&str]) {
        let allowed: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
        self.0.push(format!(
            "{field}: Unsupported value: {value}: supported values: {}",
            allowed.join(", ")
        ));
    }
    fn forbidden(&mut self, field: &str, why: &str) {
        self.0.push(format!("{field}: Forbidden: {why}"));
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// Fields that are maps of strings in the Go types: anything else cannot even be
/// decoded (400, before validation).
fn decodable(rt: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let maps: &[&str] = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "ConfigMap") => &["data", "binaryData"],
        ("", "Secret") => &["data", "stringData"],
        _ => &[],
    };
    let meta = ["labels", "annotations"].map(|k| (format!("ObjectMeta.{k}"), &obj["metadata"][k]));
    let own = maps.iter().map(|k| (format!("{}.{k}", rt.kind), &obj[*k]));
    for (field, v) in meta.into_iter().chain(own) {
        for (_, x) in v.as_object().into_iter().flatten() {
            if !x.is_string() {
                let ty = match x {
                    Value::Bool(_) => "bool",
                    Value::Number(_) => "number",
                    Value::Array(_) => "array",
                    Value::Object(_) => "object",
                    _ => "null",
                };
                return Err(ApiError::bad_request(format!(
                    "{kind} in version \"{v}\" cannot be handled as a {kind}: json: cannot unmarshal {ty} into Go struct field {field} of type string",
                    kind = rt.kind,
                    v = rt.version
                )));
            }
        }
    }
    if rt.crd.is_none() {
        let mut bad = Vec::new();
        quantities_of(&obj["spec"], "spec", &mut bad);
        if let Some(field) = bad.first() {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' ({field})",
                kind = rt.kind,
                v = rt.version
            )));
        }
    }
    Ok(())
}

pub fn check(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    decodable(rt, obj)?;
    let mut e = Errors(vec![]);
    let name = str_at(obj, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    if old.is_none() {
        let ok = match (rt.group.as_str(), rt.kind.as_str()) {
            ("", "Namespace") => dns_label(&name),
            ("", "Service") => dns1035_label(&name),
            _ => dns_subdomain(&name),
        };
        if !ok {
            let why = match rt.kind.as_str() {
                "Namespace" => LABEL_RFC1123,
                "Service" => {
                    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character"
                }
                _ => SUBDOMAIN_RFC1123,
            };
            e.invalid("metadata.name", &Value::String(name.clone()), why);
        }
    }
    metadata(obj, &mut e);
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => pod_spec(obj.get("spec"), "spec", &mut e, None),
        ("", "Service") => service(obj, old, &mut e),
        ("", "ConfigMap") | ("", "Secret") => {
            for key in ["data", "binaryData", "stringData"] {
                for k in obj[key].as_object().into_iter().flatten().map(|(k, _)| k) {
                    if !config_key(k) {
                        e.invalid(
                            &format!("{key}[{k}]"),
                            &Value::String(k.clone()),
                            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
                        );
                    }
                }
            }
        }
        ("", "ResourceQuota") => {}
        ("", "LimitRange") => {
            for (i, l) in obj["spec"]["limits"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let f = format!("spec.limits[{i}]");
                match l["type"].as_str() {
                    Some("Container" | "Pod" | "PersistentVolumeClaim") => {}
                    _ => e.unsupported(
                        &format!("{f}.type"),
                        &l["type"],
                        &["Container", "Pod", "PersistentVolumeClaim"],
                    ),
                }
            }
        }
        ("", "PersistentVolumeClaim") => {
            if obj["spec"]["accessModes"]
                .as_array()
                .is_none_or(Vec::is_empty)
            {
                e.required("spec.accessModes");
            }
            if obj.pointer("/spec/resources/requests/storage").is_none() {
                e.required("spec.resources[storage]");
            }
        }
        ("batch", "Job") => job(obj, old, &mut e),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            if let Err(why) = ResourceType::from_crd(obj) {
                e.0.push(why);
            }
        }
        ("apps", "StatefulSet") => statefulset(obj, old, &mut e),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => {
            let r = &obj["roleRef"];
            if r["name"].as_str().is_none_or(str::is_empty) {
                e.required("roleRef.name");
            }
            match r["kind"].as_str() {
                Some("Role" | "ClusterRole") => {}
                _ => e.unsupported("roleRef.kind", &r["kind"], &["Role", "ClusterRole"]),
            }
            if let Some(old) = old
                && old["roleRef"] != obj["roleRef"]
            {
                e.invalid("roleRef", r, "cannot change roleRef");
            }
        }
        _ => {}
    }
    if e.0.is_empty() {
        return Ok(());
    }
    let why = if e.0.len() == 1 {
        e.0.remove(0)
    } else {
        format!("[{}]", e.0.join(", "))
    };
    Err(ApiError::invalid(rt, &name, why))
}

fn metadata(obj: &Value, e: &mut Errors) {
    let m = &obj["metadata"];
    for (k, v) in m["labels"].as_object().into_iter().flatten() {
        if !qualified_name(k) {
            e.invalid("metadata.labels", &Value::String(k.clone()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        }
        match v.as_str() {
            Some(s) if label_value(s) => {}
            _ => e.invalid(&format!("metadata.labels[{k}]"), v, LABEL_MSG),
        }
    }
    let mut size = 0;
    for (k, v) in m["annotations"].as_object().into_iter().flatten() {
        if !qualified_name(k) {
            e.invalid("metadata.annotations", &Value::String(k.clone()), "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character");
        }
        if !v.is_string() {
            e.invalid(&format!("metadata.annotations[{k}]"), v, "must be a string");
        }
        size += k.len() + v.as_str().map_or(0, str::len);
    }
    if size > 256 * 1024 {
        e.0.push(format!(
            "metadata.annotations: Too long: may not be more than 262144 bytes (got {size})"
        ));
    }
    for (i, r) in m["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for f in ["apiVersion", "kind", "name", "uid"] {
            if r[f].as_str().is_none_or(str::is_empty) {
                e.required(&format!("metadata.ownerReferences[{i}].{f}"));
            }
        }
    }
}

/// Every quantity of the object: resource requests and limits of containers (in pods
/// and templates), quota and LimitRange values. Quantities are a decoded type, so a
/// bad one is a 400 before validation.
fn quantities_of(v: &Value, path: &str, out: &mut Vec<String>) {
    let quantity_maps = [
        "requests",
        "limits",
        "hard",
        "default",
        "defaultRequest",
        "max",
        "min",
    ];
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                let here = format!("{path}.{k}");
                if quantity_maps.contains(&k.as_str())
                    && let Some(q) = c.as_object()
                {
                    for (name, x) in q {
                        let ok = match x {
                            Value::String(t) => Quantity::parse(t).is_ok(),
                            Value::Number(n) => Quantity::parse(&n.to_string()).is_ok(),
                            _ => false,
                        };
                        if !ok {
                            out.push(format!("{here}[{name}]"));
                        }
                    }
                } else {
                    quantities_of(c, &here, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| quantities_of(c, path, out)),
        _ => {}
    }
}

/// A pod spec (of a pod or a template); `restart` limits restartPolicy (Jobs).
fn pod_spec(spec: Option<&Value>, f: &str, e: &mut Errors, restart: Option<&[&str]>) {
    pod_spec_with(spec, f, e, restart, &[]);
}

/// `claims`: volumes a StatefulSet's claim templates provide.
fn pod_spec_with(
    spec: Option<&Value>,
    f: &str,
    e: &mut Errors,
    restart: Option<&[&str]>,
    claims: &[&str],
) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        e.required(f);
        return;
    };
    let allowed = restart.unwrap_or(&["Always", "OnFailure", "Never"]);
    let rp = &spec["restartPolicy"];
    if !rp.as_str().is_some_and(|r| allowed.contains(&r)) {
        if rp.is_null() {
            e.required(&format!("{f}.restartPolicy"));
        } else {
            e.unsupported(&format!("{f}.restartPolicy"), rp, allowed);
        }
    }
    let volumes: HashSet<&str> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .chain(claims.iter().copied())
        .collect();
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        e.required(&format!("{f}.containers"));
    }
    let mut seen = HashSet::new();
    for (i, c) in containers.iter().enumerate() {
        let cf = format!("{f}.containers[{i}]");
        match c["name"].as_str() {
            Some(n) if dns_label(n) => {
                if !seen.insert(n.to_string()) {
                    e.0.push(format!("{cf}.name: Duplicate value: \"{n}\""));
                }
            }
            Some(n) => e.invalid(
                &format!("{cf}.name"),
                &Value::String(n.into()),
                LABEL_RFC1123,
            ),
            None => e.required(&format!("{cf}.name")),
        }
        if c["image"].as_str().is_none_or(|s| s.trim().is_empty()) {
            e.required(&format!("{cf}.image"));
        }
        let r = &c["resources"];
        for (k, req) in r["requests"].as_object().into_iter().flatten() {
            let lim = &r["limits"][k];
            let q = |v: &Value| v.as_str().and_then(|s| Quantity::parse(s).ok());
            if let (Some(a), Some(b)) = (q(req), q(lim))
                && a > b
            {
                e.invalid(
                    &format!("{cf}.resources.requests"),
                    req,
                    &format!("must be less than or equal to {k} limit of {lim}"),
                );
            }
        }
        for (j, m) in c["volumeMounts"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let n = m["name"].as_str().unwrap_or_default();
            if !volumes.contains(n) {
                e.0.push(format!("{cf}.volumeMounts[{j}].name: Not found: \"{n}\""));
            }
            if m["mountPath"].as_str().is_none_or(str::is_empty) {
                e.required(&format!("{cf}.volumeMounts[{j}].mountPath"));
            }
        }
        for (j, p) in c["ports"].as_array().into_iter().flatten().enumerate() {
            if !p["containerPort"]
                .as_i64()
                .is_some_and(|n| (1..=65535).contains(&n))
            {
                e.invalid(
                    &format!("{cf}.ports[{j}].containerPort"),
                    &p["containerPort"],
                    "must be between 1 and 65535, inclusive",
                );
            }
        }
    }
}

fn selector_matches(selector: &Value, labels: &Value) -> bool {
    selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v))
}

fn job(obj: &Value, old: Option<&Value>, e: &mut Errors) {
    let spec = &obj["spec"];
    pod_spec(
        spec["template"].get("spec"),
        "spec.template.spec",
        e,
        Some(&["OnFailure", "Never"]),
    );
    for f in ["backoffLimit", "parallelism", "completions"] {
        if spec[f].as_i64().is_some_and(|n| n < 0) {
            e.invalid(
                &format!("spec.{f}"),
                &spec[f],
                "must be greater than or equal to 0",
            );
        }
    }
    if spec["activeDeadlineSeconds"]
        .as_i64()
        .is_some_and(|n| n <= 0)
    {
        e.invalid(
            "spec.activeDeadlineSeconds",
            &spec["activeDeadlineSeconds"],
            "must be greater than or equal to 1",
        );
    }
    if !selector_matches(&spec["selector"], &spec["template"]["metadata"]["labels"]) {
        e.invalid(
            "spec.template.metadata.labels",
            &spec["template"]["metadata"]["labels"],
            "`selector` does not match template `labels`",
        );
    }
    if let Some(old) = old {
        if old["spec"]["selector"] != spec["selector"] {
            e.invalid("spec.selector", &spec["selector"], "field is immutable");
        }
        if old["spec"]["template"] != spec["template"] {
            e.invalid(
                "spec.template",
                &Value::String("core.PodTemplateSpec{...}".into()),
                "field is immutable",
            );
        }
    }
}

fn statefulset(obj: &Value, old: Option<&Value>, e: &mut Errors) {
    let spec = &obj["spec"];
    let claims: Vec<&str> = spec["volumeClaimTemplates"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["metadata"]["name"].as_str())
        .collect();
    pod_spec_with(
        spec["template"].get("spec"),
        "spec.template.spec",
        e,
        Some(&["Always"]),
        &claims,
    );
    if spec["replicas"].as_i64().is_some_and(|n| n < 0) {
        e.invalid(
            "spec.replicas",
            &spec["replicas"],
            "must be greater than or equal to 0",
        );
    }
    if spec["selector"].is_null() {
        e.required("spec.selector");
    } else if !selector_matches(&spec["selector"], &spec["template"]["metadata"]["labels"]) {
        e.invalid(
            "spec.template.metadata.labels",
            &spec["template"]["metadata"]["labels"],
            "`selector` does not match template `labels`",
        );
    }
    if let Some(old) = old {
        let os = &old["spec"];
        let fixed = [
            "selector",
            "serviceName",
            "volumeClaimTemplates",
            "podManagementPolicy",
        ];
        if fixed.iter().any(|f| os[f] != spec[f]) {
            e.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden");
        }
    }
}

fn service(obj: &Value, old: Option<&Value>, e: &mut Errors) {
    let spec = &obj["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        e.unsupported(
            "spec.type",
            &spec["type"],
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    let headless = spec["clusterIP"] == "None";
    if ports.is_empty() && ty != "ExternalName" && !headless {
        e.required("spec.ports");
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        if !p["port"].as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
            e.invalid(
                &format!("{f}.port"),
                &p["port"],
                "must be between 1 and 65535, inclusive",
            );
        }
        match p["name"].as_str() {
            None | Some("") if ports.len() > 1 => e.required(&format!("{f}.name")),
            Some(n) if !n.is_empty() && !dns_label(n) => {
                e.invalid(&format!("{f}.name"), &p["name"], LABEL_RFC1123)
            }
            Some(n) if !n.is_empty() && !names.insert(n.to_string()) => {
                e.0.push(format!("{f}.name: Duplicate value: \"{n}\""))
            }
            _ => {}
        }
        if let Some(pr) = p["protocol"].as_str()
            && !["TCP", "UDP", "SCTP"].contains(&pr)
        {
            e.unsupported(
                &format!("{f}.protocol"),
                &p["protocol"],
                &["SCTP", "TCP", "UDP"],
            );
        }
    }
    if let Some(old) = old
        && let Some(ip) = old.pointer("/spec/clusterIP").and_then(Value::as_str)
        && !ip.is_empty()
        && spec["clusterIP"].as_str() != Some(ip)
    {
        e.invalid(
            "spec.clusterIPs[0]",
            &spec["clusterIP"],
            "may not change once set",
        );
    }
}
