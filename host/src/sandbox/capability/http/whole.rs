//! The `outbound` import (contract 0.1.3): a request sent and its response read in one call.
//!
//! The same policy as `wasi:http` goes through the same choke point: [`OutboundPolicy::send`]
//! checks that the host may still send, then the authority against the channel's allowed hosts,
//! and hands the request to the host's [`super::ConnectionPool`], which vets every new
//! connection's addresses. What this adds is only the boundary: the request arrives whole (one
//! lowering of its strings and body) and the response leaves whole, where `wasi:http`'s fields,
//! request, body, stream, future and pollable resources take some thirty calls and two spawned
//! tasks per request. The guest's `max-response-bytes` bounds what is read; the delivery's
//! deadline and the policy's timeouts bound how long.

use super::{HttpError, OutboundHttp, OutboundPolicy, WasiBody};
use crate::sandbox::bindings::outbound as wit;
use crate::sandbox::capability::Capability;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::{Scheme, Uri};
use http_body_util::{BodyExt, Full};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// What this capability grants: the `outbound` interface.
pub(in crate::sandbox) const INTERFACES: &[&str] = &["waymark:journey/outbound@"];

impl wit::Host for OutboundHttp {
    async fn send(&mut self, request: wit::Request) -> Result<wit::Response, wit::SendError> {
        let policy = self.hooks.policy.clone();
        let pool = self.hooks.pool.clone();
        send(policy, pool, request).await
    }
}

/// Builds the request as `wasi:http` would (the same forbidden headers, `Host` set from the
/// URL), sends it through the policy, and reads at most `max-response-bytes` of the body.
async fn send(
    policy: Arc<OutboundPolicy>,
    pool: Arc<super::ConnectionPool>,
    request: wit::Request,
) -> Result<wit::Response, wit::SendError> {
    let limit = usize::try_from(request.max_response_bytes).unwrap_or(usize::MAX);
    let built = build(request)?;
    let (response, _io) = policy
        .clone()
        .send(pool, built, None)
        .await
        .map_err(|e| from_http_error(&e))?;
    let (parts, mut body) = response.into_parts();
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_string(), value)
        })
        .collect();
    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| from_http_error(&e))?;
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let room = limit - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(wit::Response {
        status: parts.status.as_u16(),
        headers,
        body: bytes,
        truncated,
    })
}

/// The request as hyper sends it, or why it cannot be sent.
fn build(request: wit::Request) -> Result<http::Request<WasiBody>, wit::SendError> {
    let invalid = |what: String| wit::SendError::InvalidRequest(what);
    let method = http::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| invalid(format!("invalid method {:?}", request.method)))?;
    let uri: Uri = request
        .url
        .parse()
        .map_err(|_| invalid(format!("invalid URL {:?}", request.url)))?;
    let scheme_ok = uri.scheme() == Some(&Scheme::HTTP) || uri.scheme() == Some(&Scheme::HTTPS);
    let Some(authority) = uri.authority().filter(|_| scheme_ok) else {
        return Err(invalid(format!(
            "invalid URL {:?}: not an absolute http or https URL",
            request.url
        )));
    };
    if authority.as_str().contains('@') {
        return Err(invalid(format!(
            "invalid URL {:?}: user info is not supported; use headers",
            request.url
        )));
    }
    let host = HeaderValue::from_str(authority.as_str())
        .map_err(|_| invalid(format!("invalid URL {:?}", request.url)))?;
    let mut built = http::Request::builder().method(method).uri(uri.clone());
    let headers = built.headers_mut().expect("a builder without errors yet");
    headers.insert(http::header::HOST, host);
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid(format!("invalid header name {name:?}")))?;
        if wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(&name) {
            return Err(invalid(format!("header {name} is set by the host")));
        }
        // Bytes, as `wasi:http`'s fields take them: a value may carry UTF-8 (obs-text).
        let value = HeaderValue::from_bytes(value.as_bytes())
            .map_err(|_| invalid(format!("invalid value of header {name}")))?;
        headers.append(name, value);
    }
    let body: WasiBody = Full::new(Bytes::from(request.body))
        .map_err(|never: std::convert::Infallible| -> HttpError { match never {} })
        .boxed_unsync();
    built
        .body(body)
        .map_err(|e| invalid(format!("the request cannot be built: {e}")))
}

