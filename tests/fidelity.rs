//! What the real API server and controller manager do that showroom and its users
//! depend on, held in both worlds: kubectl's create/apply/edit/delete (protobuf bodies,
//! OpenAPI), custom resources pruned, defaulted and validated by their schema,
//! validation and defaulting of built-in kinds, finalizer rules, server-side apply
//! removing what a manager stops applying, what every namespace gets, and the quota
//! and LimitRange admission that refuses or completes a pod.

mod common;

use common::{TestCluster, eventually};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, LimitRange, Namespace, Pod, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;
use serde_json::{Value, json};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

scenarios!(
    kubectl_creates_applies_edits_and_deletes,
    custom_resources_are_pruned_defaulted_and_validated,
    a_crd_without_a_structural_schema_is_refused,
    built_in_fields_are_validated,
    defaults_a_client_can_see,
    no_finalizer_can_be_added_to_an_object_being_deleted,
    server_side_apply_removes_what_a_manager_no_longer_applies,
    every_namespace_gets_its_root_ca_and_default_service_account,
    quota_refuses_pods_without_resources_unless_a_limit_range_fills_them_in,
    the_demo_crd_applies_without_warnings,
);

fn status_of(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).unwrap()
}

/// Runs kubectl against the test's cluster: (success, stdout, stderr).
async fn kubectl(tc: &TestCluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let kc = tc.kubeconfig.clone();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(&args)
            .env("KUBE_EDITOR", "sed -i s/before/after/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl (.ci/run installs it)");
        if let Some(text) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
        }
        drop(child.stdin.take());
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    })
    .await
    .unwrap()
}

fn kubectl_present() -> bool {
    let ok = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok();
    assert!(
        ok || std::env::var_os("CI").is_none(),
        "kubectl is required in CI"
    );
    ok
}

async fn kubectl_creates_applies_edits_and_deletes(tc: TestCluster) {
    if !kubectl_present() {
        eprintln!("kubectl not installed; skipping");
        return;
    }
    let ns = format!(
        "showroom-test-kubectl-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    );
    // create: kubectl sends protobuf for built-in kinds.
    let (ok, out, err) = kubectl(&tc, &["create", "namespace", &ns], None).await;
    assert!(ok, "kubectl create namespace: {out}{err}");
    let manifest = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: {ns}\ndata:\n  greeting: before\n  other: kept\n"
    );
    // Client-side apply: reads the OpenAPI document, then creates.
    let (ok, out, err) = kubectl(&tc, &["apply", "-f", "-"], Some(&manifest)).await;
    assert!(
        ok && out.contains("configmap/cfg created"),
        "apply: {out}{err}"
    );
    // Again, changed: a patch computed from last-applied-configuration.
    let changed = manifest.replace("  other: kept\n", "");
    let (ok, out, err) = kubectl(&tc, &["apply", "-f", "-"], Some(&changed)).await;
    assert!(ok && out.contains("configured"), "apply again: {out}{err}");
    let cms: Api<ConfigMap> = Api::namespaced(tc.client.clone(), &ns);
    let got = cms.get("cfg").await.unwrap().data.unwrap();
    assert_eq!(got.get("greeting").map(String::as_str), Some("before"));
    assert!(
        !got.contains_key("other"),
        "a key dropped from the manifest is removed"
    );
    // Server-side apply.
    let ssa = changed.replace("greeting: before", "greeting: before\n  ssa: applied");
    let (ok, out, err) = kubectl(
        &tc,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&ssa),
    )
    .await;
    assert!(
        ok && out.contains("serverside-applied"),
        "apply --server-side: {out}{err}"
    );
    // A value that is not a string cannot be a ConfigMap's (YAML's `yes` is a boolean).
    let (ok, _, err) = kubectl(
        &tc,
        &["apply", "--server-side", "-f", "-"],
        Some(&changed.replace("greeting: before", "greeting: yes")),
    )
    .await;
    assert!(
        !ok && err.contains("string"),
        "refused, naming the type: {err}"
    );
    assert_eq!(
        cms.get("cfg")
            .await
            .unwrap()
            .data
            .unwrap()
            .get("ssa")
            .map(String::as_str),
        Some("applied")
    );
    // edit, with an editor that rewrites the value.
    let (ok, out, err) = kubectl(&tc, &["-n", &ns, "edit", "configmap", "cfg"], None).await;
    assert!(ok && out.contains("edited"), "edit: {out}{err}");
    assert_eq!(
        cms.get("cfg")
            .await
            .unwrap()
            .data
            .unwrap()
            .get("greeting")
            .map(String::as_str),
        Some("after")
    );
    let (ok, out, err) = kubectl(
        &tc,
        &["-n", &ns, "get", "configmap", "cfg", "-o", "json"],
        None,
    )
    .await;
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["data"]["greeting"], "after");
    // get, as a table in pages (kubectl asks for 500 rows at a time and follows the
    // continue token; a table without one ended `kubectl get demos` at 500).
    for i in 0..4 {
        cms.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": format!("paged-{i}")}})),
        )
        .await
        .unwrap();
    }
    let (ok, out, err) = kubectl(
        &tc,
        &[
            "-n",
            &ns,
            "get",
            "configmaps",
            "--chunk-size=2",
            "--no-headers",
        ],
        None,
    )
    .await;
    assert!(ok, "{err}");
    // (The real control plane here is MicroShift's build, which also publishes an
    // `openshift-service-ca.crt` in every namespace; see realkube/README.md.)
    let mut names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| !n.starts_with("openshift-"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cfg",
            "kube-root-ca.crt",
            "paged-0",
            "paged-1",
            "paged-2",
            "paged-3"
        ],
        "every row, over three pages: {out}"
    );
    // delete, waiting until the namespace is gone.
    let (ok, out, err) = kubectl(&tc, &["delete", "namespace", &ns, "--timeout=60s"], None).await;
    assert!(ok && out.contains("deleted"), "delete: {out}{err}");
    assert!(
        Api::<Namespace>::all(tc.client.clone())
            .get_opt(&ns)
            .await
            .unwrap()
            .is_none(),
        "kubectl delete waited until the namespace was gone"
    );
}

