//! Per-registration send rates (issue 11): a channel registration may declare a [`SendRate`]
//! (messages per second, with a burst) so that a burst of sends does not trip the provider's
//! own limit; the delivery loop starts that registration's deliveries no faster than that.
//!
//! [`Pacing`] is a token bucket per (tenant, channel), **pure**: every call says what time it
//! is (wall-clock milliseconds, the delivery loop's infrastructure time, never journey time),
//! so its tests drive it with plain numbers. A bucket holds up to `burst` tokens, refills at
//! `per_second`, and starts full; a delivery takes one token when it starts. So in any window
//! of `t` seconds a registration starts at most `burst + per_second × t` deliveries, and the
//! k-th start after a quiet spell comes no earlier than `(k − burst) / per_second` seconds after
//! the first. Messages that must wait stay parked in the loop, in order: nothing is dropped,
//! and other registrations are not held up.
//!
//! Hand-written rather than `governor`'s: governor's keyed limiter applies one quota to every
//! key, while each registration has its own rate, and a rate change must apply to the next
//! start; the arithmetic below is the whole of a token bucket.

use crate::model::Millis;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The most messages per second a registration may declare: a sanity bound on input, far
/// above any provider's documented limit.
pub const MAX_PER_SECOND: f64 = 10_000.0;
/// The largest burst a registration may declare.
pub const MAX_BURST: u32 = 10_000;

/// Floating-point slack: a token short by less than this is a whole token (so 4 per second
/// starts every 250 ms, not every 251).
const ROUNDING: f64 = 1e-9;

/// A registration's send rate: deliveries start no faster than `per_second`, and after a quiet
/// spell up to `burst` may start at once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SendRate {
    pub per_second: f64,
    pub burst: u32,
}

/// Why a declared rate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("rate.per_second must be a number above 0 and at most {MAX_PER_SECOND}")]
    PerSecond,
    #[error("rate.burst must be 1 to {MAX_BURST}")]
    Burst,
}

impl SendRate {
    /// The rate, if it is one the loop can keep.
    pub fn checked(per_second: f64, burst: u32) -> Result<SendRate, RateError> {
        if !per_second.is_finite() || per_second <= 0.0 || per_second > MAX_PER_SECOND {
            return Err(RateError::PerSecond);
        }
        if burst == 0 || burst > MAX_BURST {
            return Err(RateError::Burst);
        }
        Ok(SendRate { per_second, burst })
    }

    /// Tokens added per millisecond.
    fn per_ms(self) -> f64 {
        self.per_second / 1000.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    rate: SendRate,
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Millis,
}

impl Bucket {
    fn full(rate: SendRate, now: Millis) -> Bucket {
        Bucket {
            rate,
            tokens: f64::from(rate.burst),
            at: now,
        }
    }

    /// The tokens at `now` (a wall clock that stepped back adds nothing).
    fn tokens_at(&self, now: Millis) -> f64 {
        let elapsed = now.saturating_sub(self.at).max(0) as f64;
        (self.tokens + elapsed * self.rate.per_ms()).min(f64::from(self.rate.burst))
    }
}

/// The token buckets of the registrations that declare a rate, and what the loop knows of each
/// registration's rate.
#[derive(Debug, Default)]
pub struct Pacing {
    /// (tenant, channel) → its rate, `None` for none; absent: not looked up yet.
    rates: HashMap<(String, String), Option<SendRate>>,
    buckets: HashMap<(String, String), Bucket>,
}

impl Pacing {
    /// Whether the rate of `tenant`'s `channel` is known (looked up since the last
    /// [`forget_rates`](Pacing::forget_rates)).
    pub fn knows(&self, tenant: &str, channel: &str) -> bool {
        self.rates.contains_key(&key(tenant, channel))
    }

    /// Notes the rate `tenant`'s `channel` declares now. A bucket whose rate changed starts
    /// afresh, full; one whose registration declares no rate any more is dropped.
    pub fn set_rate(&mut self, tenant: &str, channel: &str, rate: Option<SendRate>, now: Millis) {
        let k = key(tenant, channel);
        match rate {
            None => {
                self.buckets.remove(&k);
            }
            Some(rate) => {
                let same = self.buckets.get(&k).is_some_and(|b| b.rate == rate);
                if !same {
                    self.buckets.insert(k.clone(), Bucket::full(rate, now));
                }
            }
        }
        self.rates.insert(k, rate);
    }

    /// Forgets the rates looked up (not the buckets' tokens), so the next starts look them up
    /// again: a registration's new rate applies from then on.
    pub fn forget_rates(&mut self) {
        self.rates.clear();
    }

    /// When `tenant`'s `channel` may start its next delivery: `now` if it may now (or declares
    /// no rate), else the first millisecond at which its bucket holds a token.
    pub fn ready_at(&self, tenant: &str, channel: &str, now: Millis) -> Millis {
        let Some(bucket) = self.buckets.get(&key(tenant, channel)) else {
            return now;
        };
        let tokens = bucket.tokens_at(now);
        if tokens >= 1.0 - ROUNDING {
            return now;
        }
        let wait = ((1.0 - tokens) / bucket.rate.per_ms() - ROUNDING).ceil() as Millis;
        now + wait.max(1)
    }

