//! Prometheus metrics: what `/metrics` shows. Names follow the one vocabulary (events,
//! triggers, deliveries, timers) so dashboards read like the docs.

use crate::model::Millis;
use crate::sandbox::SandboxCounters;
use crate::store::backlog::Backlog;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::borrow::Cow;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

pub struct Metrics {
    registry: Registry,
    /// Running totals over every label, for the `info` progress line.
    totals: [std::sync::atomic::AtomicU64; 3],
    pub events_accepted: Counter,
    pub events_duplicate: Counter,
    pub event_ids_expired: Counter,
    pub triggers: Family<KindLabel, Counter>,
    pub trigger_failures: Family<ReasonLabel, Counter>,
    pub deliveries: Family<OutcomeLabel, Counter>,
    pub timers_fired: Counter,
    pub engagements: Family<KindLabel, Counter>,
    /// Journey versions' circuit breakers opened (issue 15).
    pub breakers_opened: Counter,
    /// Triggers deferred by an open breaker (each time one is put off).
    pub triggers_deferred: Counter,
    /// Journey versions whose breaker is open or half-open now.
    pub breakers_open: Gauge,
    /// Enrollments paused for going over a loop budget.
    pub enrollments_paused: Counter,
    /// Cluster mode (issue 16): triggers this partition's commits queued for other
    /// partitions' customers that their partitions took in.
    pub forwards_sent: Counter,
    /// Triggers taken in from other partitions.
    pub forwards_taken: Counter,
    /// Forwards committed here and not yet taken in by their partitions, after the last pass.
    pub forwards_waiting: Gauge,
    /// Shards whose queue holds triggers, read from the store when scraped ([`Metrics::backlog`]).
    shards_with_triggers: Gauge,
    /// Work due and not yet taken up, by kind, read from the store when scraped.
    due: Family<KindLabel, Gauge>,
    /// The backlog last read from the store, and when (wall clock): [`Metrics::refresh_backlog`].
    backlog_read: std::sync::Mutex<Option<(Millis, Backlog)>>,
}

/// How long a backlog that holds work is shown again to scrapes rather than read anew: reading
/// it walks the due part of the time indexes, and something that scrapes often (the durability
/// bench every 20 ms) must not pay that walk each time while work is due. An empty backlog is
/// read again at every scrape (its walk stops at the first key), so work that appears shows at
/// once, and work that drained shows as gone at most this late: a reading may say "not settled
/// yet" a moment too long, never "settled" too early.
pub const BACKLOG_SHOWN_FOR_MS: Millis = 1_000;

impl Metrics {
    /// The metrics of a host, including the sandbox's own counters.
    pub fn new(sandbox: &SandboxCounters) -> Metrics {
        Metrics::labelled(sandbox, None)
    }

