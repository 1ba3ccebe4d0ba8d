//! The scale section: showroom (`showroom serve`, a process of its own) over a cluster
//! holding 100, 1,000 and 10,000 demos. At each level it measures starts at 50
//! concurrent connections, pages of the list, a share link's landing page against
//! nginx serving the same bytes, memory, and both sweeps; the fill between levels is
//! the create-to-Ready throughput.

use super::load::{self, Outcome, Stop, request};
use crate::common::TestCluster;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use showroom::cluster::crd::Demo;
use showroom::sim::agent::{App, Snapshot};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The shipped template every bench demo is made from.
const TEMPLATE: &str = "data-pipeline";
const CONCURRENCY: usize = 50;
/// Each user may hold this many demos (the default limit).
const PER_USER: usize = 5;
const ADMIN_TOKEN: &str = "bench-admin-token";

/// What one level measured.
#[derive(Default, Clone)]
pub struct Level {
    /// Creating the demos that brought the cluster to this level, until all were Ready.
    /// Demos added, how long until each was Ready or Failed, and how many Failed.
    pub fill: Option<(usize, Duration, usize)>,
    pub start_p50: Duration,
    pub start_p99: Duration,
    pub start_errors: usize,
    /// LIST requests the API server saw during the measured starts.
    pub start_lists: u64,
    /// CPU used from the first measured start to the last 202, per start: showroom's
    /// process, and the bench's (the simulation, its agent and the load generator).
    /// Provisioning the demos started so far runs meanwhile and counts too.
    pub start_cpu_showroom: Duration,
    pub start_cpu_sim: Duration,
    pub page_p50: Duration,
    pub own_list_p50: Duration,
    pub get_p99: Duration,
    pub landing_rps: f64,
    pub nginx_rps: Option<f64>,
    pub showroom_rss_mib: f64,
    /// Cores busy while nothing is asked of showroom (5 s after the fill): showroom's
    /// process and the bench's (the simulation and its agent).
    pub idle_showroom_cores: f64,
    pub idle_sim_cores: f64,
    pub sim_rss_mib: Option<f64>,
    pub sweep_plan: Option<Duration>,
    pub sweep_lists: Option<u64>,
    pub cli_sweep: Duration,
    pub cli_sweep_lists: u64,
}

/// The floors: what the API server itself takes.
#[derive(Default, Clone)]
pub struct Floors {
    pub create_median: Duration,
    pub create_p99_50: Duration,
}

pub struct World {
    tc: TestCluster,
    dir: tempfile::TempDir,
    showroom: std::process::Child,
    addr: SocketAddr,
    /// Each demo's phase, from a watch (the bench keeps no objects, so it adds little
    /// to the memory of the simulation it shares a process with).
    phases: Arc<Mutex<HashMap<String, String>>>,
    phase_watch: tokio::task::JoinHandle<()>,
    /// Users that only ever hold the measured starts.
    starters: usize,
    held: Vec<String>,
}

pub fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; fields after its ')' are fixed.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // utime and stime are fields 14 and 15: 12 and 13 after the ')'.
    let ticks = f.get(11).unwrap_or(&0.0) + f.get(12).unwrap_or(&0.0);
    ticks / 100.0
}

fn user_token(i: usize) -> String {
    format!("bench-user-token-{i}")
}

fn starter_token(i: usize) -> String {
    format!("bench-starter-token-{i}")
}

fn users_yaml(users: usize, starters: usize) -> String {
    let hash = showroom::domain::users::hash_token;
    let mut out = format!(
        "users:\n  - name: carol\n    role: admin\n    tokenSha256: [\"{}\"]\n",
        hash(ADMIN_TOKEN)
    );
    for i in 0..users {
        out.push_str(&format!(
            "  - name: user{i}\n    role: sales\n    tokenSha256: [\"{}\"]\n",
            hash(&user_token(i))
        ));
    }
    for i in 0..starters {
        out.push_str(&format!(
            "  - name: starter{i}\n    role: sales\n    tokenSha256: [\"{}\"]\n",
            hash(&starter_token(i))
        ));
    }
    out
}

