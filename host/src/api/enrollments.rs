//! Isolation (issue 15): `POST /v1/customers/{id}/enrollments/{journey}/resume` resumes the
//! customer's latest run of a journey after a loop budget paused it (`engine::loops`); its
//! waiting triggers then run, in order.

use super::prelude::*;
use crate::engine;
use waymark_api::customers::Enrollment;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/customers/{id}/enrollments/{journey}/resume",
        post(resume_enrollment),
    )
}

/// 200 with the resumed enrollment; 404 if the customer has no run of the journey; 409
/// `not_paused` if the latest run is not paused.
async fn resume_enrollment(
    State(state): State<AppState>,
    TenantId(tenant): TenantId,
    Path((customer, journey)): Path<(String, String)>,
) -> ApiResult<Json<Enrollment>> {
    let host = &state.host;
    let run = host
        .store
        .enrollments(&tenant, &customer)?
        .into_iter()
        .filter(|e| e.journey == journey)
        .map(|e| e.run)
        .max()
        .ok_or_else(|| {
            ApiError::not_found(format!("customer {customer:?} has no run of {journey:?}"))
        })?;
    let (enrollment, resumed) = host
        .store
        .update_enrollment(&tenant, &customer, &journey, run, |e| {
            engine::loops::resume(e)
        })?
        .ok_or_else(|| ApiError::not_found(format!("no enrollment of {customer:?}")))?;
    if !resumed {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_paused",
            format!("{customer:?}'s run {run} of {journey:?} is not paused"),
        ));
    }
    host.store.flush().await?;
    host.wake_customer(&tenant, &customer);
    Ok(Json(enrollment.into()))
}
