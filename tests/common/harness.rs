//! Runs showroom in-process against a TestCluster, with users and a small HTTP client.
#![allow(dead_code)]

use super::TestCluster;
use serde_json::Value;
use showroom::app::{self, Config, Running};
use showroom::cluster::sweeper::SweepOptions;
use showroom::domain::template::{Catalogue, Template};
use showroom::domain::users::{Role, UserEntry, Users, hash_token};
use showroom::sim::agent::{App, Snapshot, Snapshots};
use std::sync::Arc;
use std::time::Duration;

pub const SALES: &str = "token-sales-alice";
pub const OTHER: &str = "token-sales-bob";
pub const ADMIN: &str = "token-admin-carol";

/// The snapshots behind the test catalogue: `shop` boots in 300 ms, `slow` in 2 s (to
/// watch or interrupt a start), and `broken`'s snapshot does not exist.
pub fn publish_test_snapshots(snapshots: &Snapshots) {
    let app = || App {
        namespace: "shop".into(),
        service: "storefront".into(),
        port: 80,
    };
    for (url, boot) in [
        ("oci://example.test/snap/shop:1", 300),
        ("oci://example.test/snap/slow:1", 2000),
        ("oci://example.test/snap/reset:1", 300),
    ] {
        snapshots.publish(
            url,
            Snapshot {
                apps: vec![app()],
                restore_time: Duration::from_millis(100),
                boot_time: Duration::from_millis(boot),
            },
        );
    }
}

/// A template for tests: short timeouts, a quota on cpu and memory with container
/// defaults (as a real cluster needs), and `extra` YAML (a warm pool, say).
pub fn template(name: &str, snapshot: &str, extra: &str) -> Template {
    let text = format!(
        r#"
name: {name}
displayName: Test {name}
description: test template
vcluster: {{version: 0.36.1, cliImage: "ghcr.io/loft-sh/vcluster-cli:0.36.1"}}
snapshot: {snapshot}
entrypoint: {{namespace: shop, service: storefront, port: 80}}
lifecycle:
  defaults: {{sleepAfterIdle: 1h, deleteAfterIdle: 2h, maxLifetime: 1d}}
  limits: {{sleepAfterIdle: 2h, deleteAfterIdle: 3h, maxLifetime: 2d}}
  maxExtension: 1h
  provisionTimeout: 60s
  wakeTimeout: 60s
quota: {{pods: "20", requests.cpu: "4", requests.memory: 8Gi, limits.cpu: "8", limits.memory: 16Gi}}
containerDefaults:
  requests: {{cpu: 50m, memory: 64Mi}}
  limits: {{cpu: 500m, memory: 256Mi}}
{extra}
"#
    );
    Template::parse(name, &text).unwrap()
}

pub fn catalogue_of(templates: Vec<Template>) -> Arc<Catalogue> {
    Arc::new(Catalogue::of(templates))
}

/// The templates most tests use: `shop`, a `slow` twin and a `broken` one whose
/// restore fails.
pub fn test_catalogue() -> Arc<Catalogue> {
    catalogue_of(vec![
        template("shop", "oci://example.test/snap/shop:1", ""),
        template("slow", "oci://example.test/snap/slow:1", ""),
        template("broken", "oci://example.test/snap/missing:1", ""),
    ])
}

/// A user who signs in with a bearer token.
fn e(name: &str, role: Role, token: &str) -> UserEntry {
    UserEntry {
        name: name.into(),
        role,
        token_sha256: vec![hash_token(token)],
        max_demos: None,
        password_argon2: None,
    }
}

pub fn test_users() -> Arc<Users> {
    Arc::new(
        Users::from_entries(vec![
            e("alice", Role::Sales, SALES),
            e("bob", Role::Sales, OTHER),
            e("carol", Role::Admin, ADMIN),
        ])
        .unwrap(),
    )
}

pub fn test_config() -> Config {
    let mut c = Config::new("127.0.0.1:0".parse().unwrap());
    c.sweep = SweepOptions::default();
    c.activity_interval = Duration::from_millis(500);
    c.max_demos_per_user = 3;
    c.dev_login = true;
    c
}

pub async fn start_showroom(tc: &TestCluster, cfg: Config) -> Running {
    start_showroom_with_users(tc, cfg, test_users()).await
}

