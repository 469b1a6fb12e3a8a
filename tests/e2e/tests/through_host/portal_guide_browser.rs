//! The whole set-up guide in a real browser, as a new administrator goes
//! through it: Network shows the Callback URL, key and secret are saved
//! with the right login host, Allow on the emulated Salesforce's page,
//! Connected, users refreshed and associated automatically, extensions
//! added, replaced and removed (each after a confirmation), a plugin
//! version installed without activating it. Each message is checked as
//! the administrator reads it, and the layout at three widths.

use std::time::{Duration, Instant};

use e2e_tests::browser::Browser;
use e2e_tests::org::{ADMIN_PASSWORD, ADMIN_USER, CONSUMER_KEY, CONSUMER_SECRET, Setup, World};
use fantoccini::Locator;
use serde_json::{Value, json};

/// Brackets in a message never nest: "(… (…) …)" reads badly.
fn assert_no_nested_brackets(what: &str, text: &str) {
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            _ => {}
        }
        assert!(depth <= 1, "{what} nests brackets: {text}");
    }
}

/// What an administrator must never read: developer detail.
fn assert_plain(what: &str, text: &str) {
    assert_no_nested_brackets(what, text);
    for detail in ['`', '{', '}'] {
        assert!(!text.contains(detail), "{what} shows {detail:?}: {text}");
    }
}

