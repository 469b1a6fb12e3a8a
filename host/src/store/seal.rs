//! Sealing values with XChaCha20-Poly1305 under the host key. Each sealed
//! value is `nonce || ciphertext` with a fresh random 24-byte nonce; the
//! associated data binds it to its namespace and key, so a ciphertext moved
//! elsewhere fails to open. Every backend stores only what this produces.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::types::KvError;

/// Length of the host key, in bytes.
pub(super) const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed value occupies beyond its plaintext.
pub(super) const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A value sealed under the host key at first start and kept by the backend.
/// It tells "the key file was lost or swapped" apart from a fresh store.
const KEY_CHECK_AAD: &[u8] = b"pbx-host store key check";
const KEY_CHECK_PLAINTEXT: &[u8] = b"pbx-host store key check v1";

/// The cipher under the host key. Cheap to clone.
#[derive(Clone)]
pub(super) struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for Sealer {
    // Never prints the cipher: it holds the host key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    pub(super) fn new(key: [u8; KEY_LEN]) -> Sealer {
        Sealer {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// `nonce || ciphertext` of `plaintext`, with a fresh random nonce.
    pub(super) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, KvError> {
        // 192-bit random nonces: collisions are negligible without any counter
        // state that would have to survive crashes.
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
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

    /// The plaintext of a [`Sealer::seal`]ed value, or `None` if it is
    /// malformed or fails authentication (wrong key, namespace, or tampering).
    pub(super) fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }

    /// The value stored under `key` in `namespace`, opened; a value that
    /// fails authentication is an error naming the key (never the value).
    pub(super) fn open_value(
        &self,
        namespace: &str,
        key: &str,
        sealed: &[u8],
    ) -> Result<Vec<u8>, KvError> {
        self.unseal(&aad(namespace, key), sealed)
            .ok_or_else(|| KvError::Unavailable(format!("value of {key:?} failed authentication")))
    }

    /// A fresh key-check value for a new store.
    pub(super) fn key_check(&self) -> Result<Vec<u8>, KvError> {
        self.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
    }

    /// Whether `sealed`, a store's key-check value, was sealed with this key.
    pub(super) fn opens_key_check(&self, sealed: &[u8]) -> bool {
        self.unseal(KEY_CHECK_AAD, sealed).is_some()
    }
}

/// The associated data binding a sealed value to its namespace and key.
/// The namespace is length-prefixed so that no (namespace, key) pair can
/// produce the same bytes as another, whatever either contains.
pub(super) fn aad(namespace: &str, key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(8 + namespace.len() + 1 + key.len());
    aad.extend_from_slice(&(namespace.len() as u64).to_le_bytes());
    aad.extend_from_slice(namespace.as_bytes());
    aad.push(0);
    aad.extend_from_slice(key.as_bytes());
    aad
}
