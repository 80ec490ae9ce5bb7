//! Read-only aggregate statistics of the calling journey, through the `stats` import.
//!
//! A journey can use them to prefer the channel that customers answer, e.g. send through the
//! channel with the best [`delivery_rate`](ChannelStats::delivery_rate). Only journeys may call
//! [`channel_stats`]: the channel world does not import `stats`, so an adapter that calls it is
//! refused at upload.
//!
//! Since contract 0.1.2, [`arm_stats`] tells a journey how its experiments' arms convert, so
//! it can follow what similar customers responded to ([`thompson_arm`](crate::thompson_arm)).
//!
//! In native tests there is no host: [`channel_stats`] and [`arm_stats`] return what the
//! current thread set with `set_native_channel_stats` and `set_native_arm_stats` (empty by
//! default).

use serde::{Deserialize, Serialize};

/// Delivery counts of one channel, over every version of the calling journey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStats {
    /// The channel's name.
    pub channel: String,
    /// Messages decided (delivered, failed or still pending).
    pub sent: u64,
    /// Messages the adapter accepted.
    pub delivered: u64,
    /// Messages that failed for good.
    pub failed: u64,
}

impl ChannelStats {
    /// Delivered over settled (delivered + failed), or `None` before anything settled.
    pub fn delivery_rate(&self) -> Option<f64> {
        let settled = self.delivered.saturating_add(self.failed);
        (settled > 0).then(|| self.delivered as f64 / settled as f64)
    }
}

/// Delivery counts per channel for the calling journey.
#[cfg(target_arch = "wasm32")]
pub fn channel_stats() -> Vec<ChannelStats> {
    use crate::bindings::journey::waymark::journey::stats as host;
    host::by_channel()
        .into_iter()
        .map(|s| ChannelStats {
            channel: s.channel,
            sent: s.sent,
            delivered: s.delivered,
            failed: s.failed,
        })
        .collect()
}

/// Delivery counts per channel for the calling journey. Natively: what this thread set with
/// [`set_native_channel_stats`], empty by default.
#[cfg(not(target_arch = "wasm32"))]
pub fn channel_stats() -> Vec<ChannelStats> {
    NATIVE.with(|s| s.borrow().clone())
}

/// Native tests only: what [`channel_stats`] returns on the current thread from now on.
#[cfg(not(target_arch = "wasm32"))]
pub fn set_native_channel_stats(stats: Vec<ChannelStats>) {
    NATIVE.with(|s| *s.borrow_mut() = stats);
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static NATIVE: std::cell::RefCell<Vec<ChannelStats>> = const { std::cell::RefCell::new(Vec::new()) };
    static NATIVE_ARMS: std::cell::RefCell<Vec<ArmStats>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// How one arm of one of the journey's experiments has done (contract 0.1.2), over every
/// version of the journey, as of the start of the current hour of journey time: the host
/// counts only entries and conversions before it, so every trigger of the hour — and every
/// replay of it — reads the same numbers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmStats {
    /// The experiment's name.
    pub experiment: String,
    /// The arm.
    pub arm: String,
    /// The milestone counted as a conversion: the experiment's own goal
    /// ([`Spec::adaptive_experiment`](crate::Spec::adaptive_experiment)), else the journey's
    /// goal, else its last milestone; `completed` without milestones.
    pub goal: String,
    /// Enrollments first assigned this arm.
    pub entered: u64,
    /// Of which reached `goal`.
    pub converted: u64,
}

impl ArmStats {
    /// `converted / entered`, or `None` before anyone entered.
    pub fn conversion(&self) -> Option<f64> {
        (self.entered > 0).then(|| self.converted.min(self.entered) as f64 / self.entered as f64)
    }
}

/// Every arm of every experiment the deciding version declares, in declaration order.
#[cfg(target_arch = "wasm32")]
pub fn arm_stats() -> Vec<ArmStats> {
    use crate::bindings::journey::waymark::journey::stats as host;
    host::by_arm()
        .into_iter()
        .map(|s| ArmStats {
            experiment: s.experiment,
            arm: s.arm,
            goal: s.goal,
            entered: s.entered,
            converted: s.converted,
        })
        .collect()
}

/// Every arm of every experiment. Natively: what this thread set with
/// [`set_native_arm_stats`], empty by default.
#[cfg(not(target_arch = "wasm32"))]
pub fn arm_stats() -> Vec<ArmStats> {
    NATIVE_ARMS.with(|s| s.borrow().clone())
}

/// Native tests only: what [`arm_stats`] returns on the current thread from now on.
#[cfg(not(target_arch = "wasm32"))]
pub fn set_native_arm_stats(stats: Vec<ArmStats>) {
    NATIVE_ARMS.with(|s| *s.borrow_mut() = stats);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(channel: &str, delivered: u64, failed: u64) -> ChannelStats {
        ChannelStats {
            channel: channel.into(),
            sent: delivered + failed,
            delivered,
            failed,
        }
    }

    #[test]
    fn delivery_rate_is_over_settled_messages() {
        assert_eq!(stats("email", 3, 1).delivery_rate(), Some(0.75));
        assert_eq!(stats("sms", 0, 0).delivery_rate(), None);
    }

    #[test]
    fn native_stats_are_empty_until_a_test_sets_them() {
        assert!(channel_stats().is_empty());
        set_native_channel_stats(vec![stats("email", 1, 0)]);
        assert_eq!(channel_stats(), vec![stats("email", 1, 0)]);
        set_native_channel_stats(Vec::new());
    }
}
