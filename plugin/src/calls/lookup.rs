//! Caller lookup: the number is normalized to E.164
//! ([`phone::normalize`]) and searched with the SOSL phone search
//! ([`crate::salesforce::query::sosl`], which escapes the `+`); when nothing
//! matches, the national significant number is searched too, for numbers
//! stored nationally, and what it finds written with another country code
//! is left out (`+44 20 7946 0958` is no match for `+1 207 946 0958`). The
//! winner is a Contact or a Person Account (a person, found and logged
//! against like a Contact), then a Lead, then an Account; among records of
//! one kind the most recently modified. The others are reported.
//!
//! In an org with Person Accounts the search also asks which Accounts are
//! persons and their person contact (`PersonContactId`); an org without
//! them refuses those fields, so whether it has them is learnt from the
//! searches and remembered ([`crate::salesforce::person_accounts`]). A
//! person account's hidden Contact, if the search finds it too, is folded
//! into its Account. Answers are cached for [`CACHE_MS`] under
//! `calls/lookup/<E.164>`. A number that cannot be normalized is answered
//! with no match and the number as given (as the WIT `caller.number`
//! documents); nothing is sent.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Calls;
use crate::auth::Tokens;
use crate::bindings::exports::pbx::crm::calls::{Caller, CrmRecord};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::phone::{self, Normalized};
use crate::salesforce::SalesforceError;
use crate::salesforce::person_accounts;
use crate::salesforce::query::{search_path, sosl};
use crate::store::keys;

/// How long a lookup's answer is reused.
pub const CACHE_MS: u64 = 60_000;

/// What a person account is called for people (its object is `Account`).
pub const PERSON_ACCOUNT: &str = "Person Account";

/// A record that matched a number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    /// Contact, Lead or Account (also for a person account).
    pub object: String,
    /// The record's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// A Contact's Account, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<String>,
    /// `LastModifiedDate` as Salesforce wrote it (ISO 8601, UTC).
    #[serde(default)]
    pub modified: String,
    /// `{instance_url}/lightning/r/{Object}/{Id}/view`.
    pub url: String,
    /// A person account's person contact (`PersonContactId`), the hidden
    /// Contact behind it; none for every other record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_contact_id: Option<String>,
}

impl Match {
    /// Whether this is a person account.
    pub fn is_person_account(&self) -> bool {
        self.object == "Account" && self.person_contact_id.is_some()
    }

    /// The record's type for people: [`PERSON_ACCOUNT`] or the object's name.
    pub fn kind(&self) -> &str {
        if self.is_person_account() {
            PERSON_ACCOUNT
        } else {
            &self.object
        }
    }

    fn rank(&self) -> u8 {
        match self.object.as_str() {
            "Contact" => 0,
            "Account" if self.is_person_account() => 0,
            "Lead" => 1,
            "Account" => 2,
            _ => 3,
        }
    }

    /// The record as the WIT names it (no account name); a person account's
    /// type is [`PERSON_ACCOUNT`].
    pub fn record(&self) -> CrmRecord {
        CrmRecord {
            object_type: self.kind().to_string(),
            id: self.id.clone(),
            name: self.name.clone(),
            url: self.url.clone(),
            account: None,
        }
    }
}

impl Match {
    /// The Task fields that name this record: a Contact is the `WhoId`
    /// with its Account the `WhatId`, a Lead the `WhoId`, a person account
    /// its person contact as the `WhoId` (a Task's `WhoId` is a Contact or
    /// a Lead, never an Account) and itself as the `WhatId`, anything else
    /// the `WhatId`.
    pub fn links(&self) -> Vec<(&'static str, String)> {
        if let Some(person) = self
            .person_contact_id
            .as_ref()
            .filter(|_| self.is_person_account())
        {
            return vec![("WhoId", person.clone()), ("WhatId", self.id.clone())];
        }
        match self.object.as_str() {
            "Contact" => {
                let mut l = vec![("WhoId", self.id.clone())];
                if let Some(a) = &self.account_id {
                    l.push(("WhatId", a.clone()));
                }
                l
            }
            "Lead" => vec![("WhoId", self.id.clone())],
            _ => vec![("WhatId", self.id.clone())],
        }
    }
}

