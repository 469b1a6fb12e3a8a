//! OAuth 2.0 authorization-code flow pieces every CRM needs: random
//! tokens from the host, PKCE (RFC 7636, S256) verifiers and challenges,
//! and the check that a `state` coming back is one a plugin could have
//! made before it becomes part of a kv key.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::host::Host;

/// `n` random bytes from the host, base64url without padding.
pub fn random_token<H: Host>(host: &H, n: usize) -> String {
    URL_SAFE_NO_PAD.encode(host.random_bytes(n))
}

/// A new PKCE verifier: 48 random bytes give 64 characters, inside RFC
/// 7636's 43..=128 range.
pub fn new_verifier<H: Host>(host: &H) -> String {
    random_token(host, 48)
}

/// The S256 challenge of `verifier`: base64url(SHA-256(verifier)), no padding.
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `state` looks like one this plugin made (base64url, bounded), so a
/// forged one never becomes part of a kv key.
pub fn plausible_state(state: &str) -> bool {
    (16..=128).contains(&state.len())
        && state
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn only_plausible_states_become_keys() {
        assert!(plausible_state(
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
        ));
        assert!(!plausible_state("../settings"));
        assert!(!plausible_state("short"));
        assert!(!plausible_state(&"a".repeat(200)));
    }
}
