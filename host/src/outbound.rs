//! Outbound HTTP(S) for plugins ("http-fetch"): the allow-list policy and
//! the real client.
//!
//! A plugin never opens sockets itself; every request goes through
//! [`Client::fetch`], which enforces, for every hop of a redirect chain:
//!
//! * the allow-list: the target must match a pattern the plugin's manifest
//!   *requested* and a pattern the operator *granted* ([`Policy`]);
//! * the address rules: loopback, private, link-local and other internal
//!   addresses ([`is_forbidden_ip`]) are reachable only when the operator
//!   granted that exact host, whether the URL names the address literally or
//!   a host name resolves to it;
//! * size and time caps ([`Limits`]).
//!
//! Nothing here ever logs or returns header values or bodies: they carry the
//! plugins' OAuth tokens.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

// ---------------------------------------------------------------------------
// Host patterns
// ---------------------------------------------------------------------------

/// The example every pattern parse error points to.
const PATTERN_HINT: &str = "expected scheme://host[:port], e.g. https://*.my.salesforce.com";

/// Why a [`HostPattern`] could not be parsed. The message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host pattern `{input}`: {reason} ({PATTERN_HINT})")]
pub struct PatternError {
    input: String,
    reason: String,
}

impl PatternError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        PatternError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A URL scheme the host may fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    Http,
    Https,
}

impl Scheme {
    fn parse(s: &str) -> Option<Scheme> {
        match s {
            "http" => Some(Scheme::Http),
            "https" => Some(Scheme::Https),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A `scheme://host[:port]` pattern.
///
/// * `scheme` is `http` or `https`;
/// * `host` is a host name, an IPv4 literal or a bracketed IPv6 literal, or
///   `*.` followed by a domain: any subdomain of it (at least one more label),
///   but **not** the bare domain itself;
/// * `port` is a number or `*` (any port); without it the scheme's default
///   port is meant.
///
/// Host names are normalised like URLs normalise them (lower case, IDNA,
/// canonical IP literals), so a pattern compares with [`Url::host_str`].
/// `Display` prints a canonical form that parses back to an equal pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    scheme: Scheme,
    /// Canonical host, without the `*.` of a wildcard and without a trailing
    /// dot; IPv6 literals keep their brackets (as [`Url::host_str`] has them).
    host: String,
    wildcard: bool,
    /// `None` = any port (`*`); a missing port is stored as the default one.
    port: Option<u16>,
}

impl HostPattern {
    /// Whether `url` is covered by this pattern (scheme, host and port).
    pub fn matches(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme.as_str() {
            return false;
        }
        let Some(port) = url.port_or_known_default() else {
            return false;
        };
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        // `example.com.` is the same host as `example.com`.
        let host = host.strip_suffix('.').unwrap_or(host);
        if self.wildcard {
            // Only host names can be subdomains; `1.2.3.4` never matches
            // `*.3.4` (which cannot be parsed anyway).
            matches!(url.host(), Some(url::Host::Domain(_)))
                && host.len() > self.host.len() + 1
                && host.ends_with(&self.host)
                && host[..host.len() - self.host.len()].ends_with('.')
        } else {
            host == self.host
        }
    }

    /// Whether every target `other` matches is matched by this pattern too
    /// (a grant covering a requested pattern).
    pub fn covers(&self, other: &HostPattern) -> bool {
        let subdomain = |host: &str| {
            host.len() > self.host.len() + 1
                && host.ends_with(&self.host)
                && host[..host.len() - self.host.len()].ends_with('.')
        };
        self.scheme == other.scheme
            && (self.port.is_none() || self.port == other.port)
            && match (self.wildcard, other.wildcard) {
                (false, false) => self.host == other.host,
                (false, true) => false,
                (true, false) => subdomain(&other.host),
                (true, true) => other.host == self.host || subdomain(&other.host),
            }
    }

    /// Whether the host part names exactly one host (no `*.` wildcard). Only
    /// such grants open loopback, private and link-local addresses.
    pub fn is_exact_host(&self) -> bool {
        !self.wildcard
    }

    /// The host part, without the `*.` of a wildcard pattern (IPv6 literals
    /// in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl FromStr for HostPattern {
    type Err = PatternError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(PatternError::new(input, "missing scheme"));
        };
        let scheme = Scheme::parse(&scheme.to_ascii_lowercase()).ok_or_else(|| {
            PatternError::new(input, format!("scheme `{scheme}` is not http or https"))
        })?;
        // A trailing slash is a common copy-paste artefact and harmless.
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@', '\\']) {
            return Err(PatternError::new(
                input,
                "a pattern has no user, path, query or fragment",
            ));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| {
            PatternError::new(input, "IPv6 addresses must be in brackets, e.g. [::1]")
        })?;
        let port = match port {
            None => Some(scheme.default_port()),
            Some("*") => None,
            Some(p) => match p.parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => {
                    return Err(PatternError::new(
                        input,
                        format!("port `{p}` is not a number from 1 to 65535 or `*`"),
                    ));
                }
            },
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(domain) => (true, domain),
            None => (false, host),
        };
        if host.is_empty() {
            return Err(PatternError::new(input, "missing host"));
        }
        if host.contains('*') {
            return Err(PatternError::new(
                input,
                "`*` is only allowed as the whole first label (`*.example.com`) or as the port",
            ));
        }
        let parsed = url::Host::parse(host)
            .map_err(|e| PatternError::new(input, format!("invalid host `{host}`: {e}")))?;
        let host = match parsed {
            url::Host::Domain(domain) => {
                let domain = domain.strip_suffix('.').unwrap_or(&domain).to_owned();
                let valid_label = |label: &str| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                };
                if !domain.split('.').all(valid_label) {
                    return Err(PatternError::new(
                        input,
                        format!("invalid host name `{domain}`"),
                    ));
                }
                domain
            }
            ip if wildcard => {
                return Err(PatternError::new(
                    input,
                    format!("`*.` must be followed by a domain name, not the address {ip}"),
                ));
            }
            ip => ip.to_string(),
        };
        Ok(HostPattern {
            scheme,
            host,
            wildcard,
            port,
        })
    }
}

