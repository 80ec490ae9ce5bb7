//! Outbound HTTP for channels: `wasi:http/outgoing-handler`, behind one policy.
//!
//! Every request a channel makes passes through [`PolicyHooks::send_request`], the single choke
//! point where policy is enforced; nothing else in the host decides whether a guest may reach
//! an address. In order:
//!
//! 1. The request's authority (host and port) must match one of the hosts the channel's
//!    registration allows, else `HttpRequestDenied`. An entry is `host` (the scheme's default
//!    port only), `host:port`, `[v6]:port`, or `*.domain` (any subdomain, not the domain).
//! 2. Unless the sandbox allows private networks, the host is resolved and every address must
//!    be public: loopback, private, link-local, unspecified, CGNAT, unique-local, multicast,
//!    documentation and reserved ranges are refused with `HttpRequestDenied`, so an allowed
//!    name that resolves inward cannot reach the host's own network (SSRF).
//! 3. Plain-HTTP requests are pinned to the vetted address, so a second DNS answer cannot
//!    differ from the one checked (DNS rebinding). HTTPS requests are resolved again by the
//!    connector; a rebound name then fails certificate verification instead.
//! 4. `default_send_request` sends it, with connect, first-byte and between-bytes timeouts no
//!    longer than the policy's, whatever the guest asked for.

use super::Capability;
use crate::sandbox::error::SandboxError;
use http::uri::{Authority, Scheme, Uri};
use http_body_util::BodyExt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// What a channel may reach, for one `deliver` call.
#[derive(Debug, Clone)]
pub(in crate::sandbox) struct OutboundPolicy {
    allowed: Vec<AllowedHost>,
    allow_private_network: bool,
    connect_timeout: Duration,
    first_byte_timeout: Duration,
    between_bytes_timeout: Duration,
    /// Why requests were refused during this call (the guest only sees `HttpRequestDenied`).
    denials: Arc<std::sync::Mutex<Vec<String>>>,
}

impl OutboundPolicy {
    /// The policy of one delivery: `allowed_hosts` from the channel's registration, timeouts
    /// derived from the delivery's own.
    pub(in crate::sandbox) fn new(
        allowed_hosts: &[String],
        allow_private_network: bool,
        deliver_timeout: Duration,
    ) -> Result<OutboundPolicy, String> {
        let allowed = allowed_hosts
            .iter()
            .map(|h| AllowedHost::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(OutboundPolicy {
            allowed,
            allow_private_network,
            connect_timeout: deliver_timeout.min(MAX_CONNECT_TIMEOUT),
            first_byte_timeout: deliver_timeout,
            between_bytes_timeout: deliver_timeout,
            denials: Default::default(),
        })
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

    /// Step 1: whether the request's authority is allowed. Returns the host (normalized), the
    /// port and whether the scheme is HTTPS.
    fn check_authority(&self, uri: &Uri) -> Result<(String, u16, bool), HttpError> {
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
            Ok((host, port, https))
        } else {
            tracing::warn!(host = %host, port, "outbound request denied: host not allowed");
            self.deny(format!(
                "{host}:{port} is not in the channel's allowed_hosts"
            ));
            Err(HttpError::HttpRequestDenied)
        }
    }

    /// Steps 2 and 3: resolves the host and refuses non-public addresses. Returns the address
    /// to pin a plain-HTTP request to, if any.
    async fn check_addresses(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Option<SocketAddr>, HttpError> {
        if self.allow_private_network {
            return Ok(None);
        }
        let addresses = resolve(host, port, self.connect_timeout).await?;
        if let Some(denied) = addresses.iter().find(|a| !classify_ip(a.ip()).is_public()) {
            tracing::warn!(
                host = %host,
                address = %denied.ip(),
                class = ?classify_ip(denied.ip()),
                "outbound request denied: host resolves to a non-public address"
            );
            self.deny(format!(
                "{host} resolves to {} ({:?}), a non-public address; the operator has not \
                 allowed private networks",
                denied.ip(),
                classify_ip(denied.ip())
            ));
            return Err(HttpError::HttpRequestDenied);
        }
        Ok(addresses.first().copied())
    }

    /// Guest-requested timeouts, never longer than the policy's.
    fn clamp(&self, requested: Option<RequestOptions>) -> RequestOptions {
        let requested = requested.unwrap_or_default();
        let min = |asked: Option<Duration>, cap: Duration| Some(asked.map_or(cap, |a| a.min(cap)));
        RequestOptions {
            connect_timeout: min(requested.connect_timeout, self.connect_timeout),
            first_byte_timeout: min(requested.first_byte_timeout, self.first_byte_timeout),
            between_bytes_timeout: min(requested.between_bytes_timeout, self.between_bytes_timeout),
        }
    }

    async fn send(
        self: Arc<Self>,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> wasmtime_wasi_http::Result<(http::Response<WasiBody>, IoFuture)> {
        let (host, port, https) = self.check_authority(request.uri())?;
        let pinned = self.check_addresses(&host, port).await?;
        if let (Some(address), false) = (pinned, https) {
            // The `Host` header already names the original authority; only the socket changes.
            *request.uri_mut() = pin_to(request.uri(), address)?;
        }
        tracing::debug!(host = %host, port, method = %request.method(), "outbound request");
        let (response, io) =
            wasmtime_wasi_http::default_send_request(request, Some(self.clamp(options))).await?;
        Ok((
            response.map(BodyExt::boxed_unsync),
            Box::new(io) as IoFuture,
        ))
    }
}

type IoFuture = Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>;

/// `uri` with its authority replaced by `address`.
fn pin_to(uri: &Uri, address: SocketAddr) -> Result<Uri, HttpError> {
    let authority: Authority = address
        .to_string()
        .parse()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(authority);
    Uri::from_parts(parts).map_err(|_| HttpError::HttpRequestUriInvalid)
}

async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Vec<SocketAddr>, HttpError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let dns_error = |info: String| HttpError::DnsError {
        rcode: Some(info),
        info_code: None,
    };
    match tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await {
        Err(_) => Err(HttpError::DnsTimeout),
        Ok(Err(e)) => Err(dns_error(e.to_string())),
        Ok(Ok(addresses)) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                Err(dns_error("no addresses".into()))
            } else {
                Ok(addresses)
            }
        }
    }
}

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