fn gadget_crd(schema: Value) -> CustomResourceDefinition {
    obj(json!({
        "metadata": {"name": "gadgets.fidelity.showroom.dev"},
        "spec": {"group": "fidelity.showroom.dev", "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets", "singular": "gadget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": schema}}]}
    }))
}

async fn custom_resources_are_pruned_defaulted_and_validated(mut tc: TestCluster) {
    let ns = tc.namespace().await;
    let crds: Api<CustomResourceDefinition> = Api::all(tc.client.clone());
    let schema = json!({"type": "object", "properties": {
    "spec": {"type": "object", "required": ["size"], "properties": {
        "size": {"type": "integer", "minimum": 1},
        "color": {"type": "string", "enum": ["red", "blue"], "default": "red"},
        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
    }}}});
    let _ = crds
        .create(&PostParams::default(), &gadget_crd(schema))
        .await;
    kube::runtime::wait::await_condition(
        crds,
        "gadgets.fidelity.showroom.dev",
        kube::runtime::conditions::is_crd_established(),
    )
    .await
    .unwrap();
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("fidelity.showroom.dev", "v1", "Gadget"),
        "gadgets",
    );
    let gadgets: Api<DynamicObject> = Api::namespaced_with(tc.client.clone(), &ns, &ar);
    let g = |name: &str, spec: Value| -> DynamicObject {
        obj(
            json!({"apiVersion": "fidelity.showroom.dev/v1", "kind": "Gadget",
            "metadata": {"name": name}, "spec": spec, "extra": "top-level unknown"}),
        )
    };
    // Served a moment after Established on a real server.
    let created = eventually(T, "the Gadget type served", || async {
        gadgets
            .create(
                &PostParams::default(),
                &g("g1", json!({"size": 2, "unknown": 1, "tags": {"a": "b"}, "free": {"any": {"thing": 1}}})),
            )
            .await
            .ok()
    })
    .await;
    assert!(
        created.data.get("extra").is_none(),
        "unknown top-level field pruned: {:?}",
        created.data
    );
    let spec = &created.data["spec"];
    assert!(
        spec.get("unknown").is_none(),
        "unknown field pruned silently: {spec}"
    );
    assert_eq!(spec["color"], "red", "default filled in");
    assert_eq!(spec["tags"]["a"], "b");
    assert_eq!(
        spec["free"]["any"]["thing"], 1,
        "preserved where the schema says so"
    );
    for (name, spec, want) in [
        ("g2", json!({"size": "big"}), "spec.size"),
        ("g3", json!({"size": 0}), "spec.size"),
        ("g4", json!({"size": 1, "color": "green"}), "spec.color"),
        ("g5", json!({"color": "red"}), "spec.size"),
    ] {
        let (code, msg) = status_of(
            gadgets
                .create(&PostParams::default(), &g(name, spec.clone()))
                .await
                .unwrap_err(),
        );
        assert_eq!(code, 422, "{spec}: {msg}");
        assert!(
            msg.contains(want),
            "{spec}: the message names {want}: {msg}"
        );
    }
}

