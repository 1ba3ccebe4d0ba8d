//! `cargo bench --bench showroom`: showroom's own numbers, on the simulation and (when
//! `SHOWROOM_REALKUBE` names the control plane's binaries) on a real control plane, side
//! by side. The machine is shared and noisy: compare within a run.
//!
//! Sections (all by default; `-- starts` or `-- scale` for one; `--quick` for smaller
//! levels, `--levels=100,1000` for others):
//! - starts: a claim from a warm pool against a cold start;
//! - scale: `showroom serve` in its own process over 100, 1,000 and 10,000 demos;
//! - dev: `showroom dev` (everything in one process) filled to the largest level.
//!
//! Everything on the simulation runs first, the real control plane last (see `main`).

#[path = "../tests/common/mod.rs"]
#[allow(unused_macros, unused_imports)]
mod common;
#[path = "showroom/dev.rs"]
mod dev;
#[path = "showroom/load.rs"]
mod load;
#[path = "showroom/scale.rs"]
mod scale;

use common::TestCluster;
use common::harness::*;
use showroom::sim::agent::{App, Snapshot};
use std::time::{Duration, Instant};

// The bench process plays `showroom dev` (the simulation and the agent), so it uses the
// binary's allocator (src/main.rs): its RSS is then what `showroom dev` would hold.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    // A bare create on an idle simulation takes tens of microseconds: not "0.0 ms".
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

/// One row of the table: a measurement in each world.
struct Row {
    what: String,
    sim: String,
    real: String,
}

const SNAPSHOT: &str = "oci://example.test/snap/bench:1";

