//! Outbound HTTP for channels: `wasi:http/outgoing-handler`, behind one policy.
//!
//! Every request a channel makes passes through [`PolicyHooks::send_request`], the single choke
//! point where policy is enforced; nothing else in the host decides whether a guest may reach
//! an address. In order:
//!
//! 1. For every request, its authority (host and port) must match one of the hosts the
//!    channel's registration allows, else `HttpRequestDenied`. An entry is `host` (the scheme's
//!    default port only), `host:port`, `[v6]:port`, or `*.domain` (any subdomain, not the
//!    domain). This is checked before a pooled connection is looked for: an open connection to
//!    an allowed host lets no other host through.
//! 2. The request goes to the host's [`pool`] of kept-alive connections, one set per
//!    destination (scheme, host as named, port). A new connection is opened only to vetted
//!    addresses: unless the sandbox allows private networks, the host is resolved and every
//!    address must be public — loopback, private, link-local, unspecified, CGNAT, unique-local,
//!    multicast, documentation and reserved ranges are refused with `HttpRequestDenied`, so an
//!    allowed name that resolves inward cannot reach the host's own network (SSRF) — and the
//!    socket connects to one of exactly those addresses (no second lookup for DNS rebinding to
//!    answer). A pooled connection was vetted so when it was opened, under the same host-wide
//!    setting.
//! 3. Connect, first-byte and between-bytes timeouts are the guest's, never longer than the
//!    policy's.
//!
//! Why a request was refused is kept for the delivery's error message ([`OutboundHttp::denials`]);
//! the guest only sees `HttpRequestDenied`.

mod pool;
pub(in crate::sandbox) mod whole;

pub(in crate::sandbox) use pool::ConnectionPool;

use super::Capability;
use crate::sandbox::error::SandboxError;
use http::uri::{Scheme, Uri};
use pool::{Destination, SendError, Timeouts};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

/// The longest a connection may take to establish, even within a longer delivery timeout.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One entry of a channel's allowed hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::sandbox) struct AllowedHost {
    pattern: HostPattern,
    /// `None`: the scheme's default port (80 for http, 443 for https) only.
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// This host exactly (lowercase, no trailing dot, IPv6 without brackets).
    Exact(String),
    /// Any strict subdomain of this domain.
    Subdomains(String),
}

impl AllowedHost {
    pub(in crate::sandbox) fn parse(entry: &str) -> Result<AllowedHost, String> {
        let entry = entry.trim().to_ascii_lowercase();
        if entry.is_empty() {
            return Err("an allowed host is empty".into());
        }
        if entry.contains('/') || entry.contains('@') {
            return Err(format!(
                "allowed host `{entry}` is not a host: give `host` or `host:port`, no scheme or path"
            ));
        }
        let (host, port) = split_host_port(&entry)?;
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(format!("allowed host `{entry}` has an invalid port")),
            },
        };
        let pattern = if let Some(domain) = host.strip_prefix("*.") {
            check_hostname(domain, &entry)?;
            HostPattern::Subdomains(normalize(domain))
        } else if host.parse::<IpAddr>().is_ok() {
            HostPattern::Exact(host.to_string())
        } else {
            check_hostname(host, &entry)?;
            HostPattern::Exact(normalize(host))
        };
        Ok(AllowedHost { pattern, port })
    }

    /// Whether a request to `host:port` (host normalized) is allowed by this entry.
    fn allows(&self, host: &str, port: u16, default_port: u16) -> bool {
        let host_matches = match &self.pattern {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(domain) => host
                .strip_suffix(domain.as_str())
                .is_some_and(|prefix| prefix.len() > 1 && prefix.ends_with('.')),
        };
        host_matches && self.port.unwrap_or(default_port) == port
    }
}

