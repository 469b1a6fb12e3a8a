//! The host on the shared store (`serve --store redis://…`) against a real
//! Redis server started for the test: the administrator's whole set-up
//! and a call logged once, the state in Redis and sealed there, a host
//! restarted on it, and a Redis outage that loses nothing acknowledged.

use std::time::Duration;

use e2e_tests::Options;
use e2e_tests::org::{Setup, call_event, calls_world, drain, send_call, send_event, tasks_of};
use redis::Commands;
use serde_json::{Map, Value, json};

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;

fn on(server: &redis_kit::RedisServer) -> Setup {
    Setup {
        host: Options {
            store: Some(server.url()),
            ..Options::default()
        },
        ..Setup::default()
    }
}

fn contact(world: &e2e_tests::org::World, phone: &str) -> String {
    let fields: Map<String, Value> = json!({"LastName": "Redis", "Phone": phone})
        .as_object()
        .cloned()
        .expect("object");
    world.org.insert("Contact", fields).expect("contact")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_set_up_runs_on_redis_and_survives_a_host_restart() {
    let server = redis_kit::RedisServer::start_durable();
    // Connect, sync, associate: all of it through a host on Redis.
    let world = calls_world(on(&server)).await;
    assert!(
        !world.data_dir.join(pbx_host::store::DB_FILE).exists(),
        "the embedded store was not used"
    );
    let who = contact(&world, "+1 212 555 0170");
    send_call(&world, "redis-1", "(212) 555-0170", "1001", NOON).await;
    drain(&world.api, Duration::from_secs(30)).await;
    let tasks = tasks_of(&world, "redis-1");
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0]["WhoId"], who.as_str());

    // The state is in Redis, sealed: no token or secret in clear.
    let mut conn = redis::Client::open(server.url())
        .and_then(|c| c.get_connection())
        .expect("raw connection");
    let keys: Vec<String> = conn.keys("pbx:{plugin/salesforce}:*").expect("keys");
    assert!(
        keys.len() > 10,
        "the plugin's namespace is in Redis: {keys:?}"
    );
    let mut secrets = world.org.live_tokens();
    assert!(!secrets.is_empty(), "the plugin holds live tokens");
    secrets.push(e2e_tests::org::CONSUMER_SECRET.to_string());
    let all: Vec<String> = conn.keys("*").expect("keys");
    for key in &all {
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut conn).expect("type");
        if kind != "string" {
            continue;
        }
        let value: Vec<u8> = conn.get(key).expect("value");
        let text = String::from_utf8_lossy(&value);
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{key} holds a secret in clear"
            );
        }
    }

    // A new host process on the same data directory and Redis: still
    // connected, still associated; the call's events again make no second
    // Task.
    let world = world.restarted().await;
    assert_eq!(world.status().await["state"], "Connected");
    let (code, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event("redis-1", "ended", "(212) 555-0170", "1001", NOON),
    )
    .await;
    assert!(code < 300, "{code} {body}");
    send_call(&world, "redis-2", "(212) 555-0170", "1001", NOON + 1).await;
    drain(&world.api, Duration::from_secs(30)).await;
    assert_eq!(tasks_of(&world, "redis-1").len(), 1);
    assert_eq!(tasks_of(&world, "redis-2").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_answers_clearly_and_loses_no_acknowledged_call() {
    let mut server = redis_kit::RedisServer::start_durable();
    let world = calls_world(on(&server)).await;
    contact(&world, "+1 212 555 0171");
    send_call(&world, "before-outage", "(212) 555-0171", "1001", NOON).await;
    // The administrator's portal session, opened before the outage.
    let (portal, session) = e2e_tests::portal_session(&world.host).await;

    server.stop();
    // The portal says what is wrong instead of asking for a login.
    let page = portal
        .get(format!("{}/", world.host.url()))
        .header("cookie", &session)
        .send()
        .await
        .expect("the portal answers while Redis is down");
    assert_eq!(page.status().as_u16(), 503);
    let html = page.text().await.expect("page");
    assert!(html.contains("cannot reach its store"), "{html}");
    assert!(
        html.contains("redis://127.0.0.1"),
        "it names the store: {html}"
    );
    let api = portal
        .get(format!("{}/api/extensions", world.host.url()))
        .header("cookie", &session)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(
        api.status().as_u16(),
        503,
        "not a 401: the session is not lost"
    );
    // While Redis is down the host answers at once, 503 with Retry-After,
    // and takes on nothing it could not store: the PBX sends it again.
    let answer = reqwest::Client::new()
        .post(format!("{}/api/calls/events", world.host.url()))
        .bearer_auth(&world.host.admin_token)
        .json(&call_event(
            "during-outage",
            "ended",
            "(212) 555-0171",
            "1001",
            NOON + 1,
        ))
        .send()
        .await
        .expect("the host answers while Redis is down");
    assert_eq!(answer.status().as_u16(), 503);
    assert_eq!(
        answer
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("5")
    );
    let body: Value = answer.json().await.expect("a JSON error");
    assert_eq!(body["kind"], "store", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("redis://127.0.0.1"),
        "it says which store: {body}"
    );

    server.restart();
    // The PBX's retry, once Redis is back.
    let mut delivered = false;
    for _ in 0..10 {
        let (code, body) = send_event(
            &world.host.url(),
            &world.host.admin_token,
            &call_event("during-outage", "ended", "(212) 555-0171", "1001", NOON + 1),
        )
        .await;
        if code < 300 && body["delivered"] == true {
            delivered = true;
            break;
        }
    }
    assert!(delivered, "the host takes events again after Redis is back");
    // Back: the same session is still good.
    let back = portal
        .get(format!("{}/api/extensions", world.host.url()))
        .header("cookie", &session)
        .send()
        .await
        .expect("the API answers");
    assert_eq!(back.status().as_u16(), 200);
    drain(&world.api, Duration::from_secs(30)).await;
    assert_eq!(tasks_of(&world, "before-outage").len(), 1);
    assert_eq!(tasks_of(&world, "during-outage").len(), 1);
}
