//! The `Demo` custom resource: desired state and lease in spec, observed state in status.

use crate::domain::lifecycle::Phase;
use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const GROUP: &str = "showroom.dev";
/// Labels every namespace showroom creates (with value `showroom`).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "showroom";
/// The Demo a namespace or Job belongs to.
pub const DEMO_LABEL: &str = "showroom.dev/demo";
pub const TEMPLATE_LABEL: &str = "showroom.dev/template";
/// The UID of the Demo that created a namespace: the sweep's proof of ownership.
pub const DEMO_UID_ANNOTATION: &str = "showroom.dev/demo-uid";
/// Keeps a Demo until its namespace is verifiably gone.
pub const FINALIZER: &str = "showroom.dev/cleanup";
/// Every Demo and demo namespace name starts with this.
pub const NAME_PREFIX: &str = "demo-";
/// The showroom installation a Demo or demo namespace belongs to.
pub const INSTANCE_LABEL: &str = "showroom.dev/instance";
/// A hash of a Demo's owner (owner names may hold characters a label value cannot),
/// so that the owner's demos can be selected.
pub const OWNER_LABEL: &str = "showroom.dev/owner-hash";
/// On an unclaimed warm-pool member: the template whose pool it belongs to.
pub const POOL_LABEL: &str = "showroom.dev/pool";
/// The template revision (snapshot, version, values) a demo was made from.
pub const REVISION_LABEL: &str = "showroom.dev/revision";
/// A hash of (instance, owner, Idempotency-Key) on a demo claimed from a pool, whose
/// name cannot carry it.
pub const IDEMPOTENCY_LABEL: &str = "showroom.dev/idempotency";

/// The owner-hash label value of an owner.
pub fn owner_hash(owner: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(owner.as_bytes()))[..20].to_string()
}

/// One showroom installation's share of a host cluster. Several can share a cluster
/// (staging and production, or test runs side by side); each watches, counts, sweeps
/// and deletes only what carries its own instance label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance(String);

impl Default for Instance {
    fn default() -> Self {
        Instance("default".into())
    }
}

impl Instance {
    /// A label value: 1 to 63 characters, alphanumeric inside with `-`, `_` or `.`.
    pub fn new(name: &str) -> Result<Instance, String> {
        let ok = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric());
        if ok {
            Ok(Instance(name.to_string()))
        } else {
            Err(format!(
                "{name:?} is not a valid instance name (a label value: up to 63 letters, digits, '-', '_' or '.')"
            ))
        }
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// The label selector for this instance's objects.
    pub fn selector(&self) -> String {
        format!("{INSTANCE_LABEL}={}", self.0)
    }

