//! Cluster mode's HTTP front (issue 16, [`crate::cluster::serve`]): every node accepts every
//! request. The node running the partition answers it with the API's router; any other passes
//! it on to that node, unchanged but for a `Waymark-Forwarded-By` header naming itself (a
//! request passed on once is never passed on again), and answers what the owner answered.
//! While no node runs the partition (a takeover or handover under way) a request waits for one,
//! up to 5 s, then is answered `503` with `Retry-After`: an event retried with its id is taken
//! once. `GET /v1/admin/cluster` is answered by each node from the cluster's own records, and
//! `GET /metrics` by each node for itself (its view of the cluster, and the metrics of the
//! partition it runs, labelled with it).

use super::auth::{bearer, digest};
use super::error::ApiError;
use super::limits::BODY_TIMEOUT;
use crate::cluster::node::Directory;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge};
use prometheus_client::registry::Registry;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tower::ServiceExt as _;

/// The header naming the node that passed a request on.
const FORWARDED_BY: &str = "waymark-forwarded-by";

/// The header of a `503` answered because the node does not run the partition: the node that
/// passed the request on asks again who does.
const NOT_RUNNING: &str = "waymark-not-running";

/// How long a request waits for a node to run the partition.
const WAIT: Duration = Duration::from_secs(5);

/// The largest body passed on (the largest any route takes: a component upload).
const MAX_PASSED_ON: usize = 64 << 20;

/// The API of the partition this node runs, when it runs one.
#[derive(Clone, Default)]
pub struct Active(Arc<RwLock<Option<Router>>>);

impl Active {
    /// Sets (or, with `None`, clears) what answers requests on this node.
    pub fn set(&self, router: Option<Router>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = router;
    }

    fn get(&self) -> Option<Router> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the front needs.
#[derive(Clone)]
pub struct ClusterState {
    directory: Directory,
    active: Active,
    node: Arc<str>,
    admin_digest: [u8; 32],
    /// Connections to the other nodes, kept alive between requests.
    client: Client<HttpConnector, Body>,
    counters: FrontCounters,
    /// The node's own counts (takeovers, handovers, snapshots...).
    node_counters: crate::cluster::node::NodeCounters,
}

/// What the front counts, for this node's `/metrics`.
#[derive(Clone, Default)]
struct FrontCounters {
    /// Requests passed on to the node running the partition.
    passed_on: Counter,
    /// Requests answered `503` because no node ran the partition in time.
    unavailable: Counter,
}

impl ClusterState {
    pub fn new(
        directory: Directory,
        active: Active,
        node: &str,
        admin_digest: [u8; 32],
        node_counters: crate::cluster::node::NodeCounters,
    ) -> Self {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build_http();
        ClusterState {
            directory,
            active,
            node: node.into(),
            admin_digest,
            client,
            counters: FrontCounters::default(),
            node_counters,
        }
    }
}

/// The front's routes: the cluster's status, and everything else answered or passed on.
pub fn router(state: ClusterState) -> Router {
    Router::new()
        .route("/v1/admin/cluster", get(status))
        .route("/metrics", get(metrics))
        .fallback(dispatch)
        .with_state(state)
}

fn unavailable(message: impl Into<String>) -> Response {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        .with_headers(vec![(header::RETRY_AFTER, "1".into())])
        .into_response()
}

/// A request's head and body, kept so it can be passed on again.
struct Held {
    parts: axum::http::request::Parts,
    body: bytes::Bytes,
}

impl Held {
    fn request(&self) -> Request {
        Request::from_parts(self.parts.clone(), Body::from(self.body.clone()))
    }
}

/// Answers a request on this node, or passes it on to the node running the partition. While
/// no node runs it (a takeover or a handover under way, usually well under a second after the
/// lease moved), the request waits, up to [`WAIT`], and is then answered `503`.
async fn dispatch(State(state): State<ClusterState>, request: Request) -> Response {
    // The usual case, this node running the partition: the request goes to the API as it
    // came, its body read under the API's own limits and timeout.
    if let Some(api) = state.active.get() {
        return answer(api, request).await;
    }
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_PASSED_ON));
    let body = match read.await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
                .into_response()
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the body did not arrive in time",
            )
            .into_response()
        }
    };
    let held = Held { parts, body };
    let passed_on = held.parts.headers.contains_key(FORWARDED_BY);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(api) = state.active.get() {
            return answer(api, held.request()).await;
        }
        // A request passed on once is never passed on again: it waits for this node.
        let elsewhere = if passed_on {
            None
        } else {
            match state.directory.owner(0).await {
                Ok(Some((holder, Some(url)))) if *holder.node != *state.node => {
                    Some((holder.node, url))
                }
                _ => None,
            }
        };
        if let Some((node, url)) = elsewhere {
            // A node paused or cut off answers nothing: once the lease has moved on, the
            // request goes to the new owner (the old one, if it ever reads it, can no longer
            // make it durable).
            let answered = tokio::select! {
                response = forward(&state, &url, held.request()) => Some(response),
                () = moved_from(&state, &node) => None,
            };
            match answered {
                // The node had just lost the partition: ask who runs it now.
                Some(response)
                    if !response.headers().contains_key(NOT_RUNNING)
                        || tokio::time::Instant::now() >= deadline =>
                {
                    return response
                }
                _ => {}
            }
        } else if tokio::time::Instant::now() >= deadline {
            state.counters.unavailable.inc();
            let mut response = unavailable(if passed_on {
                "passed on to this node, which does not run the partition (any more)"
            } else {
                "no node runs the partition at the moment; a takeover is under way"
            });
            response
                .headers_mut()
                .insert(NOT_RUNNING, HeaderValue::from_static("1"));
            return response;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resolves once the partition's lease is no longer `node`'s.
async fn moved_from(state: &ClusterState, node: &str) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match state.directory.owner(0).await {
            Ok(Some((holder, _))) if holder.node == node => {}
            Ok(_) => return,
            Err(_) => {}
        }
    }
}

