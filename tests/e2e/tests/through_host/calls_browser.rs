//! Agent pages in a real browser (headless Chromium): a pop-up for
//! extension 1001 reaches the page of 1001 and no other; pages opened before
//! an agent page loaded are not shown again; a ringing call from a known
//! caller pops the caller's record up; an unknown caller's pop-up opens
//! Salesforce's new-Contact page with the number filled in; the portal
//! shows the waiting call logs.

use std::time::Duration;

use e2e_tests::browser::Browser;
use e2e_tests::org::{
    ADMIN_PASSWORD, ADMIN_USER, Setup, World, call_event, calls_world, send_event,
};
use fantoccini::wd::WindowHandle;
use pbx_host::capabilities::browser::Viewer;
use serde_json::{Map, Value, json};

/// Open the agent page of `extension` in a new window; its handle.
async fn open_agent(browser: &Browser, world: &World, extension: &str) -> WindowHandle {
    let b = &browser.client;
    let window = b.new_window(false).await.expect("a new window");
    b.switch_to_window(window.handle.clone())
        .await
        .expect("switch");
    b.goto(&format!("{}/agent/{extension}", world.host.url()))
        .await
        .expect("agent page");
    browser.wait_text("#connection", "Live").await;
    window.handle
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_up_reaches_the_right_agent_page_and_no_other() {
    let world = World::start(Setup::default()).await;
    for x in ["1001", "1002"] {
        world
            .api
            .post(
                "/extensions",
                &json!({"number": x, "name": format!("Agent {x}")}),
            )
            .await
            .expect("extension");
    }
    let recorder = &world.host.state.services.browser;
    // Opened before the pages load: never shown on them.
    recorder
        .record(
            "salesforce",
            "https://crm.example.org/old-1001",
            Viewer::Extension("1001".into()),
            None,
        )
        .expect("record");

    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;
    let b = &browser.client;
    let portal = b.window().await.expect("portal");
    let page_1001 = open_agent(&browser, &world, "1001").await;
    let page_1002 = open_agent(&browser, &world, "1002").await;

    recorder
        .record(
            "salesforce",
            "https://crm.example.org/for-1001",
            Viewer::Extension("1001".into()),
            None,
        )
        .expect("record");
    recorder
        .record(
            "salesforce",
            "https://crm.example.org/for-admin",
            Viewer::Administrator,
            None,
        )
        .expect("record");

    b.switch_to_window(page_1001.clone()).await.expect("switch");
    let urls = browser.wait_popup_link("for-1001").await;
    assert_eq!(urls, vec!["https://crm.example.org/for-1001".to_string()]);
    let latest = browser.wait_text("#latest", "for-1001").await;
    assert!(latest.contains("https://crm.example.org/for-1001"));
    let time = browser
        .find("#popups li.popup time")
        .await
        .text()
        .await
        .unwrap_or_default();
    assert!(!time.trim().is_empty(), "each pop-up shows its time");

    b.switch_to_window(page_1002.clone()).await.expect("switch");
    // Give a stray event every chance to arrive.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(
        browser.popup_links().await.is_empty(),
        "1002 saw another agent's pop-up"
    );

    // Now one for 1002, and a reload of 1001 shows nothing old.
    recorder
        .record(
            "salesforce",
            "https://crm.example.org/for-1002",
            Viewer::Extension("1002".into()),
            None,
        )
        .expect("record");
    assert_eq!(
        browser.wait_popup_link("for-1002").await,
        vec!["https://crm.example.org/for-1002".to_string()]
    );
    b.switch_to_window(page_1001).await.expect("switch");
    assert_eq!(
        browser.popup_links().await.len(),
        1,
        "1001 saw 1002's pop-up"
    );
    b.refresh().await.expect("reload");
    browser.wait_text("#connection", "Live").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        browser.popup_links().await.is_empty(),
        "a reload shows no old pop-ups"
    );

    // window.open opened a tab per pop-up (2), beside portal and the two pages.
    let windows = b.windows().await.expect("windows");
    assert!(windows.len() >= 3, "{windows:?}");
    b.switch_to_window(portal).await.expect("switch");
    browser.screenshot("calls-agent-pages").await;

    // Without a login there is no agent page.
    let anonymous = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let page = anonymous
        .get(format!("{}/agent/1001", world.host.url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(page.status().as_u16(), 303, "redirect to the login");
    let events = anonymous
        .get(format!("{}/agent/1001/events", world.host.url()))
        .send()
        .await
        .expect("answer");
    assert_eq!(events.status().as_u16(), 401);
    browser.close().await;
}

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ringing_call_pops_the_caller_up_on_the_agents_page_only() {
    let world = calls_world(Setup::default()).await;
    let contact = world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Popup", "Phone": "+1 (212) 555-0170"})),
        )
        .expect("contact");
    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;
    let b = &browser.client;
    let page_1001 = open_agent(&browser, &world, "1001").await;
    let page_1002 = open_agent(&browser, &world, "1002").await;

    let (status, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event(
            "pop-1",
            "ringing",
            "212-555-0170",
            "1001",
            1_768_478_400_000,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    b.switch_to_window(page_1001).await.expect("switch");
    let urls = browser.wait_popup_link(&contact).await;
    assert_eq!(urls.len(), 1, "{urls:?}");
    b.switch_to_window(page_1002).await.expect("switch");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(browser.popup_links().await.is_empty());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_callers_pop_up_opens_a_new_contact_with_the_number() {
    let world = calls_world(Setup::default()).await;
    let contacts_before = world.org.contacts().len();
    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;
    let b = &browser.client;
    open_agent(&browser, &world, "1001").await;

    let (status, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event(
            "pop-unknown",
            "ringing",
            "212-555-0181",
            "1001",
            1_768_478_400_000,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The agent page lists the new-record page, pre-filled with the number.
    let urls = browser.wait_popup_link("/lightning/o/Contact/new").await;
    assert_eq!(urls.len(), 1, "{urls:?}");
    assert!(
        urls[0].starts_with(&world.org.base_url())
            && urls[0].ends_with("defaultFieldValues=Phone=%2B12125550181"),
        "{urls:?}"
    );
    // Followed in the browser: Salesforce asks the agent to log in, then
    // shows the new Contact with the caller's number filled in.
    b.goto(&urls[0]).await.expect("follow the pop-up");
    browser
        .type_into("#login_form input[name=username]", ADMIN_USER)
        .await;
    browser
        .type_into("#login_form input[name=password]", ADMIN_PASSWORD)
        .await;
    browser.click("#Login").await;
    browser.wait_text("#name", "New Contact").await;
    let phone = browser.wait_text("#Phone", "+12125550181").await;
    assert_eq!(phone, "+12125550181");
    assert_eq!(
        world.org.contacts().len(),
        contacts_before,
        "the page only pre-fills; the agent saves"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_shows_the_waiting_call_logs() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    world
        .api
        .post("/calls/run-pending", &json!({}))
        .await
        .expect("run-pending");
    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;
    // The existing status elements still work beside the new line.
    browser.find("#status").await;
    browser.find("#callback-url").await;
    let line = browser.wait_text("#call-logs", "Call logs waiting: ").await;
    assert!(line.starts_with("Call logs waiting: "), "{line}");
    browser.close().await;
}
