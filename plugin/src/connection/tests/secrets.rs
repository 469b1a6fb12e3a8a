//! No secret in logs, errors, statuses or debug output; and the preflight
//! that finds a wrong key or an unreachable login host before the browser
//! opens.

use crate::bindings::ErrorKind;
use crate::bindings::pbx::crm::http_fetch::{self, Denial};
use crate::oauth::Attempt;
use crate::plugin::Plugin;
use crate::settings::{CONSUMER_KEY, Settings};
use crate::store::{Store, keys};
use crate::testing::{CALLBACK, KEY, LOGIN, SECRET};
use crate::testing::{api_err, configured, connect, err, input, limits, tokens};

use super::*;

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
