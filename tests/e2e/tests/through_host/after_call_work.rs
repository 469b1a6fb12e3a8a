//! After-call work through the real host against the emulated org: the
//! administrator's dispositions list (`/api/call-dispositions`, the
//! administrator's only), and the agent's notes and disposition for a call
//! of their extension (`POST /agent/{extension}/calls/{call_id}/work`),
//! which update the call's one Task: never a second Task, and a refused
//! request changes nothing. Assertions are on the org's state.

use std::time::Duration;

use e2e_tests::api_call;
use e2e_tests::org::{Setup, World, calls_world, drain, send_call, send_event, tasks_of};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};

use crate::popups::agent;

const AT: u64 = 1_768_478_400_000;
const NUMBER: &str = "+1 212 555 0190";
const PASSWORD_1001: &str = "hunter2-for-1001";
const PASSWORD_1002: &str = "hunter2-for-1002";

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

/// The caller, a Contact on [`NUMBER`].
fn caller(world: &World) -> String {
    world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Worker", "FirstName": "Wes", "Phone": NUMBER})),
        )
        .expect("contact")
}

/// The administrator's list, as the API has it.
async fn listed(world: &World) -> Value {
    let (status, body) = api_call(&world.host, Method::GET, "/call-dispositions", None).await;
    assert_eq!(status, 200, "{body}");
    body["dispositions"].clone()
}