/// The LIST requests the API server has served so far (its `apiserver_request_total`).
async fn lists(client: &kube::Client) -> u64 {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let Ok(text) = client.request_text(req).await else {
        return 0;
    };
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{") && l.contains("verb=\"LIST\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// An API server counter by resource, most first: the lines of `/metrics` that start
/// with `prefix` (e.g. LIST requests: a watcher that fell behind the server's log
/// relists, and shows here; watchers the server closed for it).
async fn by_resource(client: &kube::Client, prefix: &str, filter: &str) -> Vec<(String, u64)> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let Ok(text) = client.request_text(req).await else {
        return Vec::new();
    };
    // A label's value on a metric line.
    let label = |l: &str, name: &str| -> Option<String> {
        Some(
            l.split(&format!("{name}=\""))
                .nth(1)?
                .split('"')
                .next()?
                .to_string(),
        )
    };
    let mut sums = std::collections::BTreeMap::<String, u64>::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(filter))
    {
        let Some(mut key) = label(l, "resource") else {
            continue;
        };
        // Unless the filter picks one verb, each verb counts apart, and the requests
        // refused (status 300 and up, e.g. a create that found its object) apart too.
        if !filter.contains("verb=")
            && let Some(verb) = label(l, "verb")
        {
            key = format!("{key} {verb}");
            if let Some(code) = label(l, "code").filter(|c| c.as_str() >= "300") {
                key = format!("{key} {code}");
            }
        }
        if let Some(n) = l.rsplit(' ').next().and_then(|n| n.parse::<f64>().ok()) {
            *sums.entry(key).or_default() += n as u64;
        }
    }
    let mut out: Vec<(String, u64)> = sums.into_iter().collect();
    out.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    out
}

/// A metric of showroom's `/metrics` (the first sample of that name).
async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    let out = load::run(
        addr,
        1,
        Stop::Count(1),
        true,
        Arc::new(move |_| request("GET", addr, "/metrics", None, None)),
    )
    .await;
    let body = String::from_utf8_lossy(&out.bodies.first()?.2).to_string();
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The address showroom's JSON log says it listens on.
fn listening_on(log: &str) -> Option<SocketAddr> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["fields"]["message"] == "showroom listening")
        .and_then(|v| v["fields"]["addr"].as_str()?.parse().ok())
}