/// Splits `host[:port]`, keeping the brackets of an IPv6 literal. `None` for
/// an unbracketed IPv6 literal (ambiguous with a port).
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if s.starts_with('[') {
        let end = s.find(']')?;
        let (host, after) = s.split_at(end + 1);
        match after {
            "" => Some((host, None)),
            _ => after.strip_prefix(':').map(|port| (host, Some(port))),
        }
    } else {
        match s.split_once(':') {
            Some((_, port)) if port.contains(':') => None,
            Some((host, port)) => Some((host, Some(port))),
            None => Some((s, None)),
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let wildcard = if self.wildcard { "*." } else { "" };
        write!(f, "{}://{wildcard}{}", self.scheme.as_str(), self.host)?;
        match self.port {
            None => f.write_str(":*"),
            Some(p) if p == self.scheme.default_port() => Ok(()),
            Some(p) => write!(f, ":{p}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Policy
// ---------------------------------------------------------------------------

const RULE_NOT_REQUESTED: &str = "not requested in the plugin's manifest";
const RULE_FORBIDDEN_LITERAL: &str = "loopback, private or link-local address not granted exactly";
const RULE_FORBIDDEN_RESOLVED: &str = "resolves to a loopback, private or link-local address, \
     which is reachable only if the operator grants this exact host";

/// What one plugin may reach: the hosts its manifest requests AND the hosts
/// the operator granted (a target must match both lists).
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// Patterns from the plugin's manifest.
    pub requested: Vec<HostPattern>,
    /// Patterns the operator granted to this plugin.
    pub granted: Vec<HostPattern>,
}

impl Policy {
    /// Checks one target URL (the first request or a redirect hop).
    ///
    /// Returns [`FetchError::Invalid`] for URLs the host never fetches and
    /// [`FetchError::Denied`] naming `scheme://host:port` and the rule.
    /// Host names are checked against the address rules later, when they
    /// are resolved (see [`Client`]); IP literals are checked here.
    pub fn check(&self, url: &Url) -> Result<(), FetchError> {
        validate_url(url)?;
        let denied = |rule: &str| FetchError::Denied {
            host: origin_of(url),
            rule: rule.to_owned(),
        };
        if !self.requested.iter().any(|p| p.matches(url)) {
            return Err(denied(RULE_NOT_REQUESTED));
        }
        if !self.granted.iter().any(|p| p.matches(url)) {
            return Err(denied(&format!(
                "not granted by the operator (grant it with --grant PLUGIN_ID={})",
                origin_of(url)
            )));
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        // Today a pattern matching an IP literal is always exact; this stays
        // as a guard should patterns ever grow address ranges.
        if literal.is_some_and(is_forbidden_ip) && !self.is_exactly_granted(url) {
            return Err(denied(RULE_FORBIDDEN_LITERAL));
        }
        Ok(())
    }

    /// Whether the operator granted exactly this URL's host (a granted
    /// pattern without wildcard host matches it). Such hosts may be, or
    /// resolve to, loopback, private or link-local addresses.
    pub fn is_exactly_granted(&self, url: &Url) -> bool {
        self.granted
            .iter()
            .any(|p| p.is_exact_host() && p.matches(url))
    }
}

/// `scheme://host:port` of a URL, the form errors name targets by.
fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// `scheme://host:port/path` for logs: no query string or fragment, which may
/// carry authorization codes or tokens.
fn loggable(url: &Url) -> String {
    format!("{}{}", origin_of(url), url.path())
}

/// Rejects URLs the host never fetches, whatever the policy says.
fn validate_url(url: &Url) -> Result<(), FetchError> {
    if Scheme::parse(url.scheme()).is_none() {
        return Err(FetchError::Invalid(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials belong in headers; in URLs they end up in logs.
        return Err(FetchError::Invalid(
            "URLs with user info (user:password@) are not allowed; send credentials in a header"
                .to_owned(),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(FetchError::Invalid("URL has no host".to_owned()));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Address rules
// ---------------------------------------------------------------------------

/// Whether `ip` is an address plugins may reach only through an exact grant:
/// unspecified / "this network" (0.0.0.0/8, `::`), loopback (127/8, `::1`),
/// private (10/8, 172.16/12, 192.168/16), shared CGNAT (100.64/10),
/// link-local (169.254/16 including the cloud metadata service
/// 169.254.169.254, fe80::/10), unique-local (fc00::/7), deprecated
/// site-local (fec0::/10), IETF protocol assignments (192.0.0/24),
/// benchmarking (198.18/15), multicast, reserved (240/4) and broadcast, and
/// the same addresses embedded in IPv6 (IPv4-mapped `::ffff:a.b.c.d`,
/// IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, and the
/// local-use NAT64 prefix 64:ff9b:1::/48).
pub fn is_forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_forbidden_v4(ip),
        IpAddr::V6(ip) => is_forbidden_v6(ip),
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    // 0.0.0.0/8: Linux connects 0.0.0.0 to the local host.
    a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18)
        || ip.is_multicast()
        // 240.0.0.0/4 reserved, including 255.255.255.255 broadcast.
        || a >= 240
}

fn is_forbidden_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_forbidden_v4(v4);
    }
    let seg = ip.segments();
    let embedded_v4 = || Ipv4Addr::from_bits((ip.to_bits() & 0xffff_ffff) as u32);
    // IPv4-compatible (deprecated) ::a.b.c.d; covers `::` and `::1` too,
    // whose embedded 0.0.0.0 / 0.0.0.1 are forbidden.
    if seg[..6] == [0; 6] {
        return is_forbidden_v4(embedded_v4());
    }
    // NAT64 well-known prefix: the gateway forwards to the embedded address.
    if seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_forbidden_v4(embedded_v4());
    }
    ip.is_multicast()
        || (seg[0] & 0xffc0) == 0xfe80
        || (seg[0] & 0xffc0) == 0xfec0
        || (seg[0] & 0xfe00) == 0xfc00
        || (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1)
}

/// Why the guarded resolver refused a name. Travels through reqwest's error
/// chain and is recognised again in [`map_send_error`].
#[derive(Debug, thiserror::Error)]
enum ResolveError {
    #[error("host name resolves only to forbidden addresses")]
    Forbidden,
    #[error("host name does not resolve")]
    NotFound,
}

/// Keeps only the addresses the connection may use. Dropping the forbidden
/// ones (rather than failing when any is present) is safe because hyper
/// connects only to what this returns; a name with *only* forbidden addresses
/// is refused so the plugin gets a clear Denied rather than a vague failure.
fn filter_addrs(addrs: Vec<IpAddr>, allow_forbidden: bool) -> Result<Vec<IpAddr>, ResolveError> {
    if addrs.is_empty() {
        return Err(ResolveError::NotFound);
    }
    if allow_forbidden {
        return Ok(addrs);
    }
    let allowed: Vec<IpAddr> = addrs
        .into_iter()
        .filter(|ip| !is_forbidden_ip(*ip))
        .collect();
    if allowed.is_empty() {
        Err(ResolveError::Forbidden)
    } else {
        Ok(allowed)
    }
}

/// The DNS resolver of the reqwest clients.
///
/// It resolves with tokio (the system resolver) and applies the address
/// rules. Because hyper connects to exactly the addresses a resolver returns,
/// the address checked is the address connected to: a DNS answer that changes
/// between a check and the connect (DNS rebinding) cannot slip through.
/// (IP literals never reach a resolver; [`Policy::check`] handles them.)
#[derive(Clone)]
struct GuardedResolver {
    /// `true` only in the client used for exactly granted hosts.
    allow_forbidden: bool,
    /// Fixed answers that bypass DNS (tests); still subject to the rules.
    overrides: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = match this.overrides.get(&name) {
                Some(addrs) => addrs.clone(),
                None => tokio::net::lookup_host((name.as_str(), 0))
                    .await
                    .map_err(|_| ResolveError::NotFound)?
                    .map(|sa| sa.ip())
                    .collect(),
            };
            let addrs = filter_addrs(addrs, this.allow_forbidden)?;
            // Port 0 is replaced by the URL's port by the connector.
            let addrs: reqwest::dns::Addrs =
                Box::new(addrs.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

// ---------------------------------------------------------------------------
// Requests, responses, errors
// ---------------------------------------------------------------------------

/// Caps that apply to every fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest response body accepted (default 16 MiB).
    pub max_response_bytes: u64,
    /// Longest a whole fetch (all redirect hops and the body) may take; a
    /// plugin may ask for less, never more (default 30 s).
    pub max_timeout: Duration,
    /// Most redirects followed (default 5).
    pub max_redirects: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_response_bytes: 16 * 1024 * 1024,
            max_timeout: Duration::from_secs(30),
            max_redirects: 5,
        }
    }
}

/// How to build the [`Client`].
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// PEM bytes of extra trusted CA certificates (each entry may hold
    /// several), added to the built-in webpki roots.
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// Caps for every fetch.
    pub limits: Limits,
    /// `User-Agent` sent unless the plugin sets its own.
    pub user_agent: String,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            extra_roots_pem: Vec::new(),
            limits: Limits::default(),
            user_agent: concat!("pbx-host/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Why the [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An extra CA entry could not be used. `index` counts from 1.
    #[error("extra trusted CA #{index}: {reason}")]
    BadCa {
        /// Position in [`ClientConfig::extra_roots_pem`], from 1.
        index: usize,
        /// What is wrong with its content.
        reason: String,
    },
    /// The `User-Agent` is not a valid header value.
    #[error("user agent is not a valid header value")]
    BadUserAgent,
    /// The HTTP client could not be set up.
    #[error("could not set up the HTTP client: {0}")]
    Build(String),
}

/// HTTP method of a [`Request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

impl Method {
    fn to_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Head => reqwest::Method::HEAD,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Patch => reqwest::Method::PATCH,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_reqwest().as_str())
    }
}

/// A plugin's request.
#[derive(Clone)]
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Absolute `http` or `https` URL.
    pub url: String,
    /// Header names and values, in order; repeated names are sent repeatedly.
    pub headers: Vec<(String, String)>,
    /// Request body.
    pub body: Option<Vec<u8>>,
    /// Time the plugin allows for the whole fetch, capped by
    /// [`Limits::max_timeout`].
    pub timeout: Option<Duration>,
}

impl Request {
    /// A request without headers, body or timeout.
    pub fn new(method: Method, url: impl Into<String>) -> Request {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
        }
    }
}

