//! The dashboard's errors: each one a readable HTML page with its status (never the JSON
//! body of the API, never a bare status), and "not signed in" a redirect to the sign-in page.

use crate::api::ApiError;
use crate::store::StoreError;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

/// Why a page could not be shown or an action could not be done.
#[derive(Debug)]
pub enum UiError {
    /// No valid session: go and sign in.
    SignIn,
    /// Signed in, but not allowed (a read key acting, a form without its CSRF token).
    Forbidden(String),
    NotFound(String),
    MethodNotAllowed(String),
    BadRequest(String),
    /// What the shared API code refused, with its status and message.
    Api(ApiError),
    /// What a partition refused (a cluster of several partitions), with its status and
    /// message.
    Refused(StatusCode, String),
    Internal(String),
}

pub type UiResult<T> = Result<T, UiError>;

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> UiError {
        UiError::Api(e)
    }
}

impl From<StoreError> for UiError {
    fn from(e: StoreError) -> UiError {
        UiError::Api(ApiError::from(e))
    }
}

impl UiError {
    fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            UiError::SignIn => (StatusCode::UNAUTHORIZED, "please sign in".into()),
            UiError::Forbidden(m) => (StatusCode::FORBIDDEN, m.clone()),
            UiError::NotFound(m) => (StatusCode::NOT_FOUND, m.clone()),
            UiError::MethodNotAllowed(m) => (StatusCode::METHOD_NOT_ALLOWED, m.clone()),
            UiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
            UiError::Api(e) => (e.status(), e.message().to_string()),
            UiError::Refused(status, m) => (*status, m.clone()),
            UiError::Internal(m) => {
                tracing::error!(message = %m, "dashboard internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log".into(),
                )
            }
        }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        if let UiError::SignIn = self {
            return Redirect::to("/ui/sign-in").into_response();
        }
        let (status, message) = self.status_and_message();
        let title = status.canonical_reason().unwrap_or("Error");
        let page = super::render::error_page(status.as_u16(), title, &message);
        (status, Html(page)).into_response()
    }
}
