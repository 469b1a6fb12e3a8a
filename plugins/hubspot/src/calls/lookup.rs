//! Caller lookup: HubSpot's CRM search on the phone properties (contacts
//! `phone` and `mobilephone`, then companies `phone`). HubSpot keeps what
//! was typed unless the account validates numbers (then E.164 without
//! formatting), so each search asks for every form a number is likely
//! stored in. A contact created for an unknown number is found from the kv
//! until search shows it (search is eventually consistent).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Calls;
use crate::api::{Hub, PluginErrorOr};
use crate::bindings::pbx::crm::types::CrmRecord;
use crate::connection::Session;
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::phone::Normalized;

/// Records per search: enough for the agent to choose among.
const LIMIT: usize = 10;
/// How long a created contact is found from the kv: far beyond search lag.
pub const REMEMBER_MS: u64 = 24 * 3600 * 1000;

/// A matched HubSpot record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    /// "contact" or "company".
    pub object: String,
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub company: Option<String>,
}

impl Found {
    /// HubSpot's object type id (`0-1` contacts, `0-2` companies).
    pub fn type_id(&self) -> &'static str {
        if self.object == "company" {
            "0-2"
        } else {
            "0-1"
        }
    }

    /// "Contact" / "Company".
    pub fn label(&self) -> &'static str {
        if self.object == "company" {
            "Company"
        } else {
            "Contact"
        }
    }

    /// The record as the contract shows it, with its page in HubSpot.
    pub fn to_record(&self, session: &Session) -> CrmRecord {
        CrmRecord {
            object_type: self.label().into(),
            id: self.id.clone(),
            name: self.name.clone(),
            url: format!(
                "{}/contacts/{}/record/{}/{}",
                session.app_base,
                session.hub_id,
                self.type_id(),
                self.id
            ),
            account: self.company.clone(),
        }
    }

    /// One record of a search or read answer.
    pub fn from_json(object: &str, v: &Value) -> Option<Self> {
        let id = v["id"].as_str()?.to_string();
        let p = &v["properties"];
        // Names are shown on one line to agents and administrators.
        let text = |k: &str| {
            p[k].as_str()
                .map(pbx_crm_sdk::http::sanitize)
                .filter(|s| !s.is_empty())
        };
        let name = if object == "company" {
            text("name")
        } else {
            let full = format!(
                "{} {}",
                text("firstname").unwrap_or_default(),
                text("lastname").unwrap_or_default()
            );
            Some(full.trim().to_string())
                .filter(|s| !s.is_empty())
                .or_else(|| text("email"))
        };
        Some(Self {
            object: object.into(),
            name: name
                .or_else(|| text("phone"))
                .unwrap_or_else(|| format!("{object} {id}")),
            company: if object == "company" {
                None
            } else {
                text("company")
            },
            id,
        })
    }
}

/// A contact created for an unknown number.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Remembered {
    pub found: Found,
    pub created_at_ms: u64,
}

/// The forms a number may be stored in: E.164, its digits, the national
/// number, the international form, and for NANP numbers the usual
/// national formats.
pub fn stored_forms(n: &Normalized) -> Vec<String> {
    let mut forms = vec![
        n.e164.clone(),
        n.e164.trim_start_matches('+').to_string(),
        n.national.clone(),
        n.international.clone(),
        n.international.replace(' ', "-"),
    ];
    if n.e164.starts_with("+1") && n.national.len() == 10 {
        let (a, rest) = n.national.split_at(3);
        let (b, c) = rest.split_at(3);
        forms.push(format!("({a}) {b}-{c}"));
        forms.push(format!("{a}-{b}-{c}"));
        forms.push(format!("+1 ({a}) {b}-{c}"));
        forms.push(format!("+1 {a}-{b}-{c}"));
    }
    let mut seen = std::collections::HashSet::new();
    forms.retain(|f| seen.insert(f.clone()));
    forms
}

/// The properties read from each kind of record.
const CONTACT_PROPS: [&str; 6] = [
    "firstname",
    "lastname",
    "email",
    "company",
    "phone",
    "mobilephone",
];
const COMPANY_PROPS: [&str; 2] = ["name", "phone"];

impl<H: Host> Calls<'_, H> {
    /// The records whose phone properties hold `n` in one of its forms:
    /// contacts (most recently changed first), else companies, else a
    /// contact created for the number lately.
    pub fn find(&self, n: &Normalized) -> Result<Vec<Found>, PluginErrorOr> {
        let forms = stored_forms(n);
        let hub = Hub::new(self.host);
        let group = |prop: &str| json!({"filters": [{"propertyName": prop, "operator": "IN", "values": forms}]});
        let body = json!({
            "filterGroups": [group("phone"), group("mobilephone")],
            "properties": CONTACT_PROPS,
            "sorts": [{"propertyName": "lastmodifieddate", "direction": "DESCENDING"}],
            "limit": LIMIT,
        });
        let mut found = records(
            &hub.post("/crm/v3/objects/contacts/search", &body)?,
            "contact",
        );
        if found.is_empty() {
            let body = json!({
                "filterGroups": [group("phone")],
                "properties": COMPANY_PROPS,
                "limit": LIMIT,
            });
            found = records(
                &hub.post("/crm/v3/objects/companies/search", &body)?,
                "company",
            );
        }
        if found.is_empty()
            && let Some(r) = self.remembered(&n.e164)?
        {
            found.push(r.found);
        }
        Ok(found)
    }

    /// The contact created for `e164` lately, if any.
    pub fn remembered(&self, e164: &str) -> Result<Option<Remembered>, PluginError> {
        let r: Option<Remembered> =
            self.store()
                .get(&format!("{}{}", keys::UNKNOWN_PREFIX, keys::hashed(e164)))?;
        let now = self.host.now_ms();
        Ok(r.filter(|r| now.saturating_sub(r.created_at_ms) < REMEMBER_MS))
    }

    /// Read one record by id (`object`: "contact" or "company").
    pub fn read_record(&self, object: &str, id: &str) -> Result<Found, PluginErrorOr> {
        let (path, props): (&str, &[&str]) = if object == "company" {
            ("companies", &COMPANY_PROPS)
        } else {
            ("contacts", &CONTACT_PROPS)
        };
        let v = Hub::new(self.host).get(&format!(
            "/crm/v3/objects/{path}/{}?properties={}",
            crate::api::segment(id),
            props.join(",")
        ))?;
        Found::from_json(object, &v).ok_or_else(|| {
            PluginErrorOr::Plugin(PluginError::CrmUnavailable(
                "HubSpot answered a record without an id".into(),
            ))
        })
    }
}

fn records(answer: &Value, object: &str) -> Vec<Found> {
    answer["results"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|v| Found::from_json(object, v))
                .collect()
        })
        .unwrap_or_default()
}
