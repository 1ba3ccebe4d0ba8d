//! Templates saved from live demos: a sales engineer prepares a demo, and colleagues
//! start from exactly that state. The saved template is the origin's copy (lifecycle,
//! quota, entrypoint, pool) with a new name, texts and snapshot URL, and a record of
//! where it came from.

use super::template::{Template, TemplateError};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Who saved a template, from which demo and template, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub saved_by: String,
    pub from_demo: String,
    pub from_template: String,
    pub saved_at: DateTime<Utc>,
}

/// What a save asks for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaveRequest {
    /// The new template's name (a DNS label of at most 40 characters).
    pub template: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// The URL a saved template's snapshot is written to: next to the origin's (same
/// registry repository directory or bucket prefix), named after the new template and
/// stamped with the time, so that a name used again never overwrites an older save.
///
/// `oci://r/demos/web-shop:2026-11-01` → `oci://r/demos/acme-shop:20261127-130501`;
/// `s3://b/demos/web-shop.tar.gz` → `s3://b/demos/acme-shop-20261127-130501.tar.gz`.
pub fn snapshot_url_next_to(origin: &str, name: &str, at: DateTime<Utc>) -> String {
    let stamp = at.format("%Y%m%d-%H%M%S");
    let (scheme, rest) = origin.split_once("://").unwrap_or(("oci", origin));
    let (dir, last) = match rest.rsplit_once('/') {
        Some((d, l)) => (format!("{d}/"), l),
        None => (String::new(), rest),
    };
    if scheme == "oci" {
        // A tag is what follows the last ':' of the last path segment.
        return format!("oci://{dir}{name}:{stamp}");
    }
    // Keep the file's extension(s): `.tar.gz` stays `.tar.gz`.
    let ext = last.find('.').map(|i| &last[i..]).unwrap_or("");
    format!("{scheme}://{dir}{name}-{stamp}{ext}")
}

/// The template a save makes: the origin with a new name, texts and snapshot. Checked
/// like a template file (the error names the field).
pub fn derive(
    origin: &Template,
    req: &SaveRequest,
    provenance: &Provenance,
) -> Result<Template, TemplateError> {
    let err = |field: &str, message: String| TemplateError {
        file: "request".into(),
        field: field.into(),
        message,
    };
    let mut t = origin.clone();
    t.name = req.template.trim().to_string();
    t.display_name = match req.display_name.as_deref().map(str::trim) {
        Some(d) if d.chars().count() > 80 => {
            return Err(err("displayName", "must be at most 80 characters".into()));
        }
        Some(d) if !d.is_empty() => d.to_string(),
        _ => format!("{} ({})", origin.display_name, t.name),
    };
    t.description = match req.description.as_deref().map(str::trim) {
        Some(d) if d.chars().count() > 2000 => {
            return Err(err("description", "must be at most 2000 characters".into()));
        }
        Some(d) if !d.is_empty() => d.to_string(),
        _ => format!(
            "Saved by {} from demo {} ({}).",
            provenance.saved_by, provenance.from_demo, origin.display_name
        ),
    };
    t.snapshot = snapshot_url_next_to(&origin.snapshot, &t.name, provenance.saved_at);
    t.check().map_err(|(field, message)| {
        // The name is the request's `template` field.
        let field = if field == "name" {
            "template".into()
        } else {
            field
        };
        err(&field, message)
    })?;
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-27T13:05:01Z")
            .unwrap()
            .into()
    }

    #[test]
    fn the_new_snapshot_sits_next_to_the_origin() {
        let cases = [
            (
                "oci://ghcr.io/demos/snapshots/web-shop:2026-11-01",
                "oci://ghcr.io/demos/snapshots/acme-shop:20261127-130501",
            ),
            (
                "oci://registry:5000/shop",
                "oci://registry:5000/acme-shop:20261127-130501",
            ),
            (
                "s3://bucket/demos/web-shop.tar.gz",
                "s3://bucket/demos/acme-shop-20261127-130501.tar.gz",
            ),
            (
                "container:///data/snapshots/web-shop",
                "container:///data/snapshots/acme-shop-20261127-130501",
            ),
        ];
        for (origin, want) in cases {
            assert_eq!(
                snapshot_url_next_to(origin, "acme-shop", at()),
                want,
                "{origin}"
            );
        }
    }

    fn origin() -> Template {
        Template::parse("t.yaml", crate::domain::template::tests::GOOD).unwrap()
    }

    fn prov() -> Provenance {
        Provenance {
            saved_by: "alice".into(),
            from_demo: "demo-1".into(),
            from_template: "web-shop".into(),
            saved_at: at(),
        }
    }

    #[test]
    fn a_saved_template_copies_the_origin_with_a_new_name_and_snapshot() {
        let req = SaveRequest {
            template: "acme-shop".into(),
            display_name: Some("Shop for ACME".into()),
            description: None,
        };
        let t = derive(&origin(), &req, &prov()).unwrap();
        assert_eq!(t.name, "acme-shop");
        assert_eq!(t.display_name, "Shop for ACME");
        assert!(t.description.contains("Saved by alice from demo demo-1"));
        assert_eq!(
            t.snapshot,
            "oci://ghcr.io/example/acme-shop:20261127-130501"
        );
        let o = origin();
        assert_eq!(t.lifecycle.defaults, o.lifecycle.defaults);
        assert_eq!(t.quota, o.quota);
        assert_eq!(t.entrypoint.service, o.entrypoint.service);
        assert_eq!(t.vcluster.cli_image, o.vcluster.cli_image);
    }

    #[test]
    fn a_bad_name_is_refused_naming_the_field() {
        for bad in ["", "Acme", "acme_shop", "-x", &"x".repeat(41)] {
            let req = SaveRequest {
                template: bad.into(),
                ..Default::default()
            };
            let e = derive(&origin(), &req, &prov()).unwrap_err();
            assert_eq!(e.field, "template", "{bad:?}: {e}");
        }
        let req = SaveRequest {
            template: "ok".into(),
            display_name: Some("x".repeat(81)),
            ..Default::default()
        };
        assert_eq!(
            derive(&origin(), &req, &prov()).unwrap_err().field,
            "displayName"
        );
    }
}
