//! What a provider's answer means for a delivery: the one classification every HTTP channel
//! adapter needs, so that none of them rewrites it.
//!
//! - a 2xx is delivered, with the provider's id for the message taken from wherever the
//!   adapter says the provider puts it ([`ProviderId`]);
//! - a 429 or a 5xx is retryable: the provider is throttling or failing, and may not be later;
//!   its `Retry-After`, if any, is passed on to the host ([`crate::hints`]), which waits at
//!   least that long before the next attempt;
//! - every other status (3xx, 4xx but 429, and anything unexpected) is permanent: sending the
//!   same request again would get the same answer;
//! - a failure to get any response ([`HttpError`]) is retryable when the request may have been
//!   lost on the way ([`HttpError::Transport`]) and permanent when it can never be sent as
//!   built (denied by the host, invalid, or not running inside the host).
//!
//! Errors carry the status and a bounded snippet of the body, so a dead letter says what the
//! provider answered without storing a whole error page.

use serde_json::Value;

use super::{HttpError, Response};
use crate::channel::{DeliveryError, Receipt};
use crate::hints;

/// How many characters of a response body go into a [`DeliveryError`]'s reason.
pub const ERROR_SNIPPET_CHARS: usize = 200;

/// Where a provider puts its id for a delivered message, for [`Response::outcome_with_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderId<'a> {
    /// The provider returns no id worth keeping.
    None,
    /// The value of this response header (case-insensitive), e.g. `"X-Message-Id"`.
    Header(&'a str),
    /// This top-level field of a JSON object body, e.g. `"id"`. Strings and numbers count.
    JsonField(&'a str),
    /// A [JSON pointer](https://www.rfc-editor.org/rfc/rfc6901) into a JSON body, e.g.
    /// `"/messages/0/id"`. Strings and numbers count.
    JsonPointer(&'a str),
}

impl Response {
    /// The delivery outcome this response means, without a provider id: 2xx delivered, 429 and
    /// 5xx retryable, anything else permanent.
    pub fn outcome(&self) -> Result<Receipt, DeliveryError> {
        self.outcome_with_id(ProviderId::None)
    }

    /// The delivery outcome this response means, with the provider's id for the message read
    /// from `id` when the status is 2xx. A missing or unreadable id is not an error: the
    /// message was delivered all the same.
    ///
    /// ```
    /// use waymark_channel::http::{ProviderId, Response};
    /// use waymark_channel::{DeliveryError, Receipt};
    ///
    /// let ok = Response::new(202, br#"{"id":"msg_42"}"#.to_vec());
    /// assert_eq!(
    ///     ok.outcome_with_id(ProviderId::JsonField("id")),
    ///     Ok(Receipt::with_provider_id("msg_42"))
    /// );
    ///
    /// let throttled = Response::new(429, b"slow down".to_vec());
    /// assert!(matches!(throttled.outcome(), Err(DeliveryError::Retryable(_))));
    ///
    /// let refused = Response::new(422, br#"{"error":"no such template"}"#.to_vec());
    /// assert!(matches!(
    ///     refused.outcome(),
    ///     Err(DeliveryError::Permanent(reason)) if reason.contains("no such template")
    /// ));
    /// ```
    pub fn outcome_with_id(&self, id: ProviderId<'_>) -> Result<Receipt, DeliveryError> {
        if self.is_success() {
            return Ok(Receipt {
                provider_id: self.provider_id(id),
            });
        }
        let mut reason = format!("HTTP {}: {}", self.status, snippet(&self.text()));
        if let Some(after) = self.header("retry-after") {
            reason.push_str(&format!(" (Retry-After: {})", snippet(after)));
        }
        if self.status == 429 || self.status >= 500 {
            self.pass_on_retry_after();
            Err(DeliveryError::Retryable(reason))
        } else {
            Err(DeliveryError::Permanent(reason))
        }
    }

    /// The wait this response's `Retry-After` header asks for (seconds or an HTTP date, read
    /// at the current time), if it has one that parses.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        hints::parse_retry_after(self.header("retry-after")?, std::time::SystemTime::now())
    }

    /// Passes this response's `Retry-After`, if any, on to the host ([`hints::retry_after`]),
    /// so that the next attempt waits at least that long. [`outcome`](Self::outcome) does it
    /// for every 429 and 5xx; an adapter that classifies answers itself calls it where it
    /// decides a failure is retryable.
    pub fn pass_on_retry_after(&self) {
        if let Some(delay) = self.retry_after() {
            hints::retry_after(delay);
        }
    }

    /// The provider's id for the message, read from `id`, if present and non-empty.
    pub fn provider_id(&self, id: ProviderId<'_>) -> Option<String> {
        let found = match id {
            ProviderId::None => None,
            ProviderId::Header(name) => self.header(name).map(str::to_string),
            ProviderId::JsonField(field) => self.json().ok()?.get(field).and_then(id_text),
            ProviderId::JsonPointer(pointer) => {
                self.json().ok()?.pointer(pointer).and_then(id_text)
            }
        };
        found.filter(|id| !id.trim().is_empty())
    }
}

/// A JSON id as text: strings as they are, numbers printed; anything else is no id.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(id) => Some(id.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl From<HttpError> for DeliveryError {
    /// No response at all: retryable if the request may have been lost on the way, permanent
    /// if it can never be sent as built. Lets an adapter write `request.send()?`.
    fn from(error: HttpError) -> DeliveryError {
        match error {
            HttpError::Transport(_) => DeliveryError::Retryable(error.to_string()),
            HttpError::Denied(_) | HttpError::InvalidRequest(_) | HttpError::Unsupported => {
                DeliveryError::Permanent(error.to_string())
            }
        }
    }
}

