//! Session expiry: a 401 means the access token is dead, and exactly one of
//! the instances that met it refreshes the session under a lease in the
//! kv-store while the others wait for the new token. A refused refresh token
//! ends the connection ("re-authorization needed").

use serde::{Deserialize, Serialize};

use super::{Backoff, Salesforce};
use crate::auth::{ConnectionRecord, LinkState, Tokens};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::lease::{Expiry, LEASE_MS, Lease};
use crate::oauth::{OAuthClient, SalesforceWording, TokenFailure};
use crate::settings::Settings;
use crate::store::{Batch, encode, keys};

/// How often a waiting instance looks whether the refresh is done.
const POLL_MS: u64 = 25;
/// How long an instance waits for another's refresh before giving up,
/// leaving room in the call's 10 s deadline for the retried request.
const WAIT_MS: u64 = 8_000;

/// The refresh lease, stored under `auth/refresh-lease` while one instance
/// refreshes the session, as `{"holder", "expires_at_ms", "generation"}`.
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

impl<H: Host> Salesforce<'_, H> {
    /// A session newer than `used`, which Salesforce just refused.
    ///
    /// Exactly one instance refreshes; the others wait for its result:
    /// 1. Re-read the tokens. If they are not the session `used`, someone
    ///    already refreshed: use them.
    /// 2. Otherwise, if no live lease exists, take one with a batch whose
    ///    preconditions are "the lease is still what I read (absent or the
    ///    exact lapsed value)" and "the tokens are still what I read". The
    ///    second one matters: an instance that read the old tokens just
    ///    before another committed new ones must not refresh again.
    /// 3. The holder refreshes and, in one batch guarded by its lease, writes
    ///    the new tokens (generation + 1) and deletes the lease.
    /// 4. A live lease means someone is refreshing: sleep a little and look
    ///    again, until the tokens move, the lease lapses (then try to take
    ///    it), or the wait runs out.
    pub fn session_after_expiry(&self, used: &Tokens) -> Result<Tokens, PluginError> {
        let store = self.store();
        let deadline = self.host.now_ms() + WAIT_MS;
        // Bounded by count as well as by the clock, in case the clock stalls.
        let max_rounds = (WAIT_MS / POLL_MS) * 2;
        for _ in 0..max_rounds {
            let Some((current, current_raw)) = store.get_with_raw::<Tokens>(keys::TOKENS)? else {
                // Deleted meanwhile: a refresh failed (re-authorization
                // needed) or the administrator disconnected.
                return Err(self.not_connected());
            };
            if !current.same_session(used) {
                return Ok(current);
            }
            let lease_raw = store.get_raw(keys::REFRESH_LEASE)?;
            let now = self.host.now_ms();
            if !RefreshLease::live_raw(lease_raw.as_deref(), now) {
                if let Some(b) = store.get::<Backoff>(keys::BACKOFF).unwrap_or(None)
                    && now < b.until_ms
                {
                    return Err(b.error(now));
                }
                let end = RefreshEnd {
                    expires_at_ms: now + LEASE_MS,
                    generation: current.generation,
                };
                let lease = RefreshLease::take(self.host, end);
                let lease_bytes = encode(&lease)?;
                let take = Batch::new()
                    .expect_raw(keys::REFRESH_LEASE, lease_raw)
                    .expect_raw(keys::TOKENS, Some(current_raw.clone()))
                    .set(keys::REFRESH_LEASE, &lease)?;
                match store.commit(&take) {
                    Ok(()) => return self.refresh(current, current_raw, lease_bytes),
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
        Err(PluginError::CrmUnavailable(
            "another request is still refreshing the Salesforce session; try again in a few seconds"
                .into(),
        ))
    }

    /// Refresh the session while holding the lease `lease_bytes`.
    fn refresh(
        &self,
        current: Tokens,
        current_raw: Vec<u8>,
        lease_bytes: Vec<u8>,
    ) -> Result<Tokens, PluginError> {
        let store = self.store();
        let release = || {
            let _ = store.commit(
                &Batch::new()
                    .expect_raw(keys::REFRESH_LEASE, Some(lease_bytes.clone()))
                    .delete(keys::REFRESH_LEASE),
            );
        };
        let settings: Settings = match store.get(keys::SETTINGS) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                release();
                return Err(e);
            }
        };
        let Ok(oauth) = OAuthClient::from_settings_at(self.host, &settings, &current.login_url)
        else {
            release();
            return Err(PluginError::NotConfigured(
                "the Consumer Key or Secret is missing, so the Salesforce session cannot be refreshed: enter them and click Save".into(),
            ));
        };
        let Some(refresh_token) = current.refresh_token.as_deref() else {
            return Err(self.require_reauthorization(
                &current_raw,
                &lease_bytes,
                "the Salesforce session expired and there is no refresh token (the app's OAuth scopes lack \"refresh_token, offline_access\"): add that scope to the app, then authorize again".into(),
            ));
        };
        let answer = match oauth.refresh(refresh_token) {
            Ok(answer) => answer,
            Err(failure) if failure.oauth_error() == Some("invalid_grant") => {
                let said = match &failure {
                    TokenFailure::OAuth { description, .. } if !description.is_empty() => {
                        description.clone()
                    }
                    _ => "invalid_grant".into(),
                };
                return Err(self.require_reauthorization(
                    &current_raw,
                    &lease_bytes,
                    format!(
                        "Salesforce refused the stored refresh token ({said}): authorize again from the PBX portal (click Save)"
                    ),
                ));
            }
            Err(failure) => {
                release();
                if let TokenFailure::Server { status } = failure {
                    return Err(self.record_failure(false, status, &[]));
                }
                let error = failure.for_refresh(&current.login_url);
                self.host.log(
                    Level::Warn,
                    &format!("Salesforce session refresh failed: {error}"),
                );
                return Err(error);
            }
        };
        // The refresh answer is signed like the first one; when it carries a
        // signature, a mismatch means the secret changed or traffic was
        // altered.
        if answer.signature.is_some() && !oauth.signed(&answer) {
            release();
            let error = PluginError::NotConfigured(
                "Salesforce's refresh answer has a signature that does not match the Consumer Secret: check the secret, and that nothing between the PBX and Salesforce alters traffic".into(),
            );
            self.host.log(Level::Warn, &error.to_string());
            return Err(error);
        }
        let now = self.host.now_ms();
        let issued_at_ms = answer.issued_at_ms().unwrap_or(now);
        let next = Tokens {
            access_token: answer.access_token,
            // With rotation the old refresh token is dead: keep the new one.
            refresh_token: answer.refresh_token.or(current.refresh_token),
            instance_url: answer
                .instance_url
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or(current.instance_url),
            id_url: answer.id.unwrap_or(current.id_url),
            issued_at_ms,
            scope: answer.scope.unwrap_or(current.scope),
            generation: current.generation + 1,
            login_url: current.login_url,
            client_id: current.client_id,
        };
        let commit = Batch::new()
            .expect_raw(keys::REFRESH_LEASE, Some(lease_bytes))
            .expect_raw(keys::TOKENS, Some(current_raw))
            .set(keys::TOKENS, &next)?
            .delete(keys::REFRESH_LEASE);
        match store.commit(&commit) {
            Ok(()) => {
                self.host.log(
                    Level::Info,
                    &format!("Salesforce session refreshed (generation {})", next.generation),
                );
                Ok(next)
            }
            Err(PluginError::Conflict(_)) => Err(PluginError::NotConnected(
                "the Salesforce connection changed while its session was refreshed (disconnected or authorized again); try again".into(),
            )),
            Err(e) => Err(e),
        }
    }

    /// Salesforce refused the refresh token: delete the dead tokens, record
    /// why, keep settings and everything else.
    fn require_reauthorization(
        &self,
        current_raw: &[u8],
        lease_bytes: &[u8],
        reason: String,
    ) -> PluginError {
        let store = self.store();
        let now = self.host.now_ms();
        let record = store
            .get::<ConnectionRecord>(keys::CONNECTION)
            .unwrap_or(None)
            .map(|r| ConnectionRecord {
                state: LinkState::ReauthorizationNeeded,
                changed_at_ms: now,
                reason: Some(reason.clone()),
                ..r
            })
            .unwrap_or_else(|| ConnectionRecord {
                reason: Some(reason.clone()),
                ..ConnectionRecord::without_account(LinkState::ReauthorizationNeeded, now)
            });
        let batch = Batch::new()
            .expect_raw(keys::REFRESH_LEASE, Some(lease_bytes.to_vec()))
            .expect_raw(keys::TOKENS, Some(current_raw.to_vec()))
            .delete(keys::TOKENS)
            .delete(keys::REFRESH_LEASE)
            .set(keys::CONNECTION, &record);
        match batch.map(|b| store.commit(&b)) {
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
