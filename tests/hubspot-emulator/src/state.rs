//! The emulator's shared state: CRM data, OAuth grants, faults, the rate
//! limiter, the clock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Map, Value, json};

use crate::config::{App, User};

/// Locks ignoring poisoning: a panicked handler must not take the account down.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub use emulator_kit::server::take_one;

/// HubSpot's date-time text, `2019-10-30T03:30:17.883Z`.
pub fn iso(ms: i64) -> String {
    let s = emulator_kit::time::format_datetime(ms);
    match s.strip_suffix("+0000") {
        Some(head) => format!("{head}Z"),
        None => s,
    }
}

/// The CRM object types the emulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ObjType {
    Contacts,
    Companies,
    Calls,
}

impl ObjType {
    /// From a path segment: the name (`contacts`, `contact`) or the
    /// object type id (`0-1`).
    pub fn parse(s: &str) -> Option<ObjType> {
        match s.to_ascii_lowercase().as_str() {
            "contacts" | "contact" | "0-1" => Some(ObjType::Contacts),
            "companies" | "company" | "0-2" => Some(ObjType::Companies),
            "calls" | "call" | "0-48" => Some(ObjType::Calls),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ObjType::Contacts => "contacts",
            ObjType::Companies => "companies",
            ObjType::Calls => "calls",
        }
    }

    /// The scope reading these records needs. Calls are engagements,
    /// read and written with the contacts scopes.
    pub fn read_scope(self) -> &'static str {
        match self {
            ObjType::Contacts | ObjType::Calls => "crm.objects.contacts.read",
            ObjType::Companies => "crm.objects.companies.read",
        }
    }

    pub fn write_scope(self) -> &'static str {
        match self {
            ObjType::Contacts | ObjType::Calls => "crm.objects.contacts.write",
            ObjType::Companies => "crm.objects.companies.write",
        }
    }

    /// Properties answered when a request names none.
    pub fn default_properties(self) -> &'static [&'static str] {
        match self {
            ObjType::Contacts => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            ObjType::Companies => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            ObjType::Calls => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    fn created_property(self) -> &'static str {
        match self {
            ObjType::Calls => "hs_createdate",
            _ => "createdate",
        }
    }

    fn modified_property(self) -> &'static str {
        match self {
            ObjType::Contacts => "lastmodifieddate",
            _ => "hs_lastmodifieddate",
        }
    }
}

/// HubSpot-defined association types the emulator knows: (from, to,
/// typeId). Each direction has its own id.
pub const ASSOCIATION_TYPES: &[(ObjType, ObjType, u32)] = &[
    (ObjType::Calls, ObjType::Contacts, 194),
    (ObjType::Contacts, ObjType::Calls, 193),
    (ObjType::Calls, ObjType::Companies, 182),
    (ObjType::Companies, ObjType::Calls, 181),
    (ObjType::Contacts, ObjType::Companies, 279),
    (ObjType::Companies, ObjType::Contacts, 280),
];

/// The default (unlabeled) association type id from one type to another.
pub fn default_association(from: ObjType, to: ObjType) -> Option<u32> {
    ASSOCIATION_TYPES
        .iter()
        .find(|(f, t, _)| *f == from && *t == to)
        .map(|(_, _, id)| *id)
}

/// The type id of the other direction of `type_id`.
pub fn inverse_association(type_id: u32) -> Option<u32> {
    let (f, t, _) = ASSOCIATION_TYPES.iter().find(|(_, _, id)| *id == type_id)?;
    default_association(*t, *f)
}

/// A CRM record.
#[derive(Debug, Clone)]
pub struct Record {
    pub id: u64,
    pub kind: ObjType,
    pub props: BTreeMap<String, String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub archived: bool,
    /// Search finds it from this time on (search-index lag).
    pub searchable_ms: i64,
}

impl Record {
    /// A property, the system ones included.
    pub fn prop(&self, name: &str) -> Option<String> {
        if name == "hs_object_id" {
            return Some(self.id.to_string());
        }
        if name == self.kind.created_property() {
            return Some(iso(self.created_ms));
        }
        if name == self.kind.modified_property() {
            return Some(iso(self.updated_ms));
        }
        self.props.get(name).cloned()
    }

    /// The API's JSON form with `names` (or the defaults) as properties.
    pub fn to_json(&self, names: &[String]) -> Value {
        let mut props = Map::new();
        let defaults: Vec<String>;
        let names = if names.is_empty() {
            defaults = self
                .kind
                .default_properties()
                .iter()
                .map(|s| s.to_string())
                .collect();
            &defaults
        } else {
            names
        };
        for n in names {
            props.insert(n.clone(), self.prop(n).map_or(Value::Null, Value::String));
        }
        for always in [
            "hs_object_id",
            self.kind.created_property(),
            self.kind.modified_property(),
        ] {
            if let Some(v) = self.prop(always) {
                props.entry(always.to_string()).or_insert(Value::String(v));
            }
        }
        json!({
            "id": self.id.to_string(),
            "properties": props,
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
            "archived": self.archived,
        })
    }
}

