//! Wiring: the caches, the HTTP server, the controller, the activity flusher and the
//! in-process cron sweep, started together and stopped together.

use crate::cluster::cache::Caches;
use crate::cluster::controller;
use crate::cluster::crd::{Demo, Instance};
use crate::cluster::leader::{Election, LeaderConfig};
use crate::cluster::pool;
use crate::cluster::slots::Slots;
use crate::cluster::sweeper::{self, SweepOptions};
use crate::domain::template::Catalogue;
use crate::domain::users::Users;
use crate::metrics::Metrics;
use crate::web::proxy::UpstreamOverride;
use crate::web::{self, AppState, Limits, activity::ActivityTracker};
use anyhow::Context;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, CustomResourceExt};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// This installation's name: it sees and touches only Demos and namespaces labelled
    /// with it, so several can share a host cluster.
    pub instance: Instance,
    /// Where the dev and test worlds serve demo apps (see `web::proxy`); None in
    /// production, where cluster DNS resolves the entrypoint Services.
    pub upstream_override: Option<UpstreamOverride>,
    /// Cron expression for the in-process sweep (5 or 6 fields); None disables it.
    pub sweep_schedule: Option<String>,
    pub sweep: SweepOptions,
    pub activity_interval: Duration,
    pub max_demos_per_user: u32,
    /// The most demos running at once on the cluster, warm-pool members included; a
    /// sleeping demo does not count (0: no ceiling).
    pub max_running_demos: u32,
    /// showroom's own namespace: the slot Leases live there (and the leader Lease).
    pub namespace: String,
    /// Base URL of the UI and share links; `http://<listen address>` when None.
    pub public_url: Option<String>,
    /// Host[:port] under which each share link gets its own proxy host
    /// (`<link>.<share-domain>`); `localhost:<port>` when None.
    pub share_domain: Option<String>,
    /// Signs session cookies; random (sessions end with the process) when None.
    pub session_key: Option<Vec<u8>>,
    /// One-click sign-in as `sales` or `admin` (showroom dev only).
    pub dev_login: bool,
    pub sso: crate::web::Sso,
    /// Elect one leader among replicas; None: this process always leads.
    pub leader: Option<LeaderConfig>,
    /// Announce a sleep or deletion this long before it happens.
    pub notice_lead: chrono::Duration,
    /// Where to post expiry notices (Slack-compatible); None: status and UI only.
    pub notice_webhook: Option<String>,
    /// The vendor's brand on prospect pages.
    pub brand: Arc<crate::domain::brand::Brand>,
}

impl Config {
    /// Defaults for a listener; the caller sets what it needs.
    pub fn new(listen: SocketAddr) -> Self {
        Config {
            listen,
            instance: Instance::default(),
            upstream_override: None,
            sweep_schedule: None,
            sweep: SweepOptions::default(),
            activity_interval: Duration::from_secs(30),
            max_demos_per_user: 5,
            max_running_demos: 0,
            namespace: "default".into(),
            public_url: None,
            share_domain: None,
            session_key: None,
            dev_login: false,
            sso: Default::default(),
            leader: None,
            notice_lead: chrono::Duration::minutes(15),
            notice_webhook: None,
            brand: Default::default(),
        }
    }
}

/// Accepts classic 5-field cron (`*/5 * * * *`) as well as the `cron` crate's 6/7 fields.
pub fn parse_schedule(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    let full = if fields == 5 {
        format!("0 {expr}")
    } else {
        expr.to_string()
    };
    cron::Schedule::from_str(&full).map_err(|e| format!("invalid cron schedule {expr:?}: {e}"))
}

pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    shutdown: tokio::sync::watch::Sender<bool>,
    server: JoinHandle<()>,
    controller: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
    election: Option<Election>,
}

impl Running {
    /// Graceful stop: stop accepting, finish in-flight requests and reconciles.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.server).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.controller).await;
        for t in self.background {
            t.abort();
        }
        // Hand the lease over at once instead of making the others wait for it to expire.
        if let Some(e) = self.election {
            e.release().await;
        }
    }

    /// Abrupt stop, as a crash or SIGKILL would leave things (for tests).
    pub fn kill(self) {
        self.server.abort();
        self.controller.abort();
        for t in self.background {
            t.abort();
        }
        if let Some(e) = self.election {
            e.abandon();
        }
    }

    pub async fn wait(self) {
        let _ = self.server.await;
    }
}

