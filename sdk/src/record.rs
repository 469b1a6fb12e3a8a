//! Records updated by compare-and-swap: read a value with its bytes,
//! change it, and write it only if the key still holds those bytes; when
//! another instance wrote in between, read again, a bounded number of
//! rounds. A [`Versioned`] record also counts its changes, so a page that
//! shows version 7 can refuse to overwrite version 8.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::PluginError;
use crate::host::Host;
use crate::store::{Batch, Repair, Store};

/// Rounds a plugin's compare-and-swap loops take before giving up: many
/// more than concurrent instances usually collide, few enough to stay well
/// inside a call's deadline.
pub const CAS_ROUNDS: usize = 16;

/// What a change of a record does.
#[derive(Debug)]
pub enum Change<T, O> {
    /// Write the new value, then return the outcome.
    Write(T, O),
    /// Write nothing (the record is as wanted already); return the outcome.
    Keep(O),
}

/// How a stored value that does not parse is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// As an error naming the key and its fix ([`PluginError::Corrupt`]).
    Fail,
    /// As absent, so the change replaces it (the write stays guarded by
    /// its bytes). For records that only remember, e.g. which call ids
    /// were done.
    Replace,
}

/// Why an update did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Other writers changed the record in every round.
    #[error("{key} kept changing while it was updated ({rounds} attempts); try again")]
    Exhausted {
        /// The record's key.
        key: String,
        /// The rounds taken.
        rounds: usize,
    },
    /// Reading, changing or writing failed.
    #[error(transparent)]
    Failed(#[from] PluginError),
}

impl From<UpdateError> for PluginError {
    fn from(e: UpdateError) -> Self {
        match e {
            UpdateError::Exhausted { .. } => PluginError::Conflict(e.to_string()),
            UpdateError::Failed(e) => e,
        }
    }
}

