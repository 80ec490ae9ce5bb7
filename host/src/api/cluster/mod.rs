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
use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tower::ServiceExt as _;

mod across;
mod backtests;
mod forwards;
mod gather;
mod ingest;
mod mirrors;
mod spread;
pub use across::{Across, Refused};
pub use backtests::{BACKTEST_ID, BACKTEST_PARTS};
pub use gather::{ReportParts, MIGRATION_ID, REPORT_PARTS};
pub use mirrors::Mirrors;

/// The header naming the node that passed a request on.
const FORWARDED_BY: &str = "waymark-forwarded-by";

/// The header naming the partition a request passed on is for (with a tag only nodes that
/// know the admin token make, [`ClusterState::partition_tag`]): the node it was passed on to
/// answers it for that partition, never spreading it again.
const PARTITION: &str = "waymark-partition";

/// The header of a `503` answered because the node does not run the partition: the node that
/// passed the request on asks again who does.
const NOT_RUNNING: &str = "waymark-not-running";

/// How long a request waits for a node to run the partition.
const WAIT: Duration = Duration::from_secs(5);

/// The largest body passed on (the largest any route takes: a component upload).
const MAX_PASSED_ON: usize = 64 << 20;

/// The APIs of the partitions this node runs.
#[derive(Clone, Default)]
pub struct Active(Arc<RwLock<BTreeMap<u16, Router>>>);

impl Active {
    /// Sets (or, with `None`, clears) what answers `partition`'s requests on this node.
    pub fn set(&self, partition: u16, router: Option<Router>) {
        let mut active = self.0.write().unwrap_or_else(PoisonError::into_inner);
        match router {
            Some(router) => active.insert(partition, router),
            None => active.remove(&partition),
        };
    }

    /// Clears every partition's API.
    pub fn clear(&self) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn get(&self, partition: u16) -> Option<Router> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .cloned()
    }

    /// The partitions this node runs.
    fn partitions(&self) -> Vec<u16> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }
}

/// What the front needs.
#[derive(Clone)]
pub struct ClusterState {
    directory: Directory,
    active: Active,
    /// Where this node's partitions' mirrors of partition 0 stand ([`crate::cluster::mirror`]).
    mirrors: Mirrors,
    node: Arc<str>,
    admin_digest: [u8; 32],
    /// The operator's admin token, which every node of a cluster is given: what a node shows
    /// another when it asks for something on its own behalf (a partition's mirror).
    admin_token: Arc<str>,
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
        mirrors: Mirrors,
        node: &str,
        admin_token: &str,
        node_counters: crate::cluster::node::NodeCounters,
    ) -> Self {
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_secs(30))
            .build_http();
        ClusterState {
            directory,
            active,
            mirrors,
            node: node.into(),
            admin_digest: digest(admin_token),
            admin_token: admin_token.into(),
            client,
            counters: FrontCounters::default(),
            node_counters,
        }
    }
}

impl ClusterState {
    /// `partition`, tagged so that another node knows a node of this cluster named it: the
    /// partition and a digest of it with the admin token.
    fn partition_tag(&self, partition: u16) -> String {
        let tag = digest(&format!("{}:{partition}", self.admin_token));
        format!("{partition}.{}", hex::encode(&tag[..16]))
    }

