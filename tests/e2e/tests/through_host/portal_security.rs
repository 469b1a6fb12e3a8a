//! The portal, the OAuth callback and the listener against hostile
//! plugins, pages and callers: a plugin's authorization page must be a web
//! page, the open callback keeps nothing for strangers, state-changing
//! requests from other sites are refused, the pages run under a
//! Content-Security-Policy, and `serve --tls-cert --tls-key` serves HTTPS
//! that the CLI trusts.

use std::time::{Duration, Instant};

use e2e_tests::browser::Browser;
use e2e_tests::org::{CONSUMER_KEY, CONSUMER_SECRET, Consent, Setup, World};
use e2e_tests::{Options, probe, probe_host};
use pbx_host::cli::AdminClient;
use reqwest::StatusCode;
use serde_json::json;

/// A plugin that names a `javascript:` page (or plain http elsewhere) as
/// its authorization page gets an error naming it; the API never hands it
/// out, and the CLI refuses it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_non_web_authorization_page_is_refused() {
    let (dir, host, api) = probe_host(Options::default()).await;
    for bad in [
        "javascript:fetch('/api/plugins').then(r=>r.text()).then(alert)",
        "data:text/html,<script>alert(1)</script>",
        "http://crm.example/consent",
    ] {
        probe(&api, "probe", "kv-set", &format!("authorization-url={bad}"))
            .await
            .expect("the probe keeps the URL");
        let refused = api
            .post("/crm/probe/authorize", &json!({}))
            .await
            .expect_err("a non-web page is refused");
        let message = format!("{refused:#}");
        assert!(message.contains("plugin probe"), "{bad}: {message}");
        assert!(
            !message.contains("alert"),
            "the URL is not echoed: {message}"
        );
        // The CLI says the same and prints no URL.
        let (ok, stdout, stderr) = e2e_tests::pbx_at(
            Some(dir.path()),
            &["crm", "--plugin", "probe", "authorize", "--no-browser"],
            "",
        );
        assert!(!ok, "the CLI refuses {bad}: {stdout}");
        assert!(!stdout.contains(bad), "{stdout}");
        assert!(stderr.contains("plugin probe"), "{stderr}");
    }
    probe(
        &api,
        "probe",
        "kv-set",
        "authorization-url=https://crm.example/consent",
    )
    .await
    .expect("the probe keeps the URL");
    let authorization = api
        .post("/crm/probe/authorize", &json!({}))
        .await
        .expect("an https page passes");
    assert_eq!(authorization["url"], "https://crm.example/consent");
    host.shutdown().await;
}

/// The callback of a plugin that is not installed is a 404 and keeps no
/// outcome; a stranger's `error=` callback without a pending state changes
/// nothing the portal shows, before or after a real authorization.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_callback_keeps_nothing_for_strangers() {
    let world = World::start(Setup::default()).await;
    let base = world.host.url();
    for plugin in ["nope", "x%2F..%2Fy", "0123456789"] {
        let response = reqwest::get(format!(
            "{base}/crm/{plugin}/oauth/callback?error=access_denied&state=abc"
        ))
        .await
        .expect("the callback answers");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{plugin}");
    }
    assert!(world.host.state.authorizations.is_empty());

    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings save");
    let consent = world.authorize().await.expect("authorization starts");
    let forged = [
        "error=access_denied&error_description=forged".to_string(),
        "error=access_denied&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
    ];
    for query in &forged {
        let (status, page) = world
            .callback(&format!("{base}/crm/salesforce/oauth/callback?{query}"))
            .await;
        assert_eq!(status, 400, "{query}: {page}");
        assert!(
            page.contains("unknown") || page.contains("no state"),
            "{page}"
        );
        assert!(
            world.status().await["last_authorization"].is_null(),
            "{query} changed what the portal shows"
        );
    }
    // The real authorization was not ended by them.
    let Consent::Redirect(location) = world.consent(&consent, true).await else {
        panic!("the org did not redirect after Allow");
    };
    let (status, page) = world.callback(&location).await;
    assert_eq!(status, 200, "{page}");
    for query in &forged {
        world
            .callback(&format!("{base}/crm/salesforce/oauth/callback?{query}"))
            .await;
        let last = &world.status().await["last_authorization"];
        assert_eq!(
            last["ok"], true,
            "{query} changed the shown outcome: {last}"
        );
    }
    assert_eq!(world.host.state.authorizations.len(), 1);
}

