//! The org's daily API use, which Salesforce reports on every REST answer
//! (`Sforce-Limit-Info: api-usage=USED/MAX`). The client reads it from each
//! answer and keeps the latest figure under `api/usage`, written only when
//! it moved by a percentage point or more, crossed [`HIGH_PERCENT`] or the
//! limit changed, so a request costs no extra kv write. Above
//! [`HIGH_PERCENT`] what can wait does: user syncs are refused
//! (`rate-limited`) and unknown callers get no new record, while calls are
//! still looked up and logged; the status says so.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Salesforce;
use crate::bindings::pbx::crm::http_fetch::Header;
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::store::keys;
use crate::users::thousands;

/// Above this share of the daily limit, what can wait is deferred.
pub const HIGH_PERCENT: u64 = 90;
/// A stored figure at or above the threshold older than this is checked
/// again (one `limits` request) before a sync is refused on it, so a quiet
/// PBX does not refuse forever on yesterday's figure.
pub const RECHECK_MS: u64 = 10 * 60 * 1000;

/// The org's API use as Salesforce last reported it, under `api/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUsage {
    /// API requests made in the last 24 hours (by every client of the org).
    pub used: u64,
    /// The org's daily limit.
    pub limit: u64,
    /// When Salesforce reported it, ms since the Unix epoch.
    pub at_ms: u64,
}

/// `api-usage=USED/MAX` out of a `Sforce-Limit-Info` value, which may carry
/// other parts (`per-app-api-usage=…`, `api-bursts=…`), separated by `;` or
/// `,`.
pub fn parse_limit_info(value: &str) -> Option<(u64, u64)> {
    value.split([';', ',']).find_map(|part| {
        let (name, figures) = part.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("api-usage") {
            return None;
        }
        let (used, limit) = figures.split_once('/')?;
        Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
    })
}

/// The figures of the `Sforce-Limit-Info` header among `headers`, if any.
pub fn from_headers(headers: &[Header]) -> Option<(u64, u64)> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sforce-limit-info"))
        .find_map(|h| parse_limit_info(&h.value))
}

impl ApiUsage {
    /// Hundredths of a percent of the limit used (an org past its limit,
    /// which bursts allow, is above 100 %).
    fn basis_points(&self) -> u64 {
        if self.limit == 0 {
            return 0;
        }
        let bp = u128::from(self.used) * 10_000 / u128::from(self.limit);
        u64::try_from(bp).unwrap_or(u64::MAX)
    }

    /// Whole percent used, rounded down.
    pub fn percent(&self) -> u64 {
        self.basis_points() / 100
    }

    /// Whether the use is above [`HIGH_PERCENT`].
    pub fn high(&self) -> bool {
        self.limit > 0
            && u128::from(self.used) * 100 > u128::from(self.limit) * u128::from(HIGH_PERCENT)
    }

    /// "API requests today: 13,500 of 15,000 (90 %)".
    pub fn describe(&self) -> String {
        format!(
            "API requests today: {} of {} ({} %)",
            thousands(self.used),
            thousands(self.limit),
            self.percent()
        )
    }

    /// Why `what` waits while the use is high: the figures, that it resumes
    /// when the use falls, and that calls are still logged.
    pub fn deferring(&self, what: &str) -> String {
        format!(
            "Salesforce's API use is above {HIGH_PERCENT} % of the org's daily limit ({} of {}, {} %): {what} until it falls below {HIGH_PERCENT} % (Salesforce counts the last 24 hours); calls are still logged",
            thousands(self.used),
            thousands(self.limit),
            self.percent()
        )
    }

    /// The status's problem line while the use is high.
    pub fn problem(&self) -> Option<String> {
        self.high().then(|| {
            self.deferring(
                "user syncs and new records for unknown callers wait, and resume by themselves,",
            )
        })
    }

    /// Whether this figure is worth a kv write over `stored`: none stored,
    /// another limit, a move of a percentage point or more (either way: the
    /// 24 hours roll on), or crossing [`HIGH_PERCENT`].
    fn worth_storing(&self, stored: Option<&ApiUsage>) -> bool {
        let Some(s) = stored else {
            return true;
        };
        s.limit != self.limit
            || s.basis_points().abs_diff(self.basis_points()) >= 100
            || s.high() != self.high()
    }
}

