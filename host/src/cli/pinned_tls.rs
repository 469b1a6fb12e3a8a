//! How the CLI trusts a host served with `--tls-cert`: the data directory
//! holds a copy of the certificate the host serves (`admin-cert.pem`), and
//! the admin client accepts exactly that certificate, whatever names it
//! carries (the admin URL is the listen address, often an IP the
//! certificate does not name). Any other certificate is refused, so the
//! admin token goes only to this host. The handshake's signature is still
//! checked, so only the holder of the certificate's key passes.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// An HTTP client for the admin API that trusts only the certificate in
/// `cert_file` (PEM; its first certificate), and no proxy.
pub fn client(cert_file: &Path) -> anyhow::Result<reqwest::Client> {
    let pem = std::fs::read(cert_file).with_context(|| {
        format!(
            "cannot read {}: the host serves HTTPS and keeps a copy of its certificate there; restart `pbx-host serve` to write it again",
            cert_file.display()
        )
    })?;
    let pinned = rustls_pemfile::certs(&mut pem.as_slice())
        .next()
        .and_then(Result::ok)
        .with_context(|| format!("{} holds no PEM certificate", cert_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        cert: pinned,
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("cannot build the admin API client")
}

/// Accepts exactly one certificate.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
