//! Host patterns (`scheme://host[:port]`): how grants and manifests name the
//! targets a plugin may reach, and whether one pattern covers another.
//!
//! Parsing normalises hosts the way URLs do, so a pattern compares with what
//! [`url::Url`] reports; `Display` prints a form that parses back equal.

use std::fmt;
use std::str::FromStr;

use url::Url;

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
pub(super) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub(super) fn parse(s: &str) -> Option<Scheme> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::outbound) fn pat(s: &str) -> HostPattern {
        s.parse().unwrap()
    }

    pub(in crate::outbound) fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

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
}
