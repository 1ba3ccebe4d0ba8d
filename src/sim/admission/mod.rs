//! Admission: what the API server does to an object between decoding it and storing
//! it. Defaulting, structural-schema pruning and validation of custom resources,
//! validation of the built-in fields showroom and kubectl write, the service-account
//! and LimitRange plugins, and ResourceQuota. It runs under the store's lock, so a
//! quota check and the write it admits are one step.

pub mod defaults;
pub mod names;
pub mod quota;
pub mod schema;
pub mod validation;

use super::error::ApiError;
use super::resources::ResourceType;
use super::store::{Part, State};
use serde_json::Value;

/// A new object, with its server-owned metadata set.
pub fn on_create(st: &State, rt: &ResourceType, ns: &str, obj: &mut Value) -> Result<(), ApiError> {
    defaults::apply(st, rt, obj, None);
    if let Some(schema) = &rt.schema {
        schema::admit(rt, schema, obj)?;
    }
    validation::check(rt, obj, None)?;
    if rt.group.is_empty() && rt.kind == "Pod" {
        quota::service_account(st, ns, obj)?;
        quota::limit_ranges(st, ns, obj);
        validation::check(rt, obj, None)?;
        quota::admit_pod(st, ns, obj)?;
    }
    Ok(())
}

/// A change to a stored object (`part`: the main resource or its status).
pub fn on_update(
    st: &State,
    rt: &ResourceType,
    _ns: &str,
    old: &Value,
    obj: &mut Value,
    part: Part,
) -> Result<(), ApiError> {
    defaults::apply(st, rt, obj, Some(old));
    if let Some(schema) = &rt.schema {
        schema::admit(rt, schema, obj)?;
    }
    if part == Part::Main {
        validation::check(rt, obj, Some(old))?;
    }
    Ok(())
}
