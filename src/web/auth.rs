//! Bearer-token authentication: `Authorization: Bearer <token>` against hashed tokens.

use super::AppState;
use super::error::ApiError;
use crate::domain::users::User;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

/// The signed-in user; extracting it refuses the request with 401 otherwise.
pub struct Caller(pub User);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token = header.strip_prefix("Bearer ").map(str::trim).unwrap_or("");
        if token.is_empty() {
            return Err(ApiError::unauthorized());
        }
        state
            .users
            .authenticate(token)
            .cloned()
            .map(Caller)
            .ok_or_else(ApiError::unauthorized)
    }
}
