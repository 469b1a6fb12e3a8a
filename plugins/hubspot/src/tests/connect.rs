use crate::bindings::exports::pbx::crm::integration::ConnectionState;
use crate::bindings::pbx::crm::http_fetch::Method;
use crate::connection::{REFRESH_MARGIN_MS, SCOPES};
use crate::error::PluginError;
use crate::host::Host;
use crate::keys;
use crate::plugin::Plugin;
use crate::testing::*;

#[test]
fn begin_builds_the_install_url_and_opens_it() {
    let host = FakeHost::default();
    let _hs = FakeHubSpot::install(&host);
    let plugin = Plugin::new(&host);
    configure(&plugin);
    let auth = plugin
        .begin_authorization(CALLBACK)
        .map_err(|e| e.to_string());
    let url = auth.map(|a| a.url).unwrap_or_default();
    let parsed = url::Url::parse(&url).ok();
    assert_eq!(parsed.as_ref().map(|u| u.path()), Some("/oauth/authorize"));
    assert!(url.starts_with(APP));
    let q: std::collections::BTreeMap<String, String> = parsed
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default();
    assert_eq!(q.get("client_id").map(String::as_str), Some(CLIENT));
    assert_eq!(q.get("redirect_uri").map(String::as_str), Some(CALLBACK));
    assert_eq!(q.get("scope").map(String::as_str), Some(SCOPES));
    assert!(q.get("state").is_some_and(|s| s.len() >= 16));
    assert!(!url.contains(SECRET));
    assert_eq!(host.opened(), vec![url]);
}

#[test]
fn complete_exchanges_the_code_and_reads_the_account() {
    let (host, hs) = connected();
    let status = Plugin::new(host).status();
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(
        status.account.as_deref(),
        Some("user9001@acme.test @ acme.test (hub 4242)")
    );
    assert_eq!(hs.refresh_tokens(), 1);
    assert!(host.logs().iter().all(|l| !l.contains(SECRET)));
}

#[test]
fn a_state_is_single_use_and_a_forged_one_fails() {
    let host = FakeHost::default();
    let hs = FakeHubSpot::install(&host);
    let plugin = Plugin::new(&host);
    configure(&plugin);
    let url = plugin
        .begin_authorization(CALLBACK)
        .map(|a| a.url)
        .unwrap_or_default();
    let state = state_of(&url);
    let code = hs.grant_code(CALLBACK, ADMIN_USER_ID);
    let forged = plugin.complete_authorization(
        CALLBACK,
        &format!("code={code}&state=AAAAAAAAAAAAAAAAAAAAAAAA"),
    );
    assert!(matches!(forged, Err(PluginError::AuthorizationFailed(_))));
    let ok = plugin.complete_authorization(CALLBACK, &format!("code={code}&state={state}"));
    assert!(ok.is_ok(), "{ok:?}");
    let again = plugin.complete_authorization(CALLBACK, &format!("code={code}&state={state}"));
    assert!(matches!(again, Err(PluginError::AuthorizationFailed(_))));
}

#[test]
fn an_expired_attempt_is_refused() {
    let host = FakeHost::default();
    let hs = FakeHubSpot::install(&host);
    let plugin = Plugin::new(&host);
    configure(&plugin);
    let url = plugin
        .begin_authorization(CALLBACK)
        .map(|a| a.url)
        .unwrap_or_default();
    host.advance_ms(11 * 60 * 1000);
    let code = hs.grant_code(CALLBACK, ADMIN_USER_ID);
    let late =
        plugin.complete_authorization(CALLBACK, &format!("code={code}&state={}", state_of(&url)));
    assert!(matches!(late, Err(PluginError::AuthorizationFailed(_))));
    assert_eq!(plugin.status().state, ConnectionState::Configured);
}

#[test]
fn a_declined_install_says_so() {
    let host = FakeHost::default();
    let _hs = FakeHubSpot::install(&host);
    let plugin = Plugin::new(&host);
    configure(&plugin);
    let url = plugin
        .begin_authorization(CALLBACK)
        .map(|a| a.url)
        .unwrap_or_default();
    let err = plugin.complete_authorization(
        CALLBACK,
        &format!("error=access_denied&state={}", state_of(&url)),
    );
    assert!(
        matches!(&err, Err(PluginError::AuthorizationFailed(m)) if m.contains("declined")),
        "{err:?}"
    );
}

fn token_requests(host: &FakeHost) -> Vec<String> {
    host.requests()
        .into_iter()
        .filter(|r| r.url.ends_with("/oauth/v1/token"))
        .map(|r| r.form().get("grant_type").cloned().unwrap_or_default())
        .collect()
}

#[test]
fn tokens_are_refreshed_before_they_expire_not_after() {
    let (host, hs) = connected();
    hs.add_owner("1", "a@acme.test", "Ann", 1);
    let plugin = Plugin::new(host);
    assert!(plugin.sync_users(None).is_ok());
    assert!(
        token_requests(host).is_empty(),
        "a fresh token is used as is"
    );
    host.advance_ms(30 * 60 * 1000 - REFRESH_MARGIN_MS + 1);
    assert!(plugin.sync_users(None).is_ok());
    assert_eq!(token_requests(host), vec!["refresh_token".to_string()]);
    // The new token serves the next calls without another refresh.
    assert!(plugin.sync_users(None).is_ok());
    assert_eq!(token_requests(host).len(), 1);
}

