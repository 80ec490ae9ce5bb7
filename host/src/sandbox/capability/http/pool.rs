//! Outbound connections, kept alive and shared by every channel call of the host, per
//! destination.
//!
//! A destination is a scheme, a host *as the request names it* and a port: a request for
//! `b.example` never travels on a connection opened for `a.example`, even when both resolve to
//! one address, so TLS always verifies the name the request was allowed for. Whether a channel
//! may reach a destination at all is decided before a request gets here, for every request
//! ([`super::OutboundPolicy::check_authority`]); this module decides where a *new connection*
//! may go:
//!
//! 1. The host is resolved, and unless the operator allows private networks every address must
//!    be public ([`super::classify_ip`]), else the request is refused (SSRF: an allowed name
//!    that resolves inward cannot reach the host's own network).
//! 2. The socket connects to one of exactly those vetted addresses: there is no second
//!    resolution that DNS rebinding could answer differently, for plain HTTP and HTTPS alike.
//! 3. HTTPS is verified against the host name with the webpki roots, as wasmtime-wasi-http's
//!    own sender does (rustls with ring, built once here rather than per request).
//!
//! A request reuses an idle connection to its destination when there is one, so every request
//! on a pooled connection goes to an address that passed step 1 under the same host-wide
//! setting. A connection goes back to the pool only once its response has been read to the end
//! (hyper then reports it ready); a response abandoned half-read closes it. Idle connections are
//! dropped after [`IDLE_TIMEOUT`] and bounded per destination and overall; one that the server
//! closed while idle is noticed at checkout, or, if the request was refused unsent, the request
//! is sent again on a new connection.
//!
//! The guest's request options are honoured, clamped by the caller: the connect timeout bounds
//! resolving, connecting and the TLS and HTTP handshakes of a new connection; the first-byte
//! timeout bounds sending the request and receiving the response head; the between-bytes
//! timeout bounds each wait for the next frame of the response body.

use super::{classify_ip, AddressClass, IoFuture};
use bytes::Bytes;
use http::uri::Uri;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use prometheus_client::metrics::counter::Counter;
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// How long a connection may sit idle before it is dropped rather than reused: well within the
/// keep-alive timeouts of common servers, so a reused connection is rarely one the server is
/// closing.
pub(super) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle connections kept per destination: at least the delivery loop's concurrency, so a busy
/// destination does not churn connections.
const MAX_IDLE_PER_DESTINATION: usize = 64;
/// Idle connections kept overall (each holds a socket).
const MAX_IDLE: usize = 512;
/// How often idle connections of every destination are swept for closed and expired ones.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Where a request goes: scheme, host (normalized, as the request names it) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(in crate::sandbox) struct Destination {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

/// The timeouts of one request, already clamped to the policy.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

/// Why a request could not be sent.
#[derive(Debug)]
pub(super) enum SendError {
    /// Refused by policy: the reason is for the operator and the delivery's error.
    Denied(String),
    /// Anything else, as `wasi:http` reports it.
    Http(HttpError),
}

impl From<HttpError> for SendError {
    fn from(error: HttpError) -> Self {
        SendError::Http(error)
    }
}

/// The host's outbound connections: see the module docs.
pub(in crate::sandbox) struct ConnectionPool {
    idle: Mutex<Idle>,
    tls: tokio_rustls::TlsConnector,
    allow_private_network: bool,
    /// Connections opened so far (`/metrics`).
    opened: Counter,
}

/// The idle connections, by destination, most recently used last.
struct Idle {
    by_destination: HashMap<Destination, Vec<IdleConnection>>,
    total: usize,
    swept: Instant,
}

struct IdleConnection {
    sender: SendRequest<WasiBody>,
    since: Instant,
}

impl IdleConnection {
    fn usable(&self, now: Instant) -> bool {
        self.sender.is_ready() && now.duration_since(self.since) < IDLE_TIMEOUT
    }
}

