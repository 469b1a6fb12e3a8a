//! What the emulators' binaries do once started, so that scripts find
//! both the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Telling the world where the emulator is failed.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    #[error("writing {}", path.display())]
    CaFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Stdout(#[from] std::io::Error),
}

/// Writes the CA's PEM to `ca_cert_out` when given, then the base URL as
/// the first line of stdout (flushed: a script waits for it).
pub fn announce(
    base_url: &str,
    ca_pem: &str,
    ca_cert_out: Option<&Path>,
) -> Result<(), AnnounceError> {
    if let Some(path) = ca_cert_out {
        std::fs::write(path, ca_pem).map_err(|source| AnnounceError::CaFile {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{base_url}")?;
    out.flush()?;
    Ok(())
}
