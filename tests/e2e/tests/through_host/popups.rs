//! Pop-ups for every caller through the real host against the emulated
//! org: two Contacts share a number, so the ringing call offers both (with
//! the Account's name) on the agent's stream; the agent's pick (its own
//! extension only, an offered record only, signed in) logs the call to the
//! chosen Contact and is remembered, so the next call from that number pops
//! it up directly; an unknown caller's pop-up follows the call settings.

use e2e_tests::org::{Setup, World, call_event, calls_world, drain, send_event, tasks_of};
use pbx_host::capabilities::browser::{BrowserRequest, Viewer};
use reqwest::StatusCode;
use reqwest::redirect::Policy;
use serde_json::{Map, Value, json};

const AT: u64 = 1_768_478_400_000;
const PASSWORD_1001: &str = "hunter2-for-1001";
const PASSWORD_1002: &str = "hunter2-for-1002";

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

/// Two Contacts on +1 212 555 0180, the second at Globex: (first, second).
pub fn two_contacts(world: &World) -> (String, String) {
    let account = world
        .org
        .insert(
            "Account",
            fields(json!({"Name": "Globex", "Phone": "+1 650 555 0001"})),
        )
        .expect("account");
    let first = world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "One", "FirstName": "Ann", "Phone": "+1 212 555 0180"})),
        )
        .expect("contact");
    let second = world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Two", "FirstName": "Bea", "Phone": "(212) 555-0180", "AccountId": account})),
        )
        .expect("contact");
    (first, second)
}

/// What the host recorded for `extension` about `call_id`.
fn requests_for(world: &World, extension: &str, call_id: &str) -> Vec<BrowserRequest> {
    world
        .host
        .state
        .services
        .browser
        .since(0)
        .into_iter()
        .filter(|r| {
            r.viewer == Viewer::Extension(extension.into())
                && r.caption.as_ref().and_then(|c| c.call_id.as_deref()) == Some(call_id)
        })
        .collect()
}

