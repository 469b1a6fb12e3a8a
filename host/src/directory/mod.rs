//! The PBX's extension directory: the extensions the operator manages
//! (`pbx-host extension add|list|remove`, the admin API), kept in the host's
//! store (`host/extensions`). Plugins read it through the `directory`
//! capability; the portal, the agent page and call input check against it.

use serde::{Deserialize, Serialize};

pub mod passwords;

use crate::store::{KvError, Namespace, Precondition, Write};

/// One PBX extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// The number, e.g. "1001".
    pub number: String,
    /// Who or what it is.
    pub name: String,
    /// The person's e-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Why an extension is refused.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Bad input.
    #[error("{0}")]
    Invalid(String),
    /// Store failure.
    #[error("the extension directory could not be read or written: {0}")]
    Store(#[from] KvError),
    /// Adding would replace an extension that exists (the existing one);
    /// replacing must be asked for.
    #[error(
        "extension {} exists ({}); nothing was changed. To replace it, add it again with `--replace` (API: `?replace=yes`)",
        .0.number,
        .0.describe()
    )]
    Exists(Extension),
    /// A stored record did not parse.
    #[error("extension {0} is stored in an unreadable form; remove and add it again")]
    Corrupt(String),
}

impl Extension {
    /// "Ada Lovelace, ada@acme.com", or the name alone.
    fn describe(&self) -> String {
        match &self.email {
            Some(email) => format!("{}, {email}", self.name),
            None => self.name.clone(),
        }
    }

    /// Check and tidy operator input.
    pub fn validated(self) -> Result<Extension, DirectoryError> {
        let number = self.number.trim().to_string();
        if number.is_empty()
            || number.len() > 16
            || !number
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
        {
            return Err(DirectoryError::Invalid(format!(
                "extension number {number:?} must be 1-16 digits (* and # allowed), e.g. 1001"
            )));
        }
        let name = self.name.trim().to_string();
        if name.is_empty() || name.len() > 200 {
            return Err(DirectoryError::Invalid(format!(
                "extension {number} needs a name of 1-200 characters"
            )));
        }
        // Names are shown on pages, in the CLI and in messages: no line
        // breaks or terminal escapes.
        if name.chars().any(char::is_control) {
            return Err(DirectoryError::Invalid(format!(
                "extension {number}'s name has a control character (a line break, tab or escape); type it on one line"
            )));
        }
        let email = match self.email.map(|e| e.trim().to_string()) {
            Some(e) if e.is_empty() => None,
            Some(e) => {
                let valid = e.len() <= 254
                    && e.split_once('@')
                        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'));
                if !valid {
                    return Err(DirectoryError::Invalid(format!(
                        "{e:?} is not an e-mail address; use name@example.com or leave it empty"
                    )));
                }
                Some(e)
            }
            None => None,
        };
        Ok(Extension {
            number,
            name,
            email,
        })
    }
}

/// The stored extension `number`, read.
fn decode(number: &str, bytes: Option<Vec<u8>>) -> Result<Option<Extension>, DirectoryError> {
    match bytes {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|_| DirectoryError::Corrupt(number.to_string())),
    }
}

/// The extension directory.
#[derive(Clone)]
pub struct Directory {
    ns: Namespace,
}

impl Directory {
    /// The directory in `ns`.
    pub fn new(ns: Namespace) -> Self {
        Self { ns }
    }

    /// Every extension, by number.
    pub fn list(&self) -> Result<Vec<Extension>, DirectoryError> {
        let mut out = Vec::new();
        for key in self.ns.list_keys("")? {
            if let Some(ext) = self.get(&key)? {
                out.push(ext);
            }
        }
        out.sort_by(|a, b| (a.number.len(), &a.number).cmp(&(b.number.len(), &b.number)));
        Ok(out)
    }

    /// One extension.
    pub fn get(&self, number: &str) -> Result<Option<Extension>, DirectoryError> {
        decode(number, self.ns.get(number)?)
    }

    /// [`Directory::list`] without holding the caller's thread while a
    /// store across a network answers: two round trips on Redis (the keys,
    /// then every value at once), not one per extension.
    pub async fn list_async(&self) -> Result<Vec<Extension>, DirectoryError> {
        let keys = self.ns.list_keys_async(String::new()).await?;
        let values = self.ns.get_many_async(keys.clone()).await?;
        let mut out = Vec::new();
        for (key, value) in keys.iter().zip(values) {
            if let Some(ext) = decode(key, value)? {
                out.push(ext);
            }
        }
        out.sort_by(|a, b| (a.number.len(), &a.number).cmp(&(b.number.len(), &b.number)));
        Ok(out)
    }

    /// [`Directory::get`] without holding the caller's thread.
    pub async fn get_async(&self, number: &str) -> Result<Option<Extension>, DirectoryError> {
        let value = self
            .ns
            .get_many_async(vec![number.to_string()])
            .await?
            .into_iter()
            .next()
            .flatten();
        decode(number, value)
    }

