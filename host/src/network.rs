//! The PBX's Homepage URL: its public address (the FQDN browsers and CRMs
//! reach it at), from which every Callback URL is composed. The
//! administrator sets it (portal, `PUT /api/network`, `pbx-host network
//! set`); it is kept in the store (`host/network`). Until it is set,
//! `serve --public-url` (or the address the host listens on) stands in.
//! Also the warnings a CRM's callback rules call for: CRMs refuse a plain
//! http callback except on this machine, and expect a domain name.

use std::net::IpAddr;
use std::sync::RwLock;

use serde::Serialize;
use url::{Host, Url};

use crate::store::{KvError, Namespace};

/// The store namespace of the host's network settings.
pub const NETWORK_NAMESPACE: &str = "host/network";

const HOMEPAGE_KEY: &str = "homepage-url";

/// What a Homepage URL must look like, for error messages.
const FIX: &str = "enter the PBX's address as browsers reach it, scheme and host (and port) without a path, e.g. https://pbx.example.com";

/// Why a Homepage URL was refused, or could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// Not an absolute http(s) origin.
    #[error("the Homepage URL {input:?} {why}: {FIX}")]
    Invalid {
        /// What was given (cut to 200 characters).
        input: String,
        /// What is wrong with it.
        why: String,
    },
    /// The store failed; nothing changed.
    #[error("the Homepage URL cannot be stored: {0}")]
    Store(#[from] KvError),
}

/// Where the Homepage URL in effect comes from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The administrator set it; it wins over `--public-url`.
    Administrator,
    /// Nothing is set: `serve --public-url`, or the listening address.
    PublicUrl,
}

/// What `GET /api/network` answers.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkView {
    /// The Homepage URL in effect.
    pub homepage_url: String,
    /// Where it comes from.
    pub source: Source,
    /// What stands in when the administrator has set nothing.
    pub public_url: String,
    /// The Callback URL of each CRM plugin: this, with `{plugin}` its id.
    pub callback_url_template: String,
    /// What a CRM or a browser will object to, in words naming the fix.
    pub warnings: Vec<String>,
}

/// The Homepage URL in effect, and the stored setting behind it.
pub struct Network {
    store: Namespace,
    public_url: Url,
    stored: RwLock<Option<Url>>,
    /// On a shared store another replica may set it: when this copy was
    /// last read from the store.
    read_at: std::sync::Mutex<std::time::Instant>,
}

/// How stale this replica's copy of the Homepage URL may be when replicas
/// share the store.
const REREAD_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

impl Network {
    /// The network settings kept in `store`, with `public_url` (from
    /// `serve`) standing in while none is set. A stored value that no
    /// longer parses is ignored, with a warning in the log.
    pub fn open(store: Namespace, public_url: Url) -> Result<Network, KvError> {
        let stored = read_stored(&store)?;
        if let Some(url) = &stored
            && origin(url) != origin(&public_url)
        {
            tracing::info!(
                homepage_url = %origin(url),
                public_url = %origin(&public_url),
                "the Homepage URL the administrator set wins over --public-url"
            );
        }
        Ok(Network {
            store,
            public_url,
            stored: RwLock::new(stored),
            read_at: std::sync::Mutex::new(std::time::Instant::now()),
        })
    }

    /// On a shared store, read the setting again when this copy is older
    /// than [`REREAD_AFTER`] (another replica may have changed it); if the
    /// store cannot answer, the copy stands.
    fn refresh(&self) {
        if !self.store.is_shared() {
            return;
        }
        {
            let mut read_at = self.read_at.lock().unwrap_or_else(|p| p.into_inner());
            if read_at.elapsed() < REREAD_AFTER {
                return;
            }
            *read_at = std::time::Instant::now();
        }
        match read_stored(&self.store) {
            Ok(stored) => *self.stored.write().unwrap_or_else(|p| p.into_inner()) = stored,
            Err(e) => tracing::warn!("cannot read the Homepage URL again: {e}"),
        }
    }

    /// The Homepage URL in effect (an origin, no trailing slash).
    pub fn homepage_url(&self) -> String {
        origin(&self.homepage())
    }

    fn homepage(&self) -> Url {
        self.refresh();
        self.stored
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| self.public_url.clone())
    }

    /// The Callback URL a CRM must redirect to for `plugin_id`.
    pub fn callback_url(&self, plugin_id: &str) -> String {
        let base = self.homepage();
        format!(
            "{}/crm/{plugin_id}/oauth/callback",
            base.as_str().trim_end_matches('/')
        )
    }

    /// Where browsers reach this PBX: the Homepage URL, then
    /// `--public-url` (the cross-site check takes both origins).
    pub fn own_urls(&self) -> Vec<Url> {
        vec![self.homepage(), self.public_url.clone()]
    }

    /// The settings as the API shows them.
    pub fn view(&self) -> NetworkView {
        self.refresh();
        let (stored, url) = {
            let stored = self.stored.read().unwrap_or_else(|p| p.into_inner());
            (stored.is_some(), self.homepage())
        };
        NetworkView {
            homepage_url: origin(&url),
            source: if stored {
                Source::Administrator
            } else {
                Source::PublicUrl
            },
            public_url: self.public_url.as_str().trim_end_matches('/').to_string(),
            callback_url_template: format!(
                "{}/crm/{{plugin}}/oauth/callback",
                url.as_str().trim_end_matches('/')
            ),
            warnings: warnings(&url),
        }
    }

    /// Set the Homepage URL (`None`: forget it, `--public-url` stands in
    /// again). A refused value changes nothing.
    pub async fn set(&self, input: Option<&str>) -> Result<NetworkView, NetworkError> {
        match input.map(str::trim) {
            Some(text) => {
                let url = parse_homepage_url(text)?;
                self.store
                    .set_async(HOMEPAGE_KEY.to_string(), origin(&url).into_bytes())
                    .await?;
                *self.stored.write().unwrap_or_else(|p| p.into_inner()) = Some(url);
            }
            None => {
                self.store.delete_async(HOMEPAGE_KEY.to_string()).await?;
                *self.stored.write().unwrap_or_else(|p| p.into_inner()) = None;
            }
        }
        Ok(self.view())
    }
}

