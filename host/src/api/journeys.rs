//! Journeys: upload a version (validated by running its `describe`; live, or a draft that no
//! one enters), promote a version or roll it out to a share of new entrants, roll back, list,
//! read, dry-run `decide`, and the milestone report.

use super::dto;
use super::prelude::*;
use crate::model::rollout::{RolloutChange, RolloutError, Stage};
use crate::model::{ChannelStats, DecisionContext};
use crate::sandbox::FailureReason;
use sha2::{Digest, Sha256};
use waymark_api::journeys::{
    DecideRequest, Decided, JourneyList, JourneyRollout, JourneyVersion, JourneyVersions, Promote,
    UploadedJourney,
};
use waymark_api::reports::JourneyReport;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/journeys", get(list_journeys))
        .route("/v1/journeys/{name}", put(upload_journey).get(get_journey))
        .route("/v1/journeys/{name}/promote", post(promote))
        .route("/v1/journeys/{name}/rollback", post(rollback))
        .route("/v1/journeys/{name}/decide", post(dry_run_decide))
        .route("/v1/journeys/{name}/report", get(journey_report))
}

/// `?stage=live|draft` of an upload.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct UploadQuery {
    #[serde(default)]
    stage: Option<String>,
}

async fn upload_journey(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    query: Result<Query<UploadQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<UploadedJourney>)> {
    valid_name("journey", &name)?;
    let query = query
        .map_err(|e| ApiError::bad_request("invalid_input", e.body_text()))?
        .0;
    let stage = match query.stage.as_deref() {
        None | Some("live") => Stage::Live,
        Some("draft") => Stage::Draft,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_input",
                format!("stage is `live` or `draft`, not {other:?}"),
            ))
        }
    };
    let bytes = body?;
    let rt = &state.host;
    let limits = rt.tenant_limits(&tenant)?;
    check_component_size(&bytes, &limits)?;
    let component = rt.registry.compile_journey(bytes.clone()).await?;
    let spec = component.describe(&limits).await.map_err(|f| {
        let code = if f.reason == FailureReason::InvalidSpec {
            "invalid_spec"
        } else {
            "invalid_component"
        };
        ApiError::bad_request(
            code,
            format!("describe failed ({}): {}", f.reason.as_str(), f.message),
        )
    })?;
    let digest = hex::encode(Sha256::digest(&bytes));
    let version = rt
        .store
        .add_journey_version(
            &tenant,
            &name,
            &digest,
            &bytes,
            &spec,
            stage,
            rt.clock.now(),
        )
        .await?;
    rt.registry.insert_journey(&digest, component);
    rt.catalog.forget_live(&tenant);
    let rollout = rt
        .store
        .journey_rollout(&tenant, &name)?
        .ok_or_else(|| ApiError::internal("the journey's pointers are missing after its upload"))?;
    tracing::info!(tenant, journey = %name, version = version.version, ?stage, "journey version uploaded");
    Ok((
        StatusCode::CREATED,
        Json(UploadedJourney {
            version: version.version,
            digest,
            spec: spec.into(),
            rollout: dto::rollout(name.clone(), rollout),
            name,
        }),
    ))
}

