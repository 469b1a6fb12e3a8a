//! The connect feature end to end against the fake host and fake Salesforce:
//! authorization, token refresh (one refresh across concurrent instances),
//! back-off, disconnect, and no secret anywhere it could leak.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use serde_json::Value;

use crate::bindings::exports::pbx::crm::integration::{ConnectionState, SettingInput, Status};
use crate::bindings::pbx::crm::http_fetch::{self, Denial, Method};
use crate::bindings::{ErrorKind, WitError};
use crate::connection::Tokens;
use crate::error::PluginError;
use crate::host::Host as _;
use crate::oauth::{Attempt, pkce_challenge};
use crate::plugin::Plugin;
use crate::salesforce::{QueryPage, Salesforce, SalesforceError};
use crate::settings::{CONSUMER_KEY, CONSUMER_SECRET, LOGIN_HOST, MY_DOMAIN_URL, Settings};
use crate::store::{Store, keys};
use crate::testing::{
    CALLBACK, FakeHost, FakeSalesforce, INSTANCE, KEY, LOGIN, ORG, SECRET, USERNAME, oauth_error,
};

const NOW: u64 = 1_700_000_000_000;

fn input(key: &str, value: &str) -> SettingInput {
    SettingInput {
        key: key.into(),
        value: Some(value.into()),
    }
}

fn configured() -> (FakeHost, Arc<FakeSalesforce>) {
    let host = FakeHost::default();
    host.set_now_ms(NOW);
    let sf = FakeSalesforce::new();
    sf.serve(&host);
    let saved = Plugin::new(&host)
        .save_settings(&[input(CONSUMER_KEY, KEY), input(CONSUMER_SECRET, SECRET)]);
    assert_eq!(
        saved.map(|s| s.state).map_err(|e| e.to_string()),
        Ok(ConnectionState::Configured)
    );
    (host, sf)
}

fn connect(host: &FakeHost, sf: &FakeSalesforce) -> Result<Status, PluginError> {
    let auth = Plugin::new(host).begin_authorization(CALLBACK)?;
    let query = sf.allow(&auth.url);
    // The callback arrives at another instance.
    Plugin::new(host).complete_authorization(CALLBACK, &query)
}

fn connected() -> (FakeHost, Arc<FakeSalesforce>) {
    let (host, sf) = configured();
    let status = connect(&host, &sf).map_err(|e| e.to_string());
    assert_eq!(status.map(|s| s.state), Ok(ConnectionState::Connected));
    host.clear_requests();
    (host, sf)
}

fn params(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn kind(e: PluginError) -> (ErrorKind, String) {
    let w = WitError::from(e);
    (w.kind, w.message)
}

fn err<T>(r: Result<T, PluginError>) -> (ErrorKind, String) {
    match r {
        Ok(_) => (ErrorKind::Internal, "unexpectedly succeeded".into()),
        Err(e) => kind(e),
    }
}

fn api_err<T>(r: Result<T, SalesforceError>) -> (ErrorKind, String) {
    err(r.map_err(PluginError::from))
}

/// The store without pending attempts (which a callback consumes).
fn dump_without_attempts(host: &FakeHost) -> String {
    host.kv_dump()
        .lines()
        .filter(|l| !l.starts_with(keys::ATTEMPT_PREFIX))
        .collect::<Vec<_>>()
        .join("\n")
}

fn tokens(host: &FakeHost) -> Option<Tokens> {
    Store::new(host).get(keys::TOKENS).ok().flatten()
}

fn limits(host: &FakeHost) -> Result<Value, SalesforceError> {
    Salesforce::new(host).get::<Value>("limits")
}

// --- begin_authorization ---------------------------------------------------

#[test]
fn the_consent_url_carries_the_documented_parameters() {
    let (host, _sf) = configured();
    let auth = Plugin::new(&host).begin_authorization(CALLBACK);
    let Ok(auth) = auth else {
        panic!("{:?}", auth.err().map(|e| e.to_string()));
    };
    assert!(
        auth.url
            .starts_with("https://login.salesforce.com/services/oauth2/authorize?"),
        "{}",
        auth.url
    );
    let p = params(&auth.url);
    assert_eq!(p.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(p.get("client_id").map(String::as_str), Some(KEY));
    assert_eq!(p.get("redirect_uri").map(String::as_str), Some(CALLBACK));
    assert_eq!(
        p.get("scope").map(String::as_str),
        Some("full api web openid id profile email address phone refresh_token offline_access")
    );
    assert_eq!(
        p.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    let state = p.get("state").cloned().unwrap_or_default();
    assert_eq!(state.len(), 43, "32 bytes base64url: {state}");

    // The stored verifier is the one the challenge was made from.
    let attempt: Option<Attempt> = Store::new(&host).get(&keys::attempt(&state)).ok().flatten();
    let Some(attempt) = attempt else {
        panic!("no attempt stored under the state: {}", host.kv_dump());
    };
    assert!((43..=128).contains(&attempt.verifier.len()));
    assert_eq!(
        p.get("code_challenge"),
        Some(&pkce_challenge(&attempt.verifier))
    );
    assert_eq!(attempt.callback_url, CALLBACK);
    assert_eq!(attempt.login_url, LOGIN);
    assert_eq!(attempt.expires_at_ms, NOW + 600_000);
    assert_eq!(auth.expires_at_ms, NOW + 600_000);
    // The host was asked to show it to the administrator.
    assert_eq!(host.opened(), vec![auth.url.clone()]);
    // The URL is properly encoded (spaces in the scope, the callback's slashes).
    assert!(auth.url.contains("scope=full+api+web") || auth.url.contains("scope=full%20api%20web"));
    assert!(
        auth.url
            .contains("redirect_uri=https%3A%2F%2Fpbx.example.org")
    );
}

#[test]
fn every_attempt_gets_its_own_state_and_verifier() {
    let (host, _sf) = configured();
    let a = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| params(&a.url));
    let b = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| params(&a.url));
    let (Ok(a), Ok(b)) = (a, b) else {
        panic!("begin failed");
    };
    assert_ne!(a.get("state"), b.get("state"));
    assert_ne!(a.get("code_challenge"), b.get("code_challenge"));
    assert_eq!(
        host.kv_keys()
            .iter()
            .filter(|k| k.starts_with("auth/attempt/"))
            .count(),
        2
    );
}

#[test]
fn a_my_domain_login_host_is_used_for_the_consent_page() {
    let (host, _sf) = configured();
    let saved = Plugin::new(&host).save_settings(&[
        input(LOGIN_HOST, "my-domain"),
        input(MY_DOMAIN_URL, "acme--uat.sandbox.my.salesforce.com"),
    ]);
    assert!(saved.is_ok());
    // That org answers the preflight like any reachable login host.
    host.on_fetch(|_| Ok(oauth_error("invalid_grant", "invalid authorization code")));
    let url = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url);
    let preflight = host.all_requests();
    assert!(
        preflight.first().is_some_and(
            |r| r.url == "https://acme--uat.sandbox.my.salesforce.com/services/oauth2/token"
        ),
        "the login host is checked first"
    );
    assert!(
        url.as_deref().is_ok_and(|u| u
            .starts_with("https://acme--uat.sandbox.my.salesforce.com/services/oauth2/authorize?")),
        "{:?}",
        url.map_err(|e| e.to_string())
    );
}

