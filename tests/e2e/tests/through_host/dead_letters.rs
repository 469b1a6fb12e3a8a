//! The call journal's bounds: a full retry queue and an event out of
//! attempts make dead letters (never a silent loss, never an endless
//! queue); the dead letters are bounded, survive a restart, and the
//! administrator lists, retries and discards them through the API and the
//! CLI (and nobody else may).

use std::time::Duration;

use e2e_tests::org::{Setup, World, call_event, calls_world, send_event};
use e2e_tests::{Options, admin, pbx_at, start_host};
use serde_json::{Map, Value, json};

const NOON: u64 = 1_768_478_400_000;
const NUMBER: &str = "+1 212 555 0164";
const OTHER: &str = "+1 212 555 0165";

async fn dead_letters(world: &World) -> Vec<Value> {
    world
        .api
        .get("/calls/dead-letters")
        .await
        .expect("dead letters")["dead_letters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn ids(letters: &[Value]) -> Vec<String> {
    letters
        .iter()
        .filter_map(|l| l["id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_queue_is_bounded_and_what_it_gives_up_is_a_dead_letter() {
    let options = Options {
        deadline_ms: Some(500),
        // No tick but the ones the test asks for (run-pending), so the
        // attempts counted are the test's.
        journal_interval_ms: Some(3_600_000),
        journal_queue_max: Some(2),
        journal_max_attempts: Some(2),
        journal_dead_letters_max: Some(2),
        ..Options::default()
    };
    let world = calls_world(Setup {
        host: options.clone(),
        ..Setup::default()
    })
    .await;
    let contact: Map<String, Value> = json!({"LastName": "Slow", "Phone": NUMBER})
        .as_object()
        .cloned()
        .unwrap_or_default();
    world.org.insert("Contact", contact).expect("contact");
    // Every plugin call now runs past its deadline.
    world.org.faults().latency(Duration::from_millis(1_500));
    let send = |call: &'static str, number: &str| {
        let event = call_event(call, "ringing", number, "1001", NOON);
        let (url, token) = (world.host.url(), world.host.admin_token.clone());
        async move { send_event(&url, &token, &event).await }
    };
    for call in ["dl-a", "dl-b"] {
        let (status, body) = send(call, NUMBER).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["plugins"][0]["queued"], true, "{body}");
    }
    // The queue holds two: the third is a dead letter at once, and says so.
    let (status, body) = send("dl-c", NUMBER).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["plugins"][0]["queued"], false, "{body}");
    let c_id = body["plugins"][0]["dead_letter"]
        .as_str()
        .unwrap_or_else(|| panic!("no dead letter: {body}"))
        .to_string();
    let letters = dead_letters(&world).await;
    assert_eq!(ids(&letters), std::slice::from_ref(&c_id));
    assert_eq!(letters[0]["call_id"], "dl-c");
    assert_eq!(letters[0]["phase"], "ringing");
    assert!(
        letters[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("--journal-queue-max")),
        "{letters:?}"
    );
    assert_eq!(world.status().await["queued_call_events"], 2);

    // A second failure is the last attempt: both queued events are dead
    // letters, the queue is empty, and only the two newest dead letters
    // are kept.
    let report = world
        .api
        .post("/calls/run-pending", &json!({}))
        .await
        .expect("run-pending");
    assert_eq!(report["dead_lettered"], 2, "{report}");
    assert_eq!(report["still_queued"], 0, "{report}");
    assert_eq!(world.status().await["queued_call_events"], 0);
    let letters = dead_letters(&world).await;
    let calls: Vec<&str> = letters
        .iter()
        .filter_map(|l| l["call_id"].as_str())
        .collect();
    assert_eq!(calls.len(), 2, "{letters:?}");
    assert!(
        !calls.contains(&"dl-c"),
        "the oldest was dropped: {letters:?}"
    );
    assert!(
        letters.iter().all(|l| l["attempts"] == 2
            && l["reason"]
                .as_str()
                .is_some_and(|r| r.contains("--journal-max-attempts"))),
        "{letters:?}"
    );
    let (a_id, b_id) = (ids(&letters)[0].clone(), ids(&letters)[1].clone());

    // Nobody but the administrator sees or touches them.
    let anonymous = reqwest::Client::new();
    let base = format!("{}/api/calls/dead-letters", world.host.url());
    for response in [
        anonymous.get(&base).send().await,
        anonymous.post(format!("{base}/{a_id}/retry")).send().await,
        anonymous.delete(format!("{base}/{a_id}")).send().await,
    ] {
        assert_eq!(response.expect("answer").status(), 401);
    }
    assert_eq!(dead_letters(&world).await.len(), 2);

    // The CLI lists them; a retry that fails again keeps the dead letter.
    let dir = world.data_dir.clone();
    let pbx = |args: &[&str]| tokio::task::block_in_place(|| pbx_at(Some(&dir), args, ""));
    let (ok, listed, err) = pbx(&["call", "dead-letters"]);
    assert!(ok, "{err}");
    assert!(listed.contains(&a_id) && listed.contains(&b_id), "{listed}");
    let (ok, _, err) = pbx(&["call", "retry", &a_id]);
    assert!(!ok, "the plugin is still too slow");
    assert!(err.contains("the dead letter is kept"), "{err}");
    assert_eq!(dead_letters(&world).await.len(), 2);

    // The plugin is well again: a retry delivers, a discard forgets.
    world.org.faults().clear();
    let (ok, out, err) = pbx(&["call", "retry", &a_id]);
    assert!(ok, "{err}");
    assert!(out.contains("Delivered"), "{out}");
    let (ok, _, err) = pbx(&["call", "discard", &b_id]);
    assert!(ok, "{err}");
    assert!(dead_letters(&world).await.is_empty());
    for (ok, _, err) in [
        pbx(&["call", "retry", &a_id]),
        pbx(&["call", "discard", "nope"]),
    ] {
        assert!(!ok);
        assert!(err.contains("no dead letter has the id"), "{err}");
    }

    // Dead letters are kept in the store: they outlive a restart. (A
    // number the plugin has not looked up yet, so the call needs the org.)
    let other: Map<String, Value> = json!({"LastName": "Slower", "Phone": OTHER})
        .as_object()
        .cloned()
        .unwrap_or_default();
    world.org.insert("Contact", other).expect("contact");
    world.org.faults().latency(Duration::from_millis(1_500));
    let (status, body) = send("dl-d", OTHER).await;
    assert_eq!(status, 202, "{body}");
    let (_, body) = send("dl-d", OTHER).await;
    // The same event failing again (the PBX resent it) is its second attempt.
    let d_id = body["plugins"][0]["dead_letter"]
        .as_str()
        .unwrap_or_else(|| panic!("no dead letter: {body}"))
        .to_string();
    world.org.faults().clear();
    let World {
        org,
        host,
        data_dir,
        ca_path,
        dir: _dir,
        ..
    } = world;
    host.shutdown().await;
    let host = start_host(
        &data_dir,
        Options {
            grants: vec![format!("salesforce={}", org.base_url())],
            trust_ca: vec![ca_path],
            ..options
        },
    )
    .await;
    let listed = admin(&host)
        .get("/calls/dead-letters")
        .await
        .expect("dead letters");
    assert_eq!(listed["dead_letters"][0]["id"], d_id.as_str(), "{listed}");
    assert_eq!(listed["limits"]["dead_letters_max"], 2, "{listed}");
    host.shutdown().await;
}
