//! The agent page's after-call work and record pick, and the portal's
//! dispositions, in a real browser (headless Chromium) against the
//! emulated org: an agent signs in, writes notes and picks a disposition
//! for a logged call, and the call's one Task has them; the administrator
//! edits the list in the portal (a refused list shows its error and
//! changes nothing); two Contacts share the caller's number, the page
//! lists both, the agent picks one, the Task goes to it and the next call
//! from the number pops it up directly.

use std::time::{Duration, Instant};

use e2e_tests::api_call;
use e2e_tests::browser::Browser;
use e2e_tests::org::{Setup, World, calls_world, drain, send_call, tasks_of};
use fantoccini::Locator;
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::agents_browser::sign_in_with_password;
use crate::popups::{ring, two_contacts};

const AT: u64 = 1_768_478_400_000;
const PASSWORD_1001: &str = "hunter2-for-1001";

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

async fn set_password(world: &World, extension: &str, password: &str) {
    world
        .api
        .put(
            &format!("/extensions/{extension}/password"),
            &json!({"password": password}),
        )
        .await
        .expect("password set");
}

async fn set_dispositions(world: &World, list: &[&str]) {
    let (status, body) = api_call(
        &world.host,
        Method::PUT,
        "/call-dispositions",
        Some(&json!({ "dispositions": list })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

async fn dispositions(world: &World) -> Value {
    let (status, body) = api_call(&world.host, Method::GET, "/call-dispositions", None).await;
    assert_eq!(status, 200, "{body}");
    body["dispositions"].clone()
}

/// An element's `value` property (a form field's current value).
async fn value_of(browser: &Browser, css: &str) -> String {
    browser
        .find(css)
        .await
        .prop("value")
        .await
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Wait (20 s at most) until the form field's value is `want`.
async fn wait_value(browser: &Browser, css: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let value = value_of(browser, css).await;
        if value == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never had the value {want:?} (last: {value:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Wait (20 s at most) until `css` matches `count` elements; their texts.
async fn wait_count(browser: &Browser, css: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = browser
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default();
        if found.len() == count {
            let mut texts = Vec::new();
            for e in found {
                texts.push(e.text().await.unwrap_or_default());
            }
            return texts;
        }
        assert!(
            Instant::now() < deadline,
            "{css} never matched {count} elements (last: {})",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The one Task of `call_id`.
fn the_task(world: &World, call_id: &str) -> Value {
    let tasks = tasks_of(world, call_id);
    assert_eq!(tasks.len(), 1, "one Task for {call_id}: {tasks:?}");
    tasks[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_saves_notes_and_a_disposition_on_the_page_to_the_calls_task() {
    let world = calls_world(Setup::default()).await;
    let number = "+1 212 555 0191";
    world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Pager", "Phone": number})),
        )
        .expect("contact");
    set_dispositions(&world, &["Left message", "Sale"]).await;
    set_password(&world, "1001", PASSWORD_1001).await;
    send_call(&world, "acw-b1", number, "1001", AT).await;
    drain(&world.api, Duration::from_secs(30)).await;
    let logged = the_task(&world, "acw-b1");

    let browser = Browser::start().await;
    sign_in_with_password(&browser, &world.host, "1001", PASSWORD_1001).await;
    let row = "#calls li.call[data-call-id='acw-b1']";
    let select = format!("{row} select.work-disposition");
    let notes = format!("{row} textarea.work-notes");
    let save = format!("{row} button.save-work");
    let result = format!("{row} .work-result");
    let options = browser.wait_text(&select, "Left message").await;
    assert!(options.contains("Sale"), "{options}");

    // Nothing to save: the page says what to do, the Task is untouched.
    browser.click(&save).await;
    browser
        .wait_text(&result, "write notes or pick a disposition")
        .await;
    assert_eq!(the_task(&world, "acw-b1"), logged);

    browser
        .type_into(&notes, "Wants a quote\nCall back Monday")
        .await;
    browser
        .find(&select)
        .await
        .select_by_value("Sale")
        .await
        .expect("pick Sale");
    browser.click(&save).await;
    let said = browser.wait_text(&result, "Saved at").await;
    assert!(said.contains("(Sale)"), "{said}");
    assert!(said.contains("updated"), "the plugin's words: {said}");
    browser.screenshot("agent-after-call-work").await;

    let task = the_task(&world, "acw-b1");
    assert_eq!(task["Id"], logged["Id"], "the same Task, updated");
    assert_eq!(task["CallDisposition"], "Sale", "{task}");
    let description = task["Description"].as_str().unwrap_or_default();
    assert!(
        description.ends_with("\n\nAgent notes:\nWants a quote\nCall back Monday"),
        "{description}"
    );

    // A reload shows what was saved in the form.
    browser.client.refresh().await.expect("reload");
    browser.wait_text("#connection", "Live").await;
    wait_value(&browser, &notes, "Wants a quote\nCall back Monday").await;
    assert_eq!(value_of(&browser, &select).await, "Sale");
    assert!(
        browser.csp_violations().await.is_empty(),
        "the page keeps its Content-Security-Policy"
    );
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_edits_the_dispositions_in_the_portal() {
    let world = World::start(Setup::default()).await;
    let browser = Browser::start().await;
    browser
        .log_in(&world.host.url(), &world.host.admin_token)
        .await;
    browser.click("nav a[href='#call-dispositions']").await;
    wait_value(&browser, "#dispositions", "").await;

    // A duplicate: the error at the field, nothing stored.
    browser
        .type_into("#dispositions", "Left message\nSale\nsale")
        .await;
    browser.click("#save-dispositions").await;
    let error = browser.wait_text("#dispositions-error", "twice").await;
    assert!(error.contains("keep one"), "{error}");
    let invalid = browser
        .find("#dispositions")
        .await
        .attr("aria-invalid")
        .await
        .ok()
        .flatten();
    assert_eq!(invalid.as_deref(), Some("true"));
    assert_eq!(dispositions(&world).await, json!([]), "nothing stored");

    // Fixed: blank lines dropped, names trimmed, saved.
    browser
        .find("#dispositions")
        .await
        .clear()
        .await
        .expect("clear");
    browser
        .type_into("#dispositions", " Left message \n\nSale\nCall back")
        .await;
    browser.click("#save-dispositions").await;
    browser
        .wait_text("#dispositions-result", "Saved 3 dispositions")
        .await;
    assert_eq!(
        browser
            .find("#dispositions-error")
            .await
            .text()
            .await
            .unwrap_or_default(),
        "",
        "the error is gone"
    );
    assert_eq!(
        dispositions(&world).await,
        json!(["Left message", "Sale", "Call back"])
    );
    browser.screenshot("portal-call-dispositions").await;

    // What the portal shows after a reload is the stored list.
    browser.client.refresh().await.expect("reload");
    browser.find("#status").await;
    wait_value(&browser, "#dispositions", "Left message\nSale\nCall back").await;
    assert!(browser.csp_violations().await.is_empty());
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_picks_one_of_two_matching_contacts_on_the_page() {
    let world = calls_world(Setup::default()).await;
    let (first, second) = two_contacts(&world);
    set_password(&world, "1001", PASSWORD_1001).await;
    let browser = Browser::start().await;
    sign_in_with_password(&browser, &world.host, "1001", PASSWORD_1001).await;

    ring(&world, "pick-1", "ringing").await;
    let buttons = "#latest ul.offered button.pick";
    wait_count(&browser, buttons, 2).await;
    let label = |id: &str| {
        let css = format!("{buttons}[data-record-id='{id}']");
        let browser = &browser;
        async move { browser.find(&css).await.text().await.unwrap_or_default() }
    };
    let ann = label(&first).await;
    assert!(
        ann.contains("Ann") && ann.contains("One") && ann.contains("Contact"),
        "{ann}"
    );
    assert!(!ann.contains("Globex"), "Ann has no Account: {ann}");
    let bea = label(&second).await;
    for part in ["Bea", "Two", "Contact", "Globex"] {
        assert!(bea.contains(part), "{part} missing: {bea}");
    }
    browser.screenshot("agent-records-offered").await;

    browser
        .click(&format!("{buttons}[data-record-id='{second}']"))
        .await;
    browser.wait_text("#latest .choice-result", "Chosen").await;
    let chosen = browser
        .find("#latest .choice-result a.chosen")
        .await
        .attr("href")
        .await
        .ok()
        .flatten()
        .unwrap_or_default();
    assert!(
        chosen.ends_with(&format!("/Contact/{second}/view")),
        "{chosen}"
    );
    for button in browser
        .client
        .find_all(Locator::Css(buttons))
        .await
        .expect("buttons")
    {
        assert!(!button.is_enabled().await.expect("enabled?"), "picked once");
    }

    ring(&world, "pick-1", "answered").await;
    ring(&world, "pick-1", "ended").await;
    drain(&world.api, Duration::from_secs(30)).await;
    assert_eq!(the_task(&world, "pick-1")["WhoId"], json!(second));

    // The next call from the number pops the chosen Contact up directly.
    ring(&world, "pick-2", "ringing").await;
    let open = "#latest a.open";
    let deadline = Instant::now() + Duration::from_secs(20);
    let href = loop {
        let href = match browser.client.find(Locator::Css(open)).await {
            Ok(a) => a.attr("href").await.ok().flatten().unwrap_or_default(),
            Err(_) => String::new(),
        };
        if href.contains(&second) {
            break href;
        }
        assert!(
            Instant::now() < deadline,
            "the second call never popped up {second} (last: {href:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(href.ends_with(&format!("/Contact/{second}/view")), "{href}");
    assert!(
        browser
            .client
            .find_all(Locator::Css("#latest ul.offered"))
            .await
            .expect("list")
            .is_empty(),
        "no second offer"
    );
    browser.close().await;
}