/// A client with the portal's session cookie, as a browser has it.
async fn logged_in(base: &str, token: &str) -> reqwest::Client {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = client
        .post(format!("{base}/login"))
        .header("origin", base)
        .form(&[("token", token)])
        .send()
        .await
        .expect("log in");
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    client
}

/// Cookie-authenticated state changes from another site, or with a body a
/// cross-site form could send, are refused and change nothing; the same
/// requests from the portal's own origin work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_are_refused() {
    let (_dir, host, api) = probe_host(Options::default()).await;
    let base = host.url();
    let browser = logged_in(&base, &host.admin_token).await;
    let extension = json!({"number": "1001", "name": "Desk"}).to_string();

    // text/plain: what a cross-site form can send without a preflight.
    let r = browser
        .post(format!("{base}/api/extensions"))
        .header("origin", &base)
        .header("content-type", "text/plain")
        .body(extension.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // From another origin, and another site, even as JSON.
    for (name, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = browser
            .post(format!("{base}/api/extensions"))
            .header(name, value)
            .header("content-type", "application/json")
            .body(extension.clone())
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{name}: {value}");
    }
    let listed = api.get("/extensions").await.expect("list");
    assert_eq!(listed["extensions"], json!([]), "nothing was created");

    // Bodiless POSTs with a cross-site Origin: logging out, authorizing.
    for path in ["/logout", "/api/crm/probe/authorize"] {
        let r = browser
            .post(format!("{base}{path}"))
            .header("origin", "https://evil.example")
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // The session survived the forged logout.
    let r = browser
        .get(format!("{base}/api/plugins"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::OK);

    // From the portal's own origin it works; so does the CLI's bearer token.
    let r = browser
        .post(format!("{base}/api/extensions"))
        .header("origin", &base)
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"number": "1001", "name": "Desk"}))
        .send()
        .await
        .expect("answer");
    assert!(r.status().is_success(), "{}", r.status());
    api.post("/extensions", &json!({"number": "1002", "name": "Desk 2"}))
        .await
        .expect("the CLI is not affected");
    let r = browser
        .post(format!("{base}/logout"))
        .header("origin", &base)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = browser
        .get(format!("{base}/api/plugins"))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "logged out");
    host.shutdown().await;
}

/// Every page carries the Content-Security-Policy and has nothing inline;
/// the scripts and styles are files with their types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_carry_the_content_security_policy() {
    let (_dir, host, _api) = probe_host(Options::default()).await;
    let base = host.url();
    let browser = logged_in(&base, &host.admin_token).await;
    for path in [
        "/",
        "/login",
        "/crm/probe/oauth/callback?state=x",
        "/crm/nope/oauth/callback",
    ] {
        let r = browser
            .get(format!("{base}{path}"))
            .send()
            .await
            .expect("page");
        let csp = r
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "base-uri 'none'",
            "form-action 'self'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{path}");
        let html = r.text().await.expect("html").to_ascii_lowercase();
        assert!(!html.contains("<style"), "{path}");
        assert!(!html.contains("<script>"), "{path}");
        assert!(!html.contains(" style="), "{path}");
    }
    for (name, ty) in [
        ("portal.js", "text/javascript"),
        ("portal.css", "text/css"),
        ("agent.js", "text/javascript"),
        ("agent.css", "text/css"),
    ] {
        let r = reqwest::get(format!("{base}/assets/{name}"))
            .await
            .expect("asset");
        assert_eq!(r.status(), StatusCode::OK, "{name}");
        let got = r.headers()["content-type"].to_str().unwrap_or_default();
        assert!(got.starts_with(ty), "{name}: {got}");
    }
    host.shutdown().await;
}

