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

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::Capabilities;
use crate::outbound::{FetchError, Policy};
use crate::store::Store;

/// How many requests are kept for the portal.
const KEPT: usize = 256;
/// At most this many details of a caption are kept (the rest are dropped).
pub const CAPTION_DETAILS: usize = 16;
/// A caption's title, action, labels and values are cut to this many
/// characters (ending in "…"), so a plugin cannot make the host keep and
/// push pages of text per request.
pub const CAPTION_TEXT: usize = 256;
/// Longest URL a plugin may ask to open, in bytes.
pub const MAX_URL: usize = 4096;
/// Requests a plugin may make at once before the rate applies.
pub const OPEN_BURST: u32 = 30;
/// Requests per second a plugin may make after its burst.
pub const OPEN_PER_SECOND: u32 = 10;

/// Who a page is for, as the portal sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "extension")]
pub enum Viewer {
    /// The administrator.
    Administrator,
    /// The person at an extension.
    Extension(String),
}

/// One fact about what a page is about, shown next to its button.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Detail {
    /// What the value is, e.g. "Number".
    pub label: String,
    /// The value.
    pub value: String,
}

/// What a page is about (0.3.0 on): a title, details, the button's words,
/// and the call it belongs to, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caption {
    /// One line, e.g. "Incoming call from +14155550100".
    pub title: String,
    /// Label/value pairs.
    pub details: Vec<Detail>,
    /// The button that opens the page.
    pub action: String,
    /// The PBX call this page is about.
    pub call_id: Option<String>,
}

impl Caption {
    /// The caption within the host's bounds: at most [`CAPTION_DETAILS`]
    /// details, each text at most [`CAPTION_TEXT`] characters.
    fn bounded(self) -> Self {
        Self {
            title: cut(self.title),
            details: self
                .details
                .into_iter()
                .take(CAPTION_DETAILS)
                .map(|d| Detail {
                    label: cut(d.label),
                    value: cut(d.value),
                })
                .collect(),
            action: cut(self.action),
            call_id: self.call_id.map(cut),
        }
    }
}

/// `text` cut to [`CAPTION_TEXT`] characters, the last one "…" when cut.
fn cut(text: String) -> String {
    if text.chars().count() <= CAPTION_TEXT {
        return text;
    }
    let mut cut: String = text.chars().take(CAPTION_TEXT - 1).collect();
    cut.push('…');
    cut
}

/// At most this many offered records are kept per request (0.5.0's
/// `offer-records`); the rest are dropped.
pub const OFFERED_RECORDS: usize = 16;

/// A record a plugin offers the person to pick (0.5.0's `offer-records`),
/// when several match a caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferedRecord {
    /// The CRM's object type, e.g. "Contact".
    pub object_type: String,
    /// The CRM's id, which the pick sends back.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The record's page in the CRM.
    pub url: String,
    /// The account or company it belongs to, if any.
    pub account: Option<String>,
}

impl OfferedRecord {
    fn bounded(self) -> Self {
        Self {
            object_type: cut(self.object_type),
            id: cut(self.id),
            name: cut(self.name),
            url: self.url,
            account: self.account.map(cut),
        }
    }
}

/// One request to open a page.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// What the page is about, when the plugin said (0.3.0 on), bounded.
    pub caption: Option<Caption>,
    /// Records to pick from (0.5.0's `offer-records`), bounded; `url` is
    /// then the first one's page. Empty for a plain page.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offered: Vec<OfferedRecord>,
}

/// The record of open-browser requests.
pub struct BrowserRequests {
    kept: Mutex<VecDeque<BrowserRequest>>,
    next_id: AtomicU64,
    live: broadcast::Sender<BrowserRequest>,
    system_browser: bool,
    /// Replicas sharing the store hear of each request: an agent's page
    /// may be open on another replica than the one the call reached.
    fleet: Option<Store>,
}

/// The fleet topic of browser requests.
pub const BROWSER_TOPIC: &str = "browser";

impl BrowserRequests {
    /// A recorder; `system_browser` also opens administrator pages with `xdg-open`.
    pub fn new(system_browser: bool) -> Self {
        Self {
            kept: Mutex::new(VecDeque::new()),
            next_id: AtomicU64::new(1),
            live: broadcast::channel(64).0,
            system_browser,
            fleet: None,
        }
    }

    /// Tell the replicas sharing `store` of every request (nothing when
    /// it is not shared).
    pub fn shared_through(mut self, store: &Store) -> Self {
        self.fleet = store.is_shared().then(|| store.clone());
        self
    }

    /// Record a request (after checking the URL) and tell live listeners.
    pub fn record(
        &self,
        plugin_id: &str,
        url: &str,
        viewer: Viewer,
        caption: Option<Caption>,
    ) -> Result<u64, String> {
        self.record_with(plugin_id, url, viewer, caption, Vec::new())
    }

