//! Vendor signatures on plugin files.
//!
//! A signed component ends with one top-level custom section,
//! `pbx-crm-signature`, holding JSON `{"key": KEY_ID, "signature": BASE64}`:
//! an Ed25519 signature by the vendor's key over the SHA-256 of everything
//! before that section, i.e. of the unsigned file. Being the last section, it
//! can be appended to a finished build and stripped again without touching
//! the rest; wasm tools ignore custom sections.
//!
//! The operator lists the vendor keys it trusts (`--trusted-key
//! KEY_ID=BASE64`) and may require a signature on every file
//! (`--require-signature`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{ED25519, Ed25519KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The custom section's name.
pub const SECTION: &str = "pbx-crm-signature";

/// The section's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureSection {
    key: String,
    signature: String,
}

/// Why a file's signature is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The host requires signatures and the file has none.
    #[error(
        "the plugin is not signed, and this host requires a vendor signature (require-signature); ask the vendor for a signed build"
    )]
    Missing,
    /// Signed with a key the operator does not trust.
    #[error(
        "the plugin is signed with key {0:?}, which this host does not trust; add the vendor's public key with --trusted-key {0}=BASE64 if you trust it"
    )]
    UntrustedKey(String),
    /// The signature does not verify: the file was altered after signing,
    /// or signed with another key.
    #[error(
        "the plugin's signature by key {0:?} does not match the file: it was changed after signing; get the file from the vendor again"
    )]
    Invalid(String),
    /// The section is malformed or not last.
    #[error("the plugin's signature section is malformed: {0}")]
    Malformed(String),
    /// A vendor signing key cannot be read or made (vendor tooling).
    #[error("{0}")]
    Key(String),
}

/// The vendor keys an operator trusts, and whether every file must be signed.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Key id -> raw 32-byte Ed25519 public key.
    keys: BTreeMap<String, Vec<u8>>,
    /// Refuse unsigned files.
    pub required: bool,
}

impl Trust {
    /// Trust from `KEY_ID=BASE64` entries.
    pub fn new(entries: &[String], required: bool) -> Result<Trust, String> {
        let mut keys = BTreeMap::new();
        for entry in entries {
            let (id, key) = entry
                .split_once('=')
                .ok_or_else(|| format!("trusted key {entry:?} must be KEY_ID=BASE64_PUBLIC_KEY"))?;
            let raw = BASE64
                .decode(key.trim())
                .map_err(|e| format!("trusted key {id:?} is not base64: {e}"))?;
            if raw.len() != 32 {
                return Err(format!(
                    "trusted key {id:?} is {} bytes; an Ed25519 public key is 32",
                    raw.len()
                ));
            }
            keys.insert(id.trim().to_string(), raw);
        }
        Ok(Trust { keys, required })
    }
}

impl Trust {
    /// The public key (base64) trusted under `key_id`.
    pub fn public_key(&self, key_id: &str) -> Option<String> {
        self.keys.get(key_id).map(|raw| BASE64.encode(raw))
    }
}

/// Checks `bytes` against `trust`: the signer's key id when signed, `None`
/// when unsigned and signatures are optional.
pub fn verify(bytes: &[u8], trust: &Trust) -> Result<Option<String>, SignatureError> {
    let Some((unsigned, section)) = split(bytes)? else {
        return if trust.required {
            Err(SignatureError::Missing)
        } else {
            Ok(None)
        };
    };
    let public = trust
        .keys
        .get(&section.key)
        .ok_or_else(|| SignatureError::UntrustedKey(section.key.clone()))?;
    let signature = BASE64
        .decode(&section.signature)
        .map_err(|e| SignatureError::Malformed(format!("the signature is not base64: {e}")))?;
    let digest = Sha256::digest(unsigned);
    UnparsedPublicKey::new(&ED25519, public)
        .verify(&digest, &signature)
        .map_err(|_| SignatureError::Invalid(section.key.clone()))?;
    Ok(Some(section.key))
}

/// A new vendor signing key: the private key as a PEM PKCS#8 document (the
/// vendor keeps it secret; `openssl pkey` reads it) and the public key in
/// base64, as operators pass it to `--trusted-key`.
pub fn generate_key() -> Result<(String, String), SignatureError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| SignatureError::Key("the system's random source failed".into()))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|e| SignatureError::Key(format!("the new key is unusable: {e}")))?;
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    let body = BASE64.encode(pkcs8.as_ref());
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    Ok((pem, public_key(&pair)))
}