    /// The same, every sample labelled `partition` (a cluster node's host of one partition).
    pub fn labelled(sandbox: &SandboxCounters, partition: Option<u16>) -> Metrics {
        let labels = partition.map(|p| (Cow::Borrowed("partition"), Cow::Owned(p.to_string())));
        let mut registry = Registry::with_prefix_and_labels("waymark", labels.into_iter());
        registry.register(
            "components_compiled",
            "Components compiled from their bytes (uploads, and loads the cache could not serve)",
            sandbox.compiled.clone(),
        );
        registry.register(
            "component_cache_hits",
            "Components loaded from the compiled-code cache instead of compiled",
            sandbox.cache_hits.clone(),
        );
        registry.register(
            "journey_instances_created",
            "Journey instances created (cold calls)",
            sandbox.instantiated.clone(),
        );
        registry.register(
            "journey_instances_reused",
            "Journey calls served by a warm instance",
            sandbox.reused.clone(),
        );
        registry.register(
            "journey_instances_recycled",
            "Journey instances dropped after a trap, deadline or limit",
            sandbox.recycled.clone(),
        );
        registry.register(
            "channel_instances_created",
            "Channel instances created (cold calls)",
            sandbox.channel_instantiated.clone(),
        );
        registry.register(
            "channel_instances_reused",
            "Channel calls served by a warm instance",
            sandbox.channel_reused.clone(),
        );
        registry.register(
            "outbound_connections_opened",
            "Outbound connections opened by channels (other requests reused one)",
            sandbox.outbound_connections.clone(),
        );
        let events_accepted = Counter::default();
        let events_duplicate = Counter::default();
        let event_ids_expired = Counter::default();
        let triggers = Family::<KindLabel, Counter>::default();
        let trigger_failures = Family::<ReasonLabel, Counter>::default();
        let deliveries = Family::<OutcomeLabel, Counter>::default();
        let timers_fired = Counter::default();
        let engagements = Family::<KindLabel, Counter>::default();
        registry.register(
            "engagements",
            "Tracking events (opened, clicked, ...) matched to a message, by kind",
            engagements.clone(),
        );
        registry.register(
            "events_accepted",
            "Events accepted and made durable",
            events_accepted.clone(),
        );
        registry.register(
            "events_duplicate",
            "Events dropped as retries of a seen id",
            events_duplicate.clone(),
        );
        registry.register(
            "event_ids_expired",
            "Event ids forgotten after the dedup window (a retry after it is a new event)",
            event_ids_expired.clone(),
        );
        registry.register("triggers", "Triggers processed, by kind", triggers.clone());
        registry.register(
            "trigger_failures",
            "Triggers that failed, by reason (trap, deadline, memory, guest_error, invalid_commands, ...)",
            trigger_failures.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts, by outcome",
            deliveries.clone(),
        );
        registry.register(
            "timers_fired",
            "Timers moved from pending to processing",
            timers_fired.clone(),
        );
        let breakers_opened = Counter::default();
        let triggers_deferred = Counter::default();
        let breakers_open = Gauge::default();
        registry.register(
            "breakers_opened",
            "Times a journey version's circuit breaker opened (its triggers kept hitting the deadline or trapping)",
            breakers_opened.clone(),
        );
        registry.register(
            "triggers_deferred",
            "Triggers left queued because their journey version's breaker is open",
            triggers_deferred.clone(),
        );
        registry.register(
            "breakers_open",
            "Journey versions whose circuit breaker is open or half-open",
            breakers_open.clone(),
        );
        let enrollments_paused = Counter::default();
        registry.register(
            "enrollments_paused",
            "Enrollments paused for going over a loop budget (triggers or sends in a window)",
            enrollments_paused.clone(),
        );
        let (forwards_sent, forwards_taken) = (Counter::default(), Counter::default());
        let forwards_waiting = Gauge::default();
        registry.register(
            "forwards_sent",
            "Triggers for other partitions' customers (cluster mode) taken in by their partitions",
            forwards_sent.clone(),
        );
        registry.register(
            "forwards_taken",
            "Triggers for this partition's customers taken in from other partitions",
            forwards_taken.clone(),
        );
        registry.register(
            "forwards_waiting",
            "Triggers for other partitions' customers not yet taken in by them",
            forwards_waiting.clone(),
        );
        let shards_with_triggers = Gauge::default();
        registry.register(
            "shards_with_triggers",
            "Shards whose queue holds triggers (running, deferred or waiting), when scraped",
            shards_with_triggers.clone(),
        );
        let due = Family::<KindLabel, Gauge>::default();
        registry.register(
            "due",
            "Work due and not yet taken up when scraped, by kind: timers and audience watches not yet queued, held messages not yet released, messages whose delivery attempt is due (waiting or in flight); each counted up to 1000",
            due.clone(),
        );
        Metrics {
            registry,
            shards_with_triggers,
            due,
            backlog_read: Default::default(),
            enrollments_paused,
            forwards_sent,
            forwards_taken,
            forwards_waiting,
            breakers_opened,
            triggers_deferred,
            breakers_open,
            totals: Default::default(),
            events_accepted,
            events_duplicate,
            event_ids_expired,
            triggers,
            trigger_failures,
            deliveries,
            timers_fired,
            engagements,
        }
    }

