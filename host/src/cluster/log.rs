//! A partition's replicated log: the JetStream stream `WM_P<n>`, whose subject `wm.p<n>.in`
//! takes inputs from any node and whose subject `wm.p<n>.log` takes the owner's records, each
//! appended only if the appender had read the log to its end (`docs/SCALING.md` § "Leases and
//! fencing").
//!
//! Every append to `log` names the sequence of the record it follows, twice: as
//! `Nats-Expected-Last-Subject-Sequence`, which the stream checks (a stale owner's append is
//! refused once anybody appended after what it read), and as the header `Waymark-After`, which
//! readers check. The reader's check ([`Chain`]) makes the history every replica applies the
//! same linear one even if the server accepted two appends with the same expectation (a race
//! nats-server fixed in 2.9.20, nats-server#4320; Debian ships 2.9.10): a record whose
//! predecessor is not the record before it on the subject is skipped by everyone. Records also
//! carry the appender's lease epoch (`Waymark-Epoch`), and a record below the highest epoch
//! already applied is skipped, so nothing a fenced owner managed to append is applied.
//!
//! What a record holds is the layer above's business: this module moves opaque payloads, plus
//! the two records ownership needs, [`Kind::Took`] (a new owner's first record) and
//! [`Kind::Handover`].

use super::ClusterError;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use async_nats::HeaderMap;
use bytes::Bytes;
use std::time::Duration;

const EPOCH: &str = "Waymark-Epoch";
const AFTER: &str = "Waymark-After";
const KIND: &str = "Waymark-Kind";

/// The stream of `partition`.
pub fn stream_name(partition: u16) -> String {
    format!("WM_P{partition}")
}

/// The subject inputs to `partition` are published on.
pub fn input_subject(partition: u16) -> String {
    format!("wm.p{partition}.in")
}

/// The subject `partition`'s owner appends its records to.
pub fn log_subject(partition: u16) -> String {
    format!("wm.p{partition}.log")
}

/// What a record on the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// A new owner's first record: it read the log to its end and holds the epoch it carries.
    Took,
    /// An owner leaving gracefully; the payload names the node it hands over to.
    Handover,
    /// A record of the layer above (a batch's commit, timer firings, delivery attempts).
    Record,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Took => "took",
            Kind::Handover => "handover",
            Kind::Record => "record",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "took" => Kind::Took,
            "handover" => Kind::Handover,
            "record" => Kind::Record,
            _ => return None,
        })
    }
}

/// One record read back from a partition's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its stream sequence.
    pub seq: u64,
    /// The sequence of the record its appender had read last (0: the log was empty).
    pub after: u64,
    /// The appender's lease epoch.
    pub epoch: u64,
    /// What it is.
    pub kind: Kind,
    /// What it holds.
    pub payload: Bytes,
}

/// Why an append was not made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The log has records after the one the appender read: another node appended (a new
    /// owner's `Took`, or its records). The appender no longer owns the partition.
    #[error("partition {0}'s log moved on: another owner appended")]
    Fenced(u16),
    /// Anything else (no stream leader yet, a timeout): the append may or may not have been
    /// made; read the log before trying again.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The appender's lease guard ran out (or was fenced) before the append: nothing was sent.
    #[error("the lease of partition {0} ran out")]
    LeaseExpired(u16),
}

/// A partition's stream, opened (and created if missing) on a JetStream context.
#[derive(Clone)]
pub struct PartitionLog {
    js: jetstream::Context,
    stream: stream::Stream,
    partition: u16,
    log_subject: String,
}

impl std::fmt::Debug for PartitionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartitionLog")
            .field("stream", &self.stream.cached_info().config.name)
            .finish()
    }
}

impl PartitionLog {
    /// Opens partition `partition`'s stream, creating it with `replicas` copies on file storage
    /// when it does not exist.
    pub async fn open(
        js: &jetstream::Context,
        partition: u16,
        replicas: usize,
    ) -> Result<PartitionLog, ClusterError> {
        let config = stream::Config {
            name: stream_name(partition),
            description: Some(format!("Waymark partition {partition}: inputs and records")),
            subjects: vec![input_subject(partition), log_subject(partition)],
            num_replicas: replicas,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            // Inputs are deduplicated by `Nats-Msg-Id` within this window (ingest's retries).
            duplicate_window: Duration::from_secs(120),
            // Reads of a record by sequence may be answered by any replica.
            allow_direct: true,
            ..Default::default()
        };
        let stream = super::stream(js, config, "open a partition's stream").await?;
        Ok(PartitionLog {
            js: js.clone(),
            stream,
            partition,
            log_subject: log_subject(partition),
        })
    }

    /// The partition.
    pub fn partition(&self) -> u16 {
        self.partition
    }

