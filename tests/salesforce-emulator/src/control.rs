//! Inspection and control of a running org, shared by the library handle
//! ([`crate::Emulator`], [`crate::Faults`]) and the `/__admin/` endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::config::{ConnectedApp, RefreshTokenPolicy};
use crate::error::EmulatorError;
use crate::oauth::{self, TokenResponse};
use crate::state::{Shared, TokenStats, lock, read, write};
use crate::store::WriteCtx;
use crate::time;

/// Switches faults on and off at run time. Cheap to clone; every clone
/// controls the same emulator.
#[derive(Debug, Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl Faults {
    /// Every access token dies now: the next REST call answers
    /// `401 INVALID_SESSION_ID` (refresh tokens stay valid).
    pub fn expire_sessions(&self) {
        lock(&self.shared.auth).sessions.clear();
    }

    /// Every refresh token is revoked (refreshes answer `invalid_grant`).
    pub fn revoke_refresh_tokens(&self) {
        lock(&self.shared.auth).refresh.clear();
    }

    /// The next `n` requests (any endpoint but `/__admin/`) answer `status`
    /// with a Salesforce error body.
    pub fn fail_requests(&self, n: u32, status: u16) {
        self.shared
            .faults
            .fail_status
            .store(u32::from(status), Ordering::SeqCst);
        self.shared.faults.fail_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` REST requests answer `403 REQUEST_LIMIT_EXCEEDED`.
    pub fn limit_exceeded(&self, n: u32) {
        self.shared.faults.limit_next.store(n, Ordering::SeqCst);
    }

    /// Every request (but `/__admin/`) waits this long before it is handled.
    pub fn latency(&self, d: Duration) {
        self.shared
            .faults
            .latency_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// The next `n` requests get their connection closed without an answer.
    pub fn drop_connections(&self, n: u32) {
        self.shared.faults.drop_next.store(n, Ordering::SeqCst);
    }

    /// The next `n` token answers carry a signature that does not match
    /// (what a proxy altering the answer would cause).
    pub fn tamper_signatures(&self, n: u32) {
        self.shared
            .faults
            .tamper_signatures
            .store(n, Ordering::SeqCst);
    }

    /// Records created from now on stay invisible to SOSL for `d`.
    pub fn search_lag(&self, d: Duration) {
        self.shared
            .faults
            .search_lag_ms
            .store(d.as_millis() as u64, Ordering::SeqCst);
    }

    /// Sets the daily API budget: `used` of `max`.
    pub fn set_api_usage(&self, used: u64, max: u64) {
        let mut api = lock(&self.shared.api);
        api.used = used;
        api.max = max;
    }

    /// Turns every countdown, latency and lag off.
    pub fn clear(&self) {
        let f = &self.shared.faults;
        for c in [
            &f.drop_next,
            &f.fail_next,
            &f.limit_next,
            &f.tamper_signatures,
        ] {
            c.store(0, Ordering::SeqCst);
        }
        f.latency_ms.store(0, Ordering::SeqCst);
        f.search_lag_ms.store(0, Ordering::SeqCst);
    }

    /// Current fault settings, as JSON.
    pub fn status(&self) -> Value {
        let f = &self.shared.faults;
        json!({
            "drop_connections": f.drop_next.load(Ordering::SeqCst),
            "fail_requests": f.fail_next.load(Ordering::SeqCst),
            "fail_status": f.fail_status.load(Ordering::SeqCst),
            "limit_exceeded": f.limit_next.load(Ordering::SeqCst),
            "latency_ms": f.latency_ms.load(Ordering::SeqCst),
            "search_lag_ms": f.search_lag_ms.load(Ordering::SeqCst),
            "tamper_signatures": f.tamper_signatures.load(Ordering::SeqCst),
        })
    }

    /// Applies a `POST /__admin/faults` body.
    pub fn apply(&self, req: &FaultRequest) {
        if req.clear {
            self.clear();
        }
        if req.expire_sessions {
            self.expire_sessions();
        }
        if req.revoke_refresh_tokens {
            self.revoke_refresh_tokens();
        }
        if let Some(f) = &req.fail_requests {
            self.fail_requests(f.count, f.status.unwrap_or(503));
        }
        if let Some(n) = req.limit_exceeded {
            self.limit_exceeded(n);
        }
        if let Some(ms) = req.latency_ms {
            self.latency(Duration::from_millis(ms));
        }
        if let Some(n) = req.drop_connections {
            self.drop_connections(n);
        }
        if let Some(ms) = req.search_lag_ms {
            self.search_lag(Duration::from_millis(ms));
        }
        if let Some(n) = req.tamper_signatures {
            self.tamper_signatures(n);
        }
        if let Some(u) = &req.api_usage {
            let max = u.max.unwrap_or_else(|| lock(&self.shared.api).max);
            self.set_api_usage(u.used, max);
        }
    }
}

/// `{"count": N, "status": 503}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FailSpec {
    pub count: u32,
    pub status: Option<u16>,
}

/// `{"used": N, "max": M}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApiUsageSpec {
    pub used: u64,
    pub max: Option<u64>,
}

