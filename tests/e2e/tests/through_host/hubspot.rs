//! The HubSpot plugin through the real host against the HubSpot emulator,
//! along the same host code paths as Salesforce's tests (connect.rs,
//! associations.rs, call_logs.rs, portal_browser.rs): the administrator's
//! whole set-up, both CRMs on one host side by side, and HubSpot connected
//! from its own page in the portal.

use std::time::{Duration, Instant};

use e2e_tests::browser::Browser;
use e2e_tests::hubspot::{
    ADMIN_EMAIL, ADMIN_PASSWORD, CLIENT_ID, CLIENT_SECRET, Hub, HubSpotWorld, PLUGIN, callback_url,
};
use e2e_tests::org::{
    Consent, Setup, World, add_extension, associate, call_event, drain, send_event, tasks_of,
};
use e2e_tests::{Options, pbx_at};
use serde_json::{Value, json};

/// The caller's number, as the contact has it and as the PBX sends it.
const CALLER: &str = "+12125550101";

async fn extension(api: &pbx_host::cli::AdminClient, number: &str, email: Option<&str>) {
    api.post(
        "/extensions",
        &json!({"number": number, "name": format!("Ext {number}"), "email": email}),
    )
    .await
    .expect("extension saved");
}

/// The user id associated with `extension` in `plugin`, if any.
async fn associated(api: &pbx_host::cli::AdminClient, plugin: &str, extension: &str) -> Value {
    api.get(&format!("/crm/{plugin}/associations/extension/{extension}"))
        .await
        .unwrap_or(Value::Null)
}

