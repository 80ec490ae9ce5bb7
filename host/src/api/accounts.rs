//! Accounts (issue 12): `GET /v1/accounts/{id}`, an account's traits and a page of its
//! members, and its enrollments in account journeys. Accounts are written by `group` events at
//! ingest (`store/accounts.rs`).

use super::prelude::*;
use waymark_api::accounts::{Account, AccountQuery};

/// Members a page holds unless the query says otherwise.
const DEFAULT_PAGE: usize = 100;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/v1/accounts/{id}", get(get_account))
}

async fn get_account(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(id): Path<String>,
    query: Result<Query<AccountQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Account>> {
    let Query(query) = query.map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_LIST {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("limit must be 1 to {MAX_LIST}"),
        ));
    }
    let store = &state.host.store;
    let account = store
        .account(&tenant, &id)?
        .ok_or_else(|| ApiError::not_found(format!("no account {id:?}")))?;
    let (members, more) = store.account_members(&tenant, &id, query.after.as_deref(), limit)?;
    let next_after = if more { members.last().cloned() } else { None };
    // Account journeys: the account's enrollments, under its subject key.
    let subject = crate::engine::accounts::subject(&id);
    let enrollments = store.enrollments(&tenant, &subject)?;
    Ok(Json(Account {
        id: account.id,
        traits: account.traits,
        created_at: account.created_at,
        updated_at: account.updated_at,
        members,
        next_after,
        enrollments: enrollments.into_iter().map(Into::into).collect(),
    }))
}
