//! The store's public vocabulary: quotas, batches (writes, preconditions),
//! usage, errors. Its own file so that every part of the store, backends
//! included, can speak it without depending on the [`Store`](super::Store)
//! handle.

use std::fmt;
use std::io;
use std::path::PathBuf;

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

/// A condition a [`Namespace::batch`](super::Namespace::batch) checks before writing anything.
#[derive(Clone, PartialEq, Eq)]
pub struct Precondition {
    /// The key to check.
    pub key: String,
    /// The exact value the key must hold, or `None` if it must be absent.
    pub expected: Option<Vec<u8>>,
}

/// One write of a [`Namespace::batch`](super::Namespace::batch).
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

/// Errors of [`Store::open`](super::Store::open). Each message names the file and the fix.
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
    /// Redis could not be reached or used at start.
    #[error(
        "cannot use the store {store}: {reason}; fix: check that Redis runs there and answers (`redis-cli -u URL ping`), and the password and TLS in the --store URL"
    )]
    Redis {
        /// The store, without credentials.
        store: String,
        /// What went wrong.
        reason: String,
    },
    /// The key file is missing although the Redis store holds values
    /// sealed with it.
    #[error(
        "host key {key_path} is missing but {store} holds values encrypted with it; fix: copy host.key from another replica of this store (every replica needs the same key, mode 0600)"
    )]
    RedisKeyMissing {
        /// The key file.
        key_path: PathBuf,
        /// The store, without credentials.
        store: String,
    },
    /// The key file is not the key the Redis store was written with.
    #[error(
        "host key {key_path} does not match {store}; fix: copy host.key from another replica of this store (every replica needs the same key), or point --store at another Redis"
    )]
    RedisKeyMismatch {
        /// The key file.
        key_path: PathBuf,
        /// The store, without credentials.
        store: String,
    },
}
