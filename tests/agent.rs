//! The agent (node, vcluster CLI, syncer) on its own, with no showroom: the same code in
//! both worlds, and nothing in it writes a controller's status.

mod common;

use common::{TestCluster, eventually};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, PersistentVolumeClaim, Pod, Secret, Service};
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use showroom::cluster::workloads::{JobState, Workloads};
use std::time::Duration;

const T: Duration = Duration::from_secs(60);

scenarios!(
    a_job_runs_vcluster_create_and_the_syncer_serves_the_app,
    a_failing_restore_fails_the_job_with_the_cli_message,
);

/// A Job as showroom's provisioner makes it, in a namespace with the values ConfigMap.
async fn create_job(tc: &TestCluster, ns: &str, vcluster: &str, snapshot: &str) {
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(tc.client.clone(), ns);
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(
            json!({"metadata": {"name": "values"}, "data": {"vcluster.yaml": "{}\n"}}),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "create"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "vcluster", "image": "ghcr.io/loft-sh/vcluster-cli:0.36.1",
                "command": ["vcluster"],
                "args": ["create", vcluster, "--namespace", ns, "--restore", snapshot, "-f", "/values/vcluster.yaml"],
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "volumeMounts": [{"name": "values", "mountPath": "/values"}]}],
            "volumes": [{"name": "values", "configMap": {"name": "values"}}]}}}
    }))
    .unwrap();
    Api::<Job>::namespaced(tc.client.clone(), ns)
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
}

/// showroom's Job watch (`cluster::workloads`) on `ns`, as its controller runs it.
fn follow_jobs(tc: &TestCluster, ns: &str) -> Workloads {
    let w = Workloads::default();
    let stream = w.follow_jobs(Api::namespaced(tc.client.clone(), ns), "");
    tokio::spawn(stream.for_each(|_| async {}));
    w
}

/// showroom's watch of vcluster StatefulSets on `ns`, as its controller runs it.
fn follow_vclusters(tc: &TestCluster, ns: &str) -> Workloads {
    let w = Workloads::default();
    let stream = w.follow_vclusters(Api::namespaced(tc.client.clone(), ns), "app=vcluster");
    tokio::spawn(stream.for_each(|_| async {}));
    w
}

/// Where that watch says the Job "create" stands, once it says `want`.
async fn watch_says(w: &Workloads, ns: &str, want: JobState) {
    let since = Some(jiff::Timestamp::UNIX_EPOCH);
    eventually(T, &format!("the Job watch to say {want:?}"), || async {
        (w.job(ns, "create", since) == Some(want)).then_some(())
    })
    .await;
}

async fn job_condition(tc: &TestCluster, ns: &str) -> Option<String> {
    let job = Api::<Job>::namespaced(tc.client.clone(), ns)
        .get("create")
        .await
        .ok()?;
    job.status?
        .conditions?
        .into_iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.type_)
}