#[test]
fn a_refresh_in_progress_elsewhere_is_not_repeated() {
    let (host, hs) = connected();
    hs.add_owner("1", "a@acme.test", "Ann", 1);
    host.advance_ms(30 * 60 * 1000 - REFRESH_MARGIN_MS + 1);
    // Another instance holds the refresh lease: this call keeps using the
    // still-valid token instead of refreshing too.
    let lease = pbx_crm_sdk::session::RefreshLease::take(
        host,
        pbx_crm_sdk::session::RefreshEnd {
            expires_at_ms: host.now_ms() + 15_000,
            generation: 0,
        },
    );
    let _ = pbx_crm_sdk::store::Store::<_>::new(host).put(keys::REFRESH_LEASE, &lease);
    assert!(Plugin::new(host).sync_users(None).is_ok());
    assert!(token_requests(host).is_empty());
}

#[test]
fn a_refused_token_is_refreshed_once_and_the_call_retried() {
    let (host, hs) = connected();
    hs.add_owner("1", "a@acme.test", "Ann", 1);
    hs.drop_access_tokens();
    let done = Plugin::new(host).sync_users(None);
    assert!(done.is_ok(), "{done:?}");
    assert_eq!(token_requests(host), vec!["refresh_token".to_string()]);
}

#[test]
fn a_refused_refresh_token_asks_for_reauthorization() {
    let (host, hs) = connected();
    let plugin = Plugin::new(host);
    // The app was uninstalled in HubSpot: its refresh token is gone.
    hs.forget_refresh_tokens();
    host.advance_ms(31 * 60 * 1000);
    let err = plugin.sync_users(None);
    assert!(matches!(err, Err(PluginError::NotConnected(_))), "{err:?}");
    let status = plugin.status();
    assert_eq!(status.state, ConnectionState::ReauthorizationNeeded);
    assert!(
        status.message.contains("BAD_REFRESH_TOKEN"),
        "{}",
        status.message
    );
}

#[test]
fn disconnect_revokes_and_forgets_the_tokens() {
    let (host, hs) = connected();
    let plugin = Plugin::new(host);
    let status = plugin.disconnect();
    assert_eq!(
        status.map(|s| s.state).ok(),
        Some(ConnectionState::Disconnected)
    );
    assert_eq!(hs.refresh_tokens(), 0);
    assert!(
        host.requests()
            .iter()
            .any(|r| r.method == Method::Delete && r.url.contains("/oauth/v1/refresh-tokens/"))
    );
    assert!(!host.kv_dump().contains("access-"));
    let err = plugin.lookup_caller("+14155550100", "US");
    assert!(matches!(err, Err(PluginError::NotConnected(_))));
}

#[test]
fn an_agent_signs_in_as_their_owner_and_keeps_no_token() {
    let (host, hs) = connected();
    hs.add_owner("77", "bob@acme.test", "Bob", 1234);
    let plugin = Plugin::new(host);
    assert!(plugin.sync_users(None).is_ok());
    let req = plugin
        .begin_user_sign_in(CALLBACK)
        .map_err(|e| e.to_string());
    let state = req.as_ref().map(|r| r.state.clone()).unwrap_or_default();
    let code = hs.grant_code(CALLBACK, 1234);
    let who = plugin.complete_user_sign_in(CALLBACK, &format!("code={code}&state={state}"));
    assert_eq!(who.ok().as_deref(), Some("77"));
    // Only the administrator's refresh token is left.
    assert_eq!(hs.refresh_tokens(), 1);
    let replay = plugin.complete_user_sign_in(CALLBACK, &format!("code={code}&state={state}"));
    assert!(matches!(
        replay,
        Err(crate::bindings::exports::pbx::crm::user_sign_in::SignInError::Expired)
    ));
}

#[test]
fn concurrent_calls_share_one_refresh() {
    let (host, hs) = connected();
    hs.add_owner("1", "a@acme.test", "Ann", 1);
    host.advance_ms(30 * 60 * 1000 - REFRESH_MARGIN_MS + 1);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let done = Plugin::new(host).sync_users(None);
                assert!(done.is_ok(), "{done:?}");
            });
        }
    });
    assert_eq!(token_requests(host), vec!["refresh_token".to_string()]);
}

#[test]
fn a_wrong_secret_fails_the_authorization_without_echoing_it() {
    let host = FakeHost::default();
    let hs = FakeHubSpot::install(&host);
    let plugin = Plugin::new(&host);
    configure(&plugin);
    let _ = plugin.save_settings(&[input(crate::settings::CLIENT_SECRET, "wrong-secret-42")]);
    let url = plugin
        .begin_authorization(CALLBACK)
        .map(|a| a.url)
        .unwrap_or_default();
    let code = hs.grant_code(CALLBACK, ADMIN_USER_ID);
    let err =
        plugin.complete_authorization(CALLBACK, &format!("code={code}&state={}", state_of(&url)));
    let Err(PluginError::AuthorizationFailed(message)) = err else {
        panic!("{err:?}");
    };
    assert!(message.contains("BAD_CLIENT_ID"), "{message}");
    assert!(!message.contains("wrong-secret-42"));
    assert!(host.logs().iter().all(|l| !l.contains("wrong-secret-42")));
    assert_eq!(plugin.status().state, ConnectionState::Configured);
}