/// A CRM owner (a user of the account who can own records).
#[derive(Debug, Clone)]
pub struct Owner {
    pub id: u64,
    pub user_id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub archived: bool,
    pub created_ms: i64,
    pub updated_ms: i64,
}

impl Owner {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "email": self.email,
            "type": "PERSON",
            "firstName": self.first_name,
            "lastName": self.last_name,
            "userId": self.user_id,
            "userIdIncludingInactive": self.user_id,
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
            "archived": self.archived,
            "teams": [],
        })
    }
}

/// One association between two records (both directions are answered
/// from it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    pub from: (ObjType, u64),
    pub to: (ObjType, u64),
    pub type_id: u32,
    pub category: String,
}

/// CRM data.
#[derive(Debug, Default)]
pub struct Crm {
    pub next_id: u64,
    pub records: BTreeMap<u64, Record>,
    pub owners: Vec<Owner>,
    pub associations: Vec<Association>,
}

impl Crm {
    pub fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn get(&self, kind: ObjType, id: u64) -> Option<&Record> {
        self.records
            .get(&id)
            .filter(|r| r.kind == kind && !r.archived)
    }

    /// Adds a HubSpot-defined association.
    pub fn link(&mut self, from: (ObjType, u64), to: (ObjType, u64), type_id: u32) {
        self.associations.push(Association {
            from,
            to,
            type_id,
            category: "HUBSPOT_DEFINED".into(),
        });
    }

    /// Associations touching `(kind, id)` towards `to`: (other id, type id,
    /// category) as seen from `(kind, id)`.
    pub fn associated(&self, kind: ObjType, id: u64, to: ObjType) -> Vec<(u64, u32, String)> {
        let mut out = Vec::new();
        for a in &self.associations {
            if a.from == (kind, id) && a.to.0 == to {
                out.push((a.to.1, a.type_id, a.category.clone()));
            } else if a.to == (kind, id) && a.from.0 == to {
                let t = inverse_association(a.type_id).unwrap_or(a.type_id);
                out.push((a.from.1, t, a.category.clone()));
            }
        }
        out
    }
}

/// A user who can log in (and an owner).
#[derive(Debug, Clone)]
pub struct Account {
    pub user: User,
    pub user_id: u64,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: u64,
    pub scopes: Vec<String>,
    pub expires_ms: i64,
}

#[derive(Debug, Clone)]
pub struct AccessToken {
    pub client_id: String,
    pub user_id: u64,
    pub scopes: Vec<String>,
    pub expires_ms: i64,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub client_id: String,
    pub user_id: u64,
    pub scopes: Vec<String>,
}

/// Token endpoint counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenStats {
    pub authorization_code_grants: u64,
    pub refresh_grants: u64,
    pub revocations: u64,
    pub failed_token_requests: u64,
}

/// Everything OAuth.
#[derive(Debug, Default)]
pub struct Auth {
    pub apps: BTreeMap<String, App>,
    pub accounts: Vec<Account>,
    pub codes: HashMap<String, AuthCode>,
    pub access: HashMap<String, AccessToken>,
    pub refresh: HashMap<String, RefreshToken>,
    pub stats: TokenStats,
}

impl Auth {
    /// The login e-mail address of a user (empty if unknown).
    pub fn email_of(&self, user_id: u64) -> String {
        self.accounts
            .iter()
            .find(|a| a.user_id == user_id)
            .map(|a| a.user.email.clone())
            .unwrap_or_default()
    }
}

/// Switchable faults.
#[derive(Debug, Default)]
pub struct FaultState {
    pub drop_next: AtomicU32,
    pub fail_next: AtomicU32,
    pub fail_status: AtomicU32,
    pub latency_ms: AtomicU64,
}

/// The rolling 10-second window and the daily count.
#[derive(Debug, Default)]
pub struct RateState {
    pub max_per_10s: u32,
    /// `None`: no daily limit (HubSpot's case for OAuth apps), and no
    /// Daily headers.
    pub daily_max: Option<u64>,
    pub daily_used: u64,
    pub day: i64,
    /// Times (ms) of the requests counted in the last 10 seconds.
    pub window: VecDeque<i64>,
    /// Searches allowed per second (`None`: no limit of their own).
    pub search_per_second: Option<u32>,
    /// Times (ms) of the searches counted in the last second.
    pub search_window: VecDeque<i64>,
}

pub const INTERVAL_MS: i64 = 10_000;