    /// Add or replace an extension.
    pub fn put(&self, extension: Extension) -> Result<Extension, DirectoryError> {
        self.add(extension, true)
    }

    /// Add an extension; one with the same number is replaced only when
    /// `replace` says so, else refused with `Exists` and nothing written.
    /// The absence is a precondition of the write itself, so two adds of
    /// one number cannot both succeed.
    pub fn add(&self, extension: Extension, replace: bool) -> Result<Extension, DirectoryError> {
        let extension = extension.validated()?;
        let bytes =
            serde_json::to_vec(&extension).map_err(|e| DirectoryError::Invalid(e.to_string()))?;
        if replace {
            self.ns.set(&extension.number, &bytes)?;
            return Ok(extension);
        }
        let absent = Precondition {
            key: extension.number.clone(),
            expected: None,
        };
        let write = Write::Set {
            key: extension.number.clone(),
            value: bytes,
        };
        match self.ns.batch(&[absent], &[write]) {
            Ok(()) => Ok(extension),
            Err(KvError::Conflict(_)) => match self.get(&extension.number)? {
                Some(existing) => Err(DirectoryError::Exists(existing)),
                // Removed meanwhile: the caller may simply try again.
                None => Err(DirectoryError::Invalid(format!(
                    "extension {} changed while it was being added; try again",
                    extension.number
                ))),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Remove an extension; returns whether it existed.
    pub fn remove(&self, number: &str) -> Result<bool, DirectoryError> {
        let existed = self.ns.get(number)?.is_some();
        self.ns.delete(number)?;
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(number: &str, email: Option<&str>) -> Extension {
        Extension {
            number: number.into(),
            name: "Ann".into(),
            email: email.map(Into::into),
        }
    }

    #[test]
    fn a_name_with_control_characters_is_refused() {
        for name in ["Ada\nLovelace", "Ada\u{1b}[31m", "Ada\tL"] {
            let e = Extension {
                name: name.into(),
                ..ext("1001", None)
            };
            let refused = e.validated();
            assert!(
                matches!(&refused, Err(DirectoryError::Invalid(m)) if m.contains("control character")),
                "{name:?}: {refused:?}"
            );
        }
        assert!(ext("1001", None).validated().is_ok());
    }

    #[test]
    fn adding_an_existing_number_is_refused_unless_replacing() {
        let data = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(data.path()).expect("store");
        let dir =
            Directory::new(store.namespace("host/extensions", crate::store::Quota::UNLIMITED));
        let ada = Extension {
            name: "Ada Lovelace".into(),
            ..ext("1001", Some("ada@acme.com"))
        };
        assert!(dir.add(ada.clone(), false).is_ok());
        let refused = dir.add(ext("1001", Some("bob@acme.com")), false);
        let Err(DirectoryError::Exists(existing)) = refused else {
            panic!("{refused:?}");
        };
        assert_eq!(existing, ada);
        let message = DirectoryError::Exists(existing).to_string();
        assert!(
            message.starts_with("extension 1001 exists (Ada Lovelace, ada@acme.com); "),
            "{message}"
        );
        assert!(message.contains("--replace"), "{message}");
        assert_eq!(dir.get("1001").ok().flatten(), Some(ada));

        let bob = ext("1001", Some("bob@acme.com"));
        assert_eq!(dir.add(bob.clone(), true).ok(), Some(bob.clone()));
        assert_eq!(dir.get("1001").ok().flatten(), Some(bob));
    }

    #[test]
    fn operator_input_is_checked() {
        assert!(ext("1001", Some(" ann@example.com ")).validated().is_ok());
        assert!(ext("10a1", None).validated().is_err());
        assert!(ext("", None).validated().is_err());
        assert!(ext("1001", Some("not-an-address")).validated().is_err());
        assert_eq!(
            ext("1001", Some("")).validated().ok().and_then(|e| e.email),
            None
        );
    }

    #[tokio::test]
    async fn the_async_reads_answer_as_the_blocking_ones() {
        let data = tempfile::tempdir().expect("tempdir");
        let store = crate::store::Store::open(data.path()).expect("store");
        let dir =
            Directory::new(store.namespace("host/extensions", crate::store::Quota::UNLIMITED));
        for number in ["1002", "99", "1001"] {
            dir.add(ext(number, None), false).expect("add");
        }
        let listed = dir.list_async().await.expect("list");
        assert_eq!(listed, dir.list().expect("list"));
        let numbers: Vec<&str> = listed.iter().map(|e| e.number.as_str()).collect();
        assert_eq!(numbers, ["99", "1001", "1002"]);
        assert_eq!(
            dir.get_async("1001").await.expect("get"),
            Some(ext("1001", None))
        );
        assert_eq!(dir.get_async("1003").await.expect("get"), None);
    }
}
