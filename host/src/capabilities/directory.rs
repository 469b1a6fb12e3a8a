//! `directory`: the PBX's extensions, read-only for plugins. A directory
//! that cannot be read fails the call (a trap) instead of looking empty: an
//! empty directory would make a plugin mark every association stale.

use super::Capabilities;
use crate::directory::{DirectoryError, Extension};

impl Capabilities {
    /// Every extension (without holding a worker while the store answers).
    pub async fn list_extensions(&self) -> wasmtime::Result<Vec<Extension>> {
        self.services
            .directory
            .list_async()
            .await
            .map_err(unavailable)
    }

    /// One extension by number.
    pub async fn get_extension(&self, number: &str) -> wasmtime::Result<Option<Extension>> {
        self.services
            .directory
            .get_async(number)
            .await
            .map_err(unavailable)
    }
}

fn unavailable(e: DirectoryError) -> wasmtime::Error {
    tracing::error!("extension directory unavailable: {e}");
    wasmtime::Error::msg(format!("the PBX extension directory is unavailable: {e}"))
}
