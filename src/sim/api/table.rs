//! Tables for `kubectl get`: the printer columns of a CRD, or a few useful columns of
//! the built-in kinds, with ages as kubectl shows them.

use crate::sim::resources::ResourceType;
use serde_json::{Value, json};
use std::sync::Arc;

/// Kubernetes' short relative durations ("45s", "3m12s", "5h", "2d3h").
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match () {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => match s % 60 {
            0 => format!("{m}m"),
            r => format!("{m}m{r}s"),
        },
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => match m % 60 {
            0 => format!("{h}h"),
            r => format!("{h}h{r}m"),
        },
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => match h % 24 {
            0 => format!("{d}d"),
            r => format!("{d}d{r}h"),
        },
        _ => format!("{d}d"),
    }
}

/// Evaluates the simple JSONPaths printer columns use: `.a.b`, `.a[0].b`.
fn json_path<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path
        .trim_start_matches('.')
        .split('.')
        .filter(|s| !s.is_empty())
    {
        let (field, index) = match seg.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (seg, None),
        };
        if !field.is_empty() {
            cur = cur.get(field)?;
        }
        if let Some(i) = index {
            cur = cur.get(i)?;
        }
    }
    Some(cur)
}

fn age_cell(v: Option<&Value>) -> Value {
    let Some(ts) = v.and_then(Value::as_str) else {
        return json!("<unknown>");
    };
    match chrono::DateTime::parse_from_rfc3339(ts) {
        Ok(t) => json!(human_duration(
            (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()
        )),
        Err(_) => json!("<invalid>"),
    }
}

/// Computes one Table cell from an object.
type CellFn = Box<dyn Fn(&Value) -> Value>;

pub fn to_table(rt: &ResourceType, items: &[Arc<Value>], rv: u64) -> Value {
    let col = |name: &str, ty: &str, format: &str| json!({"name": name, "type": ty, "format": format, "description": "", "priority": 0});
    let mut defs = vec![col("Name", "string", "name")];
    let mut cells: Vec<CellFn> = vec![Box::new(|o: &Value| {
        o.pointer("/metadata/name").cloned().unwrap_or_default()
    })];
    if !rt.columns.is_empty() {
        for c in &rt.columns {
            defs.push(json!({"name": c.name, "type": c.type_, "format": "", "description": "", "priority": c.priority}));
            let (path, ty) = (c.json_path.clone(), c.type_.clone());
            cells.push(Box::new(move |o: &Value| {
                let v = json_path(o, &path);
                match ty.as_str() {
                    "date" => match v {
                        Some(_) => age_cell(v),
                        None => json!("<none>"),
                    },
                    _ => v.cloned().unwrap_or(json!("<none>")),
                }
            }));
        }
    } else {
        match rt.plural.as_str() {
            "namespaces" => {
                defs.push(col("Status", "string", ""));
                cells.push(Box::new(|o| {
                    o.pointer("/status/phase")
                        .cloned()
                        .unwrap_or(json!("Active"))
                }));
            }
            "statefulsets" => {
                defs.push(col("Ready", "string", ""));
                cells.push(Box::new(|o| {
                    let ready = o
                        .pointer("/status/readyReplicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    let want = o
                        .pointer("/spec/replicas")
                        .and_then(Value::as_i64)
                        .unwrap_or(1);
                    json!(format!("{ready}/{want}"))
                }));
            }
            "jobs" => {
                defs.push(col("Status", "string", ""));
                cells.push(Box::new(|o| {
                    let conds = o
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let s = conds
                        .iter()
                        .find(|c| c["status"] == "True")
                        .and_then(|c| c["type"].as_str())
                        .unwrap_or("Running");
                    json!(s)
                }));
            }
            "pods" => {
                defs.push(col("Status", "string", ""));
                cells.push(Box::new(|o| {
                    o.pointer("/status/phase")
                        .cloned()
                        .unwrap_or(json!("Pending"))
                }));
            }
            _ => {}
        }
        defs.push(col("Age", "string", ""));
        cells.push(Box::new(|o| {
            age_cell(o.pointer("/metadata/creationTimestamp"))
        }));
    }
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            json!({
                "cells": cells.iter().map(|f| f(o)).collect::<Vec<_>>(),
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv.to_string()}, "columnDefinitions": defs, "rows": rows})
}
