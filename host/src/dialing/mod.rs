//! Click-to-call: the calls the host originated after a plugin authorized
//! them (the extension's user, the number in E.164). A real PBX would dial;
//! the reference host keeps the last ones for the portal and the tests.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

/// How many originations are kept for `GET /api/calls/originations`.
const KEPT: usize = 256;

/// A click-to-call request the host accepted.
#[derive(Debug, Clone, Serialize)]
pub struct Origination {
    /// Increasing id.
    pub id: u64,
    /// The extension that rings first.
    pub extension: String,
    /// The number dialed, in E.164.
    pub number: String,
    /// The number as requested.
    pub requested: String,
    /// The plugin that authorized it.
    pub plugin: String,
    /// When, ms since the epoch.
    pub at_ms: u64,
}

/// Originations requested through click-to-call.
#[derive(Default)]
pub struct Originations {
    kept: Mutex<VecDeque<Origination>>,
    next: AtomicU64,
}

impl Originations {
    /// Record an origination; it gets the next id.
    pub fn record(&self, mut o: Origination) -> Origination {
        o.id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back(o.clone());
        o
    }

    /// Every kept origination, oldest first.
    pub fn list(&self) -> Vec<Origination> {
        self.kept
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}
