//! Liveness and Prometheus metrics: open to anyone.

use super::prelude::*;
use axum::http::header;
use waymark_api::health::Health;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let host = &state.host;
    let wall = crate::clock::system_now();
    let read = || host.store.backlog(host.clock.now(), wall);
    if let Err(error) = host.metrics.refresh_backlog(wall, read) {
        tracing::warn!(%error, "reading the backlog for /metrics failed");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.host.metrics.encode(),
    )
}
