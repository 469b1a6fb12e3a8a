//! An agent's sign-in (`user-sign-in`, pbx:crm 0.3.0) through the real
//! host's plugin handle and the emulated org: a second Salesforce user logs
//! in on a browser the administrator used before (`prompt=login` makes them
//! log in again, then the flow goes on to consent), the plugin answers that
//! user's id and keeps none of their tokens; a replay, a denial and a user
//! deactivated before the code exchange are refused; a plugin built against
//! 0.2.0 is answered "unsupported".

use e2e_tests::install;
use e2e_tests::org::{ADMIN_PASSWORD, ADMIN_USER, Setup, World, callback_url, hidden_input};
use pbx_host::runtime::CallError;
use pbx_host::runtime::wit::{SignInError, SignInRequest};
use salesforce_emulator::NewUser;

/// The agent's password (the emulator's default for new users).
const AGENT_PASSWORD: &str = "emulator";

pub(crate) fn add_agent(world: &World, first: &str) -> (String, String) {
    let username = format!("{}@agents.test", first.to_lowercase());
    let id = world
        .org
        .add_user(NewUser {
            first_name: first.into(),
            last_name: "Agent".into(),
            email: username.clone(),
            username: Some(username.clone()),
            ..NewUser::default()
        })
        .expect("user added");
    (id, username)
}

/// Follow redirects inside the org (at most five); the last response.
async fn follow(
    browser: &reqwest::Client,
    base: &str,
    mut response: reqwest::Response,
) -> reqwest::Response {
    for _ in 0..5 {
        let Some(location) = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(str::to_string)
        else {
            break;
        };
        if location.starts_with("http") && !location.starts_with(base) {
            break;
        }
        let next = if location.starts_with("http") {
            location
        } else {
            format!("{base}{location}")
        };
        response = browser.get(next).send().await.expect("follow");
    }
    response
}

/// The person in `browser` opens the sign-in page, logs in as `username`
/// and clicks Allow or Deny (after `before_answer`); the query of the
/// callback the org redirects to.
pub(crate) async fn sign_in(
    world: &World,
    browser: &reqwest::Client,
    request: &SignInRequest,
    username: &str,
    allow: bool,
    before_answer: impl FnOnce(),
) -> String {
    let base = world.org.base_url();
    let page = browser
        .get(&request.url)
        .send()
        .await
        .expect("sign-in page");
    let html = page.text().await.expect("sign-in html");
    assert!(
        html.contains("id=\"login_form\""),
        "prompt=login shows the login form even to a logged-in browser: {html}"
    );
    let start = hidden_input(&html, "startURL").expect("startURL");
    let login = browser
        .post(format!("{base}/login"))
        .form(&[
            ("username", username),
            ("password", AGENT_PASSWORD),
            ("startURL", start.as_str()),
        ])
        .send()
        .await
        .expect("login");
    let html = follow(browser, &base, login)
        .await
        .text()
        .await
        .unwrap_or_default();
    let pending = hidden_input(&html, "pending")
        .unwrap_or_else(|| panic!("after logging in, the consent page: {html}"));
    assert!(html.contains(username), "consent as the new person: {html}");
    before_answer();
    let answer = browser
        .post(format!("{base}/services/oauth2/authorize/consent"))
        .form(&[
            ("pending", pending.as_str()),
            ("action", if allow { "allow" } else { "deny" }),
        ])
        .send()
        .await
        .expect("consent");
    let location = answer
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("a redirect to the callback")
        .to_string();
    let callback = callback_url(&world.host);
    let query = location
        .strip_prefix(&format!("{callback}?"))
        .unwrap_or_else(|| panic!("the redirect goes to the callback: {location}"));
    query.to_string()
}

