//! Caller lookup through the real host against the emulated org's phone
//! search: the E.164 `+` reaches the org escaped (the org refuses it
//! unescaped, as Salesforce documents), and UK and German callers stored in
//! their usual international and national formats pop up the right record.

use e2e_tests::org::{CONSUMER_KEY, Setup, World, call_event, calls_world, send_event};
use serde_json::{Map, Value, json};

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

/// Ring extension 1001 from `number`; the URL of the pop-up it opened.
async fn ring(world: &World, call_id: &str, number: &str) -> Option<String> {
    let (status, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event(call_id, "ringing", number, "1001", NOON),
    )
    .await;
    assert_eq!(status, 200, "{number}: {body}");
    let requests = world
        .api
        .get("/browser-requests?after=0")
        .await
        .expect("requests");
    requests["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .find(|r| r["caption"]["call_id"] == call_id)
        .and_then(|r| r["url"].as_str())
        .map(str::to_string)
}

fn record_url(world: &World, object: &str, id: &str) -> String {
    format!("{}/lightning/r/{object}/{id}/view", world.org.base_url())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uk_and_german_callers_pop_up_their_record_from_international_and_national_formats() {
    let world = calls_world(Setup::default()).await;
    let insert = |object: &str, f: Value| world.org.insert(object, fields(f)).expect("record");
    // Stored as people type them: with the country code, or nationally
    // (then the plugin's second search, the national number, finds them).
    let london = insert(
        "Contact",
        json!({"LastName": "London", "Phone": "+44 20 7946 0958"}),
    );
    let manchester = insert(
        "Contact",
        json!({"LastName": "Manchester", "Phone": "0161 496 0000"}),
    );
    let berlin = insert(
        "Lead",
        json!({"LastName": "Berlin", "Company": "B GmbH", "Phone": "+49 (0)30 901820"}),
    );
    let munich = insert(
        "Account",
        json!({"Name": "München AG", "Phone": "089 123456"}),
    );
    let with_extension = insert(
        "Contact",
        json!({"LastName": "Desk", "Phone": "(415) 555-0142 x305"}),
    );
    let searches_before = world.org.request_counts().get("GET search").copied();
    for (call, number, object, id) in [
        ("uk-1", "+44 20 7946 0958", "Contact", &london),
        ("uk-2", "+441614960000", "Contact", &manchester),
        ("de-1", "+49 30 901820", "Lead", &berlin),
        ("de-2", "+49 89 123456", "Account", &munich),
        ("us-1", "+1 415 555 0142", "Contact", &with_extension),
    ] {
        assert_eq!(
            ring(&world, call, number).await,
            Some(record_url(&world, object, id)),
            "{number} must pop up {object} {id}"
        );
    }
    // Another country's number ending alike is nobody (a US number in
    // Maine, 207): its pop-up is the new Contact page.
    let maine = ring(&world, "us-2", "+1 207 946 0958").await;
    assert!(
        maine
            .as_deref()
            .is_some_and(|u| u.contains("/lightning/o/Contact/new") && !u.contains(&london)),
        "{maine:?}"
    );
    let searches_after = world.org.request_counts().get("GET search").copied();
    assert!(
        searches_after.unwrap_or(0) > searches_before.unwrap_or(0),
        "the lookups went to the org's search"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_org_refuses_an_unescaped_plus_and_the_plugin_escapes_it() {
    let world = calls_world(Setup::default()).await;
    let token = world
        .org
        .issue_token(CONSUMER_KEY, "admin@example.org")
        .expect("a token");
    let search = |term: &str| {
        let q = format!("FIND {{{term}}} IN PHONE FIELDS RETURNING Contact(Id, Phone)");
        let url = format!("{}/services/data/v67.0/search/", world.org.base_url());
        let client = world.browser();
        let token = token.access_token.clone();
        async move {
            let response = client
                .get(url)
                .query(&[("q", q)])
                .bearer_auth(token)
                .send()
                .await
                .expect("the org answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = search("+44 20 7946 0958").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body[0]["errorCode"], "MALFORMED_SEARCH", "{body}");
    assert!(
        body[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'+'")),
        "{body}"
    );
    let (status, body) = search(r"\+44 20 7946 0958").await;
    assert_eq!(status, 200, "{body}");

    let id = world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Plus", "Phone": "+44 20 7946 0000"})),
        )
        .expect("contact");
    let (status, found) = world
        .api
        .get("/calls/lookup?number=%2B442079460000")
        .await
        .map(|v| (200, v))
        .unwrap_or_else(|e| (0, json!(e.to_string())));
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["best"]["id"], id.as_str(), "{found}");
    assert_eq!(found["number"], "+442079460000", "{found}");
}
