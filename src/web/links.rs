//! Share links: create, list (never the token), revoke; and the lookup a prospect's
//! request goes through. The links live in the Demo's spec, their visits in its status.

use super::AppState;
use super::auth::Caller;
use super::demos::find;
use super::error::{ApiError, from_json_rejection};
use crate::cluster::crd::{Demo, ShareLinkSpec};
use crate::cluster::lease;
use crate::domain::share::{self, Inactive};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use kube::ResourceExt;

use serde::{Deserialize, Serialize};
use serde_json::json;

/// Links a demo may hold, revoked ones included.
pub const MAX_LINKS: usize = 50;

#[derive(Debug, Serialize, Clone)]
#[serde(rename_all = "camelCase")]
pub struct LinkView {
    pub id: String,
    pub label: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub passcode: bool,
    pub active: bool,
    pub visits: u64,
    pub first_opened_at: Option<DateTime<Utc>>,
    pub last_opened_at: Option<DateTime<Utc>>,
    /// Where "Open demo" leads (the per-link proxy host).
    pub app_url: String,
}

pub fn views(d: &Demo, s: &AppState) -> Vec<LinkView> {
    let visits = d
        .status
        .as_ref()
        .map(|st| st.share_link_visits.clone())
        .unwrap_or_default();
    let now = Utc::now();
    d.spec
        .share_links
        .iter()
        .map(|l| {
            let v = visits.get(&l.id).cloned().unwrap_or_default();
            LinkView {
                id: l.id.clone(),
                label: l.label.clone(),
                created_at: l.created_at,
                expires_at: l.expires_at,
                revoked_at: l.revoked_at,
                passcode: l.passcode_hash.is_some(),
                active: share::check(
                    l.revoked_at.is_some(),
                    l.expires_at,
                    lease::expires_at(d),
                    now,
                )
                .is_ok(),
                visits: v.visits,
                first_opened_at: v.first_opened_at,
                last_opened_at: v.last_opened_at,
                app_url: s.urls.app_url(&l.id),
            }
        })
        .collect()
}

/// Changes a demo's links without losing a concurrent change (see `update_spec`).
async fn modify_links(
    s: &AppState,
    name: &str,
    f: impl Fn(&Demo, &mut Vec<ShareLinkSpec>) -> Result<(), ApiError>,
) -> Result<Demo, ApiError> {
    super::demos::update_spec(s, name, |d| {
        let mut links = d.spec.share_links.clone();
        f(d, &mut links)?;
        Ok(json!({"shareLinks": links}))
    })
    .await
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateLink {
    pub label: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub passcode: Option<String>,
    /// The contact the prospect sees (default: the user making the link).
    #[serde(default)]
    pub sender_name: Option<String>,
    #[serde(default)]
    pub sender_contact: Option<String>,
    /// A note on the prospect's landing page.
    #[serde(default)]
    pub message: Option<String>,
}

/// An optional text field: trimmed, empty as absent, at most `max` characters, no
/// control characters (newlines allowed where `lines`).
fn text_field(
    field: &str,
    value: &Option<String>,
    max: usize,
    lines: bool,
) -> Result<Option<String>, ApiError> {
    let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let bad_char = |c: char| c.is_control() && !(lines && (c == '\n' || c == '\r'));
    if v.chars().count() > max || v.chars().any(bad_char) {
        return Err(ApiError::bad_request(format!(
            "{field}: at most {max} characters, no control characters"
        )));
    }
    Ok(Some(v.to_string()))
}

/// Creates a link; the token is returned here and never again.
pub async fn create(
    s: &AppState,
    demo: &Demo,
    req: &CreateLink,
    by: &str,
) -> Result<(ShareLinkSpec, String), ApiError> {
    if demo.metadata.deletion_timestamp.is_some() {
        return Err(ApiError::conflict("the demo is being deleted"));
    }
    let label = req
        .label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string);
    if label
        .as_ref()
        .is_some_and(|l| l.chars().count() > 80 || l.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(
            "label: at most 80 characters, no control characters",
        ));
    }
    let passcode = req.passcode.as_deref().filter(|p| !p.is_empty());
    if passcode.is_some_and(|p| p.len() < 4 || p.len() > 64) {
        return Err(ApiError::bad_request("passcode: 4 to 64 characters"));
    }
    let sender_name = text_field("senderName", &req.sender_name, 80, false)?;
    let sender_contact = text_field("senderContact", &req.sender_contact, 120, false)?;
    let message = text_field("message", &req.message, 500, true)?;
    let now = Utc::now();
    let expires_at = share::bound_expiry(req.expires_at, lease::expires_at(demo), now)
        .map_err(|e| ApiError::bad_request(format!("expiresAt: {e}")))?;
    let token = share::new_token();
    let link = ShareLinkSpec {
        id: share::new_id(),
        label,
        token_sha256: share::hash_token(&token),
        passcode_hash: passcode.map(share::hash_secret),
        expires_at,
        created_at: now,
        revoked_at: None,
        sender_name: sender_name.or_else(|| Some(by.to_string())),
        sender_contact,
        message,
    };
    let new = link.clone();
    modify_links(s, &demo.name_any(), move |_, links| {
        if links.len() >= MAX_LINKS {
            return Err(ApiError::conflict(format!(
                "a demo holds at most {MAX_LINKS} share links"
            )));
        }
        links.push(new.clone());
        Ok(())
    })
    .await?;
    tracing::info!(demo = %demo.name_any(), link = %link.id, "share link created");
    Ok((link, token))
}