    /// Which incarnation of the partition's stream this is: its creation time in nanoseconds.
    /// A stream deleted and made again (a NATS cluster rebuilt) has another history under the
    /// same sequence numbers; a copy of the old one must not follow the new one.
    pub fn identity(&self) -> i128 {
        self.stream.cached_info().created.unix_timestamp_nanos()
    }

    /// Purges the records before sequence `before` from the log subject (what a snapshot
    /// covers). A reader whose position is before them finds the record after its gap
    /// [`Verdict::Missing`] and starts again from the snapshot.
    pub async fn purge_before(&self, before: u64) -> Result<u64, ClusterError> {
        let purged = self
            .stream
            .purge()
            .filter(self.log_subject.clone())
            .sequence(before)
            .await
            .map_err(|e| ClusterError::nats("purge a partition's log", e))?;
        Ok(purged.purged)
    }

    /// Appends a record after the record `after` (0 when the appender read an empty log), as
    /// epoch `epoch`; answers its sequence. [`AppendError::Fenced`] when the log has moved on.
    ///
    /// This checks no lease: the caller checks its [`super::lease::Guard`] first. The
    /// conditional append is what holds when that check passed and the node then paused past
    /// its lease: once the new owner's `Took` is in, the old owner's expectation is stale.
    pub async fn append(
        &self,
        epoch: u64,
        after: u64,
        kind: Kind,
        payload: Bytes,
    ) -> Result<u64, AppendError> {
        let mut headers = HeaderMap::new();
        headers.insert(EPOCH, epoch.to_string().as_str());
        headers.insert(AFTER, after.to_string().as_str());
        headers.insert(KIND, kind.as_str());
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .expected_last_subject_sequence(after);
        let ack = self
            .js
            .send_publish(self.log_subject.clone(), publish)
            .await
            .map_err(|e| ClusterError::nats("append to a partition's log", e))?
            .await;
        match ack {
            Ok(ack) => Ok(ack.sequence),
            Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                Err(AppendError::Fenced(self.partition))
            }
            Err(e) => Err(ClusterError::nats("append to a partition's log", e).into()),
        }
    }

    /// Publishes an input (an accepted event, a forwarded trigger) with `id` as its
    /// `Nats-Msg-Id`, so a retried publish within the stream's duplicate window is stored once.
    /// Answers its sequence and whether the stream found it a duplicate.
    pub async fn publish_input(
        &self,
        id: &str,
        payload: Bytes,
    ) -> Result<(u64, bool), ClusterError> {
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .message_id(id);
        let ack = self
            .js
            .send_publish(input_subject(self.partition), publish)
            .await
            .map_err(|e| ClusterError::nats("publish an input", e))?
            .await
            .map_err(|e| ClusterError::nats("publish an input", e))?;
        Ok((ack.sequence, ack.duplicate))
    }

    /// The records after sequence `after`, in order, at most `limit` of them, read from the
    /// stream's leader (so a reader sees every record acknowledged before it asked; a replica's
    /// direct get may lag).
    pub async fn read_after(&self, after: u64, limit: usize) -> Result<Vec<Entry>, ClusterError> {
        let mut entries = Vec::new();
        let mut next = after + 1;
        while entries.len() < limit {
            let message = match self
                .stream
                .get_first_raw_message_by_subject(&self.log_subject, next)
                .await
            {
                Ok(message) => message,
                Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(ClusterError::nats("read a partition's log", e)),
            };
            let entry = decode(&message)?;
            next = entry.seq + 1;
            entries.push(entry);
        }
        Ok(entries)
    }

    /// Whether the record this appender just got acknowledged at `seq`, appended after `after`,
    /// is the one every reader applies: no other record lies between the two on the subject.
    /// A server that checks expectations serially (nats-server ≥ 2.9.20) never stores two
    /// records after the same one; 2.9.10 does when appends race (nats-server#4320), and then
    /// only the first counts ([`Chain`]).
    pub async fn is_next(&self, after: u64, seq: u64) -> Result<bool, ClusterError> {
        match self.read_after(after, 1).await?.first() {
            Some(first) if first.seq == seq => Ok(true),
            Some(first) if first.seq < seq => Ok(false),
            // Nothing up to an acknowledged record: the leader answering has not applied it yet.
            _ => Err(ClusterError::Lagging(self.partition)),
        }
    }

    /// The sequence of the last record on the log (0 when it has none).
    pub async fn last(&self) -> Result<u64, ClusterError> {
        match self
            .stream
            .get_last_raw_message_by_subject(&self.log_subject)
            .await
        {
            Ok(message) => Ok(message.sequence),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(e) => Err(ClusterError::nats("read a partition's log", e)),
        }
    }
}

