//! What every namespace gets from kube-controller-manager: the `default`
//! ServiceAccount and the `kube-root-ca.crt` ConfigMap (root-CA publisher).

use crate::sim::object::is_deleting;
use crate::sim::store::Store;
use serde_json::json;
use std::time::Duration;

/// The simulation's stand-in for the cluster CA (no TLS is spoken here).
const ROOT_CA: &str = "-----BEGIN CERTIFICATE-----\nc2hvd3Jvb20gc2ltdWxhdGlvbiByb290IENB\n-----END CERTIFICATE-----\n";

pub fn sync(store: &Store, name: &str) -> Option<Duration> {
    let ns_rt = store.resource_type(&(String::new(), "v1".into(), "namespaces".into()))?;
    let ns = store.get(&ns_rt, "", name).ok()?;
    if is_deleting(&ns) {
        return None;
    }
    let cm = store.resource_type(&(String::new(), "v1".into(), "configmaps".into()))?;
    let sa = store.resource_type(&(String::new(), "v1".into(), "serviceaccounts".into()))?;
    if store.get(&cm, name, "kube-root-ca.crt").is_err() {
        let _ = store.create(
            &cm,
            name,
            json!({"metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": ROOT_CA}}),
        );
    }
    if store.get(&sa, name, "default").is_err() {
        let _ = store.create(&sa, name, json!({"metadata": {"name": "default"}}));
    }
    None
}
