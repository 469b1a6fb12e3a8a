//! What lands on disk: the data directory's and key file's modes, refusing
//! unsafe, missing or swapped keys, the database lock, reopening, and that
//! values are sealed (no plaintext, no moving ciphertext between places).

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use crate::store::layout::kv_table_name;
use crate::store::{DB_FILE, KEY_FILE, KvError, Precondition, Quota, Store, StoreError, Usage};

use super::{del, open_temp, open_temp_raw, set};

/// Copies the raw stored bytes of one (namespace, key) to another,
/// bypassing sealing: what an attacker with write access to the
/// database file could do.
fn raw_copy(db: &Database, from: (&str, &str), to: (&str, &str)) {
    let from_table = kv_table_name(from.0);
    let to_table = kv_table_name(to.0);
    let txn = db.begin_write().expect("begin write");
    {
        let raw = txn
            .open_table(TableDefinition::<&str, &[u8]>::new(&from_table))
            .expect("open source table")
            .get(from.1)
            .expect("read source")
            .expect("source present")
            .value()
            .to_vec();
        txn.open_table(TableDefinition::<&str, &[u8]>::new(&to_table))
            .expect("open target table")
            .insert(to.1, raw.as_slice())
            .expect("write target");
    }
    txn.commit().expect("commit");
}

/// Creates a key file owner-only with exactly `bytes`, as an operator
/// restoring (or botching) one would.
fn write_new_key(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn secret_is_not_stored_in_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let secret = b"refresh-token-3f9a1c77e2b54d08a6";
    {
        let store = Store::open(dir.path()).unwrap();
        let ns = store.namespace("plugin/crm", Quota::default());
        ns.set("oauth/refresh", secret).unwrap();
        ns.batch(&[], &[set("oauth/copy", secret)]).unwrap();
        assert_eq!(
            ns.get("oauth/refresh").unwrap().as_deref(),
            Some(&secret[..])
        );
    }
    let mut scanned = 0;
    let mut pending = vec![dir.path().to_owned()];
    while let Some(path) = pending.pop() {
        for entry in fs::read_dir(&path).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let bytes = fs::read(&path).unwrap();
            scanned += 1;
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "secret found in {}",
                path.display()
            );
        }
    }
    assert!(scanned >= 2, "expected the database and the key file");
}

#[test]
fn creates_owner_only_dir_and_key() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    let _store = Store::open(&dir).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
    assert_eq!(fs::metadata(dir.join(KEY_FILE)).unwrap().len(), 32);
    assert!(!dir.join(format!("{KEY_FILE}.tmp")).exists());
}

#[test]
fn group_readable_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let key_path = dir.path().join(KEY_FILE);
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o640)).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::KeyPermissions { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("chmod 600 {}", key_path.display())),
        "{message}"
    );
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600)).unwrap();
    Store::open(dir.path()).unwrap();
}

#[test]
fn wrong_length_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join(KEY_FILE);
    write_new_key(&key_path, &[1; 31]);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::KeyLength { len: 31, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(&key_path.display().to_string()));
}

#[test]
fn missing_or_swapped_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join(KEY_FILE);
    {
        let store = Store::open(dir.path()).unwrap();
        store
            .namespace("plugin/a", Quota::default())
            .set("k", b"v")
            .unwrap();
    }
    let original = fs::read(&key_path).unwrap();
    fs::remove_file(&key_path).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err}");
    // Refusing must not have created a fresh key.
    assert!(!key_path.exists());

    write_new_key(&key_path, &[9; 32]);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::KeyMismatch { .. }), "{err}");

    fs::write(&key_path, original).unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ns = store.namespace("plugin/a", Quota::default());
    assert_eq!(ns.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn second_open_is_refused_while_locked() {
    let (dir, _store) = open_temp();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::DatabaseLocked { .. }), "{err}");
}

#[test]
fn reopen_reads_back_values() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let ns = store.namespace("plugin/a", Quota::default());
        ns.set("k1", b"v1").unwrap();
        ns.batch(&[], &[set("k2", b"v2"), set("k3", b"v3"), del("k3")])
            .unwrap();
        store
            .namespace("host/extensions", Quota::UNLIMITED)
            .set("100", b"alice")
            .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let ns = store.namespace("plugin/a", Quota::default());
    assert_eq!(ns.get("k1").unwrap().as_deref(), Some(&b"v1"[..]));
    assert_eq!(ns.get("k2").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(ns.list_keys("").unwrap(), ["k1", "k2"]);
    assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 8 });
    let host = store.namespace("host/extensions", Quota::UNLIMITED);
    assert_eq!(host.get("100").unwrap().as_deref(), Some(&b"alice"[..]));
}

#[test]
fn moved_ciphertext_fails_authentication() {
    let (_dir, store, db, _) = open_temp_raw();
    let a = store.namespace("plugin/a", Quota::default());
    let b = store.namespace("plugin/b", Quota::default());
    a.set("token", b"secret").unwrap();
    a.set("other", b"x").unwrap();

    raw_copy(&db, ("plugin/a", "token"), ("plugin/a", "other"));
    let err = a.get("other").unwrap_err();
    assert!(
        matches!(&err, KvError::Unavailable(m) if m.contains("\"other\"") && m.contains("failed authentication")),
        "{err}"
    );

    raw_copy(&db, ("plugin/a", "token"), ("plugin/b", "token"));
    assert!(matches!(b.get("token"), Err(KvError::Unavailable(_))));
    // A batch whose precondition reads a tampered value fails cleanly.
    assert!(matches!(
        b.batch(
            &[Precondition {
                key: "token".into(),
                expected: None
            }],
            &[]
        ),
        Err(KvError::Unavailable(_))
    ));
    // The original is still readable.
    assert_eq!(a.get("token").unwrap().as_deref(), Some(&b"secret"[..]));
}
