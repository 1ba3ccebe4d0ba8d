//! A closed-loop HTTP load generator, as oha and wrk are: `concurrency` keep-alive
//! connections, each sending its next request as soon as the last one is answered.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// When a run ends.
#[derive(Clone, Copy)]
pub enum Stop {
    /// After this many requests in all.
    Count(usize),
    /// After this long.
    For(Duration),
}

/// Builds request number `i`.
pub type MakeRequest = Arc<dyn Fn(usize) -> Request<Full<Bytes>> + Send + Sync>;

pub struct Outcome {
    /// Of every answered request, in no order.
    pub latencies: Vec<Duration>,
    /// Answers that were not 2xx or 3xx, or no answer; with the first of them.
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    /// The bodies of the answers, if asked for (request number, status, body).
    pub bodies: Vec<(usize, u16, Bytes)>,
}

impl Outcome {
    /// The q-quantile of the latencies (0.5: median, 0.99: p99).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }
}

/// Runs the load on its own two threads, as oha or wrk would in their own process: the
/// bench's runtime also runs the simulation, whose controllers would otherwise delay the
/// moment an answer is noticed, and the latency would count that wait as showroom's.
pub async fn run(
    addr: SocketAddr,
    concurrency: usize,
    stop: Stop,
    keep_bodies: bool,
    make: MakeRequest,
) -> Outcome {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("the load generator's runtime");
        let _ = tx.send(rt.block_on(run_here(addr, concurrency, stop, keep_bodies, make)));
    });
    rx.await.expect("the load generator ended")
}

async fn run_here(
    addr: SocketAddr,
    concurrency: usize,
    stop: Stop,
    keep_bodies: bool,
    make: MakeRequest,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let make = make.clone();
            tokio::spawn(async move {
                let mut out = Outcome {
                    latencies: Vec::new(),
                    errors: 0,
                    first_error: None,
                    elapsed: Duration::ZERO,
                    bodies: Vec::new(),
                };
                let mut sender = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let done = match stop {
                        Stop::Count(n) => i >= n,
                        Stop::For(d) => start.elapsed() >= d,
                    };
                    if done {
                        break;
                    }
                    if sender.is_none() {
                        sender = connect(addr).await;
                    }
                    let Some(s) = sender.as_mut() else {
                        out.errors += 1;
                        out.first_error
                            .get_or_insert_with(|| format!("cannot connect to {addr}"));
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let t = Instant::now();
                    let answer = match s.send_request(make(i)).await {
                        Ok(res) => {
                            let status = res.status().as_u16();
                            match res.into_body().collect().await {
                                Ok(b) => Ok((status, b.to_bytes())),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    let took = t.elapsed();
                    match answer {
                        Ok((status, body)) => {
                            out.latencies.push(took);
                            if status >= 400 {
                                out.errors += 1;
                                out.first_error.get_or_insert_with(|| {
                                    format!("{status}: {}", String::from_utf8_lossy(&body))
                                });
                            }
                            if keep_bodies {
                                out.bodies.push((i, status, body));
                            }
                        }
                        Err(e) => {
                            out.errors += 1;
                            out.first_error.get_or_insert(e);
                            sender = None;
                        }
                    }
                }
                out
            })
        })
        .collect();
    let mut all = Outcome {
        latencies: Vec::new(),
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        bodies: Vec::new(),
    };
    for w in workers {
        if let Ok(o) = w.await {
            all.latencies.extend(o.latencies);
            all.errors += o.errors;
            if all.first_error.is_none() {
                all.first_error = o.first_error;
            }
            all.bodies.extend(o.bodies);
        }
    }
    // In request order: request i's answer is bodies[i] when all were kept (the scale
    // bench knows whose demo request i made; workers finish in any order).
    all.bodies.sort_by_key(|b| b.0);
    all.elapsed = start.elapsed();
    all
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Option<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    Some(sender)
}

/// A request with a bearer token and, for a body, JSON.
pub fn request(
    method: &str,
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Request<Full<Bytes>> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    b.body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("a request")
}