/// Median time from `POST /api/v1/demos` to the demo reading Ready through the API.
async fn start_to_ready(api: &Client, template: &str, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let d = api.start(&format!(r#"{{"template": "{template}"}}"#)).await;
        let name = d["name"].as_str().unwrap().to_string();
        if d["phase"] != "Ready" {
            api.wait_phase(&name, Some("Ready"), Duration::from_secs(300))
                .await;
        }
        times.push(t.elapsed());
        let _ = api.delete(&format!("/api/v1/demos/{name}")).await;
    }
    median(times)
}

/// Starts section: (claim median, cold median).
async fn starts(tc: TestCluster, n: usize) -> (Duration, Duration) {
    tc.snapshots.publish(
        SNAPSHOT,
        Snapshot {
            apps: vec![App {
                namespace: "shop".into(),
                service: "storefront".into(),
                port: 80,
            }],
            restore_time: Duration::ZERO,
            boot_time: Duration::ZERO,
        },
    );
    let mut cfg = test_config();
    cfg.max_demos_per_user = 1000;
    let cat = catalogue_of(vec![
        template("pooled", SNAPSHOT, &format!("warmPool: {{size: {n}}}")),
        template("cold", SNAPSHOT, ""),
    ]);
    let app = start_showroom_full(&tc, cfg, test_users(), cat).await;
    let carol = Client::new(&app, ADMIN);
    common::eventually(Duration::from_secs(300), "the pool ready", || async {
        let (_, v) = carol.get("/api/v1/pools").await;
        (v["pools"][0]["ready"].as_u64() == Some(n as u64)).then_some(())
    })
    .await;
    // Claims one after another, without waiting for the refill: each finds a member.
    let mut claims = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let d = carol.start(r#"{"template": "pooled"}"#).await;
        assert_eq!(d["fromPool"], true, "{d}");
        if d["phase"] != "Ready" {
            carol
                .wait_phase(
                    d["name"].as_str().unwrap(),
                    Some("Ready"),
                    Duration::from_secs(60),
                )
                .await;
        }
        claims.push(t.elapsed());
    }
    let cold = start_to_ready(&carol, "cold", n).await;
    app.stop().await;
    (median(claims), cold)
}

fn real_available() -> bool {
    showroom::sim::realkube::binaries_from_env()
        .unwrap_or_else(|e| panic!("{e}"))
        .is_some()
        || std::env::var_os("SHOWROOM_TEST_KUBECONFIG").is_some()
}

fn starts_count(quick: bool) -> usize {
    if quick { 3 } else { 5 }
}

/// The starts section on the simulation: (claim median, cold median).
async fn starts_sim(quick: bool) -> (Duration, Duration) {
    starts(TestCluster::sim().await, starts_count(quick)).await
}

/// The starts section on the real control plane, when there is one.
async fn starts_real(quick: bool) -> Option<(Duration, Duration)> {
    if !real_available() {
        return None;
    }
    let tc = TestCluster::real("bench").await.expect("a real cluster");
    Some(starts(tc, starts_count(quick)).await)
}

fn print_starts(quick: bool, sim: (Duration, Duration), real: Option<(Duration, Duration)>) {
    let n = starts_count(quick);
    let (real_claim, real_cold) = match real {
        Some((c, k)) => (ms(c), ms(k)),
        None => ("(no control plane)".into(), "(no control plane)".into()),
    };
    let rows = [
        Row {
            what: format!("start to Ready: claim from a Running warm pool (median of {n})"),
            sim: ms(sim.0),
            real: real_claim,
        },
        Row {
            what: format!("start to Ready: cold start, boot time 0 (median of {n})"),
            sim: ms(sim.1),
            real: real_cold,
        },
    ];
    println!("| measurement | simulation | real control plane |\n|---|---|---|");
    for r in rows {
        println!("| {} | {} | {} |", r.what, r.sim, r.real);
    }
}

fn mib(v: f64) -> String {
    format!("{v:.0} MiB")
}

fn per_s(v: f64) -> String {
    format!("{v:.0}/s")
}

/// The levels asked for (`--levels=100,1000`), or the default ones.
fn levels(quick: bool) -> Vec<usize> {
    let asked = std::env::args()
        .find_map(|a| a.strip_prefix("--levels=").map(str::to_string))
        .map(|l| {
            l.split(',')
                .map(|n| n.trim().parse().expect("--levels=N,N,..."))
                .collect()
        });
    match asked {
        Some(l) => l,
        None if quick => vec![20, 100, 400],
        None => vec![100, 1_000, 10_000],
    }
}

/// What the scale section measured on the simulation.
struct ScaleSim {
    levels: Vec<usize>,
    sim: Vec<scale::Level>,
    floors: scale::Floors,
    measured_starts: usize,
    landing_secs: u64,
}

async fn scale_sim(quick: bool) -> ScaleSim {
    // `--levels=100,1000` picks other levels (to look at one change quickly).
    let levels = levels(quick);
    let measured_starts = if quick { 100 } else { 500 };
    let landing_secs = if quick { 2 } else { 3 };
    let top = *levels.last().unwrap();
    eprintln!("scale: simulation, levels {levels:?}");
    let mut w = scale::World::start(TestCluster::sim().await, top, measured_starts).await;
    let floors = w.floors().await;
    let mut sim = Vec::new();
    for &l in &levels {
        let t = Instant::now();
        sim.push(w.level(l, measured_starts, landing_secs).await);
        eprintln!("scale: simulation at {l} done in {:.0?}", t.elapsed());
    }
    w.stop();
    ScaleSim {
        levels,
        sim,
        floors,
        measured_starts,
        landing_secs,
    }
}

/// The scale section's column for the real control plane (at the first level).
async fn scale_real(s: &ScaleSim) -> Option<(scale::Level, scale::Floors)> {
    if !real_available() {
        return None;
    }
    let first = s.levels[0];
    let landing_secs = s.landing_secs;
    eprintln!("scale: real control plane at {first}");
    // A failure there (the control plane not starting) must not lose the simulation's
    // numbers: the column then says it is missing.
    let run = tokio::spawn(async move {
        let tc = TestCluster::real("scale").await.expect("a real cluster");
        let mut w = scale::World::start(tc, first, first).await;
        let floors = w.floors().await;
        let l = w.level(first, first, landing_secs).await;
        w.stop();
        (l, floors)
    });
    match run.await {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("scale: the real control plane's column is missing: {e}");
            None
        }
    }
}

