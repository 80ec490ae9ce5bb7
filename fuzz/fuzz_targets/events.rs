//! The ingest body parser (`POST /v1/events` short of the store): any bytes give events that
//! pass the documented checks, or an error; never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use waymark_host::api::parse_events;

/// The documented bounds of one event's id, customer and name.
fn checked(what: &str, s: &str) {
    assert!(
        !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control),
        "{what} {s:?} passed the checks"
    );
}

fuzz_target!(|data: &[u8]| {
    let now = 1_767_571_200_000;
    if let Ok(events) = parse_events(data, now) {
        assert!(!events.is_empty() && events.len() <= 10_000);
        for event in &events {
            checked("id", &event.id);
            checked("customer", &event.customer);
            checked("name", &event.name);
        }
    }
});