/// Leaves out header values, body and query string: they may hold secrets.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = Url::parse(&self.url).map_or_else(|_| "<invalid>".to_owned(), |u| loggable(&u));
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &url)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The final response (after redirects).
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// Header names (lower case) and values (non-UTF-8 bytes replaced).
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
}

/// Leaves out header values and body: they may hold tokens.
impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("body_len", &self.body.len())
            .finish()
    }
}

/// Why a fetch failed. Messages never contain header values or bodies.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FetchError {
    /// The policy or the address rules refuse the target; nothing was sent.
    #[error("{host} is not allowed: {rule}")]
    Denied {
        /// The refused target as `scheme://host:port`.
        host: String,
        /// The rule that refused it.
        rule: String,
    },
    /// The fetch took longer than allowed.
    #[error("request timed out")]
    Timeout,
    /// The target could not be reached (DNS, TCP, TLS, broken connection).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The response body is larger than the cap (in bytes).
    #[error("response body larger than {0} bytes")]
    TooLarge(u64),
    /// The request is malformed, or the server's redirects are.
    #[error("invalid request: {0}")]
    Invalid(String),
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// Header names plugins may not set: they frame the message or address the
/// connection, so setting them could smuggle requests or confuse hosts.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-connection",
    "proxy-authorization",
];

/// Headers describing a body, dropped when a redirect drops the body.
const BODY_HEADERS: &[HeaderName] = &[
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::CONTENT_LANGUAGE,
    header::CONTENT_LOCATION,
];

/// The host's outbound HTTP client: one per host process, shared by all
/// plugins; cloning is cheap.
///
/// # Address rules without shared state
///
/// Whether a host name may resolve to a loopback/private/link-local address
/// depends on the calling plugin's policy, but the connection pool and the
/// resolver are shared. Instead of a mutable "exactly granted" set in the
/// resolver (which concurrent fetches of different plugins would race on),
/// the client holds two reqwest clients built once:
///
/// * `strict`, whose resolver drops forbidden addresses, used for every hop
///   whose host is not exactly granted by the caller's policy;
/// * `exact`, whose resolver returns every address, used only for hops whose
///   host the caller's operator grant names exactly.
///
/// The choice is made per hop from the caller's own [`Policy`], so it cannot
/// race. Pooled connections stay sound: a connection in `strict` was made to
/// a checked address, and `exact` is only ever used for exactly granted hosts.
#[derive(Clone, Debug)]
pub struct Client {
    strict: reqwest::Client,
    exact: reqwest::Client,
    limits: Limits,
}

