//! Journeys: upload a version (validated by running its `describe`), list, read, dry-run
//! `decide`, and the milestone report.

use super::dto;
use super::prelude::*;
use crate::model::{ChannelStats, DecisionContext};
use crate::sandbox::FailureReason;
use sha2::{Digest, Sha256};
use waymark_api::journeys::{
    DecideRequest, Decided, JourneyList, JourneyVersion, JourneyVersions, UploadedJourney,
};
use waymark_api::reports::JourneyReport;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/journeys", get(list_journeys))
        .route("/v1/journeys/{name}", put(upload_journey).get(get_journey))
        .route("/v1/journeys/{name}/decide", post(dry_run_decide))
        .route("/v1/journeys/{name}/report", get(journey_report))
}

async fn upload_journey(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<(StatusCode, Json<UploadedJourney>)> {
    valid_name("journey", &name)?;
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
        .add_journey_version(&tenant, &name, &digest, &bytes, &spec, rt.clock.now())
        .await?;
    rt.registry.insert_journey(&digest, component);
    rt.catalog.forget_latest(&tenant);
    tracing::info!(tenant, journey = %name, version = version.version, "journey version uploaded");
    Ok((
        StatusCode::CREATED,
        Json(UploadedJourney {
            name,
            version: version.version,
            digest,
            spec: spec.into(),
        }),
    ))
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
    let version = match input.version {
        Some(v) => rt.store.journey_version(&tenant, &name, v)?,
        None => rt
            .store
            .latest_journeys(&tenant)?
            .into_iter()
            .find(|j| j.name == name),
    }
    .ok_or_else(|| match input.version {
        Some(v) => ApiError::not_found(format!("journey {name:?} has no version {v}")),
        None => ApiError::not_found(format!("no journey named {name:?}")),
    })?;
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

/// The journey's funnel, overall, per version and per experiment arm: added up from the
/// journey's report cells, so it costs the same however many customers entered.
async fn journey_report(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
) -> ApiResult<Json<JourneyReport>> {
    let store = &state.host.store;
    let latest = store
        .latest_journeys(&tenant)?
        .into_iter()
        .find(|j| j.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no journey named {name:?}")))?;
    let cells = store.report_cells(&tenant, &name)?;
    let report = crate::report::cells::report(&latest.spec, &cells);
    Ok(Json(JourneyReport {
        name,
        latest_version: latest.version,
        report: report.into(),
    }))
}

async fn list_journeys(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
) -> ApiResult<Json<JourneyList>> {
    let latest = state.host.store.latest_journeys(&tenant)?;
    Ok(Json(JourneyList {
        journeys: latest.into_iter().map(dto::summary).collect(),
    }))
}

async fn get_journey(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path(name): Path<String>,
) -> ApiResult<Json<JourneyVersions>> {
    let versions = state.host.store.journey_versions(&tenant, &name)?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("no journey named {name:?}")));
    }
    Ok(Json(JourneyVersions {
        name,
        versions: versions.into_iter().map(JourneyVersion::from).collect(),
    }))
}
