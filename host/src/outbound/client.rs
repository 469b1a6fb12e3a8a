//! The reqwest/TLS client behind [`Client::fetch`]: how one plugin request
//! is sent, followed through redirects (every hop re-checked) and capped,
//! and how transport failures become readable errors free of secrets.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::errors::{ClientError, FetchError};
use super::guard::{GuardedResolver, ResolveError};
use super::policy::{Policy, RULE_FORBIDDEN_RESOLVED, loggable, origin_of, validate_url};
use super::types::{Request, Response};

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
    pub(super) fn build(
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