#[test]
fn authorizing_needs_complete_settings() {
    let host = FakeHost::default();
    let (k, message) = err(Plugin::new(&host).begin_authorization(CALLBACK));
    assert_eq!(k, ErrorKind::NotConfigured);
    assert!(
        message.contains("enter the Consumer Key and the Consumer Secret"),
        "{message}"
    );
    let saved = Plugin::new(&host).save_settings(&[input(CONSUMER_KEY, KEY)]);
    assert!(saved.is_ok());
    let (k, message) = err(Plugin::new(&host).begin_authorization(CALLBACK));
    assert_eq!(k, ErrorKind::NotConfigured);
    assert!(message.contains("enter the Consumer Secret"), "{message}");
    assert!(host.kv_keys().iter().all(|k| !k.starts_with("auth/")));
}

#[test]
fn a_browser_that_cannot_open_is_not_fatal() {
    let (host, _sf) = configured();
    host.fail_browser();
    assert!(Plugin::new(&host).begin_authorization(CALLBACK).is_ok());
    assert!(
        host.logs()
            .iter()
            .any(|l| l.contains("no browser is attached"))
    );
}

#[test]
fn expired_attempts_are_pruned_when_a_new_one_starts() {
    let (host, _sf) = configured();
    assert!(Plugin::new(&host).begin_authorization(CALLBACK).is_ok());
    host.kv_put("auth/attempt/garbage-garbage-garbage", "not json");
    host.advance_ms(600_001);
    assert!(Plugin::new(&host).begin_authorization(CALLBACK).is_ok());
    let attempts: Vec<String> = host
        .kv_keys()
        .into_iter()
        .filter(|k| k.starts_with("auth/attempt/"))
        .collect();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
}

// --- complete_authorization: the happy path --------------------------------

#[test]
fn allowing_access_connects_and_stores_tokens_atomically() {
    let (host, sf) = configured();
    let auth = Plugin::new(&host).begin_authorization(CALLBACK);
    let Ok(auth) = auth else {
        panic!("begin failed");
    };
    let state = params(&auth.url).get("state").cloned().unwrap_or_default();
    let attempt: Option<Attempt> = Store::new(&host).get(&keys::attempt(&state)).ok().flatten();
    let verifier = attempt.map(|a| a.verifier).unwrap_or_default();
    let query = sf.allow(&auth.url);
    let batches_before = host.batches().len();

    let status = Plugin::new(&host).complete_authorization(CALLBACK, &query);
    let Ok(status) = status else {
        panic!("{:?}", status.err().map(|e| e.to_string()));
    };
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(
        status.account.as_deref(),
        Some("admin@example.org (org 00D000000000001AAA)")
    );
    assert_eq!(status.message, "Connected to Salesforce");
    assert_eq!(status.problem, None);

    // The code exchange: a form POST with the credentials in the body.
    let requests = host.requests();
    let Some(token) = requests
        .iter()
        .find(|r| r.url.ends_with("/services/oauth2/token"))
    else {
        panic!("no token request");
    };
    assert_eq!(token.method, Method::Post);
    assert_eq!(
        token.url,
        "https://login.salesforce.com/services/oauth2/token"
    );
    assert_eq!(
        token.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let form = token.form();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("authorization_code")
    );
    assert_eq!(form.get("client_id").map(String::as_str), Some(KEY));
    assert_eq!(form.get("client_secret").map(String::as_str), Some(SECRET));
    assert_eq!(form.get("redirect_uri").map(String::as_str), Some(CALLBACK));
    assert_eq!(form.get("code_verifier"), Some(&verifier));
    assert!(form.get("code").is_some_and(|c| c.starts_with("aPrxCODE")));
    // The identity URL, read with the new token.
    let identity = requests.iter().find(|r| r.url.contains("/id/"));
    assert!(identity.is_some_and(|r| {
        r.header("authorization")
            .is_some_and(|a| a.starts_with("Bearer 00D000000000001AAA!AQ0access"))
    }));

    // Tokens and connection in one batch; the attempt consumed before that.
    let batches = &host.batches()[batches_before..];
    assert_eq!(batches.len(), 2, "{batches:?}");
    assert_eq!(batches[0], vec![keys::attempt(&state)]);
    assert!(batches[1].contains(&keys::TOKENS.to_string()));
    assert!(batches[1].contains(&keys::CONNECTION.to_string()));
    let Some(t) = tokens(&host) else {
        panic!("no tokens");
    };
    assert_eq!(t.instance_url, INSTANCE);
    assert_eq!(t.generation, 1);
    assert_eq!(t.issued_at_ms, 1_700_000_000_000);
    assert!(t.refresh_token.is_some());
    assert!(t.scope.contains("refresh_token"));
    let record = host.kv_json(keys::CONNECTION).unwrap_or_default();
    assert_eq!(record["state"], "connected");
    assert_eq!(record["username"], USERNAME);
    assert_eq!(record["organization_id"], ORG);
    assert_eq!(record["display_name"], "Ada Admin");
    assert!(
        !host
            .kv_keys()
            .iter()
            .any(|k| k.starts_with("auth/attempt/"))
    );

    // A new instance sees the same status.
    assert_eq!(
        Plugin::new(&host).status().state,
        ConnectionState::Connected
    );
}