pub async fn start(
    client: Client,
    catalogue: Arc<Catalogue>,
    users: Arc<Users>,
    cfg: Config,
) -> anyhow::Result<Running> {
    let schedule = cfg
        .sweep_schedule
        .as_deref()
        .map(parse_schedule)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::default());
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut background = Vec::new();

    // The caches every read is served from, and the controller and the sweep work from.
    let (caches, tasks) = Caches::start(&client, &cfg.namespace, &cfg.instance, catalogue.clone());
    background.extend(tasks);
    let ready = Arc::new(web::health::Readiness::default());
    background.push(tokio::spawn(watch_readiness(
        client.clone(),
        cfg.namespace.clone(),
        caches.clone(),
        ready.clone(),
    )));
    let slots = Slots {
        client: client.clone(),
        namespace: cfg.namespace.clone(),
        instance: cfg.instance.clone(),
        cache: Some(caches.slots.clone()),
    };
    let activity = ActivityTracker::new(
        client.clone(),
        caches.demos.store().clone(),
        cfg.activity_interval,
    );
    background.push(tokio::spawn(activity.clone().flush_loop()));

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let public = cfg
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let share_scheme = if public.starts_with("https://") {
        "https"
    } else {
        "http"
    }
    .to_string();
    let share_suffix = cfg
        .share_domain
        .clone()
        .unwrap_or_else(|| format!("localhost:{}", addr.port()));
    let state = AppState::new(web::Shared {
        client: client.clone(),
        demos: caches.demos.clone(),
        catalogue: catalogue.clone(),
        users,
        metrics: metrics.clone(),
        activity,
        limits: Arc::new(Limits {
            max_demos_per_user: cfg.max_demos_per_user,
            max_running_demos: cfg.max_running_demos,
        }),
        ready,
        slots: slots.clone(),
        urls: Arc::new(web::Urls {
            public: public.trim_end_matches('/').to_string(),
            share_scheme,
            share_suffix,
        }),
        session_key: cfg.session_key.as_deref().map_or_else(
            web::session::SessionKey::random,
            web::session::SessionKey::new,
        ),
        dev_login: cfg.dev_login,
        sso: Arc::new(cfg.sso.clone()),
        share_guard: Arc::new(web::share::FailureLimiter::new(
            20,
            Duration::from_secs(300),
        )),
        proxy: Arc::new(web::proxy::Upstreams::new(cfg.upstream_override.clone())),
        instance: cfg.instance.clone(),
        brand: cfg.brand.clone(),
        estimates: Default::default(),
    });

    // Every replica serves; only the leader runs the controller, the sweeps and the pools.
    let election = match &cfg.leader {
        Some(lc) => Some(Election::start(client.clone(), lc).await?),
        None => None,
    };
    let work = LeaderWork {
        ctx: Arc::new({
            let mut ctx = controller::Context::new(
                client.clone(),
                cfg.instance.clone(),
                catalogue.clone(),
                metrics.clone(),
                slots.clone(),
                caches.demos.clone(),
            );
            ctx.notice_lead = cfg.notice_lead;
            ctx.notifier = match &cfg.notice_webhook {
                Some(url) => Some(Arc::new(crate::cluster::notifier::Notifier::new(
                    url,
                    metrics.clone(),
                )?)),
                None => None,
            };
            ctx
        }),
        schedule,
        sweep: cfg.sweep.clone(),
        caches: caches.clone(),
        capacity: cfg.max_running_demos,
    };
    let is_leader = election.as_ref().map(|e| e.is_leader.clone());
    let controller = tokio::spawn(supervise(work, is_leader, shutdown_rx.clone()));

    let router = web::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let mut rx = shutdown_rx;
    let server = tokio::spawn(async move {
        let graceful = async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(graceful)
            .await
        {
            tracing::error!(error = %e, "http server stopped");
        }
    });
    tracing::info!(%addr, "showroom listening");
    Ok(Running {
        addr,
        state,
        shutdown,
        server,
        controller,
        background,
        election,
    })
}

struct LeaderWork {
    ctx: Arc<controller::Context>,
    schedule: Option<cron::Schedule>,
    sweep: SweepOptions,
    /// What the controller, the sweeps and the pools work from.
    caches: Caches,
    capacity: u32,
}

