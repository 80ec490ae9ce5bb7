//! Who is in the cluster (issue 16): the entries nodes keep in the bucket `wm-nodes`
//! ([`Member`]), read without a consumer, and [`Directory`], the reader the HTTP side uses to
//! find a partition's owner and to answer `GET /v1/admin/cluster`.

use super::lease::Leases;
use super::node::NODES;
use super::{ClusterError, Nats};
use async_nats::jetstream::kv;
use futures::TryStreamExt as _;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The entries of the nodes whose entry in `stream` (the members bucket's) has not expired
/// nor been deleted, each with its stream sequence (a new one at every beat): the stream's
/// subjects (one request; not the client's `keys()`, which creates a consumer per call) and
/// each one's last entry from the stream's leader, leaving out the delete markers of nodes
/// that left.
pub(super) async fn live_members(
    stream: &async_nats::jetstream::stream::Stream,
) -> Result<Vec<(u64, Member)>, ClusterError> {
    let prefix = format!("$KV.{NODES}.");
    let subjects: Vec<(String, usize)> = stream
        .info_with_subjects(format!("{prefix}>"))
        .await
        .map_err(|e| ClusterError::nats("list the nodes", e))?
        .try_collect()
        .await
        .map_err(|e| ClusterError::nats("list the nodes", e))?;
    let mut members = Vec::with_capacity(subjects.len() + 1);
    for (subject, _) in subjects {
        let Some(id) = subject.strip_prefix(&prefix) else {
            continue;
        };
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(entry) if !super::is_delete_marker(&entry.headers) => {
                match rmp_serde::from_slice::<Member>(&entry.payload) {
                    Ok(member) => members.push((entry.sequence, member)),
                    Err(e) => tracing::warn!(node = id, error = %e, "an unreadable node entry"),
                }
            }
            Ok(_) => {}
            // Expired between the listing and the read.
            Err(e)
                if e.kind()
                    == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {}
            Err(e) => return Err(ClusterError::nats("read a node's entry", e)),
        }
    }
    Ok(members)
}

/// What a node says of itself in `wm-nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: String,
    /// The partitions it holds the leases of.
    pub holds: Vec<u16>,
    /// Where it serves HTTP, for the requests other nodes pass on to it.
    #[serde(default)]
    pub url: Option<String>,
    /// For each partition it stands by for, the last record of the log its copy read.
    #[serde(default)]
    pub standby_at: BTreeMap<u16, u64>,
}

/// Who is in the cluster and who holds what, as any node reads it: for passing requests on to
/// a partition's owner and for `GET /v1/admin/cluster`.
#[derive(Debug, Clone)]
pub struct Directory {
    pub(super) nats: Nats,
    pub(super) leases: Leases,
    pub(super) members: kv::Store,
    pub(super) members_stream: async_nats::jetstream::stream::Stream,
    pub(super) partitions: u16,
}

impl Directory {
    /// The partition count.
    pub fn partitions(&self) -> u16 {
        self.partitions
    }

    /// The live nodes' entries (those not expired nor deleted).
    pub async fn members(&self) -> Result<Vec<Member>, ClusterError> {
        Ok(live_members(&self.members_stream)
            .await?
            .into_iter()
            .map(|(_, m)| m)
            .collect())
    }

    /// Who holds `partition`'s lease, and where that node serves HTTP.
    pub async fn owner(
        &self,
        partition: u16,
    ) -> Result<Option<(super::lease::Holder, Option<String>)>, ClusterError> {
        let Some(holder) = self.leases.holder(partition).await? else {
            return Ok(None);
        };
        let url = match self
            .members
            .get(&holder.node)
            .await
            .map_err(|e| ClusterError::nats("read a node's entry", e))?
        {
            Some(value) => rmp_serde::from_slice::<Member>(&value)
                .ok()
                .and_then(|m| m.url),
            None => None,
        };
        Ok(Some((holder, url)))
    }

    /// The sequence of the last record on `partition`'s log (0 when empty).
    pub async fn log_last(&self, partition: u16) -> Result<u64, ClusterError> {
        self.nats.log(partition).await?.last().await
    }
}
