//! The allow-list ([`Policy`]): whether a plugin may reach a URL at all,
//! that is, whether its manifest requested it, the operator granted it and
//! the host fetches such URLs; with how targets are named in messages.

use std::net::IpAddr;

use url::Url;

use super::errors::FetchError;
use super::guard::is_forbidden_ip;
use super::pattern::{HostPattern, Scheme};

const RULE_NOT_REQUESTED: &str = "not requested in the plugin's manifest";
const RULE_FORBIDDEN_LITERAL: &str = "loopback, private or link-local address not granted exactly";
pub(super) const RULE_FORBIDDEN_RESOLVED: &str = "resolves to a loopback, private or link-local address, \
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
    /// are resolved (see [`Client`](super::Client)); IP literals are checked here.
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
pub(super) fn origin_of(url: &Url) -> String {
    format!(
        "{}://{}:{}",
        url.scheme(),
        url.host_str().unwrap_or(""),
        url.port_or_known_default().unwrap_or(0)
    )
}

/// `scheme://host:port/path` for logs: no query string or fragment, which may
/// carry authorization codes or tokens.
pub(super) fn loggable(url: &Url) -> String {
    format!("{}{}", origin_of(url), url.path())
}

/// Rejects URLs the host never fetches, whatever the policy says.
pub(super) fn validate_url(url: &Url) -> Result<(), FetchError> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::outbound::pattern::tests::{pat, url};

    pub(in crate::outbound) fn policy(requested: &[&str], granted: &[&str]) -> Policy {
        Policy {
            requested: requested.iter().map(|s| pat(s)).collect(),
            granted: granted.iter().map(|s| pat(s)).collect(),
        }
    }

    /// A policy allowing exactly `origin` (requested and granted).
    pub(in crate::outbound) fn allow(origins: &[&str]) -> Policy {
        policy(origins, origins)
    }

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
}
