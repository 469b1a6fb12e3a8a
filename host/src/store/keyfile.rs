//! The data directory and the host key file in it: created owner-only
//! (0700 / 0600) from the start, the key written atomically, and refused
//! when it is readable by others, of the wrong length or not a file.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rand::TryRngCore;

use super::seal::KEY_LEN;
use super::types::StoreError;

/// File name of the host key inside the data directory.
pub const KEY_FILE: &str = "host.key";

/// Creates the data directory owner-only if missing; warns when an
/// existing one is open to group or others.
pub(super) fn ensure_data_dir(path: &Path) -> Result<(), StoreError> {
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

/// The key in `path`, or `None` if the file does not exist.
pub(super) fn read_key_file(path: &Path) -> Result<Option<[u8; KEY_LEN]>, StoreError> {
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
    if meta.len() != KEY_LEN as u64 {
        return Err(StoreError::KeyLength {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    let mut key = [0u8; KEY_LEN];
    file.read_exact(&mut key).map_err(io_err)?;
    Ok(Some(key))
}

/// Creates the key file with 32 random bytes, owner-only from the start.
///
/// Written to a temporary name, synced, then renamed: a crash can leave a
/// stray temporary file but never a short `host.key`.
pub(super) fn create_key_file(data_dir: &Path, path: &Path) -> Result<[u8; KEY_LEN], StoreError> {
    let io_err = |source| StoreError::KeyIo {
        path: path.to_owned(),
        source,
    };
    let mut key = [0u8; KEY_LEN];
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