    /// Takes a token for a delivery of `tenant`'s `channel` starting at `now` (nothing when it
    /// declares no rate).
    pub fn take(&mut self, tenant: &str, channel: &str, now: Millis) {
        if let Some(bucket) = self.buckets.get_mut(&key(tenant, channel)) {
            bucket.tokens = bucket.tokens_at(now) - 1.0;
            bucket.at = now.max(bucket.at);
        }
    }
}

fn key(tenant: &str, channel: &str) -> (String, String) {
    (tenant.to_string(), channel.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paced(per_second: f64, burst: u32) -> Pacing {
        let mut pacing = Pacing::default();
        pacing.set_rate("acme", "crm", SendRate::checked(per_second, burst).ok(), 0);
        pacing
    }

    /// Starts as many deliveries as the bucket allows, as early as it allows, and returns
    /// their start times.
    fn greedy_starts(pacing: &mut Pacing, n: usize) -> Vec<Millis> {
        let mut now = 0;
        let mut starts = Vec::new();
        while starts.len() < n {
            now = pacing.ready_at("acme", "crm", now);
            pacing.take("acme", "crm", now);
            starts.push(now);
        }
        starts
    }

    #[test]
    fn a_burst_starts_at_once_and_the_rest_follow_at_the_rate() {
        let mut pacing = paced(4.0, 2);
        assert_eq!(greedy_starts(&mut pacing, 6), [0, 0, 250, 500, 750, 1000]);
    }

    #[test]
    fn in_any_window_no_more_than_burst_plus_rate_times_its_length_start() {
        for (per_second, burst) in [(1.0, 1), (3.0, 1), (0.5, 3), (7.0, 4)] {
            let mut pacing = paced(per_second, burst);
            let starts = greedy_starts(&mut pacing, 40);
            for (i, a) in starts.iter().enumerate() {
                for (j, b) in starts.iter().enumerate().skip(i) {
                    let window_s = (b - a) as f64 / 1000.0;
                    let count = (j - i + 1) as f64;
                    assert!(
                        count <= f64::from(burst) + per_second * window_s + 1e-6,
                        "{per_second}/s burst {burst}: {count} starts in {window_s}s"
                    );
                }
            }
        }
    }

    #[test]
    fn a_quiet_spell_refills_up_to_the_burst_only() {
        let mut pacing = paced(1.0, 2);
        greedy_starts(&mut pacing, 2);
        // An hour later: two at once again, not 3,600.
        let later = 3_600_000;
        assert_eq!(pacing.ready_at("acme", "crm", later), later);
        pacing.take("acme", "crm", later);
        pacing.take("acme", "crm", later);
        assert_eq!(pacing.ready_at("acme", "crm", later), later + 1000);
    }

    #[test]
    fn other_registrations_and_unpaced_ones_are_never_held() {
        let mut pacing = paced(1.0, 1);
        pacing.set_rate("acme", "email", None, 0);
        pacing.take("acme", "crm", 0);
        assert_eq!(pacing.ready_at("acme", "crm", 0), 1000);
        assert_eq!(pacing.ready_at("acme", "email", 0), 0);
        assert_eq!(pacing.ready_at("other", "crm", 0), 0);
    }

    #[test]
    fn a_changed_rate_starts_a_fresh_bucket_and_a_removed_one_frees_the_channel() {
        let mut pacing = paced(1.0, 1);
        pacing.take("acme", "crm", 0);
        pacing.forget_rates();
        assert!(!pacing.knows("acme", "crm"));
        // The same rate keeps the bucket (and its debt).
        pacing.set_rate("acme", "crm", SendRate::checked(1.0, 1).ok(), 10);
        assert_eq!(pacing.ready_at("acme", "crm", 10), 1000);
        pacing.set_rate("acme", "crm", SendRate::checked(2.0, 1).ok(), 10);
        assert_eq!(pacing.ready_at("acme", "crm", 10), 10);
        pacing.set_rate("acme", "crm", None, 10);
        pacing.take("acme", "crm", 10);
        assert_eq!(pacing.ready_at("acme", "crm", 10), 10);
    }

    #[test]
    fn a_clock_that_steps_back_adds_no_tokens() {
        let mut pacing = paced(1.0, 1);
        pacing.take("acme", "crm", 5_000);
        assert_eq!(pacing.ready_at("acme", "crm", 4_000), 5_000);
    }

    #[test]
    fn only_sane_rates_are_accepted() {
        assert!(SendRate::checked(0.5, 1).is_ok());
        assert_eq!(SendRate::checked(0.0, 1), Err(RateError::PerSecond));
        assert_eq!(SendRate::checked(f64::NAN, 1), Err(RateError::PerSecond));
        assert_eq!(SendRate::checked(1e9, 1), Err(RateError::PerSecond));
        assert_eq!(SendRate::checked(1.0, 0), Err(RateError::Burst));
    }
}
