//! The back-off after Salesforce's API limit or an outage: while it lasts,
//! REST calls fail fast without sending anything (5 s, doubling up to 5 min).
//! Recorded by the client that met the failure, cleared by the first call
//! that succeeds.

use serde::{Deserialize, Serialize};

use super::{ApiError, Salesforce};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::http;
use crate::store::keys;
use crate::time::clock;

/// The first back-off after a limit or server error.
const BACKOFF_FIRST_MS: u64 = 5_000;
/// The longest back-off.
const BACKOFF_MAX_MS: u64 = 5 * 60 * 1000;

/// The back-off after rate limits and server errors, stored under
/// `api/backoff` until a call succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Consecutive failures.
    pub failures: u32,
    /// No call is sent before this time, ms since the Unix epoch.
    pub until_ms: u64,
    /// Whether the cause is the API limit (else an outage).
    pub rate_limited: bool,
    /// What happened, for the status.
    pub cause: String,
}

impl Backoff {
    /// The problem line for the status, with when the PBX retries.
    pub fn problem(&self, now_ms: u64) -> String {
        if now_ms < self.until_ms {
            format!(
                "{}; the PBX retries after {}",
                self.cause,
                clock(self.until_ms)
            )
        } else {
            format!("{}; the PBX retries with the next request", self.cause)
        }
    }

    /// The error a call gets while the back-off lasts.
    pub fn error(&self, now_ms: u64) -> PluginError {
        if self.rate_limited {
            PluginError::RateLimited(self.problem(now_ms))
        } else {
            PluginError::CrmUnavailable(self.problem(now_ms))
        }
    }

    /// The wait after `failures` consecutive failures.
    fn delay_ms(failures: u32) -> u64 {
        pbx_crm_sdk::outbox::doubling_ms(failures, BACKOFF_FIRST_MS, BACKOFF_MAX_MS)
    }
}

impl<H: Host> Salesforce<'_, H> {
    /// Record a limit or server error and return the error for the caller.
    pub(super) fn record_failure(
        &self,
        rate_limited: bool,
        status: u16,
        body: &[u8],
    ) -> PluginError {
        let store = self.store();
        let now = self.host.now_ms();
        let failures = store
            .get::<Backoff>(keys::BACKOFF)
            .ok()
            .flatten()
            .map_or(1, |b| b.failures.saturating_add(1));
        let cause = if rate_limited {
            let api = ApiError::parse(status, body);
            let said = api
                .errors
                .iter()
                .map(|e| http::sanitize(&e.message))
                .find(|m| !m.is_empty())
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            format!("Salesforce's API limit was reached{said}")
        } else {
            format!("Salesforce is unavailable (HTTP {status})")
        };
        let backoff = Backoff {
            failures,
            until_ms: now + Backoff::delay_ms(failures),
            rate_limited,
            cause,
        };
        // A lost update between two failing instances only shortens one
        // back-off step, so no compare-and-swap here.
        if let Err(e) = store.put(keys::BACKOFF, &backoff) {
            self.host
                .log(Level::Error, &format!("could not record the back-off: {e}"));
        }
        let error = backoff.error(now);
        self.host.log(Level::Warn, &error.to_string());
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(Backoff::delay_ms).collect();
        assert_eq!(
            delays,
            [
                5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000
            ]
        );
        assert_eq!(Backoff::delay_ms(u32::MAX), 300_000);
    }
}