/// Splits `host[:port]`, `[v6][:port]` or a bare IPv6 address.
fn split_host_port(entry: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("allowed host `{entry}` has an unclosed `[`"))?;
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(format!("allowed host `{entry}` is malformed")),
            },
        };
    }
    if entry.parse::<Ipv6Addr>().is_ok() {
        return Ok((entry, None));
    }
    match entry.rsplit_once(':') {
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((entry, None)),
    }
}

fn check_hostname(host: &str, entry: &str) -> Result<(), String> {
    let valid = !host.is_empty()
        && host.split('.').filter(|l| !l.is_empty()).count() > 0
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("allowed host `{entry}` is not a valid host name"))
    }
}

/// Lowercase, without brackets or a trailing dot: the form hosts are compared in.
fn normalize(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks a channel registration's allowed hosts, so that a bad entry is refused when the
/// channel is registered rather than when a message is due.
pub fn check_allowed_hosts(hosts: &[String]) -> Result<(), SandboxError> {
    for host in hosts {
        AllowedHost::parse(host).map_err(SandboxError::InvalidConfig)?;
    }
    Ok(())
}

/// What a channel may reach, for one `deliver` call. (Whether private networks may be reached
/// is the host's setting, applied by the [`ConnectionPool`] to every new connection.)
#[derive(Clone)]
pub(in crate::sandbox) struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    between_bytes_timeout: Duration,
    /// Why requests were refused during this call (the guest only sees `HttpRequestDenied`).
    denials: Arc<std::sync::Mutex<Vec<String>>>,
    /// Asked before each request is sent: whether the host may still send at all (in a
    /// cluster, whether the partition's lease is still held). Opaque to the sandbox.
    may_send: Option<MaySend>,
}

/// Whether the host may still send requests ([`OutboundPolicy`]'s `may_send`).
pub type MaySend = Arc<dyn Fn() -> bool + Send + Sync>;

impl std::fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundPolicy")
            .field("allowed", &self.allowed)
            .field("connect_timeout", &self.connect_timeout)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .field("between_bytes_timeout", &self.between_bytes_timeout)
            .field("guarded", &self.may_send.is_some())
            .finish()
    }
}

impl OutboundPolicy {
    /// The policy of one delivery: `allowed_hosts` from the channel's registration, timeouts
    /// derived from the delivery's own.
    pub(in crate::sandbox) fn new(
        allowed_hosts: &[String],
        deliver_timeout: Duration,
    ) -> Result<OutboundPolicy, String> {
        let allowed = allowed_hosts
            .iter()
            .map(|h| AllowedHost::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboundPolicy {
            allowed,
            connect_timeout: deliver_timeout.min(MAX_CONNECT_TIMEOUT),
            first_byte_timeout: deliver_timeout,
            between_bytes_timeout: deliver_timeout,
            denials: Default::default(),
            may_send: None,
        })
    }

    /// This policy, with every request asking `may_send` first.
    pub(in crate::sandbox) fn with_may_send(self, may_send: Option<MaySend>) -> OutboundPolicy {
        OutboundPolicy { may_send, ..self }
    }

    /// Remembers why a request was refused, for the delivery's error message.
    fn deny(&self, reason: String) {
        let mut denials = self.denials.lock().unwrap_or_else(|p| p.into_inner());
        if denials.len() < 4 {
            denials.push(reason);
        }
    }