/// Configure (client id, secret, base URL), connect through the install
/// page, sync the owners, associate automatically and by hand, and log a
/// call's events exactly once as a Call associated with the contact, the
/// extension's owner its owner; all checked in the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrators_whole_set_up_through_the_host() {
    let world = HubSpotWorld::start(Options::default()).await;
    let (api, hub) = (&world.api, &world.hub);
    let cli =
        |args: &[&str]| tokio::task::block_in_place(|| pbx_at(Some(&world.data_dir), args, ""));

    // Nothing saved yet.
    assert_eq!(hub.status(api).await["state"], "NotConfigured");
    // The Callback URL the app needs is the host's.
    let (ok, out, err) = cli(&["crm", "--plugin", PLUGIN, "callback-url"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), callback_url(&world.host));

    // Configure: the secret is never shown back.
    let saved = hub
        .configure(api, CLIENT_ID, CLIENT_SECRET)
        .await
        .expect("the settings save");
    assert_eq!(saved["status"]["state"], "Configured", "{saved}");
    let settings = api
        .get(&format!("/crm/{PLUGIN}/settings"))
        .await
        .expect("settings");
    assert!(!settings.to_string().contains(CLIENT_SECRET), "{settings}");
    assert!(settings.to_string().contains(CLIENT_ID), "{settings}");

    // Connect: authorize → the install page → log in → the callback.
    let url = hub.authorize(api).await.expect("the authorization starts");
    assert!(
        url.starts_with(&format!("{}/oauth/authorize?", hub.emulator.base_url())),
        "{url}"
    );
    assert!(!url.contains(CLIENT_SECRET), "{url}");
    let wrong = hub
        .install_page(&url, ADMIN_EMAIL, "not-the-password")
        .await;
    assert!(matches!(wrong, Consent::Page(_)), "{wrong:?}");
    let Consent::Redirect(location) = hub.install_page(&url, ADMIN_EMAIL, "emulator").await else {
        panic!("HubSpot did not redirect after the install");
    };
    assert!(
        location.starts_with(&callback_url(&world.host)),
        "{location}"
    );
    let (status, page) = e2e_tests::org::follow_callback(&location).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Authorization succeeded!"), "{page}");
    assert!(!page.contains(CLIENT_SECRET), "{page}");
    // The code is single-use: the same callback again connects nothing new.
    let (again, _) = e2e_tests::org::follow_callback(&location).await;
    assert_ne!(again, 200, "a replayed callback is refused");
    let status = hub.status(api).await;
    assert_eq!(status["state"], "Connected", "{status}");
    let (ok, out, err) = cli(&["crm", "--plugin", PLUGIN, "status"]);
    assert!(ok, "{err}");
    assert!(out.contains("Connected"), "{out}");

    // The owners, synced through the CLI.
    hub.emulator.add_owner("bea@example.com", "Bea", "Agent");
    hub.emulator.add_owner("cy@example.com", "Cy", "Agent");
    hub.emulator
        .add_owner("nobody@example.com", "No", "Extension");
    extension(api, "1001", Some(ADMIN_EMAIL)).await;
    extension(api, "1002", Some("bea@example.com")).await;
    extension(api, "1003", None).await;
    let (ok, out, err) = cli(&["crm", "--plugin", PLUGIN, "users", "sync"]);
    assert!(ok, "{out}{err}");
    let users = api
        .get(&format!("/crm/{PLUGIN}/users"))
        .await
        .expect("users");
    let ids: Vec<&str> = users["entries"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["user"]["id"].as_str()).collect())
        .unwrap_or_default();
    for email in [ADMIN_EMAIL, "bea@example.com", "cy@example.com"] {
        assert!(
            ids.contains(&hub.owner_id(email).as_str()),
            "{email}: {users}"
        );
    }

    // Associate automatically: by e-mail address, 1001 and 1002.
    let proposal = api
        .get(&format!("/crm/{PLUGIN}/associations/proposal"))
        .await
        .expect("proposal");
    let mut matches: Vec<(String, String)> = proposal["matches"]
        .as_array()
        .map(|m| {
            m.iter()
                .map(|a| {
                    (
                        a["user_id"].as_str().unwrap_or_default().to_string(),
                        a["extension"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    matches.sort();
    let mut expected = vec![
        (hub.owner_id(ADMIN_EMAIL), "1001".to_string()),
        (hub.owner_id("bea@example.com"), "1002".to_string()),
    ];
    expected.sort();
    assert_eq!(matches, expected, "{proposal}");
    // Saved as proposed, through the CLI as the administrator does; and
    // by hand: Cy, whom no extension's address matches, at 1003.
    let (ok, out, err) = cli(&["crm", "--plugin", PLUGIN, "associate", "--auto", "--yes"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("Saved 2 associations"), "{out}");
    assert_eq!(associated(api, PLUGIN, "1003").await["user"], Value::Null);
    let (ok, out, err) = cli(&[
        "crm",
        "--plugin",
        PLUGIN,
        "associate",
        "cy@example.com",
        "1003",
    ]);
    assert!(ok, "{out}{err}");
    for (extension, email) in [
        ("1001", ADMIN_EMAIL),
        ("1002", "bea@example.com"),
        ("1003", "cy@example.com"),
    ] {
        let user = associated(api, PLUGIN, extension).await;
        assert_eq!(
            user["user"]["id"].as_str(),
            Some(hub.owner_id(email).as_str()),
            "{extension}: {user}"
        );
    }

    // A call to Bea at 1002 from a contact: ringing, answered, ended, and
    // the ended event delivered twice.
    let contact = hub
        .emulator
        .insert(
            "contacts",
            &[
                ("firstname", "Miles"),
                ("lastname", "O'Brien"),
                ("email", "miles@example.net"),
                ("phone", CALLER),
            ],
        )
        .expect("the contact is created");
    let at = 1_767_261_600_000; // 2026-01-01 10:00 UTC
    for phase in ["ringing", "answered", "ended", "ended"] {
        let event = call_event("hs-call-1", phase, CALLER, "1002", at);
        let (status, body) = send_event(&world.host.url(), &world.host.admin_token, &event).await;
        assert_eq!(status, 200, "{phase}: {body}");
        assert_eq!(body["delivered"], true, "{phase}: {body}");
    }
    let report = drain(api, Duration::from_secs(30)).await;
    let calls = hub.emulator.calls();
    assert_eq!(calls.len(), 1, "one Call for the call: {calls:#?} {report}");
    let logged = hub.calls_of_contact(&contact);
    assert_eq!(logged.len(), 1, "the Call is the contact's: {calls:#?}");
    let properties = &logged[0]["properties"];
    assert_eq!(
        properties["hubspot_owner_id"].as_str(),
        Some(hub.owner_id("bea@example.com").as_str()),
        "the extension's owner owns the Call: {properties}"
    );
    assert!(
        !properties["hs_timestamp"].is_null(),
        "a Call has its time: {properties}"
    );

    // Delivered again later (the PBX retries): still one Call.
    let event = call_event("hs-call-1", "ended", CALLER, "1002", at);
    let (status, body) = send_event(&world.host.url(), &world.host.admin_token, &event).await;
    assert_eq!(status, 200, "{body}");
    drain(api, Duration::from_secs(30)).await;
    assert_eq!(hub.emulator.calls().len(), 1, "{:#?}", hub.emulator.calls());
    world.host.shutdown().await;
}

/// Salesforce and HubSpot active on one host: each with its own status,
/// settings and associations, and one call's events reach both (a Task in
/// the org, a Call in the account).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_crms_on_one_host_side_by_side() {
    let hub = Hub::start().await;
    let world = World::start(Setup {
        host: hub.options(Options::default()),
        ..Setup::default()
    })
    .await;
    hub.install_on(&world.host, &world.api).await;
    let api = &world.api;

    let listing = api.get("/plugins").await.expect("plugins");
    let mut active: Vec<(String, String)> = listing["plugins"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| !p["active"].is_null())
                .map(|p| {
                    (
                        p["id"].as_str().unwrap_or_default().to_string(),
                        p["manifest"]["name"]
                            .as_str()
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    active.sort();
    assert_eq!(
        active,
        [
            ("hubspot".to_string(), "HubSpot".to_string()),
            ("salesforce".to_string(), "Salesforce".to_string())
        ],
        "{listing}"
    );

    // Each its own page in the portal, the administrator's only.
    for plugin in ["salesforce", "hubspot"] {
        let page = format!("{}/crm/{plugin}", world.host.url());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let stranger = client.get(&page).send().await.expect("answer");
        assert_eq!(
            stranger.status(),
            reqwest::StatusCode::SEE_OTHER,
            "{plugin}"
        );
        let admin = client
            .get(&page)
            .bearer_auth(&world.host.admin_token)
            .send()
            .await
            .expect("answer");
        assert_eq!(admin.status(), reqwest::StatusCode::OK, "{plugin}");
    }

    // Each its own status: connecting Salesforce leaves HubSpot as it was.
    world.connect().await;
    assert_eq!(world.status().await["state"], "Connected");
    assert_eq!(hub.status(api).await["state"], "NotConfigured");
    hub.connect(api).await;
    assert_eq!(world.status().await["state"], "Connected");
    // Each its own settings: the HubSpot secret is nowhere in Salesforce's.
    let salesforce_settings = api.get("/crm/salesforce/settings").await.expect("settings");
    assert!(
        !salesforce_settings.to_string().contains(CLIENT_ID),
        "{salesforce_settings}"
    );

    // Each its own associations of the same extension.
    add_extension(&world, "1001", None).await;
    assert_eq!(world.sync_users().await["ok"], true);
    assert_eq!(hub.sync_users(api).await["ok"], true);
    associate(&world, &[("admin@example.org", "1001")]).await;
    hub.associate(api, &[(ADMIN_EMAIL, "1001")]).await;
    let salesforce_user = associated(api, "salesforce", "1001").await;
    let hubspot_user = associated(api, PLUGIN, "1001").await;
    assert_eq!(
        salesforce_user["user"]["username"], "admin@example.org",
        "{salesforce_user}"
    );
    assert_eq!(
        hubspot_user["user"]["id"].as_str(),
        Some(hub.owner_id(ADMIN_EMAIL).as_str()),
        "{hubspot_user}"
    );

    // One call, delivered once to the host, reaches both CRMs.
    let contact = hub
        .emulator
        .insert(
            "contacts",
            &[
                ("firstname", "Miles"),
                ("lastname", "O'Brien"),
                ("phone", CALLER),
            ],
        )
        .expect("the contact is created");
    let at = 1_767_261_600_000;
    for phase in ["ringing", "answered", "ended"] {
        let event = call_event("both-1", phase, CALLER, "1001", at);
        let (status, body) = send_event(&world.host.url(), &world.host.admin_token, &event).await;
        assert_eq!(status, 200, "{phase}: {body}");
        let mut reached: Vec<&str> = body["plugins"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["plugin"].as_str()).collect())
            .unwrap_or_default();
        reached.sort_unstable();
        assert_eq!(reached, ["hubspot", "salesforce"], "{phase}: {body}");
    }
    let report = drain(api, Duration::from_secs(30)).await;
    assert_eq!(tasks_of(&world, "both-1").len(), 1, "{report}");
    assert_eq!(hub.calls_of_contact(&contact).len(), 1, "{report}");
    assert_eq!(hub.emulator.calls().len(), 1, "{report}");
    world.host.shutdown().await;
}

/// In a browser, both CRMs on one host: the administrator opens HubSpot's
/// own page, fills in its settings form (the plugin's), clicks Save, logs in
/// on HubSpot's install page in the new tab and is back to Connected there,
/// while Salesforce's page keeps its own status and account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_connects_hubspot_on_its_own_page_in_the_portal() {
    let hub = Hub::start().await;
    let world = World::start(Setup {
        host: hub.options(Options::default()),
        ..Setup::default()
    })
    .await;
    hub.install_on(&world.host, &world.api).await;
    world.connect().await;
    let base = world.host.url();
    let browser = Browser::start().await;
    let b = &browser.client;
    browser.log_in(&base, &world.host.admin_token).await;
    let list = browser.wait_text("#crm-plugins", "HubSpot").await;
    assert!(list.contains("Salesforce"), "{list}");

    browser.click("#crm-plugins a[data-plugin=hubspot]").await;
    browser
        .find("#crm-plugins a[data-plugin=hubspot][aria-current=page]")
        .await;
    browser.wait_text("#crm-name", "HubSpot").await;
    browser.wait_text("#status", "Not configured").await;
    browser
        .wait_text("#callback-url", "/crm/hubspot/oauth/callback")
        .await;
    for (field, value) in [
        ("#setting-client-id", CLIENT_ID.to_string()),
        ("#setting-client-secret", CLIENT_SECRET.to_string()),
        ("#setting-api-base-url", hub.emulator.base_url()),
        ("#setting-app-base-url", hub.emulator.base_url()),
    ] {
        let input = browser.find(field).await;
        input.clear().await.expect("clear");
        input.send_keys(&value).await.expect("type");
    }
    let portal = b.window().await.expect("portal window");
    browser.click("#save-settings").await;

    // HubSpot's install page opens in a new tab.
    let deadline = Instant::now() + Duration::from_secs(20);
    let install = loop {
        let windows = b.windows().await.expect("windows");
        if let Some(w) = windows.into_iter().find(|w| *w != portal) {
            break w;
        }
        assert!(Instant::now() < deadline, "no new tab opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    b.switch_to_window(install).await.expect("the install tab");
    browser
        .type_into("#authorize input[name=email]", ADMIN_EMAIL)
        .await;
    browser
        .type_into("#authorize input[name=password]", ADMIN_PASSWORD)
        .await;
    browser.click("#authorize button[type=submit]").await;
    browser
        .wait_text("#result", "Authorization succeeded!")
        .await;

    b.switch_to_window(portal)
        .await
        .expect("back to the portal");
    browser.wait_text("#status", "Connected").await;
    browser.wait_text("#account", ADMIN_EMAIL).await;
    let html = b.source().await.expect("page source");
    assert!(!html.contains(CLIENT_SECRET), "the secret came back");

    // Salesforce's page: its own status and account.
    b.goto(&format!("{base}/crm/salesforce"))
        .await
        .expect("open");
    browser.wait_text("#crm-name", "Salesforce").await;
    browser.wait_text("#status", "Connected").await;
    browser.wait_text("#account", "admin@example.org").await;
    let violations = browser.csp_violations().await;
    assert!(violations.is_empty(), "{violations:#?}");
    browser.close().await;
    assert_eq!(hub.status(&world.api).await["state"], "Connected");
    world.host.shutdown().await;
}
