//! Time as the contract carries it: milliseconds, as plain `i64`.
//!
//! Every time a journey sees is the host's notion of now ([`Context::now`](crate::Context::now)),
//! which is virtual on a manual clock and during replay, so journeys never read a real clock.
//! Durations are plain millisecond counts too, which keeps arithmetic obvious:
//! `ctx.now + days(3)` is three days from now.
//!
//! ```
//! use waymark_guest::{days, hours, minutes, seconds};
//!
//! assert_eq!(seconds(1), 1_000);
//! assert_eq!(minutes(2), 120_000);
//! assert_eq!(hours(1) + minutes(30), 5_400_000);
//! assert_eq!(days(1), hours(24));
//! ```

/// Milliseconds since the Unix epoch, UTC (the contract's `timestamp`).
pub type Timestamp = i64;

/// A span of time in milliseconds (the contract's `duration`).
pub type Duration = i64;

/// `n` milliseconds, for symmetry with the other helpers.
pub const fn millis(n: i64) -> Duration {
    n
}

/// `n` seconds, in milliseconds. Saturates instead of overflowing.
pub const fn seconds(n: i64) -> Duration {
    n.saturating_mul(1_000)
}

/// `n` minutes, in milliseconds. Saturates instead of overflowing.
pub const fn minutes(n: i64) -> Duration {
    n.saturating_mul(60_000)
}

/// `n` hours, in milliseconds. Saturates instead of overflowing.
pub const fn hours(n: i64) -> Duration {
    n.saturating_mul(3_600_000)
}

/// `n` days of 24 hours, in milliseconds. Saturates instead of overflowing.
///
/// A day here is always 24 hours: how long to wait. For calendar days and local times (09:00
/// on the customer's birthday, in their time zone, across daylight saving time), see
/// [`calendar`](crate::calendar).
pub const fn days(n: i64) -> Duration {
    n.saturating_mul(86_400_000)
}

/// `n` weeks of 7 days, in milliseconds. Saturates instead of overflowing.
pub const fn weeks(n: i64) -> Duration {
    n.saturating_mul(7 * 86_400_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_multiply_up_to_milliseconds() {
        assert_eq!(millis(7), 7);
        assert_eq!(seconds(3), 3_000);
        assert_eq!(minutes(3), 180_000);
        assert_eq!(hours(3), 10_800_000);
        assert_eq!(days(3), 259_200_000);
        assert_eq!(weeks(1), days(7));
    }

    #[test]
    fn negative_spans_are_allowed() {
        assert_eq!(days(-1), -86_400_000);
    }

    #[test]
    fn huge_spans_saturate_instead_of_overflowing() {
        assert_eq!(days(i64::MAX), i64::MAX);
        assert_eq!(days(i64::MIN), i64::MIN);
    }

    #[test]
    fn helpers_are_usable_in_consts() {
        const NUDGE_AFTER: Duration = days(3);
        assert_eq!(NUDGE_AFTER, 3 * 24 * 60 * 60 * 1_000);
    }
}