/// Save `work` (any JSON) for `call_id` of `extension` as `client`.
async fn save(
    client: &reqwest::Client,
    world: &World,
    extension: &str,
    call_id: &str,
    work: &Value,
) -> (StatusCode, Value) {
    let answer = client
        .post(format!(
            "{}/agent/{extension}/calls/{call_id}/work",
            world.host.url()
        ))
        .json(work)
        .send()
        .await
        .expect("answer");
    let status = answer.status();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// `extension`'s recent calls as its agent `client` sees them.
async fn recent_calls(client: &reqwest::Client, world: &World, extension: &str) -> Value {
    client
        .get(format!("{}/agent/{extension}/calls", world.host.url()))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("JSON")
}

/// Task updates the org has had.
fn patches(world: &World) -> u64 {
    world
        .org
        .request_counts()
        .get("PATCH sobjects/Task/{id}")
        .copied()
        .unwrap_or(0)
}

/// The one Task of `call_id` (fails when there are none or several).
fn the_task(world: &World, call_id: &str) -> Value {
    let tasks = tasks_of(world, call_id);
    assert_eq!(tasks.len(), 1, "one Task for {call_id}: {tasks:?}");
    tasks[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_administrator_edits_the_dispositions_and_a_bad_list_changes_nothing() {
    let world = calls_world(Setup::default()).await;
    assert_eq!(listed(&world).await, json!([]), "none until set");
    let (status, body) = api_call(
        &world.host,
        Method::PUT,
        "/call-dispositions",
        Some(&json!({"dispositions": [" Left message ", "Sale"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dispositions"], json!(["Left message", "Sale"]));
    assert_eq!(listed(&world).await, json!(["Left message", "Sale"]));

    // Not the administrator: nobody, and an agent's session.
    let url = format!("{}/api/call-dispositions", world.host.url());
    let evil = json!({"dispositions": ["Evil"]});
    let anonymous = reqwest::Client::new();
    let answer = anonymous.get(&url).send().await.expect("answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let answer = anonymous
        .put(&url)
        .json(&evil)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let me = agent(&world, "1001", PASSWORD_1001).await;
    let answer = me.put(&url).json(&evil).send().await.expect("answer");
    assert_eq!(
        answer.status(),
        StatusCode::UNAUTHORIZED,
        "an agent is not the administrator"
    );
    let answer = reqwest::Client::new()
        .put(&url)
        .bearer_auth("not-the-admin-token")
        .json(&evil)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    // Bad lists: 400 naming the fix, the field, and nothing changed.
    let too_many: Vec<String> = (0..51).map(|i| format!("D{i}")).collect();
    for (bad, says) in [
        (json!({"dispositions": ["Sale", "sale"]}), "twice"),
        (
            json!({"dispositions": ["Sale", "  "]}),
            "1 to 80 characters",
        ),
        (
            json!({"dispositions": ["x".repeat(81)]}),
            "1 to 80 characters",
        ),
        (json!({"dispositions": ["a\u{0}b"]}), "control characters"),
        (json!({"dispositions": too_many}), "at most 50"),
        (json!({"dispositions": "Sale"}), "send {\"dispositions\""),
        (json!({}), "the list is missing"),
    ] {
        let (status, body) =
            api_call(&world.host, Method::PUT, "/call-dispositions", Some(&bad)).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["field"], "dispositions", "{body}");
        assert!(
            body["error"].as_str().unwrap_or_default().contains(says),
            "{bad}: {body}"
        );
    }
    assert_eq!(
        listed(&world).await,
        json!(["Left message", "Sale"]),
        "refusals change nothing"
    );

    // An empty list is a list: agents then pick none.
    let (status, body) = api_call(
        &world.host,
        Method::PUT,
        "/call-dispositions",
        Some(&json!({"dispositions": []})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(listed(&world).await, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_work_updates_the_calls_one_task_and_refusals_change_nothing() {
    let world = calls_world(Setup::default()).await;
    let who = caller(&world);
    let (status, body) = api_call(
        &world.host,
        Method::PUT,
        "/call-dispositions",
        Some(&json!({"dispositions": ["Left message", "Sale"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    send_call(&world, "acw-1", NUMBER, "1001", AT).await;
    drain(&world.api, Duration::from_secs(30)).await;
    let logged = the_task(&world, "acw-1");
    assert_eq!(logged["WhoId"], json!(who));
    let patched = patches(&world);

    // Refusals, each before any plugin is called.
    let good = json!({"notes": "Wants a quote", "disposition": "Sale"});
    let (status, _) = save(&reqwest::Client::new(), &world, "1001", "acw-1", &good).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "anonymous");
    let other = agent(&world, "1002", PASSWORD_1002).await;
    let (status, body) = save(&other, &world, "1001", "acw-1", &good).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another extension: {body}");
    let (status, body) = save(&other, &world, "1002", "acw-1", &good).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "not 1002's call: {body}");
    let me = agent(&world, "1001", PASSWORD_1001).await;
    let (status, body) = save(&me, &world, "1001", "no-such-call", &good).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = save(
        &me,
        &world,
        "1001",
        "acw-1",
        &json!({"notes": "x", "disposition": "Sold"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "disposition", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("pick one of: Left message, Sale"),
        "{body}"
    );
    for (bad, field) in [
        (json!({"notes": "x".repeat(4001)}), "notes"),
        (json!({"notes": "bell\u{7}"}), "notes"),
        (json!({"notes": "  ", "disposition": ""}), "notes"),
        (json!({}), "notes"),
        (json!({"notes": 5}), "body"),
        (json!({"notes": "x", "record": "y"}), "body"),
    ] {
        let (status, body) = save(&me, &world, "1001", "acw-1", &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["field"], field, "{bad}: {body}");
    }
    // Not JSON, and from another site: refused too.
    let url = format!("{}/agent/1001/calls/acw-1/work", world.host.url());
    let answer = me
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("notes=x")
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let answer = me
        .post(&url)
        .header("sec-fetch-site", "cross-site")
        .json(&good)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), StatusCode::FORBIDDEN, "cross-site");
    assert_eq!(
        the_task(&world, "acw-1"),
        logged,
        "the refusals changed the Task"
    );
    assert_eq!(patches(&world), patched, "no refusal reached the org");

    // The work: the same Task, updated once; the list's spelling.
    let (status, body) = save(
        &me,
        &world,
        "1001",
        "acw-1",
        &json!({"notes": "Wants a quote", "disposition": " sale "}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["disposition"], "Sale", "{body}");
    assert_eq!(body["plugins"][0]["ok"], true, "{body}");
    assert_eq!(
        body["plugins"][0]["outcome"][0]["action"], "Updated",
        "{body}"
    );
    let task = the_task(&world, "acw-1");
    assert_eq!(task["Id"], logged["Id"], "the same Task");
    assert_eq!(task["CallDisposition"], "Sale", "{task}");
    let description = task["Description"].as_str().unwrap_or_default();
    assert!(
        description.ends_with("\n\nAgent notes:\nWants a quote"),
        "{description}"
    );
    let before = logged["Description"].as_str().unwrap_or_default();
    assert!(
        description.starts_with(before),
        "the call's own lines stay: {description}"
    );
    assert_eq!(patches(&world), patched + 1, "one update");

    // Saved again: the notes replaced, the disposition kept, still one Task.
    let (status, body) = save(
        &me,
        &world,
        "1001",
        "acw-1",
        &json!({"notes": "Sent the quote"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task = the_task(&world, "acw-1");
    assert_eq!(task["Id"], logged["Id"]);
    assert_eq!(task["CallDisposition"], "Sale");
    let description = task["Description"].as_str().unwrap_or_default();
    assert_eq!(
        description.matches("Agent notes:").count(),
        1,
        "{description}"
    );
    assert!(description.ends_with("Sent the quote"), "{description}");
    assert!(!description.contains("Wants a quote"), "{description}");

    // The page's list of calls has the work and the dispositions.
    let calls: Value = me
        .get(format!("{}/agent/1001/calls", world.host.url()))
        .send()
        .await
        .expect("answer")
        .json()
        .await
        .expect("json");
    assert_eq!(calls["dispositions"], json!(["Left message", "Sale"]));
    assert_eq!(calls["calls"][0]["call_id"], "acw-1");
    assert_eq!(calls["calls"][0]["work"]["notes"], "Sent the quote");
    assert_eq!(calls["calls"][0]["work"]["disposition"], "Sale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_saved_during_the_call_goes_into_its_task_when_it_is_logged() {
    let world = calls_world(Setup::default()).await;
    caller(&world);
    let (status, body) = api_call(
        &world.host,
        Method::PUT,
        "/call-dispositions",
        Some(&json!({"dispositions": ["Left message"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut event = e2e_tests::org::call_event("acw-2", "ringing", NUMBER, "1001", AT);
    let (status, body) = send_event(&world.host.url(), &world.host.admin_token, &event).await;
    assert_eq!(status, 200, "{body}");
    let me = agent(&world, "1001", PASSWORD_1001).await;
    let work = json!({"notes": "Called about the invoice", "disposition": "Left message"});
    let (status, body) = save(&me, &world, "1001", "acw-2", &work).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["plugins"][0]["outcome"][0]["action"], "Queued",
        "{body}"
    );
    assert!(tasks_of(&world, "acw-2").is_empty(), "not logged yet");

    for phase in ["answered", "ended"] {
        event = e2e_tests::org::call_event("acw-2", phase, NUMBER, "1001", AT);
        let (status, body) = send_event(&world.host.url(), &world.host.admin_token, &event).await;
        assert_eq!(status, 200, "{body}");
    }
    drain(&world.api, Duration::from_secs(30)).await;
    let task = the_task(&world, "acw-2");
    assert_eq!(task["CallDisposition"], "Left message", "{task}");
    assert!(
        task["Description"]
            .as_str()
            .unwrap_or_default()
            .ends_with("Agent notes:\nCalled about the invoice"),
        "{task}"
    );
}

/// The agent page's recent calls are kept in the store: after a host
/// restart the agent still adds work to a call from before it, and the
/// call's one Task gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_on_a_call_from_before_a_host_restart_lands_on_its_task() {
    let world = calls_world(Setup::default()).await;
    caller(&world);
    send_call(&world, "acw-3", NUMBER, "1001", AT).await;
    drain(&world.api, Duration::from_secs(30)).await;
    let before = the_task(&world, "acw-3");

    let world = world.restarted().await;
    let me = agent(&world, "1001", PASSWORD_1001).await;
    let calls = recent_calls(&me, &world, "1001").await;
    assert_eq!(calls["calls"][0]["call_id"], "acw-3", "{calls}");
    assert_eq!(calls["calls"][0]["phase"], "ended", "{calls}");
    let work = json!({"notes": "Call back on Monday"});
    let (status, body) = save(&me, &world, "1001", "acw-3", &work).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let task = the_task(&world, "acw-3");
    assert_eq!(task["Id"], before["Id"], "the same Task");
    assert!(
        task["Description"]
            .as_str()
            .unwrap_or_default()
            .ends_with("Agent notes:\nCall back on Monday"),
        "{task}"
    );
    // The saved work is on the kept call too.
    let calls = recent_calls(&me, &world, "1001").await;
    assert_eq!(
        calls["calls"][0]["work"]["notes"], "Call back on Monday",
        "{calls}"
    );
}
