//! A running partition's forwarder (issue 16, `store/forwards.rs`): sends the triggers its
//! commits queued for other partitions' customers to those partitions, in order, exactly once.
//!
//! A pass numbers what was committed since the last one (one transaction), flushes — so only
//! what the partition's log has is ever sent — then sends each target its numbered forwards
//! in order, a batch at a time, through the node's front, and removes what the target
//! acknowledged as taken. A target that does not answer (an owner changing) is tried again at
//! the next pass; the others are not held up by it. The forwarder runs with its partition's
//! host and stops with it; a new owner's copy holds what was not yet sent, and sends it.

use crate::api::cluster::ClusterState;
use crate::host::Host;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use waymark_api::cluster::{Forward, Forwards};

/// How often a pass runs when nothing asks for one.
const EVERY: Duration = Duration::from_millis(200);

/// Forwards counted for the waiting gauge, at most.
const COUNTED: usize = 1_000_000;

/// Forwards numbered in one transaction, and sent in one request.
const BATCH: usize = 512;

/// Runs `partition`'s forwarder until `stop`.
pub(super) async fn run(
    host: Arc<Host>,
    front: ClusterState,
    partition: u16,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = host.store.forwards_written() => {}
            _ = stop.cancelled() => return,
        }
        // A partition whose lease ran out sends nothing (its next owner will).
        if !host.may_act() {
            continue;
        }
        let ticket = host.store.forwarding_pass();
        let passed = pass(&host, &front, partition).await;
        if let Ok(waiting) = host.store.forwards_waiting(COUNTED) {
            host.metrics
                .forwards_waiting
                .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        }
        match passed {
            Ok(()) => {
                host.store.forwarding_passed(ticket);
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(partition, %error, "forwards to other partitions wait");
                }
                failing = true;
            }
        }
    }
}

/// One pass: number, flush, send (see the module's documentation).
async fn pass(host: &Host, front: &ClusterState, partition: u16) -> Result<(), String> {
    let store = &host.store;
    loop {
        let numbered = store.number_forwards(BATCH).map_err(|e| e.to_string())?;
        for shard in numbered.shards {
            host.wake_shard(shard);
        }
        if numbered.read < BATCH {
            break;
        }
    }
    let targets = store.forward_targets().map_err(|e| e.to_string())?;
    if targets.is_empty() {
        return Ok(());
    }
    // Only what the log has is sent.
    store.flush().await.map_err(|e| e.to_string())?;
    let mut first_error = None;
    for target in targets {
        if let Err(error) = send_all(host, front, partition, target).await {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Sends `target` every forward numbered for it, in order.
async fn send_all(
    host: &Host,
    front: &ClusterState,
    partition: u16,
    target: u16,
) -> Result<(), String> {
    let store = &host.store;
    loop {
        let batch = store
            .numbered_forwards(target, BATCH)
            .map_err(|e| e.to_string())?;
        let Some(&(last, _)) = batch.last() else {
            return Ok(());
        };
        let full = batch.len() == BATCH;
        let forwards = batch
            .into_iter()
            .map(|(n, trigger)| {
                serde_json::to_value(trigger)
                    .map(|trigger| Forward { n, trigger })
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let forwards = Forwards {
            source: partition,
            forwards,
        };
        let through = front.send_forwards(target, &forwards).await?;
        let taken = forwards.forwards.iter().filter(|f| f.n <= through).count();
        host.metrics.forwards_sent.inc_by(taken as u64);
        store
            .forwards_taken(target, through)
            .map_err(|e| e.to_string())?;
        if through < last {
            return Err(format!(
                "partition {target} took forwards through {through} of {last}"
            ));
        }
        if !full {
            return Ok(());
        }
    }
}
