//! Custom resources against their CRD's structural schema, as the API server treats
//! them: unknown fields are pruned (silently: a field missing from the schema is
//! dropped, not refused), defaults are filled in, and what remains is validated.

use crate::sim::error::ApiError;
use crate::sim::resources::ResourceType;
use serde_json::{Map, Value};

/// Prunes, defaults and validates a custom resource in place.
pub fn admit(rt: &ResourceType, schema: &Value, obj: &mut Value) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let props = schema.get("properties").and_then(Value::as_object);
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&k)) {
            Some(s) => {
                if m[&k].is_null() && !nullable(s) {
                    m.remove(&k);
                } else if let Some(v) = m.get_mut(&k) {
                    prune(v, s);
                }
            }
            None if preserves(schema) => {}
            None => {
                m.remove(&k);
            }
        }
    }
    default(obj, schema);
    let mut errors = Vec::new();
    if let Some(p) = props {
        for (k, s) in p {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(v) = obj.get(k) {
                validate(v, s, k, &mut errors);
            }
        }
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(r) = r.as_str()
                && obj.get(r).is_none()
            {
                errors.push(format!("{r}: Required value"));
            }
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let why = if errors.len() == 1 {
        errors.remove(0)
    } else {
        format!("[{}]", errors.join(", "))
    };
    Err(ApiError::new(
        422,
        "Invalid",
        format!("{}.{} \"{name}\" is invalid: {why}", rt.kind, rt.group),
    )
    .with_details(rt, &name))
}

fn preserves(s: &Value) -> bool {
    s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
}

fn nullable(s: &Value) -> bool {
    s.get("nullable") == Some(&Value::Bool(true))
}

/// Drops what the schema does not know, and nulls it does not allow.
fn prune(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child = props.and_then(|p| p.get(&k)).or(additional);
                match child {
                    Some(cs) => {
                        if m[&k].is_null() && !nullable(cs) {
                            m.remove(&k);
                        } else if let Some(c) = m.get_mut(&k) {
                            prune(c, cs);
                        }
                    }
                    None if preserves(s) => {}
                    None => {
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for i in items.iter_mut() {
                    prune(i, is);
                }
            }
        }
        _ => {}
    }
}

/// Fills in `default`s for missing fields, top-down.
fn default(v: &mut Value, s: &Value) {
    match v {
        Value::Object(m) => default_object(m, s),
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for i in items.iter_mut() {
                    default(i, is);
                }
            }
        }
        _ => {}
    }
}

fn default_object(m: &mut Map<String, Value>, s: &Value) {
    for (k, ps) in s
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if !m.contains_key(k)
            && let Some(d) = ps.get("default")
        {
            m.insert(k.clone(), d.clone());
        }
        if let Some(c) = m.get_mut(k) {
            default(c, ps);
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn validate(v: &Value, s: &Value, path: &str, errors: &mut Vec<String>) {
    if v.is_null() {
        if !nullable(s) {
            errors.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                s.get("type").and_then(Value::as_str).unwrap_or("object")
            ));
        }
        return;
    }
    if s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errors.push(format!(
                "{path}: Invalid value: \"{}\": {path} in body must be of type integer or string",
                type_name(v)
            ));
        }
        return;
    }
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let actual = type_name(v);
        let ok = actual == t || (t == "number" && actual == "integer");
        if !ok {
            errors.push(format!(
                "{path}: Invalid value: \"{actual}\": {path} in body must be of type {t}: \"{actual}\""
            ));
            return;
        }
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(v)
    {
        let list: Vec<String> = allowed.iter().map(Value::to_string).collect();
        errors.push(format!(
            "{path}: Unsupported value: {v}: supported values: {}",
            list.join(", ")
        ));
    }
    if let Some(x) = v.as_f64() {
        if let Some(min) = s.get("minimum").and_then(Value::as_f64)
            && x < min
        {
            errors.push(format!(
                "{path}: Invalid value: {v}: {path} in body should be greater than or equal to {min}"
            ));
        }
        if let Some(max) = s.get("maximum").and_then(Value::as_f64)
            && x > max
        {
            errors.push(format!(
                "{path}: Invalid value: {v}: {path} in body should be less than or equal to {max}"
            ));
        }
    }
    if let Some(text) = v.as_str() {
        let n = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && n < min
        {
            errors.push(format!(
                "{path}: Invalid value: {v}: {path} in body should be at least {min} chars long"
            ));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && n > max
        {
            errors.push(format!(
                "{path}: Too long: may not be more than {max} bytes"
            ));
        }
        if let Some(p) = s.get("pattern").and_then(Value::as_str)
            && let Ok(re) = regex::Regex::new(p)
            && !re.is_match(text)
        {
            errors.push(format!(
                "{path}: Invalid value: {v}: {path} in body should match '{p}'"
            ));
        }
        if s.get("format").and_then(Value::as_str) == Some("date-time")
            && chrono::DateTime::parse_from_rfc3339(text).is_err()
        {
            errors.push(format!(
                "{path}: Invalid value: {v}: {path} in body must be of type date-time: {v}"
            ));
        }
    }
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            for (k, c) in m {
                let cs = props
                    .and_then(|p| p.get(k))
                    .or(s.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(cs) = cs {
                    validate(c, cs, &format!("{path}.{k}"), errors);
                }
            }
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(r) = r.as_str()
                    && !m.contains_key(r)
                {
                    errors.push(format!("{path}.{r}: Required value"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errors.push(format!(
                    "{path}: Too many: {}: must have at most {max} items",
                    items.len()
                ));
            }
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item, is, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// The formats Kubernetes knows in a CRD schema; others earn a warning.
const FORMATS: [&str; 27] = [
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
];

/// `unrecognized format "uint64"` for each format in a CRD's schemas that Kubernetes
/// does not know (float and double are known too).
pub fn unknown_formats(crd: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(f)) = m.get("format")
                    && !FORMATS.contains(&f.as_str())
                    && f != "float"
                    && f != "double"
                {
                    let w = format!("unrecognized format \"{f}\"");
                    if !out.contains(&w) {
                        out.push(w);
                    }
                }
                for c in m.values() {
                    walk(c, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|c| walk(c, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(&crd["spec"]["versions"], &mut out);
    out
}