fn decode(message: &jetstream::message::StreamMessage) -> Result<Entry, ClusterError> {
    let number = |name: &str| -> Result<u64, ClusterError> {
        message
            .headers
            .get(name)
            .and_then(|v| v.as_str().parse().ok())
            .ok_or_else(|| {
                ClusterError::Corrupt(format!(
                    "record {} has no valid {name} header",
                    message.sequence
                ))
            })
    };
    let kind = message
        .headers
        .get(KIND)
        .and_then(|v| Kind::parse(v.as_str()))
        .ok_or_else(|| {
            ClusterError::Corrupt(format!(
                "record {} has no valid {KIND} header",
                message.sequence
            ))
        })?;
    Ok(Entry {
        seq: message.sequence,
        after: number(AFTER)?,
        epoch: number(EPOCH)?,
        kind,
        payload: message.payload.clone(),
    })
}

/// What a reader does with the next record of a log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Verdict {
    /// Part of the history: apply it.
    Apply,
    /// Its appender had not read the record before it: a second append accepted with the same
    /// expectation. Every reader skips it.
    NotAfterPrevious,
    /// Appended under an epoch below one already applied: a fenced owner's. Every reader skips
    /// it.
    StaleEpoch,
    /// Its predecessor is a record this reader never read: the records before it were purged
    /// (after a snapshot). The reader cannot go on from where it stands; it must start again
    /// from the snapshot. The chain does not move past it.
    Missing,
}

/// A reader's position in a partition's log: every replica that feeds the same records through
/// [`Chain::judge`] applies the same ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chain {
    /// The sequence of the last record read (applied or skipped).
    pub previous: u64,
    /// The highest epoch among the records applied.
    pub epoch: u64,
}

impl Chain {
    /// Judges the next record on the subject (records must come in sequence order) and moves
    /// past it.
    ///
    /// A record's predecessor is always a record before it on the subject, so it is never
    /// after the last one read unless records were missed ([`Verdict::Missing`]).
    pub fn judge(&mut self, entry: &Entry) -> Verdict {
        if entry.after > self.previous {
            return Verdict::Missing;
        }
        let verdict = if entry.after != self.previous {
            Verdict::NotAfterPrevious
        } else if entry.epoch < self.epoch {
            Verdict::StaleEpoch
        } else {
            self.epoch = entry.epoch;
            Verdict::Apply
        };
        self.previous = entry.seq;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, after: u64, epoch: u64) -> Entry {
        Entry {
            seq,
            after,
            epoch,
            kind: Kind::Record,
            payload: Bytes::new(),
        }
    }

    #[test]
    fn a_linear_history_is_applied_whole() {
        let mut chain = Chain::default();
        for (seq, after) in [(3, 0), (7, 3), (8, 7)] {
            assert_eq!(chain.judge(&entry(seq, after, 5)), Verdict::Apply);
        }
        assert_eq!(
            chain,
            Chain {
                previous: 8,
                epoch: 5
            }
        );
    }

    #[test]
    fn a_second_record_with_the_same_predecessor_is_skipped_and_the_history_goes_on() {
        // Two appends both expecting 3: the stream (2.9.10's race) stored both, 4 then 5. Every
        // reader applies 4, skips 5, and applies whatever the stream accepted after 5.
        let mut chain = Chain::default();
        assert_eq!(chain.judge(&entry(3, 0, 1)), Verdict::Apply);
        assert_eq!(chain.judge(&entry(4, 3, 1)), Verdict::Apply);
        assert_eq!(chain.judge(&entry(5, 3, 2)), Verdict::NotAfterPrevious);
        assert_eq!(chain.judge(&entry(6, 5, 2)), Verdict::Apply);
        assert_eq!(chain.epoch, 2);
    }

    #[test]
    fn a_record_after_one_never_read_is_missing_its_history_and_the_chain_stays() {
        // Records 1..=5 purged; a fresh reader's first record names 5 as its predecessor.
        let mut chain = Chain::default();
        assert_eq!(chain.judge(&entry(6, 5, 3)), Verdict::Missing);
        assert_eq!(chain, Chain::default());
        // From a snapshot covering 5, it applies.
        let mut chain = Chain {
            previous: 5,
            epoch: 3,
        };
        assert_eq!(chain.judge(&entry(6, 5, 3)), Verdict::Apply);
    }

    #[test]
    fn records_under_an_older_epoch_are_skipped_after_a_newer_one() {
        let mut chain = Chain::default();
        assert_eq!(chain.judge(&entry(1, 0, 10)), Verdict::Apply);
        assert_eq!(chain.judge(&entry(2, 1, 12)), Verdict::Apply);
        assert_eq!(chain.judge(&entry(3, 2, 10)), Verdict::StaleEpoch);
        assert_eq!(chain.judge(&entry(4, 3, 12)), Verdict::Apply);
    }
}
