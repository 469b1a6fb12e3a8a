//! The CRM APIs over HTTPS: owners, search, calls with associations,
//! rate limits, scopes, faults.

mod common;

use std::time::Duration;

use common::*;
use hubspot_emulator::EmulatorConfig;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_page_with_after_and_link() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    for i in 0..24 {
        emu.add_owner(&format!("rep{i}@example.com"), "Rep", &format!("No{i}"));
    }
    let archived = emu.add_owner("gone@example.com", "Gone", "Away");
    emu.archive_owner(&archived).expect("archive");
    let token = access_token(&emu);
    let mut path = "/crm/v3/owners?limit=10".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let (status, page) = get_json(&emu, &client, &token, &path).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for o in page["results"].as_array().expect("results") {
            assert!(
                o["id"].is_string() && o["userId"].is_u64() && o["archived"] == false,
                "{o}"
            );
            assert!(
                o["createdAt"].as_str().is_some_and(|d| d.ends_with('Z')),
                "{o}"
            );
            seen.push(o["email"].as_str().expect("email").to_string());
        }
        let Some(next) = page["paging"]["next"].as_object() else {
            break;
        };
        let after = next["after"].as_str().expect("after");
        let link = next["link"].as_str().expect("link");
        assert!(
            link.contains(&format!("after={after}")) && link.contains("limit=10"),
            "{link}"
        );
        path = format!("/crm/v3/owners?limit=10&after={after}");
    }
    // The seeded admin and 24 reps, not the archived one, each once.
    assert_eq!((pages, seen.len()), (3, 25), "{seen:?}");
    assert!(!seen.iter().any(|e| e == "gone@example.com"));
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 25);

    let (_, by_email) = get_json(
        &emu,
        &client,
        &token,
        "/crm/v3/owners?email=REP7@example.com",
    )
    .await;
    assert_eq!(by_email["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(by_email["results"][0]["lastName"], "No7");
    let (_, gone) = get_json(&emu, &client, &token, "/crm/v3/owners?archived=true").await;
    assert_eq!(gone["results"][0]["email"], "gone@example.com");
    let (status, one) = get_json(
        &emu,
        &client,
        &token,
        &format!("/crm/v3/owners/{}?archived=true", archived),
    )
    .await;
    assert_eq!((status, one["archived"].as_bool()), (200, Some(true)));
    emu.shutdown().await;
}

fn seed_contacts(emu: &hubspot_emulator::Emulator) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..25 {
        let phone = format!("+1 415 555 {:04}", 100 + i);
        let name = format!("Caller{i:02}");
        let mut props = vec![
            ("firstname", name.as_str()),
            ("lastname", "Smith"),
            ("phone", phone.as_str()),
        ];
        let email = format!("caller{i}@acme.example");
        if i % 5 == 0 {
            props.push(("email", email.as_str()));
        }
        ids.push(emu.insert("contacts", &props).expect("insert"));
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_filters_sorts_and_pages() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let ids = seed_contacts(&emu);
    emu.insert(
        "contacts",
        &[("firstname", "Mobile"), ("mobilephone", "+44 20 7946 0958")],
    )
    .expect("insert");
    let token = access_token(&emu);
    let search = |body: Value| {
        let (emu, client, token) = (&emu, &client, &token);
        async move {
            json_of(post(emu, client, token, "/crm/v3/objects/contacts/search", &body).await).await
        }
    };

    // EQ on phone, properties chosen.
    let (status, r) = search(json!({
        "filterGroups": [{"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+1 415 555 0107"}]}],
        "properties": ["firstname", "phone"],
    }))
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["total"], 1);
    assert_eq!(r["results"][0]["id"], ids[7].as_str());
    assert_eq!(r["results"][0]["properties"]["firstname"], "Caller07");
    assert!(r["results"][0]["properties"].get("lastname").is_none());
    assert!(r.get("paging").is_none());

    // OR of groups: mobilephone or phone.
    let (_, r) = search(json!({
        "filterGroups": [
            {"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+44 20 7946 0958"}]},
            {"filters": [{"propertyName": "mobilephone", "operator": "EQ", "value": "+44 20 7946 0958"}]},
        ],
    }))
    .await;
    assert_eq!(r["total"], 1);
    assert_eq!(r["results"][0]["properties"]["firstname"], "Mobile");

    // AND in a group, HAS_PROPERTY, CONTAINS_TOKEN with a wildcard, NEQ.
    let (_, r) = search(json!({
        "filterGroups": [{"filters": [
            {"propertyName": "email", "operator": "HAS_PROPERTY"},
            {"propertyName": "email", "operator": "CONTAINS_TOKEN", "value": "*@acme.example"},
            {"propertyName": "firstname", "operator": "NEQ", "value": "caller00"},
        ]}],
        "sorts": [{"propertyName": "firstname", "direction": "DESCENDING"}],
        "properties": ["firstname"],
    }))
    .await;
    let names: Vec<&str> = r["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|c| c["properties"]["firstname"].as_str())
        .collect();
    assert_eq!(names, ["Caller20", "Caller15", "Caller10", "Caller05"]);

    // IN and NOT_HAS_PROPERTY, GT on a number-like id.
    let (_, r) = search(json!({
        "filterGroups": [{"filters": [
            {"propertyName": "firstname", "operator": "IN", "values": ["caller01", "Caller02", "Mobile"]},
            {"propertyName": "phone", "operator": "HAS_PROPERTY"},
        ]}],
    }))
    .await;
    assert_eq!(r["total"], 2);
    let (_, r) = search(json!({
        "filterGroups": [{"filters": [{"propertyName": "hs_object_id", "operator": "GT", "value": ids[20]}]}],
    }))
    .await;
    assert_eq!(r["total"], 5, "{r}");

    // Paging with limit and after until done.
    let mut after: Option<String> = None;
    let mut got = 0;
    let mut pages = 0;
    loop {
        let mut body = json!({
            "filterGroups": [{"filters": [{"propertyName": "lastname", "operator": "EQ", "value": "smith"}]}],
            "limit": 10,
        });
        if let Some(a) = &after {
            body["after"] = json!(a);
        }
        let (status, r) = search(body).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r["total"], 25);
        got += r["results"].as_array().map_or(0, Vec::len);
        pages += 1;
        match r["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_string()),
            None => break,
        }
    }
    assert_eq!((pages, got), (3, 25));

    // Bad input: an unknown operator, too many groups, a bad limit.
    let (status, r) = search(json!({"filterGroups": [{"filters": [{"propertyName": "phone", "operator": "LIKE", "value": "x"}]}]})).await;
    assert_eq!(
        (status, r["category"].as_str()),
        (400, Some("VALIDATION_ERROR")),
        "{r}"
    );
    let groups: Vec<Value> = (0..6)
        .map(|_| json!({"filters": [{"propertyName": "phone", "operator": "HAS_PROPERTY"}]}))
        .collect();
    let (status, _) = search(json!({"filterGroups": groups})).await;
    assert_eq!(status, 400);
    // Ten filters in a group and 25 in all are fine; one more is not.
    let filter = json!({"propertyName": "phone", "operator": "HAS_PROPERTY"});
    let group = |n: usize| json!({"filters": vec![filter.clone(); n]});
    let (status, r) = search(json!({"filterGroups": [group(10), group(10), group(5)]})).await;
    assert_eq!(status, 200, "{r}");
    let (status, _) = search(json!({"filterGroups": [group(11)]})).await;
    assert_eq!(status, 400);
    let (status, _) = search(json!({"filterGroups": [group(10), group(10), group(6)]})).await;
    assert_eq!(status, 400);
    // An `after` past the end (even the largest) is an empty page.
    let (status, r) = search(json!({"after": usize::MAX.to_string()})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["results"], json!([]));
    let (status, _) = search(json!({"limit": 201})).await;
    assert_eq!(status, 400);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_records_are_searchable_only_after_the_index_lag() {
    let (emu, client) = start(EmulatorConfig {
        search_lag: Duration::from_secs(5),
        ..EmulatorConfig::default()
    })
    .await;
    let token = access_token(&emu);
    let (status, created) = post_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/contacts",
        &json!({"properties": {"firstname": "Late", "phone": "+1 212 555 0199"}}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let body = json!({"filterGroups": [{"filters": [{"propertyName": "phone", "operator": "EQ", "value": "+1 212 555 0199"}]}]});
    let (_, r) = post_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/contacts/search",
        &body,
    )
    .await;
    assert_eq!(r["total"], 0, "{r}");
    // A read by id sees it at once.
    let (status, _) = get_json(
        &emu,
        &client,
        &token,
        &format!("/crm/v3/objects/contacts/{id}"),
    )
    .await;
    assert_eq!(status, 200);
    emu.advance_clock(Duration::from_secs(5));
    let (_, r) = post_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/contacts/search",
        &body,
    )
    .await;
    assert_eq!(r["total"], 1, "{r}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_crud_with_properties_and_id_property() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let token = access_token(&emu);
    let (status, c) = post_json(&emu,
            &client,
            &token,
            "/crm/v3/objects/contacts",
            &json!({"properties": {"email": "ann@example.org", "firstname": "Ann", "mobilephone": "+33 1 23 45 67 89"}}),
        ).await;
    assert_eq!(status, 201, "{c}");
    let id = c["id"].as_str().expect("id").to_string();
    assert_eq!(c["properties"]["hs_object_id"], id.as_str());
    assert_eq!(c["archived"], false);

    let (_, read) = get_json(
        &emu,
        &client,
        &token,
        &format!("/crm/v3/objects/contacts/{id}"),
    )
    .await;
    // Default properties: email, firstname, lastname (null), dates, id.
    let p = &read["properties"];
    assert_eq!(
        (p["email"].as_str(), p["firstname"].as_str()),
        (Some("ann@example.org"), Some("Ann"))
    );
    assert!(
        p["lastname"].is_null() && p["createdate"].is_string() && p.get("mobilephone").is_none(),
        "{read}"
    );
    let (_, read) = get_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/contacts/ann@example.org?idProperty=email&properties=mobilephone",
    )
    .await;
    assert_eq!(read["id"], id.as_str());
    assert_eq!(read["properties"]["mobilephone"], "+33 1 23 45 67 89");

    let patched = client
        .patch(format!("{}/crm/v3/objects/contacts/{id}", emu.base_url()))
        .bearer_auth(&token)
        .json(&json!({"properties": {"lastname": "Lee"}}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patched.status(), 200);
    let (_, list) = get_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/contacts?properties=lastname",
    )
    .await;
    assert_eq!(list["results"][0]["properties"]["lastname"], "Lee");

    let del = client
        .delete(format!("{}/crm/v3/objects/contacts/{id}", emu.base_url()))
        .bearer_auth(&token)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(del.status(), 204);
    let (status, err) = get_json(
        &emu,
        &client,
        &token,
        &format!("/crm/v3/objects/contacts/{id}"),
    )
    .await;
    assert_eq!(
        (status, err["category"].as_str()),
        (404, Some("OBJECT_NOT_FOUND"))
    );

    // Read-only properties and bad JSON are refused.
    let (status, err) = post_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/contacts",
        &json!({"properties": {"hs_object_id": "1"}}),
    )
    .await;
    assert_eq!(
        (status, err["category"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    let bad = client
        .post(format!("{}/crm/v3/objects/contacts", emu.base_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("POST");
    assert_eq!(bad.status(), 400);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_created_with_associations_and_listed_through_v4() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let token = access_token(&emu);
    let contact = emu
        .insert(
            "contacts",
            &[("firstname", "Bob"), ("phone", "+1 415 555 0100")],
        )
        .expect("contact");
    let company = emu
        .insert(
            "companies",
            &[("name", "Acme"), ("phone", "+1 415 555 0000")],
        )
        .expect("company");
    let owner = emu.owners()[0]["id"].as_str().expect("owner").to_string();
    let body = json!({
        "properties": {
            "hs_timestamp": "2025-03-01T12:00:00.000Z",
            "hs_call_title": "Inbound call",
            "hs_call_body": "Asked about pricing",
            "hs_call_direction": "INBOUND",
            "hs_call_disposition": "f240bbac-87c9-4f6e-bf70-924b57d47db7",
            "hs_call_duration": "65000",
            "hs_call_from_number": "+1 415 555 0100",
            "hs_call_to_number": "+1 415 555 0000",
            "hs_call_status": "COMPLETED",
            "hs_call_recording_url": "https://pbx.example.com/rec/1.wav",
            "hubspot_owner_id": owner,
        },
        "associations": [
            {"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]},
        ],
    });
    let (status, call) = post_json(&emu, &client, &token, "/crm/v3/objects/calls", &body).await;
    assert_eq!(status, 201, "{call}");
    let call_id = call["id"].as_str().expect("id").to_string();
    assert_eq!(call["properties"]["hs_call_title"], "Inbound call");
    assert_eq!(
        call["properties"]["hs_timestamp"],
        "2025-03-01T12:00:00.000Z"
    );

    // The v4 default association to the company.
    let put = client
        .put(format!(
            "{}/crm/v4/objects/calls/{call_id}/associations/default/companies/{company}",
            emu.base_url()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .expect("PUT");
    let (status, put) = json_of(put).await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["status"], "COMPLETE");
    assert_eq!(
        put["results"][0]["associationSpec"]["associationTypeId"],
        182
    );
    assert_eq!(
        put["results"][1]["associationSpec"]["associationTypeId"],
        181
    );
    assert_eq!(put["results"][0]["to"]["id"], company.as_str());

    let (status, a) = get_json(
        &emu,
        &client,
        &token,
        &format!("/crm/v4/objects/calls/{call_id}/associations/contacts"),
    )
    .await;
    assert_eq!(status, 200, "{a}");
    assert_eq!(
        a["results"][0]["toObjectId"]
            .as_u64()
            .map(|n| n.to_string()),
        Some(contact.clone())
    );
    assert_eq!(a["results"][0]["associationTypes"][0]["typeId"], 194);
    assert_eq!(
        a["results"][0]["associationTypes"][0]["category"],
        "HUBSPOT_DEFINED"
    );
    // Seen from the contact, the other direction's type.
    let (_, back) = get_json(
        &emu,
        &client,
        &token,
        &format!("/crm/v4/objects/contacts/{contact}/associations/calls"),
    )
    .await;
    assert_eq!(
        back["results"][0]["associationTypes"][0]["typeId"], 193,
        "{back}"
    );
    assert_eq!(
        emu.associations_of("calls", &call_id, "companies"),
        vec![(company.clone(), 182)]
    );

    // Read back with properties and associations.
    let (_, read) = get_json(&emu, &client, &token, &format!("/crm/v3/objects/calls/{call_id}?properties=hs_call_duration,hubspot_owner_id&associations=contacts,companies")).await;
    assert_eq!(read["properties"]["hs_call_duration"], "65000");
    assert_eq!(read["properties"]["hubspot_owner_id"], owner.as_str());
    assert_eq!(
        read["associations"]["contacts"]["results"][0]["id"],
        contact.as_str()
    );
    assert_eq!(
        read["associations"]["companies"]["results"][0]["id"],
        company.as_str()
    );

    // The handle sees the call.
    let calls = emu.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["properties"]["hs_call_recording_url"],
        "https://pbx.example.com/rec/1.wav"
    );

    // Refusals: no hs_timestamp, an association to nothing, a wrong type id,
    // a bad direction.
    for (props, assoc, what) in [
        (json!({"hs_call_title": "x"}), json!([]), "hs_timestamp"),
        (
            json!({"hs_timestamp": "1740830400000"}),
            json!([{"to": {"id": "999999"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 194}]}]),
            "999999",
        ),
        (
            json!({"hs_timestamp": "1740830400000"}),
            json!([{"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 1}]}]),
            "association type",
        ),
        (
            json!({"hs_timestamp": "1740830400000", "hs_call_direction": "SIDEWAYS"}),
            json!([]),
            "INBOUND",
        ),
    ] {
        let (status, err) = post_json(
            &emu,
            &client,
            &token,
            "/crm/v3/objects/calls",
            &json!({"properties": props, "associations": assoc}),
        )
        .await;
        assert_eq!(
            (status, err["category"].as_str()),
            (400, Some("VALIDATION_ERROR")),
            "{err}"
        );
        assert!(
            err["message"].as_str().is_some_and(|m| m.contains(what)),
            "{what}: {err}"
        );
    }
    assert_eq!(emu.calls().len(), 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_read_and_create() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let token = access_token(&emu);
    let (status, created) = post_json(&emu,
            &client,
            &token,
            "/crm/v3/objects/companies/batch/create",
            &json!({"inputs": [{"properties": {"name": "A", "phone": "1"}}, {"properties": {"name": "B"}}]}),
        ).await;
    assert_eq!(status, 201, "{created}");
    let ids: Vec<&str> = created["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2);
    let (status, read) = post_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/companies/batch/read",
        &json!({"inputs": [{"id": ids[1]}, {"id": "424242"}], "properties": ["name"]}),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["status"], "COMPLETE");
    assert_eq!(read["results"].as_array().map(Vec::len), Some(1));
    assert_eq!(read["results"][0]["properties"]["name"], "B");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_headers_until_the_window_rolls() {
    let (emu, client) = start(EmulatorConfig {
        rate_limit_per_10s: 3,
        ..EmulatorConfig::default()
    })
    .await;
    let token = access_token(&emu);
    for expected_remaining in [2, 1, 0] {
        let resp = get(&emu, &client, &token, "/crm/v3/owners").await;
        assert_eq!(resp.status(), 200);
        let h = resp.headers();
        assert_eq!(h["x-hubspot-ratelimit-max"], "3");
        assert_eq!(
            h["x-hubspot-ratelimit-remaining"],
            expected_remaining.to_string().as_str()
        );
        assert_eq!(h["x-hubspot-ratelimit-interval-milliseconds"], "10000");
        for name in [
            "x-hubspot-ratelimit-secondly",
            "x-hubspot-ratelimit-secondly-remaining",
        ] {
            assert!(h.get(name).is_some(), "{name}");
        }
        // OAuth calls have no daily limit: no Daily headers.
        assert!(h.get("x-hubspot-ratelimit-daily").is_none());
    }
    let resp = get(&emu, &client, &token, "/crm/v3/owners").await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["x-hubspot-ratelimit-remaining"], "0");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("secs");
    assert!((1..=10).contains(&retry), "{retry}");
    let (_, err) = json_of(resp).await;
    assert_eq!(err["status"], "error");
    assert_eq!(err["category"], "RATE_LIMITS");
    assert_eq!(err["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(
        err["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert!(err["correlationId"].is_string());
    // Errors carry the headers too (a 404 inside the budget, after the roll).
    emu.advance_clock(Duration::from_secs(10));
    let resp = get(&emu, &client, &token, "/crm/v3/objects/contacts/1").await;
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.headers()["x-hubspot-ratelimit-remaining"], "2");

    // A daily limit (a private app's) shows in headers and runs out.
    emu.set_daily_usage(8, 10);
    let resp = get(&emu, &client, &token, "/crm/v3/owners").await;
    assert_eq!(resp.headers()["x-hubspot-ratelimit-daily"], "10");
    assert_eq!(resp.headers()["x-hubspot-ratelimit-daily-remaining"], "1");
    emu.advance_clock(Duration::from_secs(10));
    assert_eq!(
        get(&emu, &client, &token, "/crm/v3/owners").await.status(),
        200
    );
    let (status, err) = get_json(&emu, &client, &token, "/crm/v3/owners").await;
    assert_eq!((status, err["policyName"].as_str()), (429, Some("DAILY")));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_have_a_per_second_limit_of_their_own() {
    let (emu, client) = start(EmulatorConfig {
        search_rate_per_second: Some(2),
        ..EmulatorConfig::default()
    })
    .await;
    let token = access_token(&emu);
    let search = "/crm/v3/objects/contacts/search";
    for _ in 0..2 {
        assert_eq!(
            post(&emu, &client, &token, search, &json!({}))
                .await
                .status(),
            200
        );
    }
    let resp = post(&emu, &client, &token, search, &json!({})).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "1");
    assert!(
        resp.headers()
            .get("x-hubspot-ratelimit-remaining")
            .is_some()
    );
    let (_, err) = json_of(resp).await;
    assert_eq!(
        (err["category"].as_str(), err["policyName"].as_str()),
        (Some("RATE_LIMITS"), Some("SECONDLY"))
    );
    // Other calls are not held back; a second later searches go again.
    assert_eq!(
        get(&emu, &client, &token, "/crm/v3/owners").await.status(),
        200
    );
    emu.advance_clock(Duration::from_secs(1));
    assert_eq!(
        post(&emu, &client, &token, search, &json!({}))
            .await
            .status(),
        200
    );
    emu.set_search_rate_limit(None);
    for _ in 0..5 {
        assert_eq!(
            post(&emu, &client, &token, search, &json!({}))
                .await
                .status(),
            200
        );
    }
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_scopes_answer_403() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let token = emu
        .issue_token(
            CLIENT_ID,
            EMAIL,
            Some(&["oauth", "crm.objects.contacts.read"]),
        )
        .expect("token")
        .access_token;
    let (status, err) = get_json(&emu, &client, &token, "/crm/v3/owners").await;
    assert_eq!(status, 403, "{err}");
    assert_eq!(err["category"], "MISSING_SCOPES");
    assert_eq!(
        err["errors"][0]["context"]["requiredGranularScopes"],
        json!(["crm.objects.owners.read"])
    );
    let (status, _) = get_json(&emu, &client, &token, "/crm/v3/objects/contacts").await;
    assert_eq!(status, 200);
    let (status, err) = post_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/contacts",
        &json!({"properties": {}}),
    )
    .await;
    assert_eq!(
        (status, err["category"].as_str()),
        (403, Some("MISSING_SCOPES"))
    );
    let (status, _) = post_json(
        &emu,
        &client,
        &token,
        "/crm/v3/objects/companies/search",
        &json!({}),
    )
    .await;
    assert_eq!(status, 403);
    assert!(emu.contacts().is_empty());
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_fail_drop_and_count() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let token = access_token(&emu);
    emu.fail_requests(1, 503);
    let (status, err) = get_json(&emu, &client, &token, "/crm/v3/owners").await;
    assert_eq!(status, 503);
    assert_eq!(err["status"], "error");
    assert_eq!(
        get(&emu, &client, &token, "/crm/v3/owners").await.status(),
        200
    );
    emu.drop_connections(1);
    let dropped = client
        .get(format!("{}/crm/v3/owners", emu.base_url()))
        .bearer_auth(&token)
        .send()
        .await;
    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(
        get(&emu, &client, &token, "/crm/v3/owners").await.status(),
        200
    );
    // Latency: every answer waits at least that long; cleared, it is gone.
    emu.set_latency(Duration::from_millis(300));
    let started = std::time::Instant::now();
    assert_eq!(
        get(&emu, &client, &token, "/crm/v3/owners").await.status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    emu.clear_faults();
    let counts = emu.request_counts();
    // The dropped one never reached the handlers: not counted.
    assert_eq!(counts.get("GET /crm/v3/owners"), Some(&4), "{counts:?}");
    assert_eq!(emu.request_count(), 4);
    emu.shutdown().await;
}
