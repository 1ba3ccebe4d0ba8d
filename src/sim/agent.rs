//! The node agent: plays the kubelet and the vcluster CLI for the simulation.
//!
//! It talks to the API server only through a `kube::Client`, so it also works against
//! a real API server that has no nodes (the way kwok does).

use crate::k8s::{create_if_absent, delete_if_present};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Marks a restore URL whose simulated restore fails.
pub const FAIL_MARKER: &str = "fail";
/// Where a simulated vcluster's stand-in app listens: an annotation on the synced
/// entrypoint Service (`<svc>-x-<vns>-x-<vcluster>`).
pub const ADDRESS_ANNOTATION: &str = "sim.showroom.dev/address";
/// The entrypoint `<vns>/<svc>:<port>` that a provisioning Job's pod template names.
pub const ENTRYPOINT_ANNOTATION: &str = "showroom.dev/entrypoint";

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub boot_delay: Duration,
    pub job_delay: Duration,
}

/// What `vcluster create` was asked to do, read from a Job's container.
#[derive(Debug, PartialEq)]
pub struct CreateCall {
    pub name: String,
    pub namespace: Option<String>,
    pub restore: Option<String>,
}

pub fn parse_create(args: &[String]) -> Option<CreateCall> {
    let pos = args.iter().position(|a| a == "create")?;
    let name = args.get(pos + 1)?.clone();
    let flag = |f: &str| {
        args.iter().enumerate().find_map(|(i, a)| {
            if a == f {
                args.get(i + 1).cloned()
            } else {
                a.strip_prefix(&format!("{f}=")).map(str::to_string)
            }
        })
    };
    Some(CreateCall {
        name,
        namespace: flag("--namespace").or_else(|| flag("-n")),
        restore: flag("--restore"),
    })
}

struct StandIn {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Agent {
    client: Client,
    opts: AgentOptions,
    jobs_seen: HashMap<(String, String), Instant>,
    booting: HashMap<(String, String), Instant>,
    apps: HashMap<(String, String), StandIn>,
}

fn cache<K>(api: Api<K>, cfg: watcher::Config) -> reflector::Store<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, cfg))
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.next().await.is_some() {}
    });
    reader
}

pub async fn run(client: Client, opts: AgentOptions) {
    let jobs = cache(Api::<Job>::all(client.clone()), watcher::Config::default());
    let sets = cache(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default().labels("app=vcluster"),
    );
    let mut agent = Agent {
        client,
        opts,
        jobs_seen: HashMap::new(),
        booting: HashMap::new(),
        apps: HashMap::new(),
    };
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for job in jobs.state() {
            if let Err(e) = agent.job(&job).await {
                tracing::debug!(job = %job.name_any(), error = %e, "sim agent: job step failed, will retry");
            }
        }
        let live: Vec<_> = sets.state();
        for sts in &live {
            if let Err(e) = agent.statefulset(sts).await {
                tracing::debug!(sts = %sts.name_any(), error = %e, "sim agent: statefulset step failed, will retry");
            }
        }
        let keys: Vec<_> = live
            .iter()
            .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
            .collect();
        agent.apps.retain(|k, _| keys.contains(k));
        agent.booting.retain(|k, _| keys.contains(k));
    }
}

fn from_json<T: DeserializeOwned>(v: Value) -> Result<T, kube::Error> {
    serde_json::from_value(v).map_err(kube::Error::SerdeError)
}

