//! The default backend: one embedded redb database, `DATA_DIR/store.redb`.
//! Opening it also unlocks the host key (the database's `meta` table tells
//! a lost or swapped key file from a fresh store). Reads are MVCC snapshots
//! on the caller's thread and never wait for the writer; batches go to the
//! group-commit writer thread.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, TableDefinition, TableError,
    TableHandle,
};

use super::backend::{Backend, Reply, SealedBatch};
use super::keyfile::{KEY_FILE, create_key_file, ensure_data_dir, read_key_file};
use super::layout::{KEY_CHECK, KvTable, META, USAGE, kv_table_name};
use super::seal::Sealer;
use super::types::{KvError, StoreError, Usage};
use super::writer::{Job, run_writer};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "store.redb";

/// The redb database and its writer thread.
pub(super) struct RedbBackend {
    db: Arc<Database>,
    /// The group-commit writer's queue; `None` once shutting down.
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for RedbBackend {
    fn drop(&mut self) {
        // Closing the queue ends the writer once it has committed what was
        // queued; joining it closes the database before this returns, so the
        // data directory can be opened again right away.
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl RedbBackend {
    /// Opens the database and the host key for [`Store::open`](super::Store::open),
    /// and returns the backend with the key's sealer.
    pub(super) fn open(data_dir: &Path) -> Result<(RedbBackend, Sealer), StoreError> {
        ensure_data_dir(data_dir)?;
        let db_path = data_dir.join(DB_FILE);
        let key_path = data_dir.join(KEY_FILE);

        // The database is opened first: redb locks its file, so from here on
        // no other host process works on this data directory, and creating
        // the key file below cannot race with another instance.
        let db = open_database(&db_path)?;
        let db_err = |reason: String| StoreError::Database {
            path: db_path.clone(),
            reason,
        };
        let key_check = read_key_check(&db).map_err(|e| db_err(e.to_string()))?;

        let key = match read_key_file(&key_path)? {
            Some(key) => key,
            None if key_check.is_some() => {
                return Err(StoreError::KeyMissing { key_path, db_path });
            }
            None => create_key_file(data_dir, &key_path)?,
        };
        let sealer = Sealer::new(key);

        match key_check {
            Some(sealed) => {
                if !sealer.opens_key_check(&sealed) {
                    return Err(StoreError::KeyMismatch { key_path, db_path });
                }
            }
            None => {
                let sealed = sealer.key_check().map_err(|e| db_err(e.to_string()))?;
                write_key_check(&db, &sealed).map_err(|e| db_err(e.to_string()))?;
            }
        }

        let db = Arc::new(db);
        let (jobs, queue) = mpsc::channel();
        let writer = {
            let (db, sealer) = (db.clone(), sealer.clone());
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || run_writer(db, sealer, queue))
                .map_err(|source| db_err(format!("cannot start the writer thread: {source}")))?
        };
        let backend = RedbBackend {
            db,
            jobs: Some(jobs),
            writer: Some(writer),
        };
        Ok((backend, sealer))
    }

    /// The database, for tests that tamper with it or drive the writer.
    #[cfg(test)]
    pub(super) fn database(&self) -> Arc<Database> {
        Arc::clone(&self.db)
    }

    /// A read snapshot and the table of `namespace` in it, or `None` before
    /// the namespace's first write created the table.
    fn read_kv(
        &self,
        namespace: &str,
    ) -> Result<Option<ReadOnlyTable<&'static str, &'static [u8]>>, KvError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let name = kv_table_name(namespace);
        existing(&txn, KvTable::new(&name)).map_err(unavailable)
    }
}

impl Backend for RedbBackend {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let Some(table) = self.read_kv(namespace)? else {
            return Ok(None);
        };
        let value = table.get(key).map_err(unavailable)?;
        Ok(value.map(|guard| guard.value().to_vec()))
    }

    fn list_keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        let Some(table) = self.read_kv(namespace)? else {
            return Ok(Vec::new());
        };
        // `&str` keys sort by bytes, so the keys with the prefix form one
        // contiguous run starting at the prefix itself.
        let mut keys = Vec::new();
        for entry in table.range(prefix..).map_err(unavailable)? {
            let (key, _) = entry.map_err(unavailable)?;
            let key = key.value();
            if !key.starts_with(prefix) {
                break;
            }
            keys.push(key.to_owned());
        }
        Ok(keys)
    }

    fn usage(&self, namespace: &str) -> Result<Usage, KvError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let Some(table) = existing(&txn, USAGE).map_err(unavailable)? else {
            return Ok(Usage::default());
        };
        let (keys, bytes) = table
            .get(namespace)
            .map_err(unavailable)?
            .map_or((0, 0), |guard| guard.value());
        Ok(Usage { keys, bytes })
    }

    fn clear(&self, namespace: &str) -> Result<(), KvError> {
        let name = kv_table_name(namespace);
        let txn = self.db.begin_write().map_err(unavailable)?;
        txn.delete_table(KvTable::new(&name)).map_err(unavailable)?;
        txn.open_table(USAGE)
            .map_err(unavailable)?
            .remove(namespace)
            .map_err(unavailable)?;
        txn.commit().map_err(unavailable)
    }

    fn namespaces(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let txn = self.db.begin_read().map_err(unavailable)?;
        let tables = txn.list_tables().map_err(unavailable)?;
        let wanted = kv_table_name(prefix);
        let mut names: Vec<String> = tables
            .filter_map(|table| {
                let name = table.name().strip_prefix(&wanted)?;
                Some(format!("{prefix}{name}"))
            })
            .collect();
        names.sort();
        Ok(names)
    }

    fn submit(&self, batch: SealedBatch, reply: Reply) {
        // Without a writer the job, and with it the reply, is dropped: the
        // caller reads that as "the writer stopped".
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job { batch, reply });
        }
    }
}

/// `def` in the snapshot `txn`, or `None` if no write has created it yet.
fn existing<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    def: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, TableError> {
    match txn.open_table(def) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_database(path: &Path) -> Result<Database, StoreError> {
    // Pre-create the file owner-only; redb would otherwise create it with
    // the process umask. Keys are in clear, and are nobody else's business.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Database {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    Database::create(path).map_err(|e| match e {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::DatabaseLocked {
            path: path.to_owned(),
        },
        other => StoreError::Database {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    })
}

fn read_key_check(db: &Database) -> Result<Option<Vec<u8>>, redb::Error> {
    let txn = db.begin_read()?;
    let Some(table) = existing(&txn, META)? else {
        return Ok(None);
    };
    Ok(table.get(KEY_CHECK)?.map(|guard| guard.value().to_vec()))
}

fn write_key_check(db: &Database, sealed: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(KEY_CHECK, sealed)?;
    txn.commit()?;
    Ok(())
}

/// Maps a database error to [`KvError::Unavailable`], logging it: the caller
/// (a plugin) only sees the message, the operator needs the log.
fn unavailable(error: impl Into<redb::Error>) -> KvError {
    let error = error.into();
    tracing::error!(%error, "store operation failed");
    KvError::Unavailable(format!("database error: {error}"))
}
