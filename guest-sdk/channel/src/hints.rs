//! Hints to the host about the delivery in progress (contract 0.1.1, `delivery-hints`).
//!
//! [`retry_after`] passes on a provider's word not to be called again for a while. The SDK's
//! classification ([`Response::outcome`](crate::http::Response::outcome)) does it by itself for
//! a 429 or 503 that carries `Retry-After`; an adapter that classifies answers itself calls
//! [`Response::pass_on_retry_after`](crate::http::Response::pass_on_retry_after). The host then
//! waits at least that long before the next attempt, if the delivery ends in a retryable error
//! (it bounds the wait to an hour). A host older than 0.1.1 never sees the call: a component
//! built with this SDK needs a host that links `delivery-hints`, which every host since 0.1.1
//! does.
//!
//! Outside the host (native tests) the hint is kept per thread and read back with
//! [`take_retry_after`].

use std::time::Duration;

/// Tells the host not to attempt this delivery again before `delay` has passed, should it end
/// in a retryable error.
pub fn retry_after(delay: Duration) {
    let ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
    emit(ms);
}

#[cfg(target_arch = "wasm32")]
fn emit(ms: i64) {
    crate::bindings::waymark::journey::delivery_hints::retry_after(ms);
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static NATIVE: std::cell::Cell<Option<i64>> = const { std::cell::Cell::new(None) };
}

#[cfg(not(target_arch = "wasm32"))]
fn emit(ms: i64) {
    NATIVE.with(|hint| hint.set(Some(hint.get().map_or(ms, |h| h.max(ms)))));
}

/// Outside the host only: the longest hint given on this thread since the last call, and
/// forgets it. For an adapter's native tests.
#[cfg(not(target_arch = "wasm32"))]
pub fn take_retry_after() -> Option<Duration> {
    NATIVE
        .with(|hint| hint.take())
        .map(|ms| Duration::from_millis(ms.max(0) as u64))
}

/// Reports details of the delivery in progress for the host to keep on the message (contract
/// 0.1.2, `receipt-detail`): a JSON object, such as an SMS's `{"segments": 2, "encoding":
/// "GSM-7"}`. Keys of later calls win. Outside the host it is kept per thread
/// ([`take_receipt_detail`]).
pub fn receipt_detail(detail: &serde_json::Value) {
    emit_detail(detail);
}

#[cfg(target_arch = "wasm32")]
fn emit_detail(detail: &serde_json::Value) {
    crate::bindings::waymark::journey::delivery_hints::receipt_detail(&detail.to_string());
}

#[cfg(not(target_arch = "wasm32"))]
thread_local! {
    static NATIVE_DETAIL: std::cell::RefCell<Option<serde_json::Value>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(not(target_arch = "wasm32"))]
fn emit_detail(detail: &serde_json::Value) {
    NATIVE_DETAIL.with(|kept| {
        let mut kept = kept.borrow_mut();
        match (kept.as_mut(), detail) {
            (Some(serde_json::Value::Object(old)), serde_json::Value::Object(new)) => {
                old.extend(new.clone());
            }
            _ => *kept = Some(detail.clone()),
        }
    });
}

/// Outside the host only: the receipt detail given on this thread since the last call, and
/// forgets it. For an adapter's native tests.
#[cfg(not(target_arch = "wasm32"))]
pub fn take_receipt_detail() -> Option<serde_json::Value> {
    NATIVE_DETAIL.with(|kept| kept.borrow_mut().take())
}

/// The wait a `Retry-After` header value asks for, at `now` (RFC 9110 §10.2.3): a number of
/// seconds, or an HTTP date (a date in the past asks for no wait). `None` when it is neither.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Longer than u64 seconds is "for ever"; the host bounds it anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn seconds_and_http_dates_are_read_and_anything_else_is_not() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 120 ", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for junk in ["", "-1", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(junk, SystemTime::now()), None, "{junk:?}");
        }
    }

    #[test]
    fn receipt_details_merge_natively_later_keys_winning() {
        assert_eq!(take_receipt_detail(), None);
        receipt_detail(&serde_json::json!({"segments": 1, "encoding": "GSM-7"}));
        receipt_detail(&serde_json::json!({"segments": 2}));
        assert_eq!(
            take_receipt_detail(),
            Some(serde_json::json!({"segments": 2, "encoding": "GSM-7"}))
        );
        assert_eq!(take_receipt_detail(), None);
    }

    #[test]
    fn the_longest_hint_of_a_call_is_kept_natively() {
        assert_eq!(take_retry_after(), None);
        retry_after(Duration::from_secs(1));
        retry_after(Duration::from_secs(3));
        retry_after(Duration::from_secs(2));
        assert_eq!(take_retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(take_retry_after(), None);
    }
}