async fn a_crd_without_a_structural_schema_is_refused(tc: TestCluster) {
    let crds: Api<CustomResourceDefinition> = Api::all(tc.client.clone());
    let mut bad = gadget_crd(
        json!({"type": "object", "properties": {"spec": {"properties": {"x": {"type": "string"}}}}}),
    );
    bad.metadata.name = Some("badgets.fidelity.showroom.dev".into());
    bad.spec.names.plural = "badgets".into();
    bad.spec.names.kind = "Badget".into();
    bad.spec.names.singular = Some("badget".into());
    let (code, msg) = status_of(crds.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(code, 422, "{msg}");
    assert!(msg.contains("type") && msg.contains("spec"), "{msg}");
}

async fn built_in_fields_are_validated(mut tc: TestCluster) {
    let ns = tc.namespace().await;
    fn invalid<K: std::fmt::Debug>(r: Result<K, kube::Error>, field: &str) {
        let (code, msg) = status_of(r.expect_err("refused"));
        assert_eq!(code, 422, "{msg}");
        assert!(msg.contains(field), "names {field}: {msg}");
    }
    let cms: Api<ConfigMap> = Api::namespaced(tc.client.clone(), &ns);
    invalid(
        cms.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "c", "labels": {"k": "not a label value"}}})),
        )
        .await,
        "metadata.labels",
    );
    invalid(
        cms.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "Bad_Name"}})),
        )
        .await,
        "metadata.name",
    );
    let pods: Api<Pod> = Api::namespaced(tc.client.clone(), &ns);
    invalid(
        pods.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}})),
        )
        .await,
        "spec.containers[0].image",
    );
    invalid(
        pods.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x:1",
                "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}})),
        )
        .await,
        "spec.containers[0].resources.requests",
    );
    let jobs: Api<Job> = Api::namespaced(tc.client.clone(), &ns);
    invalid(
        jobs.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "j"}, "spec": {"template": {"spec": {"restartPolicy": "Always",
                "containers": [{"name": "c", "image": "x:1"}]}}}})),
        )
        .await,
        "spec.template.spec.restartPolicy",
    );
    let svcs: Api<Service> = Api::namespaced(tc.client.clone(), &ns);
    invalid(
        svcs.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 0}]}})),
        )
        .await,
        "spec.ports[0].port",
    );
    // A quantity is a decoded type: a bad one cannot even be read (400).
    let quotas: Api<ResourceQuota> = Api::namespaced(tc.client.clone(), &ns);
    let (code, msg) = status_of(
        quotas
            .create(
                &PostParams::default(),
                &obj(json!({"metadata": {"name": "q"}, "spec": {"hard": {"cpu": "lots"}}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400, "{msg}");
    assert!(msg.contains("quantities must match"), "{msg}");
    let nss: Api<Namespace> = Api::all(tc.client.clone());
    invalid(
        nss.create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "has.dot"}})),
        )
        .await,
        "metadata.name",
    );
    // An immutable field: a StatefulSet's selector.
    let sets: Api<StatefulSet> = Api::namespaced(tc.client.clone(), &ns);
    sets.create(&PostParams::default(), &sts("s", 0))
        .await
        .unwrap();
    invalid(
        sets.patch(
            "s",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"serviceName": "other"}})),
        )
        .await,
        "spec",
    );
}