impl Client {
    /// Builds the client. Fails with a message naming the problem when an
    /// extra CA's PEM content is unusable.
    pub fn new(config: ClientConfig) -> Result<Client, ClientError> {
        Client::build(config, HashMap::new())
    }

    /// [`Client::new`] with fixed DNS answers (for tests), still subject to
    /// the address rules.
    fn build(
        config: ClientConfig,
        overrides: HashMap<String, Vec<IpAddr>>,
    ) -> Result<Client, ClientError> {
        let roots = parse_roots(&config.extra_roots_pem)?;
        let user_agent =
            HeaderValue::from_str(&config.user_agent).map_err(|_| ClientError::BadUserAgent)?;
        let overrides = Arc::new(overrides);
        let build = |allow_forbidden: bool| {
            let mut builder = reqwest::Client::builder()
                // Redirects are followed by `fetch`, which checks every hop.
                .redirect(reqwest::redirect::Policy::none())
                // A system proxy would connect on our behalf to addresses we
                // never checked.
                .no_proxy()
                .referer(false)
                .user_agent(user_agent.clone())
                .min_tls_version(reqwest::tls::Version::TLS_1_2)
                .tls_built_in_root_certs(true)
                .dns_resolver(Arc::new(GuardedResolver {
                    allow_forbidden,
                    overrides: Arc::clone(&overrides),
                }));
            for der in &roots {
                builder = builder.add_root_certificate(
                    reqwest::Certificate::from_der(der)
                        .map_err(|e| ClientError::Build(e.to_string()))?,
                );
            }
            builder
                .build()
                .map_err(|e| ClientError::Build(e.to_string()))
        };
        Ok(Client {
            strict: build(false)?,
            exact: build(true)?,
            limits: config.limits,
        })
    }

    /// Performs one plugin request under `policy`, following redirects
    /// itself (every hop is checked), within the size and time caps.
    pub async fn fetch(&self, policy: &Policy, request: Request) -> Result<Response, FetchError> {
        let deadline = request
            .timeout
            .map_or(self.limits.max_timeout, |t| t.min(self.limits.max_timeout));
        tokio::time::timeout(deadline, self.fetch_inner(policy, request))
            .await
            .unwrap_or(Err(FetchError::Timeout))
    }

    async fn fetch_inner(&self, policy: &Policy, request: Request) -> Result<Response, FetchError> {
        let mut url = Url::parse(&request.url)
            .map_err(|e| FetchError::Invalid(format!("unparsable URL: {e}")))?;
        validate_url(&url)?;
        // Never sent; dropping it keeps it out of Location resolution.
        url.set_fragment(None);
        let mut headers = build_headers(&request.headers)?;
        let mut method = request.method.to_reqwest();
        let mut body = request.body.map(Bytes::from);
        let mut redirects: u8 = 0;

        loop {
            policy.check(&url)?;
            let client = if policy.is_exactly_granted(&url) {
                &self.exact
            } else {
                &self.strict
            };
            tracing::debug!(method = %method, target = %loggable(&url), "outbound request");
            let mut builder = client
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let response = builder.send().await.map_err(|e| map_send_error(&e, &url))?;
            let status = response.status().as_u16();

            let location = match status {
                301 | 302 | 303 | 307 | 308 => response.headers().get(header::LOCATION),
                _ => None,
            };
            let Some(location) = location else {
                return read_response(response, self.limits.max_response_bytes, &url).await;
            };

            if redirects >= self.limits.max_redirects {
                return Err(FetchError::Invalid(format!(
                    "too many redirects (more than {})",
                    self.limits.max_redirects
                )));
            }
            redirects += 1;
            let mut next = location
                .to_str()
                .ok()
                .and_then(|loc| url.join(loc).ok())
                .ok_or_else(|| {
                    FetchError::Invalid(format!(
                        "{} redirected to an unparsable Location",
                        origin_of(&url)
                    ))
                })?;
            next.set_fragment(None);
            validate_url(&next)?;
            drop(response);

            // What browsers do (Fetch standard, "HTTP-redirect fetch").
            let to_get = match status {
                303 => method != reqwest::Method::HEAD,
                301 | 302 => method == reqwest::Method::POST,
                _ => false,
            };
            if to_get {
                method = reqwest::Method::GET;
                body = None;
                for name in BODY_HEADERS {
                    headers.remove(name);
                }
            }
            // Credentials are for the origin the plugin addressed, not for
            // wherever that origin sends us.
            if next.origin() != url.origin() {
                headers.remove(header::AUTHORIZATION);
                headers.remove(header::COOKIE);
            }
            tracing::debug!(status, target = %loggable(&next), "following redirect");
            url = next;
        }
    }
}