    /// Why requests of this call were refused, if any were.
    pub(in crate::sandbox) fn denials(&self) -> Vec<String> {
        self.denials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Step 1: whether the request's authority is allowed. Returns where it goes.
    fn check_authority(&self, uri: &Uri) -> Result<Destination, HttpError> {
        let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
        let https = uri.scheme() == Some(&Scheme::HTTPS);
        let default_port = if https { 443 } else { 80 };
        let host = normalize(authority.host());
        let port = authority.port_u16().unwrap_or(default_port);
        if self
            .allowed
            .iter()
            .any(|entry| entry.allows(&host, port, default_port))
        {
            Ok(Destination { https, host, port })
        } else {
            tracing::warn!(host = %host, port, "outbound request denied: host not allowed");
            self.deny(format!(
                "{host}:{port} is not in the channel's allowed_hosts"
            ));
            Err(HttpError::HttpRequestDenied)
        }
    }

    /// Guest-requested timeouts, never longer than the policy's.
    fn clamp(&self, requested: Option<RequestOptions>) -> Timeouts {
        let requested = requested.unwrap_or_default();
        let min = |asked: Option<Duration>, cap: Duration| asked.map_or(cap, |a| a.min(cap));
        Timeouts {
            connect: min(requested.connect_timeout, self.connect_timeout),
            first_byte: min(requested.first_byte_timeout, self.first_byte_timeout),
            between_bytes: min(requested.between_bytes_timeout, self.between_bytes_timeout),
        }
    }

    async fn send(
        self: Arc<Self>,
        pool: Arc<ConnectionPool>,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)> {
        if self.may_send.as_ref().is_some_and(|may_send| !may_send()) {
            self.deny("the host may no longer send for this message (a cluster node that lost its partition)".into());
            return Err(HttpError::HttpRequestDenied);
        }
        let to = self.check_authority(request.uri())?;
        tracing::debug!(host = %to.host, port = to.port, method = %request.method(), "outbound request");
        match pool.send(to, request, self.clamp(options)).await {
            Ok(sent) => Ok(sent),
            Err(SendError::Denied(reason)) => {
                self.deny(reason);
                Err(HttpError::HttpRequestDenied)
            }
            Err(SendError::Http(error)) => Err(error),
        }
    }
}

type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

/// Where an IP address points, as far as outbound policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    Unspecified,
    Loopback,
    /// RFC 1918, and IPv6 site-local.
    Private,
    LinkLocal,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedCgnat,
    /// fc00::/7.
    UniqueLocal,
    Multicast,
    Documentation,
    /// Benchmarking, IETF protocol assignments, future use, broadcast, unallocated IPv6,
    /// tunnels whose far end cannot be checked.
    Reserved,
}

impl AddressClass {
    pub fn is_public(self) -> bool {
        self == AddressClass::Public
    }
}

/// Classifies `ip`. IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4)
/// are classified by the embedded address, so `::ffff:127.0.0.1` is loopback.
pub fn classify_ip(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    use AddressClass::*;
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        (0, _, _) => Unspecified,
        (127, _, _) => Loopback,
        (10, _, _) | (192, 168, _) => Private,
        (172, 16..=31, _) => Private,
        (169, 254, _) => LinkLocal,
        (100, 64..=127, _) => SharedCgnat,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Documentation,
        (192, 0, 0) | (198, 18..=19, _) => Reserved,
        (224..=239, _, _) => Multicast,
        (240..=255, _, _) => Reserved,
        _ => Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    use AddressClass::*;
    if ip.is_unspecified() {
        return Unspecified;
    }
    if ip.is_loopback() {
        return Loopback;
    }
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        classify_v4(Ipv4Addr::new(a, b, c, d))
    };
    match s {
        // IPv4-compatible (deprecated), ::a.b.c.d.
        [0, 0, 0, 0, 0, 0, hi, lo] => embedded(hi, lo),
        // NAT64, well-known and local-use prefixes.
        [0x64, 0xff9b, _, _, _, _, hi, lo] => embedded(hi, lo),
        // 6to4.
        [0x2002, hi, lo, ..] => embedded(hi, lo),
        [0x2001, 0x0db8, ..] => Documentation,
        // Teredo, and the discard-only prefix 100::/64.
        [0x2001, 0, ..] | [0x100, 0, 0, 0, ..] => Reserved,
        [first, ..] if first & 0xfe00 == 0xfc00 => UniqueLocal,
        [first, ..] if first & 0xffc0 == 0xfe80 => LinkLocal,
        [first, ..] if first & 0xffc0 == 0xfec0 => Private,
        [first, ..] if first & 0xff00 == 0xff00 => Multicast,
        // Only 2000::/3 is allocated global unicast.
        [first, ..] if first & 0xe000 != 0x2000 => Reserved,
        _ => Public,
    }
}