/// A vendor signing key from a PEM PKCS#8 file (as [`generate_key`] or
/// `openssl genpkey -algorithm ed25519` writes it).
pub fn key_from_pem(pem: &[u8]) -> Result<Ed25519KeyPair, SignatureError> {
    let not_a_key = || {
        SignatureError::Key(
            "the key file holds no PKCS#8 private key; make one with `pbx-host vendor keygen`"
                .into(),
        )
    };
    let mut reader = pem;
    let der = match rustls_pemfile::private_key(&mut reader) {
        Ok(Some(rustls::pki_types::PrivateKeyDer::Pkcs8(der))) => der,
        _ => return Err(not_a_key()),
    };
    Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.secret_pkcs8_der())
        .map_err(|_| SignatureError::Key("the key file's private key is not an Ed25519 key".into()))
}

/// A key id is what operators write before `=` in `--trusted-key`.
pub fn check_key_id(key_id: &str) -> Result<(), SignatureError> {
    if key_id.is_empty()
        || !key_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(SignatureError::Key(format!(
            "key id {key_id:?} must be letters, digits, '.', '_' or '-', e.g. acme-2026"
        )));
    }
    Ok(())
}

/// The public half of `key`, in base64.
pub fn public_key(key: &Ed25519KeyPair) -> String {
    BASE64.encode(ring::signature::KeyPair::public_key(key).as_ref())
}

/// Signs a finished component file, replacing a signature it already has
/// (so a vendor can sign again, e.g. with a new key).
pub fn sign_file(
    bytes: &[u8],
    key_id: &str,
    key: &Ed25519KeyPair,
) -> Result<Vec<u8>, SignatureError> {
    check_key_id(key_id)?;
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(SignatureError::Malformed(
            "the file is not WebAssembly; sign the built .wasm component".into(),
        ));
    }
    let unsigned = match split(bytes)? {
        Some((unsigned, _)) => unsigned,
        None => bytes,
    };
    Ok(sign(unsigned, key_id, key))
}

/// Signs an unsigned component: appends the signature section. (Vendor
/// tooling and tests; the host only verifies.)
pub fn sign(unsigned: &[u8], key_id: &str, key: &Ed25519KeyPair) -> Vec<u8> {
    let digest = Sha256::digest(unsigned);
    let section = SignatureSection {
        key: key_id.to_string(),
        signature: BASE64.encode(key.sign(&digest).as_ref()),
    };
    // Serializing two strings cannot fail.
    let payload = serde_json::to_vec(&section).unwrap_or_default();
    super::inspect::append_custom_section(unsigned, SECTION, &payload)
}

/// The unsigned part and the signature, when the last top-level section is
/// a signature. Only the binary's outer framing is read here (8-byte
/// header, then `id, size, content` sections); the component's validity is
/// checked by inspection.
fn split(bytes: &[u8]) -> Result<Option<(&[u8], SignatureSection)>, SignatureError> {
    let mut pos = 8;
    let mut found = None;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        let (size, after) = read_leb128(bytes, pos + 1)
            .ok_or_else(|| SignatureError::Malformed("a section size is cut off".into()))?;
        let end = after
            .checked_add(size)
            .filter(|end| *end <= bytes.len())
            .ok_or_else(|| SignatureError::Malformed("a section runs past the file".into()))?;
        if id == 0
            && let Some((name_len, name_at)) = read_leb128(bytes, after)
            && let Some(name) = name_at
                .checked_add(name_len)
                .filter(|e| *e <= end)
                .map(|e| &bytes[name_at..e])
            && name == SECTION.as_bytes()
        {
            if found.is_some() {
                return Err(SignatureError::Malformed(
                    "the file has two signature sections".into(),
                ));
            }
            let payload = &bytes[name_at + name_len..end];
            let section: SignatureSection = serde_json::from_slice(payload)
                .map_err(|e| SignatureError::Malformed(e.to_string()))?;
            found = Some((start, end, section));
        }
        pos = end;
    }
    match found {
        None => Ok(None),
        Some((start, end, section)) if end == bytes.len() => Ok(Some((&bytes[..start], section))),
        Some(_) => Err(SignatureError::Malformed(
            "the signature section must be the file's last section; sign the finished file".into(),
        )),
    }
}

