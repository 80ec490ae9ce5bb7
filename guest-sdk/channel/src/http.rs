//! A small blocking HTTP client for channel adapters, over the host's `outbound` import
//! (contract 0.1.3: a request and its response cross the boundary once each).
//!
//! The host lets an adapter reach only the hosts its channel registration allows; any other
//! request fails with [`HttpError::Denied`]. Every HTTP status, 4xx and 5xx included, is a
//! [`Response`]: only failures to get a response at all are [`HttpError`]s.
//! [`Response::outcome`] (or [`outcome_with_id`](Response::outcome_with_id)) turns a response
//! into the delivery's outcome, and `?` turns an [`HttpError`] into a
//! [`DeliveryError`](crate::DeliveryError), so an adapter's `deliver` is one line:
//!
//! ```no_run
//! use waymark_channel::http::{ProviderId, Request};
//! use waymark_channel::{json, DeliveryError, Receipt};
//!
//! fn deliver() -> Result<Receipt, DeliveryError> {
//!     let request = Request::post("https://hooks.example.com/in")
//!         .header("Idempotency-Key", "m-1")
//!         .json(&json!({"hello": "world"}));
//!     request.send()?.outcome_with_id(ProviderId::JsonField("id"))
//! }
//! ```
//!
//! Outside the host (native tests) [`Request::send`] returns [`HttpError::Unsupported`]; keep
//! request building in a pure function and test it, and test classification on
//! [`Response::new`].

use std::fmt;

use serde_json::Value;

mod outcome;

pub use outcome::{ProviderId, ERROR_SNIPPET_CHARS};

/// How much of a response body [`Request::send`] reads by default: 1 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1 << 20;

/// A URL's scheme. Only `http` and `https` are supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

/// An absolute `http`/`https` URL, split the way `wasi:http` wants it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Url {
    /// The scheme.
    pub scheme: Scheme,
    /// `host` or `host:port`.
    pub authority: String,
    /// The path and query, always starting with `/`; the fragment is dropped.
    pub path_and_query: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL. Refuses other schemes, a missing host,
    /// user info (`user:pass@`; put credentials in headers) and whitespace or control
    /// characters anywhere.
    pub fn parse(url: &str) -> Result<Url, HttpError> {
        let invalid = |why: &str| HttpError::InvalidRequest(format!("invalid URL {url:?}: {why}"));
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("contains whitespace or control characters"));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("not absolute"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            _ => return Err(invalid("scheme must be http or https")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        if authority.is_empty() {
            return Err(invalid("no host"));
        }
        if authority.contains('@') {
            return Err(invalid("user info is not supported; use headers"));
        }
        if authority.starts_with(':') || authority.ends_with(':') {
            return Err(invalid("bad port"));
        }
        let path_and_query = match path_and_query {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Url {
            scheme,
            authority: authority.to_string(),
            path_and_query,
        })
    }
}

/// Why a request got no response. HTTP error statuses are not `HttpError`s: they are
/// [`Response`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The request cannot be sent as built: a bad URL, method or header. Retrying will not help.
    InvalidRequest(String),
    /// The host refused the request: the destination is not among the hosts the channel's
    /// registration allows (`HTTP-request-denied`), or its address is prohibited.
    Denied(String),
    /// The request may have left but no response came back: DNS failure, connection refused or
    /// reset, timeout, TLS or protocol error. Usually worth retrying.
    Transport(String),
    /// Not running inside the Waymark host (e.g. a native test), so there is no network.
    Unsupported,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            HttpError::Denied(m) => write!(f, "denied by the host: {m}"),
            HttpError::Transport(m) => write!(f, "transport error: {m}"),
            HttpError::Unsupported => {
                f.write_str("outbound HTTP only runs inside the Waymark host (wasm32-wasip2)")
            }
        }
    }
}

impl std::error::Error for HttpError {}

/// An HTTP request, built fluently and sent with [`send`](Request::send).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    max_response_bytes: usize,
}

impl Request {
    /// A request with any method (e.g. `"PATCH"`) to an absolute `http`/`https` URL. The URL is
    /// checked when the request is sent; check it earlier with [`Url::parse`].
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Request {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Request::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Request::new("POST", url)
    }

    /// A `PUT` request.
    pub fn put(url: impl Into<String>) -> Self {
        Request::new("PUT", url)
    }

    /// Adds a header. Repeating a name sends it several times. The host forbids hop-by-hop
    /// headers such as `Host`, `Connection` and `Transfer-Encoding`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body. `Content-Length` is added when the request is sent, unless already set.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets the body to `value` as JSON, and `Content-Type: application/json` unless a
    /// content type is already set.
    pub fn json(mut self, value: &Value) -> Self {
        self.body = value.to_string().into_bytes();
        if self.header_value("content-type").is_none() {
            self.headers
                .push(("Content-Type".into(), "application/json".into()));
        }
        self
    }