/// Runs the controller and the sweep schedule while this replica leads (always, when
/// there is no election), and stops them when it no longer does.
async fn supervise(
    work: LeaderWork,
    is_leader: Option<watch::Receiver<bool>>,
    mut shutdown: watch::Receiver<bool>,
) {
    // Without an election this replica always leads; the sender lives as long as we do.
    let (_always, always_rx) = watch::channel(true);
    let mut is_leader = is_leader.unwrap_or(always_rx);
    let metrics = work.ctx.metrics.clone();
    loop {
        tokio::select! {
            r = is_leader.wait_for(|l| *l) => if r.is_err() { return },
            _ = shutdown.wait_for(|s| *s) => return,
        }
        // The controller starts from a synced cache: everything in it is reconciled once.
        tokio::select! {
            _ = work.caches.wait_until_ready() => {},
            _ = shutdown.wait_for(|s| *s) => return,
        }
        tracing::info!("leading: running the controller and the sweep schedule");
        metrics.leader.set(1);
        let (stop, stop_rx) = watch::channel(false);
        let mut rx = stop_rx.clone();
        let controller = tokio::spawn(controller::run(work.ctx.clone(), async move {
            let _ = rx.wait_for(|s| *s).await;
        }));
        let sweeps = work.schedule.clone().map(|s| {
            tokio::spawn(sweep_loop(
                work.ctx.clone(),
                work.caches.clone(),
                s,
                work.sweep.clone(),
            ))
        });
        let pools = tokio::spawn(pool::run(pool::Pools {
            client: work.ctx.client.clone(),
            instance: work.ctx.instance.clone(),
            catalogue: work.ctx.catalogue.clone(),
            cache: work.caches.demos.clone(),
            slot_cache: work.caches.slots.clone(),
            slots: work.ctx.slots.clone(),
            capacity: work.capacity,
            metrics: work.ctx.metrics.clone(),
            fresh: Default::default(),
        }));
        let saves = tokio::spawn(crate::cluster::saving::run(Arc::new(
            crate::cluster::saving::Saver {
                ctx: work.ctx.clone(),
                demos: work.caches.demos.clone(),
                namespace: work.ctx.slots.namespace.clone(),
            },
        )));
        tokio::select! {
            _ = is_leader.wait_for(|l| !*l) => tracing::warn!("lost the leader lease: stopping the controller and the sweeps"),
            _ = shutdown.wait_for(|s| *s) => {}
        }
        let _ = stop.send(true);
        // In-flight reconciles finish; nothing new starts.
        let _ = tokio::time::timeout(Duration::from_secs(10), controller).await;
        if let Some(t) = sweeps {
            t.abort();
        }
        pools.abort();
        saves.abort();
        metrics.leader.set(0);
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn sweep_loop(
    ctx: Arc<controller::Context>,
    caches: Caches,
    schedule: cron::Schedule,
    opts: SweepOptions,
) {
    for next in schedule.upcoming(chrono::Utc) {
        let wait = (next - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        tokio::time::sleep(wait).await;
        let items = sweeper::sweep_cached(
            &ctx.client,
            &caches,
            &ctx.instance,
            &ctx.catalogue,
            &opts,
            &ctx.metrics,
        )
        .await;
        tracing::debug!(actions = items.len(), "scheduled sweep done");
    }
}

/// Marks the replica ready once the Demo cache has synced. Until then it finds out why
/// not, and says so in the log and in `/readyz`: most often, the Demo CRD is missing.
async fn watch_readiness(
    client: Client,
    namespace: String,
    caches: Caches,
    ready: Arc<web::health::Readiness>,
) {
    let probe = async {
        let saved: Api<crate::cluster::crd::DemoTemplate> =
            Api::namespaced(client.clone(), &namespace);
        let demos: Api<Demo> = Api::all(client);
        let mut last_logged: Option<(String, std::time::Instant)> = None;
        loop {
            let one = kube::api::ListParams::default().limit(1);
            let why = match demos.list(&one).await {
                Ok(_) => match saved.list(&one).await {
                    Err(e) => why_not_listed(
                        e,
                        "DemoTemplate",
                        "demotemplates.showroom.dev",
                        &format!(" in {namespace}"),
                    ),
                    Ok(_) => "waiting for the caches to sync".to_string(),
                },
                Err(e) => why_not_listed(e, "Demo", "demos.showroom.dev", ""),
            };
            let repeat = last_logged
                .as_ref()
                .is_some_and(|(w, at)| *w == why && at.elapsed() < Duration::from_secs(60));
            if !repeat && !why.starts_with("waiting") {
                tracing::error!(reason = %why, "not ready");
                last_logged = Some((why.clone(), std::time::Instant::now()));
            }
            ready.not_ready(why);
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    };
    tokio::select! {
        _ = caches.wait_until_ready() => {
            ready.set_ready();
            tracing::info!("ready: the caches have synced");
        },
        _ = probe => {}
    }
}

/// Why listing a kind failed, as the log and `/readyz` say it.
fn why_not_listed(e: kube::Error, kind: &str, crd: &str, place: &str) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 => format!(
            "the {kind} CRD ({crd}) is not installed in this cluster; \
             install it with `showroom crd | kubectl apply -f -` (or `kubectl apply -k deploy/`)"
        ),
        kube::Error::Api(s) if s.code == 403 => format!(
            "not allowed to list {kind}s{place} ({}); check showroom's RBAC (deploy/base/rbac.yaml)",
            s.message
        ),
        e => format!("cannot reach the Kubernetes API: {e}"),
    }
}

/// Installs (or updates) the CRDs (Demo, DemoTemplate) and waits until they are
/// established.
pub async fn install_crd(client: &Client) -> anyhow::Result<()> {
    use crate::cluster::crd::DemoTemplate;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in [Demo::crd(), DemoTemplate::crd()] {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(
            &name,
            &PatchParams::apply("showroom").force(),
            &Patch::Apply(&crd),
        )
        .await
        .with_context(|| format!("installing the CRD {name}"))?;
        let established = kube::runtime::wait::await_condition(
            crds.clone(),
            &name,
            kube::runtime::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("waiting for the CRD {name}"))??;
    }
    Ok(())
}
