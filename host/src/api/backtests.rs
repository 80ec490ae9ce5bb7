//! Backtests (issue 13): start a replay of a candidate journey version over the tenant's
//! recorded events (`backtest::run`, in an isolated engine), read its progress and result,
//! cancel it. The job runs in the background (`backtest::jobs`); these handlers only validate
//! and shape.

use super::prelude::*;
use crate::backtest::candidate::{Candidate, CandidateError, Unstored};
use crate::backtest::gathered::PartitionJob;
use crate::backtest::jobs::{JobView, StartError};
use crate::backtest::run::{MigrateAt, Plan, Sample};
use crate::store::backtests::JobStatus;
use base64::Engine as _;
use std::collections::HashSet;
use waymark_api::backtests::{Backtest, BacktestRequest, BacktestStatus};

/// The most customers a backtest may name.
const MAX_SAMPLE_CUSTOMERS: usize = 10_000;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/journeys/{name}/backtests", post(start))
        .route("/v1/journeys/{name}/backtests/{id}", get(read))
        .route("/v1/journeys/{name}/backtests/{id}/cancel", post(cancel))
}

async fn start(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<Backtest>)> {
    valid_name("journey", &name)?;
    // Cluster mode (issue 16): one backtest over several partitions has partition 0's id on
    // every partition; an id of the store's own form only.
    let given_id = match headers.get(super::cluster::BACKTEST_ID) {
        None => None,
        Some(id) => Some(
            id.to_str()
                .ok()
                .filter(|id| {
                    id.strip_prefix("bt_").is_some_and(|hex| {
                        hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit())
                    })
                })
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_input",
                        "a backtest id is `bt_` and 16 hex digits",
                    )
                })?
                .to_owned(),
        ),
    };
    let request: BacktestRequest = parse_json(&body?)?;
    let store = &state.host.store;
    let rollout = store
        .journey_rollout(&tenant, &name)?
        .ok_or_else(|| ApiError::not_found(format!("no journey named {name:?}")))?;
    if rollout.live.is_none() {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("journey {name:?} has no live version to compare the candidate with"),
        ));
    }
    if request.from >= request.to {
        return Err(ApiError::bad_request(
            "invalid_input",
            "`from` must be before `to`",
        ));
    }
    let per_million = match request.sample_fraction {
        None => None,
        Some(f) if f > 0.0 && f <= 1.0 => Some((f * 1_000_000.0).round() as u64),
        Some(f) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("sample_fraction must be over 0 and at most 1, not {f}"),
            ))
        }
    };
    if request
        .customers
        .as_ref()
        .is_some_and(|c| c.len() > MAX_SAMPLE_CUSTOMERS)
    {
        return Err(ApiError::bad_request(
            "invalid_input",
            format!("a backtest names at most {MAX_SAMPLE_CUSTOMERS} customers"),
        ));
    }
    let migrate = match &request.candidate.migrate {
        None => None,
        Some(m) => {
            if !(request.from..request.to).contains(&m.at) {
                return Err(ApiError::bad_request(
                    "invalid_input",
                    "candidate.migrate.at must be within [from, to)",
                ));
            }
            if store.journey_version(&tenant, &name, m.from)?.is_none() {
                return Err(ApiError::bad_request(
                    "invalid_input",
                    format!(
                        "candidate.migrate.from: journey {name:?} has no version {}",
                        m.from
                    ),
                ));
            }
            Some(MigrateAt {
                from: m.from,
                at: m.at,
            })
        }
    };
    let candidate = candidate(&state, &tenant, &name, request.candidate).await?;
    let plan = Plan {
        tenant,
        journey: name,
        candidate,
        from: request.from,
        to: request.to,
        sample: Sample {
            customers: request
                .customers
                .map(|c| c.into_iter().collect::<HashSet<_>>()),
            per_million,
            part: None,
        },
        fidelity: request.fidelity,
        migrate,
    };
    let job = state
        .host
        .backtests
        .start(state.host.clone(), plan, given_id)
        .await
        .map_err(|e| match e {
            StartError::Busy => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_backtests",
                StartError::Busy.to_string(),
            ),
            StartError::Store(e) => e.into(),
        })?;
    Ok((StatusCode::ACCEPTED, Json(shape(job))))
}

