//! The journey clock as `GET /v1/admin/clock` shows it.

use crate::clock::Clock;
use waymark_api::clock as api;

/// Which clock the server runs on, and its now.
pub(crate) fn clock(clock: &Clock) -> api::Clock {
    api::Clock {
        kind: if clock.is_manual() {
            api::ClockKind::Manual
        } else {
            api::ClockKind::System
        },
        now: clock.now(),
    }
}
