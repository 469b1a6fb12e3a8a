//! Unknown callers: a logged call from or to a number no record has gets a
//! new Contact or Lead (as the call settings say), created once per number
//! under a lease, and remembered for [`REMEMBER_MS`] because Salesforce's
//! search index finds new records only minutes later. While the org's API
//! use is above [`crate::salesforce::HIGH_PERCENT`] of its daily limit no record is created
//! (the call is still logged, and says why it names none).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::lookup::Match;
use super::{Calls, ItemLease, cut};
use crate::auth::Tokens;
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::lease::Until;
use crate::phone::Normalized;
use crate::salesforce::{ApiUsage, SalesforceError};
use crate::settings::UnknownCaller;
use crate::store::{Batch, keys};
use crate::time::{date, datetime};

/// How long a record created for an unknown caller is remembered (Salesforce
/// indexes new records for search within minutes).
pub const REMEMBER_MS: u64 = 24 * 60 * 60 * 1000;

/// A record created for an unknown caller, under `calls/created/<E.164>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remembered {
    /// The record.
    pub record: Match,
    /// When it was created.
    pub created_at_ms: u64,
}

/// What became of the record for an unknown caller.
#[derive(Debug)]
pub enum ForUnknown {
    /// Created now or by an earlier call.
    Created(Match),
    /// Not created, and why (the org is near its API limit).
    Deferred(String),
}

impl<H: Host> Calls<'_, H> {
    pub(super) fn remembered(&self, e164: &str) -> Result<Option<Remembered>, PluginError> {
        let key = format!("{}{}", keys::CALLS_CREATED_PREFIX, e164);
        let now = self.host.now_ms();
        Ok(self
            .store()
            .get::<Remembered>(&key)?
            .filter(|r| now.saturating_sub(r.created_at_ms) < REMEMBER_MS))
    }

    /// Create a Contact or Lead for an unknown number and remember it;
    /// none while the org's API use is above
    /// [`crate::salesforce::HIGH_PERCENT`].
    pub(super) fn create_for_unknown(
        &self,
        n: &Normalized,
        kind: UnknownCaller,
        owner: Option<&str>,
    ) -> Result<ForUnknown, PluginError> {
        if let Some(usage) = self.api().api_usage().filter(ApiUsage::high) {
            let why = format!(
                "no Salesforce record has {}, and none was created: {}",
                n.international,
                usage.deferring("new records for unknown callers wait")
            );
            self.host.log(Level::Info, &why);
            return Ok(ForUnknown::Deferred(why));
        }
        self.create_record(n, kind, owner).map(ForUnknown::Created)
    }

    fn create_record(
        &self,
        n: &Normalized,
        kind: UnknownCaller,
        owner: Option<&str>,
    ) -> Result<Match, PluginError> {
        let store = self.store();
        let lease_key = format!("{}{}", keys::CALLS_CREATING_PREFIX, n.e164);
        let now = self.host.now_ms();
        let lease_raw = store.get_raw(&lease_key)?;
        if ItemLease::live_raw(lease_raw.as_deref(), now) {
            return Err(PluginError::Conflict(format!(
                "another call is creating the record for {}; this one follows",
                n.international
            )));
        }
        let lease = ItemLease::take(self.host, Until::lease_from(now));
        store.commit(
            &Batch::new()
                .expect_raw(&lease_key, lease_raw)
                .set(&lease_key, &lease)?,
        )?;
        let release = || {
            let _ = store.commit(
                &Batch::new()
                    .expect(&lease_key, Some(&lease))
                    .map(|b| b.delete(&lease_key))
                    .unwrap_or_default(),
            );
        };
        // Created by someone who held the lease just before?
        match self.remembered(&n.e164) {
            Ok(Some(r)) => {
                release();
                return Ok(r.record);
            }
            Ok(None) => {}
            Err(e) => {
                release();
                return Err(e);
            }
        }
        let object = match kind {
            UnknownCaller::Lead => "Lead",
            _ => "Contact",
        };
        let name = format!("Caller {}", n.international);
        let mut body = json!({
            "LastName": cut(&name, 80),
            "Phone": n.e164,
            "Description": format!("Created by the PBX for a call from or to {} on {}.", n.international, date(now)),
        });
        if object == "Lead" {
            body["Company"] = json!("Unknown");
        }
        if let Some(owner) = owner {
            body["OwnerId"] = json!(owner);
        }
        let created: Result<Value, SalesforceError> =
            self.api().post_json(&format!("sobjects/{object}/"), &body);
        let created = match created {
            Ok(v) => v,
            Err(e) => {
                release();
                return Err(e.into());
            }
        };
        let Some(id) = created.get("id").and_then(Value::as_str) else {
            release();
            return Err(PluginError::CrmUnavailable(format!(
                "Salesforce created a {object} but sent no id; try again later"
            )));
        };
        let instance = store
            .get::<Tokens>(keys::TOKENS)?
            .map(|t| t.instance_url)
            .unwrap_or_default();
        let record = Match {
            object: object.into(),
            id: id.to_string(),
            name,
            account_id: None,
            modified: datetime(now),
            url: format!("{instance}/lightning/r/{object}/{id}/view"),
            person_contact_id: None,
        };
        let remembered = Remembered {
            record: record.clone(),
            created_at_ms: now,
        };
        let commit = Batch::new()
            .set(
                &format!("{}{}", keys::CALLS_CREATED_PREFIX, n.e164),
                &remembered,
            )?
            .delete(&format!("{}{}", keys::CALLS_LOOKUP_PREFIX, n.e164))
            .delete(&lease_key);
        store.commit(&commit)?;
        self.host.log(
            Level::Info,
            &format!(
                "created {object} {id} for the unknown number {}",
                n.international
            ),
        );
        Ok(record)
    }
}