fn sts(name: &str, replicas: i32) -> StatefulSet {
    obj(
        json!({"metadata": {"name": name}, "spec": {"replicas": replicas, "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "registry.example/app:1"}]}}}}),
    )
}

async fn defaults_a_client_can_see(mut tc: TestCluster) {
    let ns = tc.namespace().await;
    let n = Api::<Namespace>::all(tc.client.clone())
        .get(&ns)
        .await
        .unwrap();
    assert_eq!(
        n.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        ns
    );
    assert_eq!(
        n.spec.unwrap().finalizers,
        Some(vec!["kubernetes".to_string()])
    );
    assert_eq!(n.status.unwrap().phase.as_deref(), Some("Active"));

    let svc = Api::<Service>::namespaced(tc.client.clone(), &ns)
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})),
        )
        .await
        .unwrap();
    let spec = serde_json::to_value(svc.spec.unwrap()).unwrap();
    assert_eq!(spec["type"], "ClusterIP");
    assert_eq!(spec["sessionAffinity"], "None");
    assert!(
        spec["clusterIP"]
            .as_str()
            .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()),
        "{spec}"
    );
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);

    let job = Api::<Job>::namespaced(tc.client.clone(), &ns)
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "once"},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "registry.example/app:1"}]}}}})))
        .await
        .unwrap();
    let uid = job.metadata.uid.clone().unwrap();
    let j = serde_json::to_value(&job).unwrap();
    assert_eq!(j["spec"]["backoffLimit"], 6);
    assert_eq!(j["spec"]["completions"], 1);
    assert_eq!(j["spec"]["parallelism"], 1);
    assert_eq!(
        j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
        uid
    );
    assert_eq!(j["metadata"]["labels"]["job-name"], "once");
    assert_eq!(
        j["spec"]["template"]["metadata"]["labels"]["batch.kubernetes.io/job-name"],
        "once"
    );
    let c = &j["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(
        j["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );
    assert_eq!(j["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");

    let s = Api::<StatefulSet>::namespaced(tc.client.clone(), &ns)
        .create(&PostParams::default(), &sts("db", 0))
        .await
        .unwrap();
    let s = serde_json::to_value(s.spec.unwrap()).unwrap();
    assert_eq!(s["podManagementPolicy"], "OrderedReady");
    assert_eq!(s["revisionHistoryLimit"], 10);
    assert_eq!(s["updateStrategy"]["type"], "RollingUpdate");

    let secret = Api::<Secret>::namespaced(tc.client.clone(), &ns)
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}})),
        )
        .await
        .unwrap();
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    assert_eq!(secret.data.unwrap()["k"].0, b"v");

    let pod = Api::<Pod>::namespaced(tc.client.clone(), &ns)
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "registry.example/app"}]}})),
        )
        .await
        .unwrap();
    let p = serde_json::to_value(&pod).unwrap();
    assert_eq!(p["spec"]["restartPolicy"], "Always");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    assert_eq!(
        p["spec"]["containers"][0]["imagePullPolicy"], "Always",
        "no tag: latest"
    );
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(p["status"]["qosClass"], "BestEffort");
}

async fn no_finalizer_can_be_added_to_an_object_being_deleted(mut tc: TestCluster) {
    let ns = tc.namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(tc.client.clone(), &ns);
    cms.create(
        &PostParams::default(),
        &obj(json!({"metadata": {"name": "f", "finalizers": ["fidelity.showroom.dev/hold"]}})),
    )
    .await
    .unwrap();
    cms.delete("f", &DeleteParams::default()).await.unwrap();
    let (code, msg) = status_of(
        cms.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["fidelity.showroom.dev/hold", "fidelity.showroom.dev/more"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(code, 422, "{msg}");
    assert!(msg.contains("no new finalizers"), "{msg}");
    // Other changes are still allowed, and removing the last finalizer deletes it.
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"seen": "yes"}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(T, "deleted once its finalizer is gone", || async {
        cms.get_opt("f").await.unwrap().is_none().then_some(())
    })
    .await;
}

async fn server_side_apply_removes_what_a_manager_no_longer_applies(mut tc: TestCluster) {
    let ns = tc.namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(tc.client.clone(), &ns);
    let apply = |data: Value| {
        Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": data}),
        )
    };
    let pp = PatchParams::apply("fidelity");
    cms.patch("a", &pp, &apply(json!({"one": "1", "two": "2"})))
        .await
        .unwrap();
    // Another manager adds its own key.
    cms.patch(
        "a",
        &PatchParams::apply("other"),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"three": "3"}})),
    )
    .await
    .unwrap();
    let after = cms
        .patch("a", &pp, &apply(json!({"one": "1"})))
        .await
        .unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.get("one").map(String::as_str), Some("1"));
    assert!(
        !data.contains_key("two"),
        "no longer applied by its only manager: removed ({data:?})"
    );
    assert_eq!(
        data.get("three").map(String::as_str),
        Some("3"),
        "another manager's field stays"
    );
}

async fn every_namespace_gets_its_root_ca_and_default_service_account(mut tc: TestCluster) {
    let ns = tc.namespace().await;
    let cms: Api<ConfigMap> = Api::namespaced(tc.client.clone(), &ns);
    let ca = eventually(T, "kube-root-ca.crt", || async {
        cms.get_opt("kube-root-ca.crt").await.ok().flatten()
    })
    .await;
    assert!(ca.data.unwrap()["ca.crt"].contains("BEGIN CERTIFICATE"));
    Api::<ServiceAccount>::namespaced(tc.client.clone(), &ns)
        .get("default")
        .await
        .unwrap();
    // The root-CA publisher puts it back when deleted.
    cms.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .unwrap();
    eventually(T, "kube-root-ca.crt republished", || async {
        cms.get_opt("kube-root-ca.crt")
            .await
            .ok()
            .flatten()
            .map(|_| ())
    })
    .await;
}