/// The request's candidate: a stored version, or component bytes validated as an upload is
/// (size, world, imports, spec) in a sandbox of the backtest's own.
async fn candidate(
    state: &AppState,
    tenant: &str,
    journey: &str,
    asked: waymark_api::backtests::Candidate,
) -> ApiResult<Candidate> {
    let store = &state.host.store;
    match (asked.version, asked.component) {
        (Some(version), None) => {
            if store.journey_version(tenant, journey, version)?.is_none() {
                return Err(ApiError::not_found(format!(
                    "journey {journey:?} has no version {version}"
                )));
            }
            Ok(Candidate::Stored(version))
        }
        (None, Some(component)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(component.as_bytes())
                .map_err(|e| {
                    ApiError::bad_request(
                        "invalid_input",
                        format!("candidate.component is not valid base64: {e}"),
                    )
                })?;
            let limits = state.host.tenant_limits(tenant)?;
            check_component_size(&bytes, &limits)?;
            let sandbox = state.host.registry.sandbox();
            let unstored =
                Unstored::validate(sandbox, bytes, &limits)
                    .await
                    .map_err(|e| match e {
                        CandidateError::Component(e) => e.into(),
                        CandidateError::Describe { invalid_spec, .. } => ApiError::bad_request(
                            if invalid_spec {
                                "invalid_spec"
                            } else {
                                "invalid_component"
                            },
                            e.to_string(),
                        ),
                        CandidateError::Join(m) => ApiError::internal(m),
                    })?;
            Ok(Candidate::Unstored(std::sync::Arc::new(unstored)))
        }
        _ => Err(ApiError::bad_request(
            "invalid_input",
            "candidate names exactly one of `version` (a stored version) and `component` \
             (base64 of a journey component's bytes)",
        )),
    }
}

async fn read(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path((name, id)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    let job = found(state.host.backtests.get(&tenant, &id)?, &name, &id)?;
    // Cluster mode (issue 16): the node gathering a backtest run on several partitions asks
    // each for its job and what a done one's result adds up from.
    if headers.contains_key(super::cluster::BACKTEST_PARTS) {
        let parts = match job.job.status {
            JobStatus::Done => state.host.store.backtest_parts(&tenant, &id)?,
            _ => None,
        };
        let backtest = shape(job);
        return Ok(Json(PartitionJob { backtest, parts }).into_response());
    }
    Ok(Json(shape(job)).into_response())
}

async fn cancel(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<Backtest>> {
    let job = found(state.host.backtests.get(&tenant, &id)?, &name, &id)?;
    let job = found(
        state.host.backtests.cancel(&tenant, &job.job.id).await?,
        &name,
        &id,
    )?;
    Ok(Json(shape(job)))
}

/// The job, if it is one of this journey's.
fn found(job: Option<JobView>, journey: &str, id: &str) -> ApiResult<JobView> {
    job.filter(|j| j.job.journey == journey)
        .ok_or_else(|| ApiError::not_found(format!("no backtest {id:?} of journey {journey:?}")))
}

/// The backtests of `journey` the server keeps, newest first, as the API shows them (shared
/// with the dashboard's journey page, issue 14).
pub(crate) fn of_journey(
    state: &AppState,
    tenant: &str,
    journey: &str,
) -> Result<Vec<Backtest>, crate::store::StoreError> {
    Ok(state
        .host
        .backtests
        .of_journey(tenant, journey)?
        .into_iter()
        .map(shape)
        .collect())
}

/// A job as the API shows it.
fn shape(view: JobView) -> Backtest {
    let JobView { job, result } = view;
    let status = match job.status {
        JobStatus::Queued => BacktestStatus::Queued,
        JobStatus::Running => BacktestStatus::Running,
        JobStatus::Done => BacktestStatus::Done,
        JobStatus::Failed => BacktestStatus::Failed,
        JobStatus::Cancelled => BacktestStatus::Cancelled,
    };
    Backtest {
        id: job.id,
        journey: job.journey,
        status,
        replayed: job.replayed,
        total: job.total,
        restarts: job.restarts,
        error: job.error,
        result,
    }
}
