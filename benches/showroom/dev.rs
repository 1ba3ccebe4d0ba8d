//! `showroom dev` holding N demos: the whole product in one process (the simulation,
//! the agent and showroom), started the way the README starts it, filled through its
//! own API. Its RSS once every demo is Ready is what the performance issue asks to keep
//! under 1 GiB at 10,000 demos.

use super::load::{self, Stop, request};
use super::scale::rss_mib;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Filled {
    pub demos: usize,
    pub ready: usize,
    pub failed: usize,
    /// From the first start to every demo Ready or Failed.
    pub fill: Duration,
    pub rss_mib: f64,
}

/// Kills `showroom dev` when the measurement ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `showroom dev` (boot delay 0), starts `n` demos at 50 concurrent and waits
/// until each is Ready or Failed.
pub async fn fill(n: usize) -> Filled {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = std::fs::File::create(dir.path().join("dev.log")).expect("dev.log");
    let dev = Running(
        std::process::Command::new(env!("CARGO_BIN_EXE_showroom"))
            .arg("dev")
            .args(["--boot-delay", "0s"])
            // Port 0: the system picks a free one, and dev.json says which. A port found
            // free beforehand could be taken by then (once in a full run).
            .args(["--port", "0"])
            .arg("--state-dir")
            .arg(dir.path())
            .args(["--max-demos-per-user", &n.to_string()])
            .stdout(log.try_clone().expect("dev.log"))
            .stderr(log)
            .spawn()
            .expect("showroom dev"),
    );
    let dev_json = dir.path().join("dev.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let info: serde_json::Value = loop {
        if let Ok(s) = std::fs::read_to_string(&dev_json)
            && let Ok(v) = serde_json::from_str(&s)
        {
            break v;
        }
        // The log is in the message: the directory goes with the panic.
        assert!(
            Instant::now() < deadline,
            "showroom dev did not start in 60 s; its log:\n{}",
            std::fs::read_to_string(dir.path().join("dev.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let token: Arc<str> = info["salesToken"].as_str().expect("salesToken").into();
    let addr: SocketAddr = info["url"]
        .as_str()
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|a| a.parse().ok())
        .expect("dev.json's url");
    let t = Instant::now();
    let tk = token.clone();
    let out = load::run(
        addr,
        50,
        Stop::Count(n),
        false,
        Arc::new(move |_| {
            request(
                "POST",
                addr,
                "/api/v1/demos",
                Some(&tk),
                Some(r#"{"template": "web-shop"}"#.into()),
            )
        }),
    )
    .await;
    assert_eq!(out.errors, 0, "starts failed: {:?}", out.first_error);
    let deadline = Instant::now() + Duration::from_secs(900);
    let (ready, failed) = loop {
        let (ready, failed) = count(addr, &token).await;
        if ready + failed >= n || Instant::now() > deadline {
            break (ready, failed);
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let fill = t.elapsed();
    Filled {
        demos: n,
        ready,
        failed,
        fill,
        rss_mib: rss_mib(&dev.0.id().to_string()),
    }
}

/// (Ready, Failed) among the sales user's demos, read page by page through the API.
async fn count(addr: SocketAddr, token: &str) -> (usize, usize) {
    let (mut ready, mut failed) = (0, 0);
    let mut cont = String::new();
    loop {
        let path = format!("/api/v1/demos?limit=1000&continue={cont}");
        let tk: Arc<str> = token.into();
        let out = load::run(
            addr,
            1,
            Stop::Count(1),
            true,
            Arc::new(move |_| request("GET", addr, &path, Some(&tk), None)),
        )
        .await;
        let Some((_, 200, body)) = out.bodies.into_iter().next() else {
            return (ready, failed);
        };
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        for d in page["demos"].as_array().into_iter().flatten() {
            match d["phase"].as_str() {
                Some("Ready") => ready += 1,
                Some("Failed") => failed += 1,
                _ => {}
            }
        }
        match page["continue"].as_str() {
            Some(c) if !c.is_empty() => cont = c.to_string(),
            _ => return (ready, failed),
        }
    }
}