impl Agent {
    async fn job(&mut self, job: &Job) -> Result<(), kube::Error> {
        let done = job
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            });
        if done || job.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let ns = job.namespace().unwrap_or_default();
        let key = (ns.clone(), job.name_any());
        let first = *self.jobs_seen.entry(key).or_insert_with(Instant::now);
        if first.elapsed() < self.opts.job_delay {
            return Ok(());
        }
        let spec = job.spec.as_ref().and_then(|s| s.template.spec.as_ref());
        let container = spec.and_then(|s| s.containers.first());
        let args: Vec<String> = container
            .map(|c| {
                c.command
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .chain(c.args.clone().unwrap_or_default())
                    .collect()
            })
            .unwrap_or_default();
        let entrypoint = job
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(ENTRYPOINT_ANNOTATION).cloned());
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let status = match parse_create(&args) {
            Some(call)
                if call
                    .restore
                    .as_deref()
                    .is_some_and(|u| u.contains(FAIL_MARKER)) =>
            {
                json!({
                    "failed": 1, "startTime": now,
                    "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                        "message": format!("Job has reached the specified backoff limit: restore from {} failed", call.restore.unwrap_or_default()),
                        "lastTransitionTime": now}],
                })
            }
            Some(call) => {
                let target_ns = call.namespace.clone().unwrap_or_else(|| ns.clone());
                self.vcluster_create(&target_ns, &call.name, entrypoint.as_deref())
                    .await?;
                json!({"succeeded": 1, "startTime": now, "completionTime": now,
                    "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}]})
            }
            None => json!({"succeeded": 1, "startTime": now, "completionTime": now,
                "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": now}]}),
        };
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        api.patch_status(
            &job.name_any(),
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
        Ok(())
    }

    /// Creates what `vcluster create NAME --namespace NS` creates (DESIGN.md).
    async fn vcluster_create(
        &self,
        ns: &str,
        name: &str,
        entrypoint: Option<&str>,
    ) -> Result<(), kube::Error> {
        let c = &self.client;
        let labels = json!({"app": "vcluster", "release": name});
        for sa in [format!("vc-{name}"), format!("vc-workload-{name}")] {
            let obj: ServiceAccount =
                from_json(json!({"metadata": {"name": sa, "labels": labels}}))?;
            create_if_absent(&Api::namespaced(c.clone(), ns), &obj).await?;
        }
        let role: Role = from_json(
            json!({"metadata": {"name": format!("vc-{name}"), "labels": labels},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
        )?;
        create_if_absent(&Api::namespaced(c.clone(), ns), &role).await?;
        let rb: RoleBinding = from_json(
            json!({"metadata": {"name": format!("vc-{name}"), "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": format!("vc-{name}")},
            "subjects": [{"kind": "ServiceAccount", "name": format!("vc-{name}"), "namespace": ns}]}),
        )?;
        create_if_absent(&Api::namespaced(c.clone(), ns), &rb).await?;
        let cfg: Secret = from_json(
            json!({"metadata": {"name": format!("vc-config-{name}"), "labels": labels},
            "stringData": {"config.yaml": "# simulated vcluster.yaml\n"}}),
        )?;
        create_if_absent(&Api::namespaced(c.clone(), ns), &cfg).await?;
        let svc: Service = from_json(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"selector": labels, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}))?;
        create_if_absent(&Api::namespaced(c.clone(), ns), &svc).await?;
        let headless: Service = from_json(
            json!({"metadata": {"name": format!("{name}-headless"), "labels": labels},
            "spec": {"clusterIP": "None", "selector": labels, "ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}),
        )?;
        create_if_absent(&Api::namespaced(c.clone(), ns), &headless).await?;
        let pvc: PersistentVolumeClaim = from_json(
            json!({"metadata": {"name": format!("data-{name}-0"), "labels": labels},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}}),
        )?;
        create_if_absent(&Api::namespaced(c.clone(), ns), &pvc).await?;
        let mut annotations = json!({});
        if let Some(ep) = entrypoint {
            annotations[ENTRYPOINT_ANNOTATION] = json!(ep);
        }
        let sts: StatefulSet = from_json(
            json!({"metadata": {"name": name, "labels": labels, "annotations": annotations},
            "spec": {"replicas": 1, "serviceName": format!("{name}-headless"),
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"serviceAccountName": format!("vc-{name}"),
                    "containers": [{"name": "syncer", "image": "ghcr.io/loft-sh/vcluster-pro:0.36.0"}]}}}}),
        )?;
        create_if_absent(&Api::namespaced(c.clone(), ns), &sts).await?;
        Ok(())
    }

    async fn statefulset(&mut self, sts: &StatefulSet) -> Result<(), kube::Error> {
        let ns = sts.namespace().unwrap_or_default();
        let name = sts.name_any();
        let key = (ns.clone(), name.clone());
        let (want, ready) = crate::k8s::replicas(sts);
        let sets: Api<StatefulSet> = Api::namespaced(self.client.clone(), &ns);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        if sts.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        if want == 0 {
            self.booting.remove(&key);
            self.apps.remove(&key);
            if ready != 0 || sts.status.as_ref().map_or(0, |s| s.replicas) != 0 {
                delete_if_present(&pods, &format!("{name}-0")).await?;
                sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status":
                    {"replicas": 0, "readyReplicas": 0, "availableReplicas": 0, "currentReplicas": 0}})))
                    .await?;
            }
            return Ok(());
        }
        if ready == want {
            self.booting.remove(&key);
            // Keep the stand-in app and the synced workload alive (after a restart of the
            // agent, or when a pod was deleted).
            return self.ensure_workload(sts).await;
        }
        let since = *self.booting.entry(key.clone()).or_insert_with(Instant::now);
        if since.elapsed() < self.opts.boot_delay {
            return Ok(());
        }
        let labels = json!({"app": "vcluster", "release": name});
        let pod: Pod = from_json(
            json!({"metadata": {"name": format!("{name}-0"), "labels": labels},
            "spec": {"containers": [{"name": "syncer", "image": "ghcr.io/loft-sh/vcluster-pro:0.36.0"}]},
            "status": {"phase": "Running"}}),
        )?;
        create_if_absent(&pods, &pod).await?;
        let kubeconfig = crate::sim::kubeconfig_yaml("https://localhost:8443");
        let secret: Secret = from_json(
            json!({"metadata": {"name": format!("vc-{name}"), "labels": labels},
            "stringData": {"config": kubeconfig}}),
        )?;
        create_if_absent(&Api::namespaced(self.client.clone(), &ns), &secret).await?;
        self.ensure_workload(sts).await?;
        sets.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status":
            {"replicas": want, "readyReplicas": want, "availableReplicas": want, "currentReplicas": want,
             "observedGeneration": sts.metadata.generation}})))
            .await?;
        self.booting.remove(&key);
        Ok(())
    }

    /// The syncer's work: the entrypoint's host pod and Service, and the stand-in app.
    async fn ensure_workload(&mut self, sts: &StatefulSet) -> Result<(), kube::Error> {
        let ns = sts.namespace().unwrap_or_default();
        let name = sts.name_any();
        let key = (ns.clone(), name.clone());
        let Some(ep) = sts.annotations().get(ENTRYPOINT_ANNOTATION).cloned() else {
            return Ok(());
        };
        let Some((vns, rest)) = ep.split_once('/') else {
            return Ok(());
        };
        let (svc, port) = rest.split_once(':').unwrap_or((rest, "80"));
        let host_svc = format!("{svc}-x-{vns}-x-{name}");
        let host_pod = format!("{svc}-0-x-{vns}-x-{name}");
        let managed =
            json!({"vcluster.loft.sh/managed-by": name, "vcluster.loft.sh/namespace": vns});
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
        let pod: Pod = from_json(json!({"metadata": {"name": host_pod, "labels": managed},
            "spec": {"containers": [{"name": svc, "image": "stand-in"}]}, "status": {"phase": "Running"}}))?;
        create_if_absent(&pods, &pod).await?;
        if !self.apps.contains_key(&key) {
            let app = start_stand_in(&name, &ns)
                .await
                .map_err(|e| kube::Error::Service(e.into()))?;
            self.apps.insert(key.clone(), app);
        }
        let addr = self.apps[&key].addr.to_string();
        let services: Api<Service> = Api::namespaced(self.client.clone(), &ns);
        let port: i32 = port.parse().unwrap_or(80);
        let desired = json!({"metadata": {"name": host_svc, "labels": managed, "annotations": {ADDRESS_ANNOTATION: addr}},
            "spec": {"ports": [{"name": "http", "port": port}], "selector": managed}});
        match services.get_opt(&host_svc).await? {
            None => create_if_absent(&services, &from_json::<Service>(desired)?).await?,
            Some(s) if s.annotations().get(ADDRESS_ANNOTATION) != Some(&addr) => {
                services
                    .patch(
                        &host_svc,
                        &PatchParams::default(),
                        &Patch::Merge(
                            json!({"metadata": {"annotations": {ADDRESS_ANNOTATION: addr}}}),
                        ),
                    )
                    .await?;
            }
            Some(_) => {}
        }
        Ok(())
    }
}