    /// Reads at most `limit` bytes of the response body; the rest is dropped and
    /// [`Response::truncated`] says so. Defaults to [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.max_response_bytes = limit;
        self
    }

    /// The method.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The URL, as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The headers, in the order added.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive), if set.
    pub fn header_value(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Sends the request and waits for the whole response.
    pub fn send(&self) -> Result<Response, HttpError> {
        let url = Url::parse(&self.url)?;
        if self.method.is_empty()
            || !self
                .method
                .bytes()
                .all(|b| b.is_ascii_alphabetic() || b == b'-')
        {
            return Err(HttpError::InvalidRequest(format!(
                "invalid method {:?}",
                self.method
            )));
        }
        let mut headers = self.headers.clone();
        if !self.body.is_empty() && find_header(&headers, "content-length").is_none() {
            headers.push(("Content-Length".into(), self.body.len().to_string()));
        }
        transport::send(
            &self.method,
            &url,
            &headers,
            &self.body,
            self.max_response_bytes,
        )
    }
}

/// A response, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status code.
    pub status: u16,
    /// The headers, names lowercase as the host reports them, values decoded lossily as UTF-8.
    pub headers: Vec<(String, String)>,
    /// The body, at most the request's [`max_response_bytes`](Request::max_response_bytes).
    pub body: Vec<u8>,
    /// Whether the body was longer than the limit and cut.
    pub truncated: bool,
}

impl Response {
    /// A response with this status and body and no headers (for tests).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
            truncated: false,
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The first value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[cfg(not(target_arch = "wasm32"))]
mod transport {
    use super::*;

    pub(super) fn send(
        _method: &str,
        _url: &Url,
        _headers: &[(String, String)],
        _body: &[u8],
        _limit: usize,
    ) -> Result<Response, HttpError> {
        Err(HttpError::Unsupported)
    }
}

#[cfg(target_arch = "wasm32")]
mod transport {
    //! One call of the host's `outbound` import (contract 0.1.3): the request goes in whole and
    //! the response comes back whole, under the same policy as `wasi:http`.

    use super::*;
    use crate::bindings::waymark::journey::outbound as wit;

    pub(super) fn send(
        method: &str,
        url: &Url,
        headers: &[(String, String)],
        body: &[u8],
        limit: usize,
    ) -> Result<Response, HttpError> {
        let scheme = match url.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        // The standard methods in capitals, as `wasi:http`'s method enum sends them; any other
        // token as given.
        let upper = method.to_ascii_uppercase();
        let standard = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        let request = wit::Request {
            method: if standard.contains(&upper.as_str()) {
                upper
            } else {
                method.to_string()
            },
            url: format!("{scheme}://{}{}", url.authority, url.path_and_query),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: body.to_vec(),
            max_response_bytes: u32::try_from(limit).unwrap_or(u32::MAX),
        };
        match wit::send(&request) {
            Ok(response) => Ok(Response {
                status: response.status,
                headers: response.headers,
                body: response.body,
                truncated: response.truncated,
            }),
            Err(wit::SendError::InvalidRequest(m)) => Err(HttpError::InvalidRequest(m)),
            Err(wit::SendError::Denied(m)) => Err(HttpError::Denied(m)),
            Err(wit::SendError::Transport(m)) => Err(HttpError::Transport(m)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        assert_eq!(
            url("https://hooks.example.com:8443/in/v1?x=1#frag"),
            Url {
                scheme: Scheme::Https,
                authority: "hooks.example.com:8443".into(),
                path_and_query: "/in/v1?x=1".into()
            }
        );
        assert_eq!(url("http://127.0.0.1:9000").path_and_query, "/");
        assert_eq!(url("HTTP://h?q=1").path_and_query, "/?q=1");
        assert_eq!(url("http://[::1]:80/").authority, "[::1]:80");
    }

    #[test]
    fn bad_urls_are_invalid_requests() {
        for bad in [
            "",
            "example.com/x",
            "ftp://h/",
            "http:///x",
            "http://u:p@h/",
            "http://h /",
            "http://:80/",
            "http://h:/",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(HttpError::InvalidRequest(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn json_sets_body_and_content_type_once() {
        let r = Request::post("http://h/").json(&json!({"a": 1}));
        assert_eq!(r.method(), "POST");
        assert_eq!(r.body_bytes(), br#"{"a":1}"#);
        assert_eq!(r.header_value("content-type"), Some("application/json"));

        let r = Request::post("http://h/")
            .header("content-type", "application/vnd+json")
            .json(&json!(1));
        assert_eq!(r.headers().len(), 1);
        assert_eq!(r.header_value("Content-Type"), Some("application/vnd+json"));
    }

    #[test]
    fn sending_natively_is_unsupported_but_validates_first() {
        assert_eq!(
            Request::get("http://h/").send(),
            Err(HttpError::Unsupported)
        );
        assert!(matches!(
            Request::get("nope").send(),
            Err(HttpError::InvalidRequest(_))
        ));
        assert!(matches!(
            Request::new("GE T", "http://h/").send(),
            Err(HttpError::InvalidRequest(_))
        ));
        assert!(HttpError::Unsupported
            .to_string()
            .contains("inside the Waymark host"));
    }

    #[test]
    fn responses_expose_status_headers_and_body() {
        let mut r = Response::new(201, br#"{"id":"p-1"}"#.to_vec());
        r.headers.push(("x-request-id".into(), "abc".into()));
        assert!(r.is_success());
        assert_eq!(r.header("X-Request-Id"), Some("abc"));
        assert_eq!(r.json().unwrap()["id"], "p-1");
        assert_eq!(r.text(), r#"{"id":"p-1"}"#);
        assert!(!Response::new(404, Vec::new()).is_success());
    }
}
