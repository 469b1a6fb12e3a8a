//! The PBX's call dispositions: the pick-list the administrator defines
//! (e.g. "Left message", "Sale") and agents choose from when they add
//! after-call work to a call. Kept in the store namespace
//! `host/call-dispositions` as one JSON list.

use crate::store::{KvError, Namespace, Quota, Store};

const NAMESPACE: &str = "host/call-dispositions";
const KEY: &str = "list";
/// At most this many dispositions.
pub const MAX_DISPOSITIONS: usize = 50;
/// A disposition's longest name, in characters (the CRM's call result
/// fields are short).
pub const MAX_NAME: usize = 80;

/// Why a list of dispositions is refused, or the store failed.
#[derive(Debug, thiserror::Error)]
pub enum DispositionError {
    /// The list is not acceptable; the message names the fix.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error("the call dispositions cannot be read or written: {0}")]
    Store(#[from] KvError),
}

/// The disposition list in the store.
pub struct Dispositions {
    ns: Namespace,
}

impl Dispositions {
    /// The list in `store`.
    pub fn new(store: &Store) -> Self {
        Self {
            ns: store.namespace(NAMESPACE, Quota::UNLIMITED),
        }
    }

    /// The dispositions, in the administrator's order (none until set).
    pub fn list(&self) -> Result<Vec<String>, DispositionError> {
        match self.ns.get(KEY)? {
            // A list this host wrote; unreadable means none rather than a
            // page that cannot load.
            Some(raw) => Ok(serde_json::from_slice(&raw).unwrap_or_default()),
            None => Ok(Vec::new()),
        }
    }

    /// Replace the list with `names` (trimmed); a refused list changes
    /// nothing. The list as stored.
    pub fn set(&self, names: &[String]) -> Result<Vec<String>, DispositionError> {
        let list = check(names)?;
        let raw = serde_json::to_vec(&list)
            .map_err(|e| DispositionError::Invalid(format!("the list cannot be stored: {e}")))?;
        self.ns.set(KEY, &raw)?;
        Ok(list)
    }
}

/// `names` trimmed, each 1 to [`MAX_NAME`] characters without control
/// characters, no two alike (ignoring case), at most [`MAX_DISPOSITIONS`].
pub fn check(names: &[String]) -> Result<Vec<String>, DispositionError> {
    if names.len() > MAX_DISPOSITIONS {
        return Err(DispositionError::Invalid(format!(
            "at most {MAX_DISPOSITIONS} dispositions; remove {}",
            names.len() - MAX_DISPOSITIONS
        )));
    }
    let mut list: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(DispositionError::Invalid(format!(
                "a disposition must have 1 to {MAX_NAME} characters: {name:?}"
            )));
        }
        if name.chars().any(char::is_control) {
            return Err(DispositionError::Invalid(format!(
                "a disposition must not contain control characters: {name:?}"
            )));
        }
        if list.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            return Err(DispositionError::Invalid(format!(
                "{name:?} is in the list twice; keep one"
            )));
        }
        list.push(name.to_string());
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lists_are_checked_and_kept_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let d = Dispositions::new(&store);
        assert!(d.list().expect("list").is_empty());
        let saved = d.set(&names(&[" Sale ", "Left message"])).expect("set");
        assert_eq!(saved, names(&["Sale", "Left message"]));
        assert_eq!(d.list().expect("list"), saved);
        for bad in [vec!["Sale", "sale"], vec![""], vec!["a\nb"]] {
            assert!(d.set(&names(&bad)).is_err(), "{bad:?}");
        }
        let long = "x".repeat(MAX_NAME + 1);
        assert!(d.set(&[long]).is_err());
        assert!(d.set(&vec!["x".to_string(); MAX_DISPOSITIONS + 1]).is_err());
        assert_eq!(d.list().expect("list"), saved, "refusals change nothing");
    }
}