#[test]
fn a_replayed_callback_never_exchanges_the_code_twice() {
    let (host, sf) = configured();
    let auth = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url);
    let query = sf.allow(&auth.unwrap_or_default());
    assert!(
        Plugin::new(&host)
            .complete_authorization(CALLBACK, &query)
            .is_ok()
    );
    let before = host.kv_dump();
    let (k, message) = err(Plugin::new(&host).complete_authorization(CALLBACK, &query));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(message.contains("already used"), "{message}");
    assert!(
        message.contains("start the authorization again from the PBX portal"),
        "{message}"
    );
    assert_eq!(sf.code_grants(), 1);
    assert_eq!(host.kv_dump(), before);
}

#[test]
fn a_callback_racing_another_loses_before_exchanging() {
    let (host, sf) = configured();
    let auth = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url);
    let query = sf.allow(&auth.unwrap_or_default());
    // Another instance consumes the attempt between our read and our batch.
    host.before_next_batch(|kv| {
        kv.retain(|k, _| !k.starts_with("auth/attempt/"));
    });
    let (k, message) = err(Plugin::new(&host).complete_authorization(CALLBACK, &query));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(
        message.contains("start the authorization again"),
        "{message}"
    );
    assert!(host.requests().is_empty(), "the code must not be sent");
}

#[test]
fn a_missing_refresh_token_still_connects_and_warns() {
    let (host, sf) = configured();
    sf.set_no_refresh(true);
    let status = connect(&host, &sf)
        .map(|s| s.state)
        .map_err(|e| e.to_string());
    assert_eq!(status, Ok(ConnectionState::Connected));
    assert!(tokens(&host).is_some_and(|t| t.refresh_token.is_none()));
    assert!(host.logs().iter().any(|l| l.contains("no refresh token")));
}

// --- complete_authorization: failures --------------------------------------

#[test]
fn denied_access_names_the_fix_and_consumes_the_state() {
    for error in ["access_denied", "access-denied"] {
        let (host, _sf) = configured();
        let auth = Plugin::new(&host)
            .begin_authorization(CALLBACK)
            .map(|a| a.url);
        let state = params(&auth.unwrap_or_default())
            .get("state")
            .cloned()
            .unwrap_or_default();
        let before = dump_without_attempts(&host);
        let query = format!(
            "error={error}&error_description=end-user+denied+authorization%0A%3Cscript%3E&state={state}"
        );
        let (k, message) = err(Plugin::new(&host).complete_authorization(CALLBACK, &query));
        assert_eq!(k, ErrorKind::AuthorizationFailed);
        assert!(
            message.starts_with("Salesforce access was denied (the Deny button was clicked)"),
            "{message}"
        );
        assert!(
            message.ends_with("click Save again and choose Allow"),
            "{message}"
        );
        assert!(
            message.contains("end-user denied authorization <script>"),
            "{message}"
        );
        assert!(!message.contains('\n'));
        assert_eq!(dump_without_attempts(&host), before);
        assert!(
            !host
                .kv_keys()
                .iter()
                .any(|k| k.starts_with("auth/attempt/"))
        );
        assert!(host.requests().is_empty());
    }
}

#[test]
fn other_consent_errors_show_salesforces_words() {
    let (host, _sf) = configured();
    let (k, message) = err(Plugin::new(&host).complete_authorization(
        CALLBACK,
        "error=OAUTH_APP_BLOCKED&error_description=this+app+is+blocked+by+admin",
    ));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(message.contains("OAUTH_APP_BLOCKED"), "{message}");
    assert!(
        message.contains("this app is blocked by admin"),
        "{message}"
    );
}

#[test]
fn bad_states_are_refused_with_the_fix() {
    let (host, sf) = configured();
    let again = "start the authorization again from the PBX portal";

    // Missing.
    let (k, m) = err(Plugin::new(&host).complete_authorization(CALLBACK, "code=abc"));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(m.contains("no state") && m.contains(again), "{m}");

    // Unknown, and a forged one that is no valid key.
    for state in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "../../settings",
    ] {
        let (k, m) =
            err(Plugin::new(&host)
                .complete_authorization(CALLBACK, &format!("code=abc&state={state}")));
        assert_eq!(k, ErrorKind::AuthorizationFailed);
        assert!(m.contains("unknown") && m.contains(again), "{m}");
    }

    // Expired.
    let url = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url);
    let query = sf.allow(&url.unwrap_or_default());
    host.advance_ms(600_000);
    let (k, m) = err(Plugin::new(&host).complete_authorization(CALLBACK, &query));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(m.contains("expired") && m.contains(again), "{m}");
    // ... and consumed: a second try says unknown.
    let (_, m) = err(Plugin::new(&host).complete_authorization(CALLBACK, &query));
    assert!(m.contains("unknown"), "{m}");

    // For another callback URL.
    let url = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url);
    let query = sf.allow(&url.unwrap_or_default());
    let (k, m) = err(Plugin::new(&host).complete_authorization(
        "https://other.example.org/crm/salesforce/oauth/callback",
        &query,
    ));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(
        m.contains("different") || m.contains("not https://other"),
        "{m}"
    );
    assert!(m.contains(again), "{m}");

    assert_eq!(sf.code_grants(), 0);
    assert!(host.requests().is_empty());
    assert!(tokens(&host).is_none());
    assert!(host.kv_text(keys::CONNECTION).is_none());
}

