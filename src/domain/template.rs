//! Demo templates: the catalogue in `snapshots/`, one YAML file per template.
//! Loaded at start and validated strictly: an error names the file and the field.

use super::duration::{serde_duration, serde_duration_opt};
use super::quantity::{self, Quantity};
use super::resources;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use super::saved::Provenance;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Template {
    /// Identifier used in the API (`"template": "web-shop"`); a DNS label.
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub vcluster: Vcluster,
    /// Where the clean state is restored from: `oci://`, `s3://` or `container://`.
    pub snapshot: String,
    /// What a share link opens.
    pub entrypoint: Entrypoint,
    pub lifecycle: Lifecycle,
    /// The demo namespace's ResourceQuota `spec.hard`.
    #[serde(default)]
    pub quota: BTreeMap<String, Value>,
    /// Requests and limits for containers that name none (a LimitRange next to the
    /// quota). A quota on cpu or memory refuses every pod without them, the vcluster's
    /// synced workloads included, so such a quota needs these defaults.
    #[serde(default)]
    pub container_defaults: ContainerDefaults,
    /// Demos kept ready to be claimed, so that a start is instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_pool: Option<WarmPool>,
}

/// `warmPool: {size: 3, state: Running|Sleeping, maxAge: 24h}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmPool {
    /// How many unclaimed members to keep.
    pub size: u32,
    /// Running members are claimed instantly; Sleeping ones cost no compute and wake
    /// when claimed.
    #[serde(default)]
    pub state: PoolState,
    /// Members older than this are replaced (one at a time).
    #[serde(
        default,
        with = "serde_duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_age: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum PoolState {
    #[default]
    Running,
    Sleeping,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDefaults {
    #[serde(default)]
    pub requests: BTreeMap<String, Value>,
    #[serde(default)]
    pub limits: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vcluster {
    /// The vcluster chart version, pinned (`0.36.1`).
    pub version: String,
    /// The image with the vcluster CLI that runs the provisioning Job, pinned.
    pub cli_image: String,
    /// vcluster.yaml overrides.
    #[serde(default)]
    pub values: Value,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entrypoint {
    /// Namespace inside the vcluster.
    pub namespace: String,
    pub service: String,
    pub port: u16,
    #[serde(default = "root_path")]
    pub path: String,
}

fn root_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifetimes {
    #[serde(with = "serde_duration")]
    pub sleep_after_idle: Duration,
    #[serde(with = "serde_duration")]
    pub delete_after_idle: Duration,
    #[serde(with = "serde_duration")]
    pub max_lifetime: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Lifecycle {
    /// What a new demo gets.
    pub defaults: Lifetimes,
    /// The most a sales user may ask for; beyond it is admin-only.
    pub limits: Lifetimes,
    /// How far past its original expiry a demo may be extended, in total.
    #[serde(with = "serde_duration")]
    pub max_extension: Duration,
    /// A provisioning that takes longer ends in Failed.
    #[serde(
        default,
        with = "serde_duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub provision_timeout: Option<Duration>,
    /// A wake that takes longer ends in Failed.
    #[serde(
        default,
        with = "serde_duration_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub wake_timeout: Option<Duration>,
}

impl Lifecycle {
    pub fn provision_timeout(&self) -> Duration {
        self.provision_timeout.unwrap_or(Duration::minutes(10))
    }
    pub fn wake_timeout(&self) -> Duration {
        self.wake_timeout.unwrap_or(Duration::minutes(5))
    }
}

/// A template file that cannot be used, naming the file and the field.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[error("{file}: {field}: {message}")]
pub struct TemplateError {
    pub file: String,
    pub field: String,
    pub message: String,
}

fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn pinned_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

impl Template {
    /// Parses one file's text; `file` is only used in messages.
    pub fn parse(file: &str, text: &str) -> Result<Template, TemplateError> {
        let err = |field: &str, message: String| TemplateError {
            file: file.to_string(),
            field: field.to_string(),
            message,
        };
        let value: Value = serde_saphyr::from_str(text)
            .map_err(|e| err("(document)", format!("not valid YAML: {e}")))?;
        Template::from_value(file, value)
    }

    /// Reads a template already parsed into JSON (a saved template's resource);
    /// `source` is only used in messages.
    pub fn from_value(source: &str, value: Value) -> Result<Template, TemplateError> {
        let err = |field: &str, message: String| TemplateError {
            file: source.to_string(),
            field: field.to_string(),
            message,
        };
        let t: Template = serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            // serde names an unknown or missing field in its message; point at its parent.
            let field = if path == "." {
                "(top level)".to_string()
            } else {
                path
            };
            err(&field, inner)
        })?;
        t.check().map_err(|(field, message)| err(&field, message))?;
        Ok(t)
    }

    /// Every rule a template must meet: `Err((field, message))` for the first broken.
    pub fn check(&self) -> Result<(), (String, String)> {
        let f = |field: &str, msg: String| Err((field.to_string(), msg));
        if !dns_label(&self.name) || self.name.len() > 40 {
            return f(
                "name",
                format!(
                    "{:?} must be a lowercase DNS label of at most 40 characters",
                    self.name
                ),
            );
        }
        if self.display_name.trim().is_empty() {
            return f("displayName", "must not be empty".into());
        }
        if !pinned_version(&self.vcluster.version) {
            return f(
                "vcluster.version",
                format!(
                    "{:?} must be a pinned version such as 0.36.1",
                    self.vcluster.version
                ),
            );
        }
        let img = &self.vcluster.cli_image;
        let tagged = img.contains('@')
            || img
                .rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'));
        if img.trim().is_empty() || !tagged || img.ends_with(":latest") {
            return f(
                "vcluster.cliImage",
                format!("{img:?} must be pinned to a tag or digest (not :latest)"),
            );
        }
        if !(self.vcluster.values.is_object() || self.vcluster.values.is_null()) {
            return f(
                "vcluster.values",
                "must be a mapping of vcluster.yaml settings".into(),
            );
        }
        let schemes = ["oci://", "s3://", "container://"];
        if self.snapshot.trim().is_empty() {
            return f("snapshot", "a snapshot URL is required".into());
        }
        if !schemes
            .iter()
            .any(|s| self.snapshot.starts_with(s) && self.snapshot.len() > s.len())
        {
            return f(
                "snapshot",
                format!(
                    "{:?} must start with oci://, s3:// or container://",
                    self.snapshot
                ),
            );
        }
        if !dns_label(&self.entrypoint.namespace) {
            return f(
                "entrypoint.namespace",
                format!("{:?} must be a DNS label", self.entrypoint.namespace),
            );
        }
        if !dns_label(&self.entrypoint.service) {
            return f(
                "entrypoint.service",
                format!("{:?} must be a DNS label", self.entrypoint.service),
            );
        }
        if self.entrypoint.port == 0 {
            return f("entrypoint.port", "must be between 1 and 65535".into());
        }
        if !self.entrypoint.path.starts_with('/') {
            return f("entrypoint.path", "must start with /".into());
        }
        let (d, l) = (&self.lifecycle.defaults, &self.lifecycle.limits);
        for (name, dv, lv) in [
            ("sleepAfterIdle", d.sleep_after_idle, l.sleep_after_idle),
            ("deleteAfterIdle", d.delete_after_idle, l.delete_after_idle),
            ("maxLifetime", d.max_lifetime, l.max_lifetime),
        ] {
            if dv <= Duration::zero() {
                return f(
                    &format!("lifecycle.defaults.{name}"),
                    "must be longer than 0s".into(),
                );
            }
            if dv > lv {
                return f(
                    &format!("lifecycle.defaults.{name}"),
                    format!("is longer than lifecycle.limits.{name}"),
                );
            }
        }
        if d.sleep_after_idle > d.delete_after_idle {
            return f(
                "lifecycle.defaults.sleepAfterIdle",
                "must not be longer than deleteAfterIdle".into(),
            );
        }
        for (k, v) in &self.quota {
            let text = quantity_text(v);
            if k.is_empty()
                || text
                    .as_deref()
                    .map(Quantity::parse)
                    .is_none_or(|q| q.is_err())
            {
                return f(
                    &format!("quota.{k}"),
                    "must be a quantity such as \"8\" or \"16Gi\"".into(),
                );
            }
        }
        if let Some(p) = &self.warm_pool {
            if p.size == 0 || p.size > 50 {
                return f(
                    "warmPool.size",
                    format!("{} must be between 1 and 50", p.size),
                );
            }
            if p.max_age.is_some_and(|a| a <= Duration::zero()) {
                return f("warmPool.maxAge", "must be longer than 0s".into());
            }
        }
        let (req, lim) = (self.default_requests(), self.default_limits());
        for (part, given, parsed) in [
            ("requests", &self.container_defaults.requests, &req),
            ("limits", &self.container_defaults.limits, &lim),
        ] {
            for (k, v) in given {
                let field = format!("containerDefaults.{part}.{k}");
                if !matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    return f(&field, "must be cpu, memory or ephemeral-storage".into());
                }
                if parsed
                    .get(k)
                    .map(|t| Quantity::parse(t))
                    .is_none_or(|q| q.is_err())
                {
                    return f(
                        &field,
                        format!("{v} is not a quantity such as \"500m\" or \"512Mi\""),
                    );
                }
            }
        }
        for (k, r) in &req {
            if let Some(l) = lim.get(k)
                && quantity::compare(r, l) == Some(std::cmp::Ordering::Greater)
            {
                return f(
                    &format!("containerDefaults.requests.{k}"),
                    format!("{r} is more than containerDefaults.limits.{k} ({l})"),
                );
            }
        }
        let fill = |p: &resources::PodResources| resources::with_defaults(p, &req, &lim);
        let pods = [
            (
                "the vcluster",
                fill(&resources::vcluster(&self.vcluster.values)),
            ),
            ("the provisioning job", fill(&resources::provisioner())),
        ];
        if let Err((key, msg)) = resources::check_quota(&self.quota_hard(), &pods) {
            // `limits.cpu` wants containerDefaults.limits.cpu; `cpu` and `requests.cpu`
            // want containerDefaults.requests.cpu.
            let hint = if msg.contains("names no") {
                let default = match key.strip_prefix("limits.") {
                    Some(res) => format!("limits.{res}"),
                    None => format!("requests.{}", key.trim_start_matches("requests.")),
                };
                format!("; set containerDefaults.{default}")
            } else {
                String::new()
            };
            return f(&format!("quota.{key}"), format!("{msg}{hint}"));
        }
        Ok(())
    }

    /// What a demo is made from: snapshot, vcluster version, CLI image and values. Pool
    /// members made from another revision are replaced.
    pub fn revision(&self) -> String {
        use sha2::{Digest, Sha256};
        let what = serde_json::json!([
            self.snapshot,
            self.vcluster.version,
            self.vcluster.cli_image,
            self.vcluster.values
        ]);
        hex::encode(Sha256::digest(what.to_string().as_bytes()))[..12].to_string()
    }

    /// The LimitRange's `defaultRequest`.
    pub fn default_requests(&self) -> BTreeMap<String, String> {
        strings(&self.container_defaults.requests)
    }

    /// The LimitRange's `default` (limits).
    pub fn default_limits(&self) -> BTreeMap<String, String> {
        strings(&self.container_defaults.limits)
    }

    /// The quota as ResourceQuota `spec.hard` strings.
    pub fn quota_hard(&self) -> BTreeMap<String, String> {
        strings(&self.quota)
    }
}

