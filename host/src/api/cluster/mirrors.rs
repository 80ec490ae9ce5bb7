//! A global write's answer waits for the other partitions' mirrors (issue 16,
//! [`crate::cluster::mirror`]): where the mirrors of the partitions this node runs stand, and
//! the node-to-node request that waits for one.

use super::{same_digest, to_partition, ClusterState, Held};
use crate::api::error::ApiError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// The path a node asks another's partition's mirror on: `/{partition}/{through}` follow.
const MIRRORED: &str = "/v1/admin/cluster/mirrored/";

/// How long a global write's answer waits for the other partitions' mirrors.
const MIRROR_WAIT: Duration = Duration::from_secs(3);

/// Where the mirrors of the partitions this node runs stand, and a way to ask them to read now.
#[derive(Clone)]
pub struct Mirrors {
    positions: watch::Sender<BTreeMap<u16, u64>>,
    poke: Arc<Notify>,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            positions: watch::channel(BTreeMap::new()).0,
            poke: Arc::default(),
        }
    }
}

impl Mirrors {
    /// Records that `partition`'s mirror has read partition 0's log through `position`.
    pub fn set(&self, partition: u16, position: u64) {
        self.positions.send_modify(|p| {
            p.insert(partition, position);
        });
    }

    /// Forgets `partition`'s mirror (the partition no longer runs here).
    pub fn remove(&self, partition: u16) {
        self.positions.send_modify(|p| {
            p.remove(&partition);
        });
    }

    /// Resolves when someone waits for a mirror to read on.
    pub async fn poked(&self) {
        self.poke.notified().await;
    }

    /// Waits, up to `patience`, until `partition`'s mirror has read through `through`; answers
    /// where it stands.
    async fn wait(&self, partition: u16, through: u64, patience: Duration) -> Option<u64> {
        let mut positions = self.positions.subscribe();
        self.poke.notify_waiters();
        let reached = tokio::time::timeout(
            patience,
            positions.wait_for(|p| p.get(&partition).is_some_and(|at| *at >= through)),
        )
        .await;
        match reached {
            Ok(Ok(p)) => p.get(&partition).copied(),
            _ => None,
        }
    }
}

/// After a global write answered by partition 0: waits until every other partition's mirror
/// has read partition 0's log through its end as it stands now (which holds the write), each
/// asked on the node running it. A partition that does not answer in time is logged, not
/// waited for: the write is durable, and its next owner mirrors it before it runs.
pub(super) async fn mirrored_everywhere(state: &ClusterState) {
    let through = match state.directory.log_last(0).await {
        Ok(last) => last,
        Err(error) => {
            tracing::warn!(%error, "a global write's answer could not wait for the mirrors");
            return;
        }
    };
    let asked = futures::future::join_all((1..state.directory.partitions()).map(|p| {
        let path = format!("{MIRRORED}{p}/{through}");
        let mut parts = axum::http::Request::get(path)
            .body(())
            .unwrap_or_default()
            .into_parts()
            .0;
        if let Ok(token) = HeaderValue::from_str(&format!("Bearer {}", state.admin_token)) {
            parts.headers.insert(header::AUTHORIZATION, token);
        }
        async move {
            let held = Held {
                parts,
                body: bytes::Bytes::new(),
            };
            (p, to_partition(state, p, held).await.status())
        }
    }))
    .await;
    for (partition, status) in asked {
        if !status.is_success() {
            tracing::warn!(partition, %status, through, "a partition's mirror did not catch up in time");
        }
    }
}

/// `GET /v1/admin/cluster/mirrored/{partition}/{through}` on the node running `partition`
/// (admin): waits until its mirror has read partition 0's log through `through`.
pub(super) async fn mirrored_here(state: &ClusterState, partition: u16, held: &Held) -> Response {
    let given = crate::api::auth::bearer(&held.parts.headers).map(crate::api::auth::digest);
    if given.is_none_or(|d| !same_digest(&d, &state.admin_digest)) {
        return ApiError::unauthorized().into_response();
    }
    let through = held
        .parts
        .uri
        .path()
        .rsplit('/')
        .next()
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(u64::MAX);
    match state.mirrors.wait(partition, through, MIRROR_WAIT).await {
        Some(at) => {
            axum::Json(serde_json::json!({ "partition": partition, "through": at })).into_response()
        }
        None => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "mirror_behind",
            format!(
                "partition {partition}'s mirror has not read partition 0's log through {through}"
            ),
        )
        .into_response(),
    }
}

/// Whether a request for `path` asks a partition's mirror ([`mirrored_here`]).
pub(super) fn is_mirrored_path(path: &str) -> bool {
    path.starts_with(MIRRORED)
}