/// Update the record under `key`: `change` gets the stored value (`None`:
/// absent, or unreadable with [`Unreadable::Replace`]) and says what to
/// write; the write commits only if the key still holds what was read.
/// `change` runs again after a lost race, so it must not act outside the
/// store.
pub fn update<H, R, T, O>(
    store: &Store<'_, H, R>,
    key: &str,
    unreadable: Unreadable,
    rounds: usize,
    mut change: impl FnMut(Option<T>) -> Result<Change<T, O>, PluginError>,
) -> Result<O, UpdateError>
where
    H: Host,
    R: Repair,
    T: Serialize + DeserializeOwned,
{
    for _ in 0..rounds {
        let raw = store.get_raw(key)?;
        let current = match &raw {
            None => None,
            Some(bytes) => match crate::store::decode::<R, T>(key, bytes) {
                Ok(value) => Some(value),
                Err(_) if unreadable == Unreadable::Replace => None,
                Err(e) => return Err(e.into()),
            },
        };
        let (next, outcome) = match change(current)? {
            Change::Keep(outcome) => return Ok(outcome),
            Change::Write(next, outcome) => (next, outcome),
        };
        match store.commit(&Batch::new().expect_raw(key, raw).set(key, &next)?) {
            Ok(()) => return Ok(outcome),
            Err(PluginError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(UpdateError::Exhausted {
        key: key.to_string(),
        rounds,
    })
}

/// A record with a version counter: bumped by every write.
pub trait Versioned {
    /// The version stored (0 before the first write).
    fn version(&self) -> u64;
    /// Set the version.
    fn set_version(&mut self, version: u64);
}

/// Update a versioned record: `change` edits it (a default one when
/// absent) and returns the outcome, or `None` to write nothing; the
/// written value carries the next version. Returns the outcome and the
/// version now stored.
pub fn update_versioned<H, R, T, O>(
    store: &Store<'_, H, R>,
    key: &str,
    rounds: usize,
    mut change: impl FnMut(&mut T) -> Result<Option<O>, PluginError>,
) -> Result<(O, u64), UpdateError>
where
    H: Host,
    R: Repair,
    T: Serialize + DeserializeOwned + Default + Versioned,
    O: Default,
{
    update(
        store,
        key,
        Unreadable::Fail,
        rounds,
        |current: Option<T>| {
            let mut value = current.unwrap_or_default();
            let read = value.version();
            Ok(match change(&mut value)? {
                None => Change::Keep((O::default(), read)),
                Some(outcome) => {
                    value.set_version(read + 1);
                    Change::Write(value, (outcome, read + 1))
                }
            })
        },
    )
}

/// What `replace_version` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// Written, as this version.
    Written(u64),
    /// Someone saved in between: nothing written; the version stored now
    /// (`None`: absent or unreadable).
    Stale(Option<u64>),
}

/// Write `next` under `key` as the version after `expected`, only if the
/// stored record is still version `expected`, read as `expected_raw`
/// (the bytes read with it; `None`: absent). One round: the caller's
/// `expected` came from someone who saw that version (a page), so a lost
/// race is theirs to resolve.
pub fn replace_version<H, R, T>(
    store: &Store<'_, H, R>,
    key: &str,
    expected: u64,
    expected_raw: Option<Vec<u8>>,
    next: &mut T,
) -> Result<Replaced, PluginError>
where
    H: Host,
    R: Repair,
    T: Serialize + DeserializeOwned + Versioned,
{
    next.set_version(expected + 1);
    let batch = Batch::new()
        .expect_raw(key, expected_raw)
        .set(key, &*next)?;
    match store.commit(&batch) {
        Ok(()) => Ok(Replaced::Written(expected + 1)),
        Err(PluginError::Conflict(_)) => {
            let now = store.get::<T>(key).ok().flatten().map(|t| t.version());
            Ok(Replaced::Stale(now))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::store::SaveAgain;
    use crate::testing::FakeHost;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    struct Tally {
        version: u64,
        names: BTreeMap<String, u32>,
    }

    impl Versioned for Tally {
        fn version(&self) -> u64 {
            self.version
        }
        fn set_version(&mut self, version: u64) {
            self.version = version;
        }
    }

    fn add(store: &Store<'_, FakeHost, SaveAgain>, name: &str) -> Result<(bool, u64), UpdateError> {
        update_versioned(store, "tally", CAS_ROUNDS, |t: &mut Tally| {
            if t.names.contains_key(name) {
                return Ok(None);
            }
            t.names.insert(name.to_string(), 1);
            Ok(Some(true))
        })
    }

    #[test]
    fn a_lost_race_reads_again_and_keeps_the_winners_change() {
        let host = FakeHost::default();
        let store = Store::<_, SaveAgain>::new(&host);
        assert_eq!(add(&store, "ada").ok(), Some((true, 1)));
        // Another instance adds "bob" (version 2) just before our write.
        host.before_next_batch(|kv| {
            kv.insert(
                "tally".into(),
                br#"{"version":2,"names":{"ada":1,"bob":1}}"#.to_vec(),
            );
        });
        assert_eq!(add(&store, "cy").ok(), Some((true, 3)));
        let names = host.kv_json("tally").map(|v| v["names"].clone());
        assert_eq!(names, Some(serde_json::json!({"ada":1,"bob":1,"cy":1})));
        // Nothing to change: nothing written, the version stays.
        let batches = host.batches().len();
        assert_eq!(add(&store, "cy").ok(), Some((false, 3)));
        assert_eq!(host.batches().len(), batches);
    }

    #[test]
    fn rounds_run_out_with_an_error_naming_the_key() {
        let host = FakeHost::default();
        let store = Store::<_, SaveAgain>::new(&host);
        let mut n = 0u64;
        let result = update(&store, "hot", Unreadable::Fail, 3, |_: Option<u64>| {
            // Every round, someone else writes first.
            n += 1;
            let v = n;
            host.before_next_batch(move |kv| {
                kv.insert("hot".into(), format!("{}", 1000 + v).into_bytes());
            });
            Ok(Change::Write(v, ()))
        });
        assert!(
            matches!(&result, Err(UpdateError::Exhausted { key, rounds: 3 }) if key == "hot"),
            "{result:?}"
        );
        assert_eq!(n, 3);
        let error = PluginError::from(result.err().unwrap_or(UpdateError::Exhausted {
            key: String::new(),
            rounds: 0,
        }));
        assert!(matches!(error, PluginError::Conflict(m) if m.contains("hot")));
    }

    #[test]
    fn unreadable_records_fail_or_are_replaced_as_asked() {
        let host = FakeHost::default();
        let store = Store::<_, SaveAgain>::new(&host);
        host.kv_put("r", "not json");
        let strict = update(&store, "r", Unreadable::Fail, 1, |_: Option<u64>| {
            Ok(Change::Write(1, ()))
        });
        assert!(matches!(
            strict,
            Err(UpdateError::Failed(PluginError::Corrupt { .. }))
        ));
        let lenient = update(&store, "r", Unreadable::Replace, 1, |v: Option<u64>| {
            assert_eq!(v, None);
            Ok(Change::Write(7, ()))
        });
        assert!(lenient.is_ok());
        assert_eq!(host.kv_text("r").as_deref(), Some("7"));
    }

    #[test]
    fn a_version_replaces_only_the_version_it_was_made_from() {
        let host = FakeHost::default();
        let store = Store::<_, SaveAgain>::new(&host);
        let mut first = Tally::default();
        assert_eq!(
            replace_version(&store, "tally", 0, None, &mut first).ok(),
            Some(Replaced::Written(1))
        );
        let raw = store.get_raw("tally").ok().flatten();
        assert_eq!(add(&store, "ada").ok(), Some((true, 2)));
        // A page that saw version 1 cannot overwrite version 2.
        let mut stale = Tally::default();
        assert_eq!(
            replace_version(&store, "tally", 1, raw, &mut stale).ok(),
            Some(Replaced::Stale(Some(2)))
        );
        assert_eq!(
            host.kv_json("tally").map(|v| v["version"].clone()),
            Some(2.into())
        );
    }
}
