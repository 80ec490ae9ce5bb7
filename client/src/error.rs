//! [`ClientError`] and the one place an answer is decoded: a 2xx body into the route's DTO,
//! anything else into the API's error body.

use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use waymark_api::errors::{ApiError, ErrorBody};

/// Why a call did not return what the route documents.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The API answered with an error status and its error body.
    #[error("{route} answered {status}: {} ({})", error.message, error.code)]
    Api {
        /// `METHOD /path`.
        route: String,
        /// The status.
        status: StatusCode,
        /// The parsed `{"error": {...}}`.
        error: ApiError,
        /// The answer's `Retry-After` in seconds (429 and 503 carry one), for callers that
        /// retry: the importer of `waymark events import`.
        retry_after: Option<std::time::Duration>,
    },
    /// No answer: the connection failed, broke, or timed out.
    #[error("{route}: {source}")]
    Transport {
        /// `METHOD /path`.
        route: String,
        /// What reqwest saw.
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what the API documents for that status: a success body that is
    /// not the route's DTO, or an error status without the error body.
    #[error("{route} answered {status} with an undecodable body ({reason}): {body}")]
    Decode {
        /// `METHOD /path`.
        route: String,
        /// The status.
        status: StatusCode,
        /// What did not fit.
        reason: String,
        /// The body, as text.
        body: String,
    },
    /// A request body that could not be serialized.
    #[error("cannot encode the request body: {0}")]
    Encode(String),
}

impl ClientError {
    /// The status of an API error (or of an undecodable answer); `None` without an answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } | ClientError::Decode { status, .. } => Some(*status),
            ClientError::Transport { .. } | ClientError::Encode(_) => None,
        }
    }

    /// How long the server asked the caller to wait before retrying (`Retry-After`), when it
    /// said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ClientError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error code of an API error (`not_found`, `task_conflict`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            _ => None,
        }
    }
}

/// A 2xx body as `T`; any other status as [`error`] makes it.
pub(crate) fn decode<T: DeserializeOwned>(
    route: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<T, ClientError> {
    if !status.is_success() {
        return Err(error(route, status, body));
    }
    serde_json::from_slice(body).map_err(|e| undecodable(route, status, e.to_string(), body))
}

/// An answer with an error status: [`ClientError::Api`] when the body is the API's error body,
/// else [`ClientError::Decode`].
pub(crate) fn error(route: &str, status: StatusCode, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody { error }) => ClientError::Api {
            route: route.to_string(),
            status,
            error,
            retry_after: None,
        },
        Err(e) => undecodable(route, status, format!("not an error body: {e}"), body),
    }
}

/// `Retry-After` as delay-seconds (RFC 9110 §10.2.3; the form Waymark sends). The HTTP-date
/// form is not read: `None`, and the caller falls back to its own backoff.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<std::time::Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value
        .trim()
        .parse::<u64>()
        .ok()
        .map(std::time::Duration::from_secs)
}

fn undecodable(route: &str, status: StatusCode, reason: String, body: &[u8]) -> ClientError {
    ClientError::Decode {
        route: route.to_string(),
        status,
        reason,
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use waymark_api::clock::ClockAdvanced;

    #[test]
    fn an_error_status_with_the_error_body_is_an_api_error_with_its_code_and_message() {
        let body = br#"{"error": {"code": "not_found", "message": "no customer \"x\""}}"#;
        let err = decode::<ClockAdvanced>("GET /v1/customers/x", StatusCode::NOT_FOUND, body)
            .unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
        assert_eq!(err.code(), Some("not_found"));
        match err {
            ClientError::Api { error, .. } => {
                assert_eq!(error.message, "no customer \"x\"");
                assert_eq!(error.reason, None);
            }
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[test]
    fn retry_after_is_read_as_seconds_and_an_http_date_is_left_to_the_caller() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(
            retry_after(&headers),
            Some(std::time::Duration::from_secs(3))
        );
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn a_decide_failure_keeps_its_reason() {
        let body = br#"{"error": {"code": "decide_failed", "message": "m", "reason": "trap"}}"#;
        let err =
            decode::<ClockAdvanced>("POST /d", StatusCode::UNPROCESSABLE_ENTITY, body).unwrap_err();
        match err {
            ClientError::Api { error, .. } => assert_eq!(error.reason.as_deref(), Some("trap")),
            other => panic!("expected an API error, got {other:?}"),
        }
    }

    #[test]
    fn an_error_status_without_the_error_body_is_undecodable_and_keeps_the_text() {
        let err = decode::<ClockAdvanced>("GET /", StatusCode::BAD_GATEWAY, b"upstream down")
            .unwrap_err();
        assert_eq!(err.status(), Some(StatusCode::BAD_GATEWAY));
        assert_eq!(err.code(), None);
        assert!(err.to_string().contains("upstream down"), "{err}");
    }

    #[test]
    fn a_success_body_that_is_not_the_dto_is_undecodable() {
        let err =
            decode::<ClockAdvanced>("POST /c", StatusCode::OK, br#"{"later": 1}"#).unwrap_err();
        assert!(matches!(err, ClientError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn a_success_body_decodes_into_the_dto() {
        let got = decode::<ClockAdvanced>("POST /c", StatusCode::OK, br#"{"now": 42}"#);
        assert_eq!(got.unwrap(), ClockAdvanced { now: 42 });
    }
}
