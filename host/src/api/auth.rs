//! Authentication: tenants by API key (stored as a SHA-256 digest), the operator by the admin
//! token (compared digest to digest, in constant time).
//!
//! A tenant's key has a scope (issue 12): `write` (ingest only), `read` (every `GET`) or
//! `admin`. The scope is checked by the extractor a handler takes, so a route cannot forget it:
//!
//! | extractor | lets through |
//! | --- | --- |
//! | [`Ingest`] | `write` and `admin` keys: only the ingest routes take it |
//! | [`TenantId`] | `admin` keys; `read` keys on `GET` and `HEAD` only; never a `write` key |
//! | [`TenantAdmin`] | `admin` keys only (the keys routes) |
//!
//! A key is sent as `Authorization: Bearer <key>`, or as Segment's clients send their write
//! key: `Authorization: Basic base64(<key>:)`, the key as the user name and an empty password
//! (<https://segment.com/docs/connections/sources/catalog/libraries/server/http-api/#authentication>).

use super::prelude::*;
use crate::store::Scope;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// The credentials of the `Authorization` header, by scheme (matched case-insensitively,
/// RFC 7235 § 2.1).
fn authorization(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim_start();
    let (scheme, credentials) = value.split_once(' ')?;
    Some((scheme, credentials.trim())).filter(|(_, c)| !c.is_empty())
}

/// The token of an `Authorization: Bearer <token>` header.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let (scheme, token) = authorization(headers)?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

/// A tenant's key from `Authorization`: a bearer token, or the user name of HTTP Basic
/// credentials whose password is empty (RFC 7617: `base64(user ":" password)`).
fn api_key(headers: &HeaderMap) -> Option<String> {
    let (scheme, credentials) = authorization(headers)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.to_string());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    (password.is_empty() && !user.is_empty()).then(|| user.to_string())
}

pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Who a tenant key speaks for, and what it may do: resolved once per request by the edge
/// (for the tenant's rate limits) and read by the scope extractors.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub scope: Scope,
}

impl Caller {
    /// The tenant key that `headers` carry, if it is one. Looked up in the store on every
    /// request, so a revoked key is refused from the revocation's answer on.
    pub(super) fn resolve(headers: &HeaderMap, state: &AppState) -> ApiResult<Option<Caller>> {
        let Some(key) = api_key(headers) else {
            return Ok(None);
        };
        let key_digest = hex::encode(digest(&key));
        let Some(found) = state.host.store.access_key(&key_digest)? else {
            return Ok(None);
        };
        if found.prefix.is_empty() {
            adopt(state, &key, &key_digest, &found.tenant);
        }
        Ok(Some(Caller {
            tenant: found.tenant,
            scope: found.scope,
        }))
    }

    async fn of(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        // The edge (`edge::guard`) resolved it already, for the tenant's rate limits.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        Caller::resolve(&parts.headers, state)?.ok_or_else(ApiError::unauthorized)
    }
}

/// A tenant's key from before scopes, seen in use: recorded as the admin key it is, under its
/// prefix, so the tenant can list it and revoke it (to rotate it) like any other. A failure
/// is logged, never refused: the key works either way.
fn adopt(state: &AppState, key: &str, key_digest: &str, tenant: &str) {
    let Some(prefix) = key.get(..super::keys::PREFIX_LEN) else {
        return;
    };
    let store = &state.host.store;
    let adopted = store.tenant(tenant).and_then(|t| {
        let record = crate::store::AccessKey {
            tenant: tenant.to_string(),
            prefix: prefix.to_string(),
            scope: Scope::Admin,
            created_at: t.map_or(0, |t| t.created_at),
            name: Some("created with the tenant".into()),
        };
        store.adopt_legacy_key(&record, key_digest)
    });
    if let Err(error) = adopted {
        tracing::warn!(tenant, %error, "could not record a key from before scoped keys");
    }
}

fn forbidden(scope: Scope, needs: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!("a {} key cannot {needs}", scope_name(scope)),
    )
}

fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Write => "write",
        Scope::Read => "read",
        Scope::Admin => "admin",
    }
}

/// An authenticated tenant, on any route but ingest: an admin key, or a read key on a read
/// (`GET`, `HEAD`). A write key is refused with 403.
#[derive(Clone)]
pub struct TenantId(pub String);

impl FromRequestParts<AppState> for TenantId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<TenantId> {
        let caller = Caller::of(parts, state).await?;
        let read = parts.method == Method::GET || parts.method == Method::HEAD;
        match caller.scope {
            Scope::Admin => Ok(TenantId(caller.tenant)),
            Scope::Read if read => Ok(TenantId(caller.tenant)),
            Scope::Read => Err(forbidden(caller.scope, "change anything")),
            Scope::Write => Err(forbidden(caller.scope, "do more than post events")),
        }
    }
}

/// An authenticated tenant on an ingest route: a write or an admin key (a read key is
/// refused with 403).
pub struct Ingest(pub String);

impl FromRequestParts<AppState> for Ingest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Ingest> {
        let caller = Caller::of(parts, state).await?;
        match caller.scope {
            Scope::Write | Scope::Admin => Ok(Ingest(caller.tenant)),
            Scope::Read => Err(forbidden(caller.scope, "post events")),
        }
    }
}

/// An authenticated tenant acting with an admin key, whatever the method.
pub struct TenantAdmin(pub String);

impl FromRequestParts<AppState> for TenantAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<TenantAdmin> {
        let caller = Caller::of(parts, state).await?;
        match caller.scope {
            Scope::Admin => Ok(TenantAdmin(caller.tenant)),
            other => Err(forbidden(other, "manage keys")),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(authorization).unwrap(),
        );
        h
    }

    fn basic(credentials: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        )
    }

    #[test]
    fn a_key_is_read_from_bearer_or_from_basic_with_an_empty_password() {
        assert_eq!(api_key(&headers("Bearer wmk_1")).as_deref(), Some("wmk_1"));
        assert_eq!(
            api_key(&headers("bearer  wmk_1 ")).as_deref(),
            Some("wmk_1")
        );
        assert_eq!(
            api_key(&headers(&basic("wmk_1:"))).as_deref(),
            Some("wmk_1")
        );
        assert_eq!(
            api_key(&headers(&basic("wmk_1:")).clone()).as_deref(),
            api_key(&headers(&basic("wmk_1:").replace("Basic", "BASIC"))).as_deref()
        );
        // A password, no user, no colon, bad base64, another scheme: no key.
        assert_eq!(api_key(&headers(&basic("wmk_1:secret"))), None);
        assert_eq!(api_key(&headers(&basic(":wmk_1"))), None);
        assert_eq!(api_key(&headers(&basic("wmk_1"))), None);
        assert_eq!(api_key(&headers("Basic !!!")), None);
        assert_eq!(api_key(&headers("Token wmk_1")), None);
        assert_eq!(api_key(&headers("Bearer ")), None);
    }

    #[test]
    fn the_admin_token_is_bearer_only() {
        assert_eq!(bearer(&headers("Bearer t")), Some("t"));
        assert_eq!(bearer(&headers(&basic("t:"))), None);
    }
}
