//! Agents through the real host: an agent signs in with the extension's
//! password and gets a session for that one extension (its page, its
//! pop-up stream, dialing from it), never another's; the administrator
//! lists and signs agents out; removing an extension ends its sessions;
//! failed sign-ins are rate-limited and an anonymous flood keeps nothing.

use std::time::Duration;

use e2e_tests::{admin, start_host};
use pbx_host::capabilities::browser::Viewer;
use pbx_host::cli::AdminClient;
use pbx_host::config::{FileConfig, HostConfig};
use pbx_host::server::RunningHost;
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::json;

const PASSWORD_1001: &str = "hunter2-for-1001";
const PASSWORD_1002: &str = "hunter2-for-1002";

/// A host with extensions 1001 and 1002, each with a password.
async fn host() -> (tempfile::TempDir, RunningHost, AdminClient) {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Default::default()).await;
    let api = admin(&host);
    for (x, password) in [("1001", PASSWORD_1001), ("1002", PASSWORD_1002)] {
        api.post(
            "/extensions",
            &json!({"number": x, "name": format!("Agent {x}")}),
        )
        .await
        .expect("extension");
        api.put(
            &format!("/extensions/{x}/password"),
            &json!({"password": password}),
        )
        .await
        .expect("password set");
    }
    (dir, host, api)
}

/// A browser-like client: its own cookies, redirects not followed.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// Sign `client` in as `extension`; the answer's status and Location.
async fn sign_in(
    client: &reqwest::Client,
    host: &RunningHost,
    extension: &str,
    password: &str,
    next: &str,
) -> (StatusCode, String, String) {
    let answer = client
        .post(format!("{}/agent/sign-in", host.url()))
        .form(&[
            ("extension", extension),
            ("password", password),
            ("next", next),
        ])
        .send()
        .await
        .expect("sign-in answers");
    let location = answer
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let cookie = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("pbx_agent="))
        .unwrap_or_default()
        .to_string();
    (answer.status(), location, cookie)
}

async fn status(client: &reqwest::Client, url: String) -> StatusCode {
    client.get(url).send().await.expect("answer").status()
}

async fn dial(client: &reqwest::Client, host: &RunningHost, extension: &str) -> StatusCode {
    client
        .post(format!("{}/agent/{extension}/dial", host.url()))
        .json(&json!({"number": "+14155550100"}))
        .send()
        .await
        .expect("answer")
        .status()
}