/// The window's handles other than `keep`, once one more than `keep` is open.
async fn wait_new_tab(
    browser: &Browser,
    keep: &fantoccini::wd::WindowHandle,
) -> fantoccini::wd::WindowHandle {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let windows = browser.client.windows().await.expect("windows");
        if let Some(w) = windows.into_iter().find(|w| w != keep) {
            return w;
        }
        assert!(Instant::now() < deadline, "no new tab opened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait until the element is hidden (or shown, with `shown`).
async fn wait_shown(browser: &Browser, css: &str, shown: bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser.shown(css).await != shown {
        assert!(
            Instant::now() < deadline,
            "{css} never became shown={shown}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answer the confirmation dialog after checking what it says.
async fn confirm(browser: &Browser, expect: &[&str], yes: bool) -> String {
    browser.find("#confirm-dialog[open]").await;
    let message = browser
        .find("#confirm-message")
        .await
        .text()
        .await
        .expect("text");
    for needle in expect {
        assert!(message.contains(needle), "{needle:?} not in {message:?}");
    }
    browser
        .click(if yes { "#confirm-yes" } else { "#confirm-no" })
        .await;
    message
}

/// Wait until the input's value is `expected`.
async fn wait_value(browser: &Browser, css: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = browser.find(css).await.prop("value").await.ok().flatten();
        if value.as_deref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never held {expected:?} (last: {value:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn extension(world: &World, number: &str) -> Option<Value> {
    let list = world.api.get("/extensions").await.expect("extensions");
    list["extensions"]
        .as_array()
        .and_then(|l| l.iter().find(|x| x["number"] == number).cloned())
}

async fn add_in_form(browser: &Browser, number: &str, name: &str, email: &str) {
    for (css, value) in [
        ("#extension-number", number),
        ("#extension-name", name),
        ("#extension-email", email),
    ] {
        let input = browser.find(css).await;
        input.clear().await.expect("clear");
        input.send_keys(value).await.expect("type");
    }
    browser.click("#add-extension").await;
}

async fn setting(world: &World, key: &str) -> Value {
    let stored = world
        .api
        .get("/crm/salesforce/settings")
        .await
        .expect("settings");
    stored["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|v| v["key"] == key).cloned())
        .unwrap_or_default()
}

/// The page's controls without a label (a <label for> or aria-label), and
/// any positive tabindex (focus must follow the page).
const ACCESSIBILITY: &str = r#"
const unlabeled = [...document.querySelectorAll("input, select, textarea")]
  .filter((c) => c.type !== "hidden")
  .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute("aria-label"))
  .map((c) => c.id || c.name || c.outerHTML.slice(0, 80));
const unnamedButtons = [...document.querySelectorAll("button")]
  .filter((b) => !b.textContent.trim() && !b.getAttribute("aria-label") && !b.closest("dialog"))
  .map((b) => b.id || b.outerHTML.slice(0, 80));
const tabindex = [...document.querySelectorAll("[tabindex]")]
  .filter((e) => Number(e.getAttribute("tabindex")) > 0).map((e) => e.id || e.tagName);
return { unlabeled, unnamedButtons, tabindex };
"#;

const OVERFLOW: &str = r##"
const root = document.documentElement;
// What sticks out, for the failure message: the outermost such elements.
const wide = [...document.body.querySelectorAll("*")]
  .filter((e) => e.getBoundingClientRect().right > root.clientWidth + 1)
  .filter((e) => !e.parentElement || e.parentElement.getBoundingClientRect().right <= root.clientWidth + 1)
  .slice(0, 5).map((e) => e.tagName + "#" + e.id + "." + e.className + " in " + e.parentElement.className
    + " " + getComputedStyle(e.parentElement).overflowX + " " + getComputedStyle(e.parentElement).display
    + " " + e.parentElement.scrollWidth + "/" + e.parentElement.clientWidth + " closest " + (e.closest("section") || {}).id);
return { scroll: root.scrollWidth, client: root.clientWidth, wide };
"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_administrator_follows_the_guide_in_the_portal() {
    let world = World::start(Setup::default()).await;
    let base = world.host.url();
    let browser = Browser::start().await;
    let b = &browser.client;
    browser.log_in(&base, &world.host.admin_token).await;
    assert_eq!(b.title().await.expect("title"), "PBX portal");

    // The icon: linked, served, allowed by the policy.
    let icon = world
        .browser()
        .get(format!("{base}/assets/favicon.svg"))
        .send()
        .await
        .expect("the icon");
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(
        b.find(Locator::Css("link[rel=icon][href='/assets/favicon.svg']"))
            .await
            .is_ok()
    );

    // Network: the Homepage URL (the host's --public-url until it is
    // saved here, with what a CRM will object to) and the Callback URL.
    browser.click("nav a[href='#network']").await;
    assert_eq!(b.title().await.expect("title"), "Network · PBX portal");
    wait_value(&browser, "#homepage-url", &base).await;
    let callback = browser.wait_text("#callback-url", "/oauth/callback").await;
    assert_eq!(callback, format!("{base}/crm/salesforce/oauth/callback"));
    let network = browser.find("#network").await.text().await.expect("text");
    assert!(network.contains("--public-url"), "{network}");
    let warned = browser
        .wait_text("#homepage-warnings", "is this machine")
        .await;
    assert_plain("the Homepage URL warning", &warned);

    // Not configured: nothing to authorize or disconnect yet.
    browser.click("nav a[href='#crm']").await;
    assert_eq!(
        b.title().await.expect("title"),
        "CRM integration · PBX portal"
    );
    browser.wait_text("#status", "Not configured").await;
    browser.wait_text("#crm-name", "Salesforce").await;
    assert!(!browser.shown("#authorize").await);
    assert!(!browser.shown("#disconnect").await);
    // The Authorization section holds key, secret, login host and Save;
    // the call options are a section of their own.
    for id in ["consumer-key", "consumer-secret", "login-host"] {
        browser.find(&format!("#settings-form #setting-{id}")).await;
    }
    browser.find("#settings-form #save-settings").await;
    assert!(browser.shown("#call-logging").await);
    let call_selects = b
        .find_all(Locator::Css("#call-settings-form select"))
        .await
        .expect("call settings");
    assert!(!call_selects.is_empty());
    assert!(
        b.find(Locator::Css("#call-settings-form #setting-consumer-key"))
            .await
            .is_err()
    );

    // Save with nothing typed: the page names the field, sends nothing,
    // opens no tab.
    let portal = b.window().await.expect("portal window");
    browser.click("#save-settings").await;
    browser
        .wait_text("#error-consumer-key", "Consumer Key")
        .await;
    let said = browser
        .wait_text("#settings-result", "Nothing was saved")
        .await;
    assert_eq!(
        said,
        "Nothing was saved: enter the Consumer Key and the Consumer Secret."
    );
    assert_eq!(b.windows().await.expect("windows").len(), 1);
    assert_eq!(setting(&world, "consumer-key").await["value"], Value::Null);
    assert_eq!(world.status().await["state"], "NotConfigured");

    // Key and secret with the login host left at Production: the org is
    // not there, so the authorization fails; the page says so in words
    // and, for a host not granted, points at its Grant form.
    browser
        .type_into("#setting-consumer-key", CONSUMER_KEY)
        .await;
    browser
        .type_into("#setting-consumer-secret", CONSUMER_SECRET)
        .await;
    browser.click("#save-settings").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let said = browser
            .find("#settings-result")
            .await
            .text()
            .await
            .expect("text");
        if !["", "Saved."].contains(&said.as_str()) {
            break said;
        }
        assert!(Instant::now() < deadline, "no outcome after Save: {said:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_plain("the Production attempt", &failed);
    // Whatever opened is closed again before the real attempt.
    for w in b.windows().await.expect("windows") {
        if w != portal {
            b.switch_to_window(w).await.expect("switch");
            b.close_window().await.expect("close");
        }
    }
    b.switch_to_window(portal.clone()).await.expect("back");
    // The host is not granted: the message points at the Grant form and
    // fills it in.
    let link = browser.find("#settings-result a.grant-link").await;
    assert_eq!(
        link.attr("href").await.expect("href").as_deref(),
        Some("#plugin-grant")
    );
    let offered = link.text().await.expect("text");
    assert!(
        offered.starts_with("Grant https://login.salesforce.com"),
        "{offered}"
    );
    link.click().await.expect("follow the link");
    let pattern = browser.find("#grant-pattern").await;
    let filled = pattern
        .prop("value")
        .await
        .expect("value")
        .unwrap_or_default();
    assert!(
        offered.contains(&filled) && filled.starts_with("https://"),
        "{filled}"
    );
    pattern.clear().await.expect("clear");

    // The right login host: My Domain, the org's address.
    browser
        .find("#setting-login-host")
        .await
        .select_by_value("my-domain")
        .await
        .expect("choose My Domain");
    browser
        .type_into("#setting-my-domain-url", &world.org.base_url())
        .await;
    browser.click("#save-settings").await;
    let consent = wait_new_tab(&browser, &portal).await;
    b.switch_to_window(consent).await.expect("the consent tab");
    browser
        .type_into("#login_form input[name=username]", ADMIN_USER)
        .await;
    browser
        .type_into("#login_form input[name=password]", ADMIN_PASSWORD)
        .await;
    browser.click("#Login").await;
    browser.click("#allow").await;
    browser
        .wait_text("#result", "Authorization succeeded!")
        .await;
    b.close_window().await.expect("close the consent tab");
    b.switch_to_window(portal.clone())
        .await
        .expect("back to the portal");

    browser
        .wait_text("#result-title", "Authorization succeeded!")
        .await;
    let result = browser.wait_text("#result-status", "Connected").await;
    assert!(result.contains(ADMIN_USER), "{result}");
    assert_plain("the result pop-up", &result);
    browser.click("#result-ok").await;
    // The "opened in a new tab" line gave way to the outcome.
    let said = browser
        .wait_text("#settings-result", "Authorization succeeded")
        .await;
    assert!(!said.contains("new tab"), "{said}");
    browser.wait_text("#status", "Connected").await;
    let account = browser.wait_text("#account", ADMIN_USER).await;
    assert_plain("the account", &account);
    // "Status: Connected — admin@example.org (org 00D…)", as the guide says.
    let line = browser
        .find(".status-line")
        .await
        .text()
        .await
        .expect("text");
    assert!(
        line.starts_with(&format!("Status: Connected — {ADMIN_USER}")),
        "{line}"
    );
    wait_shown(&browser, "#authorize", true).await;
    assert_eq!(
        browser.find("#authorize").await.text().await.expect("text"),
        "Authorize again"
    );
    assert!(browser.shown("#disconnect").await);
    assert_eq!(world.status().await["state"], "Connected");

    // Call logging: its own Save, no authorization, the rest kept.
    // (Found anew: the form may have been drawn again meanwhile.)
    let first = browser.find("#call-settings-form select").await;
    let key = first.attr("name").await.expect("name").expect("a name");
    let options = first
        .find_all(Locator::Css("option"))
        .await
        .expect("options");
    let other = options
        .last()
        .expect("choices")
        .attr("value")
        .await
        .expect("value")
        .expect("value");
    browser
        .find(&format!("#setting-{key}"))
        .await
        .select_by_value(&other)
        .await
        .expect("choose");
    browser.click("#save-call-settings").await;
    browser.wait_text("#call-settings-result", "Saved.").await;
    assert_eq!(setting(&world, &key).await["value"], json!(other));
    assert_eq!(setting(&world, "consumer-secret").await["is_set"], true);
    assert_eq!(setting(&world, "consumer-key").await["value"], CONSUMER_KEY);
    assert_eq!(b.windows().await.expect("windows").len(), 1);
    assert_eq!(world.status().await["state"], "Connected");

    // Extensions: two matching users by e-mail, one spare.
    let users: Vec<(String, String)> = world
        .org
        .users()
        .iter()
        .filter(|u| u["IsActive"] == true && u["Email"].is_string())
        .take(2)
        .map(|u| {
            (
                u["Name"].as_str().unwrap_or_default().to_string(),
                u["Email"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(users.len(), 2, "two active users with e-mail");
    browser.click("nav a[href='#extensions']").await;
    add_in_form(&browser, "1001", "Desk one", &users[0].1).await;
    browser
        .wait_text("#extension-result", "Extension 1001 added.")
        .await;
    add_in_form(&browser, "1002", "Desk two", &users[1].1).await;
    browser
        .wait_text("#extension-result", "Extension 1002 added.")
        .await;
    add_in_form(&browser, "1009", "Spare desk", "spare@example.com").await;
    browser
        .wait_text("#extension-result", "Extension 1009 added.")
        .await;

    // The same number again: the page asks, showing what is there now.
    add_in_form(&browser, "1001", "Front desk", &users[0].1).await;
    confirm(&browser, &["Desk one", &users[0].1, "Front desk"], false).await;
    browser.wait_text("#extension-result", "kept").await;
    assert_eq!(
        extension(&world, "1001").await.expect("1001")["name"],
        "Desk one"
    );
    add_in_form(&browser, "1001", "Front desk", &users[0].1).await;
    confirm(&browser, &["Desk one"], true).await;
    browser
        .wait_text("#extension-result", "Extension 1001 replaced.")
        .await;
    assert_eq!(
        extension(&world, "1001").await.expect("1001")["name"],
        "Front desk"
    );

    // Removing asks first.
    browser
        .click("tr[data-extension='1009'] button.remove-extension")
        .await;
    confirm(&browser, &["1009", "Spare desk"], false).await;
    browser.wait_text("#extension-result", "kept").await;
    assert!(extension(&world, "1009").await.is_some());
    browser
        .click("tr[data-extension='1009'] button.remove-extension")
        .await;
    confirm(&browser, &["Spare desk"], true).await;
    browser
        .wait_text("#extension-result", "Extension 1009 removed.")
        .await;
    assert!(extension(&world, "1009").await.is_none());

    // Users: Refresh beside the column header, then Associate
    // Automatically and Save.
    browser.click("nav a[href='#users']").await;
    let header = browser
        .find("#users thead th")
        .await
        .text()
        .await
        .expect("text");
    assert!(header.contains("Salesforce User"), "{header}");
    let refresh = browser.find("#users thead th #sync-users").await;
    assert_eq!(
        refresh
            .attr("aria-label")
            .await
            .expect("aria-label")
            .as_deref(),
        Some("Refresh Salesforce users")
    );
    refresh.click().await.expect("refresh");
    let read = browser
        .wait_text("#sync-text", "read from Salesforce")
        .await;
    let job = world
        .api
        .get("/crm/salesforce/users/sync")
        .await
        .expect("job");
    let fetched = job["fetched"].as_u64().expect("fetched");
    let noun = |n| if n == 1 { "user" } else { "users" };
    assert!(
        read.starts_with(&format!("{fetched} {} read", noun(fetched))),
        "{read}"
    );
    // The result pop-up says the same; OK dismisses it at the host too.
    browser
        .wait_text("#result-title", "Salesforce users refreshed")
        .await;
    let said = browser
        .find("#result-message")
        .await
        .text()
        .await
        .expect("text");
    assert_eq!(
        said,
        format!("{fetched} {} read from Salesforce.", noun(fetched))
    );
    browser.click("#result-ok").await;
    wait_shown(&browser, "#result-dialog", false).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !world
        .api
        .get("/crm/salesforce/users/sync/result")
        .await
        .expect("result")["result"]
        .is_null()
    {
        assert!(Instant::now() < deadline, "OK did not dismiss the result");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = world.api.get("/crm/salesforce/users").await.expect("users");
    let count = listed["entries"].as_array().map_or(0, Vec::len) as u64;
    browser
        .wait_text("#user-pages", &format!("{count} {}", noun(count)))
        .await;

    let proposal = world
        .api
        .get("/crm/salesforce/associations/proposal")
        .await
        .expect("proposal");
    let matches = proposal["matches"].as_array().map_or(0, Vec::len);
    assert_eq!(matches, 2, "{proposal}");
    browser.click("#auto-associate").await;
    browser.wait_text("#proposal-matches", "1001").await;
    browser.wait_text("#proposal-matches", "1002").await;
    let unmatched = browser
        .find("#proposal-unmatched-title")
        .await
        .text()
        .await
        .expect("text");
    assert_plain("the unmatched title", &unmatched);
    browser.click("#proposal-ok").await;
    let filled = browser.wait_text("#assoc-result", "filled in").await;
    assert!(
        filled.starts_with("2 proposed associations filled in"),
        "{filled}"
    );
    browser.click("#save-associations").await;
    let saved = browser.wait_text("#assoc-result", "Saved").await;
    assert!(saved.contains("2 associations"), "{saved}");
    let list = world.api.get("/crm/salesforce/users").await.expect("users");
    let associated: Vec<&str> = list["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["state"] == "Associated")
        .filter_map(|e| e["extension"].as_str())
        .collect();
    assert_eq!(associated.len(), 2, "{list}");

    // Plugins: a file that is not WebAssembly is refused in plain words.
    browser.click("nav a[href='#plugins']").await;
    let not_wasm = world.dir.path().join("notes.wasm");
    std::fs::write(&not_wasm, b"these are notes, not a plugin").expect("write");
    browser
        .type_into("#plugin-file", &not_wasm.display().to_string())
        .await;
    browser.click("#install-plugin").await;
    let refused = browser
        .wait_text("#install-result", "not a WebAssembly component")
        .await;
    assert_plain("the refused file", &refused);
    for detail in ["magic", "0x"] {
        assert!(!refused.contains(detail), "{refused}");
    }

    // A new version that asks for more, with "Make it the active version"
    // left unchecked: it shows what it requests and stays inactive.
    let listing = world.api.get("/plugins").await.expect("plugins");
    let active_before = listing["plugins"][0]["active"].clone();
    let mut manifest = listing["plugins"][0]["manifest"].clone();
    let next = format!("{}-next", manifest["version"].as_str().expect("version"));
    manifest["version"] = json!(next);
    let metadata = "http://169.254.169.254";
    manifest["hosts"]
        .as_array_mut()
        .expect("hosts")
        .push(json!(metadata));
    let shipped = std::fs::read(e2e_tests::component("salesforce_plugin")).expect("plugin");
    let file = world.dir.path().join("salesforce-next.wasm");
    std::fs::write(&file, e2e_tests::with_manifest(&shipped, &manifest)).expect("write");
    let checkbox = browser.find("#plugin-activate").await;
    assert_eq!(
        checkbox.prop("checked").await.expect("checked").as_deref(),
        Some("false")
    );
    browser
        .type_into("#plugin-file", &file.display().to_string())
        .await;
    browser.click("#install-plugin").await;
    let installed = browser.wait_text("#install-result", "not active").await;
    assert!(
        installed.contains(&next) && installed.contains(metadata),
        "{installed}"
    );
    assert_plain("the install message", &installed);
    // What waits for a grant is said, and no Activate is offered for it.
    assert!(
        installed.contains(&format!("Not granted yet: {metadata}")),
        "{installed}"
    );
    assert!(
        b.find(Locator::Css("#activate-installed")).await.is_err(),
        "Activate offered for a version waiting for a grant"
    );
    browser
        .wait_text(&format!("tr[data-version=\"{next}\"]"), metadata)
        .await;
    let listing = world.api.get("/plugins").await.expect("plugins");
    assert_eq!(listing["plugins"][0]["active"], active_before);

    // Accessibility: a label for every control, focus in page order.
    let found = b.execute(ACCESSIBILITY, vec![]).await.expect("script");
    assert_eq!(found["unlabeled"], json!([]), "{found}");
    assert_eq!(found["unnamedButtons"], json!([]), "{found}");
    assert_eq!(found["tabindex"], json!([]), "{found}");

    // No horizontal overflow at common widths; a screenshot of each
    // section at 1280 px for review.
    for width in [800u32, 1920, 1280] {
        b.set_window_size(width, 1000).await.expect("resize");
        let sizes = b.execute(OVERFLOW, vec![]).await.expect("script");
        assert!(
            sizes["scroll"].as_u64() <= sizes["client"].as_u64(),
            "at {width} px the page is wider than the window: {sizes}"
        );
    }
    // Tall enough that a section's screenshot is not cut at the window.
    b.set_window_size(1280, 2400).await.expect("resize");
    for section in [
        "network",
        "crm",
        "call-logging",
        "users",
        "extensions",
        "plugins",
        "signed-in-agents",
        "dead-letters",
    ] {
        let shot = browser
            .screenshot_of(&format!("#{section}"), &format!("portal-guide-{section}"))
            .await;
        assert!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
            "{section}"
        );
    }

    // Disconnect asks first, then only Authorize applies.
    browser.click("nav a[href='#crm']").await;
    browser.click("#disconnect").await;
    confirm(&browser, &["settings and associations are kept"], true).await;
    browser.wait_text("#status", "Disconnected").await;
    wait_shown(&browser, "#disconnect", false).await;
    assert_eq!(
        browser.find("#authorize").await.text().await.expect("text"),
        "Authorize"
    );

    // An emptied Consumer Key is refused on the page: nothing is lost.
    browser
        .find("#setting-consumer-key")
        .await
        .clear()
        .await
        .expect("clear");
    browser.click("#save-settings").await;
    browser.wait_text("#error-consumer-key", "required").await;
    browser
        .wait_text("#settings-result", "Nothing was saved")
        .await;
    b.refresh().await.expect("reload");
    browser.wait_text("#status", "Disconnected").await;
    let key = browser.find("#setting-consumer-key").await;
    assert_eq!(
        key.prop("value").await.expect("value").as_deref(),
        Some(CONSUMER_KEY)
    );
    assert_eq!(setting(&world, "consumer-key").await["value"], CONSUMER_KEY);

    let violations = browser.csp_violations().await;
    assert!(violations.is_empty(), "{violations:#?}");
    let html = b.source().await.expect("source");
    assert!(!html.contains(CONSUMER_SECRET));
    browser.close().await;
}

/// A plugin's first version, installed with the checkbox off, stays
/// inactive until the administrator has seen what it requests
/// (`POST /api/plugins?activate=no`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_version_installed_unchecked_stays_inactive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = e2e_tests::start_host(dir.path(), e2e_tests::Options::default()).await;
    let api = e2e_tests::admin(&host);
    let browser = Browser::start().await;
    browser.log_in(&host.url(), &host.admin_token).await;

    let manifest_of = |bytes: &[u8]| {
        pbx_host::runtime::inspect::inspect(bytes)
            .map(|i| i.manifest)
            .expect("the shipped plugin inspects")
    };
    let shipped = std::fs::read(e2e_tests::component("salesforce_plugin")).expect("plugin");
    let mut manifest = serde_json::to_value(manifest_of(&shipped)).expect("manifest");
    let metadata = "http://169.254.169.254";
    manifest["hosts"]
        .as_array_mut()
        .expect("hosts")
        .push(json!(metadata));
    let file = dir.path().join("salesforce.wasm");
    std::fs::write(&file, e2e_tests::with_manifest(&shipped, &manifest)).expect("write");
    browser
        .type_into("#plugin-file", &file.display().to_string())
        .await;
    browser.click("#install-plugin").await;
    let installed = browser.wait_text("#install-result", "Installed").await;
    assert!(
        installed.contains("not active") && installed.contains(metadata),
        "{installed}"
    );
    let listing = api.get("/plugins").await.expect("plugins");
    assert_eq!(listing["plugins"][0]["active"], Value::Null, "{listing}");
    browser.close().await;
    host.shutdown().await;
}

/// The defect a new administrator hit: after Disconnect, an emptied
/// Consumer Key plus Save was refused, yet the stored key was gone after a
/// reload and the status had moved to "Not configured". The page refuses
/// it before sending: nothing stored changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emptied_consumer_key_loses_nothing() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    world
        .api
        .post("/crm/salesforce/disconnect", &json!({}))
        .await
        .expect("disconnect");
    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;
    wait_value(&browser, "#setting-consumer-key", CONSUMER_KEY).await;
    let key = browser.find("#setting-consumer-key").await;
    key.clear().await.expect("clear");
    browser.click("#save-settings").await;
    browser.wait_text("#settings-result", "Consumer Key").await;
    browser.client.refresh().await.expect("reload");
    // The stored key comes back into the form.
    wait_value(&browser, "#setting-consumer-key", CONSUMER_KEY).await;
    browser.close().await;
    assert_eq!(setting(&world, "consumer-key").await["value"], CONSUMER_KEY);
    assert_eq!(world.status().await["state"], "Disconnected");
}

/// The defect: adding an extension whose number exists replaced it
/// silently. The page shows what is there and replaces only on
/// confirmation; Cancel keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_extension_is_replaced_only_on_confirmation() {
    let world = World::start(Setup::default()).await;
    world
        .api
        .post(
            "/extensions",
            &json!({"number": "1001", "name": "Ada Lovelace", "email": "ada@example.org"}),
        )
        .await
        .expect("extension");
    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;
    browser.wait_text("#extension-rows", "Ada Lovelace").await;
    for (name, value) in [
        ("number", "1001"),
        ("name", "Bob"),
        ("email", "bob@example.org"),
    ] {
        browser
            .type_into(&format!("#extension-form input[name={name}]"), value)
            .await;
    }
    browser.click("#extension-form button[type=submit]").await;
    confirm(&browser, &["Ada Lovelace", "ada@example.org", "Bob"], false).await;
    browser.wait_text("#extension-result", "kept").await;
    let kept = extension(&world, "1001").await.expect("1001");
    assert_eq!(
        (kept["name"].as_str(), kept["email"].as_str()),
        (Some("Ada Lovelace"), Some("ada@example.org"))
    );
    browser.close().await;
}

/// Type `value` as the Homepage URL and click the Network section's Save.
async fn set_homepage(browser: &Browser, value: &str) {
    let input = browser.find("#homepage-url").await;
    input.clear().await.expect("clear");
    input.send_keys(value).await.expect("type");
    browser.click("#save-network").await;
}

/// Step 1 of the guide: the administrator sets the Homepage URL in the
/// Network section. What is not an origin is refused beside the field
/// (nothing is stored); what a CRM will object to is said beside it; the
/// Callback URL follows what is saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_sets_the_homepage_url_in_the_network_section() {
    let world = World::start(Setup::default()).await;
    let base = world.host.url();
    let browser = Browser::start().await;
    browser.log_in(&base, &world.host.admin_token).await;
    wait_value(&browser, "#homepage-url", &base).await;

    // A path: refused beside the field, nothing stored.
    set_homepage(&browser, "https://pbx.example.com/portal").await;
    let error = browser.wait_text("#homepage-error", "has a path").await;
    assert!(error.contains("e.g. https://pbx.example.com"), "{error}");
    browser
        .wait_text("#network-result", "Nothing was saved")
        .await;
    let stored = world.api.get("/network").await.expect("network");
    assert_eq!(stored["source"], "public-url", "{stored}");

    // Plain http to an IP address: saved, with both warnings beside it.
    set_homepage(&browser, "http://192.0.2.7:8080").await;
    browser.wait_text("#network-result", "Saved").await;
    let warned = browser
        .wait_text("#homepage-warnings", "192.0.2.7 is an IP address")
        .await;
    assert!(warned.contains("not https"), "{warned}");
    assert!(
        browser
            .find("#homepage-error")
            .await
            .text()
            .await
            .expect("text")
            .is_empty()
    );
    browser
        .wait_text(
            "#callback-url",
            "http://192.0.2.7:8080/crm/salesforce/oauth/callback",
        )
        .await;

    // The PBX's FQDN over https: no warning; the Callback URL follows; a
    // reload shows what the host keeps.
    set_homepage(&browser, "https://pbx.example.com").await;
    browser
        .wait_text(
            "#callback-url",
            "https://pbx.example.com/crm/salesforce/oauth/callback",
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while browser
        .client
        .find_all(Locator::Css("#homepage-warnings li"))
        .await
        .map_or(1, |l| l.len())
        > 0
    {
        assert!(Instant::now() < deadline, "the warnings stayed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.client.refresh().await.expect("reload");
    wait_value(&browser, "#homepage-url", "https://pbx.example.com").await;
    browser
        .wait_text("#homepage-source", "wins over the host's --public-url")
        .await;
    let stored = world.api.get("/network").await.expect("network");
    assert_eq!(stored["homepage_url"], "https://pbx.example.com");
    let violations = browser.csp_violations().await;
    assert!(violations.is_empty(), "{violations:#?}");
    browser.close().await;
}

/// The result pop-up of a user refresh is the host's: after a restart on
/// the same data directory a reload still shows it, until OK dismisses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_refresh_result_survives_a_host_restart_until_dismissed() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;
    browser.click("#sync-users").await;
    browser
        .wait_text("#result-title", "Salesforce users refreshed")
        .await;
    let message = browser
        .wait_text("#result-message", "read from Salesforce")
        .await;

    // The host restarts on the same data directory (a new port); the
    // portal session is in the store, so it still holds, and the pop-up is
    // back without anything clicked.
    let World {
        org,
        host,
        data_dir,
        ca_path,
        dir: _dir,
        ..
    } = world;
    host.shutdown().await;
    let options = e2e_tests::Options {
        grants: vec![format!("salesforce={}", org.base_url())],
        trust_ca: vec![ca_path],
        ..e2e_tests::Options::default()
    };
    let host = e2e_tests::start_host(&data_dir, options.clone()).await;
    browser
        .client
        .goto(&format!("{}/", host.url()))
        .await
        .expect("open the portal");
    browser
        .wait_text("#result-title", "Salesforce users refreshed")
        .await;
    assert_eq!(
        browser
            .wait_text("#result-message", "read from Salesforce")
            .await,
        message
    );
    browser.click("#result-ok").await;
    wait_shown(&browser, "#result-dialog", false).await;

    // Dismissed: a reload (and the API) no longer has it.
    let api = e2e_tests::admin(&host);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !api
        .get("/crm/salesforce/users/sync/result")
        .await
        .expect("result")["result"]
        .is_null()
    {
        assert!(Instant::now() < deadline, "OK did not dismiss the result");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.client.refresh().await.expect("reload");
    browser.wait_text("#status", "Connected").await;
    // Once the page has asked the host for the result, none is shown.
    browser.find("#result-dialog[data-checked]").await;
    assert!(!browser.shown("#result-dialog").await);
    browser.close().await;
    host.shutdown().await;
}
