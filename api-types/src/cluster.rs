//! `GET /v1/admin/cluster` (admin, issue 16): the cluster as the answering node reads it —
//! its nodes, and for each partition its owner, lease epoch, placement, log and standbys.

use serde::{Deserialize, Serialize};

/// Whether the server runs alone or as a node of a cluster (`waymark serve --cluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ClusterMode {
    /// One process, its own data directory: no nodes, no partitions.
    Single,
    /// A node of a cluster over NATS JetStream.
    Cluster,
}

/// The answer to `GET /v1/admin/cluster`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClusterStatus {
    /// Single or cluster.
    pub mode: ClusterMode,
    /// The answering node's id (`null` on a single server).
    pub node: Option<String>,
    /// The cluster's partition count (0 on a single server).
    pub partition_count: u16,
    /// The live nodes.
    pub nodes: Vec<ClusterNode>,
    /// Each partition.
    pub partitions: Vec<PartitionStatus>,
}

/// A live node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ClusterNode {
    pub id: String,
    /// Where it serves HTTP.
    pub url: Option<String>,
    /// The partitions whose lease it holds.
    pub holds: Vec<u16>,
}

/// A partition of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PartitionStatus {
    pub partition: u16,
    /// The node holding its lease (`null` during a takeover).
    pub owner: Option<String>,
    /// The lease's epoch (its fencing token).
    pub epoch: Option<u64>,
    /// Where the placement over the live nodes puts it: the owner moves there once that node's
    /// copy caught up.
    pub preferred_owner: Option<String>,
    /// The node that takes it over if its owner dies.
    pub preferred_standby: Option<String>,
    /// The sequence of the last record on its log.
    pub log_last: u64,
    /// The nodes keeping a copy without owning it, and how far each has read the log.
    pub standbys: Vec<StandbyStatus>,
}

/// A node's copy of a partition it does not own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StandbyStatus {
    pub node: String,
    /// The last record of the log the copy applied.
    pub read_through: u64,
    /// Records of the log the copy has not read yet.
    pub lag: u64,
}

/// `POST /v1/admin/cluster/forwards` (admin, node to node): triggers one partition's commits
/// queued for customers of the partition this is sent to (`docs/SCALING.md`, "Crossing
/// partitions"), in order of their numbers. Sent by the source partition's owner; numbers
/// only grow, so one taken before is dropped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Forwards {
    /// The partition whose commits queued them.
    pub source: u16,
    pub forwards: Vec<Forward>,
}

/// One forward: its number in the source partition, and the trigger as the host encodes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Forward {
    pub n: u64,
    pub trigger: serde_json::Value,
}

/// The answer to [`Forwards`]: every forward from the source numbered up to `taken_through`
/// is in this partition's queue, durably.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ForwardsTaken {
    pub taken_through: u64,
}