async fn a_job_runs_vcluster_create_and_the_syncer_serves_the_app(mut tc: TestCluster) {
    let ns = tc.namespace().await;
    // The vcluster container writes its kubeconfig Secret as it starts, before its pod
    // reports Ready (as a real vcluster's syncer does): whoever sees the pod Ready
    // finds the Secret. Looked at from before the pod exists, so that a Secret written
    // only after Ready shows as missing here.
    let first_ready = tokio::spawn(secret_when_first_ready(tc.client.clone(), ns.clone()));
    let watch = follow_jobs(&tc, &ns);
    let vclusters = follow_vclusters(&tc, &ns);
    create_job(&tc, &ns, "vc1", "oci://example.test/snap/shop:1").await;
    let done = eventually(T, "the Job to finish", || job_condition(&tc, &ns)).await;
    watch_says(&watch, &ns, JobState::Complete).await;
    let pods: Api<Pod> = Api::namespaced(tc.client.clone(), &ns);
    let seen = pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        done,
        "Complete",
        "pods: {:?}",
        seen.items.iter().map(|p| &p.status).collect::<Vec<_>>()
    );

    // The node the pods run on is registered and Ready.
    let job_pod = pods
        .list(&ListParams::default().labels("job-name=create"))
        .await
        .unwrap()
        .items
        .remove(0);
    let node = job_pod.spec.unwrap().node_name.expect("job pod bound");
    let node = Api::<Node>::all(tc.client.clone())
        .get(&node)
        .await
        .unwrap();
    assert!(
        node.status
            .unwrap()
            .conditions
            .unwrap()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    );

    // What `vcluster create` makes; the StatefulSet's controller made the PVC and pod.
    let sets: Api<StatefulSet> = Api::namespaced(tc.client.clone(), &ns);
    eventually(T, "the vcluster StatefulSet ready", || async {
        let s = sets.get_opt("vc1").await.ok()??;
        (s.status?.ready_replicas == Some(1)).then_some(())
    })
    .await;
    eventually(T, "the vcluster watch to say vc1 is up", || async {
        let since = Some(jiff::Timestamp::UNIX_EPOCH);
        (vclusters.vcluster_up(&ns, "vc1", since) == Some(true)).then_some(())
    })
    .await;
    let sts = sets.get("vc1").await.unwrap();
    assert_eq!(sts.labels()["app"], "vcluster");
    assert_eq!(sts.labels()["release"], "vc1");
    for svc in ["vc1", "vc1-headless"] {
        Api::<Service>::namespaced(tc.client.clone(), &ns)
            .get(svc)
            .await
            .unwrap();
    }
    Api::<PersistentVolumeClaim>::namespaced(tc.client.clone(), &ns)
        .get("data-vc1-0")
        .await
        .unwrap();
    assert!(
        tokio::time::timeout(T, first_ready)
            .await
            .expect("the vcluster pod Ready")
            .unwrap(),
        "the kubeconfig Secret vc-vc1 was missing when the vcluster pod first read Ready"
    );

    // The synced app: a host pod and Service, and a page served for it.
    eventually(T, "the synced workload pod running", || async {
        let p = pods.get_opt("storefront-0-x-shop-x-vc1").await.ok()??;
        (p.status?.phase.as_deref() == Some("Running")).then_some(())
    })
    .await;
    Api::<Service>::namespaced(tc.client.clone(), &ns)
        .get("storefront-x-shop-x-vc1")
        .await
        .unwrap();
    let host = format!("storefront-x-shop-x-vc1.{ns}.svc");
    let addr = eventually(T, "the stand-in app", || async {
        tc.apps.resolve(&host, 80)
    })
    .await;
    let page = page_at(addr).await;
    assert!(page.contains(&format!("vcluster {ns}/vc1")), "{page}");

    // A synced pod or Service deleted on the host is made again by the syncer.
    let services: Api<Service> = Api::namespaced(tc.client.clone(), &ns);
    let old = pods.get("storefront-0-x-shop-x-vc1").await.unwrap().uid();
    pods.delete("storefront-0-x-shop-x-vc1", &Default::default())
        .await
        .unwrap();
    services
        .delete("storefront-x-shop-x-vc1", &Default::default())
        .await
        .unwrap();
    eventually(T, "the synced pod made again", || async {
        let p = pods.get_opt("storefront-0-x-shop-x-vc1").await.ok()??;
        (p.uid() != old && p.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await;
    eventually(T, "the synced Service made again", || async {
        services
            .get_opt("storefront-x-shop-x-vc1")
            .await
            .ok()?
            .map(|_| ())
    })
    .await;

    // Paused like `vcluster pause`: the pod goes, and so does the app.
    sets.patch(
        "vc1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    eventually(T, "the vcluster pod gone", || async {
        pods.get_opt("vc1-0").await.ok()?.is_none().then_some(())
    })
    .await;
    eventually(T, "the app stopped", || async {
        tc.apps.resolve(&host, 80).is_none().then_some(())
    })
    .await;
}

async fn a_failing_restore_fails_the_job_with_the_cli_message(mut tc: TestCluster) {
    let ns = tc.namespace().await;
    let watch = follow_jobs(&tc, &ns);
    create_job(&tc, &ns, "vc2", "oci://example.test/snap/missing:1").await;
    let done = eventually(T, "the Job to finish", || job_condition(&tc, &ns)).await;
    assert_eq!(done, "Failed");
    watch_says(&watch, &ns, JobState::Failed).await;
    let pods: Api<Pod> = Api::namespaced(tc.client.clone(), &ns);
    let pod = pods
        .list(&ListParams::default().labels("job-name=create"))
        .await
        .unwrap()
        .items
        .remove(0);
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    let msg = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .terminated
        .unwrap()
        .message
        .unwrap();
    assert!(
        msg.contains("oci://example.test/snap/missing:1") && msg.contains("not found"),
        "{msg}"
    );
    let sets: Api<StatefulSet> = Api::namespaced(tc.client.clone(), &ns);
    assert!(sets.get_opt("vc2").await.unwrap().is_none());
}

/// Whether the vcluster's kubeconfig Secret exists at the first look that finds its pod
/// Ready (looks every 5 ms).
async fn secret_when_first_ready(client: kube::Client, ns: String) -> bool {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(client, &ns);
    loop {
        let ready = pods.get_opt("vc1-0").await.ok().flatten().is_some_and(|p| {
            p.status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        });
        if ready {
            // An error of the API server says nothing of the Secret: ask again.
            loop {
                match secrets.get_opt("vc-vc1").await {
                    Ok(found) => return found.is_some(),
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The stand-in app's page.
async fn page_at(addr: std::net::SocketAddr) -> String {
    common::web::send("GET", &format!("http://{addr}/"), &[], None)
        .await
        .unwrap()
        .text
}