async fn ring(world: &World, call_id: &str, phase: &str) {
    let (status, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event(call_id, phase, "212-555-0180", "1001", AT),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A signed-in agent of `extension` (its own cookies).
async fn agent(world: &World, extension: &str, password: &str) -> reqwest::Client {
    world
        .api
        .put(
            &format!("/extensions/{extension}/password"),
            &json!({"password": password}),
        )
        .await
        .expect("password set");
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .expect("client");
    let answer = client
        .post(format!("{}/agent/sign-in", world.host.url()))
        .form(&[
            ("extension", extension),
            ("password", password),
            ("next", ""),
        ])
        .send()
        .await
        .expect("sign-in answers");
    assert_eq!(answer.status(), StatusCode::SEE_OTHER);
    client
}

async fn choose(
    client: &reqwest::Client,
    world: &World,
    extension: &str,
    call_id: &str,
    record_id: &str,
) -> (StatusCode, Value) {
    let answer = client
        .post(format!(
            "{}/agent/{extension}/calls/{call_id}/choice",
            world.host.url()
        ))
        .json(&json!({ "record_id": record_id }))
        .send()
        .await
        .expect("answer");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_matches_are_offered_and_the_agents_pick_gets_the_task_and_the_next_pop_up() {
    let world = calls_world(Setup::default()).await;
    let (first, second) = two_contacts(&world);
    ring(&world, "multi-1", "ringing").await;
    let offers = requests_for(&world, "1001", "multi-1");
    assert_eq!(offers.len(), 1, "{offers:?}");
    let mut offered: Vec<(String, String, Option<String>)> = offers[0]
        .offered
        .iter()
        .map(|r| (r.id.clone(), r.object_type.clone(), r.account.clone()))
        .collect();
    offered.sort();
    let mut want = vec![
        (first.clone(), "Contact".to_string(), None),
        (
            second.clone(),
            "Contact".to_string(),
            Some("Globex".to_string()),
        ),
    ];
    want.sort();
    assert_eq!(offered, want);

    // Refusals: anonymous, another extension's agent, a record not offered.
    let anonymous = reqwest::Client::new();
    let (status, _) = choose(&anonymous, &world, "1001", "multi-1", &second).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let other = agent(&world, "1002", PASSWORD_1002).await;
    let (status, _) = choose(&other, &world, "1001", "multi-1", &second).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // 1002's own page has no offer for this call.
    let (status, body) = choose(&other, &world, "1002", "multi-1", &second).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let me = agent(&world, "1001", PASSWORD_1001).await;
    let (status, body) = choose(&me, &world, "1001", "multi-1", "003000000000XYZ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("pick one of the list"),
        "{body}"
    );
    let (status, body) = choose(&me, &world, "1001", "multi-1", &"x".repeat(300)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The pick: the chosen record's page; the ended call's Task is on it.
    let (status, body) = choose(&me, &world, "1001", "multi-1", &second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], json!(second));
    assert!(
        body["url"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("/Contact/{second}/view")),
        "{body}"
    );
    ring(&world, "multi-1", "answered").await;
    ring(&world, "multi-1", "ended").await;
    drain(&world.api, std::time::Duration::from_secs(10)).await;
    let tasks = tasks_of(&world, "multi-1");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["WhoId"], json!(second));

    // The next call from the number pops the chosen Contact up directly.
    ring(&world, "multi-2", "ringing").await;
    let next = requests_for(&world, "1001", "multi-2");
    assert_eq!(next.len(), 1, "{next:?}");
    assert!(next[0].offered.is_empty(), "no second offer: {next:?}");
    assert!(
        next[0].url.ends_with(&format!("/Contact/{second}/view")),
        "{}",
        next[0].url
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pick_after_the_call_was_logged_moves_its_task() {
    let world = calls_world(Setup::default()).await;
    let (first, second) = two_contacts(&world);
    ring(&world, "multi-3", "ringing").await;
    ring(&world, "multi-3", "ended").await;
    drain(&world.api, std::time::Duration::from_secs(10)).await;
    let before = tasks_of(&world, "multi-3");
    assert_eq!(before.len(), 1, "{before:?}");
    let logged_on = before[0]["WhoId"].as_str().unwrap_or_default().to_string();
    let other = if logged_on == first { second } else { first };
    let me = agent(&world, "1001", PASSWORD_1001).await;
    let (status, body) = choose(&me, &world, "1001", "multi-3", &other).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = tasks_of(&world, "multi-3");
    assert_eq!(after.len(), 1, "the same Task: {after:?}");
    assert_eq!(after[0]["Id"], before[0]["Id"]);
    assert_eq!(after[0]["WhoId"], json!(other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_callers_pop_up_follows_the_call_settings() {
    let world = calls_world(Setup::default()).await;
    let page = |call_id: &str| {
        requests_for(&world, "1001", call_id)
            .first()
            .map(|r| r.url.clone())
    };
    let send = |call_id: &'static str, number: &'static str| {
        let world = &world;
        async move {
            let (status, body) = send_event(
                &world.host.url(),
                &world.host.admin_token,
                &call_event(call_id, "ringing", number, "1001", AT),
            )
            .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    send("unk-1", "212-555-0991").await;
    let url = page("unk-1").unwrap_or_default();
    assert!(
        url.ends_with("/lightning/o/Contact/new?defaultFieldValues=Phone=%2B12125550991"),
        "{url}"
    );
    for (value, call_id, number, object) in [
        ("lead", "unk-2", "212-555-0992", Some("Lead")),
        ("nothing", "unk-3", "212-555-0993", None),
    ] {
        world
            .api
            .put(
                "/crm/salesforce/settings",
                &json!({"settings": [{"key": "unknown-inbound", "value": value}]}),
            )
            .await
            .expect("settings");
        send(call_id, number).await;
        match object {
            Some(object) => {
                let url = page(call_id).unwrap_or_default();
                let digits = number.replace('-', "");
                assert!(
                    url.ends_with(&format!(
                        "/lightning/o/{object}/new?defaultFieldValues=Phone=%2B1{digits}"
                    )),
                    "{url}"
                );
            }
            None => assert_eq!(page(call_id), None, "no new-record page"),
        }
    }
}
