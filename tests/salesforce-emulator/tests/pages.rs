//! Record pages (`/lightning/r/{Object}/{id}/view`), where a CRM pop-up
//! lands: only for a browser logged in to the org, every value escaped.

mod common;

use common::*;
use salesforce_emulator::{EmulatorConfig, Seed};

fn seed() -> Seed {
    Seed::from_json(
        r#"{"users": [{"Username": "admin@example.org", "FirstName": "Admin", "LastName": "User",
                       "Email": "admin@example.org", "password": "pw"}],
            "accounts": [{"Id": "0015g0000000001", "Name": "Globex <b>&</b> Sons", "Phone": "+1 212 555 0100",
                          "Type": "Customer - Direct", "BillingCity": "Springfield"}],
            "contacts": [{"FirstName": "Miles", "LastName": "O'Brien<script>", "Phone": "(212) 555-0101",
                          "Email": "miles@globex.example.com", "AccountId": "0015g0000000001"}],
            "leads": [{"FirstName": "Lily", "LastName": "Kowalski", "Company": "Kowalski Bakery",
                       "Phone": "212.555.0120", "Email": "lily@bakery.example.com"}]}"#,
    )
    .unwrap()
}

fn id_of(records: &[serde_json::Value], i: usize) -> String {
    records[i]["Id"].as_str().unwrap().to_string()
}

async fn logged_in(emu: &salesforce_emulator::Emulator, client: &reqwest::Client) -> Browser {
    let mut browser = Browser::new(emu, client);
    let resp = browser
        .post_form(
            "/login",
            &[
                ("username", "admin@example.org"),
                ("password", "pw"),
                ("startURL", "/"),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302, "logged in");
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_browser_sees_contacts_leads_and_accounts_escaped() {
    let (emu, client) = start(EmulatorConfig {
        seed: Some(seed()),
        ..EmulatorConfig::default()
    })
    .await;
    let contact = id_of(&emu.contacts(), 0);
    let lead = id_of(&emu.leads(), 0);
    let account = id_of(&emu.accounts(), 0);
    let mut browser = logged_in(&emu, &client).await;

    let resp = browser
        .get(&format!("/lightning/r/Contact/{contact}/view"))
        .await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(
        html.contains("<h1 id=\"name\">Miles O&#39;Brien&lt;script&gt;</h1>"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    assert!(html.contains("(212) 555-0101"), "{html}");
    assert!(html.contains("miles@globex.example.com"), "{html}");
    assert!(
        html.contains(&format!(
            "<a href=\"/lightning/r/Account/{account}/view\">Globex &lt;b&gt;&amp;&lt;/b&gt; Sons</a>"
        )),
        "the contact's account, by name: {html}"
    );
    let cookie = browser.cookie.clone().unwrap();
    let sid = cookie.trim_start_matches("sid=");
    assert!(!html.contains(sid), "no session in the page");
    assert!(!html.contains("pw<"), "no password in the page");

    // The 15-character form of the id opens the same record.
    let html = browser
        .get(&format!("/lightning/r/Lead/{}/view", &lead[..15]))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<h1 id=\"name\">Lily Kowalski</h1>"),
        "{html}"
    );
    assert!(html.contains("Kowalski Bakery"), "{html}");
    assert!(html.contains("212.555.0120"), "{html}");

    let html = browser
        .get(&format!("/lightning/r/account/{account}/view"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<h1 id=\"name\">Globex &lt;b&gt;&amp;&lt;/b&gt; Sons</h1>"),
        "{html}"
    );
    assert!(html.contains("+1 212 555 0100"), "{html}");
    assert!(html.contains("Springfield"), "{html}");

    // An unknown record, a record under another object's page, an object
    // without a page: Salesforce's "URL No Longer Exists".
    let user = id_of(&emu.users(), 0);
    for path in [
        format!("/lightning/r/Contact/{}/view", &lead),
        format!("/lightning/r/Contact/{}/view", "0035g00000000ZZ"),
        format!("/lightning/r/User/{user}/view"),
        format!("/lightning/r/Contact/{contact}/edit"),
    ] {
        let resp = browser.get(&path).await;
        assert_eq!(resp.status(), 404, "{path}");
        assert!(
            resp.text().await.unwrap().contains("URL No Longer Exists"),
            "{path}"
        );
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_browser_gets_the_login_form_that_comes_back_to_the_record() {
    let (emu, client) = start(EmulatorConfig {
        seed: Some(seed()),
        ..EmulatorConfig::default()
    })
    .await;
    let contact = id_of(&emu.contacts(), 0);
    let path = format!("/lightning/r/Contact/{contact}/view");
    let mut browser = Browser::new(&emu, &client);
    let resp = browser.get(&path).await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("id=\"login_form\""), "{html}");
    assert!(!html.contains("miles@globex.example.com"), "{html}");
    assert_eq!(
        form_field(&html, "startURL").as_deref(),
        Some(path.as_str())
    );

    // A forged cookie is no session.
    browser.cookie = Some("sid=forged".into());
    let html = browser.get(&path).await.text().await.unwrap();
    assert!(!html.contains("miles@globex.example.com"), "{html}");

    browser.cookie = None;
    let resp = browser
        .post_form(
            "/login",
            &[
                ("username", "admin@example.org"),
                ("password", "pw"),
                ("startURL", &path),
            ],
        )
        .await;
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], path.as_str());
    let html = browser.get(&path).await.text().await.unwrap();
    assert!(html.contains("miles@globex.example.com"), "{html}");
    emu.shutdown().await;
}

/// An unknown caller's pop-up opens the new-record page with the number
/// filled in (`defaultFieldValues`), escaped, for a logged-in browser only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_record_page_shows_the_prefilled_number() {
    let (emu, client) = start(EmulatorConfig {
        seed: Some(seed()),
        ..EmulatorConfig::default()
    })
    .await;
    let path = "/lightning/o/Contact/new?defaultFieldValues=Phone=%2B12125550999,LastName=%3Cb%3E";
    let mut anonymous = Browser::new(&emu, &client);
    let html = anonymous.get(path).await.text().await.unwrap();
    assert!(html.contains("id=\"login_form\""), "{html}");
    assert_eq!(form_field(&html, "startURL").as_deref(), Some(path));

    let mut browser = logged_in(&emu, &client).await;
    let resp = browser.get(path).await;
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    assert!(html.contains("<h1 id=\"name\">New Contact</h1>"), "{html}");
    assert!(
        html.contains("<td id=\"Phone\">+12125550999</td>"),
        "{html}"
    );
    assert!(
        html.contains("<td id=\"LastName\">&lt;b&gt;</td>"),
        "{html}"
    );

    let html = browser
        .get("/lightning/o/Lead/new")
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("New Lead"), "{html}");
    let resp = browser.get("/lightning/o/User/new").await;
    assert_eq!(resp.status(), 404);
    emu.shutdown().await;
}