/// What the rate-limit headers say, and whether the request may go on.
#[derive(Debug, Clone, Copy)]
pub struct RateVerdict {
    pub allowed: bool,
    pub max: u32,
    pub remaining: u32,
    pub secondly: u32,
    pub secondly_remaining: u32,
    /// (limit, remaining) when there is a daily limit.
    pub daily: Option<(u64, u64)>,
    /// Milliseconds until a slot frees up (when not allowed).
    pub retry_after_ms: i64,
}

impl RateState {
    /// Counts a search at `now` if the search budget allows it; else the
    /// milliseconds until it does.
    pub fn check_search(&mut self, now: i64) -> Result<(), i64> {
        let Some(max) = self.search_per_second else {
            return Ok(());
        };
        while self.search_window.front().is_some_and(|t| *t <= now - 1000) {
            self.search_window.pop_front();
        }
        if (self.search_window.len() as u64) < u64::from(max) {
            self.search_window.push_back(now);
            return Ok(());
        }
        Err(self
            .search_window
            .front()
            .map_or(1000, |t| (t + 1000 - now).max(1)))
    }

    /// Counts a request at `now` if the budget allows it.
    pub fn check(&mut self, now: i64) -> RateVerdict {
        let day = now.div_euclid(86_400_000);
        if day != self.day {
            self.day = day;
            self.daily_used = 0;
        }
        while self.window.front().is_some_and(|t| *t <= now - INTERVAL_MS) {
            self.window.pop_front();
        }
        let allowed = (self.window.len() as u64) < u64::from(self.max_per_10s)
            && self.daily_max.is_none_or(|m| self.daily_used < m);
        if allowed {
            self.window.push_back(now);
            self.daily_used += 1;
        }
        let used = self.window.len() as u32;
        let secondly = self.max_per_10s.div_ceil(10);
        let last_second = self.window.iter().filter(|t| **t > now - 1000).count() as u32;
        let retry_after_ms = if allowed {
            0
        } else {
            self.window
                .front()
                .map_or(1000, |t| (t + INTERVAL_MS - now).max(1))
        };
        RateVerdict {
            allowed,
            max: self.max_per_10s,
            remaining: self.max_per_10s.saturating_sub(used),
            secondly,
            secondly_remaining: secondly.saturating_sub(last_second),
            daily: self
                .daily_max
                .map(|m| (m, m.saturating_sub(self.daily_used))),
            retry_after_ms,
        }
    }
}

/// Runtime settings (changeable through the handle).
#[derive(Debug, Clone)]
pub struct Settings {
    pub code_lifetime_ms: i64,
    pub access_token_lifetime_ms: i64,
    pub search_lag_ms: i64,
}

/// State shared by every connection and by the library handle.
#[derive(Debug)]
pub struct Shared {
    pub base_url: String,
    pub hub_id: u64,
    pub hub_domain: String,
    /// Added to the wall clock: tests move time forward with it.
    pub clock_offset_ms: AtomicI64,
    pub crm: Mutex<Crm>,
    pub auth: Mutex<Auth>,
    pub faults: FaultState,
    pub rate: Mutex<RateState>,
    pub requests: Mutex<BTreeMap<String, u64>>,
    pub settings: Mutex<Settings>,
}

impl Shared {
    /// The emulator's now, in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        emulator_kit::time::now_ms() + self.clock_offset_ms.load(Ordering::SeqCst)
    }

    pub fn count_request(&self, key: String) {
        *lock(&self.requests).entry(key).or_insert(0) += 1;
    }

    pub fn settings(&self) -> Settings {
        lock(&self.settings).clone()
    }

    /// A new random token text.
    pub fn token(prefix: &str) -> String {
        let a: u128 = rand::random();
        let b: u64 = rand::random();
        format!("{prefix}{a:032x}{b:016x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolling_window_refuses_past_the_budget_and_frees_slots() {
        let mut r = RateState {
            max_per_10s: 3,
            daily_max: Some(100),
            ..RateState::default()
        };
        let t = 1_700_000_000_000;
        assert!(r.check(t).allowed);
        assert!(r.check(t + 100).allowed);
        let v = r.check(t + 200);
        assert!(v.allowed && v.remaining == 0);
        let v = r.check(t + 300);
        assert!(!v.allowed);
        assert_eq!(v.retry_after_ms, 9_700);
        assert!(r.check(t + INTERVAL_MS).allowed);
        assert_eq!(r.daily_used, 4);
    }

    #[test]
    fn associations_have_inverses() {
        assert_eq!(
            default_association(ObjType::Calls, ObjType::Contacts),
            Some(194)
        );
        assert_eq!(inverse_association(194), Some(193));
        assert_eq!(inverse_association(182), Some(181));
        assert_eq!(inverse_association(279), Some(280));
        assert_eq!(inverse_association(7), None);
    }

    #[test]
    fn dates_are_written_with_z() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
    }
}
