//! Disconnecting, settings changes that end the connection, and the status
//! through the connection's life.

use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::integration::ConnectionState;
use crate::bindings::pbx::crm::http_fetch::{self};
use crate::plugin::Plugin;
use crate::settings::{CONSUMER_KEY, CONSUMER_SECRET, LOGIN_HOST};
use crate::store::keys;
use crate::testing::{CALLBACK, FakeHost};
use crate::testing::{KEY, api_err, configured, connect, connected, err, input, limits, tokens};

use super::*;

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

/// A save with a required setting emptied is refused as invalid input
/// naming the setting, and the store is exactly as before: the key, the
/// tokens, the status.
fn assert_an_emptied_setting_is_refused(host: &FakeHost, key: &str, named: &str) {
    let before = host.kv_dump();
    let state_before = Plugin::new(host).status().state;
    for empty in ["", "  "] {
        let refused = Plugin::new(host).save_settings(&[input(key, empty)]);
        let (kind, message) = err(refused.map(|s| s.state));
        assert_eq!(kind, ErrorKind::InvalidInput, "{key}={empty:?}: {message}");
        assert!(message.contains(named), "{message}");
        assert_eq!(host.kv_dump(), before, "{key}={empty:?} changed the store");
        assert_eq!(Plugin::new(host).status().state, state_before);
    }
}

#[test]
fn an_emptied_consumer_key_is_refused_and_nothing_changes() {
    // While connected (the API's 200 that dropped to Not configured).
    let (host, _sf) = connected();
    assert_an_emptied_setting_is_refused(&host, CONSUMER_KEY, "Consumer Key");
    assert_an_emptied_setting_is_refused(&host, LOGIN_HOST, "login host");

    // After Disconnect (the portal's Save that lost the stored key).
    let (host, _sf) = connected();
    let status = Plugin::new(&host).disconnect().map(|s| s.state);
    assert_eq!(
        status.map_err(|e| e.to_string()),
        Ok(ConnectionState::Disconnected)
    );
    assert_an_emptied_setting_is_refused(&host, CONSUMER_KEY, "Consumer Key");
    let kept = Plugin::new(&host).get_settings().ok().unwrap_or_default();
    let key = kept.iter().find(|v| v.key == CONSUMER_KEY);
    assert_eq!(key.and_then(|v| v.value.clone()).as_deref(), Some(KEY));
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
