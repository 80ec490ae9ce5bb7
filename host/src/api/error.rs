//! The API's errors: every layer's error mapped to a status plus
//! `{"error": {"code", "message"}}`, so a client always gets a JSON body it can read.

use super::prelude::*;
use crate::registry::RegistryError;
use crate::sandbox::SandboxError;
use crate::store::{StoreError, TaskError};
use axum::response::Response;
use waymark_api::errors::{self as api, ErrorBody};

/// An error as the API reports it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Why the guest failed, for `decide_failed`: the one error that carries more than a
    /// message.
    reason: Option<&'static str>,
    /// Headers the answer carries (`Retry-After`, `RateLimit`, ...).
    headers: Vec<(axum::http::HeaderName, String)>,
    /// A field of the body beside `error`: what a node's front needs to act on the answer
    /// (`merged_elsewhere`'s events).
    beside: Option<Box<(&'static str, serde_json::Value)>>,
}

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            reason: None,
            headers: Vec::new(),
            beside: None,
        }
    }

    /// This error, its body carrying `value` as field `name` beside `error`.
    pub(super) fn with_field(self, name: &'static str, value: serde_json::Value) -> ApiError {
        ApiError {
            beside: Some(Box::new((name, value))),
            ..self
        }
    }

    /// This error, answered with `headers` too.
    pub(super) fn with_headers(self, headers: Vec<(axum::http::HeaderName, String)>) -> ApiError {
        ApiError { headers, ..self }
    }

    /// This error, with the `reason` field of a `decide_failed`.
    pub(super) fn with_reason(self, reason: &'static str) -> ApiError {
        ApiError {
            reason: Some(reason),
            ..self
        }
    }

    /// Dashboard (issue 14): the status and message a page shows for this error.
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// See [`ApiError::status`].
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(super) fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    pub(super) fn internal(message: impl std::fmt::Display) -> ApiError {
        tracing::error!(%message, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the server log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: api::ApiError {
                code: self.code.to_owned(),
                message: self.message,
                reason: self.reason.map(str::to_owned),
            },
        };
        let mut response = match self.beside {
            None => (self.status, Json(body)).into_response(),
            Some(beside) => {
                let (name, value) = *beside;
                let mut body = serde_json::to_value(body).unwrap_or_default();
                if let serde_json::Value::Object(fields) = &mut body {
                    fields.insert(name.to_owned(), value);
                }
                (self.status, Json(body)).into_response()
            }
        };
        for (name, value) in self.headers {
            if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Exists(what) => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            // Nothing of the request is acknowledged; a retry is safe (events carry ids). In a
            // cluster this is the partition's log refusing or a partition that just moved.
            StoreError::Flush(why) => {
                tracing::warn!(%why, "a write could not be made durable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the write could not be made durable ({why}); retry shortly"),
                )
                .with_headers(vec![(axum::http::header::RETRY_AFTER, "1".to_string())])
            }
            other => ApiError::internal(other),
        }
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> ApiError {
        match e {
            SandboxError::Internal(m) => ApiError::internal(m),
            SandboxError::InvalidConfig(m) => ApiError::bad_request("invalid_config", m),
            SandboxError::ForbiddenImport(m) => ApiError::bad_request("forbidden_import", m),
            other => ApiError::bad_request("invalid_component", other.to_string()),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        match e {
            RegistryError::Store(e) => e.into(),
            RegistryError::Sandbox(e) => e.into(),
            other => ApiError::internal(other),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "invalid_body"
        };
        ApiError::new(status, code, r.body_text())
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body, with a message that says where it went wrong.
pub(super) fn parse_json<'a, T: serde::Deserialize<'a>>(body: &'a [u8]) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("malformed JSON body: {e}")))
}

impl From<TaskError> for ApiError {
    fn from(e: TaskError) -> ApiError {
        match e {
            TaskError::NotFound(_) => ApiError::not_found(e.to_string()),
            TaskError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "task_conflict", e.to_string())
            }
            TaskError::Store(e) => e.into(),
        }
    }
}
