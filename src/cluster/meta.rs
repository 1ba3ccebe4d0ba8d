//! What showroom keeps of objects it needs only the metadata of (namespaces for the
//! sweep, slot Leases for the janitor): the fields it reads, compactly.
//!
//! Why not `ObjectMeta`: its labels and annotations are B-tree maps, and a map with one
//! entry already allocates a whole node (about 540 bytes). A heap profile of
//! `showroom serve` at 10,000 demos put the namespace and Lease caches at some 19 MiB
//! of the 78 MiB live, most of it such nodes; as sorted slices they take what their
//! strings take.

use super::crd::MANAGED_BY_LABEL;
use chrono::{DateTime, Utc};
use kube::core::ObjectMeta;

type Pairs = Box<[(Box<str>, Box<str>)]>;

/// The metadata showroom reads of an object, with only its own labels and annotations
/// (and the managed-by label): no other is read, and each kept byte is kept 10,000
/// times at 10,000 demos.
#[derive(Debug, Clone, PartialEq)]
pub struct Meta {
    pub name: Box<str>,
    pub uid: Option<Box<str>>,
    pub resource_version: Option<Box<str>>,
    pub created: Option<DateTime<Utc>>,
    pub deleted: Option<DateTime<Utc>>,
    labels: Pairs,
    annotations: Pairs,
}

/// Whether showroom reads a label or annotation of this key.
fn ours(key: &str) -> bool {
    key.starts_with("showroom.dev/") || key == MANAGED_BY_LABEL
}

fn pairs(map: Option<&std::collections::BTreeMap<String, String>>) -> Pairs {
    // A BTreeMap iterates in key order: the slice is sorted for `find`.
    map.into_iter()
        .flatten()
        .filter(|(k, _)| ours(k))
        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
        .collect()
}

fn find<'a>(pairs: &'a Pairs, key: &str) -> Option<&'a str> {
    pairs
        .binary_search_by(|(k, _)| (**k).cmp(key))
        .ok()
        .map(|i| &*pairs[i].1)
}

impl Meta {
    pub fn of(m: &ObjectMeta) -> Meta {
        Meta {
            name: m.name.as_deref().unwrap_or_default().into(),
            uid: m.uid.as_deref().map(Into::into),
            resource_version: m.resource_version.as_deref().map(Into::into),
            created: super::time::created_at(m),
            deleted: super::time::deleted_at(m),
            labels: pairs(m.labels.as_ref()),
            annotations: pairs(m.annotations.as_ref()),
        }
    }

    /// One of showroom's labels (None for any other key: those are not kept).
    pub fn label(&self, key: &str) -> Option<&str> {
        find(&self.labels, key)
    }

    /// One of showroom's annotations (None for any other key: those are not kept).
    pub fn annotation(&self, key: &str) -> Option<&str> {
        find(&self.annotations, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_showrooms_own_labels_and_annotations_and_finds_them() {
        let m: ObjectMeta = serde_json::from_value(json!({
            "name": "demo-1", "uid": "u1", "resourceVersion": "7",
            "creationTimestamp": "2026-11-27T10:00:00Z",
            "labels": {"app": "x", "showroom.dev/instance": "prod", "showroom.dev/demo": "demo-1",
                       MANAGED_BY_LABEL: "showroom"},
            "annotations": {"showroom.dev/demo-uid": "abc", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        }))
        .unwrap();
        let meta = Meta::of(&m);
        assert_eq!(&*meta.name, "demo-1");
        assert_eq!(meta.uid.as_deref(), Some("u1"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert_eq!(
            meta.created.unwrap().to_rfc3339(),
            "2026-11-27T10:00:00+00:00"
        );
        assert_eq!(meta.deleted, None);
        assert_eq!(meta.label("showroom.dev/instance"), Some("prod"));
        assert_eq!(meta.label("showroom.dev/demo"), Some("demo-1"));
        assert_eq!(meta.label(MANAGED_BY_LABEL), Some("showroom"));
        assert_eq!(meta.label("app"), None, "not showroom's: not kept");
        assert_eq!(meta.label("showroom.dev/absent"), None);
        assert_eq!(meta.annotation("showroom.dev/demo-uid"), Some("abc"));
        assert_eq!(
            meta.annotation("kubectl.kubernetes.io/last-applied-configuration"),
            None
        );
        assert_eq!(
            Meta::of(&ObjectMeta::default()).label("showroom.dev/x"),
            None
        );
    }
}