/// Validates each extra CA entry and returns the DER certificates.
fn parse_roots(entries: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, ClientError> {
    let mut ders = Vec::new();
    for (i, pem) in entries.iter().enumerate() {
        let bad = |reason: String| ClientError::BadCa {
            index: i + 1,
            reason,
        };
        let mut certs = 0;
        let mut other_items = 0;
        let mut reader = pem.as_slice();
        for item in rustls_pemfile::read_all(&mut reader) {
            match item.map_err(|e| bad(format!("malformed PEM: {e}")))? {
                rustls_pemfile::Item::X509Certificate(der) => {
                    // Check it is a certificate rustls can use as a trust
                    // anchor now, rather than at the first TLS handshake.
                    rustls::RootCertStore::empty()
                        .add(der.clone())
                        .map_err(|e| bad(format!("certificate #{} is unusable: {e}", certs + 1)))?;
                    ders.push(der.to_vec());
                    certs += 1;
                }
                _ => other_items += 1,
            }
        }
        if certs == 0 {
            return Err(bad(if other_items > 0 {
                "the PEM data holds no certificate, only other items such as a private key \
                 (expected -----BEGIN CERTIFICATE-----)"
                    .to_owned()
            } else {
                "no PEM certificate found (expected -----BEGIN CERTIFICATE-----)".to_owned()
            }));
        }
    }
    Ok(ders)
}

/// Validates the plugin's headers. Errors name the header, never its value.
fn build_headers(pairs: &[(String, String)]) -> Result<HeaderMap, FetchError> {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            FetchError::Invalid(format!("invalid header name `{}`", name.escape_debug()))
        })?;
        if RESERVED_HEADERS.contains(&name.as_str()) {
            return Err(FetchError::Invalid(format!(
                "header `{name}` is set by the host, not by plugins"
            )));
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| FetchError::Invalid(format!("invalid value for header `{name}`")))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Reads the body under the cap and converts the response.
async fn read_response(
    mut response: reqwest::Response,
    cap: u64,
    url: &Url,
) -> Result<Response, FetchError> {
    // Refuse an announced oversize body before reading any of it.
    if response.content_length().is_some_and(|len| len > cap) {
        return Err(FetchError::TooLarge(cap));
    }
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let capacity = response.content_length().unwrap_or(0).min(cap);
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| map_send_error(&e, url))?
    {
        // Stop at the first byte over the cap; the rest is never read.
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(FetchError::TooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// The error and all its causes, looking inside `io::Error` wrappers (whose
/// `source()` skips the wrapped error itself).
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut chain = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        chain.push(e);
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    chain
}

/// Turns a reqwest error into a readable [`FetchError`]. reqwest's own
/// message is not used: it contains the full URL, query string included.
fn map_send_error(err: &reqwest::Error, url: &Url) -> FetchError {
    let origin = origin_of(url);
    let chain = causes(err);
    for cause in &chain {
        if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
            return match resolve {
                ResolveError::Forbidden => FetchError::Denied {
                    host: origin,
                    rule: RULE_FORBIDDEN_RESOLVED.to_owned(),
                },
                ResolveError::NotFound => {
                    FetchError::Unreachable(format!("{origin}: host name does not resolve"))
                }
            };
        }
    }
    for cause in &chain {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return FetchError::Unreachable(tls_reason(tls, &origin));
        }
    }
    if err.is_timeout() {
        return FetchError::Timeout;
    }
    for cause in &chain {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            let reason = match io.kind() {
                ErrorKind::ConnectionRefused => "connection refused",
                ErrorKind::ConnectionReset => "connection reset by the server",
                ErrorKind::ConnectionAborted => "connection aborted",
                ErrorKind::HostUnreachable => "host unreachable",
                ErrorKind::NetworkUnreachable => "network unreachable",
                ErrorKind::UnexpectedEof => "connection closed unexpectedly",
                ErrorKind::TimedOut => return FetchError::Timeout,
                _ => continue,
            };
            return FetchError::Unreachable(format!("{origin}: {reason}"));
        }
    }
    // hyper's innermost errors describe protocol problems, never the
    // request's headers or body.
    let detail = chain.last().map_or_else(String::new, |e| e.to_string());
    let what = if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "failed while reading the response"
    } else {
        "request failed"
    };
    FetchError::Unreachable(format!("{origin}: {what} ({detail})"))
}