fn denied_answer() -> Result<http_fetch::Response, http_fetch::Error> {
    Err(http_fetch::Error::Denied(Denial {
        host: "https://login.salesforce.com".into(),
        rule: "not granted by the operator (grant it with --grant PLUGIN_ID=https://login.salesforce.com)".into(),
    }))
}

fn answer(status: u16, body: &str) -> Result<http_fetch::Response, http_fetch::Error> {
    Ok(http_fetch::Response {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    })
}

#[test]
fn every_token_endpoint_failure_names_the_fix_and_stores_nothing() {
    type Case = (
        &'static str,
        Result<http_fetch::Response, http_fetch::Error>,
        ErrorKind,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "invalid_client_id",
            answer(
                400,
                r#"{"error":"invalid_client_id","error_description":"client identifier invalid"}"#,
            ),
            ErrorKind::AuthorizationFailed,
            "Consumer Key (invalid_client_id): copy it again",
        ),
        (
            "invalid_client",
            answer(
                400,
                r#"{"error":"invalid_client","error_description":"invalid client credentials"}"#,
            ),
            ErrorKind::AuthorizationFailed,
            "Consumer Secret (invalid_client): copy the secret again",
        ),
        (
            "redirect_uri_mismatch",
            answer(
                400,
                r#"{"error":"redirect_uri_mismatch","error_description":"redirect_uri must match configuration"}"#,
            ),
            ErrorKind::AuthorizationFailed,
            "the Callback URL in your Salesforce app must be exactly https://pbx.example.org/crm/salesforce/oauth/callback",
        ),
        (
            "invalid_grant",
            answer(
                400,
                r#"{"error":"invalid_grant","error_description":"expired authorization code"}"#,
            ),
            ErrorKind::AuthorizationFailed,
            "the authorization code expired or was already used (Salesforce: invalid_grant: \"expired authorization code\"): start the authorization again",
        ),
        (
            "another error",
            answer(
                400,
                r#"{"error":"unsupported_grant_type","error_description":"grant type not supported"}"#,
            ),
            ErrorKind::AuthorizationFailed,
            "unsupported_grant_type: \"grant type not supported\"",
        ),
        (
            "denied",
            denied_answer(),
            ErrorKind::AuthorizationFailed,
            "the PBX does not allow connections to https://login.salesforce.com: ask the operator to grant it (pbx-host serve --grant salesforce=https://login.salesforce.com)",
        ),
        (
            "unreachable",
            Err(http_fetch::Error::Unreachable(
                "dns error: no such host".into(),
            )),
            ErrorKind::CrmUnavailable,
            "Salesforce at https://login.salesforce.com could not be reached (dns error: no such host): check the login host and the PBX's internet access",
        ),
        (
            "timeout",
            Err(http_fetch::Error::Timeout),
            ErrorKind::CrmUnavailable,
            "could not be reached (no answer in time): check the login host and the PBX's internet access",
        ),
        (
            "5xx",
            answer(503, "<html>Service Unavailable</html>"),
            ErrorKind::CrmUnavailable,
            "server error (HTTP 503)",
        ),
        (
            "not JSON",
            answer(200, "<html>Welcome to our site</html>"),
            ErrorKind::CrmUnavailable,
            "cannot read (HTTP 200, not JSON): check that the login host is a Salesforce login URL",
        ),
        (
            "JSON without tokens",
            answer(200, r#"{"hello":"world"}"#),
            ErrorKind::CrmUnavailable,
            "no access_token",
        ),
    ];
    for (name, canned, want_kind, want_text) in cases {
        let (host, _sf) = configured();
        let url = Plugin::new(&host)
            .begin_authorization(CALLBACK)
            .map(|a| a.url);
        let state = params(&url.unwrap_or_default())
            .get("state")
            .cloned()
            .unwrap_or_default();
        let before = dump_without_attempts(&host);
        host.on_fetch(move |_| canned.clone());
        let query = format!("code=aPrxSOMECODE&state={state}");
        let (k, message) = err(Plugin::new(&host).complete_authorization(CALLBACK, &query));
        assert_eq!(k, want_kind, "{name}: {message}");
        assert!(message.contains(want_text), "{name}: {message}");
        assert_eq!(
            dump_without_attempts(&host),
            before,
            "{name}: something was stored"
        );
        assert!(
            !host
                .kv_keys()
                .iter()
                .any(|k| k.starts_with("auth/attempt/")),
            "{name}: the attempt must be consumed"
        );
        assert_eq!(host.requests().len(), 1, "{name}: one exchange only");
        assert!(
            !message.contains(SECRET) && !message.contains("aPrxSOMECODE"),
            "{name}"
        );
    }
}

#[test]
fn real_misconfigurations_reach_the_right_message() {
    // A wrong secret, as the fake Salesforce judges it.
    let (host, sf) = configured();
    let saved = Plugin::new(&host).save_settings(&[input(CONSUMER_SECRET, "wrong-secret")]);
    assert!(saved.is_ok());
    let (_, m) = err(connect(&host, &sf));
    assert!(m.contains("Consumer Secret"), "{m}");

    // A wrong key.
    let (host, sf) = configured();
    let saved = Plugin::new(&host).save_settings(&[input(CONSUMER_KEY, "3MVG9other")]);
    assert!(saved.is_ok());
    let (_, m) = err(connect(&host, &sf));
    assert!(m.contains("Consumer Key"), "{m}");

    // The app has another callback URL.
    let (host, sf) = configured();
    sf.set_callback("https://old-pbx.example.org/callback");
    let (_, m) = err(connect(&host, &sf));
    assert!(m.contains(&format!("must be exactly {CALLBACK}")), "{m}");
    assert!(tokens(&host).is_none());
}

