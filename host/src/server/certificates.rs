//! The certificates an HTTPS host serves: its own (`--tls-cert`), and a
//! tenant's own where the operator gave one, chosen by the host name the
//! client asks for (SNI). A tenant at its own domain (pbx.acme.example)
//! is then reached over HTTPS without a load balancer in front, and
//! without one certificate naming every tenant.
//!
//! A tenant's chain and key are kept in its store scope (`host/tls`,
//! sealed like every value), so every replica serves them; they are read
//! when the tenant is opened and when the replica follows the records.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use sha2::{Digest, Sha256};

use crate::store::{KvError, Namespace, Quota, Store, Write};

/// The store namespace of a tenant's certificate (its scope).
const TLS_NAMESPACE: &str = "host/tls";

/// Why a certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The chain is not usable; the message names what and the fix.
    #[error("{0}")]
    Chain(String),
    /// The key is not usable, or not the certificate's (its bytes are in
    /// no message).
    #[error("{0}")]
    Key(String),
    /// The certificate does not name the host it would be served for.
    #[error(
        "the certificate does not name {0}: get one whose subject alternative names include it (or a wildcard that covers it)"
    )]
    WrongName(String),
}

/// A certificate chain and its key, checked to belong together, with the
/// PEM they were read from (what a tenant's store keeps).
pub struct Certificate {
    key: Arc<CertifiedKey>,
    chain_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Certificate {
    /// Parse `chain_pem` (the server's certificate first, then its
    /// intermediates) and `key_pem` (PKCS#8, PKCS#1 or SEC1); `what` names
    /// them in errors (`--tls-cert`, or the operator's request).
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        what: (&str, &str),
    ) -> Result<Self, CertificateError> {
        let (chain_name, key_name) = what;
        let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &chain_pem[..])
            .collect::<Result<_, _>>()
            .map_err(|_| {
                CertificateError::Chain(format!("{chain_name} is not a PEM certificate chain"))
            })?;
        if chain.is_empty() {
            return Err(CertificateError::Chain(format!(
                "{chain_name} holds no certificate: give the PEM file with the server's certificate (then its intermediates)"
            )));
        }
        // Not in any message: the key's bytes.
        let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
            .ok()
            .flatten()
            .ok_or_else(|| {
                CertificateError::Key(format!(
                    "{key_name} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)"
                ))
            })?;
        let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|_| {
            CertificateError::Key(format!(
                "{key_name} does not belong to {chain_name}, or is not usable"
            ))
        })?;
        Ok(Self {
            key: Arc::new(key),
            chain_pem: chain_pem.to_vec(),
            key_pem: key_pem.to_vec(),
        })
    }

    /// Whether the server's certificate is valid for `host` (its names, or
    /// a wildcard covering it; not its dates).
    pub fn names(&self, host: &str) -> Result<(), CertificateError> {
        let wrong = || CertificateError::WrongName(host.to_string());
        let name = ServerName::try_from(host.to_string()).map_err(|_| wrong())?;
        let leaf = self.key.end_entity_cert().map_err(|_| wrong())?;
        let cert = webpki::EndEntityCert::try_from(leaf).map_err(|_| wrong())?;
        cert.verify_is_valid_for_subject_name(&name)
            .map_err(|_| wrong())
    }

    /// What tells it from another in the tenant's record (its chain's
    /// SHA-256; the chain binds the key): replicas load the tenant's
    /// certificate again when this changes, and only then.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(&self.chain_pem))
    }
}

/// The crypto the host serves TLS with.
pub fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Which certificate each host name gets: a tenant's own, else the
/// host's. Shared by the TLS listener and the tenants' openings.
pub struct Certificates {
    own: Arc<CertifiedKey>,
    by_host: RwLock<ByHost>,
}

/// The tenants' certificates by host name (lowercase, no port), and the
/// host name each tenant's is served for.
#[derive(Default)]
struct ByHost {
    keys: HashMap<String, Arc<CertifiedKey>>,
    hosts: HashMap<String, String>,
}

impl std::fmt::Debug for Certificates {
    /// Names only: nothing of a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosts: Vec<String> = self.read().keys.keys().cloned().collect();
        f.debug_struct("Certificates")
            .field("tenant_hosts", &hosts)
            .finish()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let tenant = hello
            .server_name()
            .and_then(|name| self.read().keys.get(&name.to_ascii_lowercase()).cloned());
        Some(tenant.unwrap_or_else(|| self.own.clone()))
    }
}

