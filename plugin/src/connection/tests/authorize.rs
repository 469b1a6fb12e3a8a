//! Authorizing: the consent URL, the callback, and every way they fail.

use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::integration::ConnectionState;
use crate::bindings::pbx::crm::http_fetch::{self, Method};
use crate::oauth::{Attempt, pkce_challenge};
use crate::plugin::Plugin;
use crate::settings::{CONSUMER_KEY, CONSUMER_SECRET, LOGIN_HOST, MY_DOMAIN_URL, Settings};
use crate::store::{Store, keys};
use crate::testing::{
    CALLBACK, FakeHost, INSTANCE, KEY, LOGIN, ORG, SECRET, USERNAME, oauth_error,
};
use crate::testing::{NOW, configured, connect, err, input, tokens};

use super::*;

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
    // A used state matches no pending attempt: not an outcome of one.
    assert_eq!(k, ErrorKind::NotFound);
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
    let auth = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url);
    let state = params(&auth.unwrap_or_default())
        .get("state")
        .cloned()
        .unwrap_or_default();
    let (k, message) = err(Plugin::new(&host).complete_authorization(
        CALLBACK,
        &format!(
            "error=OAUTH_APP_BLOCKED&error_description=this+app+is+blocked+by+admin&state={state}"
        ),
    ));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(message.contains("OAUTH_APP_BLOCKED"), "{message}");
    assert!(
        message.contains("this app is blocked by admin"),
        "{message}"
    );
}

#[test]
fn an_error_answer_without_a_pending_state_is_refused_and_changes_nothing() {
    let (host, _sf) = configured();
    // A real attempt is pending: a stranger's error answer must not end it.
    let auth = Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .map(|a| a.url);
    let state = params(&auth.unwrap_or_default())
        .get("state")
        .cloned()
        .unwrap_or_default();
    let before = host.kv_keys();
    for query in [
        "error=access_denied".to_string(),
        "error=access_denied&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "error=OAUTH_APP_BLOCKED&state=../../settings".to_string(),
        format!("error=access_denied&state={state}x"),
    ] {
        let (k, m) = err(Plugin::new(&host).complete_authorization(CALLBACK, &query));
        assert_eq!(k, ErrorKind::NotFound, "{query}: {m}");
        assert!(!m.contains("denied"), "{query}: {m}");
        assert_eq!(host.kv_keys(), before, "{query} changed the store");
    }
    // The pending attempt still completes its own error answer.
    let (k, _) = err(Plugin::new(&host)
        .complete_authorization(CALLBACK, &format!("error=access_denied&state={state}")));
    assert_eq!(k, ErrorKind::AuthorizationFailed);
    assert!(host.requests().is_empty());
}

#[test]
fn bad_states_are_refused_with_the_fix() {
    let (host, sf) = configured();
    let again = "start the authorization again from the PBX portal";

    // Missing.
    let (k, m) = err(Plugin::new(&host).complete_authorization(CALLBACK, "code=abc"));
    assert_eq!(k, ErrorKind::NotFound);
    assert!(m.contains("no state") && m.contains(again), "{m}");

    // Unknown, and a forged one that is no valid key.
    for state in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "../../settings",
    ] {
        let (k, m) =
            err(Plugin::new(&host)
                .complete_authorization(CALLBACK, &format!("code=abc&state={state}")));
        assert_eq!(k, ErrorKind::NotFound);
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
