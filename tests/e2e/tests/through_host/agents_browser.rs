//! Agents in a real browser (headless Chromium), each in their own browser
//! session: two agents sign in on the sign-in page (with their extension's
//! password, or through the emulator's Salesforce login and consent pages
//! as two different CRM users) and each sees only their own pop-ups; one
//! is refused on the other's page.

use e2e_tests::browser::Browser;
use e2e_tests::org::{ADMIN_PASSWORD, Setup, World, calls_world, user_id};
use e2e_tests::{admin, start_host};
use pbx_host::capabilities::browser::Viewer;
use pbx_host::server::RunningHost;
use serde_json::json;

/// Open `/agent/{extension}` signed out: the sign-in page comes, with the
/// extension filled in; sign in with `password`; the agent page goes live.
pub async fn sign_in_with_password(
    browser: &Browser,
    host: &RunningHost,
    extension: &str,
    password: &str,
) {
    browser
        .client
        .goto(&format!("{}/agent/{extension}", host.url()))
        .await
        .expect("agent page");
    browser.type_into("#password", password).await;
    let filled = browser
        .find("#extension")
        .await
        .prop("value")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert_eq!(
        filled, extension,
        "the sign-in page knows the page asked for"
    );
    browser.click("#sign-in").await;
    browser.wait_text("#connection", "Live").await;
    let url = browser.client.current_url().await.expect("url");
    assert_eq!(
        url.path(),
        format!("/agent/{extension}"),
        "back to the page asked for"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_with_passwords_each_see_only_their_own_pop_ups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Default::default()).await;
    let api = admin(&host);
    for x in ["1001", "1002"] {
        api.post(
            "/extensions",
            &json!({"number": x, "name": format!("Agent {x}")}),
        )
        .await
        .expect("extension");
        api.put(
            &format!("/extensions/{x}/password"),
            &json!({"password": format!("password-of-{x}")}),
        )
        .await
        .expect("password");
    }
    let a = Browser::start().await;
    let b = Browser::start().await;
    sign_in_with_password(&a, &host, "1001", "password-of-1001").await;
    sign_in_with_password(&b, &host, "1002", "password-of-1002").await;
    a.wait_text("#association", "No CRM").await;

    let recorder = &host.state.services.browser;
    recorder
        .record(
            "salesforce",
            "https://crm.example.org/for-1002",
            Viewer::Extension("1002".into()),
            None,
        )
        .expect("record");
    recorder
        .record(
            "salesforce",
            "https://crm.example.org/for-1001",
            Viewer::Extension("1001".into()),
            None,
        )
        .expect("record");
    assert_eq!(
        a.wait_popup_link("for-1001").await,
        vec!["https://crm.example.org/for-1001".to_string()]
    );
    assert_eq!(
        b.wait_popup_link("for-1002").await,
        vec!["https://crm.example.org/for-1002".to_string()]
    );
    a.screenshot("agents-password-1001").await;

    // A on B's page: refused, pointed back to their own.
    a.client
        .goto(&format!("{}/agent/1002", host.url()))
        .await
        .expect("page");
    a.wait_text("#detail", "signed in for extension 1001").await;

    // Signing out ends the session: the page asks to sign in again.
    b.click("#sign-out").await;
    b.find("#password").await;
    b.client
        .goto(&format!("{}/agent/1002", host.url()))
        .await
        .expect("page");
    b.find("#password-sign-in").await;
    a.close().await;
    b.close().await;
    host.shutdown().await;
}

/// Sign in on the agent page with Salesforce, through the emulator's
/// login and consent pages.
async fn sign_in_with_salesforce(
    browser: &Browser,
    world: &World,
    extension: &str,
    username: &str,
) {
    browser
        .client
        .goto(&format!("{}/agent/{extension}", world.host.url()))
        .await
        .expect("agent page");
    browser.click("button.crm[data-plugin=salesforce]").await;
    browser
        .type_into("#login_form input[name=username]", username)
        .await;
    browser
        .type_into("#login_form input[name=password]", ADMIN_PASSWORD)
        .await;
    browser.click("#Login").await;
    browser.click("#allow").await;
    browser.wait_text("#connection", "Live").await;
    let url = browser.client.current_url().await.expect("url");
    assert_eq!(url.path(), format!("/agent/{extension}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_salesforce_users_sign_in_and_each_sees_only_their_own_pop_ups() {
    // 1001 is admin@example.org's, 1002 user1@example.org's, 1003 nobody's.
    let world = calls_world(Setup::default()).await;
    let a = Browser::start().await;
    let b = Browser::start().await;
    sign_in_with_salesforce(&a, &world, "1001", "admin@example.org").await;
    sign_in_with_salesforce(&b, &world, "1002", "user1@example.org").await;

    let recorder = &world.host.state.services.browser;
    recorder
        .record(
            "salesforce",
            "https://crm.example.org/for-1002",
            Viewer::Extension("1002".into()),
            None,
        )
        .expect("record");
    recorder
        .record(
            "salesforce",
            "https://crm.example.org/for-1001",
            Viewer::Extension("1001".into()),
            None,
        )
        .expect("record");
    assert_eq!(a.wait_popup_link("for-1001").await.len(), 1);
    assert_eq!(b.wait_popup_link("for-1002").await.len(), 1);

    // The sessions are listed as CRM sign-ins of those users.
    let sessions = world.api.get("/sessions").await.expect("sessions");
    let user1 = user_id(&world, "user1@example.org");
    assert!(
        sessions["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["extension"] == "1002"
                && s["how"] == "crm"
                && s["crm_user"] == user1.as_str()),
        "{sessions}"
    );

    // A is refused on B's stream and on dialing from B's extension.
    let page = a.client.clone();
    let refused: serde_json::Value = page
        .execute_async(
            r#"const done = arguments[arguments.length - 1];
               Promise.all([
                 fetch("/agent/1002/events").then(r => r.status),
                 fetch("/agent/1002/dial", {method: "POST", headers: {"Content-Type": "application/json"},
                   body: JSON.stringify({number: "+14155550100"})}).then(r => r.status),
               ]).then(done);"#,
            vec![],
        )
        .await
        .expect("script");
    assert_eq!(refused, json!([403, 403]));

    // Saving associations without user1 signs user1 out.
    e2e_tests::org::associate(&world, &[("admin@example.org", "1001")]).await;
    b.client
        .goto(&format!("{}/agent/1002", world.host.url()))
        .await
        .expect("page");
    b.find("#password-sign-in").await;

    // A user with no extension is told whom to ask.
    let c = Browser::start().await;
    c.client
        .goto(&format!("{}/agent/sign-in", world.host.url()))
        .await
        .expect("sign-in page");
    c.click("button.crm[data-plugin=salesforce]").await;
    c.type_into("#login_form input[name=username]", "user1@example.org")
        .await;
    c.type_into("#login_form input[name=password]", ADMIN_PASSWORD)
        .await;
    c.click("#Login").await;
    c.click("#allow").await;
    c.wait_text("#detail", "Ask your administrator to associate")
        .await;
    a.close().await;
    b.close().await;
    c.close().await;
}
