//! Persistent, encrypted key-value storage for plugins and for the host itself.
//!
//! Everything lives in one redb database, `DATA_DIR/store.redb`. Each
//! [`Namespace`] is its own redb table (named `kv/<namespace>`), so isolation
//! between namespaces is structural: no key string, however crafted, can
//! address a row of another namespace's table. A separate `usage` table keeps
//! each namespace's key count and byte total, updated in the same write
//! transaction as the data, so quota accounting can never drift.
//!
//! Values are sealed with XChaCha20-Poly1305 under a 32-byte host key kept in
//! `DATA_DIR/host.key` (mode 0600). Each stored value is `nonce || ciphertext`
//! with a fresh random 24-byte nonce; the associated data binds the value to
//! its namespace and key, so a ciphertext moved elsewhere fails to decrypt.
//! Keys are stored in clear: they are identifiers, not secrets.
//!
//! Writes go through one writer thread that commits whatever batches are
//! waiting in one redb transaction (group commit): each batch is still
//! checked and applied all-or-nothing on its own, but concurrent batches
//! share one commit and one disk flush, and no async worker ever waits for
//! the disk or for the database's single writer ([`Namespace::batch_async`]).
//! Reads are MVCC snapshots and never wait for the writer.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::{RngCore, TryRngCore};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, TableError};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "store.redb";
/// File name of the host key inside the data directory.
pub const KEY_FILE: &str = "host.key";
/// Largest accepted key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Largest accepted value, in bytes. Bounded so one write cannot pin
/// arbitrary amounts of memory in the host while it is sealed and committed.
pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;

const HOST_KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed value occupies beyond its plaintext.
const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Prefix of the per-namespace data tables. The other tables (`usage`,
/// `meta`) do not start with it, so no namespace name can collide with them.
const KV_TABLE_PREFIX: &str = "kv/";
/// Namespace name -> (keys, bytes) as reported by [`Namespace::usage`].
const USAGE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("usage");
/// Host bookkeeping about the store itself.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `META` entry holding a value sealed under the host key at first start.
/// It tells "the key file was lost or swapped" apart from a fresh store.
const KEY_CHECK: &str = "key-check";
const KEY_CHECK_AAD: &[u8] = b"pbx-host store key check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"pbx-host store key check v1";

/// Most batches one group commit takes, and roughly most bytes: a bound on
/// how long the batches behind a group wait.
const MAX_GROUP: usize = 256;
const MAX_GROUP_BYTES: usize = 32 * 1024 * 1024;

/// Sentinel for "no failure injection armed".
const NO_INJECTED_FAILURE: usize = usize::MAX;

/// Limits of one namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Maximum number of keys.
    pub max_keys: u64,
    /// Maximum total of key bytes plus plaintext value bytes.
    pub max_bytes: u64,
}

impl Quota {
    /// No limit (the per-key and per-value size limits still apply).
    pub const UNLIMITED: Quota = Quota {
        max_keys: u64::MAX,
        max_bytes: u64::MAX,
    };
}

