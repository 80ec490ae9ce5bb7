//! Migrations: move running enrollments from one version of a journey to another, each adapted
//! by the new version's `migrate` export (contract 0.1.1), and read what became of them.
//!
//! The request checks the versions, finds the enrollments to move, and queues one `migrate`
//! trigger per enrollment together with the migration's record (`store/migrations.rs`), flushed
//! before the answer; each enrollment then moves in its customer's shard, in order with the
//! customer's other triggers (`worker.rs` `Shell::migrate`).

use super::prelude::*;
use crate::store::{Migration, MigrationResult, Pending, QueuedTrigger};
use std::collections::BTreeSet;
use waymark_api::journeys::{Migrate, MigrationRefusal, MigrationStatus};

/// Customers one request may name.
pub const MAX_MIGRATION_CUSTOMERS: usize = 10_000;

/// Refusals listed in a status (all are counted).
const MAX_REFUSALS_LISTED: usize = 1_000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/journeys/{name}/migrate", post(start_migration))
        .route("/v1/journeys/{name}/migrations/{id}", get(migration_status))
}

async fn start_migration(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<MigrationStatus>)> {
    let input: Migrate = parse_json(&body?)?;
    // Cluster mode (issue 16): one migration over several partitions has partition 0's id on
    // every partition; a new id of the store's own form only.
    let given_id = match headers.get(super::cluster::MIGRATION_ID) {
        None => None,
        Some(id) => {
            let id = id.to_str().ok().filter(|id| {
                id.strip_prefix("mig_").is_some_and(|hex| {
                    !hex.is_empty() && hex.len() <= 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())
                })
            });
            Some(
                id.ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_input",
                        "a migration id is `mig_` and hex digits",
                    )
                })?
                .to_owned(),
            )
        }
    };
    if input.from == input.to {
        return Err(ApiError::bad_request(
            "invalid_input",
            "`from` and `to` are the same version",
        ));
    }
    let customers = match input.customers {
        Some(list) if list.len() > MAX_MIGRATION_CUSTOMERS => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("at most {MAX_MIGRATION_CUSTOMERS} customers per migration"),
            ))
        }
        Some(list) => Some(list.into_iter().collect::<BTreeSet<_>>()),
        None => None,
    };
    let host = &state.host;
    let version = |v: u32| {
        host.catalog
            .version(&host.store, &tenant, &name, v)?
            .ok_or_else(|| ApiError::not_found(format!("journey {name:?} has no version {v}")))
    };
    version(input.from)?;
    let target = version(input.to)?;
    let component = host.registry.journey(&tenant, &target.digest).await?;
    if !component.migrates() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!(
                "version {} of {name:?} does not export `migration` (it was built for contract \
                 0.1.0): it cannot adapt enrollments moved to it",
                input.to
            ),
        ));
    }
    let store = host.store.clone();
    let (tenant_, name_) = (tenant.clone(), name.clone());
    let now = host.clock.now();
    let (migration, moves) = tokio::task::spawn_blocking(move || {
        let (tenant, name) = (tenant_, name_);
        let enrollments = match &customers {
            // Each named customer's enrollments: a read per customer.
            Some(customers) => {
                let mut all = Vec::new();
                for customer in customers {
                    all.extend(store.enrollments(&tenant, customer)?);
                }
                all
            }
            // A scan of the tenant's enrollments (no index by journey): bounded by the tenant.
            None => store.journey_enrollments(&tenant, &name)?,
        };
        let id = match given_id {
            Some(id) if store.migration(&tenant, &name, &id)?.is_some() => {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "conflict",
                    format!("migration {id} exists already"),
                ))
            }
            Some(id) => id,
            None => store.new_migration_id()?,
        };
        let moves: Vec<QueuedTrigger> = enrollments
            .into_iter()
            .filter(|e| e.journey == name && e.is_active() && e.version == input.from)
            .map(|e| QueuedTrigger {
                tenant: tenant.clone(),
                customer: e.customer,
                pending: Pending::Migrate {
                    journey: name.clone(),
                    run: e.run,
                    from: input.from,
                    to: input.to,
                    migration: id.clone(),
                },
            })
            .collect();
        let migration = Migration {
            id,
            journey: name,
            from: input.from,
            to: input.to,
            requested_at: now,
            queued: moves.len() as u64,
        };
        store.start_migration(&tenant, &migration, &moves)?;
        Ok::<_, ApiError>((migration, moves))
    })
    .await
    .map_err(ApiError::internal)??;
    host.store.flush().await?;
    let shards: BTreeSet<u16> = moves
        .iter()
        .map(|t| crate::store::shard_of(&t.tenant, &t.customer, host.config.shards))
        .collect();
    for shard in shards {
        host.wake_shard(shard);
    }
    tracing::info!(
        tenant = %tenant,
        journey = %migration.journey,
        id = %migration.id,
        from = migration.from,
        to = migration.to,
        queued = migration.queued,
        "migration started"
    );
    Ok((StatusCode::ACCEPTED, Json(status(migration, Vec::new()))))
}

async fn migration_status(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<MigrationStatus>> {
    let store = state.host.store.clone();
    let found = tokio::task::spawn_blocking(move || {
        let Some(migration) = store.migration(&tenant, &name, &id)? else {
            return Ok(None);
        };
        let outcomes = store.migration_outcomes(&tenant, &name, &id)?;
        Ok::<_, crate::store::StoreError>(Some((migration, outcomes)))
    })
    .await
    .map_err(ApiError::internal)??;
    let (migration, outcomes) =
        found.ok_or_else(|| ApiError::not_found("no such migration of this journey"))?;
    Ok(Json(status(migration, outcomes)))
}

/// One partition's part of a migration added to the parts before it (cluster mode): counts
/// added up, refusals together (the first [`MAX_REFUSALS_LISTED`]).
pub(crate) fn add_up(all: &mut MigrationStatus, part: MigrationStatus) {
    all.queued += part.queued;
    all.moved += part.moved;
    all.refused += part.refused;
    all.skipped += part.skipped;
    all.pending += part.pending;
    all.refusals.extend(part.refusals);
    all.refusals.truncate(MAX_REFUSALS_LISTED);
}

/// A migration's status from its record and the outcomes recorded so far.
pub(crate) fn status(
    migration: Migration,
    outcomes: Vec<crate::store::MigrationOutcome>,
) -> MigrationStatus {
    let (mut moved, mut refused, mut skipped) = (0u64, 0u64, 0u64);
    let mut refusals = Vec::new();
    for o in outcomes {
        match o.outcome {
            MigrationResult::Moved => moved += 1,
            MigrationResult::Skipped => skipped += 1,
            MigrationResult::Refused { reason, message } => {
                refused += 1;
                if refusals.len() < MAX_REFUSALS_LISTED {
                    refusals.push(MigrationRefusal {
                        customer: o.customer,
                        run: o.run,
                        reason,
                        message,
                    });
                }
            }
        }
    }
    let done = moved + refused + skipped;
    MigrationStatus {
        id: migration.id,
        journey: migration.journey,
        from: migration.from,
        to: migration.to,
        requested_at: migration.requested_at,
        queued: migration.queued,
        moved,
        refused,
        skipped,
        pending: migration.queued.saturating_sub(done),
        refusals,
    }
}