/// Per-call state of outbound HTTP: wasmtime's context and our hooks.
pub(in crate::sandbox) struct OutboundHttp {
    ctx: WasiHttpCtx,
    hooks: PolicyHooks,
}

impl OutboundHttp {
    /// Why the host refused requests during this call.
    pub(in crate::sandbox) fn denials(&self) -> Vec<String> {
        self.hooks.policy.denials()
    }

    pub(in crate::sandbox) fn new(policy: OutboundPolicy) -> OutboundHttp {
        OutboundHttp {
            ctx: WasiHttpCtx::new(),
            hooks: PolicyHooks {
                policy: Arc::new(policy),
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
        Box::new(self.policy.clone().send(request, options))
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
        OutboundPolicy::new(&hosts, false, Duration::from_secs(30)).unwrap()
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
        let p = OutboundPolicy::new(&[], false, Duration::from_secs(5)).unwrap();
        let options = p.clamp(Some(RequestOptions {
            connect_timeout: Some(Duration::from_secs(600)),
            first_byte_timeout: Some(Duration::from_secs(1)),
            between_bytes_timeout: None,
        }));
        assert_eq!(options.connect_timeout, Some(Duration::from_secs(5)));
        assert_eq!(options.first_byte_timeout, Some(Duration::from_secs(1)));
        assert_eq!(options.between_bytes_timeout, Some(Duration::from_secs(5)));
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
        let p = policy(&["localhost:8080"]);
        assert!(matches!(
            p.check_addresses("localhost", 8080).await,
            Err(HttpError::HttpRequestDenied)
        ));
        assert!(matches!(
            p.check_addresses("127.0.0.1", 8080).await,
            Err(HttpError::HttpRequestDenied)
        ));
        let open = OutboundPolicy::new(&[], true, Duration::from_secs(1)).unwrap();
        assert!(matches!(
            open.check_addresses("127.0.0.1", 8080).await,
            Ok(None)
        ));
    }

    #[test]
    fn plain_http_requests_are_pinned_to_the_vetted_address() {
        let uri: Uri = "http://sink.example:8080/hook?x=1".parse().unwrap();
        let pinned = pin_to(&uri, "93.184.216.34:8080".parse().unwrap()).unwrap();
        assert_eq!(pinned.to_string(), "http://93.184.216.34:8080/hook?x=1");
        let v6 = pin_to(&uri, "[2606:4700::1]:8080".parse().unwrap()).unwrap();
        assert_eq!(v6.authority().unwrap().as_str(), "[2606:4700::1]:8080");
    }
}