/// An unsigned LEB128 u32 at `pos`: the value and the position after it.
fn read_leb128(bytes: &[u8], mut pos: usize) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for shift in (0..35).step_by(7) {
        let byte = *bytes.get(pos)?;
        pos += 1;
        value |= usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, pos));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    /// A minimal component header with one custom section, standing in for
    /// a build.
    fn unsigned() -> Vec<u8> {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']);
        bytes
    }

    fn keypair() -> (Ed25519KeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("keygen");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        let public = BASE64.encode(ring::signature::KeyPair::public_key(&pair).as_ref());
        (pair, public)
    }

    #[test]
    fn a_generated_key_signs_files_the_host_trusts_and_signing_again_replaces_the_signature() {
        let (pem, public) = generate_key().expect("keygen");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key = key_from_pem(pem.as_bytes()).expect("key file reads back");
        assert_eq!(public_key(&key), public);
        let trust = Trust::new(&[format!("acme-2026={public}")], true).expect("trust");
        let signed = sign_file(&unsigned(), "acme-2026", &key).expect("signed");
        assert_eq!(verify(&signed, &trust), Ok(Some("acme-2026".into())));

        // Signing a signed file again replaces its signature.
        let (other_pem, other_public) = generate_key().expect("keygen");
        let other = key_from_pem(other_pem.as_bytes()).expect("key");
        let again = sign_file(&signed, "acme-2027", &other).expect("signed again");
        let trust = Trust::new(&[format!("acme-2027={other_public}")], true).expect("trust");
        assert_eq!(verify(&again, &trust), Ok(Some("acme-2027".into())));
        assert_eq!(
            split(&again).ok().flatten().map(|s| s.0.to_vec()),
            Some(unsigned())
        );
    }

    #[test]
    fn bad_key_files_ids_and_files_are_refused_with_the_fix() {
        let err = key_from_pem(b"not a key").expect_err("refused");
        assert!(err.to_string().contains("pbx-host vendor keygen"), "{err}");
        let (pem, _) = generate_key().expect("keygen");
        let key = key_from_pem(pem.as_bytes()).expect("key");
        let err = sign_file(&unsigned(), "acme=1", &key).expect_err("bad id");
        assert!(err.to_string().contains("letters, digits"), "{err}");
        let err = sign_file(b"hello world", "acme", &key).expect_err("not wasm");
        assert!(err.to_string().contains("not WebAssembly"), "{err}");
    }

    #[test]
    fn a_signed_file_verifies_and_names_its_key() {
        let (pair, public) = keypair();
        let trust = Trust::new(&[format!("acme={public}")], true).expect("trust");
        let signed = sign(&unsigned(), "acme", &pair);
        assert_eq!(verify(&signed, &trust), Ok(Some("acme".into())));
        assert_eq!(
            split(&signed).ok().flatten().map(|s| s.0.to_vec()),
            Some(unsigned())
        );
    }

    #[test]
    fn altered_untrusted_missing_and_misplaced_signatures_are_refused() {
        let (pair, public) = keypair();
        let (other, _) = keypair();
        let trust = Trust::new(&[format!("acme={public}")], true).expect("trust");
        assert_eq!(verify(&unsigned(), &trust), Err(SignatureError::Missing));
        let optional = Trust::new(&[format!("acme={public}")], false).expect("trust");
        assert_eq!(verify(&unsigned(), &optional), Ok(None));

        let mut altered = sign(&unsigned(), "acme", &pair);
        altered[10] ^= 1;
        assert_eq!(
            verify(&altered, &trust),
            Err(SignatureError::Invalid("acme".into()))
        );
        let forged = sign(&unsigned(), "acme", &other);
        assert_eq!(
            verify(&forged, &trust),
            Err(SignatureError::Invalid("acme".into()))
        );
        let stranger = sign(&unsigned(), "stranger", &other);
        assert_eq!(
            verify(&stranger, &trust),
            Err(SignatureError::UntrustedKey("stranger".into()))
        );
        let mut not_last = sign(&unsigned(), "acme", &pair);
        not_last.extend_from_slice(&[0, 2, 1, b'x']);
        assert!(matches!(
            verify(&not_last, &trust),
            Err(SignatureError::Malformed(_))
        ));
        let mut cut = sign(&unsigned(), "acme", &pair);
        cut.truncate(cut.len() - 3);
        assert!(matches!(
            verify(&cut, &trust),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn bad_trusted_keys_are_refused_with_the_fix() {
        assert!(Trust::new(&["acme".into()], false).is_err());
        assert!(Trust::new(&["acme=!!".into()], false).is_err());
        assert!(Trust::new(&["acme=AAAA".into()], false).is_err());
    }
}