#[test]
fn a_forged_signature_stores_nothing() {
    let (host, sf) = configured();
    sf.set_bad_signature(true);
    let (k, m) = err(connect(&host, &sf));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(
        m.contains("signature does not match the Consumer Secret"),
        "{m}"
    );
    assert!(m.contains("alters traffic"), "{m}");
    assert!(tokens(&host).is_none());
    assert!(host.kv_text(keys::CONNECTION).is_none());
    // The identity URL was never read with the suspicious token.
    assert!(!host.requests().iter().any(|r| r.url.contains("/id/")));
}

#[test]
fn a_settings_change_during_the_exchange_wins() {
    let (host, sf) = configured();
    let url = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url);
    let query = sf.allow(&url.unwrap_or_default());
    // The administrator saves another app's key after the attempt was
    // consumed (first batch) and before the tokens are stored (second).
    let settings = Settings {
        consumer_key: Some("3MVG9someoneelse".into()),
        consumer_secret: Some("x".into()),
        ..Settings::default()
    };
    let changed = serde_json::to_vec(&settings).unwrap_or_default();
    host.before_batch_after(1, move |kv| {
        kv.insert(keys::SETTINGS.into(), changed);
    });
    let (k, m) = err(Plugin::new(&host).complete_authorization(CALLBACK, &query));
    assert_eq!(k, ErrorKind::AuthorizationFailed, "{m}");
    assert!(m.contains("settings were changed"), "{m}");
    assert!(tokens(&host).is_none());
    assert!(host.kv_text(keys::CONNECTION).is_none());
}

// --- the REST client: refresh ----------------------------------------------

#[test]
fn an_expired_session_is_refreshed_once_and_the_request_retried() {
    let (host, sf) = connected();
    assert!(limits(&host).is_ok());
    sf.expire_sessions();
    host.clear_requests();

    let result = limits(&host).map_err(|e| e.to_string());
    assert!(result.is_ok(), "{result:?}");
    let requests = host.requests();
    let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://acme.my.salesforce.com/services/data/v67.0/limits",
            "https://login.salesforce.com/services/oauth2/token",
            "https://acme.my.salesforce.com/services/data/v67.0/limits",
        ]
    );
    let form = requests[1].form();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("refresh_token")
    );
    assert_eq!(form.get("client_id").map(String::as_str), Some(KEY));
    assert_eq!(form.get("client_secret").map(String::as_str), Some(SECRET));
    assert!(
        form.get("refresh_token")
            .is_some_and(|t| t.starts_with("5Aep861"))
    );
    assert_ne!(
        requests[0].header("authorization"),
        requests[2].header("authorization")
    );
    assert_eq!(sf.refresh_grants(), 1);
    let t = tokens(&host);
    assert_eq!(t.as_ref().map(|t| t.generation), Some(2));
    // Without rotation the refresh token stays.
    assert_eq!(
        t.and_then(|t| t.refresh_token),
        form.get("refresh_token").cloned()
    );
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
}

#[test]
fn a_rotated_refresh_token_is_stored() {
    let (host, sf) = connected();
    sf.set_rotate(true);
    let first = tokens(&host)
        .and_then(|t| t.refresh_token)
        .unwrap_or_default();
    sf.expire_sessions();
    assert!(limits(&host).is_ok());
    let second = tokens(&host)
        .and_then(|t| t.refresh_token)
        .unwrap_or_default();
    assert_ne!(first, second);
    assert!(!sf.refresh_token_is_live(&first));
    assert!(sf.refresh_token_is_live(&second));
    // The stored one works for the next refresh too.
    sf.expire_sessions();
    assert!(limits(&host).is_ok());
    assert_eq!(sf.refresh_grants(), 2);
    assert_eq!(tokens(&host).map(|t| t.generation), Some(3));
}

#[test]
fn a_refused_refresh_token_needs_reauthorization_and_keeps_the_rest() {
    let (host, sf) = connected();
    host.kv_put("associations/users", r#"{"005A":"1001"}"#);
    let settings_before = host.kv_text(keys::SETTINGS);
    sf.expire_sessions();
    sf.kill_refresh_tokens();

    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::NotConnected);
    assert_eq!(
        m,
        "Salesforce refused the stored refresh token (expired access/refresh token): authorize again from the PBX portal (click Save)"
    );
    let status = Plugin::new(&host).status();
    assert_eq!(status.state, ConnectionState::ReauthorizationNeeded);
    assert_eq!(status.message, m);
    assert_eq!(
        status.account.as_deref(),
        Some("admin@example.org (org 00D000000000001AAA)")
    );
    assert!(tokens(&host).is_none());
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
    assert_eq!(host.kv_text(keys::SETTINGS), settings_before);
    assert!(host.kv_text("associations/users").is_some());

    // Later calls fail fast with the same reason, sending nothing.
    host.clear_requests();
    let (k, m2) = api_err(limits(&host));
    assert_eq!((k, m2), (ErrorKind::NotConnected, m));
    assert!(host.requests().is_empty());

    // Authorizing again connects.
    assert_eq!(
        connect(&host, &sf)
            .map(|s| s.state)
            .map_err(|e| e.to_string()),
        Ok(ConnectionState::Connected)
    );
    assert!(limits(&host).is_ok());
}

#[test]
fn without_a_refresh_token_an_expired_session_needs_reauthorization() {
    let (host, sf) = configured();
    sf.set_no_refresh(true);
    assert!(connect(&host, &sf).is_ok());
    sf.expire_sessions();
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::NotConnected);
    assert!(m.contains("refresh_token, offline_access"), "{m}");
    assert_eq!(sf.refresh_grants(), 0);
    assert_eq!(
        Plugin::new(&host).status().state,
        ConnectionState::ReauthorizationNeeded
    );
}

