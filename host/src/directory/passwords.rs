//! Extension passwords, for agents without a CRM account: Argon2id PHC
//! strings in the store (`host/extension-passwords`, sealed like every
//! value), one per extension. The password itself is never kept, logged or
//! returned; only `verify` reads the hash.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::store::{KvError, Namespace};

/// Shortest password accepted.
pub const MIN_LEN: usize = 8;
/// Longest password accepted (hashing cost grows with it).
pub const MAX_LEN: usize = 256;

/// Why a password could not be set or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Bad input, naming the fix.
    #[error("{0}")]
    Invalid(String),
    /// Store failure.
    #[error("extension passwords could not be read or written: {0}")]
    Store(#[from] KvError),
    /// The hash could not be made or read.
    #[error("the password of extension {0} is stored in an unreadable form; set it again")]
    Corrupt(String),
}

/// The extension passwords.
#[derive(Clone)]
pub struct ExtensionPasswords {
    ns: Namespace,
}

impl ExtensionPasswords {
    /// The passwords kept in `ns`.
    pub fn new(ns: Namespace) -> Self {
        Self { ns }
    }

    /// Set (or replace) the password of `extension`. Slow on purpose
    /// (Argon2id): call it off the async workers.
    pub fn set(&self, extension: &str, password: &str) -> Result<(), PasswordError> {
        let chars = password.chars().count();
        if !(MIN_LEN..=MAX_LEN).contains(&chars) {
            return Err(PasswordError::Invalid(format!(
                "the password of extension {extension} must be {MIN_LEN} to {MAX_LEN} characters long"
            )));
        }
        let salt = SaltString::generate(&mut OsRng);
        let phc = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|_| PasswordError::Corrupt(extension.to_string()))?
            .to_string();
        self.ns.set(extension, phc.as_bytes())?;
        Ok(())
    }

    /// Remove the password of `extension`; whether it had one.
    pub fn clear(&self, extension: &str) -> Result<bool, PasswordError> {
        let existed = self.ns.get(extension)?.is_some();
        self.ns.delete(extension)?;
        Ok(existed)
    }

    /// Whether `extension` has a password.
    pub fn is_set(&self, extension: &str) -> Result<bool, PasswordError> {
        Ok(self.ns.get(extension)?.is_some())
    }

    /// Whether `password` is the password of `extension`. An extension
    /// without one costs the same time (a dummy hash is checked), so the
    /// answer time does not tell which extensions have a password.
    pub fn verify(&self, extension: &str, password: &str) -> Result<bool, PasswordError> {
        if password.len() > MAX_LEN * 4 {
            return Ok(false);
        }
        let stored = self.ns.get(extension)?;
        let phc = match &stored {
            Some(bytes) => std::str::from_utf8(bytes)
                .map_err(|_| PasswordError::Corrupt(extension.to_string()))?
                .to_string(),
            None => dummy_hash().to_string(),
        };
        let parsed =
            PasswordHash::new(&phc).map_err(|_| PasswordError::Corrupt(extension.to_string()))?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(matches && stored.is_some())
    }
}

/// A hash of a random password, made once, checked for extensions that
/// have none.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        let secret = hex::encode(rand::random::<[u8; 16]>());
        Argon2::default()
            .hash_password(secret.as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Quota, Store};

    fn passwords() -> (tempfile::TempDir, ExtensionPasswords) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let p =
            ExtensionPasswords::new(store.namespace("host/extension-passwords", Quota::UNLIMITED));
        (dir, p)
    }

    #[test]
    fn a_password_verifies_and_is_kept_only_as_a_phc_hash() {
        let (_dir, p) = passwords();
        assert!(matches!(
            p.set("1001", "short"),
            Err(PasswordError::Invalid(_))
        ));
        p.set("1001", "correct horse").expect("set");
        assert!(p.verify("1001", "correct horse").expect("verify"));
        assert!(!p.verify("1001", "wrong horse!").expect("verify"));
        assert!(
            !p.verify("1002", "correct horse").expect("verify"),
            "no password, no entry"
        );
        let stored = p.ns.get("1001").expect("get").unwrap_or_default();
        let stored = String::from_utf8_lossy(&stored);
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(!stored.contains("correct horse"));
        assert!(p.clear("1001").expect("clear"));
        assert!(!p.verify("1001", "correct horse").expect("verify"));
        assert!(!p.clear("1001").expect("clear"));
    }
}
