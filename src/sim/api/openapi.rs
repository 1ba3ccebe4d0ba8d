//! OpenAPI documents, enough for `kubectl apply` (client-side and server-side) and
//! `kubectl explain`: `/openapi/v3` (an index of group-versions) and one document per
//! group-version, plus `/openapi/v2` as JSON. Each kind carries its
//! `x-kubernetes-group-version-kind`; a custom resource carries its CRD's schema.

use super::{error_response, json_response};
use crate::sim::error::ApiError;
use crate::sim::resources::ResourceType;
use crate::sim::store::Store;
use axum::response::Response;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// The definition name a kind is known by (`io.k8s.api.core.v1.Pod`,
/// `dev.showroom.v1alpha1.Demo`).
fn definition_name(rt: &ResourceType) -> String {
    if rt.crd.is_some() {
        let rev: Vec<&str> = rt.group.split('.').rev().collect();
        return format!("{}.{}.{}", rev.join("."), rt.version, rt.kind);
    }
    let g = match rt.group.as_str() {
        "" => "core",
        "rbac.authorization.k8s.io" => "rbac",
        "coordination.k8s.io" => "coordination",
        "events.k8s.io" => "events",
        "apiextensions.k8s.io" => {
            return format!(
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.{}.{}",
                rt.version, rt.kind
            );
        }
        g => g,
    };
    format!("io.k8s.api.{g}.{}.{}", rt.version, rt.kind)
}

fn schema_of(rt: &ResourceType, meta_ref: &str) -> Value {
    let mut s = match &rt.schema {
        Some(schema) => (**schema).clone(),
        None => {
            json!({"type": "object", "description": format!("{} ({}).", rt.kind, rt.api_version())})
        }
    };
    if !s.get("properties").is_some_and(Value::is_object) {
        s["properties"] = json!({});
    }
    s["properties"]["apiVersion"] = json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."});
    s["properties"]["kind"] = json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents."});
    s["properties"]["metadata"] =
        json!({"$ref": meta_ref, "description": "Standard object's metadata."});
    if rt.schema.is_none() {
        for part in ["spec", "status", "data", "stringData", "roleRef"] {
            s["properties"][part] =
                json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        }
        for list in ["rules", "subjects"] {
            s["properties"][list] = json!({"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}});
        }
    }
    s["x-kubernetes-group-version-kind"] =
        json!([{"group": rt.group, "version": rt.version, "kind": rt.kind}]);
    s
}

fn object_meta() -> Value {
    json!({"type": "object", "description": "ObjectMeta is metadata that all persisted resources must have.",
    "properties": {
        "name": {"type": "string"}, "namespace": {"type": "string"}, "generateName": {"type": "string"},
        "uid": {"type": "string"}, "resourceVersion": {"type": "string"}, "generation": {"type": "integer", "format": "int64"},
        "creationTimestamp": {"type": "string", "format": "date-time"}, "deletionTimestamp": {"type": "string", "format": "date-time"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
        "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
        "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
    }})
}

fn gv_path(rt: &ResourceType) -> String {
    if rt.group.is_empty() {
        format!("api/{}", rt.version)
    } else {
        format!("apis/{}/{}", rt.group, rt.version)
    }
}

/// The paths of one resource, with the operations and query parameters kubectl looks
/// for (it sends `fieldValidation` and `dryRun` only where a PATCH declares them).
fn paths_of(rt: &ResourceType, def: &str) -> Vec<(String, Value)> {
    let base = format!("/{}", gv_path(rt));
    let (collection, item) = if rt.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", rt.plural),
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", rt.plural),
        )
    } else {
        (
            format!("{base}/{}", rt.plural),
            format!("{base}/{}/{{name}}", rt.plural),
        )
    };
    let gvk = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    let q = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
    let params = json!([q("dryRun"), q("fieldManager"), q("fieldValidation")]);
    let body = json!({"content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{def}")}}}});
    let op = |verb: &str, with_body: bool| {
        let mut o = json!({"operationId": format!("{verb}{}", rt.kind), "x-kubernetes-action": verb,
            "x-kubernetes-group-version-kind": gvk, "parameters": params,
            "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{def}")}}}}}});
        if with_body {
            o["requestBody"] = body.clone();
        }
        o
    };
    let mut patch = op("patch", false);
    patch["parameters"]
        .as_array_mut()
        .expect("an array")
        .push(q("force"));
    patch["requestBody"] = json!({"content": {
        "application/json-patch+json": {"schema": {"type": "object"}},
        "application/merge-patch+json": {"schema": {"type": "object"}},
        "application/strategic-merge-patch+json": {"schema": {"type": "object"}},
        "application/apply-patch+yaml": {"schema": {"type": "object"}},
    }});
    vec![
        (
            collection,
            json!({"get": op("list", false), "post": op("post", true)}),
        ),
        (
            item,
            json!({"get": op("get", false), "put": op("put", true), "patch": patch, "delete": op("delete", false)}),
        ),
    ]
}

fn v3_documents(types: &[Arc<ResourceType>]) -> BTreeMap<String, Value> {
    // Per group-version: (schemas, paths).
    type Doc = (Map<String, Value>, Map<String, Value>);
    let mut docs: BTreeMap<String, Doc> = BTreeMap::new();
    for rt in types {
        let (schemas, paths) = docs.entry(gv_path(rt)).or_default();
        let def = definition_name(rt);
        schemas.insert(
            def.clone(),
            schema_of(rt, &format!("#/components/schemas/{OBJECT_META}")),
        );
        schemas.insert(OBJECT_META.into(), object_meta());
        paths.extend(paths_of(rt, &def));
    }
    docs.into_iter()
        .map(|(path, (schemas, paths))| {
            let doc = json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.34.0"},
                "paths": paths, "components": {"schemas": schemas}});
            (path, doc)
        })
        .collect()
}

fn hash(v: &Value) -> String {
    hex::encode_upper(Sha256::digest(v.to_string().as_bytes()))
}

pub fn serve(store: &Store, path: &str) -> Option<Response> {
    let rest = path.strip_prefix("/openapi/")?;
    let types = store.types();
    if rest == "v2" {
        let mut defs = Map::new();
        for rt in &types {
            defs.insert(
                definition_name(rt),
                schema_of(rt, &format!("#/definitions/{OBJECT_META}")),
            );
        }
        defs.insert(OBJECT_META.into(), object_meta());
        return Some(json_response(
            200,
            &json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.34.0"},
                "paths": {}, "definitions": defs}),
        ));
    }
    let docs = v3_documents(&types);
    if rest == "v3" {
        let paths: Map<String, Value> = docs
            .iter()
            .map(|(p, d)| {
                (
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(d))}),
                )
            })
            .collect();
        return Some(json_response(200, &json!({"paths": paths})));
    }
    let gv = rest.strip_prefix("v3/")?;
    Some(match docs.get(gv) {
        Some(d) => json_response(200, d),
        None => error_response(&ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )),
    })
}
