//! The request head's bounds, kept below hyper so that their refusals are JSON too.
//!
//! hyper refuses a head that overflows its read buffer or carries too many header fields with
//! a bare `431` (and a request line past its own bound with a bare `414`), no body, before any
//! router sees the request. [`Guarded`] watches the bytes of each request head as they are read
//! and refuses first, with limits below hyper's: it answers `{"error": {"code", "message"}}`
//! itself (`431 headers_too_large`, or `414 uri_too_long` when the request line never ended),
//! ends the connection, and lingers on it so that a client still sending sees the answer rather
//! than a reset.
//!
//! The same wrapper replaces hyper's bare answer to a head it cannot parse at all (a malformed
//! request line or header: `400` with no body) with the JSON one, in place, as hyper writes it.
//!
//! Only heads are watched: [`Guarded`] scans from the first byte of a head to its empty line,
//! then stops until the request's body has been read to its end, which the service side reports
//! through [`Boundary::track`] (bodies are read whole by the edge layer before any handler). A
//! head that arrives pipelined before that report is left to hyper's own limits, which stay as
//! the backstop ([`super::limits::MAX_HEAD_BUFFER`]).

use super::limits::{LINGER, LINGER_BYTES};
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How large a head may be before [`Guarded`] refuses it.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Request line, header fields and line ends together.
    pub max_bytes: usize,
    /// Header fields (lines after the request line).
    pub max_fields: usize,
}

/// The connection's shared mark between the body side and the byte side: "the request's body
/// has been read to its end; the next bytes start a head".
#[derive(Debug, Default)]
pub struct Boundary {
    next_head: AtomicBool,
}

impl Boundary {
    pub fn new() -> Arc<Boundary> {
        Arc::new(Boundary::default())
    }

    /// The request body, reporting its end to the connection's [`Guarded`].
    pub fn track<B: HttpBody + Unpin>(self: &Arc<Self>, body: B) -> Tracked<B> {
        let boundary = Arc::clone(self);
        if body.is_end_stream() {
            boundary.next_head.store(true, Ordering::Release);
            return Tracked {
                body,
                boundary: None,
            };
        }
        Tracked {
            body,
            boundary: Some(boundary),
        }
    }
}

/// A request body that marks its connection's [`Boundary`] when it ends.
pub struct Tracked<B> {
    body: B,
    boundary: Option<Arc<Boundary>>,
}