    /// The partition a request passed on by another node names, if its tag is right.
    fn named_partition(&self, headers: &HeaderMap) -> Option<u16> {
        let value = headers.get(PARTITION)?.to_str().ok()?;
        let partition: u16 = value.split_once('.')?.0.parse().ok()?;
        let expected = self.partition_tag(partition);
        same_digest(&digest(value), &digest(&expected)).then_some(partition)
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
#[derive(Clone)]
struct Held {
    parts: axum::http::request::Parts,
    body: bytes::Bytes,
}

impl Held {
    fn request(&self) -> Request {
        Request::from_parts(self.parts.clone(), Body::from(self.body.clone()))
    }
}

/// Answers a request: on this node, or passed on to the node running its partition, or, in a
/// cluster of several partitions, spread over them ([`spread::target`]).
async fn dispatch(State(state): State<ClusterState>, mut request: Request) -> Response {
    let partitions = state.directory.partitions();
    let target = match state.named_partition(request.headers()) {
        // Passed on by another node, for one partition: answered here for it (for the tenant
        // a node's dashboard acts for, if it names one).
        Some(partition) => {
            if let Some(caller) = across::caller_named(request.headers()) {
                request.extensions_mut().insert(caller);
            }
            spread::Target::One(partition)
        }
        None => {
            // What only a node may say to a partition, a client may not.
            request.headers_mut().remove(MIGRATION_ID);
            request.headers_mut().remove(BACKTEST_ID);
            request.headers_mut().remove(across::ACTING_FOR);
            spread::target(
                request.method(),
                request.uri().path(),
                request.headers(),
                partitions,
            )
        }
    };
    let spread::Target::One(partition) = target else {
        let held = match hold(request).await {
            Ok(held) => held,
            Err(response) => return response,
        };
        return spread::answer(&state, target, held).await;
    };
    // The usual case, this node running the partition: the request goes to the API as it
    // came, its body read under the API's own limits and timeout (a node's wait for a
    // partition's mirror is the front's own).
    if let Some(api) = state.active.get(partition) {
        if !mirrors::is_mirrored_path(request.uri().path()) {
            return answer(api, request).await;
        }
    }
    match hold(request).await {
        Ok(held) => to_partition(&state, partition, held).await,
        Err(response) => response,
    }
}

/// Reads a request's body, so it can be passed on (and on again).
async fn hold(request: Request) -> Result<Held, Response> {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_PASSED_ON));
    match read.await {
        Ok(Ok(body)) => Ok(Held { parts, body }),
        Ok(Err(e)) => Err(
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
                .into_response(),
        ),
        Err(_) => Err(ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "the body did not arrive in time",
        )
        .into_response()),
    }
}

/// Answers `held` on this node if it runs `partition`, or passes it on to the node that does.
/// While no node runs it (a takeover or a handover under way, usually well under a second
/// after the lease moved), the request waits, up to [`WAIT`], and is then answered `503`.
async fn to_partition(state: &ClusterState, partition: u16, held: Held) -> Response {
    let passed_on = held.parts.headers.contains_key(FORWARDED_BY);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(api) = state.active.get(partition) {
            if mirrors::is_mirrored_path(held.parts.uri.path()) {
                return mirrors::mirrored_here(state, partition, &held).await;
            }
            return answer(api, held.request()).await;
        }
        // A request passed on once is never passed on again: it waits for this node.
        let elsewhere = if passed_on {
            None
        } else {
            match state.directory.owner(partition).await {
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
                response = forward(state, partition, &url, held.request()) => Some(response),
                () = moved_from(state, partition, &node) => None,
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

/// Resolves once `partition`'s lease is no longer `node`'s.
async fn moved_from(state: &ClusterState, partition: u16, node: &str) {
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        match state.directory.owner(partition).await {
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
async fn forward(state: &ClusterState, partition: u16, url: &str, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Ok(named) = HeaderValue::from_str(&state.partition_tag(partition)) {
        parts.headers.insert(PARTITION, named);
    }
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
    if !same_digest(&given, &state.admin_digest) {
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

/// Whether two digests are equal, compared in constant time.
pub(super) fn same_digest(given: &[u8; 32], expected: &[u8; 32]) -> bool {
    given
        .iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
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
    // One exposition: this node's families, then the hosts', each family once.
    let mut expositions = vec![text];
    for partition in state.active.partitions() {
        let Some(api) = state.active.get(partition) else {
            continue;
        };
        let request = Request::get("/metrics").body(Body::empty());
        if let Ok(request) = request {
            let response = answer(api, request).await;
            if let Ok(body) = axum::body::to_bytes(response.into_body(), 16 << 20).await {
                expositions.push(String::from_utf8_lossy(&body).into_owned());
            }
        }
    }
    let text = gather::merge_expositions(&expositions);
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