/// A browser the administrator is logged in to the org with.
async fn shared_browser(world: &World) -> reqwest::Client {
    let browser = world.browser();
    let login = browser
        .post(format!("{}/login", world.org.base_url()))
        .form(&[
            ("username", ADMIN_USER),
            ("password", ADMIN_PASSWORD),
            ("startURL", "/"),
        ])
        .send()
        .await
        .expect("admin login");
    assert!(
        login.headers().get("set-cookie").is_some(),
        "the admin is logged in"
    );
    browser
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_signs_in_as_themselves_and_no_token_of_theirs_lives_on() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    let (agent, username) = add_agent(&world, "Grace");
    let runtime = &world.host.state.runtime;
    assert!(runtime.supports_user_sign_in("salesforce"));
    let handle = runtime.plugin("salesforce");
    let callback = callback_url(&world.host);

    let request = handle
        .begin_user_sign_in(&callback)
        .await
        .expect("the sign-in begins");
    assert!(request.url.contains("prompt=login"), "{}", request.url);
    assert!(request.url.contains("scope=openid&"), "{}", request.url);
    let revocations = world.org.token_stats().revocations;

    let browser = shared_browser(&world).await;
    let query = sign_in(&world, &browser, &request, &username, true, || {}).await;
    assert!(
        query.contains(&format!("state={}", request.state)),
        "{query}"
    );
    let answer = handle
        .complete_user_sign_in(&callback, &query)
        .await
        .expect("the plugin answers");
    assert_eq!(answer.as_ref().ok(), Some(&agent), "{answer:?}");
    assert_eq!(
        world.org.live_tokens_of(&agent),
        0,
        "the agent's tokens are revoked"
    );
    assert!(world.org.token_stats().revocations > revocations);
    // The administrator's connection is untouched.
    assert_eq!(world.status().await["state"], "Connected");

    // The same callback again: the state is used up.
    let replay = handle
        .complete_user_sign_in(&callback, &query)
        .await
        .expect("the plugin answers");
    assert!(matches!(replay, Err(SignInError::Expired)), "{replay:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denied_sign_in_and_a_deactivated_user_identify_no_one() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    let (agent, username) = add_agent(&world, "Alan");
    let handle = world.host.state.runtime.plugin("salesforce");
    let callback = callback_url(&world.host);

    let request = handle.begin_user_sign_in(&callback).await.expect("begin");
    let query = sign_in(&world, &world.browser(), &request, &username, false, || {}).await;
    let answer = handle
        .complete_user_sign_in(&callback, &query)
        .await
        .expect("the plugin answers");
    assert!(matches!(answer, Err(SignInError::Denied(_))), "{answer:?}");

    // Deactivated between logging in and the code exchange.
    let request = handle.begin_user_sign_in(&callback).await.expect("begin");
    let query = sign_in(&world, &world.browser(), &request, &username, true, || {
        world.org.deactivate_user(&agent).expect("deactivated");
    })
    .await;
    let answer = handle
        .complete_user_sign_in(&callback, &query)
        .await
        .expect("the plugin answers");
    assert!(
        matches!(answer, Err(SignInError::Inactive(_))),
        "{answer:?}"
    );
    assert_eq!(world.org.live_tokens_of(&agent), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_2_0_plugin_has_no_sign_in() {
    let world = World::start(Setup::default()).await;
    install(&world.api, "fixture_probe_v2")
        .await
        .expect("the 0.2.0 probe installs");
    let runtime = &world.host.state.runtime;
    assert!(!runtime.supports_user_sign_in("probe-v2"));
    let callback = callback_url(&world.host);
    let begun = runtime
        .plugin("probe-v2")
        .begin_user_sign_in(&callback)
        .await;
    match begun {
        Err(e @ CallError::Unsupported { .. }) => {
            assert_eq!(e.kind(), "unsupported");
            let message = e.to_string();
            assert!(message.contains("pbx:crm@0.2.0"), "{message}");
            assert!(message.contains("agent sign-in"), "{message}");
        }
        other => panic!("expected unsupported, got {:?}", other.map(|r| r.url)),
    }
    let completed = runtime
        .plugin("probe-v2")
        .complete_user_sign_in(&callback, "code=x&state=y")
        .await;
    assert!(matches!(completed, Err(CallError::Unsupported { .. })));
    // The probe still answers its other exports on the same instance.
    let status = world.api.get("/crm/probe-v2/status").await.expect("status");
    assert_eq!(status["state"], "Configured", "{status}");
}