async fn quota_refuses_pods_without_resources_unless_a_limit_range_fills_them_in(
    mut tc: TestCluster,
) {
    let ns = tc.namespace().await;
    Api::<ResourceQuota>::namespaced(tc.client.clone(), &ns)
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "q"},
            "spec": {"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi"}}})),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(tc.client.clone(), &ns);
    let pod = |name: &str| -> Pod {
        obj(
            json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]}}),
        )
    };
    // The quota controller must have seen the quota before admission enforces it.
    let (code, msg) = eventually(T, "the quota enforced", || async {
        match pods.create(&PostParams::default(), &pod("bare")).await {
            Err(kube::Error::Api(s)) => Some((s.code, s.message)),
            Ok(_) => {
                let _ = pods
                    .delete("bare", &DeleteParams::default().grace_period(0))
                    .await;
                None
            }
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(code, 403, "{msg}");
    assert!(
        msg.contains("failed quota: q")
            && msg.contains("must specify")
            && msg.contains("requests.cpu"),
        "{msg}"
    );
    Api::<LimitRange>::namespaced(tc.client.clone(), &ns)
        .create(&PostParams::default(), &obj(json!({"metadata": {"name": "defaults"},
            "spec": {"limits": [{"type": "Container", "default": {"memory": "512Mi"}, "defaultRequest": {"cpu": "600m"}}]}})))
        .await
        .unwrap();
    // Admission reads LimitRanges from a cache too: a real API server may refuse the
    // pod until it sees the new one (its lookup for "bare" above found none, and that
    // answer is kept a while), so the pod is retried while the refusal is the quota's.
    let admitted = eventually(T, "the LimitRange applied", || async {
        match pods.create(&PostParams::default(), &pod("one")).await {
            Ok(p) => Some(p),
            Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("failed quota") => None,
            Err(e) => panic!("{e}"),
        }
    })
    .await;
    let r = admitted.spec.unwrap().containers[0]
        .resources
        .clone()
        .unwrap();
    assert_eq!(r.requests.unwrap()["cpu"].0, "600m");
    assert_eq!(r.limits.unwrap()["memory"].0, "512Mi");
    assert!(
        admitted
            .metadata
            .annotations
            .unwrap_or_default()
            .contains_key("kubernetes.io/limit-ranger"),
        "the LimitRanger notes what it set"
    );
    // A second pod would pass requests.cpu=1 (600m + 600m).
    let (code, msg) = eventually(T, "the quota counts the first pod", || async {
        match pods.create(&PostParams::default(), &pod("two")).await {
            Err(kube::Error::Api(s)) => Some((s.code, s.message)),
            Ok(_) => {
                let _ = pods
                    .delete("two", &DeleteParams::default().grace_period(0))
                    .await;
                None
            }
            Err(_) => None,
        }
    })
    .await;
    assert_eq!(code, 403, "{msg}");
    assert!(
        msg.contains("exceeded quota: q") && msg.contains("requests.cpu"),
        "{msg}"
    );
    // The quota's status shows what is used.
    let used = eventually(T, "quota status", || async {
        let q = Api::<ResourceQuota>::namespaced(tc.client.clone(), &ns)
            .get("q")
            .await
            .ok()?;
        let used = q.status?.used?;
        (used.get("pods").map(|p| p.0.as_str()) == Some("1")).then_some(used)
    })
    .await;
    assert_eq!(used["requests.cpu"].0, "600m");
}

async fn the_demo_crd_applies_without_warnings(tc: TestCluster) {
    if !kubectl_present() {
        eprintln!("kubectl not installed; skipping");
        return;
    }
    let crd = showroom::cluster::crd::crd_yaml();
    let (ok, out, err) = kubectl(&tc, &["apply", "-f", "-"], Some(&crd)).await;
    assert!(ok, "{out}{err}");
    assert!(
        !err.contains("Warning"),
        "the Demo CRD earns no warning: {err}"
    );
    // The check can fail: a format Kubernetes does not know is warned about.
    let odd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "oddities.fidelity.showroom.dev"},
        "spec": {"group": "fidelity.showroom.dev", "scope": "Cluster",
            "names": {"kind": "Oddity", "plural": "oddities"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema":
                {"type": "object", "properties": {"n": {"type": "integer", "format": "uint64"}}}}}]}});
    let (ok, out, err) = kubectl(&tc, &["apply", "-f", "-"], Some(&odd.to_string())).await;
    assert!(ok, "{out}{err}");
    assert!(err.contains("unrecognized format \"uint64\""), "{err}");
}
