//! Tests of the whole store through [`Store`] and [`Namespace`], by area;
//! the helpers here open a store in a temporary data directory.

mod files;
mod namespace;
mod writer;

use std::sync::Arc;

use redb::Database;

use super::embedded::RedbBackend;
use super::seal::Sealer;
use super::{Store, Write};

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

/// [`open_temp`], also keeping the redb database and the sealer, to tamper
/// with the file or to drive the writer directly.
fn open_temp_raw() -> (tempfile::TempDir, Store, Arc<Database>, Sealer) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (backend, sealer) = RedbBackend::open(dir.path()).expect("open store");
    let db = backend.database();
    let store = Store::with_backend(backend, sealer.clone());
    (dir, store, db, sealer)
}

fn set(key: &str, value: &[u8]) -> Write {
    Write::Set {
        key: key.into(),
        value: value.to_vec(),
    }
}

fn del(key: &str) -> Write {
    Write::Delete { key: key.into() }
}
