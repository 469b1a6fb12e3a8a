//! Ledgers of call ids: keys made from call ids, and the 64 buckets
//! (`calls/done/<xx>`, `calls/popped/<xx>`) that remember which calls were
//! logged and which pop-ups were shown without one key per call (the host's
//! quota counts keys), each updated by compare-and-swap. The buckets, the
//! key escaping and the update are the SDK's outbox ledger
//! (`pbx_crm_sdk::outbox`); the key layout is the plugin's.

use super::Calls;
use crate::error::PluginError;
use crate::host::Host;
use crate::record::UpdateError;
use crate::store::keys;

pub use pbx_crm_sdk::outbox::{Ledger, bucket_key, key_part, read_ledger};

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
        pbx_crm_sdk::outbox::record_once(&self.store(), || self.host.now_ms(), prefix, id, keep_ms)
            .map_err(|e| match e {
                UpdateError::Exhausted { .. } => busy(),
                UpdateError::Failed(e) => e,
            })
    }
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