/// The partition's API's answer to `request`.
async fn answer(api: Router, request: Request) -> Response {
    match api.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Passes `request` on to the node at `url` and answers what it answers.
async fn forward(state: &ClusterState, url: &str, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match format!("{url}{path}").parse::<Uri>() {
        Ok(uri) => uri,
        Err(e) => return unavailable(format!("the owner's address {url} is not usable: {e}")),
    };
    parts.headers.remove(header::HOST);
    if let Ok(node) = HeaderValue::from_str(&state.node) {
        parts.headers.insert(FORWARDED_BY, node);
    }
    state.counters.passed_on.inc();
    match state.client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Body::new),
        Err(e) => unavailable(format!(
            "the node running the partition did not answer: {e}"
        )),
    }
}

/// `GET /v1/admin/cluster`: the nodes, and for each partition its owner, epoch, where the
/// placement puts it, the last record of its log and how far each standby's copy has read.
async fn status(
    State(state): State<ClusterState>,
    headers: HeaderMap,
) -> Result<Json<waymark_api::cluster::ClusterStatus>, ApiError> {
    let given = bearer(&headers)
        .map(digest)
        .ok_or_else(ApiError::unauthorized)?;
    let same = given
        .iter()
        .zip(state.admin_digest.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0;
    if !same {
        return Err(ApiError::unauthorized());
    }
    let status = read_status(&state).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the cluster's records cannot be read: {e}"),
        )
    })?;
    Ok(Json(status))
}

/// The cluster as this node reads its records.
async fn read_status(
    state: &ClusterState,
) -> Result<waymark_api::cluster::ClusterStatus, crate::cluster::ClusterError> {
    use waymark_api::cluster::{
        ClusterMode, ClusterNode, ClusterStatus, PartitionStatus, StandbyStatus,
    };
    let members = state.directory.members().await?;
    let live: Vec<String> = members.iter().map(|m| m.id.clone()).collect();
    let count = state.directory.partitions();
    let placed = crate::cluster::partitions::placements(&live, count);
    let mut partitions = Vec::new();
    for partition in 0..count {
        let place = placed.iter().find(|p| p.partition == partition);
        let owner = state.directory.owner(partition).await?;
        let last = state.directory.log_last(partition).await?;
        let standbys = members
            .iter()
            .filter_map(|m| {
                m.standby_at.get(&partition).map(|at| StandbyStatus {
                    node: m.id.clone(),
                    read_through: *at,
                    lag: last.saturating_sub(*at),
                })
            })
            .collect();
        partitions.push(PartitionStatus {
            partition,
            owner: owner.as_ref().map(|(h, _)| h.node.clone()),
            epoch: owner.as_ref().map(|(h, _)| h.epoch),
            preferred_owner: place.map(|p| p.owner.to_owned()),
            preferred_standby: place.and_then(|p| p.standby).map(str::to_owned),
            log_last: last,
            standbys,
        });
    }
    let nodes = members
        .into_iter()
        .map(|m| ClusterNode {
            id: m.id,
            url: m.url,
            holds: m.holds,
        })
        .collect();
    Ok(ClusterStatus {
        mode: ClusterMode::Cluster,
        node: Some(state.node.to_string()),
        partition_count: count,
        nodes,
        partitions,
    })
}

