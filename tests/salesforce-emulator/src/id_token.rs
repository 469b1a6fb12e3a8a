//! OpenID Connect `id_token`s as Salesforce issues them with the `openid`
//! scope: a JWT signed RS256, whose key the org publishes at `/id/keys`.
//!
//! The signing key is a fixed test key (`id_token_key.der`, PKCS#1): an emulated org
//! has deterministic ids, and clients only need the published public half.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The key id in the JWT header and the JWKS.
pub const KEY_ID: &str = "emulator-1";

fn key() -> Option<&'static RsaKeyPair> {
    static KEY: OnceLock<Option<RsaKeyPair>> = OnceLock::new();
    KEY.get_or_init(|| RsaKeyPair::from_der(include_bytes!("id_token_key.der")).ok())
        .as_ref()
}

/// What an id_token says.
pub struct Claims<'a> {
    /// The org's base URL (`iss`).
    pub issuer: &'a str,
    /// The identity URL (`sub`).
    pub subject: &'a str,
    /// The consumer key (`aud`).
    pub audience: &'a str,
    /// The access token it comes with (for `at_hash`).
    pub access_token: &'a str,
    /// Seconds since the epoch.
    pub issued_at: u64,
    /// The user's names and e-mail.
    pub profile: Value,
}

/// A signed id_token, or `None` if the key cannot sign (it always can).
pub fn issue(claims: &Claims<'_>) -> Option<String> {
    let key = key()?;
    let header = json!({"alg": "RS256", "kid": KEY_ID, "typ": "JWT"});
    // at_hash: the left half of SHA-256 of the access token (OIDC core 3.1.3.6).
    let digest = Sha256::digest(claims.access_token.as_bytes());
    let mut body = json!({
        "iss": claims.issuer,
        "sub": claims.subject,
        "aud": claims.audience,
        "iat": claims.issued_at,
        "exp": claims.issued_at + 300,
        "at_hash": URL_SAFE_NO_PAD.encode(&digest[..16]),
    });
    if let (Some(body), Some(profile)) = (body.as_object_mut(), claims.profile.as_object()) {
        body.extend(profile.clone());
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(body.to_string())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .ok()?;
    Some(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// `GET /id/keys`: the JWKS with the public key.
pub fn jwks() -> Value {
    let Some(key) = key() else {
        return json!({"keys": []});
    };
    let public = key.public_key();
    let components: ring::rsa::PublicKeyComponents<Vec<u8>> = public.into();
    json!({"keys": [{
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": KEY_ID,
        "n": URL_SAFE_NO_PAD.encode(trim(&components.n)),
        "e": URL_SAFE_NO_PAD.encode(trim(&components.e)),
    }]})
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};

    #[test]
    fn an_id_token_verifies_with_the_published_key() {
        let token = issue(&Claims {
            issuer: "https://127.0.0.1:1",
            subject: "https://127.0.0.1:1/id/00D/005",
            audience: "key",
            access_token: "00D!token",
            issued_at: 1_700_000_000,
            profile: json!({"email": "admin@example.org"}),
        });
        let token = token.unwrap_or_default();
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let jwks = jwks();
        let key = &jwks["keys"][0];
        let decode = |v: &Value| {
            URL_SAFE_NO_PAD
                .decode(v.as_str().unwrap_or_default())
                .unwrap_or_default()
        };
        let public = RsaPublicKeyComponents {
            n: decode(&key["n"]),
            e: decode(&key["e"]),
        };
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap_or_default();
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(
            public
                .verify(&RSA_PKCS1_2048_8192_SHA256, signed.as_bytes(), &signature)
                .is_ok()
        );
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap_or_default())
                .unwrap_or_default();
        assert_eq!(claims["aud"], "key");
        assert_eq!(claims["email"], "admin@example.org");
        // Tampering breaks it.
        let tampered = format!("{}.{}x", parts[0], parts[1]);
        assert!(
            public
                .verify(&RSA_PKCS1_2048_8192_SHA256, tampered.as_bytes(), &signature)
                .is_err()
        );
    }
}
