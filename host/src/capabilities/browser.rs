//! `open-browser`: the host records each request so the portal (or an
//! agent's page) can show it; the system browser is used only when the
//! operator asked for it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

use super::Capabilities;

/// How many requests are kept for the portal.
const KEPT: usize = 256;

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

impl Capabilities {
    /// Record a plugin's request to open `url` for `viewer`; an extension
    /// must exist on this PBX.
    pub fn open_browser(&self, url: &str, viewer: Viewer) -> Result<(), String> {
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
}