    /// Events accepted, triggers decided, delivery attempts and triggers failed so far.
    pub fn progress(&self) -> Progress {
        let total = |i: usize| self.totals[i].load(std::sync::atomic::Ordering::Relaxed);
        Progress {
            events: self.events_accepted.get(),
            triggers: total(0),
            deliveries: total(1),
            failures: total(2),
        }
    }

    fn count(&self, i: usize) {
        self.totals[i].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn failure(&self, reason: &str) {
        self.count(2);
        self.trigger_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn trigger(&self, kind: &str) {
        self.count(0);
        self.triggers
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn engagement(&self, kind: &str) {
        self.engagements
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
    }

    pub fn delivery(&self, outcome: &str) {
        self.count(1);
        self.deliveries
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Sets the backlog gauges for a scrape at wall-clock time `wall`: to what `read` reads
    /// from the store, unless the last reading held work and is younger than
    /// [`BACKLOG_SHOWN_FOR_MS`] (then the gauges keep showing it).
    pub fn refresh_backlog<E>(
        &self,
        wall: Millis,
        read: impl FnOnce() -> Result<Backlog, E>,
    ) -> Result<(), E> {
        let mut last = self.backlog_read.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, backlog)) = *last {
            if !backlog.is_empty() && (0..BACKLOG_SHOWN_FOR_MS).contains(&wall.saturating_sub(at)) {
                return Ok(());
            }
        }
        let backlog = read()?;
        self.backlog(&backlog);
        *last = Some((wall, backlog));
        Ok(())
    }

    /// Sets the backlog gauges to `backlog`, as read from the store for a scrape.
    fn backlog(&self, backlog: &Backlog) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.shards_with_triggers
            .set(gauge(backlog.shards_with_triggers));
        for (kind, n) in [
            ("timers", backlog.timers),
            ("audience", backlog.audience),
            ("held_messages", backlog.held),
            ("messages", backlog.messages),
        ] {
            self.due
                .get_or_create(&KindLabel {
                    kind: kind.to_owned(),
                })
                .set(gauge(n));
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Totals for the progress line: see [`Metrics::progress`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub events: u64,
    pub triggers: u64,
    pub deliveries: u64,
    pub failures: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn due_messages(metrics: &Metrics) -> i64 {
        let label = KindLabel {
            kind: "messages".to_owned(),
        };
        metrics.due.get_or_create(&label).get()
    }

    #[test]
    fn a_backlog_with_work_is_shown_again_for_a_second_and_an_empty_one_is_read_every_time() {
        let metrics = Metrics::new(&SandboxCounters::default());
        let busy = Backlog {
            messages: 7,
            ..Backlog::default()
        };
        let reads = std::cell::Cell::new(0);
        let refresh = |wall: Millis, backlog: Backlog| {
            let read = || {
                reads.set(reads.get() + 1);
                Ok::<_, ()>(backlog)
            };
            metrics.refresh_backlog(wall, read).unwrap();
        };
        // Empty: read at every scrape, so work that appears shows at once.
        refresh(1_000, Backlog::default());
        refresh(1_001, busy);
        assert_eq!((reads.get(), due_messages(&metrics)), (2, 7));
        // Work shown: not read again within the second, even though it drained meanwhile.
        refresh(1_500, Backlog::default());
        assert_eq!((reads.get(), due_messages(&metrics)), (2, 7));
        // A second on, read again.
        refresh(2_001, Backlog::default());
        assert_eq!((reads.get(), due_messages(&metrics)), (3, 0));
        // A wall clock that stepped back reads anew rather than keep showing an old reading.
        refresh(2_002, busy);
        refresh(1_000, Backlog::default());
        assert_eq!((reads.get(), due_messages(&metrics)), (5, 0));
    }
}
