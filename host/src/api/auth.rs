//! Authentication: tenants by API key (stored as a SHA-256 digest), the operator by the admin
//! token (compared digest to digest, in constant time).

use super::prelude::*;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};

/// The token of an `Authorization: Bearer <token>` header; the scheme is matched
/// case-insensitively (RFC 7235 § 2.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_start();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// An authenticated tenant: the bearer token is one of its API keys.
#[derive(Clone)]
pub struct TenantId(pub String);

impl TenantId {
    /// The tenant whose API key `headers` carry, if any.
    pub(super) fn resolve(headers: &HeaderMap, state: &AppState) -> ApiResult<Option<TenantId>> {
        let Some(token) = bearer(headers) else {
            return Ok(None);
        };
        let key_digest = hex::encode(digest(token));
        Ok(state
            .host
            .store
            .tenant_by_key_digest(&key_digest)?
            .map(TenantId))
    }
}

impl FromRequestParts<AppState> for TenantId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<TenantId> {
        // The edge (`edge::guard`) resolved it already, for the tenant's rate limits.
        if let Some(tenant) = parts.extensions.get::<TenantId>() {
            return Ok(tenant.clone());
        }
        TenantId::resolve(&parts.headers, state)?.ok_or_else(ApiError::unauthorized)
    }
}

/// The operator, holding the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Admin> {
        let token = bearer(&parts.headers).ok_or_else(ApiError::unauthorized)?;
        // Comparing fixed-size digests keeps the comparison's time independent of the token.
        let given = digest(token);
        let same = given
            .iter()
            .zip(state.admin_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
        if same {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized())
        }
    }
}
