//! The plugin's kv keys, in one place so no two parts share one by accident.

use sha2::{Digest, Sha256};

/// The settings ([`crate::settings::Settings`]).
pub const SETTINGS: &str = "settings";
/// The connection: tokens and the account ([`crate::connection::Connection`]).
pub const CONNECTION: &str = "connection";
/// The tokens ([`crate::connection::Tokens`]), apart from the connection:
/// the SDK's refresh fences on their bytes.
pub const TOKENS: &str = "connection/tokens";
/// The lease of the one instance refreshing the access token.
pub const REFRESH_LEASE: &str = "connection/refresh-lease";
/// Pending authorizations by `state` (admin install and agent sign-in).
pub const AUTH_PREFIX: &str = "auth/";
/// The synced owners.
pub const USERS: &str = "users/list";
/// A user sync under way.
pub const USERS_SYNC: &str = "users/sync";
/// The associations.
pub const ASSOCIATIONS: &str = "associations";
/// A call's journal entry, by hashed call id.
pub const JOURNAL_PREFIX: &str = "journal/call/";
/// The SDK outbox's entries: what HubSpot is owed (creates, updates).
pub const OUTBOX_PREFIX: &str = "journal/outbox/";
/// The SDK outbox's done ledger.
pub const DONE_PREFIX: &str = "journal/done/";
/// The contact created for an unknown number, by E.164.
pub const UNKNOWN_PREFIX: &str = "unknown/contact/";
/// The lease on creating a contact for an unknown number.
pub const UNKNOWN_LEASE_PREFIX: &str = "unknown/lease/";
/// The record an agent chose for a call, by hashed call id.
pub const CHOSEN_PREFIX: &str = "calls/chosen/";
/// Until when HubSpot asked us to wait (a 429's Retry-After).
pub const RATE_LIMITED_UNTIL: &str = "api/rate-limited-until";

/// A fixed-length key part for outside text (call ids may hold any
/// character and be long; kv keys are bounded).
pub fn hashed(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashed_keys_are_stable_and_distinct() {
        assert_eq!(super::hashed("a"), super::hashed("a"));
        assert_ne!(super::hashed("a"), super::hashed("b"));
        assert_eq!(super::hashed("x/../y").len(), 32);
    }
}