#[test]
fn twenty_instances_hitting_an_expired_session_refresh_once() {
    let (host, sf) = connected();
    host.use_real_sleep();
    // A slow token endpoint makes the others find the lease held.
    sf.set_token_delay_ms(60);
    sf.expire_sessions();
    host.clear_requests();
    let barrier = Barrier::new(20);
    let results: Vec<Result<Value, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    // Each thread is its own instance over the shared host.
                    Salesforce::new(&host)
                        .get::<Value>("limits")
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(
        sf.refresh_grants(),
        1,
        "exactly one refresh reached Salesforce"
    );
    assert!(
        host.sleeps() > 0,
        "some instances waited for the lease holder"
    );
    let token_requests = host
        .requests()
        .iter()
        .filter(|r| r.url.ends_with("/oauth2/token"))
        .count();
    assert_eq!(token_requests, 1);
    assert_eq!(tokens(&host).map(|t| t.generation), Some(2));
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
}

#[test]
fn a_lapsed_lease_of_a_crashed_instance_is_taken_over() {
    let (host, sf) = connected();
    sf.expire_sessions();
    host.kv_put(
        keys::REFRESH_LEASE,
        &format!(
            r#"{{"holder":"crashed","expires_at_ms":{},"generation":1}}"#,
            NOW + 5_000
        ),
    );
    let result = limits(&host).map_err(|e| e.to_string());
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(sf.refresh_grants(), 1);
    assert!(
        host.now_ms() >= NOW + 5_000,
        "waited for the lease to lapse"
    );
    assert!(host.sleeps() > 0);
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
}

#[test]
fn a_lease_that_never_ends_makes_the_wait_give_up() {
    let (host, sf) = connected();
    sf.expire_sessions();
    host.kv_put(
        keys::REFRESH_LEASE,
        &format!(
            r#"{{"holder":"slow","expires_at_ms":{},"generation":1}}"#,
            NOW + 3_600_000
        ),
    );
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::CrmUnavailable);
    assert!(m.contains("still refreshing"), "{m}");
    assert_eq!(sf.refresh_grants(), 0);
    let waited = host.now_ms() - NOW;
    assert!((8_000..9_000).contains(&waited), "waited {waited} ms");
}

#[test]
fn a_session_refreshed_by_another_instance_is_just_used() {
    let (host, sf) = connected();
    sf.expire_sessions();
    let Some(old) = tokens(&host) else {
        panic!("not connected");
    };
    // Instance A got a 401 and refreshes.
    let a = Salesforce::new(&host).session_after_expiry(&old);
    assert!(a.is_ok_and(|t| t.generation == 2));
    assert_eq!(sf.refresh_grants(), 1);
    // Instance B's request with the old session got its 401 later: it
    // re-reads the tokens and uses A's session, without a second refresh.
    let b = Salesforce::new(&host).session_after_expiry(&old);
    assert!(b.is_ok_and(|t| t.generation == 2));
    assert_eq!(sf.refresh_grants(), 1);
}

#[test]
fn a_refresh_finished_just_before_taking_the_lease_is_not_repeated() {
    let (host, sf) = connected();
    let Some(old) = tokens(&host) else {
        panic!("not connected");
    };
    // This instance read the old tokens and found no lease; right before its
    // lease batch commits, another instance finishes a refresh (new tokens,
    // lease deleted). The lease batch must fail on the tokens precondition
    // so this instance uses the new session instead of refreshing again.
    let newer = Tokens {
        access_token: "someone-elses-session".into(),
        generation: old.generation + 1,
        ..old.clone()
    };
    let bytes = serde_json::to_vec(&newer).unwrap_or_default();
    host.before_next_batch(move |kv| {
        kv.insert(keys::TOKENS.into(), bytes);
    });
    let got = Salesforce::new(&host).session_after_expiry(&old);
    assert!(got.is_ok_and(|t| t.access_token == "someone-elses-session"));
    assert_eq!(sf.refresh_grants(), 0);
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
}

// --- the REST client: limits, outages, errors ------------------------------

#[test]
fn the_api_limit_backs_off_without_sending_and_clears_after_success() {
    let (host, sf) = connected();
    sf.script_rest(&[(
        403,
        r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
    )]);
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::RateLimited);
    assert_eq!(
        m,
        "Salesforce's API limit was reached (TotalRequests Limit exceeded.); the PBX retries after 22:13:25 UTC"
    );
    let status = Plugin::new(&host).status();
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.problem.as_deref(), Some(m.as_str()));

    // During the back-off nothing is sent.
    host.clear_requests();
    for _ in 0..5 {
        let (k, _) = api_err(limits(&host));
        assert_eq!(k, ErrorKind::RateLimited);
    }
    host.advance_ms(4_999);
    assert_eq!(api_err(limits(&host)).0, ErrorKind::RateLimited);
    assert!(host.requests().is_empty(), "no request during the back-off");

    // After it, one request goes out; success clears the problem.
    host.advance_ms(1);
    assert!(limits(&host).is_ok());
    assert_eq!(host.requests().len(), 1);
    assert!(host.kv_text(keys::BACKOFF).is_none());
    assert_eq!(Plugin::new(&host).status().problem, None);
}

#[test]
fn outages_back_off_doubling_from_five_seconds() {
    let (host, sf) = connected();
    sf.script_rest(&[(503, "<html>down</html>"), (500, "[]"), (503, "")]);
    let mut waits = Vec::new();
    for _ in 0..3 {
        let (k, m) = api_err(limits(&host));
        assert_eq!(k, ErrorKind::CrmUnavailable, "{m}");
        assert!(m.starts_with("Salesforce is unavailable (HTTP 5"), "{m}");
        let until = host
            .kv_json(keys::BACKOFF)
            .and_then(|b| b["until_ms"].as_u64())
            .unwrap_or(0);
        waits.push(until - host.now_ms());
        host.set_now_ms(until);
    }
    assert_eq!(waits, [5_000, 10_000, 20_000]);
    assert!(limits(&host).is_ok());
    assert!(host.kv_text(keys::BACKOFF).is_none());
}

