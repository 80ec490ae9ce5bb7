//! Backtests over several partitions (issue 13 in cluster mode): a customer's recorded events
//! are all in its partition, so a backtest is one job per partition under one id, each
//! replaying its own customers, read back as one ([`crate::backtest::gathered`]).

use super::spread::{derived, everywhere, read, rebuilt};
use super::{to_partition, ClusterState, Held};
use crate::api::error::ApiError;
use crate::backtest::gathered::{gathered, PartitionJob};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use waymark_api::backtests::Backtest;

/// The header naming the id a partition gives a backtest started over several partitions:
/// partition 0's.
pub const BACKTEST_ID: &str = "waymark-backtest-id";

/// The header asking a partition for its job and what a done one's result adds up from
/// ([`PartitionJob`]).
pub const BACKTEST_PARTS: &str = "waymark-backtest-parts";

/// `POST /v1/journeys/{name}/backtests`: started on partition 0, which checks the request
/// and names the job, then on every other partition under that id. If a partition refuses
/// its part, the parts started are cancelled and its refusal is answered.
pub(super) async fn start(state: &ClusterState, held: Held) -> Response {
    let first = to_partition(state, 0, held.clone()).await;
    if !first.status().is_success() {
        return first;
    }
    let (status, body) = match read(first).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let Ok(started) = serde_json::from_slice::<Backtest>(&body) else {
        return rebuilt(status, body);
    };
    let Ok(id) = HeaderValue::from_str(&started.id) else {
        return rebuilt(status, body);
    };
    let rest = futures::future::join_all((1..state.directory.partitions()).map(|p| {
        let mut asked = held.clone();
        asked.parts.headers.insert(BACKTEST_ID, id.clone());
        to_partition(state, p, asked)
    }))
    .await;
    for answer in rest {
        if answer.status().is_success() {
            continue;
        }
        let path = format!("{}/{}/cancel", held.parts.uri.path(), started.id);
        let cancel = derived(&held, Method::POST, &path, bytes::Bytes::new());
        futures::future::join_all(
            (0..state.directory.partitions()).map(|p| to_partition(state, p, cancel.clone())),
        )
        .await;
        return answer;
    }
    let path = format!("{}/{}", held.parts.uri.path(), started.id);
    match job(
        state,
        &derived(&held, Method::GET, &path, bytes::Bytes::new()),
    )
    .await
    {
        Ok(backtest) => (StatusCode::ACCEPTED, axum::Json(backtest)).into_response(),
        Err(response) => response,
    }
}

/// `GET /v1/journeys/{name}/backtests/{id}`: every partition's part read as one.
pub(super) async fn get(state: &ClusterState, held: Held) -> Response {
    match job(state, &held).await {
        Ok(backtest) => axum::Json(backtest).into_response(),
        Err(response) => response,
    }
}

/// `POST /v1/journeys/{name}/backtests/{id}/cancel`: cancelled on every partition, then read.
pub(super) async fn cancel(state: &ClusterState, held: Held) -> Response {
    if let Err(response) = everywhere::<Backtest>(state, &held, |_| held.clone()).await {
        return response;
    }
    let path = held.parts.uri.path().trim_end_matches("/cancel").to_owned();
    get(
        state,
        derived(&held, Method::GET, &path, bytes::Bytes::new()),
    )
    .await
}

/// The backtest `held` (a `GET` of it) names, from every partition's part.
async fn job(state: &ClusterState, held: &Held) -> Result<Backtest, Response> {
    let parts: Vec<PartitionJob> = everywhere(state, held, |_| {
        let mut asked = held.clone();
        asked
            .parts
            .headers
            .insert(BACKTEST_PARTS, HeaderValue::from_static("1"));
        asked
    })
    .await?;
    gathered(parts).map_err(|why| {
        ApiError::new(StatusCode::CONFLICT, "backtest_not_gathered", why).into_response()
    })
}