/// The partition label of this node's cluster series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    partition: String,
}

/// `GET /metrics` on a cluster node: answered by each node for itself, never passed on. The
/// node's view of the cluster (`waymark_cluster_*`: live nodes; per partition whether this node
/// holds it, the holder's epoch, the log's last record and how far behind this node's copy
/// is; requests passed on, and answered `503`; takeovers, handovers, leases lost, snapshots
/// written and failed, copies reopened and restored), then, while this node runs a partition, its
/// host's metrics, each sample labelled with the partition. The cluster's records unreadable
/// (NATS electing a leader) leave the view's gauges out, not the rest.
async fn metrics(State(state): State<ClusterState>) -> Response {
    let mut registry = Registry::with_prefix("waymark_cluster");
    registry.register(
        "requests_passed_on",
        "Requests this node passed on to the node running the partition",
        state.counters.passed_on.clone(),
    );
    registry.register(
        "requests_unavailable",
        "Requests this node answered 503 because no node ran the partition in time",
        state.counters.unavailable.clone(),
    );
    let node = &state.node_counters;
    for (name, help, counter) in [
        (
            "takeovers",
            "Partitions this node took over",
            &node.takeovers,
        ),
        (
            "handovers",
            "Partitions this node handed over to their preferred owner",
            &node.handovers,
        ),
        (
            "leases_lost",
            "Leases this node lost, or that ran out while renewals failed",
            &node.leases_lost,
        ),
        (
            "snapshots_written",
            "Snapshots this node's standby copies wrote",
            &node.snapshots,
        ),
        (
            "snapshot_failures",
            "Snapshots this node could not write",
            &node.snapshot_failures,
        ),
        (
            "copies_reopened",
            "Copies reopened where this node's last run left them",
            &node.copies_reopened,
        ),
        (
            "copies_restored",
            "Copies started from a snapshot or the log's start",
            &node.copies_restored,
        ),
    ] {
        registry.register(name, help, counter.clone());
    }
    match read_status(&state).await {
        Ok(status) => register_view(&mut registry, &status, &state.node),
        Err(error) => tracing::debug!(%error, "cluster metrics without the cluster's records"),
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    if let Some(api) = state.active.get() {
        let request = Request::get("/metrics").body(Body::empty());
        if let Ok(request) = request {
            let response = answer(api, request).await;
            if let Ok(body) = axum::body::to_bytes(response.into_body(), 16 << 20).await {
                // One exposition: this node's families, then the host's, one `# EOF`.
                if let Some(head) = text.strip_suffix("# EOF\n") {
                    text.truncate(head.len());
                }
                text.push_str(&String::from_utf8_lossy(&body));
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The gauges of this node's view of the cluster.
fn register_view(
    registry: &mut Registry,
    status: &waymark_api::cluster::ClusterStatus,
    node: &str,
) {
    let nodes = Gauge::<i64>::default();
    nodes.set(i64::try_from(status.nodes.len()).unwrap_or(i64::MAX));
    registry.register("nodes", "Live nodes in the cluster", nodes);
    let held = Family::<PartitionLabel, Gauge>::default();
    let epoch = Family::<PartitionLabel, Gauge>::default();
    let last = Family::<PartitionLabel, Gauge>::default();
    let lag = Family::<PartitionLabel, Gauge>::default();
    let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    for p in &status.partitions {
        let label = PartitionLabel {
            partition: p.partition.to_string(),
        };
        held.get_or_create(&label)
            .set(i64::from(p.owner.as_deref() == Some(node)));
        if let Some(e) = p.epoch {
            epoch.get_or_create(&label).set(gauge(e));
        }
        last.get_or_create(&label).set(gauge(p.log_last));
        if let Some(copy) = p.standbys.iter().find(|s| s.node == node) {
            lag.get_or_create(&label).set(gauge(copy.lag));
        }
    }
    registry.register(
        "partition_held",
        "1 while this node holds the partition's lease (runs it), else 0",
        held,
    );
    registry.register(
        "partition_epoch",
        "The epoch of the partition's current lease (whoever holds it)",
        epoch,
    );
    registry.register(
        "log_last_record",
        "The sequence of the last record on the partition's log",
        last,
    );
    registry.register(
        "copy_lag_records",
        "Records of the partition's log this node's copy (a standby's) has not read yet",
        lag,
    );
}