#[test]
fn salesforce_errors_reach_callers_typed() {
    let (host, sf) = connected();
    sf.script_rest(&[(
        400,
        r#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#,
    )]);
    let result =
        Salesforce::new(&host).post_json::<_, Value>("sobjects/Contact/", &serde_json::json!({}));
    match result {
        Err(SalesforceError::Api(api)) => {
            assert_eq!(api.status, 400);
            assert!(api.has_code("REQUIRED_FIELD_MISSING"));
            assert_eq!(api.errors[0].fields, ["LastName"]);
        }
        other => panic!("{:?}", other.map_err(|e| e.to_string())),
    }
    let post = host.requests().pop();
    assert!(post.as_ref().is_some_and(|r| r.method == Method::Post
        && r.header("content-type") == Some("application/json")
        && r.body == "{}"));
}

#[test]
fn queries_follow_next_records_url() {
    let (host, _sf) = connected();
    let records: Result<Vec<Value>, _> = Salesforce::new(&host).query("SELECT Id FROM User");
    let ids: Vec<String> = records
        .map_err(|e| e.to_string())
        .unwrap_or_default()
        .iter()
        .map(|r| r["Id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    let urls: Vec<String> = host.requests().into_iter().map(|r| r.url).collect();
    assert_eq!(
        urls,
        [
            "https://acme.my.salesforce.com/services/data/v67.0/query?q=SELECT%20Id%20FROM%20User",
            "https://acme.my.salesforce.com/services/data/v67.0/query/01gNEXT-2",
        ]
    );
    let page: Result<QueryPage<Value>, _> =
        Salesforce::new(&host).query_page("SELECT Id FROM User");
    assert!(page.is_ok_and(|p| !p.done && p.total_size == 3));
}

#[test]
fn rest_calls_without_a_connection_say_what_to_do() {
    let (host, _sf) = configured();
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::NotConnected);
    assert!(m.contains("not connected to Salesforce"), "{m}");
    assert!(host.requests().is_empty());
}

#[test]
fn a_denied_instance_host_names_the_grant() {
    let (host, sf) = connected();
    let sf2 = Arc::clone(&sf);
    host.on_fetch(move |req| {
        if req.url.starts_with(INSTANCE) {
            Err(http_fetch::Error::Denied(Denial {
                host: INSTANCE.into(),
                rule: "not granted by the operator".into(),
            }))
        } else {
            sf2.handle(req)
        }
    });
    let (_, m) = api_err(limits(&host));
    assert!(
        m.contains("pbx-host serve --grant salesforce=https://acme.my.salesforce.com"),
        "{m}"
    );
}

// --- disconnect and settings changes ---------------------------------------

#[test]
fn disconnect_revokes_and_keeps_settings_and_associations() {
    let (host, sf) = connected();
    host.kv_put("associations/users", r#"{"005A":"1001"}"#);
    let settings_before = host.kv_text(keys::SETTINGS);
    let refresh = tokens(&host)
        .and_then(|t| t.refresh_token)
        .unwrap_or_default();

    let status = Plugin::new(&host).disconnect();
    let Ok(status) = status else {
        panic!("{:?}", status.err().map(|e| e.to_string()));
    };
    assert_eq!(status.state, ConnectionState::Disconnected);
    assert_eq!(status.problem, None);
    let requests = host.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].url,
        "https://login.salesforce.com/services/oauth2/revoke"
    );
    assert_eq!(requests[0].form().get("token"), Some(&refresh));
    assert_eq!(sf.revoked(), vec![refresh]);
    assert!(tokens(&host).is_none());
    assert_eq!(host.kv_text(keys::SETTINGS), settings_before);
    assert!(host.kv_text("associations/users").is_some());
    assert_eq!(
        Plugin::new(&host).status().state,
        ConnectionState::Disconnected
    );
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::NotConnected);
    assert!(m.contains("disconnected"), "{m}");

    // Connecting again works and clears the state.
    assert!(connect(&host, &sf).is_ok_and(|s| s.state == ConnectionState::Connected));
}

#[test]
fn disconnect_without_a_refresh_token_revokes_the_access_token() {
    let (host, sf) = configured();
    sf.set_no_refresh(true);
    assert!(connect(&host, &sf).is_ok());
    let access = tokens(&host).map(|t| t.access_token).unwrap_or_default();
    assert!(Plugin::new(&host).disconnect().is_ok());
    assert_eq!(sf.revoked(), vec![access]);
}

#[test]
fn a_failed_revocation_still_disconnects_and_says_so() {
    for (name, canned) in [
        (
            "unreachable",
            Err(http_fetch::Error::Unreachable("connection refused".into())),
        ),
        (
            "invalid_token",
            answer(
                400,
                r#"{"error":"invalid_token","error_description":"invalid token"}"#,
            ),
        ),
    ] {
        let (host, _sf) = connected();
        host.on_fetch(move |_| canned.clone());
        let status = Plugin::new(&host).disconnect();
        let Ok(status) = status else {
            panic!("{name}: {:?}", status.err().map(|e| e.to_string()));
        };
        assert_eq!(status.state, ConnectionState::Disconnected, "{name}");
        let problem = status.problem.unwrap_or_default();
        assert!(
            problem.starts_with("the token could not be revoked at Salesforce ("),
            "{name}: {problem}"
        );
        assert!(
            problem.ends_with("revoke it in Salesforce Setup > Connected Apps OAuth Usage"),
            "{name}: {problem}"
        );
        assert!(tokens(&host).is_none(), "{name}");
        assert!(host.kv_text(keys::SETTINGS).is_some(), "{name}");
    }
}

#[test]
fn disconnecting_when_never_connected_changes_nothing() {
    let (host, _sf) = configured();
    let before = host.kv_dump();
    let status = Plugin::new(&host)
        .disconnect()
        .map(|s| s.state)
        .map_err(|e| e.to_string());
    assert_eq!(status, Ok(ConnectionState::Configured));
    assert_eq!(host.kv_dump(), before);
    assert!(host.requests().is_empty());
}