/// A JSON request to the API: (status, body as JSON). Panics if nothing answers.
pub async fn http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, Value) {
    http_with(method, url, token, body, &[]).await
}

pub async fn http_with(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    try_http(method, url, token, body, headers)
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

/// As `http_with`, but Err when nothing answers (for polling a server that starts).
pub async fn try_http(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> Result<(u16, Value), String> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(b) = &bearer {
        all.push(("authorization", b));
    }
    if body.is_some() || method == "POST" {
        all.push(("content-type", "application/json"));
    }
    let reply = super::web::send(method, url, &all, body).await?;
    Ok((reply.status, reply.json()))
}

/// The API as one user sees it.
pub struct Client {
    pub base: String,
    pub token: String,
}

impl Client {
    pub fn new(r: &Running, token: &str) -> Self {
        Client {
            base: format!("http://{}", r.addr),
            token: token.into(),
        }
    }
    pub async fn get(&self, path: &str) -> (u16, Value) {
        http(
            "GET",
            &format!("{}{path}", self.base),
            Some(&self.token),
            None,
        )
        .await
    }
    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        http(
            "POST",
            &format!("{}{path}", self.base),
            Some(&self.token),
            Some(body),
        )
        .await
    }
    pub async fn delete(&self, path: &str) -> (u16, Value) {
        http(
            "DELETE",
            &format!("{}{path}", self.base),
            Some(&self.token),
            None,
        )
        .await
    }
    /// Starts a demo, retrying on 5xx (the fault-injection tests rely on it).
    pub async fn start(&self, body: &str) -> Value {
        for _ in 0..50 {
            let (code, v) = self.post("/api/v1/demos", body).await;
            if code == 202 {
                return v;
            }
            assert!(code >= 500, "start refused: {code} {v}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("could not start a demo");
    }
    /// Starts a demo of `template` and waits until it is Ready: its name.
    pub async fn start_ready(&self, template: &str, timeout: Duration) -> String {
        let v = self
            .start(&format!(r#"{{"template": "{template}"}}"#))
            .await;
        let name = v["name"].as_str().expect("a demo's name").to_string();
        self.wait_phase(&name, Some("Ready"), timeout).await;
        name
    }
    pub async fn phase(&self, name: &str) -> Option<String> {
        let (code, v) = self.get(&format!("/api/v1/demos/{name}")).await;
        match code {
            200 => v["phase"].as_str().map(str::to_string),
            404 => None,
            _ => Some(format!("HTTP {code}")),
        }
    }
    /// Waits for a phase (None: the demo is gone).
    pub async fn wait_phase(&self, name: &str, want: Option<&str>, timeout: Duration) {
        let what = format!("demo {name} to reach {want:?}");
        super::eventually(timeout, &what, || async {
            (self.phase(name).await.as_deref() == want).then_some(())
        })
        .await;
    }
}

/// The users `showroom dev` has: `sales` (token SALES) and `admin` (token ADMIN).
pub fn dev_users() -> Arc<Users> {
    Arc::new(
        Users::from_entries(vec![
            e("sales", Role::Sales, SALES),
            e("admin", Role::Admin, ADMIN),
        ])
        .unwrap(),
    )
}

pub async fn start_showroom_with_users(
    tc: &TestCluster,
    cfg: Config,
    users: Arc<Users>,
) -> Running {
    start_showroom_full(tc, cfg, users, test_catalogue()).await
}

/// Showroom as this test's instance, its proxy reaching the agent's stand-in apps.
pub async fn start_showroom_full(
    tc: &TestCluster,
    cfg: Config,
    users: Arc<Users>,
    catalogue: Arc<Catalogue>,
) -> Running {
    app::install_crd(&tc.client).await.unwrap();
    let mut cfg = cfg;
    cfg.instance = tc.instance.clone();
    cfg.upstream_override = Some(tc.upstream_override());
    let running = app::start(tc.client.clone(), catalogue, users, cfg)
        .await
        .unwrap();
    let url = format!("http://{}/readyz", running.addr);
    super::eventually(Duration::from_secs(10), "showroom ready", || {
        let url = url.clone();
        async move {
            let answer = try_http("GET", &url, None, None, &[]).await.ok()?;
            (answer.0 == 200).then_some(())
        }
    })
    .await;
    running
}
