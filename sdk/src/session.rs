//! Single-flight token refresh: when many instances find the access token
//! dead (a 401) or about to lapse (its stored expiry), exactly one
//! refreshes it under a lease in the kv-store and stores the new tokens in
//! one batch; the others wait for them and use them.
//!
//! The CRM says how its tokens are stored and refreshed by implementing
//! [`Session`]; [`Sessions`] runs the protocol:
//! 1. Re-read the tokens. If they are not the session `used`, someone
//!    already refreshed: use them.
//! 2. Otherwise, if no live lease exists, take one with a batch whose
//!    preconditions are "the lease is still what I read (absent or the
//!    exact lapsed value)" and "the tokens are still what I read". The
//!    second one fences: an instance that read the old tokens just before
//!    another committed new ones must not refresh again.
//! 3. The holder refreshes and, in one batch guarded by its lease and the
//!    tokens it read, writes the new tokens and deletes the lease. A
//!    refused grant deletes the tokens instead (re-authorization needed).
//! 4. A live lease means someone is refreshing: sleep a little and look
//!    again, until the tokens move, the lease lapses (then try to take
//!    it), or the wait runs out.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::lease::{Expiry, LEASE_MS, Lease};
use crate::store::{Batch, Repair, Store, encode};

/// How often a waiting instance looks whether the refresh is done.
pub const POLL_MS: u64 = 25;
/// How long an instance waits for another's refresh before giving up,
/// leaving room in the call's 10 s deadline for the retried request.
pub const WAIT_MS: u64 = 8_000;
/// Tokens with a stored expiry are refreshed this long before it, so a
/// request sent now does not meet a token lapsing on its way.
pub const EXPIRY_MARGIN_MS: u64 = 60_000;

/// The refresh lease, stored as `{"holder", "expires_at_ms",
/// "generation"}` while one instance refreshes.
pub type RefreshLease = Lease<RefreshEnd>;

/// The end of a refresh lease and the token generation it refreshes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshEnd {
    /// When the lease lapses, ms since the Unix epoch.
    pub expires_at_ms: u64,
    /// The token generation being refreshed.
    pub generation: u64,
}

impl Expiry for RefreshEnd {
    fn until_ms(&self) -> u64 {
        self.expires_at_ms
    }
}

/// Why a refresh brought no new tokens.
#[derive(Debug)]
pub enum RefreshFailure {
    /// The CRM refused the grant (`invalid_grant`, or there is no refresh
    /// token): the tokens are deleted and re-authorization is needed. The
    /// text says why and what to do; it becomes the error's message.
    Revoked(String),
    /// Anything else (the CRM unreachable, settings missing): the tokens
    /// stay, the lease is released, the error goes to the caller.
    Failed(PluginError),
}

/// How one CRM's tokens are stored and refreshed.
pub trait Session {
    /// The stored tokens (JSON under [`Session::TOKENS_KEY`]).
    type Tokens: Serialize + DeserializeOwned;
    /// What replaces a damaged value of the plugin's keys.
    type Repair: Repair;
    /// The CRM's name, for messages ("HubSpot session refreshed").
    const CRM: &'static str;
    /// The key of the tokens.
    const TOKENS_KEY: &'static str;
    /// The key of the refresh lease.
    const LEASE_KEY: &'static str;

    /// The tokens' refresh generation: bumped by every refresh, so an
    /// instance can tell that someone else refreshed.
    fn generation(tokens: &Self::Tokens) -> u64;
    /// Whether two tokens are the same session (the same generation and
    /// access token: a re-authorization restarts generations).
    fn same_session(a: &Self::Tokens, b: &Self::Tokens) -> bool;
    /// When the access token lapses, if stored (ms since the Unix epoch);
    /// `None`: only a rejection shows it is dead.
    fn expires_at_ms(_tokens: &Self::Tokens) -> Option<u64> {
        None
    }
    /// Refresh `current`: the next tokens, with generation
    /// `generation(current) + 1`.
    fn refresh(&self, current: &Self::Tokens) -> Result<Self::Tokens, RefreshFailure>;
    /// An error to fail with instead of refreshing now (a back-off after
    /// the CRM's limits); checked before the lease is taken.
    fn hold_off(&self, _now_ms: u64) -> Option<PluginError> {
        None
    }
    /// Add to the batch that deletes revoked tokens what the plugin
    /// records with them (the connection's state and `reason`).
    fn record_revoked(&self, batch: Batch, _reason: &str) -> Result<Batch, PluginError> {
        Ok(batch)
    }
    /// The error when there are no tokens (never connected, disconnected,
    /// or revoked meanwhile).
    fn not_connected(&self) -> PluginError;
}