impl<B: HttpBody + Unpin> HttpBody for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let frame = ready!(Pin::new(&mut self.body).poll_frame(cx));
        if frame.is_none() || self.body.is_end_stream() {
            if let Some(boundary) = self.boundary.take() {
                boundary.next_head.store(true, Ordering::Release);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overrun {
    /// The request line alone passed the byte limit.
    RequestLine,
    /// The head passed the byte limit after its request line.
    Bytes,
    /// More header fields than allowed.
    Fields,
}

/// Where the scan of a head stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a head: bytes and lines so far, and how far into a possible empty line.
    Head {
        bytes: usize,
        lines: usize,
        started: bool,
        /// 0: inside a line; 1: just after `\n`; 2: after `\n\r`.
        line_start: u8,
    },
    /// The head ended; waiting for the body's end before scanning again.
    Request,
}

impl Phase {
    const FRESH: Phase = Phase::Head {
        bytes: 0,
        lines: 0,
        started: false,
        line_start: 0,
    };
}

enum Scanned {
    /// The head goes on past these bytes.
    More,
    /// The head's empty line is among these bytes.
    Ended,
    Over(Overrun),
}

/// Moves `phase` over `bytes`, stopping at the head's end or at a limit.
fn scan(phase: &mut Phase, bytes: &[u8], limits: HeadLimits) -> Scanned {
    let Phase::Head {
        bytes: count,
        lines,
        started,
        line_start,
    } = phase
    else {
        return Scanned::More;
    };
    for &b in bytes {
        // Empty lines before the request line are ignored (RFC 9112 § 2.2), as hyper does.
        if !*started {
            if b == b'\r' || b == b'\n' {
                continue;
            }
            *started = true;
        }
        *count += 1;
        match b {
            b'\n' if *line_start > 0 => {
                *phase = Phase::Request;
                return Scanned::Ended;
            }
            b'\n' => {
                *lines += 1;
                *line_start = 1;
                // Lines after the first are header fields.
                if *lines > limits.max_fields + 1 {
                    return Scanned::Over(Overrun::Fields);
                }
            }
            b'\r' if *line_start == 1 => *line_start = 2,
            _ => *line_start = 0,
        }
        if *count > limits.max_bytes {
            return Scanned::Over(if *lines == 0 {
                Overrun::RequestLine
            } else {
                Overrun::Bytes
            });
        }
    }
    Scanned::More
}

/// The answer to a refused head, as bytes on the wire.
fn refusal(overrun: Overrun, limits: HeadLimits) -> Vec<u8> {
    match overrun {
        Overrun::RequestLine => answer(
            "414 URI Too Long",
            "uri_too_long",
            &format!("the request line is over {} bytes", limits.max_bytes),
        ),
        Overrun::Bytes => answer(
            "431 Request Header Fields Too Large",
            "headers_too_large",
            &format!("the request head is over {} bytes", limits.max_bytes),
        ),
        Overrun::Fields => answer(
            "431 Request Header Fields Too Large",
            "headers_too_large",
            &format!("the request has over {} header fields", limits.max_fields),
        ),
    }
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
fn in_place_of_bare(written: &[u8]) -> Option<Vec<u8>> {
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
        "400" => ("invalid_input", "the request head is not valid HTTP/1.1"),
        "414" => ("uri_too_long", "the request line is too long"),
        "431" => ("headers_too_large", "the request head is too large"),
        _ => return None,
    };
    Some(answer(status, code, message))
}

/// A connection's byte stream, with its heads watched (see the module's documentation).
pub struct Guarded {
    inner: Option<TcpStream>,
    limits: HeadLimits,
    boundary: Arc<Boundary>,
    phase: Phase,
    /// The refusal being written, and how much of it is out.
    refusing: Option<(Vec<u8>, usize)>,
    /// While a refusal replaces hyper's own bare answer: that answer's length, reported to
    /// hyper as written once the refusal is out.
    replacing: Option<usize>,
}

impl Guarded {
    pub fn new(inner: TcpStream, limits: HeadLimits, boundary: Arc<Boundary>) -> Guarded {
        Guarded {
            inner: Some(inner),
            limits,
            boundary,
            phase: Phase::FRESH,
            refusing: None,
            replacing: None,
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection already released")
}

impl Guarded {
    /// Writes the refusal; once it is out, reads end (hyper closes the connection without an
    /// answer of its own: the head it holds is incomplete).
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
        let this = &mut *self;
        if this.refusing.is_some() {
            return this.poll_refuse(cx);
        }
        if this.phase == Phase::Request && this.boundary.next_head.swap(false, Ordering::AcqRel) {
            this.phase = Phase::FRESH;
        }
        let before = buf.filled().len();
        let inner = this.inner.as_mut().ok_or_else(gone)?;
        ready!(Pin::new(inner).poll_read(cx, buf))?;
        if let Scanned::Over(overrun) = scan(&mut this.phase, &buf.filled()[before..], this.limits)
        {
            tracing::debug!(?overrun, "request head refused");
            // hyper never sees the bytes that overran.
            buf.set_filled(before);
            this.refusing = Some((refusal(overrun, this.limits), 0));
            return this.poll_refuse(cx);
        }
        Poll::Ready(Ok(()))
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
            if let Some(json) = in_place_of_bare(buf) {
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
            if self.replacing.is_some() || in_place_of_bare(first).is_some() {
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
        max_bytes: 64,
        max_fields: 3,
    };

    fn run(chunks: &[&[u8]]) -> Vec<&'static str> {
        let mut phase = Phase::FRESH;
        chunks
            .iter()
            .map(|chunk| match scan(&mut phase, chunk, LIMITS) {
                Scanned::More => "more",
                Scanned::Ended => "ended",
                Scanned::Over(Overrun::RequestLine) => "line",
                Scanned::Over(Overrun::Bytes) => "bytes",
                Scanned::Over(Overrun::Fields) => "fields",
            })
            .collect()
    }

    #[test]
    fn a_head_ends_at_its_empty_line_across_reads() {
        assert_eq!(run(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]), ["ended"]);
        assert_eq!(
            run(&[b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r", b"\n"]),
            ["more", "more", "ended"]
        );
        // Bare line feeds, as hyper accepts them.
        assert_eq!(run(&[b"GET / HTTP/1.1\nHost: x\n\n"]), ["ended"]);
        // Empty lines before the request line are skipped, not taken for the head's end.
        assert_eq!(
            run(&[b"\r\n\r\nGET / HTTP/1.1\r\n", b"\r\n"]),
            ["more", "ended"]
        );
    }

    #[test]
    fn body_bytes_after_the_head_are_not_counted() {
        let mut request = b"POST / HTTP/1.1\r\nA: 1\r\n\r\n".to_vec();
        request.extend(b"{}\n".repeat(100));
        assert_eq!(run(&[&request]), ["ended"]);
    }

    #[test]
    fn limits_name_what_overran() {
        let line = [b'a'; 70];
        assert_eq!(run(&[b"GET /", &line]), ["more", "line"]);
        assert_eq!(run(&[b"GET / HTTP/1.1\r\nX: ", &line]), ["more", "bytes"]);
        assert_eq!(
            run(&[b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"]),
            ["ended"]
        );
        assert_eq!(
            run(&[b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"]),
            ["fields"]
        );
    }

    #[test]
    fn only_hypers_bare_answers_are_replaced() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let json = String::from_utf8(in_place_of_bare(bare).unwrap()).unwrap();
        assert!(json.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{json}");
        assert!(json.contains(r#""code":"invalid_input""#), "{json}");
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        assert!(String::from_utf8(in_place_of_bare(bare).unwrap())
            .unwrap()
            .contains("headers_too_large"));
        // The router's own answers carry a body, and other statuses are left alone.
        let routed = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 52\r\n\r\n";
        assert!(in_place_of_bare(routed).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}";
        assert!(in_place_of_bare(with_body).is_none());
        let fine = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert!(in_place_of_bare(fine).is_none());
    }

    #[test]
    fn the_refusal_is_the_documented_json() {
        let bytes = refusal(Overrun::Fields, LIMITS);
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "headers_too_large");
        assert!(json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("3 header fields"));
    }
}
