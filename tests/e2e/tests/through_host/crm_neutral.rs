//! The host knows no CRM: a probe CRM plugin (not Salesforce) describes its
//! own settings, and the CLI and the portal configure it from that
//! description alone, with no Salesforce word anywhere on the way.

use e2e_tests::browser::Browser;
use e2e_tests::{Options, admin, install, pbx_at, start_host};
use pbx_host::cli::AdminClient;
use pbx_host::server::RunningHost;

/// What must not show up when the CRM is not Salesforce.
const SALESFORCE_WORDS: &[&str] = &["Salesforce", "salesforce", "Consumer", "consumer-"];

fn assert_neutral(what: &str, text: &str) {
    for word in SALESFORCE_WORDS {
        assert!(!text.contains(word), "{what} mentions {word:?}: {text}");
    }
}

/// A host whose only CRM plugin is the probe (built against 0.2.0).
async fn probe_crm_host() -> (tempfile::TempDir, RunningHost, AdminClient) {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    install(&api, "fixture_probe_v2")
        .await
        .expect("the probe installs");
    (dir, host, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_crm_is_configured_from_the_cli_by_its_own_description() {
    let (dir, host, api) = probe_crm_host().await;
    let data = Some(dir.path());
    let cli =
        |args: &[&str], stdin: &str| tokio::task::block_in_place(|| pbx_at(data, args, stdin));

    // With one CRM plugin installed, `crm` commands need no --plugin.
    let (ok, out, err) = cli(&["crm", "describe"], "");
    assert!(ok, "{err}");
    assert!(out.starts_with("Probe"), "{out}");
    assert!(out.contains("--account VALUE"), "{out}");
    assert!(out.contains("--api-token-stdin"), "{out}");
    assert!(out.contains("one of: eu, us"), "{out}");
    assert_neutral("crm describe", &out);

    let (ok, out, err) = cli(&["crm", "callback-url"], "");
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("{}/crm/probe-v2/oauth/callback", host.url())
    );

    // A secret on the command line is refused before anything is sent.
    let (ok, _, err) = cli(&["crm", "settings", "set", "api-token=t0ken"], "");
    assert!(!ok);
    assert!(err.contains("API token is a secret"), "{err}");
    assert!(err.contains("--secret-stdin api-token"), "{err}");
    assert_neutral("the refusal", &err);
    let (ok, _, err) = cli(&["crm", "configure", "--api-token", "t0ken"], "");
    assert!(!ok, "configure refuses it too");
    assert!(err.contains("API token is a secret"), "{err}");
    let stored = api.get("/crm/probe-v2/settings").await.expect("settings");
    assert!(
        stored["settings"]
            .as_array()
            .is_some_and(|s| s.iter().all(|v| v["is_set"] == false)),
        "a refused save stores nothing: {stored}"
    );

    // `configure` takes one flag per described setting; the secret on stdin.
    let (ok, out, err) = cli(
        &[
            "crm",
            "configure",
            "--account",
            "acme",
            "--region",
            "eu",
            "--api-token-stdin",
        ],
        "t0ken-from-stdin\n",
    );
    assert!(ok, "{err}");
    assert!(out.contains("Saved"), "{out}");
    let (ok, out, err) = cli(&["crm", "settings", "list"], "");
    assert!(ok, "{err}");
    assert!(out.contains("acme"), "{out}");
    assert!(out.contains("API token") && out.contains("(set)"), "{out}");
    assert!(
        !out.contains("t0ken-from-stdin"),
        "a secret is never shown: {out}"
    );
    assert_neutral("crm settings list", &out);

    // The generic form, with the secret from stdin.
    let (ok, _, err) = cli(
        &[
            "crm",
            "settings",
            "set",
            "region=us",
            "--secret-stdin",
            "api-token",
        ],
        "another-token\n",
    );
    assert!(ok, "{err}");
    let (ok, out, err) = cli(&["crm", "status"], "");
    assert!(ok, "{err}");
    assert!(out.contains("Connected"), "{out}");
    assert!(out.contains("acme"), "{out}");
    assert_neutral("crm status", &out);
    let stored = api.get("/crm/probe-v2/settings").await.expect("settings");
    let region = stored["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|v| v["key"] == "region"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(region["value"], "us");
    assert!(!stored.to_string().contains("another-token"));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_takes_its_wording_and_form_from_the_plugin() {
    let (_dir, host, api) = probe_crm_host().await;
    let browser = Browser::start().await;
    browser.log_in(&host.url(), &host.admin_token).await;

    browser.wait_text("#crm-name", "Probe").await;
    browser
        .wait_text("#callback-url", "/crm/probe-v2/oauth/callback")
        .await;
    browser.wait_text("#settings-form", "Probe account *").await;
    browser.wait_text("#settings-form", "API token *").await;
    browser.wait_text("#users h2", "Probe users").await;
    browser.type_into("#setting-account", "acme").await;
    browser
        .type_into("#setting-api-token", "portal-token")
        .await;
    browser
        .find("#setting-region")
        .await
        .select_by_value("eu")
        .await
        .expect("choose a region");
    browser.click("#save-settings").await;
    // Connected once saved: no authorization page for this CRM.
    browser.wait_text("#settings-result", "Saved.").await;
    browser.wait_text("#status", "Connected").await;
    browser.wait_text("#account", "— acme").await;

    let shown = browser
        .find("body")
        .await
        .text()
        .await
        .expect("the page's text");
    assert_neutral("the portal's text", &shown);
    let source = browser.client.source().await.expect("the page's HTML");
    assert_neutral("the portal's HTML and script", &source);
    browser.screenshot("portal-probe-crm").await;

    // After a reload the form shows what is stored, and of the secret only
    // that it is set.
    browser.client.refresh().await.expect("reload");
    browser.wait_text("#crm-name", "Probe").await;
    browser.wait_text("#status", "Connected").await;
    let account = browser.find("#setting-account").await;
    assert_eq!(
        account.prop("value").await.expect("value").as_deref(),
        Some("acme")
    );
    let secret = browser.find("#setting-api-token").await;
    assert_eq!(
        secret.prop("value").await.expect("value").as_deref(),
        Some("")
    );
    let placeholder = secret
        .attr("placeholder")
        .await
        .expect("placeholder")
        .unwrap_or_default();
    assert!(placeholder.contains("stored"), "{placeholder}");
    let source = browser.client.source().await.expect("the page's HTML");
    assert!(
        !source.contains("portal-token"),
        "the secret is not in the page"
    );
    browser.close().await;

    let stored = api.get("/crm/probe-v2/settings").await.expect("settings");
    assert!(stored.to_string().contains("acme"), "{stored}");
    let token = stored["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|v| v["key"] == "api-token"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(token["is_set"], true);
    host.shutdown().await;
}
