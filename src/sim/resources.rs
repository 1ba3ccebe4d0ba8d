//! The resource types the simulated API server knows: built-ins, plus one per CRD.

use serde_json::{Value, json};

/// A printer column, as in a CRD's `additionalPrinterColumns`.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub priority: i64,
}

#[derive(Debug, Clone)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub status: bool,
    pub scale: bool,
    pub short_names: Vec<String>,
    pub columns: Vec<Column>,
    /// The CRD that defined it, if any (removed with it).
    pub crd: Option<String>,
    /// The CRD version's structural schema (`openAPIV3Schema`), for pruning,
    /// defaulting and validation.
    pub schema: Option<std::sync::Arc<Value>>,
}

/// (group, version, plural): how a request names a resource type.
pub type TypeKey = (String, String, String);

impl ResourceType {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            status: false,
            scale: false,
            short_names: vec![],
            columns: vec![],
            crd: None,
            schema: None,
        }
    }

    pub fn key(&self) -> TypeKey {
        (
            self.group.clone(),
            self.version.clone(),
            self.plural.clone(),
        )
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The group/resource string used in error messages (`statefulsets.apps`).
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// An `APIResource` entry for discovery, plus its subresources.
    pub fn discovery(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
            "shortNames": self.short_names,
        })];
        if self.status {
            out.push(json!({
                "name": format!("{}/status", self.plural), "singularName": "",
                "namespaced": self.namespaced, "kind": self.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        if self.kind == "Pod" && self.group.is_empty() {
            out.push(json!({
                "name": "pods/binding", "singularName": "", "namespaced": true,
                "kind": "Binding", "verbs": ["create"],
            }));
        }
        if self.scale {
            out.push(json!({
                "name": format!("{}/scale", self.plural), "singularName": "",
                "namespaced": self.namespaced, "group": "autoscaling", "version": "v1",
                "kind": "Scale", "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }

    /// Reads a CRD object into the resource types it serves (one per served version).
    /// A schema that is not structural is refused, as apiextensions.k8s.io/v1 does.
    pub fn from_crd(crd: &Value) -> Result<Vec<ResourceType>, String> {
        let spec = crd.get("spec").ok_or("CRD has no spec")?;
        let s = |p: &str| spec.pointer(p).and_then(Value::as_str).map(str::to_string);
        let group = s("/group").ok_or("spec.group is required")?;
        let kind = s("/names/kind").ok_or("spec.names.kind is required")?;
        let plural = s("/names/plural").ok_or("spec.names.plural is required")?;
        let singular = s("/names/singular").unwrap_or_else(|| kind.to_lowercase());
        let namespaced = match s("/scope").as_deref() {
            Some("Namespaced") => true,
            Some("Cluster") => false,
            other => return Err(format!("spec.scope: unsupported value {other:?}")),
        };
        let short_names: Vec<String> = spec
            .pointer("/names/shortNames")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let versions = spec
            .get("versions")
            .and_then(Value::as_array)
            .ok_or("spec.versions is required")?;
        let name = crd
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if name != format!("{plural}.{group}") {
            return Err(format!(
                "metadata.name: must be spec.names.plural+\".\"+spec.group ({plural}.{group})"
            ));
        }
        let mut out = Vec::new();
        for v in versions {
            if v.get("served").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            let version = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or("spec.versions[].name is required")?;
            let columns = v
                .get("additionalPrinterColumns")
                .and_then(Value::as_array)
                .map(|cols| {
                    cols.iter()
                        .map(|c| Column {
                            name: c["name"].as_str().unwrap_or_default().to_string(),
                            type_: c["type"].as_str().unwrap_or("string").to_string(),
                            json_path: c["jsonPath"].as_str().unwrap_or_default().to_string(),
                            priority: c["priority"].as_i64().unwrap_or(0),
                        })
                        .collect()
                })
                .unwrap_or_default();
            let Some(schema) = v.pointer("/schema/openAPIV3Schema") else {
                return Err(format!(
                    "spec.versions[{version}].schema.openAPIV3Schema: Required value: schemas are required"
                ));
            };
            structural(
                schema,
                &format!("spec.versions[{version}].schema.openAPIV3Schema"),
            )?;
            out.push(ResourceType {
                group: group.clone(),
                version: version.to_string(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: singular.clone(),
                namespaced,
                status: v.pointer("/subresources/status").is_some(),
                scale: false,
                short_names: short_names.clone(),
                columns,
                crd: Some(name.to_string()),
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .filter(|s| s.is_object())
                    .map(|s| std::sync::Arc::new(s.clone())),
            });
        }
        Ok(out)
    }
}

/// A structural schema names a type for every field, except where it says the value
/// is an int-or-string or keeps unknown fields.
fn structural(s: &Value, path: &str) -> Result<(), String> {
    let flag = |k: &str| s.get(k) == Some(&Value::Bool(true));
    let typed = s
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    if !typed
        && !flag("x-kubernetes-int-or-string")
        && !flag("x-kubernetes-preserve-unknown-fields")
    {
        return Err(format!(
            "{path}.type: Required value: must not be empty for specified object fields"
        ));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        if s.get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t != "object")
        {
            return Err(format!(
                "{path}.properties: Forbidden: only allowed for type object"
            ));
        }
        for (k, c) in props {
            structural(c, &format!("{path}.properties[{k}]"))?;
        }
    }
    if let Some(items) = s.get("items") {
        structural(items, &format!("{path}.items"))?;
    }
    if let Some(a) = s.get("additionalProperties").filter(|a| a.is_object()) {
        if s.get("properties").is_some() {
            return Err(format!(
                "{path}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"
            ));
        }
        structural(a, &format!("{path}.additionalProperties"))?;
    }
    Ok(())
}

/// Every built-in type the simulation serves.
pub fn builtins() -> Vec<ResourceType> {
    let ns = |g: &str, v: &str, k: &str, p: &str| ResourceType::builtin(g, v, k, p, true);
    let cl = |g: &str, v: &str, k: &str, p: &str| ResourceType::builtin(g, v, k, p, false);
    let mut namespaces = cl("", "v1", "Namespace", "namespaces");
    namespaces.status = true;
    namespaces.short_names = vec!["ns".into()];
    let mut pods = ns("", "v1", "Pod", "pods");
    pods.status = true;
    pods.short_names = vec!["po".into()];
    let mut services = ns("", "v1", "Service", "services");
    services.status = true;
    services.short_names = vec!["svc".into()];
    let mut pvcs = ns("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims");
    pvcs.status = true;
    pvcs.short_names = vec!["pvc".into()];
    let mut quotas = ns("", "v1", "ResourceQuota", "resourcequotas");
    quotas.status = true;
    quotas.short_names = vec!["quota".into()];
    let mut sts = ns("apps", "v1", "StatefulSet", "statefulsets");
    sts.status = true;
    sts.scale = true;
    sts.short_names = vec!["sts".into()];
    let mut jobs = ns("batch", "v1", "Job", "jobs");
    jobs.status = true;
    let mut crds = cl(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    crds.status = true;
    crds.short_names = vec!["crd".into(), "crds".into()];
    let mut sa = ns("", "v1", "ServiceAccount", "serviceaccounts");
    sa.short_names = vec!["sa".into()];
    let mut cm = ns("", "v1", "ConfigMap", "configmaps");
    cm.short_names = vec!["cm".into()];
    let mut limits = ns("", "v1", "LimitRange", "limitranges");
    limits.short_names = vec!["limits".into()];
    let mut events = ns("", "v1", "Event", "events");
    events.short_names = vec!["ev".into()];
    let mut nodes = cl("", "v1", "Node", "nodes");
    nodes.status = true;
    nodes.short_names = vec!["no".into()];
    let mut deployments = ns("apps", "v1", "Deployment", "deployments");
    deployments.status = true;
    deployments.short_names = vec!["deploy".into()];
    vec![
        namespaces,
        nodes,
        deployments,
        pods,
        services,
        pvcs,
        quotas,
        sa,
        cm,
        limits,
        events,
        ns("", "v1", "Secret", "secrets"),
        sts,
        jobs,
        ns("coordination.k8s.io", "v1", "Lease", "leases"),
        ns("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        ns(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        ns("events.k8s.io", "v1", "Event", "events"),
        cl(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
        ),
        cl(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
        ),
        crds,
    ]
}
