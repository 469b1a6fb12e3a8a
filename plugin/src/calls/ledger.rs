//! Ledgers of call ids: keys made from call ids, and the 64 buckets
//! (`calls/done/<xx>`, `calls/popped/<xx>`) that remember which calls were
//! logged and which pop-ups were shown without one key per call (the host's
//! quota counts keys), each updated by compare-and-swap.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{CAS_ROUNDS, Calls};
use crate::error::PluginError;
use crate::host::Host;
use crate::record::{self, Change, Unreadable, UpdateError};
use crate::store::{Store, keys};

/// Buckets of the done and pop-up ledgers.
const BUCKETS: u8 = 64;

/// A bucket of ids with the time each was recorded, under
/// `calls/done/<xx>` and `calls/popped/<xx>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// id -> when, ms since the Unix epoch.
    #[serde(default)]
    pub entries: BTreeMap<String, u64>,
}

/// The bucket key of `id` under `prefix`.
pub fn bucket_key(prefix: &str, id: &str) -> String {
    let hash = Sha256::digest(id.as_bytes());
    format!("{prefix}{:02x}", hash[0] % BUCKETS)
}

/// `id` made safe for a key: `%`, `/` and control characters escaped.
pub fn key_part(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for c in id.chars() {
        if c == '%' || c == '/' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The outbox key of `call_id`.
pub fn outbox_key(call_id: &str) -> String {
    format!("{}{}", keys::CALLS_OUTBOX_PREFIX, key_part(call_id))
}

impl<H: Host> Calls<'_, H> {
    /// Add `id` to its ledger bucket; false when it was there already.
    pub(super) fn record_once(
        &self,
        prefix: &str,
        id: &str,
        keep_ms: u64,
    ) -> Result<bool, PluginError> {
        let key = bucket_key(prefix, id);
        // An unreadable bucket is replaced: it only remembers duplicates.
        record::update(
            &self.store(),
            &key,
            Unreadable::Replace,
            CAS_ROUNDS,
            |ledger: Option<Ledger>| {
                let mut ledger = ledger.unwrap_or_default();
                if ledger.entries.contains_key(id) {
                    return Ok(Change::Keep(false));
                }
                let now = self.host.now_ms();
                prune_ledger(&mut ledger, now, keep_ms);
                ledger.entries.insert(id.to_string(), now);
                Ok(Change::Write(ledger, true))
            },
        )
        .map_err(|e| match e {
            UpdateError::Exhausted { .. } => busy(),
            UpdateError::Failed(e) => e,
        })
    }
}

pub(super) fn read_ledger<H: Host>(
    store: &Store<'_, H>,
    key: &str,
) -> Result<(Ledger, Option<Vec<u8>>), PluginError> {
    match store.get_raw(key)? {
        None => Ok((Ledger::default(), None)),
        // An unreadable bucket is replaced (guarded by its raw bytes): it
        // only remembers duplicates to ignore.
        Some(raw) => Ok((serde_json::from_slice(&raw).unwrap_or_default(), Some(raw))),
    }
}

pub(super) fn prune_ledger(ledger: &mut Ledger, now: u64, keep_ms: u64) {
    ledger
        .entries
        .retain(|_, at| now.saturating_sub(*at) < keep_ms);
}

pub(super) fn busy() -> PluginError {
    PluginError::Conflict(
        "the call journal is busy with concurrent updates; the event will be retried".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_safe() {
        assert_eq!(key_part("a/b%c"), "a%2Fb%25c");
        let k = bucket_key("calls/done/", "x");
        assert!(k.starts_with("calls/done/") && k.len() == "calls/done/".len() + 2);
    }
}