/// A readable reason for a TLS failure, with the fix when there is one.
fn tls_reason(err: &rustls::Error, origin: &str) -> String {
    use rustls::CertificateError as C;
    match err {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => format!(
            "TLS: the certificate of {origin} is not trusted (if it comes from a private CA, \
             add its CA with --trust-ca)"
        ),
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => {
            format!("TLS: the certificate of {origin} is not valid for that host name")
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            format!("TLS: the certificate of {origin} has expired")
        }
        other => format!("TLS handshake with {origin} failed: {other}"),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::{TcpListener, TcpStream};

    fn pat(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn policy(requested: &[&str], granted: &[&str]) -> Policy {
        Policy {
            requested: requested.iter().map(|s| pat(s)).collect(),
            granted: granted.iter().map(|s| pat(s)).collect(),
        }
    }

    /// A policy allowing exactly `origin` (requested and granted).
    fn allow(origins: &[&str]) -> Policy {
        policy(origins, origins)
    }

    fn client() -> Client {
        Client::new(ClientConfig::default()).unwrap()
    }

    // --- a tiny HTTP/1.1 server that records requests and counts connections

    #[derive(Clone, Debug)]
    struct Recorded {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Recorded {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    enum Reply {
        /// Status, extra headers, body (sent with Content-Length).
        Full(u16, Vec<(String, String)>, Vec<u8>),
        /// Raw bytes, then close.
        Raw(Vec<u8>),
        /// Never answer; keep the connection open.
        Hang,
    }

    fn redirect(status: u16, location: &str) -> Reply {
        Reply::Full(
            status,
            vec![("location".into(), location.into())],
            Vec::new(),
        )
    }

    type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

    struct Server {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<Recorded>>>,
    }

    impl Server {
        async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let handler: Arc<Handler> = Arc::new(handler);
            let recorded = Arc::clone(&requests);
            tokio::spawn(async move {
                let accepted = AtomicUsize::new(0);
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    let index = accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::spawn(serve(
                        socket,
                        index,
                        Arc::clone(&handler),
                        Arc::clone(&recorded),
                    ));
                }
            });
            Server { addr, requests }
        }

        fn origin(&self) -> String {
            format!("http://{}", self.addr)
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }

        /// How many connections were accepted so far. Connects a sentinel and
        /// asks the server its accept index: accepts are sequential and the
        /// backlog is FIFO, so every earlier connection has been counted.
        async fn connections(&self) -> usize {
            let mut s = TcpStream::connect(self.addr).await.unwrap();
            s.write_all(b"SENTINEL\r\n\r\n").await.unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out.trim().parse().unwrap()
        }
    }

    async fn serve(
        socket: TcpStream,
        index: usize,
        handler: Arc<Handler>,
        recorded: Arc<Mutex<Vec<Recorded>>>,
    ) {
        let mut reader = BufReader::new(socket);
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        if line.trim() == "SENTINEL" {
            let _ = reader
                .get_mut()
                .write_all(index.to_string().as_bytes())
                .await;
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let request = Recorded {
            method,
            path,
            headers,
            body,
        };
        let reply = handler(&request);
        recorded.lock().unwrap().push(request);
        let socket = reader.get_mut();
        match reply {
            Reply::Full(status, headers, body) => {
                let mut out = format!("HTTP/1.1 {status} X\r\n");
                for (n, v) in headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str(&format!(
                    "content-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                ));
                let _ = socket.write_all(out.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            }
            Reply::Raw(bytes) => {
                let _ = socket.write_all(&bytes).await;
            }
            Reply::Hang => {
                std::future::pending::<()>().await;
            }
        }
        let _ = socket.shutdown().await;
    }

    fn ok(body: &str) -> Reply {
        Reply::Full(200, Vec::new(), body.as_bytes().to_vec())
    }

    // --- patterns

    #[test]
    fn patterns_parse_and_round_trip() {
        let cases = [
            ("https://*.my.salesforce.com", "https://*.my.salesforce.com"),
            (
                "https://login.salesforce.com:443",
                "https://login.salesforce.com",
            ),
            (
                "HTTPS://Login.Salesforce.COM/",
                "https://login.salesforce.com",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            ("http://localhost:*", "http://localhost:*"),
            ("http://[::1]:9000", "http://[::1]:9000"),
            ("http://[0:0::1]", "http://[::1]"),
            ("https://example.com.", "https://example.com"),
            ("http://example.com:443", "http://example.com:443"),
        ];
        for (input, canonical) in cases {
            let p: HostPattern = input.parse().unwrap();
            assert_eq!(p.to_string(), canonical, "{input}");
            assert_eq!(canonical.parse::<HostPattern>().unwrap(), p, "{input}");
        }
        let w = pat("https://*.my.salesforce.com");
        assert_eq!(w.host(), "my.salesforce.com");
        assert!(!w.is_exact_host());
        assert!(pat("http://localhost:*").is_exact_host());
        assert_eq!(pat("http://[::1]").host(), "[::1]");
    }

    #[test]
    fn pattern_errors_name_the_fix() {
        for bad in [
            "my.salesforce.com",
            "ftp://example.com",
            "https://",
            "https://*",
            "https://*.",
            "https://a.*.example.com",
            "https://*example.com",
            "https://example.com/path",
            "https://user@example.com",
            "https://example.com:0",
            "https://example.com:70000",
            "https://example.com:http",
            "https://::1",
            "https://*.127.0.0.1",
            "https://exa mple.com",
            "https://example.com?x=1",
        ] {
            let err = bad.parse::<HostPattern>().unwrap_err().to_string();
            assert!(
                err.contains("expected scheme://host[:port], e.g. https://*.my.salesforce.com"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn pattern_matching() {
        let w = pat("https://*.my.salesforce.com");
        assert!(w.matches(&url("https://acme.my.salesforce.com/services")));
        assert!(w.matches(&url("https://a.b.my.salesforce.com:443/")));
        assert!(w.matches(&url("https://acme.my.salesforce.com./")));
        assert!(
            !w.matches(&url("https://my.salesforce.com/")),
            "bare domain"
        );
        assert!(!w.matches(&url("https://evilmy.salesforce.com/")));
        assert!(!w.matches(&url("https://acme.my.salesforce.com.evil.com/")));
        assert!(!w.matches(&url("http://acme.my.salesforce.com/")), "scheme");
        assert!(
            !w.matches(&url("https://acme.my.salesforce.com:8443/")),
            "port"
        );

        let any_port = pat("http://localhost:*");
        assert!(any_port.matches(&url("http://localhost:1234/")));
        assert!(any_port.matches(&url("http://LOCALHOST/")));
        assert!(!any_port.matches(&url("http://sub.localhost/")));

        let ip = pat("http://127.0.0.1:8080");
        assert!(ip.matches(&url("http://127.0.0.1:8080/x")));
        assert!(!ip.matches(&url("http://127.0.0.1/x")));
        assert!(!ip.matches(&url("http://[::ffff:127.0.0.1]:8080/x")));
        // URL parsing canonicalises odd IPv4 spellings before matching.
        assert!(ip.matches(&url("http://0x7f.1:8080/")));
        assert!(pat("http://[::1]").matches(&url("http://[0::1]/")));
    }

    // --- address rules

    #[test]
    fn forbidden_ip_table() {
        let forbidden = [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "169.254.0.1",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:192.168.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
        ];
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.15.255.255",
            "172.32.0.1",
            "192.169.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "fe00::1",
        ];
        for ip in forbidden {
            assert!(
                is_forbidden_ip(ip.parse().unwrap()),
                "{ip} should be forbidden"
            );
        }
        for ip in allowed {
            assert!(
                !is_forbidden_ip(ip.parse().unwrap()),
                "{ip} should be allowed"
            );
        }
    }

    #[test]
    fn resolver_filter_drops_forbidden_addresses() {
        let ips = |v: &[&str]| {
            v.iter()
                .map(|s| s.parse().unwrap())
                .collect::<Vec<IpAddr>>()
        };
        assert_eq!(
            filter_addrs(ips(&["127.0.0.1", "93.184.216.34"]), false).unwrap(),
            ips(&["93.184.216.34"])
        );
        assert!(matches!(
            filter_addrs(ips(&["127.0.0.1", "::1"]), false),
            Err(ResolveError::Forbidden)
        ));
        assert_eq!(
            filter_addrs(ips(&["127.0.0.1"]), true).unwrap(),
            ips(&["127.0.0.1"])
        );
        assert!(matches!(
            filter_addrs(Vec::new(), true),
            Err(ResolveError::NotFound)
        ));
    }

    // --- policy

    #[test]
    fn policy_needs_requested_and_granted() {
        let target = url("https://acme.my.salesforce.com/services/data?code=secret");
        let both = policy(
            &["https://*.my.salesforce.com"],
            &["https://acme.my.salesforce.com"],
        );
        assert_eq!(both.check(&target), Ok(()));

        let not_requested = policy(
            &["https://login.salesforce.com"],
            &["https://*.my.salesforce.com"],
        );
        assert_eq!(
            not_requested.check(&target),
            Err(FetchError::Denied {
                host: "https://acme.my.salesforce.com:443".into(),
                rule: "not requested in the plugin's manifest".into(),
            })
        );

        let not_granted = policy(&["https://*.my.salesforce.com"], &[]);
        let Err(FetchError::Denied { host, rule }) = not_granted.check(&target) else {
            panic!("expected Denied");
        };
        assert_eq!(host, "https://acme.my.salesforce.com:443");
        assert!(rule.contains("not granted by the operator"), "{rule}");
        assert!(rule.contains("--grant PLUGIN_ID="), "{rule}");
        assert!(!rule.contains("secret"));

        assert!(Policy::default().check(&target).is_err());
    }

    #[test]
    fn policy_rejects_invalid_urls() {
        let p = allow(&["https://example.com"]);
        for bad in [
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://user@example.com/",
        ] {
            assert!(
                matches!(p.check(&url(bad)), Err(FetchError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn exact_grant_is_needed_for_loopback() {
        let p = policy(
            &["http://127.0.0.1:8080", "http://*.example.com"],
            &["http://127.0.0.1:*", "http://*.example.com"],
        );
        assert!(p.is_exactly_granted(&url("http://127.0.0.1:8080/")));
        assert!(!p.is_exactly_granted(&url("http://api.example.com/")));
        assert_eq!(p.check(&url("http://127.0.0.1:8080/")), Ok(()));
        // A different spelling of loopback is a different host.
        assert!(matches!(
            p.check(&url("http://[::ffff:127.0.0.1]:8080/")),
            Err(FetchError::Denied { .. })
        ));
    }

    // --- fetching

    #[tokio::test]
    async fn fetch_sends_request_and_returns_response() {
        let server = Server::start(|_| {
            Reply::Full(
                201,
                vec![("x-reply".into(), "yes".into())],
                b"created".to_vec(),
            )
        })
        .await;
        let mut request = Request::new(Method::Post, server.url("/api?q=1"));
        request.headers = vec![
            ("Authorization".into(), "Bearer tok".into()),
            ("X-Multi".into(), "a".into()),
            ("X-Multi".into(), "b".into()),
        ];
        request.body = Some(b"{\"a\":1}".to_vec());
        let response = client()
            .fetch(&allow(&[&server.origin()]), request)
            .await
            .unwrap();
        assert_eq!(response.status, 201);
        assert_eq!(response.body, b"created");
        assert!(response.headers.contains(&("x-reply".into(), "yes".into())));

        let seen = server.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, "/api?q=1");
        assert_eq!(seen[0].header("authorization"), Some("Bearer tok"));
        assert_eq!(seen[0].body, b"{\"a\":1}");
        let multi: Vec<_> = seen[0]
            .headers
            .iter()
            .filter(|(n, _)| n == "x-multi")
            .collect();
        assert_eq!(multi.len(), 2);
        assert!(
            seen[0]
                .header("user-agent")
                .is_some_and(|ua| ua.starts_with("pbx-host/"))
        );
    }

    #[tokio::test]
    async fn denied_targets_get_no_connection() {
        let server = Server::start(|_| ok("hi")).await;
        let origin = server.origin();
        let cases = [
            // Not requested.
            policy(&[], &[&origin]),
            // Not granted.
            policy(&[&origin], &[]),
            // Granted for another port only.
            policy(&[&origin], &["http://127.0.0.1:1"]),
        ];
        for p in cases {
            let err = client()
                .fetch(&p, Request::new(Method::Get, server.url("/")))
                .await
                .unwrap_err();
            let FetchError::Denied { host, .. } = err else {
                panic!("expected Denied, got {err:?}");
            };
            assert_eq!(host, format!("http://127.0.0.1:{}", server.addr.port()));
        }
        assert_eq!(server.connections().await, 0);
    }

    #[tokio::test]
    async fn host_name_resolving_to_loopback_needs_exact_grant() {
        let server = Server::start(|_| ok("internal")).await;
        let port = server.addr.port();
        let overrides = HashMap::from([(
            "api.example.test".to_owned(),
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        )]);
        let client = Client::build(ClientConfig::default(), overrides).unwrap();
        let target = format!("http://api.example.test:{port}/");

        let wildcard = allow(&[&format!("http://*.example.test:{port}")]);
        let err = client
            .fetch(&wildcard, Request::new(Method::Get, target.clone()))
            .await
            .unwrap_err();
        let FetchError::Denied { host, rule } = err else {
            panic!("expected Denied, got {err:?}");
        };
        assert_eq!(host, format!("http://api.example.test:{port}"));
        assert!(rule.contains("loopback"), "{rule}");
        assert_eq!(server.connections().await, 0);

        let exact = policy(
            &[&format!("http://*.example.test:{port}")],
            &[&format!("http://api.example.test:{port}")],
        );
        let response = client
            .fetch(&exact, Request::new(Method::Get, target))
            .await
            .unwrap();
        assert_eq!(response.body, b"internal");
    }

    #[tokio::test]
    async fn redirects_are_followed_and_checked() {
        let other = Server::start(|_| ok("other")).await;
        let other_url = other.url("/landing");
        let server = Server::start(move |r| match r.path.as_str() {
            "/relative" => redirect(302, "/final"),
            "/cross" => redirect(307, &other_url),
            "/see-other" => redirect(303, "/final"),
            "/temporary" => redirect(307, "/final"),
            _ => ok("final"),
        })
        .await;
        let both = allow(&[&server.origin(), &other.origin()]);
        let with_secrets = |method, path: &str| {
            let mut r = Request::new(method, server.url(path));
            r.headers = vec![
                ("authorization".into(), "Bearer secret".into()),
                ("cookie".into(), "sid=secret".into()),
                ("content-type".into(), "application/json".into()),
                ("x-keep".into(), "1".into()),
            ];
            r.body = Some(b"payload".to_vec());
            r
        };

        // Relative Location, same origin: credentials kept, 302 POST -> GET.
        let response = client()
            .fetch(&both, with_secrets(Method::Post, "/relative"))
            .await
            .unwrap();
        assert_eq!(response.body, b"final");
        let seen = server.requests();
        let last = seen.last().unwrap();
        assert_eq!(
            (last.method.as_str(), last.path.as_str()),
            ("GET", "/final")
        );
        assert_eq!(last.header("authorization"), Some("Bearer secret"));
        assert!(last.body.is_empty());
        assert_eq!(last.header("content-type"), None);

        // 303: GET without body.
        client()
            .fetch(&both, with_secrets(Method::Put, "/see-other"))
            .await
            .unwrap();
        let last = server.requests().pop().unwrap();
        assert_eq!(last.method, "GET");
        assert!(last.body.is_empty());

        // 307: method and body kept.
        client()
            .fetch(&both, with_secrets(Method::Post, "/temporary"))
            .await
            .unwrap();
        let last = server.requests().pop().unwrap();
        assert_eq!(last.method, "POST");
        assert_eq!(last.body, b"payload");

        // Cross-origin: Authorization and Cookie stripped, the rest kept.
        let response = client()
            .fetch(&both, with_secrets(Method::Post, "/cross"))
            .await
            .unwrap();
        assert_eq!(response.body, b"other");
        let seen = other.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].body, b"payload");
        assert_eq!(seen[0].header("authorization"), None);
        assert_eq!(seen[0].header("cookie"), None);
        assert_eq!(seen[0].header("x-keep"), Some("1"));
    }

    #[tokio::test]
    async fn redirect_to_denied_host_sends_nothing_there() {
        let forbidden = Server::start(|_| ok("should not be reached")).await;
        let target = forbidden.url("/steal");
        let server = Server::start(move |_| redirect(302, &target)).await;
        let err = client()
            .fetch(
                &allow(&[&server.origin()]),
                Request::new(Method::Get, server.url("/")),
            )
            .await
            .unwrap_err();
        let FetchError::Denied { host, .. } = err else {
            panic!("expected Denied, got {err:?}");
        };
        assert_eq!(host, format!("http://127.0.0.1:{}", forbidden.addr.port()));
        assert_eq!(forbidden.connections().await, 0);

        // The cloud metadata address is refused the same way.
        let server =
            Server::start(|_| redirect(301, "http://169.254.169.254/latest/meta-data/")).await;
        let err = client()
            .fetch(
                &allow(&[&server.origin()]),
                Request::new(Method::Get, server.url("/")),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, FetchError::Denied { host, .. } if host == "http://169.254.169.254:80"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn too_many_redirects() {
        let server = Server::start(|_| redirect(302, "/again")).await;
        let err = client()
            .fetch(
                &allow(&[&server.origin()]),
                Request::new(Method::Get, server.url("/")),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err,
            FetchError::Invalid("too many redirects (more than 5)".into())
        );
        // The first request plus five followed hops.
        assert_eq!(server.requests().len(), 6);
    }

    fn small_cap_client(cap: u64) -> Client {
        Client::new(ClientConfig {
            limits: Limits {
                max_response_bytes: cap,
                ..Limits::default()
            },
            ..ClientConfig::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn oversize_bodies_are_refused() {
        // Announced by Content-Length (only a few bytes are actually sent).
        let announced = Server::start(|_| {
            Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\nabc".to_vec())
        })
        .await;
        // Unannounced: streamed until the connection closes.
        let streamed = Server::start(|_| {
            let mut raw = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n".to_vec();
            raw.extend(std::iter::repeat_n(b'x', 64 * 1024));
            Reply::Raw(raw)
        })
        .await;
        let exact = Server::start(|_| ok(&"y".repeat(1024))).await;
        let client = small_cap_client(1024);
        for server in [&announced, &streamed] {
            let err = client
                .fetch(
                    &allow(&[&server.origin()]),
                    Request::new(Method::Get, server.url("/")),
                )
                .await
                .unwrap_err();
            assert_eq!(err, FetchError::TooLarge(1024));
        }
        let response = client
            .fetch(
                &allow(&[&exact.origin()]),
                Request::new(Method::Get, exact.url("/")),
            )
            .await
            .unwrap();
        assert_eq!(response.body.len(), 1024);
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let server = Server::start(|_| Reply::Hang).await;
        let mut request = Request::new(Method::Get, server.url("/"));
        request.timeout = Some(Duration::from_millis(200));
        let err = client()
            .fetch(&allow(&[&server.origin()]), request)
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::Timeout);

        // The operator's cap wins over a longer plugin timeout.
        let capped = Client::new(ClientConfig {
            limits: Limits {
                max_timeout: Duration::from_millis(200),
                ..Limits::default()
            },
            ..ClientConfig::default()
        })
        .unwrap();
        let mut request = Request::new(Method::Get, server.url("/"));
        request.timeout = Some(Duration::from_secs(3600));
        let err = capped
            .fetch(&allow(&[&server.origin()]), request)
            .await
            .unwrap_err();
        assert_eq!(err, FetchError::Timeout);
    }

    #[tokio::test]
    async fn refused_connection_is_unreachable_without_secrets() {
        // Bind then drop, so the port is (very likely) closed.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let origin = format!("http://127.0.0.1:{port}");
        let mut request = Request::new(Method::Post, format!("{origin}/x?code=querysecret"));
        request.headers = vec![("authorization".into(), "Bearer headersecret".into())];
        request.body = Some(b"bodysecret".to_vec());
        let err = client()
            .fetch(&allow(&[&origin]), request)
            .await
            .unwrap_err();
        let FetchError::Unreachable(reason) = &err else {
            panic!("expected Unreachable, got {err:?}");
        };
        assert!(reason.contains("connection refused"), "{reason}");
        let text = format!("{err} {err:?}");
        for secret in ["querysecret", "headersecret", "bodysecret"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[tokio::test]
    async fn invalid_requests() {
        let p = allow(&["https://example.com"]);
        let with_header = |name: &str, value: &str| {
            let mut r = Request::new(Method::Get, "https://example.com/");
            r.headers = vec![(name.into(), value.into())];
            r
        };
        let cases = [
            Request::new(Method::Get, "not a url"),
            Request::new(Method::Get, "/relative"),
            Request::new(Method::Get, "ftp://example.com/"),
            Request::new(Method::Get, "file:///etc/passwd"),
            Request::new(Method::Get, "https://user:pw@example.com/"),
            with_header("bad name", "v"),
            with_header("", "v"),
            with_header("x-ok", "line\nbreak-secret"),
            with_header("Host", "evil.com"),
            with_header("content-length", "5"),
        ];
        for request in cases {
            let shown = format!("{request:?}");
            let err = client().fetch(&p, request).await.unwrap_err();
            let FetchError::Invalid(reason) = &err else {
                panic!("{shown}: expected Invalid, got {err:?}");
            };
            assert!(!reason.contains("secret"), "{reason}");
        }
    }

    #[test]
    fn bad_ca_pem_is_a_clear_error() {
        let config = |pem: &[u8]| ClientConfig {
            extra_roots_pem: vec![pem.to_vec()],
            ..ClientConfig::default()
        };
        let err = Client::new(config(b"hello")).unwrap_err().to_string();
        assert!(
            err.contains("#1") && err.contains("BEGIN CERTIFICATE"),
            "{err}"
        );
        let err = Client::new(config(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("unusable"), "{err}");
        let err = Client::new(config(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("private key"), "{err}");
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut request = Request::new(Method::Post, "https://example.com/p?code=secret1");
        request.headers = vec![("authorization".into(), "Bearer secret2".into())];
        request.body = Some(b"secret3".to_vec());
        let response = Response {
            status: 200,
            headers: vec![("set-cookie".into(), "secret4".into())],
            body: b"secret5".to_vec(),
        };
        let shown = format!("{request:?} {response:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(
            shown.contains("authorization") && shown.contains("/p"),
            "{shown}"
        );
    }
}
