//! The connection to Salesforce: the `Connector` feature that authorizes
//! (`authorize`), disconnects, and derives the status the portal shows from
//! what is stored (`stored`: the tokens and the connection record).

mod authorize;
#[cfg(test)]
mod tests;

pub use crate::auth::{ConnectionRecord, LinkState, Tokens};
/// Public so the callback parser can be fuzzed (`plugin/fuzz`).
pub use authorize::Callback;

use crate::bindings::exports::pbx::crm::integration::{ConnectionState, Status};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::oauth::{OAuthClient, SalesforceWording};
use crate::salesforce::Backoff;
use crate::settings::Settings;
use crate::store::{Batch, Store, decode, keys};

/// The connection feature over a host.
pub struct Connector<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Connector<'h, H> {
    /// The connector over `host`.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    /// The app's OAuth client from complete settings, with the raw bytes the
    /// settings were read as; or the NotConfigured error naming what to
    /// enter.
    fn app(&self) -> Result<(OAuthClient<'h, H>, Option<Vec<u8>>), PluginError> {
        let raw = self.store().get_raw(keys::SETTINGS)?;
        let settings: Settings = match &raw {
            None => Settings::default(),
            Some(bytes) => decode(keys::SETTINGS, bytes)?,
        };
        Ok((OAuthClient::from_settings(self.host, &settings)?, raw))
    }

    /// Revoke the session at Salesforce and forget the tokens, keeping the
    /// settings and everything else.
    pub fn disconnect(&self) -> Result<Status, PluginError> {
        let store = self.store();
        let tokens: Option<Tokens> = store.get(keys::TOKENS).unwrap_or(None);
        let record: Option<ConnectionRecord> = store.get(keys::CONNECTION).unwrap_or(None);
        if tokens.is_none() && record.is_none() {
            // Never connected: nothing to undo.
            return Ok(self.status());
        }
        let now = self.host.now_ms();
        let problem = match &tokens {
            Some(tokens) => {
                let token = tokens
                    .refresh_token
                    .as_deref()
                    .unwrap_or(&tokens.access_token);
                match OAuthClient::revoker(self.host, &tokens.login_url).revoke(token) {
                    Ok(()) => None,
                    Err(failure) => Some(format!(
                        "the token could not be revoked at Salesforce ({}): revoke it in Salesforce Setup > Connected Apps OAuth Usage",
                        failure.describe(&tokens.login_url)
                    )),
                }
            }
            None => None,
        };
        let mut record = record
            .unwrap_or_else(|| ConnectionRecord::without_account(LinkState::Disconnected, now));
        record.state = LinkState::Disconnected;
        record.changed_at_ms = now;
        record.reason = None;
        record.problem = problem;
        // The administrator's intent wins over a refresh in flight: no
        // precondition on the tokens.
        store.commit(
            &Batch::new()
                .delete(keys::TOKENS)
                .delete(keys::REFRESH_LEASE)
                .delete(keys::BACKOFF)
                .set(keys::CONNECTION, &record)?,
        )?;
        match &record.problem {
            Some(p) => self.host.log(
                Level::Warn,
                &format!("disconnected from Salesforce, but {p}"),
            ),
            None => self.host.log(Level::Info, "disconnected from Salesforce"),
        }
        Ok(self.status())
    }

    /// The status the portal shows.
    pub fn status(&self) -> Status {
        let store = self.store();
        let settings = match store.get::<Settings>(keys::SETTINGS) {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                return Status {
                    state: ConnectionState::NotConfigured,
                    account: None,
                    message: "The stored settings cannot be read; save them again".into(),
                    problem: Some(e.to_string()),
                    api_usage: None,
                };
            }
        };
        if !settings.is_complete() {
            return Status {
                state: ConnectionState::NotConfigured,
                account: None,
                message: "Not configured: enter the Consumer Key and Consumer Secret of your Salesforce app".into(),
                problem: None,
                api_usage: None,
            };
        }
        let record = match store.get::<ConnectionRecord>(keys::CONNECTION) {
            Ok(r) => r,
            Err(e) => {
                return Status {
                    state: ConnectionState::ReauthorizationNeeded,
                    account: None,
                    message: "The connection record cannot be read: authorize again (click Save)"
                        .into(),
                    problem: Some(e.to_string()),
                    api_usage: None,
                };
            }
        };
        let Some(record) = record else {
            return Status {
                state: ConnectionState::Configured,
                account: None,
                message: "Configured: click Save to authorize the connection to Salesforce".into(),
                problem: None,
                api_usage: None,
            };
        };
        let now = self.host.now_ms();
        let backoff = store
            .get::<Backoff>(keys::BACKOFF)
            .ok()
            .flatten()
            .map(|b| b.problem(now));
        match record.state {
            LinkState::Connected => {
                let has_tokens = matches!(store.get_raw(keys::TOKENS), Ok(Some(_)));
                if has_tokens {
                    Status {
                        state: ConnectionState::Connected,
                        account: record.account(),
                        message: "Connected to Salesforce".into(),
                        problem: backoff.or(record.problem.clone()),
                        api_usage: None,
                    }
                } else {
                    Status {
                        state: ConnectionState::ReauthorizationNeeded,
                        account: record.account(),
                        message:
                            "The stored Salesforce tokens are missing: authorize again (click Save)"
                                .into(),
                        problem: None,
                        api_usage: None,
                    }
                }
            }
            LinkState::ReauthorizationNeeded => Status {
                state: ConnectionState::ReauthorizationNeeded,
                account: record.account(),
                message: record.reason.clone().unwrap_or_else(|| {
                    "Salesforce refused the stored authorization: authorize again (click Save)"
                        .into()
                }),
                problem: record.problem.clone(),
                api_usage: None,
            },
            LinkState::Disconnected => Status {
                state: ConnectionState::Disconnected,
                account: None,
                message: "Disconnected from Salesforce: click Save to authorize again".into(),
                problem: record.problem.clone(),
                api_usage: None,
            },
        }
    }

    /// Add to a settings `batch` what a change of app or login host means:
    /// tokens of another app or org are useless, so they go in the same
    /// batch and the status returns to Configured.
    pub fn on_settings_change(old: Option<&Settings>, new: &Settings, batch: Batch) -> Batch {
        let app = |s: &Settings| (s.consumer_key.clone(), s.login_url().ok());
        if old.map(app) == Some(app(new)) {
            return batch;
        }
        batch
            .delete(keys::TOKENS)
            .delete(keys::CONNECTION)
            .delete(keys::REFRESH_LEASE)
            .delete(keys::BACKOFF)
            .delete(keys::API_USAGE)
    }
}
