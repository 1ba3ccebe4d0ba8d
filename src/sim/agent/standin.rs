//! Stand-in web apps: what a snapshot's app would serve, one small page per app of a
//! running vcluster, and the address book that maps the app's in-cluster Service name
//! (`<svc>-x-<vns>-x-<vcluster>.<namespace>.svc:<port>`) to where the page listens.
//! Only `showroom dev` and the tests give showroom's proxy this address book; a real
//! cluster's DNS does the same job.

use super::snapshots::App;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

struct Running {
    host: String,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a demo's app remembers (a shopping cart): it survives a pause, as data in
/// the vcluster does, and goes back to empty when the snapshot is restored.
#[derive(Default)]
struct Data {
    /// Which restore of the snapshot this data grew from.
    generation: u64,
    cart: Arc<AtomicU64>,
}

/// A vcluster's apps, as started, and where each is served.
struct Serving {
    apps: Vec<App>,
    running: Vec<Running>,
}

#[derive(Default)]
pub struct StandIns {
    /// (host namespace, vcluster) -> its running apps.
    apps: Mutex<HashMap<(String, String), Serving>>,
    addresses: Mutex<HashMap<String, SocketAddr>>,
    data: Mutex<HashMap<(String, String), Data>>,
}

/// The host Service the syncer makes for an app (`<svc>-x-<vns>-x-<vcluster>`).
pub fn host_service(app: &App, vcluster: &str) -> String {
    format!("{}-x-{}-x-{vcluster}", app.service, app.namespace)
}

/// Pod addresses handed out so far.
static POD_ADDRESSES: AtomicU32 = AtomicU32::new(0);

/// A listener for an app, at an address of its own, as each pod has its own IP: on
/// Linux all of 127.0.0.0/8 is the loopback, and the app's own port is free there.
/// (Each bind of port 0 on 127.0.0.1 searched the one port space the other apps and
/// every connection share: at 10,000 demos, 4% of the simulation's CPU was the
/// kernel's search.) A privileged port the process may not take: any port there.
/// Elsewhere (only 127.0.0.1 is a loopback on macOS): any port on 127.0.0.1.
async fn listen(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    use tokio::net::TcpListener;
    // In 127.64.0.1 onwards, 2^22 addresses before they come round again, from a
    // place of each process's own (tests run side by side).
    static FIRST: std::sync::LazyLock<u32> = std::sync::LazyLock::new(|| fastrand::u32(..));
    let n = FIRST.wrapping_add(POD_ADDRESSES.fetch_add(1, Ordering::Relaxed)) % (1 << 22) + 1;
    let ip = Ipv4Addr::new(127, 64 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
    match TcpListener::bind((ip, port)).await {
        Ok(l) => Ok(l),
        Err(_) => match TcpListener::bind((ip, 0)).await {
            Ok(l) => Ok(l),
            Err(_) => TcpListener::bind("127.0.0.1:0").await,
        },
    }
}

impl StandIns {
    /// Where `host:port` is served, when it is a stand-in app.
    pub fn resolve(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.addresses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&format!("{host}:{port}"))
            .copied()
    }

    /// The apps a vcluster runs, as they were started (None: not running).
    pub fn running_apps(&self, ns: &str, vcluster: &str) -> Option<Vec<App>> {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ns.to_string(), vcluster.to_string()))
            .map(|s| s.apps.clone())
    }

    pub fn running(&self, ns: &str, vcluster: &str) -> bool {
        self.apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&(ns.to_string(), vcluster.to_string()))
    }

    /// Starts the apps of a vcluster that has just come up (once). `generation` counts
    /// the restores of its snapshot: a new one starts from empty data.
    pub async fn start(
        &self,
        ns: &str,
        vcluster: &str,
        apps: &[App],
        generation: u64,
    ) -> std::io::Result<()> {
        if self.running(ns, vcluster) {
            return Ok(());
        }
        let cart = {
            let mut data = self.data.lock().unwrap_or_else(|p| p.into_inner());
            let d = data
                .entry((ns.to_string(), vcluster.to_string()))
                .or_default();
            if d.generation != generation {
                *d = Data {
                    generation,
                    cart: Arc::default(),
                };
            }
            d.cart.clone()
        };
        let mut started = Vec::new();
        for app in apps {
            let listener = listen(app.port).await?;
            let addr = listener.local_addr()?;
            let host = format!("{}.{ns}.svc:{}", host_service(app, vcluster), app.port);
            let title = format!("{ns}/{vcluster}");
            let cart = cart.clone();
            let task = tokio::spawn(async move {
                let _ = axum::serve(listener, page(title, cart)).await;
            });
            self.addresses
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(host.clone(), addr);
            started.push(Running { host, task });
        }
        self.apps.lock().unwrap_or_else(|p| p.into_inner()).insert(
            (ns.to_string(), vcluster.to_string()),
            Serving {
                apps: apps.to_vec(),
                running: started,
            },
        );
        Ok(())
    }

    /// Stops a vcluster's apps (it was paused or deleted).
    pub fn stop(&self, ns: &str, vcluster: &str) {
        let gone = self
            .apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(ns.to_string(), vcluster.to_string()));
        let mut book = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        for r in gone.into_iter().flat_map(|s| s.running) {
            book.remove(&r.host);
        }
    }

    /// Forgets a deleted vcluster's data.
    pub fn forget(&self, ns: &str, vcluster: &str) {
        self.stop(ns, vcluster);
        self.data
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(ns.to_string(), vcluster.to_string()));
    }

    /// Stops the apps of every vcluster for which `keep` says no, and forgets its data.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let gone: Vec<(String, String)> = self
            .apps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|(ns, vc)| !keep(ns, vc))
            .cloned()
            .collect();
        for (ns, vc) in gone {
            self.forget(&ns, &vc);
        }
    }
}

/// A small page naming the demo, standing in for the snapshot's real app: it keeps a
/// cart (`POST /cart` adds an item), so that a reset has something to undo.
fn page(title: String, cart: Arc<AtomicU64>) -> axum::Router {
    axum::Router::new().fallback(move |mut req: axum::extract::Request| {
        let title = title.clone();
        let cart = cart.clone();
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
                return (
                    axum::http::StatusCode::SWITCHING_PROTOCOLS,
                    [("connection", "upgrade"), ("upgrade", "echo")],
                )
                    .into_response();
            }
            if req.method() == axum::http::Method::POST && req.uri().path() == "/cart" {
                cart.fetch_add(1, Ordering::SeqCst);
                return axum::response::Redirect::to("/").into_response();
            }
            let items = cart.load(Ordering::SeqCst);
            let clean = |s: &str| s.replace(['<', '>', '&', '"'], "");
            let path = clean(req.uri().path());
            let cookies = clean(
                req.headers()
                    .get("cookie")
                    .and_then(|c| c.to_str().ok())
                    .unwrap_or(""),
            );
            axum::response::Html(format!(
                "<!doctype html><html><head><title>Stand-in app: {title}</title>\
                 <style>body{{font-family:sans-serif;margin:40px;background:#eef6ff}}</style></head><body>\
                 <h1>Stand-in demo app</h1><p id=\"demo\">vcluster {title}</p><p>path <code id=\"path\">{path}</code></p>\
                 <p>cookies seen by the app: <code id=\"cookies\">{cookies}</code></p>\
                 <p>items in the cart: <span id=\"cart\">{items}</span></p>\
                 <form method=\"post\" action=\"/cart\"><button id=\"add\">Add to cart</button></form>\
                 <a id=\"products\" href=\"/products\">Products</a></body></html>"
            ))
            .into_response()
        }
    })
}
