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

/// The administrator's spelling of `name` (trimmed, ignoring case) when it
/// is in `list`.
pub fn find<'l>(list: &'l [String], name: &str) -> Option<&'l str> {
    let name = name.trim();
    list.iter()
        .find(|n| n.eq_ignore_ascii_case(name))
        .map(String::as_str)
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

    #[test]
    fn names_are_trimmed_and_duplicates_ignoring_case_refused() {
        assert_eq!(
            check(&names(&["  Left message\t", "Sale"])).expect("a good list"),
            names(&["Left message", "Sale"])
        );
        let twice = check(&names(&["Sale", " SALE "])).expect_err("a duplicate");
        assert!(
            twice.to_string().contains("in the list twice"),
            "names the fix: {twice}"
        );
        // Two names alike only after trimming are the same one.
        assert!(check(&names(&["Sale", "Sale "])).is_err());
        assert!(check(&names(&["Sale", "Sales"])).is_ok(), "different names");
        assert_eq!(check(&[]).expect("an empty list"), Vec::<String>::new());
    }

    #[test]
    fn bounds_are_inclusive() {
        let longest = "é".repeat(MAX_NAME);
        assert!(
            check(std::slice::from_ref(&longest)).is_ok(),
            "{MAX_NAME} characters (not bytes) are fine"
        );
        let too_long = check(&["é".repeat(MAX_NAME + 1)]).expect_err("too long");
        assert!(
            too_long.to_string().contains("1 to 80 characters"),
            "{too_long}"
        );
        let most: Vec<String> = (0..MAX_DISPOSITIONS).map(|i| format!("D{i}")).collect();
        assert_eq!(check(&most).expect("the most").len(), MAX_DISPOSITIONS);
        let mut over = most.clone();
        over.push("One more".into());
        let refused = check(&over).expect_err("one too many");
        assert!(refused.to_string().contains("remove 1"), "{refused}");
        for blank in ["", "   ", "\t"] {
            assert!(check(&names(&[blank])).is_err(), "{blank:?}");
        }
        assert!(check(&names(&["Left\u{7}message"])).is_err(), "a bell");
    }

    #[test]
    fn a_pick_is_found_in_the_administrators_spelling() {
        let list = names(&["Left message", "Sale"]);
        assert_eq!(find(&list, " left MESSAGE "), Some("Left message"));
        assert_eq!(find(&list, "Sale"), Some("Sale"));
        assert_eq!(find(&list, "Sold"), None);
        assert_eq!(find(&list, ""), None);
        assert_eq!(find(&[], "Sale"), None);
    }

    #[test]
    fn an_unreadable_list_reads_as_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        store
            .namespace(NAMESPACE, Quota::UNLIMITED)
            .set(KEY, b"not json")
            .expect("set");
        assert!(Dispositions::new(&store).list().expect("list").is_empty());
    }
}
