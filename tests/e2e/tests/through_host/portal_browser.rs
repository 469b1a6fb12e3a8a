//! The portal in a real browser (headless Chromium): the administrator logs
//! in, pastes key and secret, clicks Save, allows access on Salesforce's page
//! in the new tab, and the portal shows the result and Connected.

use std::time::{Duration, Instant};

use e2e_tests::browser::Browser;
use e2e_tests::org::{ADMIN_PASSWORD, ADMIN_USER, CONSUMER_KEY, CONSUMER_SECRET, Setup, World};
use fantoccini::Locator;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_connects_from_the_portal() {
    let world = World::start(Setup::default()).await;
    let browser = Browser::start().await;
    let b = &browser.client;

    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;

    browser.wait_text("#crm-name", "Salesforce").await;
    let callback = browser
        .wait_text("#callback-url", "/crm/salesforce/oauth/callback")
        .await;
    assert_eq!(
        callback,
        format!("{}/crm/salesforce/oauth/callback", world.host.url())
    );
    browser
        .find("#setting-consumer-key")
        .await
        .send_keys(CONSUMER_KEY)
        .await
        .expect("key");
    browser
        .find("#setting-consumer-secret")
        .await
        .send_keys(CONSUMER_SECRET)
        .await
        .expect("secret");
    browser
        .find("#setting-login-host")
        .await
        .select_by_value("my-domain")
        .await
        .expect("choose My Domain");
    browser
        .find("#setting-my-domain-url")
        .await
        .send_keys(&world.org.base_url())
        .await
        .expect("my domain");
    let portal = b.window().await.expect("portal window");
    browser
        .find("#save-settings")
        .await
        .click()
        .await
        .expect("Save");

    // Salesforce's page opens in a new tab.
    let deadline = Instant::now() + Duration::from_secs(20);
    let consent = loop {
        let windows = b.windows().await.expect("windows");
        if let Some(w) = windows.into_iter().find(|w| *w != portal) {
            break w;
        }
        assert!(Instant::now() < deadline, "no new tab opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    b.switch_to_window(consent)
        .await
        .expect("switch to the consent tab");
    browser
        .find("#login_form input[name=username]")
        .await
        .send_keys(ADMIN_USER)
        .await
        .expect("user");
    browser
        .find("#login_form input[name=password]")
        .await
        .send_keys(ADMIN_PASSWORD)
        .await
        .expect("pw");
    browser
        .find("#Login")
        .await
        .click()
        .await
        .expect("log in to Salesforce");
    browser.find("#allow").await.click().await.expect("Allow");
    browser
        .wait_text("#result", "Authorization succeeded!")
        .await;

    // Back in the portal: the pop-up and the status.
    b.switch_to_window(portal)
        .await
        .expect("back to the portal");
    browser
        .wait_text("#result-title", "Authorization succeeded!")
        .await;
    let status = browser.wait_text("#result-status", "Connected").await;
    assert!(status.contains(ADMIN_USER), "{status}");
    browser.wait_text("#status", "Connected").await;
    let shot = browser.screenshot("portal-connected").await;
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000));

    // The secret never came back to the page.
    let html = b.source().await.expect("page source");
    assert!(!html.contains(CONSUMER_SECRET));
    assert!(b.find(Locator::Css("#result-dialog[open]")).await.is_ok());
    browser.close().await;
    assert_eq!(world.status().await["state"], "Connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_syncs_and_associates_users_in_the_portal() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    let emails: Vec<(String, String)> = world
        .org
        .users()
        .iter()
        .filter(|u| u["IsActive"] == true)
        .take(3)
        .map(|u| {
            (
                u["Username"].as_str().unwrap_or_default().to_string(),
                u["Email"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (i, (_, email)) in emails.iter().enumerate() {
        world
            .api
            .post(
                "/extensions",
                &serde_json::json!({"number": format!("100{}", i + 1), "name": format!("Desk {}", i + 1), "email": email.to_uppercase()}),
            )
            .await
            .expect("extension");
    }
    world
        .api
        .post(
            "/extensions",
            &serde_json::json!({"number": "1009", "name": "Spare"}),
        )
        .await
        .expect("extension");

    let browser = Browser::start().await;
    let b = &browser.client;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;

    browser
        .find("#sync-users")
        .await
        .click()
        .await
        .expect("Refresh Salesforce users");
    browser
        .wait_text("#sync-text", "users read from Salesforce")
        .await;
    browser.wait_text("#user-pages", "users").await;
    // The result pop-up; OK dismisses it.
    browser
        .wait_text("#result-title", "Salesforce users refreshed")
        .await;
    browser.click("#result-ok").await;
    // The sync's answers carried the org's API use; the status line shows it
    // (the portal polls the status).
    let (used, limit) = world.org.api_usage();
    assert_eq!(limit, 100_000, "the emulator's default daily limit");
    let usage = browser
        .wait_text("#api-usage", "API requests today: ")
        .await;
    assert!(
        usage.ends_with(" of 100,000 (0 %)"),
        "{usage} (the org counts {used})"
    );

    browser
        .find("#auto-associate")
        .await
        .click()
        .await
        .expect("Associate automatically");
    browser.wait_text("#proposal-matches", "1001").await;
    browser
        .find("#proposal-ok")
        .await
        .click()
        .await
        .expect("OK");
    browser.wait_text("#assoc-result", "Click Save").await;

    // Giving a taken extension to another user is refused on the page.
    let selects = b
        .find_all(Locator::Css("select.extension-select"))
        .await
        .expect("selects");
    let mut refused = false;
    for select in selects {
        if select
            .prop("value")
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
            .is_empty()
        {
            select
                .select_by_value("1001")
                .await
                .expect("pick a taken extension");
            refused = true;
            break;
        }
    }
    assert!(refused, "an unassociated user to try with");
    browser
        .wait_text("#assoc-result", "already belongs to")
        .await;

    browser
        .find("#save-associations")
        .await
        .click()
        .await
        .expect("Save");
    browser.wait_text("#assoc-result", "Saved").await;
    let shot = browser.screenshot("portal-associations").await;
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000));
    browser.close().await;

    let list = world.api.get("/crm/salesforce/users").await.expect("users");
    for (i, (username, _)) in emails.iter().enumerate() {
        let entry = list["entries"]
            .as_array()
            .and_then(|e| {
                e.iter()
                    .find(|e| e["user"]["username"] == username.as_str())
            })
            .cloned()
            .unwrap_or_default();
        assert_eq!(entry["extension"], format!("100{}", i + 1), "{username}");
        assert_eq!(entry["state"], "Associated");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_grants_and_activates_a_new_version_in_the_portal() {
    let world = World::start(Setup::default()).await;
    let listing = world.api.get("/plugins").await.expect("list");
    let mut manifest = listing["plugins"][0]["manifest"].clone();
    let new = format!("{}-next", manifest["version"].as_str().expect("version"));
    manifest["version"] = serde_json::json!(new);
    let extra = "https://api.extra.test";
    manifest["hosts"]
        .as_array_mut()
        .expect("hosts")
        .push(serde_json::json!(extra));
    // And more kv-store space than the host's default quota.
    manifest["kv"] = serde_json::json!({"max_keys": 50_000, "max_mib": 256});
    let shipped = std::fs::read(e2e_tests::component("salesforce_plugin")).expect("plugin");
    let report =
        e2e_tests::install_bytes(&world.api, e2e_tests::with_manifest(&shipped, &manifest))
            .await
            .expect("installs beside the active version");
    assert_eq!(report["activated"], false);

    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;

    // The portal says why the new version cannot be activated yet.
    let notice = browser.wait_text("#plugin-notices", "not granted").await;
    assert!(
        notice.contains(extra) && notice.contains(&new) && notice.contains("50000 keys, 256 MiB"),
        "{notice}"
    );
    let activate = browser
        .find(&format!("tr[data-version=\"{new}\"] button"))
        .await;
    assert_eq!(
        activate.attr("disabled").await.expect("attr").as_deref(),
        Some("true")
    );

    browser
        .find("#grant-pattern")
        .await
        .send_keys(extra)
        .await
        .expect("pattern");
    browser
        .find("#plugin-grant button")
        .await
        .click()
        .await
        .expect("Grant");
    browser.wait_text("#plugin-result", "may reach").await;
    // The host is granted; the kv-store space is still missing.
    // (This text appears only once the host has left the notice.)
    let notice = browser
        .wait_text(
            "#plugin-notices",
            "requests kv-store 50000 keys, 256 MiB, which is not granted",
        )
        .await;
    assert!(!notice.contains(extra), "{notice}");
    assert_eq!(
        browser
            .find(&format!("tr[data-version=\"{new}\"] button"))
            .await
            .attr("disabled")
            .await
            .expect("attr")
            .as_deref(),
        Some("true")
    );
    for (field, value) in [("#grant-kv-keys", "50000"), ("#grant-kv-mib", "256")] {
        browser
            .find(field)
            .await
            .send_keys(value)
            .await
            .expect("kv quota");
    }
    browser
        .find("#plugin-grant-kv button")
        .await
        .click()
        .await
        .expect("Grant space");
    browser
        .wait_text("#plugin-result", "may keep 50000 keys, 256 MiB")
        .await;
    // The list was drawn again: the button is enabled now.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let button = browser
            .find(&format!("tr[data-version=\"{new}\"] button"))
            .await;
        if button.attr("disabled").await.ok().flatten().is_none() {
            button.click().await.expect("Activate");
            break;
        }
        assert!(Instant::now() < deadline, "Activate stayed disabled");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.wait_text("#plugin-result", "is active").await;
    browser
        .wait_text(&format!("tr[data-version=\"{new}\"]"), "(active)")
        .await;
    let shot = browser.screenshot("portal-plugin-versions").await;
    assert!(shot.exists());
    let list = world.api.get("/plugins").await.expect("list");
    assert_eq!(list["plugins"][0]["active"], serde_json::json!(new));
    assert!(
        list["plugins"][0]["granted"]
            .as_array()
            .is_some_and(|g| g.contains(&serde_json::json!(extra)))
    );
    assert_eq!(list["plugins"][0]["kv_max_keys"], 50_000);
    assert_eq!(list["plugins"][0]["kv_max_bytes"], 256u64 << 20);
    browser.close().await;
}