    /// Record records offered to pick from (opening the first is the
    /// default) and tell live listeners.
    pub fn record_offer(
        &self,
        plugin_id: &str,
        viewer: Viewer,
        caption: Caption,
        offered: Vec<OfferedRecord>,
    ) -> Result<u64, String> {
        let first = offered
            .first()
            .map(|r| r.url.clone())
            .ok_or("offer-records needs at least one record")?;
        self.record_with(plugin_id, &first, viewer, Some(caption), offered)
    }

    fn record_with(
        &self,
        plugin_id: &str,
        url: &str,
        viewer: Viewer,
        caption: Option<Caption>,
        offered: Vec<OfferedRecord>,
    ) -> Result<u64, String> {
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
            caption: caption.map(Caption::bounded),
            offered: offered
                .into_iter()
                .take(OFFERED_RECORDS)
                .map(OfferedRecord::bounded)
                .collect(),
        };
        if let Some(store) = &self.fleet {
            match serde_json::to_vec(&request) {
                Ok(message) => store.announce(BROWSER_TOPIC, &message),
                Err(e) => tracing::warn!("a browser request was not told to the replicas: {e}"),
            }
        }
        self.keep(&request);
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

    /// A request another replica recorded (a fleet message): kept and told
    /// to live listeners here, under an id of this replica's.
    pub fn record_heard(&self, message: &[u8]) -> Result<u64, String> {
        let mut request: BrowserRequest = serde_json::from_slice(message)
            .map_err(|e| format!("a browser request from a replica is unreadable: {e}"))?;
        request.id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.caption = request.caption.map(Caption::bounded);
        request.offered = request
            .offered
            .into_iter()
            .take(OFFERED_RECORDS)
            .map(OfferedRecord::bounded)
            .collect();
        self.keep(&request);
        let _ = self.live.send(request.clone());
        Ok(request.id)
    }

    fn keep(&self, request: &BrowserRequest) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(request.clone());
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
    /// Record a plugin's request to open `url` for `viewer`, with what the
    /// page is about; an extension must exist on this PBX.
    pub fn open_browser(
        &self,
        url: &str,
        viewer: Viewer,
        caption: Option<Caption>,
    ) -> Result<(), String> {
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
            .record(&self.grants.plugin_id, url, viewer, caption)
            .map(|_| ())
    }

    /// Record records a plugin offers `viewer` to pick from (0.5.0): every
    /// page checked as `open_browser` checks one, one request of the
    /// budget, an extension that exists.
    pub fn offer_records(
        &self,
        viewer: Viewer,
        caption: Caption,
        records: Vec<OfferedRecord>,
    ) -> Result<(), String> {
        if records.is_empty() {
            return Err("offer-records needs at least one record; use open for one page".into());
        }
        for record in records.iter().take(OFFERED_RECORDS) {
            check_open(&record.url, &self.grants.http)?;
        }
        if !self.grants.open_budget.take(Instant::now()) {
            return Err(format!(
                "open-browser is limited to {OPEN_BURST} pages at once and {OPEN_PER_SECOND} a second; these records were not offered"
            ));
        }
        if let Viewer::Extension(number) = &viewer
            && self.services.directory.get(number).ok().flatten().is_none()
        {
            return Err(format!("extension {number} does not exist on this PBX"));
        }
        self.services
            .browser
            .record_offer(&self.grants.plugin_id, viewer, caption, records)
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
            b.record("p", "javascript:alert(1)", Viewer::Administrator, None)
                .is_err()
        );
        let id = b.record("p", "https://example.org/x", Viewer::Administrator, None);
        assert_eq!(id, Ok(1));
        assert_eq!(b.since(0).len(), 1);
        assert!(b.since(1).is_empty());
    }

    fn caption(details: usize, text: &str) -> Caption {
        Caption {
            title: text.to_string(),
            details: (0..details)
                .map(|i| Detail {
                    label: format!("{i}{text}"),
                    value: text.to_string(),
                })
                .collect(),
            action: text.to_string(),
            call_id: Some("call-1".into()),
        }
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
    fn a_caption_is_kept_whole_within_the_bounds() {
        let b = BrowserRequests::new(false);
        let short = caption(CAPTION_DETAILS, "Open in the CRM");
        let viewer = Viewer::Extension("1001".into());
        b.record("p", "https://example.org/x", viewer, Some(short.clone()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.since(0)[0].caption.as_ref(), Some(&short));
    }

    #[test]
    fn a_caption_beyond_the_bounds_is_cut() {
        let b = BrowserRequests::new(false);
        let long = "x".repeat(10_000);
        b.record(
            "p",
            "https://example.org/x",
            Viewer::Administrator,
            Some(caption(1_000, &long)),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let kept = b.since(0)[0]
            .caption
            .clone()
            .unwrap_or_else(|| panic!("no caption"));
        assert_eq!(kept.details.len(), CAPTION_DETAILS);
        for text in [
            &kept.title,
            &kept.action,
            &kept.details[0].label,
            &kept.details[15].value,
        ] {
            assert_eq!(text.chars().count(), CAPTION_TEXT, "{text}");
            assert!(text.ends_with('…'));
        }
        // Cut by characters, never inside one.
        assert_eq!(cut("é".repeat(300)).chars().count(), CAPTION_TEXT);
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
