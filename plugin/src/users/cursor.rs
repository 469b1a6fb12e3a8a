//! A sync's identity and position between its steps: the sync id (its start
//! time and random hex, so abandoned syncs age without reading anything) and
//! the cursor the host carries back, checked as text from outside.

use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{MAX_CHUNKS, MAX_PAGES_PER_STEP};
use crate::error::PluginError;
use crate::host::Host;
use crate::settings::UserTypes;

/// Longest cursor accepted (a real one is a few hundred characters).
const MAX_CURSOR_LEN: usize = 4_096;

/// The sync's position, carried by the host between steps as opaque text:
/// base64url (no padding) of this as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Cursor {
    /// Format version.
    pub(super) v: u8,
    /// The sync's id.
    pub(super) sync: String,
    /// Salesforce's `nextRecordsUrl` to continue with.
    pub(super) next: String,
    /// Chunks written so far.
    pub(super) pages: u32,
    /// Users written so far.
    pub(super) fetched: u32,
    /// Users Salesforce said there are.
    pub(super) total: u32,
    /// Which users this sync lists (its query's filter).
    #[serde(default)]
    pub(super) types: UserTypes,
    /// The newest `SystemModstamp` read so far, ms since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) high: Option<u64>,
}

impl Cursor {
    pub(super) fn encode(&self) -> Result<String, PluginError> {
        Ok(URL_SAFE_NO_PAD.encode(crate::store::encode(self)?))
    }

    /// Parse and check a cursor from outside; any fault means "start again".
    pub(super) fn decode(text: &str) -> Result<Self, PluginError> {
        let refused = || {
            PluginError::InvalidInput(
                "the user sync's cursor is not one this plugin issued: start the sync again".into(),
            )
        };
        if text.len() > MAX_CURSOR_LEN {
            return Err(refused());
        }
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| refused())?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| refused())?;
        let plausible = cursor.v == 1
            && sync_started_ms(&cursor.sync).is_some()
            && cursor.next.starts_with("/services/data/")
            && cursor.pages >= 1
            && cursor.pages < MAX_CHUNKS
            && cursor.fetched
                <= cursor
                    .pages
                    .saturating_mul(MAX_PAGES_PER_STEP as u32 * 2_000);
        if plausible {
            Ok(cursor)
        } else {
            Err(refused())
        }
    }
}

/// A new sync id: the start time (so abandoned ones can be aged without
/// reading anything) and random hex (so concurrent syncs differ).
pub(super) fn new_sync_id<H: Host>(host: &H) -> String {
    let mut id = format!("{:013}-", host.now_ms());
    for b in host.random_bytes(6) {
        let _ = write!(id, "{b:02x}");
    }
    id
}

/// When sync `id` started, if `id` has the form `new_sync_id` makes.
pub(super) fn sync_started_ms(id: &str) -> Option<u64> {
    let (ms, rand) = id.split_once('-')?;
    let valid = ms.len() == 13
        && ms.bytes().all(|b| b.is_ascii_digit())
        && rand.len() == 12
        && rand.bytes().all(|b| b.is_ascii_hexdigit());
    if valid { ms.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sync_ids_carry_their_start() {
        assert_eq!(
            sync_started_ms("1700000000000-00112233aabb"),
            Some(1_700_000_000_000)
        );
        assert_eq!(sync_started_ms("1700000000000-00112233aab"), None);
        assert_eq!(sync_started_ms("17000000000-00112233aabb"), None);
        assert_eq!(sync_started_ms("../x"), None);
    }

    #[test]
    fn cursors_round_trip_and_refuse_tampering() {
        let c = Cursor {
            v: 1,
            sync: "1700000000000-00112233aabb".into(),
            next: "/services/data/v67.0/query/01gX-2000".into(),
            pages: 1,
            fetched: 2000,
            total: 5000,
            types: UserTypes::All,
            high: Some(1_700_000_000_000),
        };
        let text = c.encode().map_err(|e| e.to_string());
        let back = text
            .as_deref()
            .map(|t| Cursor::decode(t).map_err(|e| e.to_string()));
        assert_eq!(back, Ok(Ok(c.clone())));
        for bad in [
            "",
            "not base64 !",
            "e30",
            &"A".repeat(5000),
            &URL_SAFE_NO_PAD.encode(
                br#"{"v":1,"sync":"x","next":"/services/data/","pages":1,"fetched":0,"total":0}"#,
            ),
            &Cursor {
                next: "https://evil.example/".into(),
                ..c.clone()
            }
            .encode()
            .unwrap_or_default(),
            &Cursor { pages: 0, ..c }.encode().unwrap_or_default(),
        ] {
            let e = Cursor::decode(bad);
            assert!(
                matches!(&e, Err(PluginError::InvalidInput(m)) if m.contains("start the sync again")),
                "{bad}: {e:?}"
            );
        }
    }
}
