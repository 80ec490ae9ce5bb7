//! Authentication: tenants by API key (stored as a SHA-256 digest), the operator by the admin
//! token (compared digest to digest, in constant time).

use super::prelude::*;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// An authenticated tenant: the bearer token is one of its API keys.
pub struct TenantId(pub String);

impl FromRequestParts<AppState> for TenantId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<TenantId> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
        let key_digest = hex::encode(digest(token));
        match state.host.store.tenant_by_key_digest(&key_digest)? {
            Some(tenant) => Ok(TenantId(tenant)),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// The operator, holding the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Admin> {
        let token = bearer(parts).ok_or_else(ApiError::unauthorized)?;
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