/// In a real browser: the portal works under its Content-Security-Policy
/// with no violation, a plugin id from `?plugin=` goes into API paths
/// encoded and onto the page as text, and a `javascript:` authorization
/// page from a plugin is refused on the page without running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_portal_works_under_its_policy_and_refuses_a_javascript_page() {
    let (_dir, host, api) = probe_host(Options::default()).await;
    probe(
        &api,
        "probe",
        "kv-set",
        "authorization-url=javascript:document.title='pwned'",
    )
    .await
    .expect("the probe keeps the URL");
    let browser = Browser::start().await;
    let b = &browser.client;
    browser.log_in(&host.url(), &host.admin_token).await;
    browser.wait_text("#crm-name", "Probe").await;
    browser.wait_text("#status-message", "probe ready").await;

    let portal = b.window().await.expect("portal window");
    browser.click("#authorize").await;
    browser.wait_text("#settings-result", "plugin probe").await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while b.windows().await.expect("windows").len() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        b.windows().await.expect("windows"),
        vec![portal.clone()],
        "the blank tab was closed, nothing opened"
    );
    let title = b.title().await.expect("title");
    assert_eq!(title, "PBX portal");

    // A hostile ?plugin= value is shown as text, never as HTML ...
    let open = |id: &str| {
        format!(
            "{}/?plugin={}",
            host.url(),
            url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
        )
    };
    b.goto(&open("<img src=x id=injected>"))
        .await
        .expect("open the portal");
    browser
        .wait_text("#crm-name", "<img src=x id=injected>")
        .await;
    assert!(
        b.find(fantoccini::Locator::Css("#injected")).await.is_err(),
        "the id was inserted as HTML"
    );
    // ... and goes into API paths as one encoded segment: unencoded, this
    // one would read the probe's own description (/crm/probe/describe?...).
    b.goto(&open("probe/describe?x="))
        .await
        .expect("open the portal");
    browser.wait_text("#status-message", "no plugin").await;
    browser.wait_text("#crm-name", "probe/describe?x=").await;

    let violations = browser.csp_violations().await;
    assert!(violations.is_empty(), "{violations:#?}");
    browser.close().await;
    host.shutdown().await;
}

/// `serve --tls-cert --tls-key`: HTTPS; the CLI's client trusts exactly
/// the served certificate (kept in the data directory) and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_serves_https_and_the_cli_trusts_its_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert =
        rcgen::generate_simple_self_signed(vec!["pbx.example.com".into()]).expect("certificate");
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let data_dir = dir.path().join("pbx");
    let config = pbx_host::config::HostConfig::from_file(pbx_host::config::FileConfig {
        data_dir: Some(data_dir.clone()),
        listen: Some("127.0.0.1:0".parse().expect("address")),
        tls_cert: Some(cert_path),
        tls_key: Some(key_path),
        ..Default::default()
    })
    .expect("config");
    let host = pbx_host::server::start(config)
        .await
        .expect("the host starts");
    assert!(host.url().starts_with("https://"), "{}", host.url());
    let url_file = std::fs::read_to_string(data_dir.join("admin-url")).expect("admin-url");
    assert_eq!(url_file.trim(), host.url());

    // The CLI's way: the data directory's URL, token and certificate.
    let cli = AdminClient::from_data_dir(&data_dir).expect("client");
    let plugins = cli.get("/plugins").await.expect("the CLI reaches the host");
    assert_eq!(plugins["plugins"], json!([]));
    let (ok, stdout, stderr) = e2e_tests::pbx_at(Some(&data_dir), &["plugin", "list"], "");
    assert!(ok, "{stdout}{stderr}");

    // Plain HTTP to it fails; another certificate in its place is refused.
    let plain = reqwest::get(format!("http://{}/login", host.addr)).await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    let other =
        rcgen::generate_simple_self_signed(vec!["pbx.example.com".into()]).expect("certificate");
    std::fs::write(data_dir.join("admin-cert.pem"), other.cert.pem()).expect("swap");
    let cli = AdminClient::from_data_dir(&data_dir).expect("client");
    assert!(
        cli.get("/plugins").await.is_err(),
        "another certificate passed"
    );
    host.shutdown().await;
}