impl Default for Quota {
    /// 10 000 keys and 64 MiB: generous for a CRM plugin's tokens, caches and
    /// cursors, small enough that one plugin cannot fill the host's disk.
    fn default() -> Self {
        Quota {
            max_keys: 10_000,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A condition a [`Namespace::batch`] checks before writing anything.
#[derive(Clone, PartialEq, Eq)]
pub struct Precondition {
    /// The key to check.
    pub key: String,
    /// The exact value the key must hold, or `None` if it must be absent.
    pub expected: Option<Vec<u8>>,
}

/// One write of a [`Namespace::batch`].
#[derive(Clone, PartialEq, Eq)]
pub enum Write {
    /// Set `key` to `value`, replacing any previous value.
    Set {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key`; an absent key is not an error.
    Delete {
        /// The key.
        key: String,
    },
}

impl Write {
    /// The key this write touches.
    pub fn key(&self) -> &str {
        match self {
            Write::Set { key, .. } | Write::Delete { key } => key,
        }
    }
}

// Values are plugin secrets (OAuth tokens and the like): Debug shows only
// their length, so logging a batch never leaks them.
impl fmt::Debug for Precondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Precondition")
            .field("key", &self.key)
            .field("expected_len", &self.expected.as_ref().map(Vec::len))
            .finish()
    }
}

impl fmt::Debug for Write {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Write::Set { key, value } => f
                .debug_struct("Set")
                .field("key", key)
                .field("value_len", &value.len())
                .finish(),
            Write::Delete { key } => f.debug_struct("Delete").field("key", key).finish(),
        }
    }
}

/// Space used by one namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Number of keys.
    pub keys: u64,
    /// Key bytes plus plaintext value bytes.
    pub bytes: u64,
}

/// Errors of namespace operations.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The operation would exceed a limit; the string names it, e.g.
    /// "10000 keys" or "67108864 bytes".
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// The key is empty or too long; the string gives the reason.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A batch precondition did not hold for this key; nothing was written.
    #[error("precondition failed for key {0:?}")]
    Conflict(String),
    /// The store could not complete the operation (disk, database or
    /// authentication failure); nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// Errors of [`Store::open`]. Each message names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory could not be created or inspected.
    #[error(
        "cannot create data directory {path}: {source}; fix: create it with `mkdir -m 700 {path}` as the user running the host"
    )]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The data directory path exists but is not a directory.
    #[error(
        "data directory {path} exists but is not a directory; fix: move it away or choose another data directory"
    )]
    NotADirectory {
        /// The data directory.
        path: PathBuf,
    },
    /// Another process (or another `Store` in this process) has the database open.
    #[error(
        "database {path} is in use by another process; fix: stop the other pbx-host using this data directory"
    )]
    DatabaseLocked {
        /// The database file.
        path: PathBuf,
    },
    /// The database could not be opened or initialized.
    #[error(
        "cannot open database {path}: {reason}; fix: check the file's owner and permissions and the free disk space, or restore it from a backup"
    )]
    Database {
        /// The database file.
        path: PathBuf,
        /// What redb reported.
        reason: String,
    },
    /// The key file could not be read or created.
    #[error(
        "cannot read or create host key {path}: {source}; fix: make the data directory writable by the user running the host"
    )]
    KeyIo {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The key file is accessible by group or others.
    #[error(
        "host key {path} is accessible by group or others (mode {mode:03o}); fix: chmod 600 {path}"
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file is not a regular file.
    #[error("host key {path} is not a regular file; fix: replace it with the backed-up key file")]
    KeyNotAFile {
        /// The key file.
        path: PathBuf,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error(
        "host key {path} is {len} bytes long, expected 32; fix: restore it from a backup (deleting it makes the stored values unreadable)"
    )]
    KeyLength {
        /// The key file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The key file is missing although the database holds values sealed with it.
    #[error(
        "host key {key_path} is missing but {db_path} holds values encrypted with it; fix: restore {key_path} from a backup, or delete {db_path} to start over with empty plugin state"
    )]
    KeyMissing {
        /// The key file.
        key_path: PathBuf,
        /// The database file.
        db_path: PathBuf,
    },
    /// The key file is not the key the database was written with.
    #[error(
        "host key {key_path} does not match {db_path}; fix: restore the matching {key_path} from a backup, or delete {db_path} to start over with empty plugin state"
    )]
    KeyMismatch {
        /// The key file.
        key_path: PathBuf,
        /// The database file.
        db_path: PathBuf,
    },
}

/// The host's persistent store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    cipher: XChaCha20Poly1305,
    /// Test hook: number of writes after which the next batch fails, or
    /// [`NO_INJECTED_FAILURE`].
    fail_batch_after: AtomicUsize,
    /// The group-commit writer's queue; `None` once shutting down.
    jobs: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for Inner {
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

/// One batch on its way to the writer: checked, sealed, and waiting for
/// its commit.
struct Job {
    namespace: Arc<str>,
    table: Arc<str>,
    quota: Quota,
    preconditions: Vec<Precondition>,
    writes: Vec<SealedWrite>,
    fail_after: Option<usize>,
    reply: Reply,
}

enum SealedWrite {
    Set {
        key: String,
        sealed: Vec<u8>,
        plain_len: usize,
    },
    Delete {
        key: String,
    },
}

impl SealedWrite {
    fn key(&self) -> &str {
        match self {
            SealedWrite::Set { key, .. } | SealedWrite::Delete { key } => key,
        }
    }
}

/// Where a job's outcome goes: a blocked thread or an awaiting task.
enum Reply {
    Blocking(mpsc::SyncSender<Result<(), KvError>>),
    Async(tokio::sync::oneshot::Sender<Result<(), KvError>>),
}

impl Reply {
    fn send(self, result: Result<(), KvError>) {
        // The caller may have gone (a cancelled call); the outcome stands.
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

/// Why a job in a group failed: refused on its own (nothing of it was
/// written), or a database failure that aborts the whole group.
enum JobError {
    Refused(KvError),
    Fatal(String),
}

fn fatal(error: impl Into<redb::Error>) -> JobError {
    let error = error.into();
    tracing::error!(%error, "store write failed");
    JobError::Fatal(format!("database error: {error}"))
}

/// The writer thread: takes every job waiting, applies each in one write
/// transaction, commits once, then answers them all.
fn run_writer(db: Arc<Database>, cipher: XChaCha20Poly1305, jobs: mpsc::Receiver<Job>) {
    while let Ok(first) = jobs.recv() {
        let mut bytes = first.size();
        let mut group = vec![first];
        while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
            match jobs.try_recv() {
                Ok(job) => {
                    bytes += job.size();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&db, &cipher, group);
    }
}

fn commit_group(db: &Database, cipher: &XChaCha20Poly1305, group: Vec<Job>) {
    let txn = match db.begin_write() {
        Ok(txn) => txn,
        Err(e) => {
            let JobError::Fatal(message) = fatal(e) else {
                return;
            };
            for job in group {
                job.reply.send(Err(KvError::Unavailable(message.clone())));
            }
            return;
        }
    };
    let mut outcomes = Vec::with_capacity(group.len());
    let mut failure = None;
    for job in &group {
        match apply_job(&txn, cipher, job) {
            Ok(()) => outcomes.push(Ok(())),
            Err(JobError::Refused(e)) => outcomes.push(Err(e)),
            Err(JobError::Fatal(message)) => {
                failure = Some(message);
                break;
            }
        }
    }
    // Dropping `txn` uncommitted aborts it: nothing of the group is written.
    let committed = match failure {
        Some(message) => Err(message),
        None => txn.commit().map_err(|e| match fatal(e) {
            JobError::Fatal(message) => message,
            JobError::Refused(e) => e.to_string(),
        }),
    };
    let mut outcomes = outcomes.into_iter();
    for job in group {
        let outcome = outcomes.next();
        let result = match (&committed, outcome) {
            (Ok(()), Some(outcome)) => outcome,
            // Refused on its own: that is its answer either way.
            (_, Some(Err(refused))) => Err(refused),
            (Err(_), _) | (Ok(()), None) => {
                Err(KvError::Unavailable(message_or(committed.as_ref().err())))
            }
        };
        job.reply.send(result);
    }
}

fn message_or(message: Option<&String>) -> String {
    message
        .cloned()
        .unwrap_or_else(|| "the store's writer stopped".into())
}

/// Checks and applies one job inside the group's transaction. Everything
/// that can refuse the job (preconditions, quota, an injected failure) is
/// decided before its first write, so a refused job leaves no trace.
fn apply_job(
    txn: &redb::WriteTransaction,
    cipher: &XChaCha20Poly1305,
    job: &Job,
) -> Result<(), JobError> {
    let def: TableDefinition<'_, &'static str, &'static [u8]> = TableDefinition::new(&job.table);
    let mut table = txn.open_table(def).map_err(fatal)?;
    for precondition in &job.preconditions {
        let current = match table.get(precondition.key.as_str()).map_err(fatal)? {
            None => None,
            Some(guard) => Some(
                unseal(
                    cipher,
                    &aad(&job.namespace, &precondition.key),
                    guard.value(),
                )
                .ok_or_else(|| {
                    JobError::Refused(KvError::Unavailable(format!(
                        "value of {:?} failed authentication",
                        precondition.key
                    )))
                })?,
            ),
        };
        if current != precondition.expected {
            return Err(JobError::Refused(KvError::Conflict(
                precondition.key.clone(),
            )));
        }
    }

    let mut usage_table = txn.open_table(USAGE).map_err(fatal)?;
    let before = usage_table
        .get(&*job.namespace)
        .map_err(fatal)?
        .map_or((0, 0), |guard| guard.value());
    let (mut keys, mut bytes) = before;
    // Plaintext length of each key as the writes before it leave it.
    let mut lengths: HashMap<&str, Option<usize>> = HashMap::new();
    let refused_corrupt = |what: &str| JobError::Refused(corrupt(&job.namespace, what));
    for write in &job.writes {
        let key = write.key();
        let old = match lengths.get(key) {
            Some(len) => *len,
            None => match table.get(key).map_err(fatal)? {
                None => None,
                Some(guard) => Some(
                    guard
                        .value()
                        .len()
                        .checked_sub(SEAL_OVERHEAD)
                        .ok_or_else(|| refused_corrupt("a stored value is truncated"))?,
                ),
            },
        };
        if let Some(old) = old {
            keys = keys
                .checked_sub(1)
                .ok_or_else(|| refused_corrupt("its key count is too low"))?;
            bytes = bytes
                .checked_sub((key.len() + old) as u64)
                .ok_or_else(|| refused_corrupt("its byte count is too low"))?;
        }
        let new = match write {
            SealedWrite::Set { plain_len, .. } => {
                keys = keys.saturating_add(1);
                bytes = bytes.saturating_add((key.len() + plain_len) as u64);
                Some(*plain_len)
            }
            SealedWrite::Delete { .. } => None,
        };
        lengths.insert(key, new);
    }
    if let Some(n) = job.fail_after {
        return Err(JobError::Refused(injected_failure(n.min(job.writes.len()))));
    }
    // A batch that does not grow a dimension is always allowed, so a
    // namespace over a since-lowered quota can still shrink.
    if keys > job.quota.max_keys && keys > before.0 {
        return Err(JobError::Refused(KvError::QuotaExceeded(format!(
            "{} keys",
            job.quota.max_keys
        ))));
    }
    if bytes > job.quota.max_bytes && bytes > before.1 {
        return Err(JobError::Refused(KvError::QuotaExceeded(format!(
            "{} bytes",
            job.quota.max_bytes
        ))));
    }

    for write in &job.writes {
        match write {
            SealedWrite::Set { key, sealed, .. } => {
                table
                    .insert(key.as_str(), sealed.as_slice())
                    .map_err(fatal)?;
            }
            SealedWrite::Delete { key } => {
                table.remove(key.as_str()).map_err(fatal)?;
            }
        }
    }
    if keys == 0 {
        usage_table.remove(&*job.namespace).map_err(fatal)?;
    } else {
        usage_table
            .insert(&*job.namespace, (keys, bytes))
            .map_err(fatal)?;
    }
    Ok(())
}

impl Job {
    fn size(&self) -> usize {
        self.writes
            .iter()
            .map(|w| match w {
                SealedWrite::Set { key, sealed, .. } => key.len() + sealed.len(),
                SealedWrite::Delete { key } => key.len(),
            })
            .sum()
    }
}

/// The associated data binding a sealed value to its namespace and key.
/// The namespace is length-prefixed so that no (namespace, key) pair can
/// produce the same bytes as another, whatever either contains.
fn aad(namespace: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + namespace.len() + 1 + key.len());
    aad.extend_from_slice(&(namespace.len() as u64).to_le_bytes());
    aad.extend_from_slice(namespace.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad
}

impl fmt::Debug for Store {
    // Never prints the cipher (it holds the host key).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) `DATA_DIR/store.redb` and the host key
    /// `DATA_DIR/host.key`.
    ///
    /// The data directory is created with mode 0700 if missing. The key file
    /// (32 random bytes) is created at first start with mode 0600 from the
    /// start, so it is never world-readable, even briefly. An existing key
    /// file accessible by group or others, or of the wrong length, is
    /// refused, as is a missing or different key when the database already
    /// holds values sealed with another one.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        ensure_data_dir(data_dir)?;
        let db_path = data_dir.join(DB_FILE);
        let key_path = data_dir.join(KEY_FILE);

        // The database is opened first: redb locks its file, so from here on
        // no other host process works on this data directory, and creating
        // the key file below cannot race with another instance.
        let db = open_database(&db_path)?;
        let db_err = |e: redb::Error| StoreError::Database {
            path: db_path.clone(),
            reason: e.to_string(),
        };
        let key_check = read_key_check(&db).map_err(db_err)?;

        let key = match read_key_file(&key_path)? {
            Some(key) => key,
            None if key_check.is_some() => {
                return Err(StoreError::KeyMissing { key_path, db_path });
            }
            None => create_key_file(data_dir, &key_path)?,
        };
        let cipher = XChaCha20Poly1305::new(&key.into());

        match key_check {
            Some(sealed) => {
                if unseal(&cipher, KEY_CHECK_AAD, &sealed).is_none() {
                    return Err(StoreError::KeyMismatch { key_path, db_path });
                }
            }
            None => {
                let sealed = seal(&cipher, KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT).map_err(|e| {
                    StoreError::Database {
                        path: db_path.clone(),
                        reason: e.to_string(),
                    }
                })?;
                write_key_check(&db, &sealed).map_err(db_err)?;
            }
        }

        let db = Arc::new(db);
        let (jobs, queue) = mpsc::channel();
        let writer = {
            let (db, cipher) = (db.clone(), cipher.clone());
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || run_writer(db, cipher, queue))
                .map_err(|source| StoreError::Database {
                    path: db_path.clone(),
                    reason: format!("cannot start the writer thread: {source}"),
                })?
        };
        Ok(Store {
            inner: Arc::new(Inner {
                db,
                cipher,
                fail_batch_after: AtomicUsize::new(NO_INJECTED_FAILURE),
                jobs: Some(jobs),
                writer: Some(writer),
            }),
        })
    }

    /// A namespace: plugins use `plugin/<id>`; the host uses names such as
    /// `host/extensions`. Any string is a valid, distinct namespace name.
    pub fn namespace(&self, name: &str, quota: Quota) -> Namespace {
        Namespace {
            store: self.clone(),
            name: name.into(),
            table: format!("{KV_TABLE_PREFIX}{name}").into(),
            quota,
        }
    }

    /// Test hook: the next batch (in any namespace) fails after `n` of its
    /// writes were applied inside the transaction, which is then aborted.
    #[doc(hidden)]
    pub fn fail_next_batch_after(&self, n: usize) {
        self.inner.fail_batch_after.store(n, Ordering::SeqCst);
    }
}

/// One isolated key space in the [`Store`], with its own quota.
#[derive(Clone)]
pub struct Namespace {
    store: Store,
    name: Arc<str>,
    /// Name of the redb table holding this namespace's rows.
    table: Arc<str>,
    quota: Quota,
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

impl Namespace {
    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's quota.
    pub fn quota(&self) -> Quota {
        self.quota
    }

    /// The value of `key`, or `None` if absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        validate_key(key)?;
        let txn = self.db().begin_read().map_err(unavailable)?;
        let table = match txn.open_table(self.table_def()) {
            Ok(table) => table,
            // The table is created by the first write; until then the
            // namespace is simply empty.
            Err(TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        self.read_value(&table, key)
    }

    /// Sets `key` to `value`. Beyond the quota this fails with
    /// [`KvError::QuotaExceeded`] and the old value stays.
    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.commit_blocking(
            Vec::new(),
            &[Write::Set {
                key: key.to_owned(),
                value: value.to_vec(),
            }],
            None,
        )
    }

    /// Removes `key`; an absent key is not an error.
    pub fn delete(&self, key: &str) -> Result<(), KvError> {
        self.commit_blocking(
            Vec::new(),
            &[Write::Delete {
                key: key.to_owned(),
            }],
            None,
        )
    }

    /// The keys starting with `prefix`, in byte order.
    pub fn list_keys(&self, prefix: &str) -> Result<Vec<String>, KvError> {
        let txn = self.db().begin_read().map_err(unavailable)?;
        let table = match txn.open_table(self.table_def()) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(e)),
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

    /// Applies `writes` all-or-nothing in one write transaction.
    ///
    /// First every precondition is checked (the key holds exactly `expected`,
    /// or is absent when `None`): a failing one gives
    /// [`KvError::Conflict`] naming its key. Then the writes are applied in
    /// order, then the quota is checked ([`KvError::QuotaExceeded`]). On any
    /// error nothing is written.
    pub fn batch(&self, preconditions: &[Precondition], writes: &[Write]) -> Result<(), KvError> {
        let fail_after = self.take_armed_failure();
        self.commit_blocking(preconditions.to_vec(), writes, fail_after)
    }

    /// [`Namespace::batch`] for async callers: the task waits for the
    /// group commit without holding a thread.
    pub async fn batch_async(
        &self,
        preconditions: Vec<Precondition>,
        writes: Vec<Write>,
    ) -> Result<(), KvError> {
        let fail_after = self.take_armed_failure();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(self.job(preconditions, &writes, fail_after, Reply::Async(tx))?)?;
        rx.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// [`Namespace::set`] for async callers.
    pub async fn set_async(&self, key: String, value: Vec<u8>) -> Result<(), KvError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let writes = [Write::Set { key, value }];
        self.submit(self.job(Vec::new(), &writes, None, Reply::Async(tx))?)?;
        rx.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// [`Namespace::delete`] for async callers.
    pub async fn delete_async(&self, key: String) -> Result<(), KvError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let writes = [Write::Delete { key }];
        self.submit(self.job(Vec::new(), &writes, None, Reply::Async(tx))?)?;
        rx.await.unwrap_or_else(|_| Err(writer_gone()))
    }

    /// One-shot: whichever batch runs next consumes the armed failure.
    fn take_armed_failure(&self) -> Option<usize> {
        let armed = self
            .store
            .inner
            .fail_batch_after
            .swap(NO_INJECTED_FAILURE, Ordering::SeqCst);
        (armed != NO_INJECTED_FAILURE).then_some(armed)
    }

    /// Keys and bytes (key bytes plus plaintext value bytes) in use.
    pub fn usage(&self) -> Result<Usage, KvError> {
        let txn = self.db().begin_read().map_err(unavailable)?;
        let table = match txn.open_table(USAGE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Usage::default()),
            Err(e) => return Err(unavailable(e)),
        };
        let (keys, bytes) = table
            .get(&*self.name)
            .map_err(unavailable)?
            .map_or((0, 0), |guard| guard.value());
        Ok(Usage { keys, bytes })
    }

    /// Deletes the whole namespace atomically.
    pub fn clear(&self) -> Result<(), KvError> {
        let txn = self.db().begin_write().map_err(unavailable)?;
        txn.delete_table(self.table_def()).map_err(unavailable)?;
        txn.open_table(USAGE)
            .map_err(unavailable)?
            .remove(&*self.name)
            .map_err(unavailable)?;
        txn.commit().map_err(unavailable)
    }

    fn db(&self) -> &Database {
        &self.store.inner.db
    }

    fn table_def(&self) -> TableDefinition<'_, &'static str, &'static [u8]> {
        TableDefinition::new(&self.table)
    }

    /// The associated data binding a sealed value to its namespace and key.
    /// The namespace is length-prefixed so that no (namespace, key) pair can
    /// produce the same bytes as another, whatever either contains.
    fn aad(&self, key: &str) -> Vec<u8> {
        aad(&self.name, key)
    }

    fn read_value(
        &self,
        table: &impl ReadableTable<&'static str, &'static [u8]>,
        key: &str,
    ) -> Result<Option<Vec<u8>>, KvError> {
        let Some(guard) = table.get(key).map_err(unavailable)? else {
            return Ok(None);
        };
        match unseal(&self.store.inner.cipher, &self.aad(key), guard.value()) {
            Some(plaintext) => Ok(Some(plaintext)),
            None => {
                tracing::error!(namespace = %self.name, key, "stored value failed authentication");
                Err(KvError::Unavailable(format!(
                    "value of {key:?} failed authentication"
                )))
            }
        }
    }

    /// Checks and seals a batch for the writer. Bad input is refused here,
    /// before it queues; sealing happens on the caller's thread so the
    /// writer only writes.
    fn job(
        &self,
        preconditions: Vec<Precondition>,
        writes: &[Write],
        fail_after: Option<usize>,
        reply: Reply,
    ) -> Result<Job, KvError> {
        for precondition in &preconditions {
            validate_key(&precondition.key)?;
        }
        let mut sealed = Vec::with_capacity(writes.len());
        for write in writes {
            validate_key(write.key())?;
            sealed.push(match write {
                Write::Set { key, value } => {
                    validate_value(value)?;
                    SealedWrite::Set {
                        key: key.clone(),
                        sealed: seal(&self.store.inner.cipher, &self.aad(key), value)?,
                        plain_len: value.len(),
                    }
                }
                Write::Delete { key } => SealedWrite::Delete { key: key.clone() },
            });
        }
        Ok(Job {
            namespace: self.name.clone(),
            table: self.table.clone(),
            quota: self.quota,
            preconditions,
            writes: sealed,
            fail_after,
            reply,
        })
    }

    fn submit(&self, job: Job) -> Result<(), KvError> {
        let jobs = self.store.inner.jobs.as_ref().ok_or_else(writer_gone)?;
        jobs.send(job).map_err(|_| writer_gone())
    }

    /// The single blocking write path: `set`, `delete` and `batch` all go
    /// through here (and the async ones through [`Namespace::job`] too), so
    /// every write is checked, sealed and accounted the same way.
    fn commit_blocking(
        &self,
        preconditions: Vec<Precondition>,
        writes: &[Write],
        fail_after: Option<usize>,
    ) -> Result<(), KvError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(self.job(preconditions, writes, fail_after, Reply::Blocking(tx))?)?;
        rx.recv().unwrap_or_else(|_| Err(writer_gone()))
    }
}

fn writer_gone() -> KvError {
    KvError::Unavailable("the store's writer stopped; restart the host".into())
}

fn validate_key(key: &str) -> Result<(), KvError> {
    if key.is_empty() {
        return Err(KvError::InvalidKey("key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(KvError::InvalidKey(format!(
            "key is {} bytes long, the limit is {MAX_KEY_BYTES} bytes",
            key.len()
        )));
    }
    Ok(())
}

fn validate_value(value: &[u8]) -> Result<(), KvError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(KvError::QuotaExceeded(format!(
            "{MAX_VALUE_BYTES} bytes per value"
        )));
    }
    Ok(())
}

/// Maps a database error to [`KvError::Unavailable`], logging it: the caller
/// (a plugin) only sees the message, the operator needs the log.
fn unavailable(error: impl Into<redb::Error>) -> KvError {
    let error = error.into();
    tracing::error!(%error, "store operation failed");
    KvError::Unavailable(format!("database error: {error}"))
}

fn corrupt(namespace: &str, what: &str) -> KvError {
    tracing::error!(namespace, "usage record inconsistent: {what}");
    KvError::Unavailable(format!(
        "usage record of namespace {namespace:?} is inconsistent: {what}"
    ))
}

fn injected_failure(applied: usize) -> KvError {
    KvError::Unavailable(format!("injected failure after {applied} writes"))
}

/// `nonce || ciphertext` of `plaintext`, with a fresh random nonce.
fn seal(cipher: &XChaCha20Poly1305, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KvError> {
    // 192-bit random nonces: collisions are negligible without any counter
    // state that would have to survive crashes.
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| KvError::Unavailable("encryption failed".into()))?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    Ok(sealed)
}

/// The plaintext of a [`seal`]ed value, or `None` if it is malformed or
/// fails authentication (wrong key, namespace, or tampering).
fn unseal(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

fn ensure_data_dir(path: &Path) -> Result<(), StoreError> {
    let dir_err = |source| StoreError::DataDir {
        path: path.to_owned(),
        source,
    };
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            // Not refused: the key file and database carry their own
            // protection, but an open directory is worth the operator's eye.
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    "data directory is accessible by group or others; consider `chmod 700`"
                );
            }
            Ok(())
        }
        Ok(_) => Err(StoreError::NotADirectory {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(dir_err),
        Err(e) => Err(dir_err(e)),
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
    let table = match txn.open_table(META) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(table.get(KEY_CHECK)?.map(|guard| guard.value().to_vec()))
}

fn write_key_check(db: &Database, sealed: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(META)?.insert(KEY_CHECK, sealed)?;
    txn.commit()?;
    Ok(())
}

/// The key in `path`, or `None` if the file does not exist.
fn read_key_file(path: &Path) -> Result<Option<[u8; HOST_KEY_LEN]>, StoreError> {
    let io_err = |source| StoreError::KeyIo {
        path: path.to_owned(),
        source,
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    // Inspect the opened file, not the path, so the checks apply to exactly
    // what is read.
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(StoreError::KeyNotAFile {
            path: path.to_owned(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::KeyPermissions {
            path: path.to_owned(),
            mode,
        });
    }
    if meta.len() != HOST_KEY_LEN as u64 {
        return Err(StoreError::KeyLength {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    let mut key = [0u8; HOST_KEY_LEN];
    file.read_exact(&mut key).map_err(io_err)?;
    Ok(Some(key))
}

/// Creates the key file with 32 random bytes, owner-only from the start.
///
/// Written to a temporary name, synced, then renamed: a crash can leave a
/// stray temporary file but never a short `host.key`.
fn create_key_file(data_dir: &Path, path: &Path) -> Result<[u8; HOST_KEY_LEN], StoreError> {
    let io_err = |source| StoreError::KeyIo {
        path: path.to_owned(),
        source,
    };
    let mut key = [0u8; HOST_KEY_LEN];
    // Straight from the OS: the key is long-lived and worth the syscall.
    rand::rngs::OsRng
        .try_fill_bytes(&mut key)
        .map_err(|e| io_err(io::Error::other(e)))?;

    let tmp_path = data_dir.join(format!("{KEY_FILE}.tmp"));
    // A leftover from a crash during a previous first start. We hold the
    // database lock, so no other instance is writing it right now.
    match fs::remove_file(&tmp_path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(io_err)?;
    file.write_all(&key).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    drop(file);
    fs::rename(&tmp_path, path).map_err(io_err)?;
    // Make the rename itself durable before any value is sealed with the key.
    File::open(data_dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err)?;
    tracing::info!(path = %path.display(), "created host key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    fn open_temp() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open store");
        (dir, store)
    }

    /// Copies the raw stored bytes of one (namespace, key) to another,
    /// bypassing sealing: what an attacker with write access to the
    /// database file could do.
    fn raw_copy(store: &Store, from: (&str, &str), to: (&str, &str)) {
        let from_table = format!("{KV_TABLE_PREFIX}{}", from.0);
        let to_table = format!("{KV_TABLE_PREFIX}{}", to.0);
        let txn = store.inner.db.begin_write().expect("begin write");
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

    fn set(key: &str, value: &[u8]) -> Write {
        Write::Set {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    fn del(key: &str) -> Write {
        Write::Delete { key: key.into() }
    }

    #[test]
    fn store_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Store>();
        check::<Namespace>();
    }

    #[test]
    fn round_trip() {
        let (_dir, store) = open_temp();
        let ns = store.namespace("plugin/a", Quota::default());
        assert_eq!(ns.get("k").unwrap(), None);
        ns.set("k", b"v1").unwrap();
        assert_eq!(ns.get("k").unwrap().as_deref(), Some(&b"v1"[..]));
        ns.set("k", b"value two").unwrap();
        assert_eq!(ns.get("k").unwrap().as_deref(), Some(&b"value two"[..]));
        ns.set("empty", b"").unwrap();
        assert_eq!(ns.get("empty").unwrap(), Some(Vec::new()));
        ns.set("b/2", b"x").unwrap();
        ns.set("b/1", b"x").unwrap();
        ns.set("c", b"x").unwrap();
        assert_eq!(ns.list_keys("").unwrap(), ["b/1", "b/2", "c", "empty", "k"]);
        assert_eq!(ns.list_keys("b/").unwrap(), ["b/1", "b/2"]);
        assert_eq!(ns.list_keys("zzz").unwrap(), Vec::<String>::new());
        ns.delete("k").unwrap();
        ns.delete("k").unwrap(); // absent: not an error
        assert_eq!(ns.get("k").unwrap(), None);
        assert_eq!(
            ns.usage().unwrap(),
            Usage {
                // "empty" + "", "b/2" + "x", "b/1" + "x", "c" + "x"
                keys: 4,
                bytes: 5 + 4 + 4 + 2
            }
        );
    }

    #[test]
    fn invalid_keys_and_values() {
        let (_dir, store) = open_temp();
        let ns = store.namespace("plugin/a", Quota::UNLIMITED);
        assert!(matches!(ns.set("", b"v"), Err(KvError::InvalidKey(_))));
        assert!(matches!(ns.get(""), Err(KvError::InvalidKey(_))));
        assert!(matches!(ns.delete(""), Err(KvError::InvalidKey(_))));
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        let err = ns.set(&long, b"v").unwrap_err();
        assert!(
            matches!(&err, KvError::InvalidKey(m) if m.contains("1024")),
            "{err}"
        );
        ns.set(&"x".repeat(MAX_KEY_BYTES), b"v").unwrap();
        let err = ns.set("big", &vec![0; MAX_VALUE_BYTES + 1]).unwrap_err();
        assert!(
            matches!(&err, KvError::QuotaExceeded(m) if m.contains("16777216")),
            "{err}"
        );
        let err = ns
            .batch(
                &[Precondition {
                    key: String::new(),
                    expected: None,
                }],
                &[set("ok", b"v")],
            )
            .unwrap_err();
        assert!(matches!(err, KvError::InvalidKey(_)));
        assert_eq!(ns.get("ok").unwrap(), None);
    }

    #[test]
    fn namespaces_are_isolated() {
        let (_dir, store) = open_temp();
        let a = store.namespace("plugin/a", Quota::default());
        let b = store.namespace("plugin/b", Quota::default());
        // Names that prefix or extend each other must be isolated too.
        let a_ext = store.namespace("plugin/a/b", Quota::default());
        let a_nul = store.namespace("plugin/a\0", Quota::default());
        let hostile = [
            "/",
            "\0",
            "../plugin/b/k",
            "plugin/b/k",
            "plugin/b\0k",
            "b",
            "kv/plugin/b",
            "usage",
        ];
        for key in hostile {
            a.set(key, b"secret-of-a").unwrap();
        }
        b.set("k", b"of-b").unwrap();

        for other in [&b, &a_ext, &a_nul] {
            for key in hostile {
                assert_eq!(other.get(key).unwrap(), None, "{key:?}");
            }
        }
        assert_eq!(b.list_keys("").unwrap(), ["k"]);
        assert!(a_ext.list_keys("").unwrap().is_empty());
        assert!(a_nul.list_keys("").unwrap().is_empty());
        let mut expected: Vec<String> = hostile.iter().map(|k| k.to_string()).collect();
        expected.sort();
        assert_eq!(a.list_keys("").unwrap(), expected);
        assert_eq!(a.get("k").unwrap(), None);

        // Deletes and clears elsewhere leave `a` alone.
        for key in hostile {
            b.delete(key).unwrap();
            a_ext.delete(key).unwrap();
        }
        b.clear().unwrap();
        a_nul.clear().unwrap();
        assert_eq!(a.list_keys("").unwrap(), expected);
        assert_eq!(a.usage().unwrap().keys, hostile.len() as u64);
        assert_eq!(b.usage().unwrap(), Usage::default());
        assert_eq!(b.get("k").unwrap(), None);

        // A batch in `b` with preconditions on `a`'s keys sees them absent.
        b.batch(
            &[Precondition {
                key: "plugin/b/k".into(),
                expected: None,
            }],
            &[set("x", b"y")],
        )
        .unwrap();
        assert_eq!(
            a.get("plugin/b/k").unwrap().as_deref(),
            Some(&b"secret-of-a"[..])
        );
    }

    #[test]
    fn batch_applies_all_when_preconditions_hold() {
        let (_dir, store) = open_temp();
        let ns = store.namespace("plugin/a", Quota::default());
        ns.set("counter", b"1").unwrap();
        ns.batch(
            &[
                Precondition {
                    key: "counter".into(),
                    expected: Some(b"1".to_vec()),
                },
                Precondition {
                    key: "lock".into(),
                    expected: None,
                },
            ],
            &[set("counter", b"2"), set("lock", b"held"), del("absent")],
        )
        .unwrap();
        assert_eq!(ns.get("counter").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(ns.get("lock").unwrap().as_deref(), Some(&b"held"[..]));
        // Same key twice in one batch: the last write wins, counted once.
        ns.batch(&[], &[set("dup", b"1"), set("dup", b"22")])
            .unwrap();
        assert_eq!(ns.get("dup").unwrap().as_deref(), Some(&b"22"[..]));
        assert_eq!(
            ns.usage().unwrap(),
            Usage {
                keys: 3,
                bytes: 7 + 1 + 4 + 4 + 3 + 2
            }
        );
    }

    #[test]
    fn failing_precondition_writes_nothing() {
        let (_dir, store) = open_temp();
        let ns = store.namespace("plugin/a", Quota::default());
        ns.set("counter", b"1").unwrap();
        let usage = ns.usage().unwrap();
        let cases = [
            Precondition {
                key: "counter".into(),
                expected: Some(b"0".to_vec()),
            },
            Precondition {
                key: "counter".into(),
                expected: None,
            },
            Precondition {
                key: "absent".into(),
                expected: Some(Vec::new()),
            },
        ];
        for precondition in cases {
            let expected_key = precondition.key.clone();
            let ok = Precondition {
                key: "counter".into(),
                expected: Some(b"1".to_vec()),
            };
            let err = ns
                .batch(
                    &[ok, precondition],
                    &[set("counter", b"2"), set("new", b"x"), del("counter")],
                )
                .unwrap_err();
            assert!(
                matches!(&err, KvError::Conflict(k) if *k == expected_key),
                "{err}"
            );
            assert_eq!(ns.get("counter").unwrap().as_deref(), Some(&b"1"[..]));
            assert_eq!(ns.get("new").unwrap(), None);
            assert_eq!(ns.usage().unwrap(), usage);
        }
    }

    #[test]
    fn injected_failure_writes_nothing() {
        let (_dir, store) = open_temp();
        let ns = store.namespace("plugin/a", Quota::default());
        ns.set("a", b"old-a").unwrap();
        ns.set("b", b"old-b").unwrap();
        let usage = ns.usage().unwrap();
        let writes = [set("a", b"new-a"), del("b"), set("c", b"new-c")];
        for n in [0, 1, 2, 3, 10] {
            // The hook fires in whichever namespace batches next.
            store.fail_next_batch_after(n);
            let err = ns.batch(&[], &writes).unwrap_err();
            assert!(matches!(err, KvError::Unavailable(_)), "{err}");
            assert_eq!(ns.get("a").unwrap().as_deref(), Some(&b"old-a"[..]));
            assert_eq!(ns.get("b").unwrap().as_deref(), Some(&b"old-b"[..]));
            assert_eq!(ns.get("c").unwrap(), None);
            assert_eq!(ns.usage().unwrap(), usage);
        }
        // The hook is one-shot, and plain set/delete never consume it.
        store.fail_next_batch_after(0);
        ns.set("d", b"d").unwrap();
        assert!(ns.batch(&[], &writes).is_err());
        ns.batch(&[], &writes).unwrap();
        assert_eq!(ns.get("a").unwrap().as_deref(), Some(&b"new-a"[..]));
        assert_eq!(ns.get("b").unwrap(), None);
        assert_eq!(ns.list_keys("").unwrap(), ["a", "c", "d"]);
    }

    #[test]
    fn quota_on_keys() {
        let (_dir, store) = open_temp();
        let quota = Quota {
            max_keys: 2,
            max_bytes: u64::MAX,
        };
        let ns = store.namespace("plugin/a", quota);
        ns.set("a", b"1").unwrap();
        ns.set("b", b"2").unwrap();
        let err = ns.set("c", b"3").unwrap_err();
        assert!(
            matches!(&err, KvError::QuotaExceeded(m) if m == "2 keys"),
            "{err}"
        );
        assert_eq!(ns.get("c").unwrap(), None);
        // Overwriting an existing key adds no key.
        ns.set("a", b"11").unwrap();
        assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 5 });

        // A batch that would end at 3 keys fails as a whole.
        let err = ns
            .batch(&[], &[set("b", b"22"), set("c", b"3")])
            .unwrap_err();
        assert!(matches!(err, KvError::QuotaExceeded(_)));
        assert_eq!(ns.get("b").unwrap().as_deref(), Some(&b"2"[..]));
        // One that ends within the quota passes, even if it passes through 3.
        ns.batch(&[], &[set("c", b"3"), del("a")]).unwrap();
        assert_eq!(ns.list_keys("").unwrap(), ["b", "c"]);
        assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 4 });

        ns.delete("b").unwrap();
        assert_eq!(ns.usage().unwrap(), Usage { keys: 1, bytes: 2 });
        ns.set("d", b"4").unwrap();
        assert!(matches!(ns.set("e", b"5"), Err(KvError::QuotaExceeded(_))));
        ns.clear().unwrap();
        assert_eq!(ns.usage().unwrap(), Usage::default());
        ns.set("x", b"1").unwrap();
        ns.set("y", b"1").unwrap();
    }

    #[test]
    fn quota_on_bytes() {
        let (_dir, store) = open_temp();
        let quota = Quota {
            max_keys: u64::MAX,
            max_bytes: 20,
        };
        let ns = store.namespace("plugin/a", quota);
        ns.set("k1", b"12345678").unwrap(); // 10 bytes
        ns.set("k2", b"12345678").unwrap(); // 20 bytes: exactly at the limit
        assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 20 });
        let err = ns.set("k3", b"").unwrap_err();
        assert!(
            matches!(&err, KvError::QuotaExceeded(m) if m == "20 bytes"),
            "{err}"
        );
        // A growing overwrite fails and leaves the old value.
        assert!(matches!(
            ns.set("k1", b"123456789"),
            Err(KvError::QuotaExceeded(_))
        ));
        assert_eq!(ns.get("k1").unwrap().as_deref(), Some(&b"12345678"[..]));
        // A shrinking overwrite frees exactly the difference.
        ns.set("k1", b"1234").unwrap();
        assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 16 });
        ns.set("k3", b"12").unwrap();
        assert_eq!(ns.usage().unwrap(), Usage { keys: 3, bytes: 20 });

        // Batch: over the limit at the end fails as a whole.
        let err = ns
            .batch(&[], &[del("k3"), set("k4", b"12345")])
            .unwrap_err();
        assert!(matches!(err, KvError::QuotaExceeded(_)));
        assert_eq!(ns.get("k3").unwrap().as_deref(), Some(&b"12"[..]));
        assert_eq!(ns.usage().unwrap(), Usage { keys: 3, bytes: 20 });
        ns.batch(&[], &[del("k3"), set("k4", b"12")]).unwrap();
        assert_eq!(ns.usage().unwrap(), Usage { keys: 3, bytes: 20 });

        // Deletes give back exactly what was used.
        ns.delete("k1").unwrap();
        ns.delete("k2").unwrap();
        assert_eq!(ns.usage().unwrap(), Usage { keys: 1, bytes: 4 });
        ns.delete("k4").unwrap();
        assert_eq!(ns.usage().unwrap(), Usage::default());
        ns.set("big", &[7; 17]).unwrap();
        assert_eq!(ns.usage().unwrap(), Usage { keys: 1, bytes: 20 });
    }

    #[test]
    fn shrinking_is_allowed_over_a_lowered_quota() {
        let (_dir, store) = open_temp();
        store
            .namespace("plugin/a", Quota::UNLIMITED)
            .set("k", b"0123456789")
            .unwrap();
        let tight = store.namespace(
            "plugin/a",
            Quota {
                max_keys: 0,
                max_bytes: 5,
            },
        );
        tight.set("k", b"01234").unwrap();
        assert!(matches!(
            tight.set("k", b"012345"),
            Err(KvError::QuotaExceeded(_))
        ));
        tight.delete("k").unwrap();
        assert_eq!(tight.usage().unwrap(), Usage::default());
    }

    #[test]
    fn a_refused_batch_in_a_group_leaves_the_others_whole() {
        let (_dir, store) = open_temp();
        let ns = store.namespace("plugin/a", Quota::default());
        ns.set("counter", b"1").unwrap();
        let (replies, answers): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::sync_channel(1)).unzip();
        let mut replies = replies.into_iter();
        let mut job = |pre: Vec<Precondition>, writes: &[Write]| {
            let reply = Reply::Blocking(replies.next().unwrap());
            ns.job(pre, writes, None, reply).unwrap()
        };
        let expect = |value: &[u8]| Precondition {
            key: "counter".into(),
            expected: Some(value.to_vec()),
        };
        // Two writers read "1"; the first to commit wins, the second is
        // refused, and a third sees the first one's write in the same group.
        let group = vec![
            job(vec![expect(b"1")], &[set("counter", b"2"), set("a", b"x")]),
            job(vec![expect(b"1")], &[set("counter", b"9"), set("b", b"y")]),
            job(vec![expect(b"2")], &[set("counter", b"3"), del("a")]),
            job(vec![], &[set("c", b"zz"), set("c", b"z")]),
        ];
        commit_group(&store.inner.db, &store.inner.cipher, group);
        let results: Vec<_> = answers.iter().map(|rx| rx.recv().unwrap()).collect();
        assert!(results[0].is_ok() && results[2].is_ok() && results[3].is_ok());
        assert!(matches!(&results[1], Err(KvError::Conflict(k)) if k == "counter"));
        assert_eq!(ns.get("counter").unwrap().as_deref(), Some(&b"3"[..]));
        assert_eq!(ns.get("a").unwrap(), None);
        assert_eq!(
            ns.get("b").unwrap(),
            None,
            "the refused batch wrote nothing"
        );
        assert_eq!(ns.get("c").unwrap().as_deref(), Some(&b"z"[..]));
        // counter(7+1) + c(1+1): the accounting follows every write in order.
        assert_eq!(ns.usage().unwrap(), Usage { keys: 2, bytes: 10 });
    }

    #[tokio::test]
    async fn async_writes_answer_without_blocking_the_runtime() {
        let (_dir, store) = open_temp();
        let ns = store.namespace("plugin/a", Quota::default());
        let writes = (0..32).map(|i| {
            let ns = ns.clone();
            tokio::spawn(async move { ns.set_async(format!("k{i}"), vec![7; 3]).await })
        });
        for w in writes {
            w.await.unwrap().unwrap();
        }
        ns.batch_async(
            vec![Precondition {
                key: "k0".into(),
                expected: Some(vec![7; 3]),
            }],
            vec![del("k0")],
        )
        .await
        .unwrap();
        assert_eq!(ns.list_keys("k").unwrap().len(), 31);
        let bytes: usize = (1..32).map(|i| format!("k{i}").len() + 3).sum();
        assert_eq!(
            ns.usage().unwrap(),
            Usage {
                keys: 31,
                bytes: bytes as u64
            }
        );
    }

    #[test]
    fn concurrent_writers_keep_exact_accounting() {
        let (_dir, store) = open_temp();
        let ns = store.namespace("plugin/a", Quota::default());
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let ns = ns.clone();
                thread::spawn(move || {
                    for i in 0..25 {
                        ns.set(&format!("t{t}/{i:02}"), b"12345").unwrap();
                        if i % 5 == 0 {
                            ns.delete(&format!("t{t}/{i:02}")).unwrap();
                        }
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert_eq!(
            ns.usage().unwrap(),
            Usage {
                keys: 80,
                bytes: 80 * 10
            }
        );
        assert_eq!(ns.list_keys("").unwrap().len(), 80);
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
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .unwrap()
            .write_all(&[1; 31])
            .unwrap();
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

        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&key_path)
            .unwrap()
            .write_all(&[9; 32])
            .unwrap();
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
        let (_dir, store) = open_temp();
        let a = store.namespace("plugin/a", Quota::default());
        let b = store.namespace("plugin/b", Quota::default());
        a.set("token", b"secret").unwrap();
        a.set("other", b"x").unwrap();

        raw_copy(&store, ("plugin/a", "token"), ("plugin/a", "other"));
        let err = a.get("other").unwrap_err();
        assert!(
            matches!(&err, KvError::Unavailable(m) if m.contains("\"other\"") && m.contains("failed authentication")),
            "{err}"
        );

        raw_copy(&store, ("plugin/a", "token"), ("plugin/b", "token"));
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

    #[test]
    fn debug_output_hides_values() {
        let write = set("k", b"hunter2");
        let precondition = Precondition {
            key: "k".into(),
            expected: Some(b"hunter2".to_vec()),
        };
        assert!(!format!("{write:?}{precondition:?}").contains("hunter2"));
    }
}
