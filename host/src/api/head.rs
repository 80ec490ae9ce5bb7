//! The request head's refusals below the router, in the documented JSON.
//!
//! hyper parses each request head itself and answers one it cannot take with a bare status
//! and no body, before any router sees the request: `400` for a malformed request line or
//! header, `431` for a head past its read buffer ([`super::limits::MAX_HEAD_BYTES`]) or with
//! more header fields than allowed ([`super::limits::MAX_HEADER_FIELDS`]), `414` for a request
//! target past its own bound. [`Guarded`], the connection's byte stream, replaces such an answer
//! in place, as hyper writes it, with `{"error": {"code", "message"}}` under the same status,
//! and then lingers on the connection so that a client still sending its head sees the answer
//! rather than a reset.
//!
//! (Watching heads as they are read, to refuse before hyper does, was tried first: knowing where
//! one request's body ends and the next head starts on a kept-alive connection means following
//! hyper's own body framing, and a body end reported from the service side arrives after hyper
//! has read ahead — a body of spaces was once taken for an endless request line.)

use super::limits::{LINGER, LINGER_BYTES};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The head limits hyper enforces, named in the refusals' messages.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line, header fields and line ends together (hyper's read buffer).
    pub max_bytes: usize,
    /// Header fields.
    pub max_fields: usize,
}

/// `{"error": {"code", "message"}}` with its status, closing the connection.
fn answer(status: &str, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The JSON answer in place of hyper's own to a head it could not parse (a malformed request
/// line or header, or a head past its backstop limits): hyper writes those as a bare status
/// with `content-length: 0`, which nothing above it ever writes for these statuses (every
/// error of the router carries its JSON body).
fn in_place_of_bare(written: &[u8], limits: HeadLimits) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(written).ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| head.strip_prefix("HTTP/1.0 "))?;
    let bare = rest.is_empty()
        && head
            .lines()
            .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    if !bare {
        return None;
    }
    let status = status.lines().next()?;
    let (code, message) = match status.get(..3)? {
        "400" => (
            "invalid_input",
            "the request head is not valid HTTP/1.1".to_string(),
        ),
        "414" => ("uri_too_long", "the request target is too long".to_string()),
        "431" => (
            "headers_too_large",
            format!(
                "the request head is over {} KiB or has over {} header fields",
                limits.max_bytes / 1024,
                limits.max_fields
            ),
        ),
        _ => return None,
    };
    Some(answer(status, code, &message))
}

/// A connection's byte stream, with its heads watched (see the module's documentation).
pub struct Guarded {
    inner: Option<TcpStream>,
    limits: HeadLimits,
    /// The refusal being written, and how much of it is out.
    refusing: Option<(Vec<u8>, usize)>,
    /// While a refusal replaces hyper's own bare answer: that answer's length, reported to
    /// hyper as written once the refusal is out.
    replacing: Option<usize>,
}

impl Guarded {
    pub fn new(inner: TcpStream, limits: HeadLimits) -> Guarded {
        Guarded {
            inner: Some(inner),
            limits,
            refusing: None,
            replacing: None,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection already released")
}

impl Guarded {
    /// Writes the refusal in place of hyper's bare answer, then ends the write side.
    fn poll_refuse(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = self.inner.as_mut().ok_or_else(gone)?;
        if let Some((bytes, written)) = self.refusing.as_mut() {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut *inner).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
            ready!(Pin::new(&mut *inner).poll_flush(cx))?;
            // The answer is whole: end the write side now, so the client sees it end at once
            // (hyper, on a kept-alive connection, may hold the socket until its header timeout;
            // the linger of `Drop` then reads and drops what is still sent).
            let _ = ready!(Pin::new(&mut *inner).poll_shutdown(cx));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Once a refusal is out, the connection is over: reads end, hyper closes it, and the
        // linger of `Drop` reads and drops what the client still sends.
        if self.refusing.is_some() {
            return Poll::Ready(Ok(()));
        }
        let inner = self.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.refusing.is_none() {
            if let Some(json) = in_place_of_bare(buf, this.limits) {
                tracing::debug!("hyper's bare answer to a request head replaced by JSON");
                this.refusing = Some((json, 0));
                this.replacing = Some(buf.len());
            }
        }
        if let Some(len) = this.replacing {
            ready!(this.poll_refuse(cx))?;
            this.replacing = None;
            return Poll::Ready(Ok(len));
        }
        let inner = this.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        // hyper writes an answer's head as one slice: a bare one goes the way of `poll_write`.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if self.replacing.is_some() || in_place_of_bare(first, self.limits).is_some() {
                let first: &[u8] = first;
                return self.poll_write(cx, first);
            }
        }
        let inner = self.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = self.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = self.inner.as_mut().ok_or_else(gone)?;
        Pin::new(inner).poll_shutdown(cx)
    }
}

impl Drop for Guarded {
    /// A refused head's connection lingers: the client may still be sending it, and closing
    /// with its bytes unread would reset the connection and could discard the answer at the
    /// client. The rest is read and dropped (at most [`LINGER`], [`LINGER_BYTES`]) after the
    /// write side is shut.
    fn drop(&mut self) {
        if self.refusing.is_none() {
            return;
        }
        let (Some(mut stream), Ok(runtime)) =
            (self.inner.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = stream.shutdown().await;
            let drain = async {
                let mut sink = vec![0u8; 16 * 1024];
                let mut read = 0;
                while let Ok(n) = stream.read(&mut sink).await {
                    read += n;
                    if n == 0 || read > LINGER_BYTES {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, drain).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 128 * 1024,
        max_fields: 100,
    };

    #[test]
    fn only_hypers_bare_answers_are_replaced() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let json = String::from_utf8(in_place_of_bare(bare, LIMITS).unwrap()).unwrap();
        assert!(json.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{json}");
        assert!(json.contains(r#""code":"invalid_input""#), "{json}");
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(in_place_of_bare(bare, LIMITS).unwrap())
            .unwrap()
            .contains("headers_too_large"));
        // The router's own answers carry a body, and other statuses are left alone.
        let routed = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 52\r\n\r\n";
        assert!(in_place_of_bare(routed, LIMITS).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}";
        assert!(in_place_of_bare(with_body, LIMITS).is_none());
        let fine = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert!(in_place_of_bare(fine, LIMITS).is_none());
    }

    #[test]
    fn the_refusal_is_the_documented_json() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let text = String::from_utf8(in_place_of_bare(bare, LIMITS).unwrap()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "headers_too_large");
        let message = json["error"]["message"].as_str().unwrap();
        assert!(message.contains("128 KiB") && message.contains("100 header fields"));
    }
}
