//! Connecting to Salesforce through the real host, against the emulator:
//! the happy path over HTTP and every error an administrator can hit, each
//! checking the message and that nothing was stored.

use e2e_tests::org::{CONSUMER_KEY, CONSUMER_SECRET, Consent, Setup, World};
use e2e_tests::{Options, api_call, pbx_at};
use serde_json::json;

fn token_keys(world: &World) -> Vec<String> {
    world
        .plugin_keys()
        .into_iter()
        .filter(|k| k.starts_with("auth/tokens") || k == "connection")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_connects_and_the_status_names_the_account() {
    let world = World::start(Setup::default()).await;
    let callback = world
        .api
        .get("/crm/salesforce/callback-url")
        .await
        .expect("callback url");
    assert_eq!(
        callback["callback_url"],
        format!("{}/crm/salesforce/oauth/callback", world.host.url())
    );
    let status = world.connect().await;
    assert_eq!(status["state"], "Connected", "{status}");
    assert!(
        status["account"]
            .as_str()
            .is_some_and(|a| a.contains("admin@example.org")),
        "{status}"
    );
    assert_eq!(status["last_authorization"]["ok"], true);
    assert_eq!(world.org.token_stats().authorization_code_grants, 1);
    // The consent page was offered to the administrator through open-browser.
    let opened = world.api.get("/browser-requests").await.expect("requests");
    assert_eq!(opened["requests"][0]["viewer"]["kind"], "administrator");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_is_reported_with_the_fix_and_nothing_is_stored() {
    let world = World::start(Setup::default()).await;
    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings");
    let url = world.authorize().await.expect("authorization starts");
    let Consent::Redirect(location) = world.consent(&url, false).await else {
        panic!("Deny redirects to the callback");
    };
    assert!(location.contains("error=access_denied"), "{location}");
    let (status, page) = world.callback(&location).await;
    assert_eq!(status, 400);
    assert!(page.contains("Authorization failed"), "{page}");
    assert!(page.contains("Allow"), "the fix is to click Allow: {page}");
    assert!(token_keys(&world).is_empty(), "{:?}", world.plugin_keys());
    assert_eq!(world.status().await["state"], "Configured");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_consumer_key_is_refused_at_save() {
    let world = World::start(Setup::default()).await;
    world
        .configure("3MVG9NotTheKey", CONSUMER_SECRET)
        .await
        .expect("settings");
    let before = world.plugin_keys();
    let err = world
        .authorize()
        .await
        .expect_err("a wrong key cannot authorize");
    assert!(err.contains("Consumer Key"), "{err}");
    assert!(err.contains("copy it again"), "{err}");
    assert_eq!(world.plugin_keys(), before, "nothing stored");
    assert!(
        world.api.get("/browser-requests").await.expect("requests")["requests"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_consumer_secret_is_refused_at_the_callback() {
    let world = World::start(Setup::default()).await;
    world
        .configure(CONSUMER_KEY, "not-the-secret")
        .await
        .expect("settings");
    let url = world
        .authorize()
        .await
        .expect("the key is right, so it starts");
    let Consent::Redirect(location) = world.consent(&url, true).await else {
        panic!("Allow redirects");
    };
    let (status, page) = world.callback(&location).await;
    assert_eq!(status, 400);
    assert!(page.contains("Consumer Secret"), "{page}");
    assert!(token_keys(&world).is_empty());
    assert_eq!(world.org.token_stats().authorization_code_grants, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_url_mismatch_is_shown_by_salesforce_and_nothing_is_stored() {
    let world = World::start(Setup {
        app_callback: Some("https://pbx.example.com/crm/salesforce/oauth/callback".into()),
        ..Setup::default()
    })
    .await;
    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings");
    let url = world.authorize().await.expect("starts");
    let Consent::Page(page) = world.consent(&url, true).await else {
        panic!("Salesforce must not redirect to an unregistered callback");
    };
    assert!(page.contains("redirect_uri_mismatch"), "{page}");
    assert!(token_keys(&world).is_empty());
    // The portal shows the exact Callback URL to enter in Salesforce.
    let callback = world
        .api
        .get("/crm/salesforce/callback-url")
        .await
        .expect("url");
    assert!(
        callback["callback_url"]
            .as_str()
            .is_some_and(|u| url.contains(&urlencode(u)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_expired_code_is_refused() {
    let world = World::start(Setup::default()).await;
    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings");

    // Expired: the org's codes live for 0 seconds.
    world
        .org
        .set_code_lifetime(CONSUMER_KEY, std::time::Duration::ZERO)
        .expect("set code lifetime");
    let url = world.authorize().await.expect("starts");
    let Consent::Redirect(location) = world.consent(&url, true).await else {
        panic!("Allow redirects");
    };
    let (status, page) = world.callback(&location).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired or was already used"), "{page}");
    assert!(token_keys(&world).is_empty());

    // Replayed: the same callback twice. The first connects; the second is
    // refused and changes nothing.
    world
        .org
        .set_code_lifetime(CONSUMER_KEY, std::time::Duration::from_secs(600))
        .expect("set code lifetime");
    let url = world.authorize().await.expect("starts");
    let Consent::Redirect(location) = world.consent(&url, true).await else {
        panic!("Allow redirects");
    };
    assert_eq!(world.callback(&location).await.0, 200);
    let stored = world.plugin_keys();
    let (status, page) = world.callback(&location).await;
    assert_eq!(status, 400);
    assert!(page.contains("start the authorization again"), "{page}");
    assert_eq!(world.plugin_keys(), stored);
    assert_eq!(world.org.token_stats().authorization_code_grants, 1);
    assert_eq!(world.status().await["state"], "Connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_unknown_and_reused_states_are_refused() {
    let world = World::start(Setup::default()).await;
    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings");
    let callback = format!("{}/crm/salesforce/oauth/callback", world.host.url());
    for query in [
        "?code=aPrxFAKE",
        "?code=aPrxFAKE&state=bm90LWEtc3RhdGUtd2UtaXNzdWVk",
        "",
    ] {
        let (status, page) = world.callback(&format!("{callback}{query}")).await;
        assert_eq!(status, 400, "{query}");
        assert!(
            page.contains("start the authorization again"),
            "{query}: {page}"
        );
    }
    assert!(token_keys(&world).is_empty());
    assert_eq!(world.org.token_stats().authorization_code_grants, 0);
    assert_eq!(
        world.org.token_stats().failed_token_requests,
        0,
        "no code was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_that_does_not_match_is_refused() {
    // Something between the PBX and Salesforce altered the token answer.
    let world = World::start(Setup::default()).await;
    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings");
    let url = world.authorize().await.expect("starts");
    let Consent::Redirect(location) = world.consent(&url, true).await else {
        panic!("Allow redirects");
    };
    world.org.faults().tamper_signatures(1);
    let (status, page) = world.callback(&location).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("signature does not match"), "{page}");
    assert!(token_keys(&world).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_slow_salesforce_is_reported_at_save() {
    let world = World::start(Setup {
        host: Options {
            http_timeout_ms: Some(500),
            ..Options::default()
        },
        ..Setup::default()
    })
    .await;
    // Slow: the org answers after 2 s, the PBX waits 0.5 s.
    world
        .org
        .faults()
        .latency(std::time::Duration::from_secs(2));
    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings");
    let before = world.plugin_keys();
    let err = world.authorize().await.expect_err("times out");
    assert!(
        err.contains("could not be reached") || err.contains("did not answer"),
        "{err}"
    );
    assert_eq!(world.plugin_keys(), before);
    world.org.faults().latency(std::time::Duration::ZERO);

    // Unreachable: a granted address where nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let world2 = World::start(Setup {
        host: Options {
            grants: vec![format!("salesforce=https://127.0.0.1:{port}")],
            ..Options::default()
        },
        ..Setup::default()
    })
    .await;
    world2
        .configure_login(
            CONSUMER_KEY,
            CONSUMER_SECRET,
            &format!("https://127.0.0.1:{port}"),
        )
        .await
        .expect("settings");
    let err = world2.authorize().await.expect_err("unreachable");
    assert!(err.contains("could not be reached"), "{err}");
    assert!(token_keys(&world2).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_host_the_operator_did_not_grant_is_refused_naming_the_grant() {
    let world = World::start(Setup::default()).await;
    world
        .configure_login(
            CONSUMER_KEY,
            CONSUMER_SECRET,
            "https://acme.my.salesforce.com",
        )
        .await
        .expect("settings");
    let err = world.authorize().await.expect_err("not granted");
    assert!(
        err.contains("--grant salesforce=https://acme.my.salesforce.com"),
        "{err}"
    );
    assert!(token_keys(&world).is_empty());
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The stored Consumer Key, as `GET /settings` shows it.
async fn stored_key(world: &World) -> serde_json::Value {
    let settings = world
        .api
        .get("/crm/salesforce/settings")
        .await
        .expect("settings");
    settings["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|v| v["key"] == "consumer-key"))
        .map(|v| v["value"].clone())
        .unwrap_or_default()
}

/// PUT `settings`; it must be refused with 400 naming `field`, and change
/// nothing: the stored keys, the Consumer Key, the status.
async fn assert_refused_and_unchanged(world: &World, settings: serde_json::Value, field: &str) {
    let keys = world.plugin_keys();
    let state = world.status().await["state"].clone();
    let (status, body) = api_call(
        &world.host,
        reqwest::Method::PUT,
        "/crm/salesforce/settings",
        Some(&json!({ "settings": settings })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["kind"], "invalid-input", "{body}");
    assert_eq!(body["field"], field, "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(message.contains("Consumer Key"), "{message}");
    assert!(message.contains("Nothing was saved"), "{message}");
    assert_eq!(
        world.plugin_keys(),
        keys,
        "the refused save stored something"
    );
    assert_eq!(world.status().await["state"], state);
    assert_eq!(stored_key(world).await, CONSUMER_KEY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_consumer_key_is_refused_and_nothing_changes() {
    let world = World::start(Setup::default()).await;
    assert_eq!(world.connect().await["state"], "Connected");

    // While Connected: the API's empty consumer-key.
    let empty_key = json!([{"key": "consumer-key", "value": ""}]);
    assert_refused_and_unchanged(&world, empty_key.clone(), "consumer-key").await;
    assert_eq!(world.status().await["state"], "Connected");

    // After Disconnect: the portal's whole form with the key emptied.
    world
        .api
        .post("/crm/salesforce/disconnect", &json!({}))
        .await
        .expect("disconnect");
    let form = json!([
        {"key": "consumer-key", "value": "  "},
        {"key": "consumer-secret", "value": null},
        {"key": "login-host", "value": "my-domain"},
        {"key": "my-domain-url", "value": world.org.base_url()},
    ]);
    assert_refused_and_unchanged(&world, form, "consumer-key").await;
    assert_eq!(world.status().await["state"], "Disconnected");

    // The same through the CLI: refused, naming the setting, nothing stored.
    let keys = world.plugin_keys();
    let dir = world.data_dir.clone();
    for args in [
        &["crm", "configure", "--consumer-key", ""][..],
        &["crm", "settings", "set", "consumer-key="][..],
    ] {
        let (ok, out, err) = tokio::task::block_in_place(|| pbx_at(Some(&dir), args, ""));
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(err.contains("Consumer Key"), "{args:?}: {err}");
        assert!(err.contains("Nothing was saved"), "{args:?}: {err}");
    }
    assert_eq!(world.plugin_keys(), keys);
    assert_eq!(world.status().await["state"], "Disconnected");
    assert_eq!(stored_key(&world).await, CONSUMER_KEY);
}
