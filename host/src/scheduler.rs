//! Durable timers: pending timers live in the store ordered by due time; the scheduler sleeps
//! until the earliest is due (or until a timer is set, or a manual clock jumps), then moves every
//! due timer into its customer's inbox shard, so timers fire through the same path as events.
//! Audience watches (issue 12) with a due time fire the same way, from their own time index.
//! It also releases messages the sending policy held (their release is journey time too), and
//! forgets event ids older than the dedup window (journey time as well), and then the logged
//! events older than their tenant's history retention.

use crate::host::Host;
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// Without a nearer timer, re-check this often anyway (a cheap guard against a missed wake).
const IDLE_RECHECK: Duration = Duration::from_secs(60);

/// Fires timers, releases held messages and forgets expired event ids until shutdown.
pub async fn run(rt: Arc<Host>) {
    let mut clock_jumps = rt.clock.subscribe();
    loop {
        let timer_set = rt.timer_set();
        let now = rt.clock.now();
        match rt.store.fire_due_timers(now, 1024) {
            Ok(0) => {}
            Ok(_) => {
                rt.wake_all_shards();
                continue;
            }
            Err(error) => warn!(%error, "firing due timers failed; retrying"),
        }
        // Audience triggers (issue 12): due watches, read from the start of their time index.
        match rt.store.fire_due_audience(now, 1024) {
            Ok(0) => {}
            Ok(_) => {
                rt.wake_all_shards();
                continue;
            }
            Err(error) => warn!(%error, "firing due audience watches failed; retrying"),
        }
        match rt.store.release_held(now, crate::clock::system_now(), 1024) {
            Ok(0) => {}
            Ok(_) => {
                rt.outbox_changed();
                continue;
            }
            Err(error) => warn!(%error, "releasing held messages failed; retrying"),
        }
        if let Some(window) = rt.config.dedup_window_ms() {
            match rt.store.expire_event_ids(now.saturating_sub(window), 1024) {
                Ok(0) => {}
                Ok(n) => {
                    rt.metrics.event_ids_expired.inc_by(n as u64);
                    continue;
                }
                Err(error) => warn!(%error, "expiring event ids failed; retrying"),
            }
        }
        // History kept for replay (issue 13): each tenant's retention, in bounded batches.
        match expire_history(&rt, now) {
            Ok(0) => {}
            Ok(_) => continue,
            Err(error) => warn!(%error, "expiring the event history failed; retrying"),
        }
        let next_timer = rt.store.next_timer_due().unwrap_or_else(|error| {
            warn!(%error, "reading the next timer failed");
            None
        });
        let next_release = rt.store.next_held_release().unwrap_or_else(|error| {
            warn!(%error, "reading the next held message failed");
            None
        });
        let next_audience = rt.store.next_audience_due().unwrap_or_else(|error| {
            warn!(%error, "reading the next audience watch failed");
            None
        });
        let next = next_timer
            .into_iter()
            .chain(next_release)
            .chain(next_audience)
            .min();
        // On a manual clock a timer can only come due when the clock is advanced.
        let wait = match next {
            Some(due) if !rt.clock.is_manual() => {
                Duration::from_millis(due.saturating_sub(now).max(0) as u64).min(IDLE_RECHECK)
            }
            _ => IDLE_RECHECK,
        };
        tokio::select! {
            _ = timer_set => {}
            _ = tokio::time::sleep(wait) => {}
            _ = async {
                match clock_jumps.as_mut() {
                    Some(rx) => { let _ = rx.changed().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
            _ = rt.shutdown.cancelled() => return,
        }
    }
}

// History kept for replay (issue 13)
/// Removes up to a batch of logged events past their tenant's history retention (the
/// operator's default or the tenant's override; 0 keeps them for ever).
fn expire_history(rt: &Host, now: crate::model::Millis) -> Result<usize, crate::store::StoreError> {
    let cutoff = |tenant: &str| {
        let retention = rt.tenant_limits(tenant).ok()?.history_retention_ms;
        (retention > 0).then(|| now.saturating_sub(i64::try_from(retention).unwrap_or(i64::MAX)))
    };
    let ids_expire = rt.config.dedup_window_ms().is_some();
    rt.store.expire_history(&cutoff, ids_expire, 1024)
}