    /// Whether labels place an object in this instance.
    pub fn owns(&self, labels: &std::collections::BTreeMap<String, String>) -> bool {
        labels.get(INSTANCE_LABEL) == Some(&self.0)
    }
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "showroom.dev",
    version = "v1alpha1",
    kind = "Demo",
    plural = "demos",
    singular = "demo",
    shortname = "demo",
    status = "DemoStatus",
    doc = "A live product demo: a vcluster restored from a template's snapshot, held by a lease.",
    printcolumn = r#"{"name":"Template","type":"string","jsonPath":".spec.template"}"#,
    printcolumn = r#"{"name":"Owner","type":"string","jsonPath":".spec.owner"}"#,
    printcolumn = r#"{"name":"Pool","type":"string","jsonPath":".spec.pool","description":"the warm pool an unclaimed member belongs to"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Idle","type":"date","jsonPath":".status.lastActivity","description":"time since the last activity"}"#,
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DemoSpec {
    /// The template (file in snapshots/) this demo was created from.
    pub template: String,
    /// The user who holds the lease.
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Lifetimes resolved at creation (template defaults plus allowed overrides), so a
    /// later template change does not alter running demos.
    pub lifecycle: DemoLifecycle,
    /// Running or Sleeping: what the owner (or the idle rule) wants.
    #[serde(default)]
    pub desired_state: DesiredState,
    /// Links handed to prospects; only hashes of their tokens are stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub share_links: Vec<ShareLinkSpec>,
    /// Set on an unclaimed warm-pool member (the template of its pool); removed when
    /// a start claims it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// When a start claimed it from a warm pool: the lease counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed_at: Option<DateTime<Utc>>,
    /// Raised by each reset request; the controller restores the snapshot until the
    /// status has caught up.
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(with = "i64")]
    pub reset_generation: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ShareLinkSpec {
    /// Public id (not secret), used in URLs and the proxy host name.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Hex SHA-256 of the token in the link.
    pub token_sha256: String,
    /// Argon2 hash of the optional passcode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passcode_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
    /// The salesperson the prospect sees as their contact (who made the link, unless
    /// they named someone else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    /// How to reach them (an email address or phone number), shown as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender_contact: Option<String>,
    /// A note to the prospect on the landing page ("Hi Dana, here is the shop...").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    pub kind: crate::domain::lifecycle::NoticeKind,
    /// When it will happen unless someone uses or extends the demo.
    pub at: DateTime<Utc>,
    pub message: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LinkVisits {
    /// Schema'd as int64: Kubernetes knows no "uint64" format (it warns on apply).
    #[schemars(with = "i64")]
    pub visits: u64,
    pub first_opened_at: Option<DateTime<Utc>>,
    pub last_opened_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DemoLifecycle {
    pub sleep_after_idle: String,
    pub delete_after_idle: String,
    pub max_lifetime: String,
    /// Total extension granted past maxLifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Default)]
pub enum DesiredState {
    #[default]
    Running,
    Sleeping,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DemoStatus {
    pub phase: Option<Phase>,
    pub phase_since: Option<DateTime<Utc>>,
    /// The host namespace holding the vcluster.
    pub namespace: Option<String>,
    /// The vcluster's name inside that namespace.
    pub vcluster: Option<String>,
    pub message: Option<String>,
    #[serde(default)]
    pub progress: Vec<ProgressStep>,
    pub last_activity: Option<DateTime<Utc>>,
    pub sleeping_since: Option<DateTime<Utc>>,
    pub ready_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub conditions: Vec<DemoCondition>,
    /// The announced next sleep or deletion, while it is within the notice lead time.
    #[serde(default)]
    pub notice: Option<Notice>,
    /// Visits per share link id, written coalesced with activity.
    #[serde(default)]
    pub share_link_visits: std::collections::BTreeMap<String, LinkVisits>,
    /// The last reset generation carried out (see `spec.resetGeneration`).
    #[serde(default)]
    #[schemars(with = "i64")]
    pub reset_generation: u32,
    /// How long the last wake took, from Waking to Ready (the template's wake
    /// estimate is the median of its demos' last wakes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_wake_seconds: Option<f64>,
    /// The latest "save as template" of this demo: in progress, done or failed (why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub save: Option<SaveStatus>,
}

/// A save of a demo as a new template, as the demo's status shows it.
#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SaveStatus {
    /// The new template's name.
    pub template: String,
    pub phase: SavePhase,
    /// Where the snapshot is written.
    pub snapshot: String,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum SavePhase {
    /// The snapshot is being written; the template is not in the catalogue yet.
    Saving,
    /// The template is in the catalogue.
    Saved,
    /// Nothing was added to the catalogue; `message` says why.
    Failed,
}

/// A template saved from a live demo. Shipped templates are files (`snapshots/`, the
/// ConfigMap); these live in showroom's namespace, so that every replica sees the same
/// catalogue and a restart loses nothing. While `status.phase` is not `Ready` the
/// snapshot is still being written and the template is not offered.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[kube(
    group = "showroom.dev",
    version = "v1alpha1",
    kind = "DemoTemplate",
    plural = "demotemplates",
    singular = "demotemplate",
    shortname = "dtpl",
    namespaced,
    status = "DemoTemplateStatus",
    doc = "A demo template saved from a live demo: the origin's settings with a new snapshot.",
    printcolumn = r#"{"name":"Display name","type":"string","jsonPath":".spec.template.displayName"}"#,
    printcolumn = r#"{"name":"From","type":"string","jsonPath":".spec.provenance.fromTemplate","description":"the template of the demo it was saved from"}"#,
    printcolumn = r#"{"name":"Saved by","type":"string","jsonPath":".spec.provenance.savedBy"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Snapshot","type":"string","jsonPath":".spec.template.snapshot","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DemoTemplateSpec {
    /// The template, in the same form as a file in `snapshots/` (checked as strictly
    /// when read: one that fails is left out of the catalogue, with a log line).
    #[schemars(schema_with = "any_object")]
    pub template: serde_json::Value,
    pub provenance: crate::domain::saved::Provenance,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DemoTemplateStatus {
    /// `Ready` once the snapshot is written; absent while it is being written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<DateTime<Utc>>,
}

/// On a DemoTemplate: kept until no demo uses the template any more.
pub const TEMPLATE_IN_USE_FINALIZER: &str = "showroom.dev/in-use";

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProgressStep {
    pub name: String,
    pub state: StepState,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum StepState {
    Pending,
    Running,
    Done,
    Failed,
}

#[derive(Deserialize, Serialize, Clone, Debug, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DemoCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: DateTime<Utc>,
}

/// The provisioning steps, in order, as shown to users.
pub const STEPS: [&str; 6] = [
    "namespace",
    "quota",
    "access",
    "restore",
    "boot",
    "kubeconfig",
];

impl Demo {
    pub fn phase(&self) -> Phase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or_default()
    }

    /// A reset asked for (`spec.resetGeneration`) and not yet carried out.
    pub fn reset_pending(&self) -> bool {
        self.spec.reset_generation > self.status.as_ref().map_or(0, |s| s.reset_generation)
    }
}

/// The CRDs as YAML documents, as `showroom crd` prints them and deploy/ holds them.
pub fn crd_yaml() -> String {
    use kube::CustomResourceExt;
    [Demo::crd(), DemoTemplate::crd()]
        .iter()
        .map(|crd| {
            let value = serde_json::to_value(crd).expect("CRD serializes");
            serde_saphyr::to_string(&value).expect("CRD renders as YAML")
        })
        .collect::<Vec<_>>()
        .join("---\n")
}
