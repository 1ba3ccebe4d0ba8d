//! The ResourceQuota controller: each quota's status shows its hard limits and what
//! the namespace's pods use of them.

use crate::sim::admission::quota::{format_quantity, usage};
use crate::sim::object::meta;
use crate::sim::store::{Part, Store};
use serde_json::{Map, Value, json};
use std::time::Duration;

pub fn sync(store: &Store, ns: &str) -> Option<Duration> {
    let rt = store.resource_type(&(String::new(), "v1".into(), "resourcequotas".into()))?;
    let plan: Vec<(String, Value)> = {
        let st = store.lock();
        st.objects_of("", "resourcequotas", ns)
            .filter_map(|q| {
                let hard = q["spec"]["hard"].clone();
                let keys: Vec<String> = hard
                    .as_object()
                    .map(|m| m.keys().cloned().collect())
                    .unwrap_or_default();
                let used: Map<String, Value> = usage(&st, ns, &keys)
                    .into_iter()
                    .map(|(k, q)| (k, json!(format_quantity(q))))
                    .collect();
                let status = json!({"hard": hard, "used": used});
                // Unchanged (most syncs: every pod change in the namespace brings one):
                // no write.
                (q.get("status") != Some(&status))
                    .then(|| (meta(&q, "name").unwrap_or_default(), status))
            })
            .collect()
    };
    for (name, status) in plan {
        let _ = store.modify(&rt, ns, &name, Part::Status, |cur| {
            let mut n = cur.clone();
            n["status"] = status;
            Ok(n)
        });
    }
    None
}
