//! `open-browser`: the host records each request so the portal (or an
//! agent's page) can show it; the system browser is used only when the
//! operator asked for it. A plugin may open only pages on the hosts it may
//! reach with `http-fetch` (requested and granted), of a bounded length,
//! at a bounded rate (`check_open`, `OpenBudget`): otherwise it would be a
//! way round the outbound allow-list and a phishing channel to agents.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

use super::Capabilities;
use crate::outbound::{FetchError, Policy};

/// How many requests are kept for the portal.
const KEPT: usize = 256;
/// Longest URL a plugin may ask to open, in bytes.
pub const MAX_URL: usize = 4096;
/// Requests a plugin may make at once before the rate applies.
pub const OPEN_BURST: u32 = 30;
/// Requests per second a plugin may make after its burst.
pub const OPEN_PER_SECOND: u32 = 10;

/// Who a page is for, as the portal sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "extension")]
pub enum Viewer {
    /// The administrator.
    Administrator,
    /// The person at an extension.
    Extension(String),
}

/// One request to open a page.
#[derive(Debug, Clone, Serialize)]
pub struct BrowserRequest {
    /// Increasing id, for "show me what's new".
    pub id: u64,
    /// The plugin that asked.
    pub plugin_id: String,
    /// The page.
    pub url: String,
    /// Who it is for.
    pub viewer: Viewer,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// The record of open-browser requests.
pub struct BrowserRequests {
    kept: Mutex<VecDeque<BrowserRequest>>,
    next_id: AtomicU64,
    live: broadcast::Sender<BrowserRequest>,
    system_browser: bool,
}

impl BrowserRequests {
    /// A recorder; `system_browser` also opens administrator pages with `xdg-open`.
    pub fn new(system_browser: bool) -> Self {
        Self {
            kept: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            live: broadcast::channel(64).0,
            system_browser,
        }
    }

    /// Record a request (after checking the URL) and tell live listeners.
    pub fn record(&self, plugin_id: &str, url: &str, viewer: Viewer) -> Result<u64, String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(format!(
                "only http and https pages can be opened, not {}:",
                parsed.scheme()
            ));
        }
        let request = BrowserRequest {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            plugin_id: plugin_id.to_string(),
            url: parsed.to_string(),
            viewer,
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        {
            let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
            if kept.len() == KEPT {
                kept.pop_front();
            }
            kept.push_back(request.clone());
        }
        if self.system_browser && request.viewer == Viewer::Administrator {
            // Best effort: the portal shows the request either way.
            if let Err(e) = std::process::Command::new("xdg-open")
                .arg(&request.url)
                .spawn()
            {
                tracing::warn!("xdg-open failed: {e}");
            }
        }
        // No live listener is not an error.
        let _ = self.live.send(request.clone());
        Ok(request.id)
    }

    /// Requests with an id above `after`, oldest first.
    pub fn since(&self, after: u64) -> Vec<BrowserRequest> {
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.iter().filter(|r| r.id > after).cloned().collect()
    }

    /// The id of the newest request so far (0 before the first).
    pub fn latest_id(&self) -> u64 {
        self.next_id.load(Ordering::SeqCst).saturating_sub(1)
    }

    /// Live requests as they are recorded.
    pub fn subscribe(&self) -> broadcast::Receiver<BrowserRequest> {
        self.live.subscribe()
    }
}

/// Whether a plugin with the outbound `policy` may ask to open `url`: at
/// most [`MAX_URL`] bytes, http(s), no user info, and a host the plugin's
/// manifest requests and the operator granted (as for `http-fetch`).
pub fn check_open(url: &str, policy: &Policy) -> Result<(), String> {
    if url.len() > MAX_URL {
        return Err(format!(
            "the URL is {} bytes; open-browser takes at most {MAX_URL}",
            url.len()
        ));
    }
    let parsed = url::Url::parse(url).map_err(|e| format!("the page is not a URL: {e}"))?;
    policy.check(&parsed).map_err(|e| match e {
        FetchError::Denied { host, rule } => format!(
            "open-browser may open only pages on hosts the plugin may reach; {host} is refused: {rule}"
        ),
        other => format!("open-browser refused the page: {other}"),
    })
}