impl World {
    /// Starts `showroom serve` as its own process against the cluster.
    pub async fn start(mut tc: TestCluster, max_demos: usize, starters: usize) -> World {
        let snapshot = showroom::domain::template::Template::parse(
            TEMPLATE,
            &std::fs::read_to_string(format!("snapshots/{TEMPLATE}.yaml")).expect("template"),
        )
        .expect("the shipped template")
        .snapshot;
        tc.snapshots.publish(
            &snapshot,
            Snapshot {
                apps: vec![App {
                    namespace: "pipeline".into(),
                    service: "dashboard".into(),
                    port: 8080,
                }],
                restore_time: Duration::ZERO,
                boot_time: Duration::ZERO,
            },
        );
        showroom::app::install_crd(&tc.client)
            .await
            .expect("the Demo CRD");
        let namespace = tc.namespace().await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let users = max_demos.div_ceil(PER_USER);
        std::fs::write(dir.path().join("users.yaml"), users_yaml(users, starters)).unwrap();
        let snapshots = dir.path().join("snapshots");
        std::fs::create_dir(&snapshots).unwrap();
        std::fs::copy(
            format!("snapshots/{TEMPLATE}.yaml"),
            snapshots.join(format!("{TEMPLATE}.yaml")),
        )
        .unwrap();
        let log_path = dir.path().join("showroom.log");
        let log = std::fs::File::create(&log_path).unwrap();
        // SHOWROOM_BENCH_WRAP="heaptrack -o /tmp/serve" runs `showroom serve` under a
        // profiler (RSS then counts the profiler too).
        let wrap = std::env::var("SHOWROOM_BENCH_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace();
        let mut cmd = match words.next() {
            Some(tool) => {
                let mut c = std::process::Command::new(tool);
                c.args(words).arg(env!("CARGO_BIN_EXE_showroom"));
                c
            }
            None => std::process::Command::new(env!("CARGO_BIN_EXE_showroom")),
        };
        // Its own process group, which `stop` ends as a whole.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let showroom = cmd
            .env("KUBECONFIG", &tc.kubeconfig)
            .arg("serve")
            .args(["--instance", tc.instance.name()])
            .arg("--snapshots")
            .arg(&snapshots)
            .args(["--sweep-schedule", "*/5 * * * * *"])
            .args(["--max-demos-per-user", &PER_USER.to_string()])
            // Port 0: the system picks a free one, and showroom logs which. A port found
            // free beforehand could be taken by then (`showroom dev` once lost that race
            // in a full run).
            .args(["--listen", "127.0.0.1:0"])
            .env("SHOWROOM_LOG_FORMAT", "json")
            .arg("--users")
            .arg(dir.path().join("users.yaml"))
            .args(["--leader-election", "false", "--namespace", &namespace])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("showroom serve");
        let deadline = Instant::now() + Duration::from_secs(60);
        let addr = loop {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            if let Some(a) = listening_on(&log) {
                break a;
            }
            assert!(
                Instant::now() < deadline,
                "showroom serve did not start listening; its log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        loop {
            let out = load::run(
                addr,
                1,
                Stop::Count(1),
                false,
                Arc::new(move |_| request("GET", addr, "/readyz", None, None)),
            )
            .await;
            if out.errors == 0 && !out.latencies.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "showroom serve did not become ready; see {}",
                dir.path().join("showroom.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let phases = Arc::new(Mutex::new(HashMap::new()));
        let p = phases.clone();
        // Backed off on errors, and ended with the world (`stop`): without either, once
        // the simulation was gone its watch retried at once, forever, and took a core
        // from every section after it (the real control plane's column of the full run
        // of 21:41: 0.98 of a core while idle).
        let stream = watcher(
            Api::<Demo>::all(tc.client.clone()),
            watcher::Config::default().labels(&tc.instance.selector()),
        )
        .default_backoff();
        let phase_watch = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let Ok(ev) = ev else { continue };
                let mut m = p.lock().unwrap();
                match ev {
                    watcher::Event::Apply(d) | watcher::Event::InitApply(d) => {
                        let phase = d
                            .status
                            .as_ref()
                            .and_then(|s| s.phase)
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default();
                        m.insert(d.metadata.name.unwrap_or_default(), phase);
                    }
                    watcher::Event::Delete(d) => {
                        m.remove(&d.metadata.name.unwrap_or_default());
                    }
                    _ => {}
                }
            }
        });
        World {
            tc,
            dir,
            showroom,
            addr,
            phases,
            phase_watch,
            starters,
            held: Vec::new(),
        }
    }

    fn count(&self, phase: &str) -> usize {
        self.phases
            .lock()
            .unwrap()
            .values()
            .filter(|p| *p == phase)
            .count()
    }

    fn total(&self) -> usize {
        self.phases.lock().unwrap().len()
    }

    async fn until(&self, what: &str, timeout: Duration, ok: impl Fn(&World) -> bool) {
        let deadline = Instant::now() + timeout;
        while !ok(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {} demos, {} Ready; showroom log: {}",
                self.total(),
                self.count("Ready"),
                self.dir.path().join("showroom.log").display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `n` demos for the holding users, at 50 concurrent, and waits until each
    /// is Ready or Failed (a provisioning timeout at 10,000 on this machine): (demos
    /// added, time taken, how many Failed).
    async fn fill(&mut self, to: usize) -> (usize, Duration, usize) {
        let from = self.held.len();
        let n = to - from;
        let addr = self.addr;
        // Demo k belongs to user k / PER_USER; the users take turns, so that the 50
        // starts in flight are of different users, as in use. (In order, each user's
        // five starts ran at once and raced for the same user slot: 1.3 refused slot
        // creates a demo, a double click's cost, measured 10,000 times.)
        let mut order: Vec<usize> = (from..to).collect();
        order.sort_by_key(|k| (k % PER_USER, k / PER_USER));
        let t = Instant::now();
        let out = load::run(
            addr,
            CONCURRENCY,
            Stop::Count(n),
            true,
            Arc::new(move |i| {
                let user = order[i] / PER_USER;
                // The longest idle time a sales user may ask for: a fill to 10,000
                // takes longer than the template's default, and demos that fall
                // asleep on the way would never all be Ready together.
                request(
                    "POST",
                    addr,
                    "/api/v1/demos",
                    Some(&user_token(user)),
                    Some(format!(
                        r#"{{"template": "{TEMPLATE}", "sleepAfterIdle": "2h"}}"#
                    )),
                )
            }),
        )
        .await;
        assert_eq!(out.errors, 0, "filling: {:?}", out.first_error);
        for (_, _, body) in &out.bodies {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            self.held
                .push(v["name"].as_str().unwrap_or_default().to_string());
        }
        // Every provisioning ends within the template's timeout, Ready or Failed: a
        // level whose fill fails some still finishes, and the table says how many.
        self.until(
            &format!("{to} demos Ready or Failed"),
            Duration::from_secs(3600),
            |w| w.count("Ready") + w.count("Failed") >= to,
        )
        .await;
        (n, t.elapsed(), self.count("Failed"))
    }

    /// `n` starts by users holding none, at 50 concurrent; then they are deleted again.
    async fn starts(&self, level: &mut Level, n: usize) -> Outcome {
        let addr = self.addr;
        let before = lists(&self.tc.client).await;
        let n = n.min(self.starters);
        let pid = self.showroom.id().to_string();
        let cpu = || (cpu_secs(&pid), cpu_secs("self"));
        let cpu0 = cpu();
        let out = load::run(
            addr,
            CONCURRENCY,
            Stop::Count(n),
            true,
            Arc::new(move |i| {
                request(
                    "POST",
                    addr,
                    "/api/v1/demos",
                    Some(&starter_token(i)),
                    Some(format!(r#"{{"template": "{TEMPLATE}"}}"#)),
                )
            }),
        )
        .await;
        let cpu1 = cpu();
        let per_start = |secs: f64| Duration::from_secs_f64(secs / n.max(1) as f64);
        level.start_cpu_showroom = per_start(cpu1.0 - cpu0.0);
        level.start_cpu_sim = per_start(cpu1.1 - cpu0.1);
        level.start_lists = lists(&self.tc.client).await - before;
        let names: Vec<String> = out
            .bodies
            .iter()
            .filter_map(|(_, _, b)| {
                let v: Value = serde_json::from_slice(b).ok()?;
                Some(v["name"].as_str()?.to_string())
            })
            .collect();
        let held = self.held.len();
        // Each started demo is deleted again once it is Ready, keeping the level.
        self.until("the measured starts Ready", Duration::from_secs(600), |w| {
            w.count("Ready") >= held + names.len()
        })
        .await;
        let names = Arc::new(names);
        let n2 = names.clone();
        let del = load::run(
            addr,
            CONCURRENCY,
            Stop::Count(names.len()),
            false,
            Arc::new(move |i| {
                request(
                    "DELETE",
                    addr,
                    &format!("/api/v1/demos/{}", n2[i]),
                    Some(ADMIN_TOKEN),
                    None,
                )
            }),
        )
        .await;
        assert_eq!(del.errors, 0, "deleting: {:?}", del.first_error);
        self.until("the measured starts gone", Duration::from_secs(600), |w| {
            w.total() <= held
        })
        .await;
        out
    }

    async fn reads(&self, level: &mut Level) {
        let addr = self.addr;
        let page = load::run(
            addr,
            1,
            Stop::Count(200),
            false,
            Arc::new(move |_| {
                request(
                    "GET",
                    addr,
                    "/api/v1/demos?all=true&limit=100",
                    Some(ADMIN_TOKEN),
                    None,
                )
            }),
        )
        .await;
        assert_eq!(page.errors, 0, "{:?}", page.first_error);
        level.page_p50 = page.quantile(0.5);
        let own = load::run(
            addr,
            1,
            Stop::Count(200),
            false,
            Arc::new(move |i| {
                request(
                    "GET",
                    addr,
                    "/api/v1/demos",
                    Some(&user_token(i % 20)),
                    None,
                )
            }),
        )
        .await;
        level.own_list_p50 = own.quantile(0.5);
        let held = Arc::new(self.held.clone());
        let get = load::run(
            addr,
            CONCURRENCY,
            Stop::Count(5000),
            false,
            Arc::new(move |i| {
                let name = &held[i % held.len()];
                request(
                    "GET",
                    addr,
                    &format!("/api/v1/demos/{name}"),
                    Some(ADMIN_TOKEN),
                    None,
                )
            }),
        )
        .await;
        assert_eq!(get.errors, 0, "{:?}", get.first_error);
        level.get_p99 = get.quantile(0.99);
    }

    /// A share link's landing page, against nginx serving its bytes (when installed).
    async fn landing(&self, level: &mut Level, seconds: u64) {
        let addr = self.addr;
        let owner = user_token(0);
        let demo = self.held[0].clone();
        let made = load::run(
            addr,
            1,
            Stop::Count(1),
            true,
            Arc::new(move |_| {
                request(
                    "POST",
                    addr,
                    &format!("/api/v1/demos/{demo}/share-links"),
                    Some(&owner),
                    Some("{}".into()),
                )
            }),
        )
        .await;
        let (_, code, body) = &made.bodies[0];
        let link: Value = serde_json::from_slice(body).unwrap_or_default();
        let Some(url) = link["url"].as_str().map(str::to_string) else {
            panic!(
                "no share link for {}: {code} {}",
                self.held[0],
                String::from_utf8_lossy(body)
            );
        };
        let path = url[url.find("/s/").unwrap()..].to_string();
        let p = path.clone();
        let page = load::run(
            addr,
            1,
            Stop::Count(1),
            true,
            Arc::new(move |_| request("GET", addr, &p, None, None)),
        )
        .await;
        let bytes = page.bodies[0].2.clone();
        assert_eq!(page.bodies[0].1, 200, "the landing page");
        // Rounds of one second each, showroom and nginx in turn: this host's speed
        // drifts by up to 3x within minutes, and a drift between two long runs, one
        // each, had been read as a change in the ratio.
        let nginx = Nginx::start(self.dir.path(), &bytes).await;
        let (mut ours, mut theirs) = (Tally::default(), Tally::default());
        for _ in 0..seconds {
            let p = path.clone();
            ours.add(
                load::run(
                    addr,
                    CONCURRENCY,
                    Stop::For(Duration::from_secs(1)),
                    false,
                    Arc::new(move |_| request("GET", addr, &p, None, None)),
                )
                .await,
            );
            if let Some(n) = &nginx {
                let a = n.addr;
                theirs.add(
                    load::run(
                        a,
                        CONCURRENCY,
                        Stop::For(Duration::from_secs(1)),
                        false,
                        Arc::new(move |_| request("GET", a, "/", None, None)),
                    )
                    .await,
                );
            }
        }
        assert_eq!(ours.errors, 0, "the landing page: {:?}", ours.first_error);
        level.landing_rps = ours.per_second();
        level.nginx_rps = (nginx.is_some() && theirs.errors == 0).then(|| theirs.per_second());
    }

    /// The in-process sweep (every 5 s): how long its plan took, and the LISTs the API
    /// server saw meanwhile; then `showroom sweep --dry-run`, timed from outside.
    async fn sweeps(&self, level: &mut Level) {
        let count = || metric(self.addr, "showroom_sweep_duration_seconds_count");
        let before = count().await.unwrap_or(0.0);
        // A sweep may be under way: wait for one to end, then measure the next whole one.
        let deadline = Instant::now() + Duration::from_secs(30);
        while count().await.unwrap_or(0.0) <= before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let lists_before = lists(&self.tc.client).await;
        let started = count().await.unwrap_or(0.0);
        while count().await.unwrap_or(0.0) <= started && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if count().await.unwrap_or(0.0) > started {
            level.sweep_lists = Some(lists(&self.tc.client).await - lists_before);
            level.sweep_plan = metric(self.addr, "showroom_sweep_plan_seconds")
                .await
                .map(Duration::from_secs_f64);
        }
        let lists_before = lists(&self.tc.client).await;
        let t = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_showroom"))
            .env("KUBECONFIG", &self.tc.kubeconfig)
            .arg("sweep")
            .args(["--instance", self.tc.instance.name()])
            .arg("--snapshots")
            .arg(self.dir.path().join("snapshots"))
            .arg("--dry-run")
            .output()
            .expect("showroom sweep");
        level.cli_sweep = t.elapsed();
        assert!(
            out.status.success(),
            "showroom sweep: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        level.cli_sweep_lists = lists(&self.tc.client).await - lists_before;
    }

    /// Everything at one level.
    pub async fn level(&mut self, demos: usize, starts: usize, landing_secs: u64) -> Level {
        let mut level = Level::default();
        if demos > self.held.len() {
            level.fill = Some(self.fill(demos).await);
        }
        self.idle(&mut level).await;
        let out = self.starts(&mut level, starts).await;
        level.start_p50 = out.quantile(0.5);
        level.start_p99 = out.quantile(0.99);
        level.start_errors = out.errors;
        self.reads(&mut level).await;
        self.landing(&mut level, landing_secs).await;
        self.sweeps(&mut level).await;
        if let Some(sim) = &self.tc.sim {
            let stats = sim.store.stats();
            let (n, bytes) = stats
                .iter()
                .fold((0, 0), |(n, b), (_, c, s)| (n + c, b + s));
            eprintln!(
                "the simulation holds {n} objects, {} MiB as JSON:",
                bytes / (1 << 20)
            );
            for (plural, count, size) in stats.iter().take(14) {
                eprintln!("  {plural:<28} {count:>7} {:>8} KiB", size / 1024);
            }
            let client = &self.tc.client;
            for (what, prefix, filter) in [
                ("LIST requests", "apiserver_request_total{", "verb=\"LIST\""),
                ("requests", "apiserver_request_total{", ""),
                (
                    "watchers closed for falling behind",
                    "apiserver_terminated_watchers_total{",
                    "",
                ),
            ] {
                let counts = by_resource(client, prefix, filter).await;
                let shown: Vec<String> = counts
                    .iter()
                    .take(24)
                    .map(|(r, n)| format!("{r}: {n}"))
                    .collect();
                eprintln!("{what} so far, by resource: {}", shown.join(", "));
            }
        }
        level.showroom_rss_mib = rss_mib(&self.showroom.id().to_string());
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.showroom.id()))
            .unwrap_or_default();
        let parts: Vec<&str> = status
            .lines()
            .filter(|l| {
                ["RssAnon:", "RssFile:", "Threads:"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .map(|l| l.trim())
            .collect();
        eprintln!("showroom at {demos} demos: {}", parts.join(", "));
        level.sim_rss_mib = self.tc.sim.as_ref().map(|_| rss_mib("self"));
        level
    }

    /// What showroom and the simulation cost while nobody asks anything of them.
    /// SHOWROOM_BENCH_HOLD=SECONDS waits that long first (to attach a profiler).
    async fn idle(&self, level: &mut Level) {
        if let Some(secs) = std::env::var("SHOWROOM_BENCH_HOLD")
            .ok()
            .and_then(|s| s.parse().ok())
        {
            eprintln!(
                "holding {secs} s: showroom is pid {}, the bench {}",
                self.showroom.id(),
                std::process::id()
            );
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
        let pid = self.showroom.id().to_string();
        let (s0, b0, t0) = (cpu_secs(&pid), cpu_secs("self"), Instant::now());
        tokio::time::sleep(Duration::from_secs(5)).await;
        let wall = t0.elapsed().as_secs_f64();
        level.idle_showroom_cores = (cpu_secs(&pid) - s0) / wall;
        level.idle_sim_cores = (cpu_secs("self") - b0) / wall;
    }

    /// The API server's own create round trip: one at a time, and 50 at once.
    pub async fn floors(&mut self) -> Floors {
        let ns = self.tc.namespace().await;
        let cms: Api<ConfigMap> = Api::namespaced(self.tc.client.clone(), &ns);
        let make = |i: usize| -> ConfigMap {
            serde_json::from_value(
                json!({"metadata": {"name": format!("floor-{i}")}, "data": {"k": "v"}}),
            )
            .unwrap()
        };
        let mut one = Vec::new();
        for i in 0..200 {
            let t = Instant::now();
            cms.create(&PostParams::default(), &make(i)).await.unwrap();
            one.push(t.elapsed());
        }
        one.sort();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(1000));
        let tasks: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let cms = cms.clone();
                let next = next.clone();
                tokio::spawn(async move {
                    let mut v = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= 1000 + 1000 {
                            return v;
                        }
                        let t = Instant::now();
                        let cm: ConfigMap = serde_json::from_value(
                            json!({"metadata": {"name": format!("floor-{i}")}, "data": {"k": "v"}}),
                        )
                        .unwrap();
                        cms.create(&PostParams::default(), &cm).await.unwrap();
                        v.push(t.elapsed());
                    }
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        let out = Outcome {
            latencies: all,
            errors: 0,
            first_error: None,
            elapsed: Duration::ZERO,
            bodies: vec![],
        };
        let _ = Api::<Namespace>::all(self.tc.client.clone())
            .delete(&ns, &Default::default())
            .await;
        Floors {
            create_median: one[one.len() / 2],
            create_p99_50: out.quantile(0.99),
        }
    }

    /// Stops `showroom serve` and whatever wraps it: showroom is asked to stop (a
    /// profiler wrapping it then writes its data and exits), and what is left of the
    /// process group after 30 s is killed. Killing only the wrapper
    /// (SHOWROOM_BENCH_WRAP) left showroom running after the bench.
    pub fn stop(mut self) {
        self.phase_watch.abort();
        let pgid = self.showroom.id().to_string();
        let _ = std::process::Command::new("pkill")
            .args(["-TERM", "-g", &pgid, "-x", "showroom"])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.showroom.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .status();
        let _ = self.showroom.wait();
    }
}

/// Requests and time summed over rounds.
#[derive(Default)]
struct Tally {
    answered: usize,
    elapsed: Duration,
    errors: usize,
    first_error: Option<String>,
}

impl Tally {
    fn add(&mut self, out: load::Outcome) {
        self.answered += out.latencies.len();
        self.elapsed += out.elapsed;
        self.errors += out.errors;
        self.first_error = self.first_error.take().or(out.first_error);
    }
    fn per_second(&self) -> f64 {
        self.answered as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// nginx serving `bytes` with as many workers as showroom has threads (the cores),
/// while this lives (None when nginx is not installed).
struct Nginx {
    child: std::process::Child,
    addr: SocketAddr,
}

impl Nginx {
    async fn start(dir: &Path, bytes: &[u8]) -> Option<Nginx> {
        let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())?;
        let root = dir.join("nginx");
        std::fs::create_dir_all(root.join("logs")).ok()?;
        std::fs::write(root.join("landing.html"), bytes).ok()?;
        let port = free_port();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let conf = format!(
            "worker_processes {workers};\npid {root}/nginx.pid;\nerror_log {root}/logs/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; keepalive_requests 1000000;\n\
               server {{ listen 127.0.0.1:{port}; root {root};\n\
                 location / {{ default_type text/html; try_files /landing.html =404; }} }} }}\n",
            root = root.display()
        );
        std::fs::write(root.join("nginx.conf"), conf).ok()?;
        let child = std::process::Command::new(nginx)
            .args(["-p"])
            .arg(&root)
            .args(["-c"])
            .arg(root.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let n = Nginx {
            child,
            addr: format!("127.0.0.1:{port}").parse().ok()?,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(n.addr).await.is_ok() {
                return Some(n);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, so that nginx stops its workers too (SIGKILL would leave them running).
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}
