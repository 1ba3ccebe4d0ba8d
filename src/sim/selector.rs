//! Label and field selectors, parsed the way the API server parses them.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` (or `fieldSelector`, which uses the `=`/`!=` subset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector(Vec<Requirement>);

impl Selector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top_level(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part)?);
        }
        Ok(Selector(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Matches a map of labels (or of field values for field selectors).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|k| labels.get(k).map(String::as_str))
    }

    /// Matches labels read through `get` (a label's value by key).
    pub fn matches_with<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.0.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEq(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }

    /// Field selectors only support equality on the fields a kind indexes.
    pub fn check_field_selector(&self, kind: &str) -> Result<(), String> {
        for r in &self.0 {
            let key = match r {
                Requirement::Eq(k, _) | Requirement::NotEq(k, _) => k,
                _ => return Err("field selectors support only = and !=".into()),
            };
            let known = matches!(key.as_str(), "metadata.name" | "metadata.namespace")
                || kind_fields(kind).iter().any(|(k, _)| k == key);
            if !known {
                return Err(format!("field label not supported: {key}"));
            }
        }
        Ok(())
    }
}

fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set, found {rest:?}"))?;
    Ok(inner
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect())
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(valid_key(key.trim())?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEq(valid_key(k.trim())?, v.trim().into()));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Ok(Requirement::Eq(valid_key(k.trim())?, v.trim().into()));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Ok(Requirement::Eq(valid_key(k.trim())?, v.trim().into()));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let key = valid_key(words[0])?;
        let rest = words[1].trim();
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok(Requirement::NotIn(key, parse_set(set)?));
        }
        if let Some(set) = rest.strip_prefix("in") {
            return Ok(Requirement::In(key, parse_set(set)?));
        }
        return Err(format!("unable to parse requirement: {part:?}"));
    }
    Ok(Requirement::Exists(valid_key(part)?))
}

fn valid_key(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if ok {
        Ok(key.to_string())
    } else {
        Err(format!("invalid label key {key:?}"))
    }
}

/// The labels of an object as a map.
pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields a field selector may look at.
/// The extra fields a kind can be selected by, with where they are in the object.
fn kind_fields(kind: &str) -> &'static [(&'static str, &'static str)] {
    match kind {
        "Pod" => &[
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("status.phase", "/status/phase"),
        ],
        "Event" => &[
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("reason", "/reason"),
            ("type", "/type"),
        ],
        "Namespace" => &[("status.phase", "/status/phase")],
        "Secret" => &[("type", "/type")],
        "Node" => &[("spec.unschedulable", "/spec/unschedulable")],
        _ => &[],
    }
}

pub fn fields_of(obj: &Value) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let common = [
        ("metadata.name", "/metadata/name"),
        ("metadata.namespace", "/metadata/namespace"),
    ];
    for (key, ptr) in common.iter().chain(kind_fields(kind)) {
        m.insert(
            key.to_string(),
            obj.pointer(ptr)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_operator() {
        let l = labels(&[("app", "vcluster"), ("release", "a")]);
        let cases = [
            ("app=vcluster", true),
            ("app==vcluster", true),
            ("app!=vcluster", false),
            ("release in (a,b)", true),
            ("release notin (a, b)", false),
            ("release notin (c)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=vcluster,release in (b)", false),
            ("", true),
        ];
        for (sel, expected) in cases {
            assert_eq!(
                Selector::parse(sel).unwrap().matches(&l),
                expected,
                "selector {sel:?}"
            );
        }
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Selector::parse("a in b").is_err());
        assert!(Selector::parse("a b c").is_err());
        assert!(
            Selector::parse("x=1")
                .unwrap()
                .check_field_selector("ConfigMap")
                .is_err()
        );
    }
}
