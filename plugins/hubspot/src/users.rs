//! HubSpot's owners as the PBX's CRM users: a sync in steps (each step
//! reads a few pages of `GET /crm/v3/owners`, 100 per page, following
//! `paging.next.after`), then the whole list replaces the stored one in one
//! write. Archived owners are not listed (HubSpot's default), so an
//! association to one becomes stale.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::api::{Hub, segment};
use crate::bindings::exports::pbx::crm::integration::{CrmUser, SyncProgress};
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::matching::UserEmail;
use pbx_crm_sdk::pkce;
use pbx_crm_sdk::store::{Batch, Store};

/// Owners per page (the API's maximum is 500; 100 is what HubSpot's own
/// clients use).
const PAGE: usize = 100;
/// Pages per step: each step stays well inside the call deadline.
const PAGES_PER_STEP: usize = 5;

/// One owner as kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    /// The HubSpot user behind the owner (token information's `user_id`).
    #[serde(default)]
    pub user_id: Option<u64>,
    #[serde(default)]
    pub kind: Option<String>,
}

impl Owner {
    /// "First Last", else the e-mail, else the id.
    pub fn name(&self) -> String {
        let name = format!("{} {}", self.first_name.trim(), self.last_name.trim());
        let name = name.trim();
        if !name.is_empty() {
            name.to_string()
        } else {
            self.email
                .clone()
                .unwrap_or_else(|| format!("Owner {}", self.id))
        }
    }

    pub fn to_crm_user(&self) -> CrmUser {
        CrmUser {
            id: self.id.clone(),
            name: self.name(),
            username: self.email.clone().unwrap_or_default(),
            email: self.email.clone(),
            active: true,
            kind: self.kind.clone(),
        }
    }

    /// One owner of HubSpot's answer; `None` for an archived or id-less one.
    fn from_json(v: &Value) -> Option<Self> {
        if v["archived"].as_bool() == Some(true) {
            return None;
        }
        let id = v["id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| v["id"].as_u64().map(|n| n.to_string()))?;
        let text = |k: &str| pbx_crm_sdk::http::sanitize(v[k].as_str().unwrap_or(""));
        Some(Self {
            id,
            email: v["email"]
                .as_str()
                .filter(|e| !e.trim().is_empty())
                .map(str::to_string),
            first_name: text("firstName"),
            last_name: text("lastName"),
            user_id: v["userId"].as_u64(),
            kind: v["type"].as_str().map(str::to_string),
        })
    }
}

impl UserEmail for Owner {
    fn id(&self) -> &str {
        &self.id
    }
    fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }
}

/// The synced owners.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerList {
    pub synced_at_ms: u64,
    pub owners: Vec<Owner>,
}

/// A sync under way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SyncState {
    nonce: String,
    after: Option<String>,
    owners: Vec<Owner>,
}

/// The owners feature over a host.
pub struct Users<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Users<'h, H> {
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    /// The synced owners, if a sync ever completed.
    pub fn load(&self) -> Result<Option<OwnerList>, PluginError> {
        self.store().get(keys::USERS)
    }

    /// One step of a sync: `None` starts one, a cursor continues it.
    pub fn sync_step(&self, cursor: Option<&str>) -> Result<SyncProgress, PluginError> {
        let store = self.store();
        let mut state = match cursor {
            None => SyncState {
                nonce: pkce::random_token(self.host, 12),
                after: None,
                owners: Vec::new(),
            },
            Some(cursor) => match store.get::<SyncState>(keys::USERS_SYNC)? {
                Some(state) if state.nonce == cursor => state,
                _ => {
                    return Err(PluginError::InvalidInput(
                        "this user sync was replaced by a newer one or has ended; start the sync again"
                            .into(),
                    ));
                }
            },
        };
        let hub = Hub::new(self.host);
        let mut done = false;
        for _ in 0..PAGES_PER_STEP {
            let mut path = format!("/crm/v3/owners?limit={PAGE}&archived=false");
            if let Some(after) = &state.after {
                path.push_str(&format!("&after={}", segment(after)));
            }
            let page = hub.get(&path)?;
            let results = page["results"].as_array().ok_or_else(|| {
                PluginError::CrmUnavailable("HubSpot's owners answer has no results".into())
            })?;
            state
                .owners
                .extend(results.iter().filter_map(Owner::from_json));
            match page["paging"]["next"]["after"].as_str() {
                Some(after) if !after.is_empty() && state.after.as_deref() != Some(after) => {
                    state.after = Some(after.to_string());
                }
                _ => {
                    done = true;
                    break;
                }
            }
        }
        let fetched = u32::try_from(state.owners.len()).unwrap_or(u32::MAX);
        if done {
            let list = OwnerList {
                synced_at_ms: self.host.now_ms(),
                owners: state.owners,
            };
            store.commit(
                &Batch::new()
                    .set(keys::USERS, &list)?
                    .delete(keys::USERS_SYNC),
            )?;
            return Ok(SyncProgress {
                fetched,
                total: fetched,
                cursor: None,
            });
        }
        store.put(keys::USERS_SYNC, &state)?;
        Ok(SyncProgress {
            fetched,
            // The owners API gives no total: at least one more page.
            total: fetched.saturating_add(PAGE as u32),
            cursor: Some(state.nonce),
        })
    }
}