/// Read `extension`'s pop-up stream from the start until `needle` shows;
/// everything read.
async fn stream_until(
    client: &reqwest::Client,
    host: &RunningHost,
    extension: &str,
    needle: &str,
) -> String {
    let answer = client
        .get(format!("{}/agent/{extension}/events?after=0", host.url()))
        .send()
        .await
        .expect("stream answers");
    assert_eq!(answer.status(), StatusCode::OK);
    let mut answer = answer;
    let mut seen = String::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(chunk)) = answer.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(needle) {
                return;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{needle} never streamed; got {seen:?}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_with_a_password_reaches_their_extension_and_no_other() {
    let (_dir, host, _api) = host().await;
    let base = host.url();
    let a = browser();

    // Anonymous: the page sends to the sign-in, the stream says 401.
    let page = a
        .get(format!("{base}/agent/1001"))
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        page.headers().get("location").and_then(|v| v.to_str().ok()),
        Some("/agent/sign-in?next=/agent/1001")
    );
    assert_eq!(
        status(&a, format!("{base}/agent/1001/events")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(dial(&a, &host, "1001").await, StatusCode::UNAUTHORIZED);

    // A wrong password: refused, no session.
    let (code, _, cookie) = sign_in(&a, &host, "1001", PASSWORD_1002, "/agent/1001").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_empty());

    // The right one: back to the page asked for, a scoped HttpOnly cookie.
    let (code, location, cookie) = sign_in(&a, &host, "1001", PASSWORD_1001, "/agent/1001").await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    assert_eq!(location, "/agent/1001");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "the host is served over http here"
    );
    assert_eq!(
        status(&a, format!("{base}/agent/1001")).await,
        StatusCode::OK
    );

    // Agent A is refused on B's page, B's stream and dialing from B.
    assert_eq!(
        status(&a, format!("{base}/agent/1002")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&a, format!("{base}/agent/1002/events")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(&a, format!("{base}/agent/1002/calls")).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(dial(&a, &host, "1002").await, StatusCode::FORBIDDEN);
    assert!(host.state.services.browser.since(0).is_empty());
    assert!(
        host.state.originations.list().is_empty(),
        "nothing was dialed"
    );
    // From A's own extension the plugin decides (none is installed here).
    assert_eq!(dial(&a, &host, "1001").await, StatusCode::CONFLICT);
    // An agent session is not the administrator's.
    assert_eq!(
        status(&a, format!("{base}/api/extensions")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(status(&a, format!("{base}/")).await, StatusCode::SEE_OTHER);

    // Pop-ups: A's stream carries A's, never B's (B's was opened first).
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
    let seen = stream_until(&a, &host, "1001", "for-1001").await;
    assert!(!seen.contains("for-1002"), "A saw B's pop-up: {seen}");

    // Sign-in never redirects off the host, nor to another extension's page.
    let b = browser();
    for next in [
        "https://evil.example/",
        "//evil.example/agent/1002",
        "/agent/1001",
        "/agent/../api",
    ] {
        let (code, location, _) = sign_in(&b, &host, "1002", PASSWORD_1002, next).await;
        assert_eq!(code, StatusCode::SEE_OTHER);
        assert_eq!(location, "/agent/1002", "next={next}");
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_sees_who_is_signed_in_and_signs_them_out() {
    let (_dir, host, api) = host().await;
    let base = host.url();
    let a = browser();
    let b = browser();
    let (_, _, cookie_a) = sign_in(&a, &host, "1001", PASSWORD_1001, "").await;
    sign_in(&b, &host, "1002", PASSWORD_1002, "").await;

    let listed = api.get("/sessions").await.expect("sessions");
    let sessions = listed["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 2, "{listed}");
    let id_a = cookie_a
        .trim_start_matches("pbx_agent=")
        .split(';')
        .next()
        .unwrap_or_default();
    assert!(id_a.len() >= 32);
    assert!(
        !listed.to_string().contains(id_a),
        "a session id is never listed"
    );
    for s in &sessions {
        assert_eq!(s["kind"], "agent");
        assert_eq!(s["how"], "password");
        assert!(s["since_ms"].as_u64().is_some() && s["last_seen_ms"].as_u64().is_some());
    }
    let handle_a = sessions
        .iter()
        .find(|s| s["extension"] == "1001")
        .and_then(|s| s["handle"].as_str())
        .expect("1001 listed")
        .to_string();

    // One session by its handle: its open stream ends at the next pop-up,
    // which it does not get.
    let open_stream = a
        .get(format!("{base}/agent/1001/events"))
        .send()
        .await
        .expect("stream");
    assert_eq!(open_stream.status(), StatusCode::OK);
    api.delete(&format!("/sessions/{handle_a}"))
        .await
        .expect("ended");
    host.state
        .services
        .browser
        .record(
            "salesforce",
            "https://crm.example.org/after-sign-out",
            Viewer::Extension("1001".into()),
            None,
        )
        .expect("record");
    let rest = tokio::time::timeout(Duration::from_secs(20), open_stream.text())
        .await
        .expect("the stream ends");
    assert!(!rest.unwrap_or_default().contains("after-sign-out"));
    assert_eq!(
        status(&a, format!("{base}/agent/1001/events")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&b, format!("{base}/agent/1002/calls")).await,
        StatusCode::OK
    );
    assert!(
        api.delete(&format!("/sessions/{handle_a}")).await.is_err(),
        "404 the second time"
    );

    // Every session of an extension.
    let ended = api
        .post("/extensions/1002/sign-out", &json!({}))
        .await
        .expect("sign-out");
    assert_eq!(ended["ended"], 1);
    assert_eq!(
        status(&b, format!("{base}/agent/1002/calls")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        api.get("/sessions").await.expect("sessions")["sessions"],
        json!([])
    );

    // The routes are the administrator's: an agent cannot list or end.
    sign_in(&a, &host, "1001", PASSWORD_1001, "").await;
    assert_eq!(
        status(&a, format!("{base}/api/sessions")).await,
        StatusCode::UNAUTHORIZED
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_an_extension_ends_its_sessions_and_its_password() {
    let (_dir, host, api) = host().await;
    let base = host.url();
    let a = browser();
    sign_in(&a, &host, "1001", PASSWORD_1001, "").await;
    assert_eq!(
        status(&a, format!("{base}/agent/1001/calls")).await,
        StatusCode::OK
    );
    api.delete("/extensions/1001").await.expect("removed");
    assert_eq!(
        status(&a, format!("{base}/agent/1001/calls")).await,
        StatusCode::UNAUTHORIZED
    );
    // Added again, the old password does not come back with it.
    api.post("/extensions", &json!({"number": "1001", "name": "New"}))
        .await
        .expect("extension");
    let (code, _, _) = sign_in(&a, &host, "1001", PASSWORD_1001, "").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // Clearing a password works the same way for the other extension.
    let b = browser();
    sign_in(&b, &host, "1002", PASSWORD_1002, "").await;
    api.delete("/extensions/1002/password")
        .await
        .expect("cleared");
    assert_eq!(
        status(&b, format!("{base}/agent/1002/calls")).await,
        StatusCode::UNAUTHORIZED
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_limited_and_an_anonymous_flood_keeps_nothing() {
    let (_dir, host, api) = host().await;
    let base = host.url();
    let attacker = browser();
    for _ in 0..5 {
        let (code, _, _) = sign_in(&attacker, &host, "1001", "wrong-password", "").await;
        assert_eq!(code, StatusCode::UNAUTHORIZED);
    }
    // Now even the right password is refused, from this address.
    let (code, _, cookie) = sign_in(&attacker, &host, "1001", PASSWORD_1001, "").await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    assert!(cookie.is_empty());
    // A flood of attempts on made-up extensions and CRMs: refused, and
    // nothing more is kept.
    let before = host.state.browser_bookkeeping();
    for i in 0..300 {
        let (code, _, _) = sign_in(&attacker, &host, &format!("9{i:03}"), "guess-guess", "").await;
        assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
        let crm = attacker
            .post(format!("{base}/agent/sign-in/crm/made-up-{i}"))
            .form(&[("next", "/agent/1001")])
            .send()
            .await
            .expect("answer");
        assert_eq!(crm.status(), StatusCode::NOT_FOUND);
        let callback = attacker
            .get(format!(
                "{base}/crm/salesforce/oauth/callback?state=guess{i}&code=x"
            ))
            .send()
            .await
            .expect("answer");
        assert!(callback.status().is_client_error() || callback.status().is_server_error());
    }
    let after = host.state.browser_bookkeeping();
    assert_eq!(after, before, "the flood made the host keep more");
    assert_eq!(after.sessions, 0);
    assert_eq!(after.pending_sign_ins, 0);
    // The store counts 1001's failures (for every replica), and nothing of
    // the made-up extensions; a removed extension's count goes with it.
    let counted = || {
        host.state
            .store
            .namespace("host/sign-in-failures", pbx_host::store::Quota::UNLIMITED)
            .list_keys("")
            .expect("keys")
    };
    assert_eq!(counted(), vec!["1001".to_string()]);
    api.delete("/extensions/1001").await.expect("removed");
    assert!(counted().is_empty(), "{:?}", counted());

    // The portal's login is limited the same way.
    let portal = browser();
    for _ in 0..5 {
        let r = portal
            .post(format!("{base}/login"))
            .form(&[("token", "not-the-token")])
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = portal
        .post(format!("{base}/login"))
        .form(&[("token", host.admin_token.as_str())])
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_secure_when_the_public_url_is_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = HostConfig::from_file(FileConfig {
        data_dir: Some(dir.path().to_path_buf()),
        listen: Some("127.0.0.1:0".parse().expect("address")),
        public_url: Some("https://pbx.example.com".into()),
        ..FileConfig::default()
    })
    .expect("config");
    let host = pbx_host::server::start(config).await.expect("host");
    let api = admin(&host);
    api.post("/extensions", &json!({"number": "1001", "name": "A"}))
        .await
        .expect("extension");
    api.put(
        "/extensions/1001/password",
        &json!({"password": PASSWORD_1001}),
    )
    .await
    .expect("password");
    let (code, _, cookie) = sign_in(&browser(), &host, "1001", PASSWORD_1001, "").await;
    assert_eq!(code, StatusCode::SEE_OTHER);
    assert!(cookie.contains("; Secure"), "{cookie}");
    let login = browser()
        .post(format!("{}/login", host.url()))
        .form(&[("token", host.admin_token.as_str())])
        .send()
        .await
        .expect("answer");
    let portal_cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(portal_cookie.starts_with("pbx_session=") && portal_cookie.contains("; Secure"));
    host.shutdown().await;
}
