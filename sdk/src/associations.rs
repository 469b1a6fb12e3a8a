//! Associations between CRM users and PBX extensions, whatever the CRM:
//! the users page (synced users merged with the saved pairs and the PBX
//! directory), the automatic proposal by e-mail ([`crate::matching`]), the
//! atomic save (compare-and-swap on a version) and the lookups the call
//! features use.
//!
//! Stored as one JSON record under one key ([`AssociationSet`]), so a save
//! is one compare-and-swap; each pair keeps a snapshot of its user, to
//! show after the user left the CRM's active list (`stale-user`). A plugin
//! says where its users come from and how its CRM names them by
//! implementing [`CrmUsers`].
//!
//! Lookups answer only for `associated` pairs: a stale pair answers `None`,
//! so a call is not attributed to a deactivated user nor through an
//! extension number the PBX dropped (and may give to someone else).

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::bindings::exports::pbx::crm::integration::{
    Association, AssociationState, CrmUser, Proposal, Unmatched, UnmatchedReason, UserEntry,
    UserList,
};
use crate::bindings::pbx::crm::log::Level;
use crate::error::PluginError;
use crate::host::Host;
use crate::matching::{self, Reason, UserEmail};
use crate::store::{Batch, Repair, Store};

/// The fix for an unreadable associations record: a save replaces it.
pub struct SaveTheAssociations;

impl Repair for SaveTheAssociations {
    fn repair(_key: &str) -> &'static str {
        "save the associations again to replace it"
    }
}

/// Where a plugin's synced CRM users come from, and how its CRM names them.
pub trait CrmUsers {
    /// A synced user.
    type User: UserEmail;
    /// What the CRM calls a user in messages, e.g. "HubSpot owner".
    const NOUN: &'static str;
    /// The synced active users in display order, and when they were synced
    /// (`None`: never).
    fn active_users(&self) -> Result<(Vec<Self::User>, Option<u64>), PluginError>;
    /// The contract's view of a user.
    fn crm_user(&self, user: &Self::User) -> CrmUser;
    /// A user id as typed, in the form the CRM's ids compare in; the
    /// default trims it.
    fn normalize_id(&self, raw: &str) -> Result<String, PluginError> {
        Ok(raw.trim().to_string())
    }
    /// The synced active user with `id` (as [`CrmUsers::normalize_id`]
    /// gives it), or `None`. The call features ask this on every call: the
    /// default reads the whole list, so a plugin with large lists answers
    /// from an index instead.
    fn find(&self, id: &str) -> Result<Option<Self::User>, PluginError> {
        Ok(self.active_users()?.0.into_iter().find(|u| u.id() == id))
    }
}

/// The saved associations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssociationSet {
    /// Bumped by every save; 0 before the first.
    pub version: u64,
    /// One entry per associated user; no extension twice.
    pub entries: Vec<SavedAssociation>,
}

/// One saved pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedAssociation {
    pub user_id: String,
    pub extension: String,
    /// The user as it was when saved.
    pub user: UserSnapshot,
}

/// What a stale user is shown with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSnapshot {
    pub name: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The association feature over a host, under `key`, for the users `U`.
pub struct Associations<'h, H: Host, U: CrmUsers> {
    host: &'h H,
    users: U,
    key: &'static str,
}

impl<'h, H: Host, U: CrmUsers> Associations<'h, H, U> {
    /// The feature over `host`, stored under `key`.
    pub fn new(host: &'h H, users: U, key: &'static str) -> Self {
        Self { host, users, key }
    }

