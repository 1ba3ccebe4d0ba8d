//! Discovery: `/api`, `/apis`, `/api/v1`, `/apis/{group}/{version}` and `/version`.

use super::{error_response, json_response};
use crate::sim::error::ApiError;
use crate::sim::store::Store;
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// `/api`, `/apis`, `/api/v1`, `/apis/{g}/{v}`, `/version`.
pub fn discovery(store: &Store, path: &str) -> Option<Response> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Every request passes here first: only a discovery path reads the types (a copy
    // taken under the store's lock).
    if !matches!(
        segs.as_slice(),
        ["version"] | ["api"] | ["api", _] | ["apis"] | ["apis", _, _]
    ) {
        return None;
    }
    let types = store.types();
    let resources = |g: &str, v: &str| {
        let list: Vec<Value> = types
            .iter()
            .filter(|t| t.group == g && t.version == v)
            .flat_map(|t| t.discovery())
            .collect();
        let gv = if g.is_empty() {
            v.to_string()
        } else {
            format!("{g}/{v}")
        };
        (!list.is_empty()).then(|| json_response(200, &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list})))
    };
    match segs.as_slice() {
        ["version"] => Some(json_response(
            200,
            &json!({"major": "1", "minor": "34", "gitVersion": "v1.34.0-showroom-sim", "platform": "linux/amd64"}),
        )),
        ["api"] => Some(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        )),
        ["api", v] => Some(resources("", v).unwrap_or_else(|| {
            error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        })),
        ["apis"] => {
            let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for t in types.iter().filter(|t| !t.group.is_empty()) {
                let vs = groups.entry(t.group.clone()).or_default();
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            let list: Vec<Value> = groups
                .iter()
                .map(|(g, vs)| {
                    let versions: Vec<Value> = vs
                        .iter()
                        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                        .collect();
                    json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
                })
                .collect();
            Some(json_response(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list}),
            ))
        }
        ["apis", g, v] => Some(resources(g, v).unwrap_or_else(|| {
            error_response(&ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        })),
        _ => None,
    }
}