impl<H: Host> Salesforce<'_, H> {
    /// Keep the figures of an answer's `Sforce-Limit-Info` when they are
    /// worth a write over `stored` (see [`ApiUsage`]).
    pub(super) fn note_usage(&self, headers: &[Header], stored: Option<&ApiUsage>) {
        let Some((used, limit)) = from_headers(headers) else {
            return;
        };
        let usage = ApiUsage {
            used,
            limit,
            at_ms: self.host.now_ms(),
        };
        if !usage.worth_storing(stored) {
            return;
        }
        if usage.high() && !stored.is_some_and(ApiUsage::high) {
            self.host.log(
                Level::Warn,
                &usage.deferring("user syncs and new records for unknown callers wait"),
            );
        } else if !usage.high() && stored.is_some_and(ApiUsage::high) {
            self.host.log(
                Level::Info,
                &format!(
                    "Salesforce's API use fell below {HIGH_PERCENT} % ({}): user syncs and new records for unknown callers resume",
                    usage.describe()
                ),
            );
        }
        if let Err(e) = self.store().put(keys::API_USAGE, &usage) {
            self.host
                .log(Level::Warn, &format!("could not keep the API use: {e}"));
        }
    }

    /// The org's API use as last reported, if ever.
    pub fn api_usage(&self) -> Option<ApiUsage> {
        self.store().get(keys::API_USAGE).ok().flatten()
    }

    /// Refuse `what` (e.g. "the user sync waits") with `rate-limited` while
    /// the API use is above [`HIGH_PERCENT`]. A high figure older than
    /// [`RECHECK_MS`] is asked again first (`GET limits`, whose answer
    /// carries the figures).
    pub fn defer_when_near_limit(&self, what: &str) -> Result<(), PluginError> {
        let Some(mut usage) = self.api_usage().filter(ApiUsage::high) else {
            return Ok(());
        };
        let now = self.host.now_ms();
        if now.saturating_sub(usage.at_ms) >= RECHECK_MS {
            let body: Value = self.get("limits/")?;
            let daily = &body["DailyApiRequests"];
            usage = match (daily["Max"].as_u64(), daily["Remaining"].as_u64()) {
                (Some(limit), Some(remaining)) => ApiUsage {
                    used: limit.saturating_sub(remaining),
                    limit,
                    at_ms: now,
                },
                // Past the limit `Remaining` is negative: the header's
                // figures, which the answer just stored, say it.
                _ => self.api_usage().unwrap_or(ApiUsage {
                    at_ms: now,
                    ..usage
                }),
            };
            if let Err(e) = self.store().put(keys::API_USAGE, &usage) {
                self.host
                    .log(Level::Warn, &format!("could not keep the API use: {e}"));
            }
            if !usage.high() {
                return Ok(());
            }
        }
        Err(PluginError::RateLimited(usage.deferring(what)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(used: u64, limit: u64) -> ApiUsage {
        ApiUsage {
            used,
            limit,
            at_ms: 0,
        }
    }

    #[test]
    fn the_header_is_read_in_every_documented_shape() {
        assert_eq!(parse_limit_info("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(
            parse_limit_info(
                "api-usage=25/5000; per-app-api-usage=17/250(appName=sample-connected-app)"
            ),
            Some((25, 5000))
        );
        assert_eq!(
            parse_limit_info("api-usage=110018/100000; api-bursts=1/750"),
            Some((110_018, 100_000))
        );
        assert_eq!(
            parse_limit_info(" API-Usage = 7 / 15000 "),
            Some((7, 15_000))
        );
        for bad in [
            "",
            "api-usage=",
            "api-usage=12",
            "api-usage=a/b",
            "per-app-api-usage=1/2",
        ] {
            assert_eq!(parse_limit_info(bad), None, "{bad:?}");
        }
        let headers = [
            crate::http::header("content-type", "application/json"),
            crate::http::header("Sforce-Limit-Info", "api-usage=13500/15000"),
        ];
        assert_eq!(from_headers(&headers), Some((13_500, 15_000)));
    }

    #[test]
    fn high_means_above_ninety_percent() {
        assert!(
            !usage(13_500, 15_000).high(),
            "exactly 90 % is not above it"
        );
        assert!(usage(13_501, 15_000).high());
        assert!(usage(110_018, 100_000).high(), "past the limit (bursts)");
        assert!(!usage(5, 0).high(), "no limit reported");
        assert!(usage(u64::MAX, 1).high());
        assert_eq!(
            usage(13_500, 15_000).describe(),
            "API requests today: 13,500 of 15,000 (90 %)"
        );
        let problem = usage(13_800, 15_000).problem().expect("high");
        assert!(problem.contains("13,800 of 15,000, 92 %"), "{problem}");
        assert!(problem.contains("calls are still logged"), "{problem}");
        assert_eq!(usage(100, 15_000).problem(), None);
    }

    #[test]
    fn only_a_meaningful_change_is_worth_a_write() {
        let stored = usage(7_500, 15_000);
        assert!(usage(1, 15_000).worth_storing(None));
        assert!(!usage(7_501, 15_000).worth_storing(Some(&stored)));
        assert!(!usage(7_649, 15_000).worth_storing(Some(&stored)));
        assert!(usage(7_650, 15_000).worth_storing(Some(&stored)), "1 %");
        assert!(
            usage(10, 15_000).worth_storing(Some(&stored)),
            "the day rolled on"
        );
        assert!(
            usage(7_500, 20_000).worth_storing(Some(&stored)),
            "new limit"
        );
        // Crossing 90 % is always written, however small the step.
        let below = usage(13_500, 15_000);
        assert!(usage(13_501, 15_000).worth_storing(Some(&below)));
        assert!(below.worth_storing(Some(&usage(13_501, 15_000))));
    }
}
