//! Expiry notices to a webhook (Slack-compatible `{"text": ...}`), retried in the
//! background so that a slow or failing webhook never holds up a demo's lifecycle.

use crate::metrics::{Metrics, label};
use axum::body::Body;
use http::{Request, Uri};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::rt::TokioExecutor;
use std::sync::Arc;
use std::time::Duration;

type Https = hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>;

pub struct Notifier {
    url: Uri,
    http: HttpClient<Https, Body>,
    metrics: Arc<Metrics>,
    attempts: u32,
    first_backoff: Duration,
}

impl Notifier {
    pub fn new(url: &str, metrics: Arc<Metrics>) -> anyhow::Result<Notifier> {
        let url: Uri = url
            .parse()
            .map_err(|e| anyhow::anyhow!("--notice-webhook: {e}"))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) {
            anyhow::bail!("--notice-webhook: must be an http:// or https:// URL");
        }
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| anyhow::anyhow!("loading CA certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Notifier {
            url,
            http: HttpClient::builder(TokioExecutor::new()).build(tls),
            metrics,
            attempts: 5,
            first_backoff: Duration::from_millis(500),
        })
    }

    /// Posts `text` in the background, retrying with exponential backoff.
    pub fn send(self: &Arc<Self>, text: String) {
        let me = self.clone();
        tokio::spawn(async move {
            let body = serde_json::json!({ "text": text }).to_string();
            let mut wait = me.first_backoff;
            for attempt in 1..=me.attempts {
                let req = Request::post(me.url.clone())
                    .header("content-type", "application/json")
                    .body(Body::from(body.clone()));
                let Ok(req) = req else { return };
                let outcome =
                    tokio::time::timeout(Duration::from_secs(10), me.http.request(req)).await;
                match outcome {
                    Ok(Ok(r)) if r.status().is_success() => {
                        me.metrics
                            .notices
                            .get_or_create(&label("result", "sent"))
                            .inc();
                        return;
                    }
                    Ok(Ok(r)) => {
                        tracing::warn!(status = %r.status(), attempt, "notice webhook refused the notice")
                    }
                    Ok(Err(e)) => tracing::warn!(error = %e, attempt, "notice webhook unreachable"),
                    Err(_) => tracing::warn!(attempt, "notice webhook timed out"),
                }
                me.metrics
                    .notices
                    .get_or_create(&label("result", "retried"))
                    .inc();
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            me.metrics
                .notices
                .get_or_create(&label("result", "failed"))
                .inc();
        });
    }
}
