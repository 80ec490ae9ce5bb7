//! `/v1/keys` (issue 12): a tenant's scoped API keys, created (the key shown once), listed by
//! prefix and revoked by it. Admin keys only ([`TenantAdmin`]). A key is stored as its SHA-256
//! digest ([`digest`]); its prefix is public and names it.
//!
//! `POST /v1/admin/tenants/{id}/keys` lets the operator issue a key too, so a tenant that
//! revoked its last admin key is never locked out.

use super::auth::digest;
use super::prelude::*;
use crate::store::{AccessKey, Scope, StoreError};
use waymark_api::keys::{CreatedKey, Key, KeyList, KeyScope, NewKey};

/// The longest note a key may carry.
const MAX_KEY_NAME: usize = 200;
/// How many characters of a key are its public prefix: `wmk_` and 8 hex digits.
pub(super) const PREFIX_LEN: usize = 12;
/// How many times a new key is drawn again when its prefix is taken within the tenant.
const DRAWS: usize = 4;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/keys", post(create_key).get(list_keys))
        .route("/v1/keys/{prefix}", axum::routing::delete(revoke_key))
        .route("/v1/admin/tenants/{id}/keys", post(issue_key))
}

/// A new key (`wmk_` and 64 hex digits of 32 random bytes) and its prefix.
pub(super) fn new_key() -> ApiResult<(String, String)> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(ApiError::internal)?;
    let key = format!("wmk_{}", hex::encode(b));
    let prefix = key[..PREFIX_LEN].to_string();
    Ok((key, prefix))
}

fn scope(s: KeyScope) -> Scope {
    match s {
        KeyScope::Write => Scope::Write,
        KeyScope::Read => Scope::Read,
        KeyScope::Admin => Scope::Admin,
    }
}

fn listed(k: AccessKey) -> Key {
    Key {
        prefix: k.prefix,
        scope: match k.scope {
            Scope::Write => KeyScope::Write,
            Scope::Read => KeyScope::Read,
            Scope::Admin => KeyScope::Admin,
        },
        created_at: k.created_at,
        name: k.name,
    }
}

async fn create_key(
    State(state): State<AppState>,
    TenantAdmin(tenant): TenantAdmin,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    created(&state, tenant, body).await
}

/// The operator's way in: a key for tenant `id` (404 if there is none).
async fn issue_key(
    State(state): State<AppState>,
    _: Admin,
    Path(tenant): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    if state.host.store.tenant(&tenant)?.is_none() {
        return Err(ApiError::not_found(format!("no tenant {tenant:?}")));
    }
    created(&state, tenant, body).await
}

/// Makes a key for `tenant` as the body asks.
async fn created(
    state: &AppState,
    tenant: String,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let input: NewKey = parse_json(&body?)?;
    if let Some(name) = &input.name {
        if name.len() > MAX_KEY_NAME || name.chars().any(char::is_control) {
            return Err(ApiError::bad_request(
                "invalid_key",
                format!("name must be at most {MAX_KEY_NAME} bytes, without control characters"),
            ));
        }
    }
    for _ in 0..DRAWS {
        let (key, prefix) = new_key()?;
        let record = AccessKey {
            tenant: tenant.clone(),
            prefix,
            scope: scope(input.scope),
            created_at: state.host.clock.now(),
            name: input.name.clone(),
        };
        match state
            .host
            .store
            .create_access_key(&record, &hex::encode(digest(&key)))
            .await
        {
            Ok(()) => {
                return Ok((
                    StatusCode::CREATED,
                    Json(CreatedKey {
                        key,
                        listed: listed(record),
                    }),
                ))
            }
            // The prefix is taken within this tenant: draw another key.
            Err(StoreError::Exists(_)) => continue,
            Err(other) => return Err(other.into()),
        }
    }
    Err(ApiError::internal(
        "every new key drawn had a prefix already taken",
    ))
}

async fn list_keys(
    State(state): State<AppState>,
    TenantAdmin(tenant): TenantAdmin,
) -> ApiResult<Json<KeyList>> {
    let keys = state.host.store.access_keys(&tenant)?;
    Ok(Json(KeyList {
        keys: keys.into_iter().map(listed).collect(),
    }))
}

async fn revoke_key(
    State(state): State<AppState>,
    TenantAdmin(tenant): TenantAdmin,
    Path(prefix): Path<String>,
) -> ApiResult<Json<Key>> {
    match state.host.store.revoke_access_key(&tenant, &prefix).await? {
        Some(revoked) => Ok(Json(listed(revoked))),
        None => Err(ApiError::not_found(format!(
            "this tenant has no key with prefix {prefix:?}"
        ))),
    }
}
