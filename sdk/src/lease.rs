//! Leases in the kv-store: while one instance delivers a call log, creates a
//! caller's record or refreshes the session, the others see its live lease
//! and wait or move on. One type holds what every lease shares (the holder
//! and the expiry check); each lease keeps its own stored field names.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::host::Host;
use crate::pkce;

/// How long a lease lives: longer than a plugin call's deadline (10 s), so a
/// live holder never loses it; short enough that a crashed holder's lease
/// stops blocking others soon.
pub const LEASE_MS: u64 = 15_000;

/// When a lease lapses. Leases stored before this type existed name that
/// field differently, so each end says where it keeps it.
pub trait Expiry {
    /// When the lease lapses, ms since the Unix epoch.
    fn until_ms(&self) -> u64;
}

/// A lease: a random nonce naming its holder, then its end. The end is
/// flattened, so the stored JSON is `holder` followed by the end's fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease<E = Until> {
    /// A random nonce naming the holder.
    pub holder: String,
    /// When it lapses, and whatever else the lease records.
    #[serde(flatten)]
    pub end: E,
}

/// The plain end of a lease, stored as `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Until {
    /// When it lapses, ms since the Unix epoch.
    pub until_ms: u64,
}

impl Until {
    /// The end of a lease taken at `now`.
    pub fn lease_from(now: u64) -> Self {
        Self {
            until_ms: now + LEASE_MS,
        }
    }
}

impl Expiry for Until {
    fn until_ms(&self) -> u64 {
        self.until_ms
    }
}

impl<E: Expiry> Lease<E> {
    /// A lease for this instance, with a fresh holder nonce, ending at `end`.
    pub fn take<H: Host>(host: &H, end: E) -> Self {
        Self {
            holder: pkce::random_token(host, 16),
            end,
        }
    }

    /// Whether it still holds at `now`.
    pub fn live(&self, now: u64) -> bool {
        self.end.until_ms() > now
    }
}

impl<E: Expiry + DeserializeOwned> Lease<E> {
    /// Whether the stored lease `raw` holds at `now`; an absent or unreadable
    /// one does not, so a damaged lease cannot block the work forever.
    pub fn live_raw(raw: Option<&[u8]>, now: u64) -> bool {
        raw.and_then(|r| serde_json::from_slice::<Self>(r).ok())
            .is_some_and(|lease| lease.live(now))
    }
}