/// Per-call state of outbound HTTP: wasmtime's context and our hooks (the call's policy, and
/// the host's connections).
pub(in crate::sandbox) struct OutboundHttp {
    ctx: WasiHttpCtx,
    hooks: PolicyHooks,
}

impl OutboundHttp {
    /// Why the host refused requests during this call.
    pub(in crate::sandbox) fn denials(&self) -> Vec<String> {
        self.hooks.policy.denials()
    }

    pub(in crate::sandbox) fn new(
        policy: OutboundPolicy,
        pool: Arc<ConnectionPool>,
    ) -> OutboundHttp {
        OutboundHttp {
            ctx: WasiHttpCtx::new(),
            hooks: PolicyHooks {
                policy: Arc::new(policy),
                pool,
            },
        }
    }

    /// The view `wasi:http` works through; the table is shared with WASI.
    pub(in crate::sandbox) fn view<'a>(
        &'a mut self,
        table: &'a mut ResourceTable,
    ) -> WasiHttpCtxView<'a> {
        WasiHttpCtxView {
            ctx: &mut self.ctx,
            table,
            hooks: &mut self.hooks,
        }
    }
}

/// The hooks through which wasmtime-wasi-http sends every request.
struct PolicyHooks {
    policy: Arc<OutboundPolicy>,
    pool: Arc<ConnectionPool>,
}

impl WasiHttpHooks for PolicyHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<Output = wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)>>
            + Send,
    > {
        Box::new(
            self.policy
                .clone()
                .send(self.pool.clone(), request, options),
        )
    }
}

/// What this capability grants: `wasi:http`'s types and outgoing handler (a channel sends
/// requests; it never serves them).
pub(in crate::sandbox) const INTERFACES: &[&str] =
    &["wasi:http/types@", "wasi:http/outgoing-handler@"];

/// Adds `wasi:http` (types and outgoing-handler only; the rest of WASI is added by
/// [`super::wasi::add_to_linker`]).
pub(in crate::sandbox) fn add_to_linker<T: WasiHttpView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}