/// A failure as the guest sees it, worded as the SDK words `wasi:http`'s error codes.
fn from_http_error(error: &HttpError) -> wit::SendError {
    match error {
        // Why is the policy's, kept for the delivery's error: the guest sees the code, as
        // through `wasi:http`.
        HttpError::HttpRequestDenied | HttpError::DestinationIpProhibited => {
            wit::SendError::Denied(format!("{error:?}"))
        }
        HttpError::HttpRequestMethodInvalid
        | HttpError::HttpRequestUriInvalid
        | HttpError::HttpRequestUriTooLong
        | HttpError::HttpRequestLengthRequired
        | HttpError::HttpRequestBodySize(_)
        | HttpError::HttpRequestHeaderSectionSize(_)
        | HttpError::HttpRequestHeaderSize { .. } => {
            wit::SendError::InvalidRequest(format!("{error:?}"))
        }
        HttpError::Hyper(e) => wit::SendError::Transport(format!("HTTP: {e}")),
        HttpError::Connect(e) => wit::SendError::Transport(format!("connect: {e}")),
        HttpError::Tls(e) => wit::SendError::Transport(format!("TLS: {e}")),
        HttpError::DnsError { rcode, .. } => {
            wit::SendError::Transport(format!("DNS error {rcode:?}"))
        }
        HttpError::InternalError(Some(m)) => {
            wit::SendError::Transport(format!("internal error: {m}"))
        }
        other => wit::SendError::Transport(format!("{other:?}")),
    }
}

struct Outbound;

impl HasData for Outbound {
    type Data<'a> = &'a mut OutboundHttp;
}

/// Store data that holds an [`OutboundHttp`].
pub(in crate::sandbox) trait HasOutbound {
    fn outbound_http(&mut self) -> &mut OutboundHttp;
}

/// Adds the `outbound` import, reading the call's policy from the store data.
pub(in crate::sandbox) fn add_to_linker<T: HasOutbound + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, Outbound>(linker, T::outbound_http)
}

/// `outbound` as a world lists it.
pub(in crate::sandbox) const fn capability<T: HasOutbound + Send + 'static>() -> Capability<T> {
    Capability {
        interfaces: INTERFACES,
        add_to_linker: add_to_linker::<T>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> wit::Request {
        wit::Request {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: b"{}".to_vec(),
            max_response_bytes: 1024,
        }
    }

    #[test]
    fn a_request_is_built_with_its_host_header_and_headers_in_order() {
        let built = build(request(
            "POST",
            "https://api.example.com:8443/v1/send?x=1",
            &[
                ("X-A", "1"),
                ("x-a", "2"),
                ("Content-Type", "application/json"),
                ("X-Subject", "Café"),
            ],
        ))
        .expect("a valid request");
        assert_eq!(built.headers()["x-subject"].as_bytes(), "Café".as_bytes());
        assert_eq!(built.method(), http::Method::POST);
        assert_eq!(
            built.uri().to_string(),
            "https://api.example.com:8443/v1/send?x=1"
        );
        assert_eq!(built.headers()["host"], "api.example.com:8443");
        let a: Vec<_> = built.headers().get_all("x-a").iter().collect();
        assert_eq!(a, ["1", "2"]);
    }

    #[test]
    fn bad_requests_are_refused_as_invalid_before_any_policy() {
        for (method, url, headers) in [
            ("GE T", "http://h/", vec![]),
            ("GET", "ftp://h/", vec![]),
            ("GET", "/relative", vec![]),
            ("GET", "http://u:p@h/", vec![]),
            ("GET", "http://h/", vec![("Host", "elsewhere")]),
            ("GET", "http://h/", vec![("Transfer-Encoding", "chunked")]),
            ("GET", "http://h/", vec![("bad name", "x")]),
            ("GET", "http://h/", vec![("x", "line\nbreak")]),
        ] {
            match build(request(method, url, &headers)) {
                Err(wit::SendError::InvalidRequest(_)) => {}
                other => panic!(
                    "{method} {url} {headers:?}: {:?}",
                    other.map(|r| r.uri().clone())
                ),
            }
        }
    }
}
