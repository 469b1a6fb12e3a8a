//! Each CRM its own page: `/crm/{plugin}` serves the portal with that
//! plugin chosen, for the administrator only (as `/`; the login returns to
//! it, and to no other address); the portal lists the active CRM plugins
//! by their manifest's name, each linking to its page, and each page shows
//! its own plugin's settings and status.

use e2e_tests::browser::Browser;
use e2e_tests::{Options, admin, install, start_host};
use pbx_host::cli::AdminClient;
use pbx_host::server::RunningHost;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::json;

/// A host with two CRM plugins active side by side: the probe (0.5.0) and
/// the probe built against 0.2.0.
async fn two_crm_host() -> (tempfile::TempDir, RunningHost, AdminClient) {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    for fixture in ["fixture_probe", "fixture_probe_v2"] {
        install(&api, fixture)
            .await
            .unwrap_or_else(|e| panic!("{fixture} installs: {e}"));
    }
    (dir, host, api)
}

fn browser_like() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("client")
}

fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Strangers, a wrong token and an agent's session are sent to the login,
/// which returns to the page; the administrator's session and token get
/// the portal; a plugin that is not active is a 404 that shows its id as
/// text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crm_page_is_the_administrators_only() {
    let (_dir, host, api) = two_crm_host().await;
    let base = host.url();
    let page = format!("{base}/crm/probe");
    let to_login = "/login?next=/crm/probe";

    // No credentials, a wrong token.
    let stranger = browser_like();
    let answer = stranger.get(&page).send().await.expect("answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), to_login);
    let answer = stranger
        .get(&page)
        .bearer_auth("not-the-token")
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), to_login);
    // ... not even for a plugin that does not exist (nothing is told).
    let answer = stranger
        .get(format!("{base}/crm/nope"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);

    // An agent signed in at an extension: the agent's session, in either
    // cookie, is no administrator's.
    const PASSWORD: &str = "correct horse battery staple 1001";
    api.post("/extensions", &json!({"number": "1001", "name": "Ada"}))
        .await
        .expect("extension");
    api.put("/extensions/1001/password", &json!({"password": PASSWORD}))
        .await
        .expect("password");
    let agent = browser_like();
    let signed_in = agent
        .post(format!("{base}/agent/sign-in"))
        .form(&[
            ("extension", "1001"),
            ("password", PASSWORD),
            ("next", "/agent/1001"),
        ])
        .send()
        .await
        .expect("sign-in answers");
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let agent_session = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("pbx_agent="))
        .and_then(|c| c.split(';').next())
        .expect("an agent session")
        .to_string();
    assert_eq!(
        agent
            .get(format!("{base}/agent/1001"))
            .send()
            .await
            .expect("answer")
            .status(),
        StatusCode::OK,
        "the agent's session works on the agent's page"
    );
    let answer = agent.get(&page).send().await.expect("answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), to_login);
    let answer = browser_like()
        .get(&page)
        .header("cookie", format!("pbx_session={agent_session}"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&answer), to_login);

    // The login page carries where to return, and only a CRM's page.
    let login_page = stranger
        .get(format!("{base}{to_login}"))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("page");
    assert!(
        login_page.contains(r#"<input type="hidden" name="next" value="/crm/probe">"#),
        "{login_page}"
    );
    let login_page = stranger
        .get(format!("{base}/login?next=https://evil.example/crm/x"))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("page");
    assert!(!login_page.contains("evil.example"), "{login_page}");
    for (next, to) in [
        ("https://evil.example/crm/x", "/"),
        ("//evil.example", "/"),
        ("/crm/probe-v2", "/crm/probe-v2"),
    ] {
        let login = browser_like()
            .post(format!("{base}/login"))
            .header("origin", &base)
            .form(&[("token", host.admin_token.as_str()), ("next", next)])
            .send()
            .await
            .expect("log in");
        assert_eq!(login.status(), StatusCode::SEE_OTHER, "{next}");
        assert_eq!(location(&login), to, "{next}");
    }

    // The administrator: by session and by token.
    let portal = browser_like();
    let login = portal
        .post(format!("{base}/login"))
        .header("origin", &base)
        .form(&[("token", host.admin_token.as_str())])
        .send()
        .await
        .expect("log in");
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&login), "/");
    for plugin in ["probe", "probe-v2"] {
        let answer = portal
            .get(format!("{base}/crm/{plugin}"))
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status(), StatusCode::OK, "{plugin}");
        let html = answer.text().await.expect("page");
        assert!(html.contains("/assets/portal.js"), "{plugin}: {html}");
    }
    let answer = browser_like()
        .get(&page)
        .bearer_auth(&host.admin_token)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::OK);

    // Not an active plugin: a 404 naming it as text.
    let answer = portal
        .get(format!("{base}/crm/%3Cb%3Enope%3C%2Fb%3E"))
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::NOT_FOUND);
    let html = answer.text().await.expect("page");
    assert!(
        html.contains("&quot;&lt;b&gt;nope&lt;/b&gt;&quot;"),
        "{html}"
    );
    assert!(!html.contains("<b>nope"), "{html}");
    host.shutdown().await;
}

/// In a browser: the portal lists both CRMs by name, each linking to its
/// own page, and each page shows that plugin's settings and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_crm_has_its_own_page_listed_by_name() {
    let (_dir, host, api) = two_crm_host().await;
    let base = host.url();
    // One CRM's settings, the other's none.
    api.put(
        "/crm/probe-v2/settings",
        &json!({"settings": [{"key": "account", "value": "acme-v2"}]}),
    )
    .await
    .expect("the 0.2.0 probe keeps its account");
    let browser = Browser::start().await;
    browser.log_in(&base, &host.admin_token).await;
    // At / the first active plugin is chosen, and the list names both.
    let list = browser
        .wait_text("#crm-plugins", "Sandbox probe (pbx:crm@0.2.0)")
        .await;
    assert!(list.contains("Sandbox probe"), "{list}");
    let current = browser.find("#crm-plugins a[aria-current=page]").await;
    assert_eq!(
        current.attr("data-plugin").await.expect("attribute"),
        Some("probe".into())
    );

    // The other CRM's link opens its own page.
    browser.click("#crm-plugins a[data-plugin=probe-v2]").await;
    browser
        .find("#crm-plugins a[data-plugin=probe-v2][aria-current=page]")
        .await;
    let url = browser.client.current_url().await.expect("url");
    assert_eq!(url.path(), "/crm/probe-v2");
    // Its own settings and its own callback URL.
    browser
        .wait_text("#callback-url", "/crm/probe-v2/oauth/callback")
        .await;
    assert_eq!(account_field(&browser).await, "acme-v2");

    // And back: the probe's page is the probe's.
    browser
        .client
        .goto(&format!("{base}/crm/probe"))
        .await
        .expect("open");
    browser
        .find("#crm-plugins a[data-plugin=probe][aria-current=page]")
        .await;
    browser
        .wait_text("#callback-url", "/crm/probe/oauth/callback")
        .await;
    assert_eq!(account_field(&browser).await, "");
    let violations = browser.csp_violations().await;
    assert!(violations.is_empty(), "{violations:#?}");
    browser.close().await;
    host.shutdown().await;
}

/// The value of the settings form's `account` field, once rendered.
async fn account_field(browser: &Browser) -> String {
    browser
        .find("#settings-form [name=account]")
        .await
        .prop("value")
        .await
        .expect("the field's value")
        .unwrap_or_default()
}