impl ConnectionPool {
    /// A pool whose new connections may reach private addresses only if
    /// `allow_private_network`; `opened` counts the connections it opens.
    pub(in crate::sandbox) fn new(allow_private_network: bool, opened: Counter) -> ConnectionPool {
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        // ring by name: the provider wasmtime-wasi-http is built with, and no process-wide
        // default to depend on.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        ConnectionPool {
            idle: Mutex::new(Idle {
                by_destination: HashMap::new(),
                total: 0,
                swept: Instant::now(),
            }),
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            allow_private_network,
            opened,
        }
    }

    /// Connections opened so far.
    #[cfg(test)]
    pub(in crate::sandbox) fn opened(&self) -> u64 {
        self.opened.get()
    }

    /// Connections idle in the pool right now.
    #[cfg(test)]
    pub(in crate::sandbox) fn idle_connections(&self) -> usize {
        lock(&self.idle).total
    }

    /// Sends `request` to `to` on an idle connection, or a new one. The request's URI must be
    /// absolute (it names `to`); it is sent in origin form.
    pub(super) async fn send(
        self: &Arc<Self>,
        to: Destination,
        mut request: http::Request<WasiBody>,
        timeouts: Timeouts,
    ) -> Result<(http::Response<WasiBody>, IoFuture), SendError> {
        *request.uri_mut() = origin_form(request.uri())?;
        loop {
            let (mut sender, reused) = match self.checkout(&to) {
                Some(sender) => (sender, true),
                None => (self.connect(&to, timeouts.connect).await?, false),
            };
            let sent =
                tokio::time::timeout(timeouts.first_byte, sender.try_send_request(request)).await;
            match sent {
                Err(_elapsed) => return Err(HttpError::ConnectionReadTimeout.into()),
                Ok(Ok(response)) => {
                    self.recycle(to, sender);
                    let response = response
                        .map(|incoming| BetweenBytes::wrap(incoming, timeouts.between_bytes));
                    let io: IoFuture = Box::new(async { Ok(()) });
                    return Ok((response, io));
                }
                Ok(Err(mut error)) => match (reused, error.take_message()) {
                    // The idle connection was closed before the request went out: it is
                    // safe to send it again, on a new connection if need be.
                    (true, Some(unsent)) => request = unsent,
                    _ => return Err(HttpError::from(error.into_error()).into()),
                },
            }
        }
    }

    /// An idle connection to `to` that is still open, if any (most recently used first).
    fn checkout(&self, to: &Destination) -> Option<SendRequest<WasiBody>> {
        let mut idle = lock(&self.idle);
        let now = Instant::now();
        let Idle {
            by_destination,
            total,
            ..
        } = &mut *idle;
        let list = by_destination.get_mut(to)?;
        let mut found = None;
        while let Some(connection) = list.pop() {
            *total -= 1;
            if connection.usable(now) {
                found = Some(connection.sender);
                break;
            }
        }
        if list.is_empty() {
            by_destination.remove(to);
        }
        found
    }

    /// Puts `sender` back in the pool once its response has been read to the end (and not if
    /// the connection closes meanwhile).
    fn recycle(self: &Arc<Self>, to: Destination, mut sender: SendRequest<WasiBody>) {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            // A response never read to the end keeps its connection busy; give up on it with
            // the idle timeout (the connection closes when that response is dropped).
            let ready = tokio::time::timeout(IDLE_TIMEOUT, sender.ready()).await;
            if let (Ok(Ok(())), Some(pool)) = (ready, pool.upgrade()) {
                pool.put(to, sender);
            }
        });
    }

    fn put(&self, to: Destination, sender: SendRequest<WasiBody>) {
        let mut idle = lock(&self.idle);
        let now = Instant::now();
        if now.duration_since(idle.swept) >= SWEEP_EVERY {
            idle.sweep(now);
        }
        if idle.total >= MAX_IDLE {
            return;
        }
        let list = idle.by_destination.entry(to).or_default();
        if list.len() < MAX_IDLE_PER_DESTINATION {
            list.push(IdleConnection { sender, since: now });
            idle.total += 1;
        }
    }

    /// Opens a connection to `to`, to a vetted address only (see the module docs).
    async fn connect(
        &self,
        to: &Destination,
        timeout: Duration,
    ) -> Result<SendRequest<WasiBody>, SendError> {
        let opening = async {
            let addresses = self.vet(&to.host, to.port).await?;
            let tcp = connect_any(&addresses).await?;
            // Requests are small and answered at once: do not wait to fill a segment.
            let _ = tcp.set_nodelay(true);
            let stream: Box<dyn Stream> = if to.https {
                let name = rustls::pki_types::ServerName::try_from(to.host.clone())
                    .map_err(|e| SendError::Http(HttpError::InvalidDnsNameError(e)))?;
                let tls = self
                    .tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| SendError::Http(HttpError::Tls(e)))?;
                Box::new(tls)
            } else {
                Box::new(tcp)
            };
            let (sender, connection) =
                hyper::client::conn::http1::handshake::<_, WasiBody>(TokioIo::new(stream))
                    .await
                    .map_err(HttpError::from)?;
            Ok::<_, SendError>((sender, connection))
        };
        let (sender, connection) = tokio::time::timeout(timeout, opening)
            .await
            .map_err(|_| HttpError::ConnectionTimeout)??;
        self.opened.inc();
        let host = to.host.clone();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(host = %host, %error, "outbound connection ended");
            }
        });
        Ok(sender)
    }

    /// Resolves `host` and, unless private networks are allowed, refuses it if any of its
    /// addresses is not public. Returns the addresses to connect to.
    pub(super) async fn vet(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, SendError> {
        let addresses = resolve(host, port).await?;
        if self.allow_private_network {
            return Ok(addresses);
        }
        if let Some(denied) = addresses.iter().find(|a| !classify_ip(a.ip()).is_public()) {
            let class: AddressClass = classify_ip(denied.ip());
            tracing::warn!(
                host = %host,
                address = %denied.ip(),
                class = ?class,
                "outbound request denied: host resolves to a non-public address"
            );
            return Err(SendError::Denied(format!(
                "{host} resolves to {} ({class:?}), a non-public address; the operator has not \
                 allowed private networks",
                denied.ip()
            )));
        }
        Ok(addresses)
    }
}

