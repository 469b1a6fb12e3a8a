//! Associations between Salesforce users and PBX extensions: the users page
//! (synced users merged with associations and the PBX directory), the
//! automatic proposal, the atomic save, and the lookups the call features
//! use.
//!
//! Stored as one record under `associations` ([`AssociationSet`]): one key
//! makes a save one compare-and-swap, and the snapshot of each user keeps a
//! name to show after the user left Salesforce's active list.
//!
//! States (WIT `association-state`), per user of the users page:
//! - `associated`: the user is in the synced list and the extension exists;
//! - `unassociated`: the user is in the list without an extension;
//! - `stale-extension`: the user is in the list, the extension no longer
//!   exists in the PBX directory;
//! - `stale-user`: an association whose user is no longer in the synced
//!   (active) list; shown from the snapshot until the administrator saves a
//!   set without it (a save refuses to keep it).
//!
//! The lookups (`user_for_extension`, `extension_for_user`) answer only for
//! `associated` pairs. A stale pair answers `None`: a call must not be
//! logged for a deactivated user (Salesforce refuses inactive owners), nor
//! be attributed through an extension number the PBX dropped and may give
//! to someone else.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::bindings::exports::pbx::crm::integration::{
    Association, AssociationState, CrmUser, Proposal, Unmatched, UnmatchedReason, UserEntry,
    UserList,
};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::matching::{self, Reason};
use crate::record::{self, Replaced, Versioned};
use crate::salesforce::ids;
use crate::store::{Store, keys};
use crate::users::{UserRecord, Users};

/// The saved associations, stored under `associations`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationSet {
    /// Bumped by every save; 0 before the first.
    pub version: u64,
    /// One entry per associated user; no extension twice.
    pub entries: Vec<SavedAssociation>,
}

impl Versioned for AssociationSet {
    fn version(&self) -> u64 {
        self.version
    }
    fn set_version(&mut self, version: u64) {
        self.version = version;
    }
}

/// One saved pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAssociation {
    /// The Salesforce user's id.
    pub user_id: String,
    /// The extension number.
    pub extension: String,
    /// The user as it was when saved, to show if the user leaves the list.
    pub user: UserSnapshot,
}

/// What a stale user is shown with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSnapshot {
    /// Full name.
    pub name: String,
    /// Login name.
    pub username: String,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl From<&UserRecord> for UserSnapshot {
    fn from(u: &UserRecord) -> Self {
        Self {
            name: u.name.clone(),
            username: u.username.clone(),
            email: u.email.clone(),
        }
    }
}

/// "Ann (005...)", or the bare id when the name is unknown.
fn who(name: Option<&str>, id: &str) -> String {
    match name.filter(|n| !n.trim().is_empty()) {
        Some(name) => format!("{name} ({id})"),
        None => format!("Salesforce user {id}"),
    }
}

/// The association feature over a host.
pub struct Associations<'h, H: Host> {
    host: &'h H,
}

impl<'h, H: Host> Associations<'h, H> {
    /// The feature over `host`.
    pub fn new(host: &'h H) -> Self {
        Self { host }
    }