pub async fn revoke(s: &AppState, demo: &Demo, id: &str) -> Result<(), ApiError> {
    if !demo.spec.share_links.iter().any(|l| l.id == id) {
        return Err(ApiError::not_found(format!(
            "no share link {id:?} on this demo"
        )));
    }
    let id = id.to_string();
    modify_links(s, &demo.name_any(), move |_, links| {
        for l in links
            .iter_mut()
            .filter(|l| l.id == id && l.revoked_at.is_none())
        {
            l.revoked_at = Some(Utc::now());
        }
        Ok(())
    })
    .await?;
    Ok(())
}

/// Finds the demo and link for a token: one hash and one map lookup, however many
/// demos there are. The map is keyed by the token's SHA-256, so how long a lookup
/// takes tells nothing about the tokens that exist.
pub fn lookup(
    s: &AppState,
    token: &str,
) -> Result<(std::sync::Arc<Demo>, ShareLinkSpec), Inactive> {
    if !share::looks_like_token(token) {
        return Err(Inactive::Unknown);
    }
    let hash = share::hash_token(token);
    let now = Utc::now();
    let (d, link_id) = s.demos.by_token_hash(&hash).ok_or(Inactive::Unknown)?;
    let l = d
        .spec
        .share_links
        .iter()
        .find(|l| l.id == link_id && l.token_sha256 == hash)
        .cloned()
        .ok_or(Inactive::Unknown)?;
    if d.metadata.deletion_timestamp.is_some() {
        return Err(Inactive::Expired);
    }
    share::check(
        l.revoked_at.is_some(),
        l.expires_at,
        lease::expires_at(&d),
        now,
    )?;
    Ok((d, l))
}

pub async fn api_create(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
    body: Result<Json<CreateLink>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(req) = body.map_err(from_json_rejection)?;
    let d = find(&s, &user, &name).await?;
    let (link, token) = create(&s, &d, &req, &user.name).await?;
    let body = json!({"id": link.id, "url": s.urls.share_url(&token), "label": link.label, "expiresAt": link.expires_at});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub async fn api_list(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let d = find(&s, &user, &name).await?;
    Ok(Json(json!({"shareLinks": views(&d, &s)})))
}

pub async fn api_revoke(
    State(s): State<AppState>,
    Caller(user): Caller,
    Path((name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let d = find(&s, &user, &name).await?;
    revoke(&s, &d, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