/// Makes a stored version live, or with `share_percent` the candidate of a rollout.
async fn promote(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<JourneyRollout>> {
    let input: Promote = parse_json(&body?)?;
    change_rollout(
        &state,
        &tenant,
        name,
        RolloutChange::Promote {
            version: input.version,
            percent: input.share_percent,
        },
    )
    .await
}

/// Stops a rollout, or else makes the previous live version live again.
async fn rollback(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
) -> ApiResult<Json<JourneyRollout>> {
    change_rollout(&state, &tenant, name, RolloutChange::Rollback).await
}

async fn change_rollout(
    state: &AppState,
    tenant: &str,
    name: String,
    change: RolloutChange,
) -> ApiResult<Json<JourneyRollout>> {
    let rt = &state.host;
    let changed = rt
        .store
        .change_rollout(tenant, &name, change)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no journey named {name:?}")))?;
    let rollout = changed.map_err(|e| match e {
        RolloutError::NoSuchVersion(_) => ApiError::not_found(e.to_string()),
        RolloutError::BadShare(_) => ApiError::bad_request("invalid_input", e.to_string()),
        RolloutError::AlreadyLive(_) | RolloutError::NothingToRollBack => {
            ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
        }
    })?;
    rt.catalog.forget_live(tenant);
    tracing::info!(tenant, journey = %name, live = ?rollout.live, candidate = ?rollout.candidate, "journey rollout changed");
    Ok(Json(dto::rollout(name, rollout)))
}

/// Asks a stored journey version what it would decide in a given context, with no effect on
/// anything: the replay primitive, and how a tenant checks a deployed version's behaviour.
/// The answer is exactly what the live path would get for the same context.
async fn dry_run_decide(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Decided>> {
    let input: DecideRequest = parse_json(&body?)?;
    super::validate::bounded_list("stats", input.stats.len())?;
    // The model knows fewer words than the DTO's strings can hold (a failure's reason); an
    // unknown one is malformed JSON, as it was when the model read the body itself.
    let context = DecisionContext::try_from(input.context)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON body: {e}")))?;
    let stats: Vec<ChannelStats> = input.stats.into_iter().map(Into::into).collect();
    let rt = &state.host;
    // Without a version: the live one, or the newest draft of a journey not yet live.
    let version = match input.version {
        Some(v) => Some(v),
        None => rt
            .store
            .journey_rollout(&tenant, &name)?
            .map(|r| r.live.unwrap_or(r.latest)),
    };
    let version = match version {
        Some(v) => rt.store.journey_version(&tenant, &name, v)?,
        None => None,
    }
    .ok_or_else(|| match input.version {
        Some(v) => ApiError::not_found(format!("journey {name:?} has no version {v}")),
        None => ApiError::not_found(format!("no journey named {name:?}")),
    })?;
    // Issue 13: `stats.by-arm` as live would read it at `context.now`, or as given.
    let stats = dry_run_stats(rt, &tenant, &version, &context, stats, input.arm_stats)?;
    let limits = rt.tenant_limits(&tenant)?;
    let component = rt.registry.journey(&tenant, &version.digest).await?;
    match component.decide(&context, stats, &limits).await {
        Ok(commands) => Ok(Json(Decided {
            name,
            version: version.version,
            commands: commands.into_iter().map(Into::into).collect(),
        })),
        Err(failure) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "decide_failed",
            failure.message,
        )
        .with_reason(dto::failure_reason_word(failure.reason))),
    }
}

// Dry-run decide with arm statistics (issue 13)
/// What the `stats` import answers a dry-run `decide`: the channel counts given, and the
/// arms given (validated against the version's experiments), or else the version's live arm
/// statistics as a live trigger at `context.now` reads them — the same cache and rule
/// (`report::arms`: as of the start of that hour of journey time).
fn dry_run_stats(
    host: &crate::host::Host,
    tenant: &str,
    version: &crate::store::JourneyVersion,
    context: &DecisionContext,
    channels: Vec<ChannelStats>,
    given: Option<Vec<waymark_api::journeys::ArmStatsGiven>>,
) -> ApiResult<crate::model::StatsSnapshot> {
    let Some(given) = given else {
        return Ok(host.arm_stats.snapshot_uncached(
            &host.store,
            tenant,
            version,
            context.now,
            channels,
        )?);
    };
    super::validate::bounded_list("arm_stats", given.len())?;
    let spec = &version.spec;
    let mut arms: Vec<crate::model::ArmStats> = Vec::with_capacity(given.len());
    for g in given {
        let invalid = |m: String| ApiError::bad_request("invalid_input", m);
        let Some(experiment) = spec.experiments.iter().find(|x| x.name == g.experiment) else {
            return Err(invalid(format!(
                "arm_stats names experiment {:?}, which version {} does not declare",
                g.experiment, version.version
            )));
        };
        if !experiment.arms.contains(&g.arm) {
            return Err(invalid(format!(
                "arm_stats names arm {:?} of experiment {:?}, which version {} does not declare",
                g.arm, g.experiment, version.version
            )));
        }
        if g.converted > g.entered {
            return Err(invalid(format!(
                "arm_stats: arm {:?} of experiment {:?} has converted {} of only {} entered",
                g.arm, g.experiment, g.converted, g.entered
            )));
        }
        if arms
            .iter()
            .any(|a| a.experiment == g.experiment && a.arm == g.arm)
        {
            return Err(invalid(format!(
                "arm_stats names arm {:?} of experiment {:?} twice",
                g.arm, g.experiment
            )));
        }
        arms.push(crate::model::ArmStats {
            goal: crate::report::arms::goal_of(spec, experiment),
            experiment: g.experiment,
            arm: g.arm,
            entered: g.entered,
            converted: g.converted,
        });
    }
    Ok(crate::model::StatsSnapshot { channels, arms })
}

