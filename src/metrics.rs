//! Prometheus metrics: what an operator graphs and alerts on.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Mutex<Registry>,
    pub demos: Family<Labels, Gauge>,
    pub provisioning_seconds: Histogram,
    pub wake_seconds: Histogram,
    pub sweep_seconds: Histogram,
    pub sweep_actions: Family<Labels, Counter>,
    pub lifecycle_actions: Family<Labels, Counter>,
    pub api_errors: Family<Labels, Counter>,
    pub leader: Gauge,
    /// Seconds the last in-process sweep took to plan (from the caches).
    pub sweep_plan_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub share_link_visits: Counter,
    pub notices: Family<Labels, Counter>,
    pub pool_size: Family<Labels, Gauge>,
    pub pool_ready: Family<Labels, Gauge>,
    pub pool_claims: Family<Labels, Counter>,
    pub pool_misses: Family<Labels, Counter>,
    pub capacity_refusals: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut r = Registry::with_prefix("showroom");
        let demos = Family::<Labels, Gauge>::default();
        r.register("demos", "Demos by phase and template", demos.clone());
        let provisioning_seconds = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        r.register(
            "provisioning_duration_seconds",
            "From creation to Ready",
            provisioning_seconds.clone(),
        );
        let wake_seconds = Histogram::new(exponential_buckets(0.5, 2.0, 12));
        r.register(
            "wake_duration_seconds",
            "From wake request to Ready",
            wake_seconds.clone(),
        );
        let sweep_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        r.register(
            "sweep_duration_seconds",
            "Duration of one cleanup sweep",
            sweep_seconds.clone(),
        );
        let sweep_plan_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register(
            "sweep_plan_seconds",
            "How long the last in-process sweep took to plan, from the caches",
            sweep_plan_seconds.clone(),
        );
        let sweep_actions = Family::<Labels, Counter>::default();
        r.register(
            "sweep_actions",
            "Actions taken by the sweep, by kind",
            sweep_actions.clone(),
        );
        let lifecycle_actions = Family::<Labels, Counter>::default();
        r.register(
            "lifecycle_actions",
            "Sleeps, deletions and failures decided by the controller",
            lifecycle_actions.clone(),
        );
        let api_errors = Family::<Labels, Counter>::default();
        r.register(
            "api_errors",
            "JSON API error responses, by status code",
            api_errors.clone(),
        );
        let leader = Gauge::default();
        r.register(
            "leader",
            "1 while this replica runs the controller and the sweeps",
            leader.clone(),
        );
        let share_link_visits = Counter::default();
        r.register(
            "share_link_visits",
            "Share links opened by prospects",
            share_link_visits.clone(),
        );
        let notices = Family::<Labels, Counter>::default();
        r.register(
            "notices",
            "Expiry notices posted to the webhook, by result",
            notices.clone(),
        );
        let pool_size = Family::<Labels, Gauge>::default();
        r.register(
            "pool_size",
            "Warm-pool size wanted, by template",
            pool_size.clone(),
        );
        let pool_ready = Family::<Labels, Gauge>::default();
        r.register(
            "pool_ready",
            "Warm-pool members ready to be claimed, by template",
            pool_ready.clone(),
        );
        let pool_claims = Family::<Labels, Counter>::default();
        r.register(
            "pool_claims",
            "Starts served by claiming a warm-pool member, by template",
            pool_claims.clone(),
        );
        let pool_misses = Family::<Labels, Counter>::default();
        r.register(
            "pool_misses",
            "Starts of a pooled template that found no ready member (cold starts), by template",
            pool_misses.clone(),
        );
        let capacity_refusals = Counter::default();
        r.register(
            "capacity_refusals",
            "Starts and wakes refused because the cluster ran its maximum of demos",
            capacity_refusals.clone(),
        );
        Metrics {
            pool_size,
            pool_ready,
            pool_claims,
            pool_misses,
            capacity_refusals,
            notices,
            leader,
            share_link_visits,
            registry: Mutex::new(r),
            demos,
            provisioning_seconds,
            wake_seconds,
            sweep_seconds,
            sweep_plan_seconds,
            sweep_actions,
            lifecycle_actions,
            api_errors,
        }
    }
}

pub fn label(k: &str, v: &str) -> Labels {
    vec![(k.to_string(), v.to_string())]
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let _ = encode(&mut out, &r);
        out
    }
}