/// `text`, trimmed and cut to [`ERROR_SNIPPET_CHARS`] characters (an ellipsis marks the cut).
fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(ERROR_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response::new(status, body.as_bytes().to_vec())
    }

    fn with_header(mut response: Response, name: &str, value: &str) -> Response {
        response.headers.push((name.into(), value.into()));
        response
    }

    #[test]
    fn every_2xx_is_delivered() {
        for status in [200, 201, 202, 204, 299] {
            assert_eq!(
                response(status, "").outcome(),
                Ok(Receipt::new()),
                "{status}"
            );
        }
    }

    #[test]
    fn the_provider_id_comes_from_where_the_adapter_says() {
        let body = r#"{"id":"p-1","data":{"messages":[{"sid":17}]}}"#;
        let ok = with_header(response(200, body), "x-message-id", "h-9");
        let id = |from| ok.outcome_with_id(from).unwrap().provider_id;
        assert_eq!(id(ProviderId::JsonField("id")), Some("p-1".into()));
        assert_eq!(
            id(ProviderId::JsonPointer("/data/messages/0/sid")),
            Some("17".into())
        );
        assert_eq!(id(ProviderId::Header("X-Message-Id")), Some("h-9".into()));
        assert_eq!(id(ProviderId::None), None);
    }

    #[test]
    fn a_missing_or_unusable_provider_id_still_means_delivered() {
        for body in [
            "accepted",
            r#"[{"id":"x"}]"#,
            r#"{"id":""}"#,
            r#"{"id":null}"#,
            "{}",
        ] {
            assert_eq!(
                response(200, body).outcome_with_id(ProviderId::JsonField("id")),
                Ok(Receipt::new()),
                "{body}"
            );
        }
        assert_eq!(
            response(200, "").outcome_with_id(ProviderId::Header("x-id")),
            Ok(Receipt::new())
        );
    }

    #[test]
    fn throttling_and_server_errors_are_retryable_with_the_status_in_the_reason() {
        for status in [429, 500, 502, 503, 504, 599] {
            let outcome = response(status, "try later").outcome();
            assert!(
                matches!(&outcome, Err(DeliveryError::Retryable(r))
                    if r.contains(&status.to_string()) && r.contains("try later")),
                "{status}: {outcome:?}"
            );
        }
    }

    #[test]
    fn every_other_status_is_permanent_with_the_body_in_the_reason() {
        for status in [100, 301, 304, 400, 401, 403, 404, 408, 410, 422] {
            let outcome = response(status, "nope").outcome();
            assert!(
                matches!(&outcome, Err(DeliveryError::Permanent(r))
                    if r == &format!("HTTP {status}: nope")),
                "{status}: {outcome:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_reported_in_the_reason() {
        let outcome = with_header(response(503, "busy"), "Retry-After", "30").outcome();
        assert_eq!(
            outcome,
            Err(DeliveryError::retryable("HTTP 503: busy (Retry-After: 30)"))
        );
    }

    #[test]
    fn retry_after_of_a_retryable_answer_is_passed_on_to_the_host_and_no_other() {
        let _ = hints::take_retry_after();
        let throttled = with_header(response(429, ""), "Retry-After", "2");
        assert!(throttled.outcome().is_err());
        assert_eq!(
            hints::take_retry_after(),
            Some(std::time::Duration::from_secs(2))
        );
        // A permanent answer's header means nothing for a next attempt there will not be.
        let refused = with_header(response(400, ""), "Retry-After", "2");
        assert!(refused.outcome().is_err());
        assert_eq!(hints::take_retry_after(), None);
        // Nor does an unreadable one.
        let garbled = with_header(response(503, ""), "Retry-After", "later");
        assert!(garbled.outcome().is_err());
        assert_eq!(hints::take_retry_after(), None);
    }

    #[test]
    fn long_bodies_are_cut_to_a_bounded_snippet() {
        let outcome = response(400, &"é".repeat(10_000)).outcome();
        let reason = outcome.unwrap_err().reason().to_string();
        assert_eq!(
            reason.chars().count(),
            "HTTP 400: ".len() + ERROR_SNIPPET_CHARS + 1
        );
        assert!(reason.ends_with('…'));
    }

    #[test]
    fn transport_failures_are_retryable_and_unsendable_requests_permanent() {
        let retryable = DeliveryError::from(HttpError::Transport("ConnectionRefused".into()));
        assert_eq!(
            retryable,
            DeliveryError::retryable("transport error: ConnectionRefused")
        );
        for error in [
            HttpError::Denied("HttpRequestDenied".into()),
            HttpError::InvalidRequest("bad header".into()),
            HttpError::Unsupported,
        ] {
            let text = error.to_string();
            assert_eq!(DeliveryError::from(error), DeliveryError::permanent(text));
        }
    }
}
