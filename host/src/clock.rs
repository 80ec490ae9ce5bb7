//! The host's notion of now: the system clock, or a manual clock that tests, the demo and replay
//! advance by hand, so that days of journey time pass in milliseconds.
//!
//! Everything that reasons about journey time (event defaults, timers, `decide`'s `now`) asks
//! this clock; nothing else reads the system time for journey purposes.

use crate::model::Millis;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// A cheap, cloneable handle on the host's clock.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

enum Inner {
    System,
    Manual {
        now: AtomicI64,
        /// Wakes whoever sleeps until a journey time (the scheduler) when time jumps.
        changed: watch::Sender<Millis>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("the clock is the system clock; only a manual clock can be advanced")]
    NotManual,
    #[error("a clock only moves forward")]
    Backwards,
    #[error("the clock cannot move that far: the time would be past the year 9999")]
    Overflow,
}

/// The latest time a manual clock may reach (9999-12-31T23:59:59.999Z): far enough for any
/// test or replay, and far enough from `i64::MAX` that journey arithmetic on it (timers, stall
/// windows, frequency windows) cannot overflow.
pub const MAX_MANUAL_TIME: Millis = 253_402_300_799_999;

impl Clock {
    pub fn system() -> Clock {
        Clock {
            inner: Arc::new(Inner::System),
        }
    }

    pub fn manual(start: Millis) -> Clock {
        let (changed, _) = watch::channel(start);
        Clock {
            inner: Arc::new(Inner::Manual {
                now: AtomicI64::new(start),
                changed,
            }),
        }
    }

    pub fn is_manual(&self) -> bool {
        matches!(*self.inner, Inner::Manual { .. })
    }

    pub fn kind(&self) -> &'static str {
        if self.is_manual() {
            "manual"
        } else {
            "system"
        }
    }

    pub fn now(&self) -> Millis {
        match &*self.inner {
            Inner::System => system_now(),
            Inner::Manual { now, .. } => now.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock forward by `by` milliseconds and returns the new now.
    pub fn advance(&self, by: Millis) -> Result<Millis, ClockError> {
        match &*self.inner {
            Inner::System => Err(ClockError::NotManual),
            Inner::Manual { .. } if by < 0 => Err(ClockError::Backwards),
            Inner::Manual { now, changed } => {
                // Checked: a huge `by` is an error, never a wrap into the distant past.
                let new = now
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                        t.checked_add(by).filter(|n| *n <= MAX_MANUAL_TIME)
                    })
                    .map_err(|_| ClockError::Overflow)?
                    + by;
                changed.send_replace(new);
                Ok(new)
            }
        }
    }

    /// A receiver that changes whenever a manual clock jumps; `None` for the system clock.
    pub fn subscribe(&self) -> Option<watch::Receiver<Millis>> {
        match &*self.inner {
            Inner::System => None,
            Inner::Manual { changed, .. } => Some(changed.subscribe()),
        }
    }
}

/// Wall-clock milliseconds since the epoch, for infrastructure timing (delivery retries), never
/// for journey time.
pub fn system_now() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_advances_and_notifies() {
        let clock = Clock::manual(1_000);
        let mut rx = clock.subscribe().unwrap();
        assert_eq!(clock.advance(500).unwrap(), 1_500);
        assert_eq!(clock.now(), 1_500);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1_500);
    }

    #[test]
    fn system_clock_refuses_to_advance() {
        assert!(matches!(
            Clock::system().advance(1),
            Err(ClockError::NotManual)
        ));
    }

    #[test]
    fn manual_clock_refuses_to_overflow() {
        let clock = Clock::manual(1_000);
        assert!(matches!(clock.advance(i64::MAX), Err(ClockError::Overflow)));
        assert!(matches!(
            clock.advance(MAX_MANUAL_TIME),
            Err(ClockError::Overflow)
        ));
        assert_eq!(clock.now(), 1_000);
        assert_eq!(
            clock.advance(MAX_MANUAL_TIME - 1_000).unwrap(),
            MAX_MANUAL_TIME
        );
    }

    #[test]
    fn manual_clock_refuses_to_go_back() {
        assert!(matches!(
            Clock::manual(0).advance(-1),
            Err(ClockError::Backwards)
        ));
    }
}
