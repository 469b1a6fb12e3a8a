//! Which replica redelivers the retry queue: the one holding the journal's
//! lease, a record in the store (`host/leases`, key `journal`) with its
//! holder, until when, and a fence, the count of hand-overs. The holder
//! renews it at every tick; when a replica dies, the lease runs out and
//! the next replica to tick takes it, with the fence one higher.
//!
//! Taking and renewing are compare-and-swap batches on the record, so two
//! replicas never both hold it. What a stale holder may still be doing
//! when it lost the lease (a slow redelivery) is harmless: the plugin
//! takes an event once per call and phase, and its own outbox is fenced
//! the same way (the SDK's leases).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::{KvError, Namespace, Precondition, Quota, Store, Write};

/// The store namespace of the host's leases.
pub const LEASES_NAMESPACE: &str = "host/leases";

/// One lease, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    holder: String,
    until_ms: u64,
    fence: u64,
}

/// A named lease in the shared store, for this process.
pub struct Lease {
    leases: Namespace,
    name: String,
    holder: String,
    hold_for: Duration,
}

impl Lease {
    /// The lease `name`, held for `hold_for` after each renewal.
    pub fn new(store: &Store, name: &str, hold_for: Duration) -> Self {
        Self {
            leases: store.namespace(LEASES_NAMESPACE, Quota::UNLIMITED),
            name: name.to_string(),
            holder: hex::encode(rand::random::<[u8; 8]>()),
            hold_for,
        }
    }

    /// Take or renew the lease at `now_ms`: its fence when this process
    /// holds it now, `None` while another holds it.
    pub fn hold(&self, now_ms: u64) -> Result<Option<u64>, KvError> {
        let raw = self.leases.get(&self.name)?;
        let current: Option<Record> = raw.as_deref().and_then(|r| serde_json::from_slice(r).ok());
        let fence = match &current {
            Some(r) if r.holder == self.holder => r.fence,
            Some(r) if r.until_ms > now_ms => return Ok(None),
            Some(r) => r.fence + 1,
            None => 1,
        };
        let record = Record {
            holder: self.holder.clone(),
            until_ms: now_ms + self.hold_for.as_millis() as u64,
            fence,
        };
        let value = serde_json::to_vec(&record).map_err(|e| KvError::Unavailable(e.to_string()))?;
        let taken = self.leases.batch(
            &[Precondition {
                key: self.name.clone(),
                expected: raw,
            }],
            &[Write::Set {
                key: self.name.clone(),
                value,
            }],
        );
        match taken {
            Ok(()) => {
                if current.as_ref().is_none_or(|r| r.holder != self.holder) {
                    tracing::info!(lease = %self.name, fence, "lease taken");
                }
                Ok(Some(fence))
            }
            // Another replica renewed or took it meanwhile.
            Err(KvError::Conflict(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_a_lapsed_lease_passes_on_with_a_higher_fence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let a = Lease::new(&store, "journal", Duration::from_secs(10));
        let b = Lease::new(&store, "journal", Duration::from_secs(10));
        assert_eq!(a.hold(1_000).expect("hold"), Some(1));
        assert_eq!(b.hold(2_000).expect("hold"), None, "A holds it");
        assert_eq!(
            a.hold(5_000).expect("renew"),
            Some(1),
            "renewed, same fence"
        );
        assert_eq!(b.hold(14_999).expect("hold"), None, "renewed until 15 000");
        assert_eq!(b.hold(15_000).expect("take"), Some(2), "lapsed: B, fence 2");
        assert_eq!(a.hold(15_001).expect("hold"), None, "A lost it");
    }
}