#[test]
fn another_app_or_login_host_ends_the_connection() {
    // A new secret for the same app keeps the connection.
    let (host, _sf) = connected();
    let status = Plugin::new(&host).save_settings(&[input(CONSUMER_SECRET, "rotated-secret")]);
    assert!(status.is_ok_and(|s| s.state == ConnectionState::Connected));
    assert!(tokens(&host).is_some());

    // Another Consumer Key: Configured, tokens gone, in the settings' batch.
    let status = Plugin::new(&host).save_settings(&[input(CONSUMER_KEY, "3MVG9another")]);
    assert!(status.is_ok_and(|s| s.state == ConnectionState::Configured));
    assert!(tokens(&host).is_none());
    assert!(host.kv_text(keys::CONNECTION).is_none());
    let last = host.batches().pop().unwrap_or_default();
    assert!(last.contains(&keys::SETTINGS.to_string()) && last.contains(&keys::TOKENS.to_string()));

    // Another login host, likewise.
    let (host, _sf) = connected();
    let status = Plugin::new(&host).save_settings(&[input(LOGIN_HOST, "sandbox")]);
    assert!(status.is_ok_and(|s| s.state == ConnectionState::Configured));
    assert!(tokens(&host).is_none());
}

#[test]
fn the_status_follows_the_life_of_the_connection() {
    let host = FakeHost::default();
    assert_eq!(
        Plugin::new(&host).status().state,
        ConnectionState::NotConfigured
    );
    let (host, sf) = configured();
    assert_eq!(
        Plugin::new(&host).status().state,
        ConnectionState::Configured
    );
    assert!(connect(&host, &sf).is_ok());
    assert_eq!(
        Plugin::new(&host).status().state,
        ConnectionState::Connected
    );
    // An unfinished new attempt does not change it.
    assert!(Plugin::new(&host).begin_authorization(CALLBACK).is_ok());
    assert_eq!(
        Plugin::new(&host).status().state,
        ConnectionState::Connected
    );
}

// --- secrets ---------------------------------------------------------------

#[test]
fn no_secret_reaches_logs_errors_statuses_or_debug_output() {
    let (host, sf) = configured();
    let mut shown: Vec<String> = Vec::new();
    let mut verifiers = Vec::new();

    // Connect, and remember the verifier.
    let url = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url)
        .unwrap_or_default();
    let state = params(&url).get("state").cloned().unwrap_or_default();
    let attempt: Option<Attempt> = Store::new(&host).get(&keys::attempt(&state)).ok().flatten();
    shown.push(format!("{attempt:?}"));
    verifiers.extend(attempt.map(|a| a.verifier));
    let query = sf.allow(&url);
    let status = Plugin::new(&host).complete_authorization(CALLBACK, &query);
    shown.push(format!("{status:?}"));
    shown.push(format!("{:?}", tokens(&host)));
    shown.push(format!(
        "{:?}",
        Store::new(&host).get::<Settings>(keys::SETTINGS).ok()
    ));
    shown.push(format!(
        "{:?}",
        crate::oauth::OAuthClient::new(&host, LOGIN, KEY, SECRET)
    ));
    shown.push(format!("{:?}", Plugin::new(&host).get_settings().ok()));

    // A replay, a refresh, failures of several kinds.
    shown.push(err(Plugin::new(&host).complete_authorization(CALLBACK, &query)).1);
    sf.expire_sessions();
    shown.push(format!("{:?}", limits(&host).map_err(|e| e.to_string())));
    sf.script_rest(&[(503, "oops")]);
    shown.push(api_err(limits(&host)).1);
    shown.push(format!("{:?}", Plugin::new(&host).status()));
    host.advance_ms(10_000);
    sf.expire_sessions();
    sf.kill_refresh_tokens();
    shown.push(api_err(limits(&host)).1);
    shown.push(format!("{:?}", Plugin::new(&host).status()));
    assert!(connect(&host, &sf).is_ok());
    shown.push(format!("{:?}", Plugin::new(&host).disconnect()));
    shown.push(format!("{:?}", Plugin::new(&host).status()));
    shown.extend(host.logs());

    let mut secrets = sf.issued();
    secrets.push(SECRET.into());
    secrets.extend(verifiers);
    assert!(secrets.len() > 5, "{secrets:?}");
    let everything = shown.join("\n");
    for secret in &secrets {
        assert!(
            !everything.contains(secret.as_str()),
            "{secret} leaked:\n{everything}"
        );
    }
    // Tokens do live in the (encrypted) store, where they belong.
    assert!(host.kv_dump().contains(SECRET));
}

#[test]
fn a_wrong_consumer_key_is_found_before_the_browser_opens() {
    let (host, _sf) = configured();
    let saved = Plugin::new(&host).save_settings(&[input(CONSUMER_KEY, "3MVG9wrong")]);
    assert!(saved.is_ok());
    let before = host.kv_dump();
    let (kind, message) = err(Plugin::new(&host).begin_authorization(CALLBACK));
    assert_eq!(kind, ErrorKind::AuthorizationFailed);
    assert!(
        message.contains("Consumer Key (invalid_client_id)"),
        "{message}"
    );
    assert_eq!(host.kv_dump(), before, "nothing is stored");
    assert!(host.opened().is_empty(), "no consent page for a wrong key");
}

#[test]
fn a_login_host_the_pbx_may_not_reach_is_found_before_the_browser_opens() {
    let (host, _sf) = configured();
    host.on_fetch(|req| {
        Err(http_fetch::Error::Denied(Denial {
            host: crate::http::origin(&req.url),
            rule: "not granted by the operator".into(),
        }))
    });
    let before = host.kv_dump();
    let (_, message) = err(Plugin::new(&host).begin_authorization(CALLBACK));
    assert!(
        message.contains("--grant salesforce=https://login.salesforce.com"),
        "{message}"
    );
    assert_eq!(host.kv_dump(), before, "nothing is stored");

    host.on_fetch(|_| Err(http_fetch::Error::Unreachable("connection refused".into())));
    let (_, message) = err(Plugin::new(&host).begin_authorization(CALLBACK));
    assert!(message.contains("could not be reached"), "{message}");
    assert!(host.opened().is_empty());
}