/// A quantity written as a YAML string or number.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn strings(m: &BTreeMap<String, Value>) -> BTreeMap<String, String> {
    m.iter()
        .filter_map(|(k, v)| Some((k.clone(), quantity_text(v)?)))
        .collect()
}

/// A template saved from a live demo, as the catalogue holds it.
#[derive(Debug, Clone)]
pub struct SavedTemplate {
    pub template: Arc<Template>,
    pub provenance: Provenance,
    /// Deleted by an admin but still used by demos: they keep working, no new start
    /// may choose it.
    pub retiring: bool,
}

/// One entry of what sales staff may start.
#[derive(Debug, Clone)]
pub struct Listed {
    pub template: Arc<Template>,
    /// Set for templates saved from a demo.
    pub provenance: Option<Provenance>,
}

/// The catalogue: the shipped templates (files in `snapshots/`, fixed for the life of
/// the process) and the templates saved from demos (kept in the cluster, replaced
/// whenever the cluster's copy changes). A shipped name always wins.
#[derive(Debug, Default)]
pub struct Catalogue {
    pub templates: BTreeMap<String, Arc<Template>>,
    saved: RwLock<Arc<BTreeMap<String, SavedTemplate>>>,
}

impl Catalogue {
    /// Loads every `*.yaml`/`*.yml` in `dir`; all errors are reported, not just the first.
    pub fn load_dir(dir: &Path) -> Result<Catalogue, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let mut files: Vec<_> = match std::fs::read_dir(dir) {
            Ok(rd) => rd.filter_map(Result::ok).map(|e| e.path()).collect(),
            Err(e) => {
                return Err(vec![TemplateError {
                    file: dir.display().to_string(),
                    field: "(directory)".into(),
                    message: e.to_string(),
                }]);
            }
        };
        files.retain(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"));
        files.sort();
        let mut cat = Catalogue::default();
        let mut origin: BTreeMap<String, String> = BTreeMap::new();
        for path in files {
            let file = path.display().to_string();
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(TemplateError {
                        file,
                        field: "(file)".into(),
                        message: e.to_string(),
                    });
                    continue;
                }
            };
            match Template::parse(&file, &text) {
                Ok(t) => {
                    if let Some(first) = origin.get(&t.name) {
                        errors.push(TemplateError {
                            file,
                            field: "name".into(),
                            message: format!(
                                "duplicate template name {:?} (also in {first})",
                                t.name
                            ),
                        });
                        continue;
                    }
                    origin.insert(t.name.clone(), file);
                    cat.templates.insert(t.name.clone(), Arc::new(t));
                }
                Err(e) => errors.push(e),
            }
        }
        if cat.templates.is_empty() && errors.is_empty() {
            errors.push(TemplateError {
                file: dir.display().to_string(),
                field: "(directory)".into(),
                message: "no template files (*.yaml) found".into(),
            });
        }
        if errors.is_empty() {
            Ok(cat)
        } else {
            Err(errors)
        }
    }

    /// A catalogue of these shipped templates.
    pub fn of(templates: impl IntoIterator<Item = Template>) -> Catalogue {
        Catalogue {
            templates: templates
                .into_iter()
                .map(|t| (t.name.clone(), Arc::new(t)))
                .collect(),
            saved: Default::default(),
        }
    }

    /// The template a demo was made from: shipped, saved, or saved and retiring.
    pub fn get(&self, name: &str) -> Option<Arc<Template>> {
        if let Some(t) = self.templates.get(name) {
            return Some(t.clone());
        }
        self.saved_now().get(name).map(|s| s.template.clone())
    }

    /// A template a new demo may start from (not a retiring one).
    pub fn startable(&self, name: &str) -> Option<Arc<Template>> {
        if let Some(t) = self.templates.get(name) {
            return Some(t.clone());
        }
        self.saved_now()
            .get(name)
            .filter(|s| !s.retiring)
            .map(|s| s.template.clone())
    }

    /// Whether a name is taken (shipped or saved, retiring included).
    pub fn contains(&self, name: &str) -> bool {
        self.templates.contains_key(name) || self.saved_now().contains_key(name)
    }

    /// What may be started, shipped first, then saved, each in name order.
    pub fn listed(&self) -> Vec<Listed> {
        let saved = self.saved_now();
        self.templates
            .values()
            .map(|t| Listed {
                template: t.clone(),
                provenance: None,
            })
            .chain(
                saved
                    .values()
                    .filter(|s| !s.retiring && !self.templates.contains_key(&s.template.name))
                    .map(|s| Listed {
                        template: s.template.clone(),
                        provenance: Some(s.provenance.clone()),
                    }),
            )
            .collect()
    }

    /// Every template demos may be using (retiring ones included): pools, health.
    pub fn all(&self) -> Vec<Arc<Template>> {
        let saved = self.saved_now();
        self.templates
            .values()
            .cloned()
            .chain(
                saved
                    .values()
                    .filter(|s| !self.templates.contains_key(&s.template.name))
                    .map(|s| s.template.clone()),
            )
            .collect()
    }

    pub fn provenance(&self, name: &str) -> Option<Provenance> {
        self.saved_now().get(name).map(|s| s.provenance.clone())
    }

    /// Replaces the saved templates with what the cluster holds now.
    pub fn set_saved(&self, saved: BTreeMap<String, SavedTemplate>) {
        *self.saved.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(saved);
    }

    fn saved_now(&self) -> Arc<BTreeMap<String, SavedTemplate>> {
        self.saved.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub const GOOD: &str = r#"
name: web-shop
displayName: Web shop
description: A shop.
vcluster:
  version: 0.36.1
  cliImage: ghcr.io/loft-sh/vcluster-cli:0.36.1
  values:
    sync: {toHost: {ingresses: {enabled: true}}}
snapshot: oci://ghcr.io/example/snap:1
entrypoint: {namespace: shop, service: storefront, port: 80}
lifecycle:
  defaults: {sleepAfterIdle: 30m, deleteAfterIdle: 1d, maxLifetime: 3d}
  limits: {sleepAfterIdle: 2h, deleteAfterIdle: 7d, maxLifetime: 14d}
  maxExtension: 7d
quota:
  requests.cpu: 8
  requests.memory: 16Gi
"#;

    fn error_for(text: &str) -> TemplateError {
        Template::parse("snapshots/t.yaml", text).unwrap_err()
    }

    #[test]
    fn a_good_template_loads() {
        let t = Template::parse("t.yaml", GOOD).unwrap();
        assert_eq!(t.lifecycle.defaults.sleep_after_idle, Duration::minutes(30));
        assert_eq!(t.quota_hard()["requests.cpu"], "8");
        assert_eq!(t.entrypoint.path, "/");
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let e = error_for(&GOOD.replace("sleepAfterIdle: 30m", "sleepAfterIdle: 30 minutes"));
        assert_eq!(e.file, "snapshots/t.yaml");
        assert_eq!(e.field, "lifecycle.defaults.sleepAfterIdle");
        assert!(e.message.contains("invalid duration"), "{e}");

        let e =
            error_for(&GOOD.replace("description: A shop.", "description: A shop.\ncolour: red"));
        assert!(e.message.contains("unknown field `colour`"), "{e}");

        let e = error_for(&GOOD.replace("snapshot: oci://ghcr.io/example/snap:1\n", ""));
        assert!(e.message.contains("missing field `snapshot`"), "{e}");

        let e = error_for(&GOOD.replace("oci://ghcr.io/example/snap:1", "http://x"));
        assert_eq!(e.field, "snapshot");

        let e = error_for(&GOOD.replace("vcluster-cli:0.36.1", "vcluster-cli:latest"));
        assert_eq!(e.field, "vcluster.cliImage");

        let e = error_for(&GOOD.replace("version: 0.36.1", "version: latest"));
        assert_eq!(e.field, "vcluster.version");

        let e = error_for(&GOOD.replace("maxLifetime: 3d", "maxLifetime: 30d"));
        assert_eq!(e.field, "lifecycle.defaults.maxLifetime");
    }

    #[test]
    fn duplicate_names_are_refused() {
        let dir = std::env::temp_dir().join(format!("showroom-tpl-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.yaml"), GOOD).unwrap();
        std::fs::write(dir.join("b.yaml"), GOOD).unwrap();
        let errs = Catalogue::load_dir(&dir).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].file.ends_with("b.yaml") && errs[0].field == "name",
            "{}",
            errs[0]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_shipped_catalogue_is_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("snapshots");
        let cat = Catalogue::load_dir(&dir).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(cat.templates.len() >= 2);
    }
}