fn print_scale(
    levels: &[usize],
    sim: &[scale::Level],
    floors: &scale::Floors,
    real: Option<&(scale::Level, scale::Floors)>,
    measured: usize,
) {
    let first = levels[0];
    let last = *levels.last().unwrap();
    print!("| measurement |");
    for l in levels {
        print!(" {l} demos |");
    }
    println!(" {last} ÷ {first} | real control plane, {first} demos | floor (simulation) |");
    println!("|---|{}---|---|---|", "---|".repeat(levels.len()));
    let row =
        |what: &str, f: &dyn Fn(&scale::Level) -> String, ratio: Option<f64>, floor: String| {
            print!("| {what} |");
            for l in sim {
                print!(" {} |", f(l));
            }
            let ratio = ratio.map_or("".into(), |r| format!("{r:.2}×"));
            let real = real.map_or("(no control plane)".into(), |(l, _)| f(l));
            println!(" {ratio} | {real} | {floor} |");
        };
    let r = |f: &dyn Fn(&scale::Level) -> f64| {
        let a = f(&sim[0]);
        (a > 0.0).then(|| f(sim.last().unwrap()) / a)
    };
    let secs = |d: Duration| d.as_secs_f64();
    row(
        &format!("start → 202, p50 ({measured} starts, 50 concurrent)"),
        &|l| ms(l.start_p50),
        r(&|l| secs(l.start_p50)),
        format!("bare create {} (one at a time)", ms(floors.create_median)),
    );
    row(
        "start → 202, p99",
        &|l| ms(l.start_p99),
        r(&|l| secs(l.start_p99)),
        format!(
            "bare create at 50 concurrent, p99 {}",
            ms(floors.create_p99_50)
        ),
    );
    row(
        "start errors",
        &|l| l.start_errors.to_string(),
        None,
        String::new(),
    );
    row(
        "CPU per start while they run: showroom / bench process (simulation)",
        &|l| format!("{} / {}", ms(l.start_cpu_showroom), ms(l.start_cpu_sim)),
        None,
        "provisioning the demos started so far runs meanwhile and counts".into(),
    );
    row(
        "LIST requests during the measured starts",
        &|l| l.start_lists.to_string(),
        None,
        String::new(),
    );
    row(
        "`GET /api/v1/demos?all=true&limit=100` (a page), p50",
        &|l| ms(l.page_p50),
        r(&|l| secs(l.page_p50)),
        String::new(),
    );
    row(
        "`GET /api/v1/demos` (a user's own), p50",
        &|l| ms(l.own_list_p50),
        r(&|l| secs(l.own_list_p50)),
        String::new(),
    );
    row(
        "`GET /api/v1/demos/{name}`, p99 at 50 concurrent",
        &|l| ms(l.get_p99),
        r(&|l| secs(l.get_p99)),
        String::new(),
    );
    row(
        "share landing page, requests/s at 50 concurrent (1 s rounds, in turn with nginx)",
        &|l| per_s(l.landing_rps),
        r(&|l| l.landing_rps),
        String::new(),
    );
    row(
        "nginx serving the same bytes (workers = cores), requests/s",
        &|l| l.nginx_rps.map_or("(no nginx)".into(), per_s),
        None,
        String::new(),
    );
    row(
        "idle CPU after the fill (5 s): showroom, cores",
        &|l| format!("{:.3}", l.idle_showroom_cores),
        None,
        String::new(),
    );
    row(
        "idle CPU after the fill: bench process (simulation, agent), cores",
        &|l| format!("{:.3}", l.idle_sim_cores),
        None,
        String::new(),
    );
    row(
        "landing page ÷ nginx",
        &|l| {
            l.nginx_rps
                .map_or("".into(), |n| format!("{:.2}", l.landing_rps / n))
        },
        None,
        String::new(),
    );
    row(
        "showroom serve RSS (its own process)",
        &|l| mib(l.showroom_rss_mib),
        r(&|l| l.showroom_rss_mib),
        String::new(),
    );
    row(
        "simulation RSS (the bench process: simulation, agent, load generator)",
        &|l| l.sim_rss_mib.map_or("—".into(), mib),
        None,
        String::new(),
    );
    row(
        "in-process sweep: plan time (from the caches)",
        &|l| l.sweep_plan.map_or("(no sweep seen)".into(), ms),
        None,
        String::new(),
    );
    row(
        "in-process sweep: LIST requests during one sweep",
        &|l| l.sweep_lists.map_or("—".into(), |n| n.to_string()),
        None,
        String::new(),
    );
    row(
        "`showroom sweep --dry-run` (a fresh process), wall time",
        &|l| ms(l.cli_sweep),
        r(&|l| secs(l.cli_sweep)),
        String::new(),
    );
    row(
        "`showroom sweep --dry-run`: LIST requests (pages of 500)",
        &|l| l.cli_sweep_lists.to_string(),
        None,
        String::new(),
    );
    row(
        "fill to this level: demos created → all Ready (50 concurrent)",
        &|l| {
            l.fill.map_or("—".into(), |(n, d, failed)| {
                let failed = if failed > 0 {
                    format!("; {failed} Failed (provisioning timeout)")
                } else {
                    String::new()
                };
                format!(
                    "{n} in {:.1} s ({:.0}/s){failed}",
                    d.as_secs_f64(),
                    n as f64 / d.as_secs_f64()
                )
            })
        },
        None,
        String::new(),
    );
    let total: Duration = sim.iter().filter_map(|l| l.fill.map(|f| f.1)).sum();
    let failed = sim.last().and_then(|l| l.fill).map_or(0, |f| f.2);
    println!(
        "\n0 → {last} demos created and Ready or Failed (the fills' sum): {:.1} s; {failed} Failed",
        total.as_secs_f64()
    );
    if let Some((_, f)) = real {
        println!(
            "real control plane floor: bare create {} one at a time, p99 {} at 50 concurrent",
            ms(f.create_median),
            ms(f.create_p99_50)
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = |s: &str| {
        let named: Vec<&String> = args
            .iter()
            .skip(1)
            .filter(|a| !a.starts_with("--"))
            .collect();
        named.is_empty() || named.iter().any(|a| *a == s)
    };
    // Everything on the simulation first, then the real control plane: once up, it
    // runs until the bench ends (kube-apiserver, etcd, kube-controller-manager and the
    // agent's node for them), and it took CPU from what came after it. In the full
    // runs, `showroom dev` to 10,000 took 150 to 200 s behind it, 104 to 122 s alone.
    let starts = if only("starts") {
        Some(starts_sim(quick).await)
    } else {
        None
    };
    let scaled = if only("scale") {
        Some(scale_sim(quick).await)
    } else {
        None
    };
    if only("dev") {
        dev_section(quick).await;
    }
    if let Some(sim) = starts {
        let real = starts_real(quick).await;
        print_starts(quick, sim, real);
    }
    if let Some(s) = scaled {
        let real = scale_real(&s).await;
        print_scale(
            &s.levels,
            &s.sim,
            &s.floors,
            real.as_ref(),
            s.measured_starts,
        );
    }
}

/// `showroom dev` filled to the largest level: the RSS of the one process.
async fn dev_section(quick: bool) {
    let n = *levels(quick).last().expect("a level");
    eprintln!("dev: showroom dev with {n} demos");
    let f = dev::fill(n).await;
    println!();
    println!("| `showroom dev` (one process: simulation, agent, showroom) | {n} demos |");
    println!("|---|---|");
    println!(
        "| started → all Ready or Failed (50 concurrent) | {:.1} s ({:.0}/s) |",
        f.fill.as_secs_f64(),
        f.demos as f64 / f.fill.as_secs_f64()
    );
    println!("| Ready / Failed | {} / {} |", f.ready, f.failed);
    println!("| RSS | {:.0} MiB |", f.rss_mib);
}