/// A small web page naming the demo, standing in for the demo's real app.
async fn start_stand_in(name: &str, ns: &str) -> std::io::Result<StandIn> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let title = format!("{ns}/{name}");
    let app = axum::Router::new().fallback(move |mut req: axum::extract::Request| {
        let title = title.clone();
        async move {
            use axum::response::IntoResponse;
            // `Upgrade: echo` stands in for a WebSocket: after 101, bytes are echoed.
            if req.headers().get("upgrade").is_some_and(|v| v == "echo") {
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(up) = on.await {
                        let (mut r, mut w) = tokio::io::split(hyper_util::rt::TokioIo::new(up));
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    }
                });
                return (axum::http::StatusCode::SWITCHING_PROTOCOLS, [("connection", "upgrade"), ("upgrade", "echo")]).into_response();
            }
            let path = req.uri().path().replace(['<', '>', '&', '"'], "");
            let cookies = req.headers().get("cookie").and_then(|c| c.to_str().ok()).unwrap_or("").replace(['<', '>', '&', '"'], "");
            axum::response::Html(format!(
                "<!doctype html><html><head><title>Stand-in app: {title}</title>\
                 <style>body{{font-family:sans-serif;margin:40px;background:#eef6ff}}</style></head><body>\
                 <h1>Stand-in demo app</h1><p id=\"demo\">vcluster {title}</p><p>path <code id=\"path\">{path}</code></p>\
                 <p>cookies seen by the app: <code id=\"cookies\">{cookies}</code></p>\
                 <a id=\"products\" href=\"/products\">Products</a></body></html>"
            ))
            .into_response()
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(StandIn { addr, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vcluster_create_arguments() {
        let args: Vec<String> = [
            "vcluster",
            "create",
            "demo-1",
            "--namespace",
            "demo-1",
            "--restore=oci://x/y:1",
            "-f",
            "/v.yaml",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            parse_create(&args),
            Some(CreateCall {
                name: "demo-1".into(),
                namespace: Some("demo-1".into()),
                restore: Some("oci://x/y:1".into())
            })
        );
        assert_eq!(parse_create(&["echo".to_string()]), None);
    }
}
