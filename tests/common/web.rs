//! HTTP for tests, over hyper's maintained client (the one showroom's proxy uses):
//! any method, header (Host included, for share-link hosts), cookie and body.

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// An answer: status, headers and the body as text.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| Value::String(self.text.clone()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `name=value` of a Set-Cookie for `name`.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap_or_default().to_string())
    }

    /// The headers as `name: value` lines, lower-case (what raw-header checks read).
    pub fn head(&self) -> String {
        let mut out = String::new();
        for (k, v) in &self.headers {
            out.push_str(&format!(
                "{}: {}\n",
                k.as_str(),
                v.to_str().unwrap_or_default().to_lowercase()
            ));
        }
        out
    }
}

/// Sends one request; Err when nothing answered (not started yet, or gone).
pub async fn send(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Result<Reply, String> {
    let client: Client<HttpConnector, Body> = Client::builder(TokioExecutor::new()).build_http();
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).map_err(|e| e.to_string())?)
        .uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Body::from(body.unwrap_or_default().to_string()))
        .map_err(|e| e.to_string())?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let (parts, incoming) = resp.into_parts();
    let bytes = axum::body::to_bytes(Body::new(incoming), 64 << 20)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Reply {
        status,
        headers: parts.headers,
        text: String::from_utf8_lossy(&bytes).to_string(),
    })
}