/// The body of `POST /__admin/faults`; every member is optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRequest {
    pub clear: bool,
    pub expire_sessions: bool,
    pub revoke_refresh_tokens: bool,
    pub fail_requests: Option<FailSpec>,
    pub limit_exceeded: Option<u32>,
    pub latency_ms: Option<u64>,
    pub drop_connections: Option<u32>,
    pub search_lag_ms: Option<u64>,
    pub tamper_signatures: Option<u32>,
    pub api_usage: Option<ApiUsageSpec>,
}

/// A user to add at run time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewUser {
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    /// Defaults to the e-mail address.
    pub username: Option<String>,
    /// Defaults to the emulator's admin password.
    pub password: Option<String>,
    pub extension: Option<String>,
    pub phone: Option<String>,
    pub is_active: Option<bool>,
    /// Salesforce's `UserType`: `Standard` (the default), `CsnOnly`
    /// (Chatter Free), `PowerPartner` or `CspLitePortal` (community),
    /// `AutomatedProcess`, ...
    pub user_type: Option<String>,
}

/// Changes to a connected app's settings; unset members stay.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppUpdate {
    pub pkce_required: Option<bool>,
    pub rotate_refresh_tokens: Option<bool>,
    pub require_secret: Option<bool>,
    pub require_secret_for_refresh: Option<bool>,
    pub code_lifetime_secs: Option<u64>,
    pub refresh_token_policy: Option<RefreshTokenPolicy>,
    pub callback_urls: Option<Vec<String>>,
    pub consumer_secret: Option<String>,
}

impl Shared {
    pub fn records(&self, object: &str) -> Vec<Value> {
        let org = read(&self.org);
        org.table(object)
            .map(|t| t.to_json(crate::rest::CURRENT_VERSION))
            .unwrap_or_default()
    }

    pub fn token_stats(&self) -> TokenStats {
        lock(&self.auth).stats.clone()
    }

    pub fn live_tokens(&self) -> Vec<String> {
        let auth = lock(&self.auth);
        auth.sessions
            .keys()
            .chain(auth.refresh.keys())
            .cloned()
            .collect()
    }

