//! Session expiry: a 401 means the access token is dead, and exactly one of
//! the instances that met it refreshes the session under a lease in the
//! kv-store while the others wait for the new token (the SDK's
//! `pbx_crm_sdk::session` runs that protocol). What is Salesforce's here:
//! how the tokens are refreshed (its OAuth client, the answer's signature,
//! its fields), the back-off checked first, and the connection record
//! written when Salesforce refuses the refresh token ("re-authorization
//! needed").

use pbx_crm_sdk::session::{RefreshFailure, Session, Sessions};

use super::{Backoff, Salesforce};
use crate::auth::{ConnectionRecord, LinkState, Tokens};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::oauth::{OAuthClient, SalesforceWording, TokenFailure};
use crate::settings::Settings;
use crate::store::{Batch, Keys, keys};

pub use pbx_crm_sdk::session::{RefreshEnd, RefreshLease};

impl<H: Host> Salesforce<'_, H> {
    /// A session newer than `used`, which Salesforce just refused: one
    /// instance refreshes, the others wait for its result.
    pub fn session_after_expiry(&self, used: &Tokens) -> Result<Tokens, PluginError> {
        Sessions::new(self.host, self).after_expiry(used)
    }
}

impl<H: Host> Session for &Salesforce<'_, H> {
    type Tokens = Tokens;
    type Repair = Keys;
    const CRM: &'static str = "Salesforce";
    const TOKENS_KEY: &'static str = keys::TOKENS;
    const LEASE_KEY: &'static str = keys::REFRESH_LEASE;

    fn generation(tokens: &Tokens) -> u64 {
        tokens.generation
    }

    fn same_session(a: &Tokens, b: &Tokens) -> bool {
        a.same_session(b)
    }

    fn hold_off(&self, now_ms: u64) -> Option<PluginError> {
        self.store()
            .get::<Backoff>(keys::BACKOFF)
            .unwrap_or(None)
            .filter(|b| now_ms < b.until_ms)
            .map(|b| b.error(now_ms))
    }

    fn refresh(&self, current: &Tokens) -> Result<Tokens, RefreshFailure> {
        let failed = RefreshFailure::Failed;
        let settings: Settings = self
            .store()
            .get(keys::SETTINGS)
            .map_err(failed)?
            .unwrap_or_default();
        let Ok(oauth) = OAuthClient::from_settings_at(self.host, &settings, &current.login_url)
        else {
            return Err(failed(PluginError::NotConfigured(
                "the Consumer Key or Secret is missing, so the Salesforce session cannot be refreshed: enter them and click Save".into(),
            )));
        };
        let Some(refresh_token) = current.refresh_token.as_deref() else {
            return Err(RefreshFailure::Revoked(
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
                return Err(RefreshFailure::Revoked(format!(
                    "Salesforce refused the stored refresh token ({said}): authorize again from the PBX portal (click Save)"
                )));
            }
            Err(TokenFailure::Server { status }) => {
                return Err(failed(self.record_failure(false, status, &[])));
            }
            Err(failure) => {
                let error = failure.for_refresh(&current.login_url);
                self.host.log(
                    Level::Warn,
                    &format!("Salesforce session refresh failed: {error}"),
                );
                return Err(failed(error));
            }
        };
        // The refresh answer is signed like the first one; when it carries a
        // signature, a mismatch means the secret changed or traffic was
        // altered.
        if answer.signature.is_some() && !oauth.signed(&answer) {
            let error = PluginError::NotConfigured(
                "Salesforce's refresh answer has a signature that does not match the Consumer Secret: check the secret, and that nothing between the PBX and Salesforce alters traffic".into(),
            );
            self.host.log(Level::Warn, &error.to_string());
            return Err(failed(error));
        }
        let issued_at_ms = answer.issued_at_ms().unwrap_or(self.host.now_ms());
        let current = current.clone();
        Ok(Tokens {
            access_token: answer.access_token,
            issued_at_ms,
            // With rotation the old refresh token is dead: keep the new one.
            refresh_token: answer.refresh_token.or(current.refresh_token),
            instance_url: answer
                .instance_url
                .map(|u| u.trim_end_matches('/').to_string())
                .unwrap_or(current.instance_url),
            id_url: answer.id.unwrap_or(current.id_url),
            scope: answer.scope.unwrap_or(current.scope),
            generation: current.generation + 1,
            login_url: current.login_url,
            client_id: current.client_id,
        })
    }

    /// Salesforce refused the refresh token: the connection record says
    /// why; settings and everything else stay.
    fn record_revoked(&self, batch: Batch, reason: &str) -> Result<Batch, PluginError> {
        let now = self.host.now_ms();
        let record = self
            .store()
            .get::<ConnectionRecord>(keys::CONNECTION)
            .unwrap_or(None)
            .map(|r| ConnectionRecord {
                state: LinkState::ReauthorizationNeeded,
                changed_at_ms: now,
                reason: Some(reason.to_string()),
                ..r
            })
            .unwrap_or_else(|| ConnectionRecord {
                reason: Some(reason.to_string()),
                ..ConnectionRecord::without_account(LinkState::ReauthorizationNeeded, now)
            });
        batch.set(keys::CONNECTION, &record)
    }

    fn not_connected(&self) -> PluginError {
        Salesforce::not_connected(self)
    }
}