    fn store(&self) -> Store<'h, H> {
        Store::new(self.host)
    }

    /// The saved set with the raw bytes it was read as (`None`: never saved).
    fn read(&self) -> Result<(AssociationSet, Option<Vec<u8>>), PluginError> {
        Ok(match self.store().get_with_raw(keys::ASSOCIATIONS)? {
            Some((set, raw)) => (set, Some(raw)),
            None => (AssociationSet::default(), None),
        })
    }

    /// The saved set.
    pub fn saved(&self) -> Result<AssociationSet, PluginError> {
        Ok(self.read()?.0)
    }

    /// The synced active users (empty before the first sync) and when they
    /// were synced.
    fn active_users(&self) -> Result<(Vec<UserRecord>, Option<u64>), PluginError> {
        Ok(match Users::new(self.host).load()? {
            Some((index, mut users)) => {
                users.retain(|u| u.active);
                (users, Some(index.synced_at_ms))
            }
            None => (Vec::new(), None),
        })
    }

    /// The extension numbers the PBX has now.
    fn directory(&self) -> HashSet<String> {
        self.host
            .extensions()
            .into_iter()
            .map(|e| e.number)
            .collect()
    }

    /// The users page: every synced user in Salesforce's order (by name)
    /// with its extension and state, then the stale users (associations
    /// whose user left the list) by name.
    pub fn list_users(&self) -> Result<UserList, PluginError> {
        let (users, synced_at_ms) = self.active_users()?;
        let set = self.saved()?;
        let directory = self.directory();
        let by_user: HashMap<&str, &SavedAssociation> = set
            .entries
            .iter()
            .map(|a| (a.user_id.as_str(), a))
            .collect();
        let mut entries = Vec::with_capacity(users.len() + set.entries.len());
        let mut listed: HashSet<&str> = HashSet::with_capacity(users.len());
        for user in &users {
            listed.insert(user.id.as_str());
            let (extension, state) = match by_user.get(user.id.as_str()) {
                Some(a) if directory.contains(&a.extension) => {
                    (Some(a.extension.clone()), AssociationState::Associated)
                }
                Some(a) => (Some(a.extension.clone()), AssociationState::StaleExtension),
                None => (None, AssociationState::Unassociated),
            };
            entries.push(UserEntry {
                user: user.to_crm_user(),
                extension,
                state,
            });
        }
        let mut stale: Vec<&SavedAssociation> = set
            .entries
            .iter()
            .filter(|a| !listed.contains(a.user_id.as_str()))
            .collect();
        stale.sort_by(|a, b| a.user.name.cmp(&b.user.name));
        entries.extend(stale.into_iter().map(|a| UserEntry {
            user: CrmUser {
                id: a.user_id.clone(),
                name: a.user.name.clone(),
                username: a.user.username.clone(),
                email: a.user.email.clone(),
                active: false,
                kind: None,
            },
            extension: Some(a.extension.clone()),
            state: AssociationState::StaleUser,
        }));
        Ok(UserList {
            entries,
            version: set.version,
            synced_at_ms,
        })
    }

    /// Propose associations by e-mail address (see [`matching::propose`]);
    /// stores nothing.
    pub fn propose(&self) -> Result<Proposal, PluginError> {
        let (users, synced_at) = self.active_users()?;
        if synced_at.is_none() {
            return Err(PluginError::InvalidInput(
                "no Salesforce users are synced yet: sync the users first, then propose again"
                    .into(),
            ));
        }
        let extensions = self.host.extensions();
        let version = self.saved()?.version;
        let result = matching::propose(&users, &extensions);
        let strings = |v: Vec<&str>| v.into_iter().map(str::to_string).collect();
        Ok(Proposal {
            matches: result
                .matches
                .iter()
                .map(|m| Association {
                    user_id: m.user_id.to_string(),
                    extension: m.extension.to_string(),
                })
                .collect(),
            unmatched: result
                .unmatched
                .into_iter()
                .map(|u| Unmatched {
                    user_id: u.user_id.to_string(),
                    reason: match u.reason {
                        Reason::NoEmail => UnmatchedReason::NoEmail,
                        Reason::NoExtension => UnmatchedReason::NoExtension,
                        Reason::SharedEmail(exts) => UnmatchedReason::SharedEmail(strings(exts)),
                        Reason::SharedUserEmail(ids) => {
                            UnmatchedReason::SharedUserEmail(strings(ids))
                        }
                    },
                })
                .collect(),
            version,
        })
    }

    /// Replace the whole set with `list` if the stored version is still
    /// `expected_version`; returns the new version.
    ///
    /// The set must be one-to-one, every extension must exist in the PBX
    /// directory now, and every user must be in the synced list (a stale
    /// user cannot be kept: drop it or give its extension to someone else).
    /// Nothing is stored on any error.
    pub fn save(&self, expected_version: u64, list: &[Association]) -> Result<u64, PluginError> {
        let (current, current_raw) = match self.read() {
            Ok(read) => read,
            // An unreadable record is already lost; refusing to overwrite it
            // would leave the administrator stuck. The raw bytes still guard
            // the write against a concurrent save.
            Err(PluginError::Corrupt { reason, .. }) => {
                self.host.log(
                    Level::Warn,
                    &format!(
                        "the stored associations are unreadable ({reason}); this save replaces them"
                    ),
                );
                let raw = self.store().get_raw(keys::ASSOCIATIONS)?;
                let lost = AssociationSet {
                    version: expected_version,
                    entries: Vec::new(),
                };
                (lost, raw)
            }
            Err(e) => return Err(e),
        };
        if current.version != expected_version {
            return Err(conflict(current.version));
        }
        let (users, _) = self.active_users()?;
        let by_id: HashMap<&str, &UserRecord> = users.iter().map(|u| (u.id.as_str(), u)).collect();
        let stale_names: HashMap<&str, &str> = current
            .entries
            .iter()
            .map(|a| (a.user_id.as_str(), a.user.name.as_str()))
            .collect();
        let name_of = |id: &str| {
            by_id
                .get(id)
                .map(|u| u.name.as_str())
                .or_else(|| stale_names.get(id).copied())
        };

        // Typed ids may be 15 characters: compare the 18-character form.
        let mut typed: Vec<(String, &str)> = Vec::with_capacity(list.len());
        for a in list {
            let (user_id, extension) = (a.user_id.trim(), a.extension.trim());
            if user_id.is_empty() || extension.is_empty() {
                return Err(PluginError::InvalidInput(
                    "an association lacks its Salesforce user or its extension number: choose both, or remove the row".into(),
                ));
            }
            typed.push((ids::normalize(user_id, "user id")?, extension));
        }
        // One-to-one, over the whole set.
        let mut ext_owner: HashMap<&str, &str> = HashMap::with_capacity(list.len());
        let mut user_ext: HashMap<&str, &str> = HashMap::with_capacity(list.len());
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(list.len());
        for (user_id, extension) in &typed {
            let (user_id, extension) = (user_id.as_str(), *extension);
            match (ext_owner.get(extension), user_ext.get(user_id)) {
                // The same pair twice: harmless, keep one.
                (Some(&owner), _) if owner == user_id => continue,
                (Some(&owner), _) => {
                    return Err(PluginError::InvalidInput(format!(
                        "extension {extension} is given to both {} and {}: one extension belongs to one Salesforce user",
                        who(name_of(owner), owner),
                        who(name_of(user_id), user_id)
                    )));
                }
                (None, Some(&other)) => {
                    return Err(PluginError::InvalidInput(format!(
                        "{} is given both extension {other} and extension {extension}: one Salesforce user has one extension",
                        who(name_of(user_id), user_id)
                    )));
                }
                (None, None) => {}
            }
            ext_owner.insert(extension, user_id);
            user_ext.insert(user_id, extension);
            pairs.push((user_id, extension));
        }

        // Everything must exist now: the directory and the user list may
        // have changed since the page was loaded.
        let directory = self.directory();
        let mut entries = Vec::with_capacity(pairs.len());
        for (user_id, extension) in pairs {
            if !directory.contains(extension) {
                return Err(PluginError::InvalidInput(format!(
                    "extension {extension} does not exist on the PBX: reload and re-assign {}",
                    who(name_of(user_id), user_id)
                )));
            }
            let Some(user) = by_id.get(user_id) else {
                return Err(PluginError::InvalidInput(match stale_names.get(user_id) {
                    Some(name) => format!(
                        "{} is no longer an active Salesforce user (deactivated or removed): remove the association or give extension {extension} to someone else, then save",
                        who(Some(name), user_id)
                    ),
                    None => format!(
                        "Salesforce user {user_id} is not in the synced user list: sync the users, reload and re-assign"
                    ),
                }));
            };
            entries.push(SavedAssociation {
                user_id: user_id.to_string(),
                extension: extension.to_string(),
                user: UserSnapshot::from(*user),
            });
        }

        let mut next = AssociationSet {
            version: current.version + 1,
            entries,
        };
        // The precondition is the exact record read, which carries the
        // version checked above: a save in between makes this one fail.
        match record::replace_version(
            &self.store(),
            keys::ASSOCIATIONS,
            current.version,
            current_raw,
            &mut next,
        )? {
            Replaced::Written(version) => {
                self.host.log(
                    Level::Info,
                    &format!(
                        "associations saved: {} users with an extension (version {version})",
                        next.entries.len(),
                    ),
                );
                Ok(version)
            }
            Replaced::Stale(_) => {
                let now = self.saved().map(|s| s.version).unwrap_or(current.version);
                Err(conflict(now))
            }
        }
    }

    /// The user associated with `extension`, only when the pair is
    /// `associated` (the user is in the synced active list and the
    /// extension exists in the directory); stale pairs give `None`.
    pub fn user_for_extension(&self, extension: &str) -> Result<Option<CrmUser>, PluginError> {
        let extension = extension.trim();
        let set = self.saved()?;
        let Some(a) = set.entries.iter().find(|a| a.extension == extension) else {
            return Ok(None);
        };
        if self.host.extension(&a.extension).is_none() {
            return Ok(None);
        }
        Ok(Users::new(self.host)
            .find(&a.user_id)?
            .map(|u| u.to_crm_user()))
    }

    /// The extension associated with `user_id`, only when the pair is
    /// `associated` (see `user_for_extension`).
    /// `user_id` may be typed in its 15-character form; a malformed one is
    /// refused, naming the fix.
    pub fn extension_for_user(&self, user_id: &str) -> Result<Option<String>, PluginError> {
        let user_id = ids::normalize(user_id, "user id")?;
        let set = self.saved()?;
        let Some(a) = set.entries.into_iter().find(|a| a.user_id == user_id) else {
            return Ok(None);
        };
        if self.host.extension(&a.extension).is_none()
            || Users::new(self.host).find(&user_id)?.is_none()
        {
            return Ok(None);
        }
        Ok(Some(a.extension))
    }
}

/// The error for a save that lost against another one.
fn conflict(now: u64) -> PluginError {
    PluginError::Conflict(format!(
        "the associations were saved by someone else meanwhile (now version {now}): reload, check, and save again"
    ))
}