/// A plugin's open-browser requests, as a token bucket: [`OPEN_BURST`] at
/// once, then [`OPEN_PER_SECOND`].
#[derive(Debug)]
pub struct OpenBudget {
    bucket: Mutex<(f64, Instant)>,
}

impl Default for OpenBudget {
    fn default() -> Self {
        Self {
            bucket: Mutex::new((f64::from(OPEN_BURST), Instant::now())),
        }
    }
}

impl OpenBudget {
    /// Takes one request at `now`; false when the budget is spent.
    pub fn take(&self, now: Instant) -> bool {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, last) = &mut *bucket;
        let refill =
            now.saturating_duration_since(*last).as_secs_f64() * f64::from(OPEN_PER_SECOND);
        *tokens = (*tokens + refill).min(f64::from(OPEN_BURST));
        *last = now.max(*last);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Capabilities {
    /// Record a plugin's request to open `url` for `viewer`: the page must
    /// pass [`check_open`] and the plugin's [`OpenBudget`] must allow it,
    /// and an extension must exist on this PBX.
    pub fn open_browser(&self, url: &str, viewer: Viewer) -> Result<(), String> {
        check_open(url, &self.grants.http)?;
        if !self.grants.open_budget.take(Instant::now()) {
            return Err(format!(
                "open-browser is limited to {OPEN_BURST} pages at once and {OPEN_PER_SECOND} a second; this page was not opened"
            ));
        }
        if let Viewer::Extension(number) = &viewer
            && self.services.directory.get(number).ok().flatten().is_none()
        {
            return Err(format!("extension {number} does not exist on this PBX"));
        }
        self.services
            .browser
            .record(&self.grants.plugin_id, url, viewer)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_kept_and_checked() {
        let b = BrowserRequests::new(false);
        assert!(
            b.record("p", "javascript:alert(1)", Viewer::Administrator)
                .is_err()
        );
        let id = b.record("p", "https://example.org/x", Viewer::Administrator);
        assert_eq!(id, Ok(1));
        assert_eq!(b.since(0).len(), 1);
        assert!(b.since(1).is_empty());
    }

    fn policy(requested: &[&str], granted: &[&str]) -> Policy {
        let patterns = |list: &[&str]| {
            list.iter()
                .map(|p| p.parse::<crate::outbound::HostPattern>().expect("pattern"))
                .collect::<Vec<_>>()
        };
        Policy {
            requested: patterns(requested),
            granted: patterns(granted),
        }
    }

    #[test]
    fn only_pages_on_granted_hosts_of_bounded_length_may_be_opened() {
        let policy = policy(
            &["https://*.example.com", "https://evil.example.org"],
            &["https://*.example.com"],
        );
        assert_eq!(
            check_open("https://crm.example.com/record/1", &policy),
            Ok(())
        );
        // Requested but not granted.
        let err = check_open("https://evil.example.org/login", &policy).expect_err("refused");
        assert!(
            err.contains("https://evil.example.org:443 is refused"),
            "{err}"
        );
        // Neither requested nor granted.
        assert!(check_open("https://phish.test/", &policy).is_err());
        // Not http(s), user info, not a URL.
        assert!(check_open("javascript:alert(1)", &policy).is_err());
        assert!(check_open("https://user:pw@crm.example.com/", &policy).is_err());
        assert!(check_open("crm.example.com", &policy).is_err());
        // Too long, though on a granted host.
        let long = format!("https://crm.example.com/{}", "a".repeat(MAX_URL));
        let err = check_open(&long, &policy).expect_err("too long");
        assert!(err.contains("at most 4096"), "{err}");
        let fits = format!("https://crm.example.com/{}", "a".repeat(MAX_URL - 24));
        assert_eq!(fits.len(), MAX_URL);
        assert_eq!(check_open(&fits, &policy), Ok(()));
    }

    #[test]
    fn the_budget_allows_a_burst_then_the_rate() {
        let budget = OpenBudget::default();
        let start = Instant::now();
        let burst = (0..100).filter(|_| budget.take(start)).count();
        assert_eq!(burst, OPEN_BURST as usize);
        assert!(!budget.take(start));
        // A second later, one second's worth more.
        let later = start + std::time::Duration::from_secs(1);
        let refilled = (0..100).filter(|_| budget.take(later)).count();
        assert_eq!(refilled, OPEN_PER_SECOND as usize);
    }
}