    pub fn live_tokens_of(&self, user_id: &str) -> usize {
        let auth = lock(&self.auth);
        auth.sessions
            .values()
            .filter(|s| s.user_id == user_id)
            .count()
            + auth
                .refresh
                .values()
                .filter(|g| g.user_id == user_id)
                .count()
    }

    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.requests).clone()
    }

    pub fn add_user(&self, u: &NewUser) -> Result<String, EmulatorError> {
        let mut f = Map::new();
        f.insert("FirstName".into(), json!(u.first_name));
        f.insert("LastName".into(), json!(u.last_name));
        f.insert("Email".into(), json!(u.email));
        f.insert(
            "Username".into(),
            json!(u.username.clone().unwrap_or_else(|| u.email.clone())),
        );
        f.insert("IsActive".into(), json!(u.is_active.unwrap_or(true)));
        if let Some(e) = &u.extension {
            f.insert("Extension".into(), json!(e));
        }
        if let Some(p) = &u.phone {
            f.insert("Phone".into(), json!(p));
        }
        if let Some(t) = &u.user_type {
            f.insert("UserType".into(), json!(t));
        }
        let mut org = write(&self.org);
        if org
            .user_by_username(f["Username"].as_str().unwrap_or(""))
            .is_some()
        {
            return Err(EmulatorError::Record(vec![crate::error::ApiError::new(
                "DUPLICATE_USERNAME",
                "Duplicate Username.",
            )]));
        }
        let admin = org
            .users
            .records
            .first()
            .map(|r| r.id().to_string())
            .unwrap_or_default();
        let ctx = WriteCtx {
            user_id: admin,
            now_ms: time::now_ms(),
            system: true,
            searchable_at: None,
        };
        let id = org
            .insert("User", &f, &ctx)
            .map_err(EmulatorError::Record)?;
        drop(org);
        let pw = u
            .password
            .clone()
            .unwrap_or_else(|| read(&self.settings).admin_password.clone());
        lock(&self.auth).passwords.insert(id.clone(), pw);
        Ok(id)
    }

    pub fn set_user_active(&self, id: &str, active: bool) -> Result<(), EmulatorError> {
        let mut f = Map::new();
        f.insert("IsActive".into(), json!(active));
        self.update_user(id, &f)
    }

    /// Changes a user's fields as an administrator in Setup would (system
    /// fields such as `UserType` and `IsActive` included); like every
    /// change, it bumps `LastModifiedDate` and `SystemModstamp`.
    pub fn update_user(&self, id: &str, fields: &Map<String, Value>) -> Result<(), EmulatorError> {
        let mut org = write(&self.org);
        let admin = org
            .users
            .records
            .first()
            .map(|r| r.id().to_string())
            .unwrap_or_default();
        let ctx = WriteCtx {
            user_id: admin,
            now_ms: time::now_ms(),
            system: true,
            searchable_at: None,
        };
        if org.users.get(id).is_none() {
            return Err(EmulatorError::UnknownUser(id.to_string()));
        }
        org.update("User", id, fields, &ctx)
            .map_err(EmulatorError::Record)
    }

    /// Creates a record with system privileges (any field, no API usage).
    pub fn insert_record(
        &self,
        object: &str,
        fields: &Map<String, Value>,
    ) -> Result<String, EmulatorError> {
        let mut org = write(&self.org);
        let admin = org
            .users
            .records
            .first()
            .map(|r| r.id().to_string())
            .unwrap_or_default();
        let lag = self.search_lag();
        let ctx = WriteCtx {
            user_id: admin,
            now_ms: time::now_ms(),
            system: true,
            searchable_at: (!lag.is_zero()).then(|| std::time::Instant::now() + lag),
        };
        org.insert(object, fields, &ctx)
            .map_err(EmulatorError::Record)
    }

    pub fn add_app(&self, app: ConnectedApp) {
        lock(&self.auth).apps.insert(app.consumer_key.clone(), app);
    }

    pub fn update_app(&self, key: &str, u: &AppUpdate) -> Result<ConnectedApp, EmulatorError> {
        let mut auth = lock(&self.auth);
        let app = auth
            .apps
            .get_mut(key)
            .ok_or_else(|| EmulatorError::UnknownApp(key.to_string()))?;
        if let Some(v) = u.pkce_required {
            app.pkce_required = v;
        }
        if let Some(v) = u.rotate_refresh_tokens {
            app.rotate_refresh_tokens = v;
        }
        if let Some(v) = u.require_secret {
            app.require_secret = v;
        }
        if let Some(v) = u.require_secret_for_refresh {
            app.require_secret_for_refresh = v;
        }
        if let Some(v) = u.code_lifetime_secs {
            app.code_lifetime_secs = Some(v);
        }
        if let Some(v) = &u.refresh_token_policy {
            app.refresh_token_policy = v.clone();
        }
        if let Some(v) = &u.callback_urls {
            app.callback_urls = v.clone();
        }
        if let Some(v) = &u.consumer_secret {
            app.consumer_secret = v.clone();
        }
        Ok(app.clone())
    }

    /// Issues tokens for a user as if the web-server flow had run (counts
    /// as an authorization_code grant of the app).
    pub fn issue_token(
        &self,
        consumer_key: &str,
        username: &str,
    ) -> Result<TokenResponse, EmulatorError> {
        let (org_id, user_id) = {
            let org = read(&self.org);
            let u = org
                .user_by_username(username)
                .ok_or_else(|| EmulatorError::UnknownUser(username.to_string()))?;
            (org.org_id.clone(), u.id().to_string())
        };
        let mut auth = lock(&self.auth);
        let app = auth
            .apps
            .get(consumer_key)
            .cloned()
            .ok_or_else(|| EmulatorError::UnknownApp(consumer_key.into()))?;
        let scopes = app.scopes.clone();
        let wants = scopes
            .iter()
            .any(|s| s == "refresh_token" || s == "offline_access");
        let grant = oauth::Grant {
            org_id: &org_id,
            app: &app,
            user_id: &user_id,
            scopes: &scopes,
            new_refresh: wants,
            existing_refresh: None,
        };
        let tr = oauth::mint(self, &mut auth, grant);
        auth.stats
            .bump(consumer_key, |s| s.authorization_code_grants += 1);
        Ok(tr)
    }

    /// The admin summary.
    /// Turns Person Accounts on or off (the org option; see
    /// [`crate::store::Org::set_person_accounts`]). Open query cursors
    /// point into the old schemas and are dropped.
    pub fn set_person_accounts(&self, on: bool) {
        write(&self.org).set_person_accounts(on);
        lock(&self.cursors).map.clear();
    }

    /// The org's options, as `GET /__admin/org` shows them.
    pub fn org_options(&self) -> Value {
        json!({"person_accounts": read(&self.org).person_accounts})
    }

    pub fn summary(&self) -> Value {
        let (org_id, org_name, person_accounts, counts) = {
            let org = read(&self.org);
            let counts: BTreeMap<&'static str, usize> = org
                .tables()
                .iter()
                .map(|t| (t.schema.name, t.records.len()))
                .collect();
            (
                org.org_id.clone(),
                org.org_name.clone(),
                org.person_accounts,
                counts,
            )
        };
        let auth = lock(&self.auth);
        let apps: Vec<&ConnectedApp> = auth.apps.values().collect();
        let api = lock(&self.api);
        json!({
            "base_url": self.base_url,
            "org_id": org_id,
            "org_name": org_name,
            "person_accounts": person_accounts,
            "record_counts": counts,
            "live_sessions": auth.sessions.len(),
            "live_refresh_tokens": auth.refresh.len(),
            "apps": apps,
            "token_stats": auth.stats,
            "api_usage": {"used": api.used, "max": api.max},
            "request_counts": *lock(&self.requests),
        })
    }
}