/// Sort matches winner first: Contact or Person Account, Lead, Account;
/// then the most recently modified; then by id (stable).
pub fn rank(matches: &mut [Match]) {
    matches.sort_by(|a, b| {
        a.rank()
            .cmp(&b.rank())
            .then_with(|| b.modified.cmp(&a.modified))
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// A cached lookup, under `calls/lookup/<E.164>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedLookup {
    /// When it was looked up.
    pub at_ms: u64,
    /// The matches, winner first.
    pub matches: Vec<Match>,
}

impl<H: Host> Calls<'_, H> {
    /// Look `number` up; a number that cannot be normalized gives no match
    /// and the number as given.
    pub fn lookup(&self, number: &str, region: &str) -> Result<Caller, PluginError> {
        let n = match phone::normalize(number, region) {
            Ok(n) => n,
            Err(bad) => {
                self.host.log(
                    Level::Info,
                    &format!("caller lookup: {}", bad.describe(number)),
                );
                return Ok(Caller {
                    number: number.to_string(),
                    best: None,
                    others: Vec::new(),
                });
            }
        };
        let matches = self.find(&n)?;
        let mut records = matches.iter().map(Match::record);
        Ok(Caller {
            number: n.e164.clone(),
            best: records.next(),
            others: records.collect(),
        })
    }

    /// The records matching `n`, winner first: the one an agent chose for
    /// the number, if it still matches, else by [`rank`].
    pub fn find(&self, n: &Normalized) -> Result<Vec<Match>, PluginError> {
        Ok(self.find_choosing(n)?.0)
    }

    /// [`Calls::find`], and whether an agent's choice put the first first.
    pub fn find_choosing(&self, n: &Normalized) -> Result<(Vec<Match>, bool), PluginError> {
        let mut matches = self.find_ranked(n)?;
        let chosen = self.apply_choice(&n.e164, &mut matches)?;
        Ok((matches, chosen))
    }

    /// The records matching `n` by [`rank`] (cached).
    fn find_ranked(&self, n: &Normalized) -> Result<Vec<Match>, PluginError> {
        let store = self.store();
        let now = self.host.now_ms();
        let cache_key = format!("{}{}", keys::CALLS_LOOKUP_PREFIX, n.e164);
        if let Ok(Some(cached)) = store.get::<CachedLookup>(&cache_key)
            && cached.at_ms <= now
            && now - cached.at_ms < CACHE_MS
        {
            return Ok(cached.matches);
        }
        let tokens: Option<Tokens> = store.get(keys::TOKENS)?;
        let instance = tokens.map(|t| t.instance_url).unwrap_or_default();
        let mut matches = self.search(&n.e164, &instance, None)?;
        if matches.is_empty() && n.national.len() >= 7 {
            // Numbers stored without their country code may be indexed
            // under the national number only.
            matches = self.search(&n.national, &instance, Some(n))?;
        }
        if let Some(r) = self.remembered(&n.e164)?
            && !matches.iter().any(|m| m.id == r.record.id)
        {
            matches.push(r.record);
        }
        rank(&mut matches);
        let cached = CachedLookup {
            at_ms: now,
            matches: matches.clone(),
        };
        if let Err(e) = store.put(&cache_key, &cached) {
            self.host
                .log(Level::Warn, &format!("could not cache a lookup: {e}"));
        }
        Ok(matches)
    }

    /// The records SOSL finds for `term`; with `of`, only those that may
    /// have that number (see [`may_have`]).
    fn search(
        &self,
        term: &str,
        instance: &str,
        of: Option<&Normalized>,
    ) -> Result<Vec<Match>, PluginError> {
        let mut answer = self.search_answer(term, instance)?;
        if let Some(n) = of
            && let Some(records) = answer
                .get_mut("searchRecords")
                .and_then(Value::as_array_mut)
        {
            records.retain(|r| may_have(r, n));
        }
        Ok(search_matches(&answer, instance))
    }

    /// The SOSL answer for `term`, with the person account fields unless
    /// the org is known to lack them. `INVALID_FIELD` for them means it
    /// lacks them: searched again without, and remembered.
    fn search_answer(&self, term: &str, instance: &str) -> Result<Value, PluginError> {
        let known = person_accounts::known(self.host, instance);
        if known == Some(false) {
            return Ok(self.api().get(&search_path(&sosl(term, false)))?);
        }
        match self.api().get::<Value>(&search_path(&sosl(term, true))) {
            Ok(answer) => {
                if known.is_none() {
                    person_accounts::remember(self.host, instance, true);
                }
                Ok(answer)
            }
            Err(SalesforceError::Api(refused)) if refused.has_code("INVALID_FIELD") => {
                let answer = self.api().get(&search_path(&sosl(term, false)))?;
                self.host.log(
                    Level::Info,
                    "the org has no Person Accounts (Salesforce refused their fields); phone searches leave them out",
                );
                person_accounts::remember(self.host, instance, false);
                Ok(answer)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The phone fields the lookup's SOSL returns (a person account's too).
const PHONE_FIELDS: [&str; 6] = [
    "Phone",
    "MobilePhone",
    "OtherPhone",
    "PersonMobilePhone",
    "PersonHomePhone",
    "PersonOtherPhone",
];

/// Whether a record found by the national number `n.national` may have the
/// number `n`: one of its phone fields is written nationally (no country
/// to tell), or internationally with `n`'s country code (a trunk `(0)`
/// allowed). A record whose phone fields were not returned is kept.
pub fn may_have(record: &Value, n: &Normalized) -> bool {
    let e164 = n.e164.trim_start_matches('+');
    let code = e164.strip_suffix(n.national.as_str()).unwrap_or(e164);
    let mut phones = PHONE_FIELDS
        .iter()
        .filter_map(|f| record.get(*f).and_then(Value::as_str))
        .filter(|p| p.chars().any(|c| c.is_ascii_digit()))
        .peekable();
    if phones.peek().is_none() {
        return true;
    }
    phones.any(|p| {
        let digits: String = p.chars().filter(char::is_ascii_digit).collect();
        let international = if p.trim_start().starts_with('+') {
            Some(digits.as_str())
        } else {
            digits.strip_prefix("00")
        };
        match international {
            None => true,
            Some(d) => d == e164 || d == format!("{code}0{}", n.national),
        }
    })
}

/// The records of a SOSL search answer (an array, or `searchRecords`) as
/// matches linked under `instance`; a record whose type is not an object
/// name (letters, digits, `_`) or whose id is not alphanumeric is left out,
/// so neither can bend the URL. An Account with `IsPersonAccount` is a
/// person account (with its `PersonContactId`); a Contact with
/// `IsPersonAccount` is a person account's hidden Contact and stands for
/// its Account, once (the Account's own row wins).
pub fn search_matches(answer: &Value, instance: &str) -> Vec<Match> {
    let records = match answer {
        Value::Array(list) => list.as_slice(),
        other => other
            .get("searchRecords")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice),
    };
    let text = |r: &Value, f: &str| {
        r.get(f)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let plain = |id: &str| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric());
    let person = |r: &Value| r.get("IsPersonAccount").and_then(Value::as_bool) == Some(true);
    let mut matches: Vec<Match> = Vec::with_capacity(records.len());
    for r in records {
        let Some(object) = r
            .get("attributes")
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let Some(id) = text(r, "Id") else {
            continue;
        };
        let object_name = object
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if object.is_empty() || !object_name || !plain(&id) {
            continue;
        }
        let name = text(r, "Name").unwrap_or_else(|| id.clone());
        let modified = text(r, "LastModifiedDate").unwrap_or_default();
        // A person account's hidden Contact stands for its Account.
        let hidden_of =
            text(r, "AccountId").filter(|a| object == "Contact" && person(r) && plain(a));
        let found = match (object, hidden_of) {
            ("Account", _) if person(r) => Match {
                object: "Account".into(),
                url: format!("{instance}/lightning/r/Account/{id}/view"),
                person_contact_id: text(r, "PersonContactId").filter(|c| plain(c)),
                account_id: None,
                name,
                modified,
                id,
            },
            (_, Some(account)) => Match {
                object: "Account".into(),
                url: format!("{instance}/lightning/r/Account/{account}/view"),
                person_contact_id: Some(id),
                account_id: None,
                name,
                modified,
                id: account,
            },
            _ => Match {
                url: format!("{instance}/lightning/r/{object}/{id}/view"),
                account_id: text(r, "AccountId"),
                person_contact_id: None,
                object: object.to_string(),
                name,
                modified,
                id,
            },
        };
        match matches.iter_mut().find(|m| m.id == found.id) {
            // The Account's own row says more than its hidden Contact's.
            Some(seen)
                if found.person_contact_id.is_some() && r.get("PersonContactId").is_some() =>
            {
                *seen = found;
            }
            Some(_) => {}
            None => matches.push(found),
        }
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_national_number_s_finds_keep_only_numbers_that_may_be_it() {
        let Ok(maine) = phone::normalize("+1 207 946 0958", "US") else {
            panic!("a valid number");
        };
        let record = |phone: &str| serde_json::json!({"Phone": phone, "MobilePhone": null});
        assert!(!may_have(&record("+44 20 7946 0958"), &maine));
        assert!(!may_have(&record("0044 20 7946 0958"), &maine));
        assert!(may_have(&record("(207) 946-0958"), &maine));
        assert!(may_have(&record("+1 207 946 0958"), &maine));
        assert!(may_have(&serde_json::json!({"Id": "003"}), &maine));
        let Ok(berlin) = phone::normalize("+49 30 901820", "DE") else {
            panic!("a valid number");
        };
        assert!(may_have(&record("+49 (0)30 901820"), &berlin));
        assert!(may_have(&record("030 901820"), &berlin));
        assert!(!may_have(&record("+43 30 901820"), &berlin));
        let two = serde_json::json!({"Phone": "+44 30 901820", "OtherPhone": "030/901820"});
        assert!(may_have(&two, &berlin), "one field may be it");
    }

    /// Found by the `salesforce_json` fuzz target: a record's type went
    /// into the record's URL unchecked ("C!ntact", "../x"), and an empty id
    /// linked to `.../Contact//view`.
    #[test]
    fn search_records_with_an_odd_type_or_an_empty_id_are_left_out() {
        let answer = serde_json::json!({"searchRecords": [
            {"attributes": {"type": "C!ntact"}, "Id": "003A", "Name": "Odd"},
            {"attributes": {"type": "../../evil?x="}, "Id": "003B"},
            {"attributes": {"type": ""}, "Id": "003C"},
            {"attributes": {"type": "Contact"}, "Id": ""},
            {"attributes": {"type": "Contact"}, "Id": "003D", "Name": "Ann"},
            {"attributes": {"type": "Custom__c"}, "Id": "a01E"},
        ]});
        let found = search_matches(&answer, "https://acme.my.salesforce.com");
        let urls: Vec<&str> = found.iter().map(|m| m.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                "https://acme.my.salesforce.com/lightning/r/Contact/003D/view",
                "https://acme.my.salesforce.com/lightning/r/Custom__c/a01E/view",
            ]
        );
    }
}