    fn store(&self) -> Store<'h, H, SaveTheAssociations> {
        Store::new(self.host)
    }

    fn who(&self, name: Option<&str>, id: &str) -> String {
        match name.filter(|n| !n.trim().is_empty()) {
            Some(name) => format!("{name} ({id})"),
            None => format!("{} {id}", U::NOUN),
        }
    }

    fn read(&self) -> Result<(AssociationSet, Option<Vec<u8>>), PluginError> {
        Ok(match self.store().get_with_raw(self.key)? {
            Some((set, raw)) => (set, Some(raw)),
            None => (AssociationSet::default(), None),
        })
    }

    /// The saved set.
    pub fn saved(&self) -> Result<AssociationSet, PluginError> {
        Ok(self.read()?.0)
    }

    fn directory(&self) -> HashSet<String> {
        self.host
            .extensions()
            .into_iter()
            .map(|e| e.number)
            .collect()
    }

    /// The users page: every synced user with its extension and state,
    /// then the stale users (pairs whose user left the list) by name.
    pub fn list_users(&self) -> Result<UserList, PluginError> {
        let (users, synced_at_ms) = self.users.active_users()?;
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
            listed.insert(user.id());
            let (extension, state) = match by_user.get(user.id()) {
                Some(a) if directory.contains(&a.extension) => {
                    (Some(a.extension.clone()), AssociationState::Associated)
                }
                Some(a) => (Some(a.extension.clone()), AssociationState::StaleExtension),
                None => (None, AssociationState::Unassociated),
            };
            entries.push(UserEntry {
                user: self.users.crm_user(user),
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

    /// Propose associations by e-mail address; stores nothing.
    pub fn propose(&self) -> Result<Proposal, PluginError> {
        let (users, synced_at) = self.users.active_users()?;
        if synced_at.is_none() {
            return Err(PluginError::InvalidInput(format!(
                "no {}s are synced yet: sync the users first, then propose again",
                U::NOUN
            )));
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
    /// `expected_version`; the new version. The set must be one-to-one,
    /// every extension must exist now and every user must be in the synced
    /// list (a stale user cannot be kept). Nothing is stored on any error.
    pub fn save(&self, expected_version: u64, list: &[Association]) -> Result<u64, PluginError> {
        let (current, current_raw) = match self.read() {
            Ok(read) => read,
            // An unreadable record is lost already; refusing to replace it
            // would leave the administrator stuck. Its raw bytes still
            // guard the write.
            Err(PluginError::Corrupt { reason, .. }) => (
                {
                    self.host.log(
                        Level::Warn,
                        &format!(
                            "the stored associations are unreadable ({reason}); this save replaces them"
                        ),
                    );
                    AssociationSet {
                        version: expected_version,
                        entries: Vec::new(),
                    }
                },
                self.store().get_raw(self.key)?,
            ),
            Err(e) => return Err(e),
        };
        if current.version != expected_version {
            return Err(conflict(current.version));
        }
        let (users, _) = self.users.active_users()?;
        let by_id: HashMap<&str, &U::User> = users.iter().map(|u| (u.id(), u)).collect();
        let stale_names: HashMap<&str, &str> = current
            .entries
            .iter()
            .map(|a| (a.user_id.as_str(), a.user.name.as_str()))
            .collect();
        let crm_users: HashMap<&str, CrmUser> = by_id
            .iter()
            .map(|(id, u)| (*id, self.users.crm_user(u)))
            .collect();
        let name_of = |id: &str| -> Option<String> {
            crm_users
                .get(id)
                .map(|u| u.name.clone())
                .or_else(|| stale_names.get(id).map(|n| n.to_string()))
        };
        let mut typed: Vec<(String, &str)> = Vec::with_capacity(list.len());
        for a in list {
            let (user_id, extension) = (a.user_id.trim(), a.extension.trim());
            if user_id.is_empty() || extension.is_empty() {
                return Err(PluginError::InvalidInput(format!(
                    "an association lacks its {} or its extension number: choose both, or remove the row",
                    U::NOUN
                )));
            }
            typed.push((self.users.normalize_id(user_id)?, extension));
        }
        let mut ext_owner: HashMap<&str, &str> = HashMap::with_capacity(list.len());
        let mut user_ext: HashMap<&str, &str> = HashMap::with_capacity(list.len());
        let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(list.len());
        for (user_id, extension) in &typed {
            let (user_id, extension) = (user_id.as_str(), *extension);
            match (ext_owner.get(extension), user_ext.get(user_id)) {
                (Some(&owner), _) if owner == user_id => continue,
                (Some(&owner), _) => {
                    return Err(PluginError::InvalidInput(format!(
                        "extension {extension} is given to both {} and {}: one extension belongs to one {}",
                        self.who(name_of(owner).as_deref(), owner),
                        self.who(name_of(user_id).as_deref(), user_id),
                        U::NOUN
                    )));
                }
                (None, Some(&other)) => {
                    return Err(PluginError::InvalidInput(format!(
                        "{} is given both extension {other} and extension {extension}: one {} has one extension",
                        self.who(name_of(user_id).as_deref(), user_id),
                        U::NOUN
                    )));
                }
                (None, None) => {}
            }
            ext_owner.insert(extension, user_id);
            user_ext.insert(user_id, extension);
            pairs.push((user_id, extension));
        }
        let directory = self.directory();
        let mut entries = Vec::with_capacity(pairs.len());
        for (user_id, extension) in pairs {
            if !directory.contains(extension) {
                return Err(PluginError::InvalidInput(format!(
                    "extension {extension} does not exist on the PBX: reload and re-assign {}",
                    self.who(name_of(user_id).as_deref(), user_id)
                )));
            }
            let Some(user) = crm_users.get(user_id) else {
                return Err(PluginError::InvalidInput(match stale_names.get(user_id) {
                    Some(name) => format!(
                        "{} is no longer an active {} (deactivated or removed): remove the association or give extension {extension} to someone else, then save",
                        self.who(Some(name), user_id),
                        U::NOUN
                    ),
                    None => format!(
                        "{} {user_id} is not in the synced user list: sync the users, reload and re-assign",
                        U::NOUN
                    ),
                }));
            };
            entries.push(SavedAssociation {
                user_id: user_id.to_string(),
                extension: extension.to_string(),
                user: UserSnapshot {
                    name: user.name.clone(),
                    username: user.username.clone(),
                    email: user.email.clone(),
                },
            });
        }
        let next = AssociationSet {
            version: current.version + 1,
            entries,
        };
        // The exact record read (with the version checked above) is the
        // precondition: a save in between makes this one fail.
        let batch = Batch::new()
            .expect_raw(self.key, current_raw)
            .set(self.key, &next)?;
        match self.store().commit(&batch) {
            Ok(()) => {
                self.host.log(
                    Level::Info,
                    &format!(
                        "associations saved: {} users with an extension (version {})",
                        next.entries.len(),
                        next.version
                    ),
                );
                Ok(next.version)
            }
            Err(PluginError::Conflict(_)) => {
                let now = self.saved().map(|s| s.version).unwrap_or(current.version);
                Err(conflict(now))
            }
            Err(e) => Err(e),
        }
    }

    /// The user associated with `extension`, for `associated` pairs only.
    pub fn user_for_extension(&self, extension: &str) -> Result<Option<CrmUser>, PluginError> {
        let extension = extension.trim();
        let set = self.saved()?;
        let Some(a) = set.entries.iter().find(|a| a.extension == extension) else {
            return Ok(None);
        };
        if self.host.extension(&a.extension).is_none() {
            return Ok(None);
        }
        Ok(self
            .users
            .find(&a.user_id)?
            .map(|u| self.users.crm_user(&u)))
    }

    /// The extension associated with `user_id`, for `associated` pairs only.
    pub fn extension_for_user(&self, user_id: &str) -> Result<Option<String>, PluginError> {
        let user_id = self.users.normalize_id(user_id)?;
        let set = self.saved()?;
        let Some(a) = set.entries.into_iter().find(|a| a.user_id == user_id) else {
            return Ok(None);
        };
        if self.host.extension(&a.extension).is_none() || self.users.find(&user_id)?.is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeHost, extension};

    struct Person {
        id: String,
        email: Option<String>,
    }

    impl UserEmail for Person {
        fn id(&self) -> &str {
            &self.id
        }
        fn email(&self) -> Option<&str> {
            self.email.as_deref()
        }
    }

    /// Two CRM users, one without an e-mail address.
    struct Two;

    impl CrmUsers for Two {
        type User = Person;
        const NOUN: &'static str = "CRM user";
        fn active_users(&self) -> Result<(Vec<Person>, Option<u64>), PluginError> {
            Ok((
                vec![
                    Person {
                        id: "u1".into(),
                        email: Some("a@x.test".into()),
                    },
                    Person {
                        id: "u2".into(),
                        email: None,
                    },
                ],
                Some(1),
            ))
        }
        fn crm_user(&self, u: &Person) -> CrmUser {
            CrmUser {
                id: u.id.clone(),
                name: u.id.to_uppercase(),
                username: u.id.clone(),
                email: u.email.clone(),
                active: true,
                kind: None,
            }
        }
    }

    fn pair(user: &str, ext: &str) -> Association {
        Association {
            user_id: user.into(),
            extension: ext.into(),
        }
    }

    #[test]
    fn a_save_is_versioned_and_a_dropped_extension_turns_stale() {
        let host = FakeHost::default();
        host.set_extensions(vec![extension("100", Some("a@x.test"))]);
        let a = Associations::new(&host, Two, "assoc");
        let proposal = a.propose().map(|p| p.matches.len());
        assert_eq!(proposal.ok(), Some(1));
        assert_eq!(a.save(0, &[pair("u1", "100")]).ok(), Some(1));
        assert!(matches!(
            a.save(0, &[pair("u2", "100")]),
            Err(PluginError::Conflict(_))
        ));
        assert!(matches!(
            a.save(1, &[pair("u1", "100"), pair("u2", "100")]),
            Err(PluginError::InvalidInput(_))
        ));
        assert_eq!(
            a.extension_for_user(" u1 ").ok().flatten().as_deref(),
            Some("100")
        );
        host.set_extensions(Vec::new());
        let states: Vec<AssociationState> = a
            .list_users()
            .map(|l| l.entries.into_iter().map(|e| e.state).collect())
            .unwrap_or_default();
        assert_eq!(
            states,
            vec![
                AssociationState::StaleExtension,
                AssociationState::Unassociated
            ]
        );
        assert!(a.user_for_extension("100").ok().flatten().is_none());
    }
}