/// Single-flight refresh of `S`'s tokens on `host`.
pub struct Sessions<'h, H: Host, S: Session> {
    host: &'h H,
    session: S,
}

impl<'h, H: Host, S: Session> Sessions<'h, H, S> {
    /// The protocol over `host` for the CRM `session`.
    pub fn new(host: &'h H, session: S) -> Self {
        Self { host, session }
    }

    fn store(&self) -> Store<'h, H, S::Repair> {
        Store::new(self.host)
    }

    /// The stored tokens, refreshed first when their stored expiry is
    /// less than [`EXPIRY_MARGIN_MS`] away.
    pub fn current(&self) -> Result<S::Tokens, PluginError> {
        let Some(tokens) = self.store().get::<S::Tokens>(S::TOKENS_KEY)? else {
            return Err(self.session.not_connected());
        };
        match S::expires_at_ms(&tokens) {
            Some(at) if at <= self.host.now_ms().saturating_add(EXPIRY_MARGIN_MS) => {
                self.after_expiry(&tokens)
            }
            _ => Ok(tokens),
        }
    }

    /// A session newer than `used`, which the CRM refused or which is
    /// about to lapse: refreshed by this instance or by another one.
    pub fn after_expiry(&self, used: &S::Tokens) -> Result<S::Tokens, PluginError> {
        let store = self.store();
        let deadline = self.host.now_ms() + WAIT_MS;
        // Bounded by count as well as by the clock, in case the clock stalls.
        let max_rounds = (WAIT_MS / POLL_MS) * 2;
        for _ in 0..max_rounds {
            let Some((current, current_raw)) = store.get_with_raw::<S::Tokens>(S::TOKENS_KEY)?
            else {
                // Deleted meanwhile: a refresh was refused (re-authorization
                // needed) or the administrator disconnected.
                return Err(self.session.not_connected());
            };
            if !S::same_session(&current, used) {
                return Ok(current);
            }
            let lease_raw = store.get_raw(S::LEASE_KEY)?;
            let now = self.host.now_ms();
            if !RefreshLease::live_raw(lease_raw.as_deref(), now) {
                if let Some(error) = self.session.hold_off(now) {
                    return Err(error);
                }
                let end = RefreshEnd {
                    expires_at_ms: now + LEASE_MS,
                    generation: S::generation(&current),
                };
                let lease = RefreshLease::take(self.host, end);
                let lease_bytes = encode(&lease)?;
                let take = Batch::new()
                    .expect_raw(S::LEASE_KEY, lease_raw)
                    .expect_raw(S::TOKENS_KEY, Some(current_raw.clone()))
                    .set(S::LEASE_KEY, &lease)?;
                match store.commit(&take) {
                    Ok(()) => return self.refresh(&current, current_raw, lease_bytes),
                    // Someone took the lease or changed the tokens between
                    // our reads and our batch: look again.
                    Err(PluginError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            if now >= deadline {
                break;
            }
            self.host.sleep_ms(POLL_MS);
        }
        Err(PluginError::CrmUnavailable(format!(
            "another request is still refreshing the {} session; try again in a few seconds",
            S::CRM
        )))
    }

    /// Refresh `current` while holding the lease `lease_bytes`.
    fn refresh(
        &self,
        current: &S::Tokens,
        current_raw: Vec<u8>,
        lease_bytes: Vec<u8>,
    ) -> Result<S::Tokens, PluginError> {
        let store = self.store();
        let next = match self.session.refresh(current) {
            Ok(next) => next,
            Err(RefreshFailure::Revoked(reason)) => {
                return Err(self.revoked(&current_raw, &lease_bytes, reason));
            }
            Err(RefreshFailure::Failed(error)) => {
                // Released so the next request may try at once; a lease
                // that changed meanwhile is not ours to delete.
                let _ = store.commit(
                    &Batch::new()
                        .expect_raw(S::LEASE_KEY, Some(lease_bytes))
                        .delete(S::LEASE_KEY),
                );
                return Err(error);
            }
        };
        let commit = Batch::new()
            .expect_raw(S::LEASE_KEY, Some(lease_bytes))
            .expect_raw(S::TOKENS_KEY, Some(current_raw))
            .set(S::TOKENS_KEY, &next)?
            .delete(S::LEASE_KEY);
        match store.commit(&commit) {
            Ok(()) => {
                self.host.log(
                    Level::Info,
                    &format!(
                        "{} session refreshed (generation {})",
                        S::CRM,
                        S::generation(&next)
                    ),
                );
                Ok(next)
            }
            Err(PluginError::Conflict(_)) => Err(PluginError::NotConnected(format!(
                "the {} connection changed while its session was refreshed (disconnected or authorized again); try again",
                S::CRM
            ))),
            Err(e) => Err(e),
        }
    }

    /// The CRM refused the grant: delete the dead tokens and the lease,
    /// record why, keep everything else.
    fn revoked(&self, current_raw: &[u8], lease_bytes: &[u8], reason: String) -> PluginError {
        let batch = Batch::new()
            .expect_raw(S::LEASE_KEY, Some(lease_bytes.to_vec()))
            .expect_raw(S::TOKENS_KEY, Some(current_raw.to_vec()))
            .delete(S::TOKENS_KEY)
            .delete(S::LEASE_KEY);
        match self
            .session
            .record_revoked(batch, &reason)
            .map(|b| self.store().commit(&b))
        {
            // A conflict: someone else changed the tokens (a new
            // authorization), which is theirs to keep.
            Ok(Ok(())) | Ok(Err(PluginError::Conflict(_))) => {}
            Ok(Err(e)) | Err(e) => self.host.log(
                Level::Error,
                &format!("could not record that re-authorization is needed: {e}"),
            ),
        }
        self.host.log(Level::Warn, &reason);
        PluginError::NotConnected(reason)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::store::SaveAgain;
    use crate::testing::FakeHost;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Toks {
        access: String,
        generation: u64,
        #[serde(default)]
        expires_at_ms: Option<u64>,
    }

    /// A CRM whose refresh answers `outcome`, counting refreshes.
    struct Crm {
        refreshes: Cell<u32>,
        outcome: fn(&Toks) -> Result<Toks, RefreshFailure>,
    }

    impl Session for &Crm {
        type Tokens = Toks;
        type Repair = SaveAgain;
        const CRM: &'static str = "Acme";
        const TOKENS_KEY: &'static str = "tokens";
        const LEASE_KEY: &'static str = "lease";

        fn generation(tokens: &Toks) -> u64 {
            tokens.generation
        }
        fn same_session(a: &Toks, b: &Toks) -> bool {
            a.generation == b.generation && a.access == b.access
        }
        fn expires_at_ms(tokens: &Toks) -> Option<u64> {
            tokens.expires_at_ms
        }
        fn refresh(&self, current: &Toks) -> Result<Toks, RefreshFailure> {
            self.refreshes.set(self.refreshes.get() + 1);
            (self.outcome)(current)
        }
        fn record_revoked(&self, batch: Batch, reason: &str) -> Result<Batch, PluginError> {
            batch.set("why", &reason)
        }
        fn not_connected(&self) -> PluginError {
            PluginError::NotConnected("connect Acme".into())
        }
    }

    fn renewed(t: &Toks) -> Result<Toks, RefreshFailure> {
        Ok(Toks {
            access: format!("{}+", t.access),
            generation: t.generation + 1,
            expires_at_ms: t.expires_at_ms.map(|at| at + 1_800_000),
        })
    }

    fn crm(outcome: fn(&Toks) -> Result<Toks, RefreshFailure>) -> Crm {
        Crm {
            refreshes: Cell::new(0),
            outcome,
        }
    }

    fn stored(host: &FakeHost, expires_at_ms: Option<u64>) -> Toks {
        let t = Toks {
            access: "a".into(),
            generation: 1,
            expires_at_ms,
        };
        host.kv_put("tokens", &serde_json::to_string(&t).unwrap_or_default());
        t
    }

    #[test]
    fn one_refresh_stores_the_next_tokens_and_frees_the_lease() {
        let host = FakeHost::default();
        let used = stored(&host, None);
        let acme = crm(renewed);
        let next = Sessions::new(&host, &acme).after_expiry(&used);
        assert_eq!(
            next.ok().map(|t| (t.access, t.generation)),
            Some(("a+".into(), 2))
        );
        assert_eq!(acme.refreshes.get(), 1);
        assert!(host.kv_text("lease").is_none());
        assert_eq!(
            host.kv_json("tokens").map(|t| t["generation"].clone()),
            Some(2.into())
        );
        // The take, then tokens and lease in one batch.
        assert_eq!(
            host.batches(),
            vec![
                vec!["lease".to_string()],
                vec!["tokens".into(), "lease".into()]
            ]
        );
        // Someone holding the old tokens now just gets the new ones.
        let again = Sessions::new(&host, &acme).after_expiry(&used);
        assert_eq!(again.ok().map(|t| t.generation), Some(2));
        assert_eq!(acme.refreshes.get(), 1);
    }

    #[test]
    fn tokens_changed_before_the_lease_is_taken_are_not_refreshed_again() {
        let host = FakeHost::default();
        let used = stored(&host, None);
        // Another instance commits generation 2 between our reads and our
        // take: the take's fence on the tokens fails, and we use theirs.
        host.before_next_batch(|kv| {
            kv.insert(
                "tokens".into(),
                br#"{"access":"b","generation":2,"expires_at_ms":null}"#.to_vec(),
            );
        });
        let acme = crm(renewed);
        let next = Sessions::new(&host, &acme).after_expiry(&used);
        assert_eq!(next.ok().map(|t| t.access), Some("b".into()));
        assert_eq!(acme.refreshes.get(), 0);
    }

    #[test]
    fn a_live_lease_is_waited_for_and_a_lapsed_one_taken_over() {
        let host = FakeHost::default();
        host.set_now_ms(1_000_000);
        let used = stored(&host, None);
        host.kv_put(
            "lease",
            r#"{"holder":"crashed","expires_at_ms":1002000,"generation":1}"#,
        );
        let acme = crm(renewed);
        let next = Sessions::new(&host, &acme).after_expiry(&used);
        assert_eq!(next.ok().map(|t| t.generation), Some(2));
        assert!(host.now_ms() >= 1_002_000, "waited for the lease to lapse");
        assert!(host.sleeps() > 0);

        // A lease that outlives the wait: give up, refresh nothing.
        let used = stored(&host, None);
        host.kv_put(
            "lease",
            r#"{"holder":"slow","expires_at_ms":99999999999,"generation":1}"#,
        );
        let started = host.now_ms();
        let waited = Sessions::new(&host, &acme).after_expiry(&used);
        assert!(
            matches!(&waited, Err(PluginError::CrmUnavailable(m)) if m.contains("refreshing the Acme session")),
            "{waited:?}"
        );
        assert_eq!(acme.refreshes.get(), 1);
        assert!((WAIT_MS..WAIT_MS + 1_000).contains(&(host.now_ms() - started)));
    }

    #[test]
    fn a_revoked_grant_deletes_the_tokens_and_says_why() {
        let host = FakeHost::default();
        let used = stored(&host, None);
        let acme = crm(|_| Err(RefreshFailure::Revoked("authorize Acme again".into())));
        let err = Sessions::new(&host, &acme).after_expiry(&used);
        assert!(matches!(&err, Err(PluginError::NotConnected(m)) if m == "authorize Acme again"));
        assert!(host.kv_text("tokens").is_none() && host.kv_text("lease").is_none());
        assert_eq!(host.kv_json("why"), Some("authorize Acme again".into()));
        // Later callers hear the plugin's "not connected".
        let later = Sessions::new(&host, &acme).after_expiry(&used);
        assert!(matches!(later, Err(PluginError::NotConnected(m)) if m == "connect Acme"));
    }

    #[test]
    fn a_failed_refresh_keeps_the_tokens_and_frees_the_lease() {
        let host = FakeHost::default();
        let used = stored(&host, None);
        let acme = crm(|_| {
            Err(RefreshFailure::Failed(PluginError::CrmUnavailable(
                "down".into(),
            )))
        });
        let err = Sessions::new(&host, &acme).after_expiry(&used);
        assert!(matches!(err, Err(PluginError::CrmUnavailable(_))));
        assert!(host.kv_text("tokens").is_some());
        assert!(host.kv_text("lease").is_none());
    }

    #[test]
    fn tokens_are_refreshed_by_their_stored_expiry() {
        let host = FakeHost::default();
        host.set_now_ms(1_000_000);
        stored(&host, Some(1_000_000 + EXPIRY_MARGIN_MS + 1));
        let acme = crm(renewed);
        let sessions = Sessions::new(&host, &acme);
        assert_eq!(sessions.current().ok().map(|t| t.generation), Some(1));
        assert_eq!(acme.refreshes.get(), 0);
        host.advance_ms(1);
        assert_eq!(sessions.current().ok().map(|t| t.generation), Some(2));
        assert_eq!(acme.refreshes.get(), 1);
        // Without a stored expiry, only a rejection refreshes.
        stored(&host, None);
        host.advance_ms(10 * 3_600_000);
        assert_eq!(sessions.current().ok().map(|t| t.generation), Some(1));
    }
}