impl Idle {
    /// Drops every idle connection that is closed or expired.
    fn sweep(&mut self, now: Instant) {
        self.by_destination.retain(|_, list| {
            list.retain(|c| c.usable(now));
            !list.is_empty()
        });
        self.total = self.by_destination.values().map(Vec::len).sum();
        self.swept = now;
    }
}

/// `uri` as sent to an origin server: path and query only (the `Host` header names the
/// authority, as wasi-http sets it).
fn origin_form(uri: &Uri) -> Result<Uri, HttpError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    Uri::builder()
        .path_and_query(path)
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let dns_error = |info: String| HttpError::DnsError {
        rcode: Some(info),
        info_code: None,
    };
    match tokio::net::lookup_host((host, port)).await {
        Err(e) => Err(dns_error(e.to_string())),
        Ok(addresses) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                Err(dns_error("no addresses".into()))
            } else {
                Ok(addresses)
            }
        }
    }
}

/// Connects to the first of `addresses` that accepts.
async fn connect_any(addresses: &[SocketAddr]) -> Result<TcpStream, HttpError> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            HttpError::ConnectionRefused
        }
        Some(e) => HttpError::Connect(e),
        None => HttpError::DestinationNotFound,
    })
}

/// A plain or TLS stream.
trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// A response body that fails if the next frame takes longer than the between-bytes timeout.
struct BetweenBytes {
    incoming: Option<Incoming>,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl BetweenBytes {
    fn wrap(incoming: Incoming, timeout: Duration) -> WasiBody {
        BetweenBytes {
            incoming: Some(incoming),
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
        .boxed_unsync()
    }
}

impl Body for BetweenBytes {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = &mut *self;
        let Some(incoming) = this.incoming.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(incoming).poll_frame(cx) {
            Poll::Ready(None) => {
                this.incoming = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_timeout() {
                HttpError::HttpResponseTimeout
            } else {
                HttpError::from(e)
            }))),
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + this.timeout;
                this.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                ready!(this.deadline.as_mut().poll(cx));
                Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.incoming
            .as_ref()
            .map_or_else(|| hyper::body::SizeHint::with_exact(0), Body::size_hint)
    }
}

/// A poisoned pool is still a pool: recover it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