/// The Homepage URL kept in `store`; one that no longer parses is
/// ignored, with a warning in the log.
fn read_stored(store: &Namespace) -> Result<Option<Url>, KvError> {
    let Some(bytes) = store.get(HOMEPAGE_KEY)? else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match parse_homepage_url(&text) {
        Ok(url) => Ok(Some(url)),
        Err(e) => {
            tracing::warn!("the stored Homepage URL is ignored: {e}");
            Ok(None)
        }
    }
}

/// `url` as an origin: scheme, host and port, no trailing slash.
fn origin(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_string()
}

/// An absolute http(s) URL naming a host, without user, path, query or
/// fragment.
pub fn parse_homepage_url(input: &str) -> Result<Url, NetworkError> {
    let refuse = |why: &str| NetworkError::Invalid {
        input: input.chars().take(200).collect(),
        why: why.to_string(),
    };
    if input.trim().is_empty() {
        return Err(refuse("is empty"));
    }
    let url = Url::parse(input.trim()).map_err(|e| refuse(&format!("is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse("is not an http or https URL"));
    }
    if url.host().is_none() {
        return Err(refuse("names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("carries a user name or password"));
    }
    if url.path() != "/" {
        return Err(refuse("has a path"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(refuse("has a query or fragment"));
    }
    Ok(url)
}

/// What a CRM or a browser will object to in `url`, each naming the fix.
pub fn warnings(url: &Url) -> Vec<String> {
    let ip = match url.host() {
        Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    let localhost = match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        _ => ip.is_some_and(|ip| ip.is_loopback()),
    };
    let mut said = Vec::new();
    if url.scheme() != "https" && !localhost {
        said.push(
            "It is not https: CRMs refuse a plain http Callback URL except on localhost. Serve HTTPS (serve --tls-cert) or put a TLS reverse proxy in front, and enter its https address.".to_string(),
        );
    }
    match ip {
        Some(ip) if ip.is_unspecified() => said.push(format!(
            "{ip} is where the host listens, not an address anyone can reach: enter the PBX's domain name, e.g. https://pbx.example.com."
        )),
        Some(ip) if ip.is_loopback() => said.push(format!(
            "{ip} is this machine: only browsers on it reach the PBX there. Enter the PBX's domain name for agents on other machines."
        )),
        Some(ip) => said.push(format!(
            "{ip} is an IP address: CRMs and browsers expect the PBX's domain name (its FQDN), e.g. https://pbx.example.com, and certificates name it."
        )),
        None => {}
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(input: &str) -> Vec<String> {
        warnings(&parse_homepage_url(input).expect("valid"))
    }

    #[test]
    fn an_origin_is_taken_and_anything_else_is_refused_naming_the_fix() {
        for good in [
            "https://pbx.example.com",
            "https://pbx.example.com/",
            "http://127.0.0.1:8080",
            " https://PBX.example.com:8443 ",
        ] {
            assert!(parse_homepage_url(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("", "is empty"),
            ("pbx.example.com", "is not a URL"),
            ("ftp://pbx.example.com", "not an http or https URL"),
            ("https://pbx.example.com/pbx", "has a path"),
            ("https://pbx.example.com/?a=1", "query or fragment"),
            ("https://admin:pw@pbx.example.com", "user name or password"),
            ("https://pbx.example.com/#top", "query or fragment"),
        ] {
            let e = parse_homepage_url(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("e.g. https://pbx.example.com"), "{e}");
        }
    }

    #[test]
    fn warnings_name_plain_http_ip_addresses_and_the_unspecified_address() {
        assert!(warned("https://pbx.example.com").is_empty());
        assert!(warned("http://localhost:8080").is_empty());
        let http = warned("http://pbx.example.com");
        assert_eq!(http.len(), 1);
        assert!(http[0].contains("not https"), "{http:?}");
        let ip = warned("https://192.0.2.10");
        assert_eq!(ip.len(), 1);
        assert!(ip[0].contains("is an IP address"), "{ip:?}");
        let any = warned("http://0.0.0.0:8080");
        assert_eq!(any.len(), 2, "{any:?}");
        assert!(any[0].contains("not https") && any[1].contains("0.0.0.0 is where"));
        let loopback = warned("http://127.0.0.1:8080");
        assert_eq!(loopback.len(), 1, "{loopback:?}");
        assert!(loopback[0].contains("is this machine"));
        assert!(warned("http://[::1]:8080")[0].contains("is this machine"));
    }
}