/// Outbound HTTP as a world lists it.
pub(in crate::sandbox) const fn capability<T: WasiHttpView + 'static>() -> Capability<T> {
    Capability {
        interfaces: INTERFACES,
        add_to_linker: add_to_linker::<T>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> OutboundPolicy {
        let hosts: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        OutboundPolicy::new(&hosts, Duration::from_secs(30)).unwrap()
    }

    fn allowed(policy: &OutboundPolicy, uri: &str) -> bool {
        policy.check_authority(&uri.parse().unwrap()).is_ok()
    }

    #[test]
    fn a_bare_host_allows_only_the_schemes_default_port() {
        let p = policy(&["api.example.com"]);
        assert!(allowed(&p, "https://api.example.com/v1/send"));
        assert!(allowed(&p, "http://api.example.com/"));
        assert!(allowed(&p, "https://API.Example.com./v1"));
        assert!(!allowed(&p, "https://api.example.com:8443/"));
        assert!(!allowed(&p, "https://example.com/"));
        assert!(!allowed(&p, "https://evil.com/?api.example.com"));
        assert!(!allowed(&p, "https://api.example.com.evil.com/"));
    }

    #[test]
    fn a_host_with_a_port_allows_exactly_that_port() {
        let p = policy(&["127.0.0.1:8080", "[::1]:9000"]);
        assert!(allowed(&p, "http://127.0.0.1:8080/sink"));
        assert!(!allowed(&p, "http://127.0.0.1/sink"));
        assert!(!allowed(&p, "http://127.0.0.1:8081/sink"));
        assert!(allowed(&p, "http://[::1]:9000/"));
        assert!(!allowed(&p, "http://[::1]:9001/"));
    }

    #[test]
    fn a_wildcard_allows_subdomains_but_not_the_domain() {
        let p = policy(&["*.slack.com"]);
        assert!(allowed(&p, "https://hooks.slack.com/services/x"));
        assert!(allowed(&p, "https://a.b.slack.com/"));
        assert!(!allowed(&p, "https://slack.com/"));
        assert!(!allowed(&p, "https://evilslack.com/"));
    }

    #[test]
    fn no_allowed_hosts_allows_nothing() {
        assert!(!allowed(&policy(&[]), "https://example.com/"));
    }

    #[test]
    fn malformed_allowed_hosts_are_refused_with_the_entry_named() {
        for bad in [
            "",
            "https://example.com",
            "example.com/path",
            "example.com:0",
            "example.com:http",
            "[::1",
            "ex ample.com",
            "user@example.com",
        ] {
            let err = AllowedHost::parse(bad).expect_err(bad);
            assert!(err.contains(bad.trim()) || bad.is_empty(), "{bad}: {err}");
        }
        assert!(check_allowed_hosts(&["example.com".into(), "localhost:3000".into()]).is_ok());
        assert!(matches!(
            check_allowed_hosts(&["http://x".into()]),
            Err(SandboxError::InvalidConfig(_))
        ));
    }

    #[test]
    fn guest_timeouts_are_clamped_to_the_policy() {
        let p = OutboundPolicy::new(&[], Duration::from_secs(5)).unwrap();
        let timeouts = p.clamp(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(600)),
            first_byte_timeout: Some(Duration::from_secs(1)),
            between_bytes_timeout: None,
        }));
        assert_eq!(timeouts.connect, Duration::from_secs(5));
        assert_eq!(timeouts.first_byte, Duration::from_secs(1));
        assert_eq!(timeouts.between_bytes, Duration::from_secs(5));
        let capped = OutboundPolicy::new(&[], Duration::from_secs(60)).unwrap();
        assert_eq!(capped.clamp(None).connect, MAX_CONNECT_TIMEOUT);
    }

    fn class(ip: &str) -> AddressClass {
        classify_ip(ip.parse().unwrap())
    }

    #[test]
    fn internal_ipv4_ranges_are_not_public() {
        use AddressClass::*;
        assert_eq!(class("127.0.0.1"), Loopback);
        assert_eq!(class("10.1.2.3"), Private);
        assert_eq!(class("172.16.0.1"), Private);
        assert_eq!(class("172.31.255.255"), Private);
        assert_eq!(class("192.168.1.1"), Private);
        assert_eq!(class("169.254.169.254"), LinkLocal, "cloud metadata");
        assert_eq!(class("0.0.0.0"), Unspecified);
        assert_eq!(class("100.64.0.1"), SharedCgnat);
        assert_eq!(class("100.127.255.255"), SharedCgnat);
        assert_eq!(class("224.0.0.1"), Multicast);
        assert_eq!(class("255.255.255.255"), Reserved);
        assert_eq!(class("192.0.2.7"), Documentation);
    }

    #[test]
    fn public_ipv4_addresses_are_public() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "93.184.216.34",
        ] {
            assert_eq!(class(ip), AddressClass::Public, "{ip}");
        }
    }

    #[test]
    fn internal_ipv6_ranges_and_embedded_ipv4_are_not_public() {
        use AddressClass::*;
        assert_eq!(class("::1"), Loopback);
        assert_eq!(class("::"), Unspecified);
        assert_eq!(class("fc00::1"), UniqueLocal);
        assert_eq!(class("fd12:3456::1"), UniqueLocal);
        assert_eq!(class("fe80::1"), LinkLocal);
        assert_eq!(class("ff02::1"), Multicast);
        assert_eq!(class("2001:db8::1"), Documentation);
        assert_eq!(class("::ffff:127.0.0.1"), Loopback);
        assert_eq!(class("::ffff:10.0.0.1"), Private);
        assert_eq!(class("64:ff9b::a9fe:a9fe"), LinkLocal);
        assert_eq!(class("2002:c0a8:0101::1"), Private);
        assert_eq!(class("2606:4700:4700::1111"), Public);
        assert_eq!(class("::ffff:8.8.8.8"), Public);
    }

    #[tokio::test]
    async fn an_allowed_name_that_resolves_to_loopback_is_denied() {
        let closed = ConnectionPool::new(false, Default::default());
        for host in ["localhost", "127.0.0.1", "::1"] {
            assert!(
                matches!(closed.vet(host, 8080).await, Err(pool::SendError::Denied(reason))
                    if reason.contains("non-public address")),
                "{host}"
            );
        }
        let open = ConnectionPool::new(true, Default::default());
        assert!(open.vet("127.0.0.1", 8080).await.is_ok());
    }

    /// Requests through the whole path (policy, pool, hyper) to a real server on loopback.
    mod pooled {
        use super::*;
        use http_body_util::{BodyExt, Empty};
        use std::sync::atomic::{AtomicU64, Ordering};

        /// A loopback HTTP/1.1 server that counts the connections it accepts and the requests
        /// it answers; `keep_alive: false` closes every connection after one response.
        struct TestServer {
            port: u16,
            connections: Arc<AtomicU64>,
            requests: Arc<AtomicU64>,
        }

        impl TestServer {
            async fn start(keep_alive: bool) -> TestServer {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let port = listener.local_addr().unwrap().port();
                let connections = Arc::new(AtomicU64::new(0));
                let requests = Arc::new(AtomicU64::new(0));
                let (accepted, answered) = (connections.clone(), requests.clone());
                tokio::spawn(async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        let answered = answered.clone();
                        let service = hyper::service::service_fn(move |_request| {
                            answered.fetch_add(1, Ordering::SeqCst);
                            async {
                                Ok::<_, std::convert::Infallible>(http::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                                ))
                            }
                        });
                        tokio::spawn(
                            hyper::server::conn::http1::Builder::new()
                                .keep_alive(keep_alive)
                                .serve_connection(
                                    wasmtime_wasi_http::io::TokioIo::new(stream),
                                    service,
                                ),
                        );
                    }
                });
                TestServer {
                    port,
                    connections,
                    requests,
                }
            }

            fn connections(&self) -> u64 {
                self.connections.load(Ordering::SeqCst)
            }

            fn requests(&self) -> u64 {
                self.requests.load(Ordering::SeqCst)
            }
        }

        fn channel(hosts: &[String]) -> Arc<OutboundPolicy> {
            Arc::new(OutboundPolicy::new(hosts, Duration::from_secs(30)).unwrap())
        }

        /// GETs `uri` as a guest would (absolute URI, `Host` set) and reads the whole body.
        async fn get(
            policy: &Arc<OutboundPolicy>,
            pool: &Arc<ConnectionPool>,
            uri: &str,
        ) -> Result<String, HttpError> {
            let uri: Uri = uri.parse().unwrap();
            let request = http::Request::get(uri.clone())
                .header(http::header::HOST, uri.authority().unwrap().as_str())
                .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
                .unwrap();
            let (response, _io) = policy.clone().send(pool.clone(), request, None).await?;
            let body = response.into_body().collect().await?.to_bytes();
            Ok(String::from_utf8_lossy(&body).into_owned())
        }

        /// Waits until `n` connections are idle in the pool (a connection goes back once its
        /// response has been read, on a task of its own).
        async fn until_idle(pool: &ConnectionPool, n: usize) {
            for _ in 0..10_000 {
                if pool.idle_connections() >= n {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            panic!("{n} connections never became idle");
        }

        #[tokio::test]
        async fn requests_to_one_destination_reuse_one_kept_alive_connection() {
            let server = TestServer::start(true).await;
            let pool = Arc::new(ConnectionPool::new(true, Default::default()));
            let policy = channel(&[format!("127.0.0.1:{}", server.port)]);
            for _ in 0..10 {
                let uri = format!("http://127.0.0.1:{}/hook", server.port);
                assert_eq!(get(&policy, &pool, &uri).await.unwrap(), "ok");
                until_idle(&pool, 1).await;
            }
            assert_eq!(server.requests(), 10);
            assert_eq!((server.connections(), pool.opened()), (1, 1));
        }

        #[tokio::test]
        async fn a_connection_the_server_closes_is_replaced_without_failing_a_request() {
            let server = TestServer::start(false).await;
            let pool = Arc::new(ConnectionPool::new(true, Default::default()));
            let policy = channel(&[format!("127.0.0.1:{}", server.port)]);
            for _ in 0..5 {
                let uri = format!("http://127.0.0.1:{}/hook", server.port);
                assert_eq!(get(&policy, &pool, &uri).await.unwrap(), "ok");
            }
            assert_eq!((server.requests(), server.connections()), (5, 5));
        }

        #[tokio::test]
        async fn an_open_connection_to_an_allowed_host_lets_no_other_host_through() {
            let server = TestServer::start(true).await;
            let pool = Arc::new(ConnectionPool::new(true, Default::default()));
            let by_address = channel(&[format!("127.0.0.1:{}", server.port)]);
            let by_address_uri = format!("http://127.0.0.1:{}/hook", server.port);
            let by_name_uri = format!("http://localhost:{}/hook", server.port);
            get(&by_address, &pool, &by_address_uri).await.unwrap();
            until_idle(&pool, 1).await;

            // Same socket address, but a host this channel does not allow: refused, although
            // an idle connection to that very address is open.
            assert!(matches!(
                get(&by_address, &pool, &by_name_uri).await,
                Err(HttpError::HttpRequestDenied)
            ));
            assert!(by_address.denials()[0].contains("not in the channel's allowed_hosts"));
            assert_eq!((server.requests(), server.connections()), (1, 1));

            // A channel that allows the name gets a connection of its own: connections are
            // per destination as the request names it, never borrowed across names.
            let by_name = channel(&[format!("localhost:{}", server.port)]);
            get(&by_name, &pool, &by_name_uri).await.unwrap();
            assert_eq!((server.requests(), server.connections()), (2, 2));
        }

        #[tokio::test]
        async fn without_private_networks_no_connection_is_opened_to_loopback() {
            let server = TestServer::start(true).await;
            let pool = Arc::new(ConnectionPool::new(false, Default::default()));
            let policy = channel(&[
                format!("localhost:{}", server.port),
                format!("127.0.0.1:{}", server.port),
            ]);
            for host in ["localhost", "127.0.0.1"] {
                let uri = format!("http://{host}:{}/hook", server.port);
                assert!(
                    matches!(
                        get(&policy, &pool, &uri).await,
                        Err(HttpError::HttpRequestDenied)
                    ),
                    "{host}"
                );
            }
            let denials = policy.denials();
            assert!(
                denials.len() == 2 && denials.iter().all(|d| d.contains("non-public address")),
                "{denials:?}"
            );
            assert_eq!((server.connections(), pool.opened()), (0, 0));
        }

        #[tokio::test]
        async fn a_response_that_never_comes_fails_with_the_guests_first_byte_timeout() {
            // Accepts and never answers.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                let mut open = Vec::new();
                while let Ok((stream, _)) = listener.accept().await {
                    open.push(stream);
                }
            });
            let pool = Arc::new(ConnectionPool::new(true, Default::default()));
            let policy = channel(&[format!("127.0.0.1:{port}")]);
            let uri: Uri = format!("http://127.0.0.1:{port}/").parse().unwrap();
            let request = http::Request::get(uri)
                .body(Empty::new().map_err(|never| match never {}).boxed_unsync())
                .unwrap();
            let options = RequestOptions {
                first_byte_timeout: Some(Duration::from_millis(50)),
                ..RequestOptions::default()
            };
            let sent = policy.send(pool, request, Some(options)).await;
            assert!(matches!(sent, Err(HttpError::ConnectionReadTimeout)));
        }
    }
}