/// The journey's funnel, overall, per version and per experiment arm: added up from the
/// journey's report cells, so it costs the same however many customers entered.
async fn journey_report(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse as _;
    // Cluster mode (issue 16): the node gathering a report over several partitions asks each
    // for its cells and the spec they are read against, and adds them up itself.
    if headers.contains_key(super::cluster::REPORT_PARTS) {
        return report_parts(&state, &tenant, name).map(|p| Json(p).into_response());
    }
    report(&state, &tenant, name).map(|r| Json(r).into_response())
}

/// One partition's part of a journey's report (cluster mode): its report, the spec the
/// report's rows come from, and its cells.
pub(crate) fn report_parts(
    state: &AppState,
    tenant: &str,
    name: String,
) -> ApiResult<super::cluster::ReportParts> {
    let store = &state.host.store;
    let not_found = || ApiError::not_found(format!("no journey named {name:?}"));
    let rollout = store
        .journey_rollout(tenant, &name)?
        .ok_or_else(not_found)?;
    let latest = store
        .journey_version(tenant, &name, rollout.live.unwrap_or(rollout.latest))?
        .ok_or_else(not_found)?;
    let cells = store.report_cells(tenant, &name)?;
    let report = crate::report::cells::report(&latest.spec, &cells);
    Ok(super::cluster::ReportParts {
        report: JourneyReport {
            name,
            latest_version: latest.version,
            subject: latest.spec.audience.subject.into(),
            report: report.into(),
        },
        spec: latest.spec.clone(),
        cells,
    })
}

/// The report of `GET /v1/journeys/{name}/report`; the dashboard's journey pages show this
/// same value (issue 14), so their funnel is the route's by construction.
pub(crate) fn report(state: &AppState, tenant: &str, name: String) -> ApiResult<JourneyReport> {
    // Milestones as the live version declares them (the newest draft's, before any is live).
    report_parts(state, tenant, name).map(|parts| parts.report)
}

async fn list_journeys(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
) -> ApiResult<Json<JourneyList>> {
    list(&state, &tenant).map(Json)
}

/// The list of `GET /v1/journeys` (shared with the dashboard, issue 14).
pub(crate) fn list(state: &AppState, tenant: &str) -> ApiResult<JourneyList> {
    let journeys = state.host.store.journey_rollouts(tenant)?;
    Ok(JourneyList {
        journeys: journeys
            .into_iter()
            .map(|(name, rollout)| dto::summary(name, rollout))
            .collect(),
    })
}

async fn get_journey(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
) -> ApiResult<Json<JourneyVersions>> {
    versions(&state, &tenant, name).map(Json)
}

/// The versions of `GET /v1/journeys/{name}` (shared with the dashboard, issue 14).
pub(crate) fn versions(state: &AppState, tenant: &str, name: String) -> ApiResult<JourneyVersions> {
    let store = &state.host.store;
    let rollout = store
        .journey_rollout(tenant, &name)?
        .ok_or_else(|| ApiError::not_found(format!("no journey named {name:?}")))?;
    let versions = store.journey_versions(tenant, &name)?;
    Ok(JourneyVersions {
        versions: versions.into_iter().map(JourneyVersion::from).collect(),
        rollout: dto::rollout(name.clone(), rollout),
        name,
    })
}