impl Certificates {
    /// The host's own certificate for every name, until tenants add theirs.
    pub fn new(own: Certificate) -> Self {
        Self {
            own: own.key,
            by_host: RwLock::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ByHost> {
        self.by_host.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ByHost> {
        self.by_host.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Serve `certificate` for `tenant` at `host` (and no longer at a host
    /// it was served at before).
    pub fn serve(&self, tenant: &str, host: &str, certificate: &Certificate) {
        let host = host.to_ascii_lowercase();
        let mut by_host = self.write();
        if let Some(old) = by_host.hosts.insert(tenant.to_string(), host.clone()) {
            by_host.keys.remove(&old);
        }
        by_host.keys.insert(host, certificate.key.clone());
    }

    /// Serve the host's own certificate where `tenant`'s was served.
    pub fn forget(&self, tenant: &str) {
        let mut by_host = self.write();
        if let Some(old) = by_host.hosts.remove(tenant) {
            by_host.keys.remove(&old);
        }
    }

    /// The host name `tenant`'s own certificate is served for, if any.
    pub fn host_of(&self, tenant: &str) -> Option<String> {
        self.read().hosts.get(tenant).cloned()
    }

    /// Serve what tenant `tenant` keeps in `store` at `host`: its own
    /// certificate, or the host's when it keeps none. A kept one that no
    /// longer parses or names `host` (the tenant moved) is not served
    /// (logged; the host's is).
    pub fn load(&self, tenant: &str, host: &str, store: &Store) -> Result<(), KvError> {
        let tls = namespace(store);
        let (Some(chain), Some(key)) = (tls.get("chain")?, tls.get("key")?) else {
            self.forget(tenant);
            return Ok(());
        };
        let usable = Certificate::from_pem(&chain, &key, ("the kept chain", "the kept key"))
            .and_then(|certificate| certificate.names(host).map(|()| certificate));
        match usable {
            Ok(certificate) => self.serve(tenant, host, &certificate),
            Err(e) => {
                tracing::error!(%tenant, "its certificate is not served: {e}");
                self.forget(tenant);
            }
        }
        Ok(())
    }
}

fn namespace(store: &Store) -> Namespace {
    store.namespace(TLS_NAMESPACE, Quota::UNLIMITED)
}

/// Keep `certificate` in the tenant's `store`, over any kept before.
pub fn keep(store: &Store, certificate: &Certificate) -> Result<(), KvError> {
    namespace(store).batch(
        &[],
        &[
            Write::Set {
                key: "chain".into(),
                value: certificate.chain_pem.clone(),
            },
            Write::Set {
                key: "key".into(),
                value: certificate.key_pem.clone(),
            },
        ],
    )
}

/// Forget the tenant's own certificate; whether it had one.
pub fn discard(store: &Store) -> Result<bool, KvError> {
    let tls = namespace(store);
    let had = tls.get("chain")?.is_some();
    tls.batch(
        &[],
        &[
            Write::Delete {
                key: "chain".into(),
            },
            Write::Delete { key: "key".into() },
        ],
    )?;
    Ok(had)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pem(names: &[&str]) -> (String, String) {
        let made = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .expect("certificate");
        (made.cert.pem(), made.signing_key.serialize_pem())
    }

    #[test]
    fn a_certificate_is_checked_against_its_key_and_its_host_name() {
        let (chain, key) = pem(&["pbx.acme.example", "*.acme.example"]);
        let certificate = Certificate::from_pem(chain.as_bytes(), key.as_bytes(), ("chain", "key"))
            .expect("usable");
        for host in ["pbx.acme.example", "PBX.acme.example", "other.acme.example"] {
            assert!(
                certificate.names(&host.to_ascii_lowercase()).is_ok(),
                "{host}"
            );
        }
        let wrong = certificate
            .names("pbx.globex.example")
            .expect_err("not its name");
        assert!(wrong.to_string().contains("pbx.globex.example"), "{wrong}");

        let (_, other_key) = pem(&["pbx.acme.example"]);
        let refused =
            Certificate::from_pem(chain.as_bytes(), other_key.as_bytes(), ("chain", "key"))
                .err()
                .expect("another key");
        assert!(refused.to_string().contains("does not belong"), "{refused}");
        assert!(!refused.to_string().contains("PRIVATE"), "no key bytes");
        let refused = Certificate::from_pem(b"not pem", key.as_bytes(), ("chain", "key"))
            .err()
            .expect("no chain");
        assert!(
            refused.to_string().contains("holds no certificate"),
            "{refused}"
        );
    }

    #[test]
    fn a_kept_certificate_is_served_for_its_name_and_forgotten_with_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store").tenant("acme");
        let (own_chain, own_key) = pem(&["pbx.host.example"]);
        let own = Certificate::from_pem(own_chain.as_bytes(), own_key.as_bytes(), ("c", "k"))
            .expect("own");
        let certificates = Certificates::new(own);
        certificates
            .load("acme", "pbx.acme.example", &store)
            .expect("load");
        assert_eq!(certificates.host_of("acme"), None, "none kept yet");

        let (chain, key) = pem(&["pbx.acme.example", "pbx.acme-corp.example"]);
        let acme =
            Certificate::from_pem(chain.as_bytes(), key.as_bytes(), ("c", "k")).expect("acme");
        keep(&store, &acme).expect("kept");
        // Another replica loads it from the store.
        certificates
            .load("acme", "PBX.ACME.example", &store)
            .expect("load");
        assert_eq!(
            certificates.host_of("acme").as_deref(),
            Some("pbx.acme.example")
        );
        assert!(!format!("{certificates:?}").contains("PRIVATE"));
        // Moved: served at the new name only.
        certificates
            .load("acme", "pbx.acme-corp.example", &store)
            .expect("load");
        assert_eq!(
            format!("{certificates:?}"),
            r#"Certificates { tenant_hosts: ["pbx.acme-corp.example"] }"#
        );
        // Moved to a name it does not cover: the host's is served there.
        certificates
            .load("acme", "pbx.elsewhere.example", &store)
            .expect("load");
        assert_eq!(certificates.host_of("acme"), None);

        assert!(discard(&store).expect("discarded"));
        assert!(!discard(&store).expect("discarded"), "none left");
        certificates
            .load("acme", "pbx.acme.example", &store)
            .expect("load");
        assert_eq!(certificates.host_of("acme"), None);
    }
}
