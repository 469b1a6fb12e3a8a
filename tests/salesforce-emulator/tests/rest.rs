//! The REST API and the faults over HTTPS.

mod common;

use std::time::Duration;

use common::*;
use salesforce_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

async fn setup(users: usize) -> (Emulator, reqwest::Client, String) {
    let (emu, client) = start(EmulatorConfig {
        users,
        ..EmulatorConfig::default()
    })
    .await;
    let token = emu
        .issue_token(KEY, "admin@example.org")
        .unwrap()
        .access_token;
    (emu, client, token)
}

async fn get_json(emu: &Emulator, c: &reqwest::Client, t: &str, path: &str) -> (u16, Value) {
    let r = api_get(emu, c, t, path).await;
    let status = r.status().as_u16();
    assert!(
        r.headers().get("sforce-limit-info").is_some(),
        "Sforce-Limit-Info on {path}"
    );
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{path}"
    );
    (status, r.json().await.unwrap())
}

fn q(soql: &str) -> String {
    format!(
        "/services/data/v67.0/query?q={}",
        url::form_urlencoded::byte_serialize(soql.as_bytes()).collect::<String>()
    )
}

async fn send(
    emu: &Emulator,
    c: &reqwest::Client,
    t: &str,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> (u16, Value) {
    let r = c
        .request(method, format!("{}{path}", emu.base_url()))
        .bearer_auth(t)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_sessions_and_errors() {
    let (emu, c, t) = setup(10).await;
    let versions: Value = c
        .get(format!("{}/services/data/", emu.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        versions
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["version"] == "67.0" && v["url"] == "/services/data/v67.0")
    );

    let (status, body) = get_json(&emu, &c, "bogus", &q("SELECT Id FROM User")).await;
    assert_eq!(status, 401);
    assert_eq!(
        body,
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    let r = c
        .get(format!("{}{}", emu.base_url(), q("SELECT Id FROM User")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    for (soql, code) in [
        ("SELECT Id FROM User WHERE", "MALFORMED_QUERY"),
        ("SELECT Nope FROM User", "INVALID_FIELD"),
        ("SELECT Id FROM Nope", "INVALID_TYPE"),
    ] {
        let (status, body) = get_json(&emu, &c, &t, &q(soql)).await;
        assert_eq!(
            (status, body[0]["errorCode"].as_str()),
            (400, Some(code)),
            "{soql}: {body}"
        );
    }
    let (status, body) = get_json(&emu, &c, &t, "/services/data/v67.0/nothing/here").await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _) = get_json(&emu, &c, &t, "/services/data/v99.0/limits").await;
    assert_eq!(status, 404);
    let (_, sobjects) = get_json(&emu, &c, &t, "/services/data/v67.0/sobjects/").await;
    assert!(
        sobjects["sobjects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "Task" && s["keyPrefix"] == "00T")
    );
    let (_, describe) = get_json(&emu, &c, &t, "/services/data/v67.0/sobjects/Task/describe").await;
    let call_type = describe["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "CallType")
        .unwrap();
    assert_eq!(call_type["restrictedPicklist"], true);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_paging_and_filters() {
    let (emu, c, t) = setup(4500).await;
    let (_, first) = get_json(&emu, &c, &t, &q("SELECT Id, Name, Username FROM User")).await;
    assert_eq!(first["totalSize"], 4500);
    assert_eq!(first["done"], false);
    assert_eq!(first["records"].as_array().unwrap().len(), 2000);
    assert_eq!(first["records"][0]["attributes"]["type"], "User");
    let next = first["nextRecordsUrl"].as_str().unwrap().to_string();
    assert!(
        next.starts_with("/services/data/v67.0/query/01g") && next.ends_with("-2000"),
        "{next}"
    );
    let (_, second) = get_json(&emu, &c, &t, &next).await;
    let third_url = second["nextRecordsUrl"].as_str().unwrap().to_string();
    let (_, third) = get_json(&emu, &c, &t, &third_url).await;
    assert_eq!(third["done"], true);
    assert!(third.get("nextRecordsUrl").is_none());
    assert_eq!(third["records"].as_array().unwrap().len(), 500);

    // batchSize, clamped to 200..2000.
    let r = c
        .get(format!("{}{}", emu.base_url(), q("SELECT Id FROM User")))
        .bearer_auth(&t)
        .header("Sforce-Query-Options", "batchSize=50")
        .send()
        .await
        .unwrap();
    let small: Value = r.json().await.unwrap();
    assert_eq!(small["records"].as_array().unwrap().len(), 200);

    let (_, active) = get_json(
        &emu,
        &c,
        &t,
        &q("SELECT COUNT() FROM User WHERE IsActive = false"),
    )
    .await;
    assert_eq!(active["totalSize"], 4500 / 25);
    let (_, r) = get_json(
        &emu,
        &c,
        &t,
        &q("SELECT Id, Username FROM User WHERE (Username LIKE 'user1%' OR Username = 'ADMIN@example.org') AND IsActive = true ORDER BY Username DESC LIMIT 3"),
    )
    .await;
    let names: Vec<&str> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["Username"].as_str().unwrap())
        .collect();
    // Plain string order ('@' sorts after digits); user1999 is inactive.
    assert_eq!(
        names,
        vec![
            "user1@example.org",
            "user19@example.org",
            "user1998@example.org"
        ]
    );
    let (_, r) = get_json(
        &emu,
        &c,
        &t,
        &q("SELECT Id FROM Contact WHERE Phone IN ('(415) 555-0100', '+1 415-555-0101')"),
    )
    .await;
    assert_eq!(r["totalSize"], 2);
    let (_, r) = get_json(
        &emu,
        &c,
        &t,
        "/services/data/v67.0/queryAll/?q=SELECT+Id+FROM+Lead",
    )
    .await;
    assert_eq!(r["totalSize"], 10);
    let (status, r) = get_json(
        &emu,
        &c,
        &t,
        "/services/data/v67.0/query/01g5g0000000zzzAAA-2000",
    )
    .await;
    assert_eq!(
        (status, r[0]["errorCode"].as_str()),
        (400, Some("INVALID_QUERY_LOCATOR"))
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_types_and_changes_since_a_time() {
    let (emu, c, t) = setup(6).await;
    let chatter = emu
        .add_user(salesforce_emulator::NewUser {
            first_name: "Chatty".into(),
            last_name: "Free".into(),
            email: "chatty@example.org".into(),
            user_type: Some("CsnOnly".into()),
            ..Default::default()
        })
        .unwrap();
    let standard = |r: &Value| -> Vec<String> {
        r["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["Id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, r) = get_json(
        &emu,
        &c,
        &t,
        &q("SELECT Id, UserType FROM User WHERE IsActive = true AND UserType = 'Standard'"),
    )
    .await;
    assert!(!standard(&r).contains(&chatter), "{r}");
    assert_eq!(r["totalSize"], 6);
    // A type the org does not know is refused, as Salesforce's picklist is.
    let refused = emu.update_user(
        &chatter,
        json!({"UserType": "Wizard"}).as_object().unwrap().clone(),
    );
    assert!(refused.is_err());

    // The generated users were last changed in January 2025; since then
    // only the Chatter user was added. A rename, a deactivation and a new
    // type each bump SystemModstamp.
    let since = "2025-06-01T00:00:00Z";
    let changed = |since: &str| {
        q(&format!(
            "SELECT Id, Name, IsActive, UserType, SystemModstamp FROM User WHERE SystemModstamp > {since} ORDER BY SystemModstamp"
        ))
    };
    let (_, r) = get_json(&emu, &c, &t, &changed(since)).await;
    assert_eq!(standard(&r), [chatter.clone()], "{r}");
    let users = emu.users();
    let id = |i: usize| users[i]["Id"].as_str().unwrap().to_string();
    emu.update_user(
        &id(1),
        json!({"FirstName": "Renamed"}).as_object().unwrap().clone(),
    )
    .unwrap();
    emu.deactivate_user(&id(2)).unwrap();
    emu.update_user(
        &id(3),
        json!({"UserType": "PowerPartner"})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    let (_, r) = get_json(&emu, &c, &t, &changed(since)).await;
    let mut ids = standard(&r);
    ids.sort();
    let mut want = vec![chatter.clone(), id(1), id(2), id(3)];
    want.sort();
    assert_eq!(ids, want, "{r}");
    let stamps: Vec<&str> = r["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["SystemModstamp"].as_str().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "oldest first: {stamps:?}"
    );
    let record = |i: usize| {
        r["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["Id"] == id(i).as_str())
            .unwrap()
            .clone()
    };
    assert!(record(1)["Name"].as_str().unwrap().starts_with("Renamed "));
    assert_eq!(record(2)["IsActive"], false);
    assert_eq!(record(3)["UserType"], "PowerPartner");
    assert!(
        emu.update_user("005000000000000AAA", serde_json::Map::new())
            .is_err()
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_phone_and_name() {
    let (emu, c, t) = setup(10).await;
    let sosl = |s: &str| {
        format!(
            "/services/data/v67.0/search/?q={}",
            url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
        )
    };
    for term in [r"\+14155550100", "4155550100", r"\(415\) 555\-0100"] {
        let (status, r) = get_json(
            &emu,
            &c,
            &t,
            &sosl(&format!("FIND {{{term}}} IN PHONE FIELDS RETURNING Contact(Id, Name, Phone, OwnerId), Lead(Id, Name, Phone), Account(Id, Name, Phone)")),
        )
        .await;
        assert_eq!(status, 200, "{r}");
        let recs = r["searchRecords"].as_array().unwrap();
        assert_eq!(recs.len(), 1, "{term}: {r}");
        assert_eq!(recs[0]["Phone"], "(415) 555-0100");
        assert_eq!(recs[0]["attributes"]["type"], "Contact");
    }
    let (_, r) = get_json(
        &emu,
        &c,
        &t,
        &sosl("FIND {lead3@prospect.example.com} IN EMAIL FIELDS RETURNING Lead(Email)"),
    )
    .await;
    assert_eq!(r["searchRecords"][0]["Email"], "lead3@prospect.example.com");
    let (status, r) = get_json(&emu, &c, &t, &sosl("FIND 4155550100")).await;
    assert_eq!(
        (status, r[0]["errorCode"].as_str()),
        (400, Some("MALFORMED_SEARCH"))
    );

    // Search-index lag: a new contact is queryable at once but not searchable.
    emu.faults().search_lag(Duration::from_secs(3600));
    let (status, created) = send(
        &emu,
        &c,
        &t,
        reqwest::Method::POST,
        "/services/data/v67.0/sobjects/Contact/",
        json!({"LastName": "New", "Phone": "+1 212 555 0199"}),
    )
    .await;
    assert_eq!(status, 201);
    let find = sosl("FIND {2125550199} IN PHONE FIELDS RETURNING Contact(Id)");
    let (_, r) = get_json(&emu, &c, &t, &find).await;
    assert_eq!(r["searchRecords"].as_array().unwrap().len(), 0);
    let (_, r) = get_json(
        &emu,
        &c,
        &t,
        &q(&format!(
            "SELECT Id FROM Contact WHERE Id = '{}'",
            created["id"].as_str().unwrap()
        )),
    )
    .await;
    assert_eq!(r["totalSize"], 1);
    emu.faults().clear();
    emu.insert(
        "Contact",
        json!({"LastName": "Visible", "Phone": "2125550198"})
            .as_object()
            .unwrap()
            .clone(),
    )
    .unwrap();
    let (_, r) = get_json(
        &emu,
        &c,
        &t,
        &sosl("FIND {2125550198} IN PHONE FIELDS RETURNING Contact(Id)"),
    )
    .await;
    assert_eq!(r["searchRecords"].as_array().unwrap().len(), 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sobjects_create_read_update_validate() {
    let (emu, c, t) = setup(10).await;
    let post =
        |path: &'static str, body: Value| send(&emu, &c, &t, reqwest::Method::POST, path, body);
    let (status, created) = post(
        "/services/data/v67.0/sobjects/Task/",
        json!({"Subject": "Call", "TaskSubtype": "Call", "CallType": "Inbound", "CallObject": "pbx-1", "CallDurationInSeconds": 30}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["success"], true);
    assert_eq!(created["errors"], json!([]));
    let id = created["id"].as_str().unwrap().to_string();
    let (_, task) = get_json(
        &emu,
        &c,
        &t,
        &format!("/services/data/v67.0/sobjects/Task/{id}"),
    )
    .await;
    assert_eq!(task["Status"], "Not Started");
    assert_eq!(task["Priority"], "Normal");
    assert!(task["CreatedDate"].as_str().unwrap().ends_with("+0000"));
    let (_, task15) = get_json(
        &emu,
        &c,
        &t,
        &format!(
            "/services/data/v67.0/sobjects/Task/{}?fields=Id,CallObject",
            &id[..15]
        ),
    )
    .await;
    assert_eq!(
        task15,
        json!({"attributes": task["attributes"], "Id": id, "CallObject": "pbx-1"})
    );
    let (_, by_call) = get_json(
        &emu,
        &c,
        &t,
        &q("SELECT Id FROM Task WHERE CallObject = 'pbx-1'"),
    )
    .await;
    assert_eq!(by_call["records"][0]["Id"], id);

    let (status, _) = send(
        &emu,
        &c,
        &t,
        reqwest::Method::PATCH,
        &format!("/services/data/v67.0/sobjects/Task/{id}"),
        json!({"Status": "Completed"}),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(emu.tasks()[0]["IsClosed"], true);

    for (path, body, code) in [
        (
            "/services/data/v67.0/sobjects/Contact/",
            json!({"FirstName": "x"}),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "/services/data/v67.0/sobjects/Lead/",
            json!({"LastName": "x"}),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "/services/data/v67.0/sobjects/Account/",
            json!({}),
            "REQUIRED_FIELD_MISSING",
        ),
        (
            "/services/data/v67.0/sobjects/Task/",
            json!({"CallType": "Sideways"}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            "/services/data/v67.0/sobjects/Task/",
            json!({"TaskSubtype": "Fax"}),
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ),
        (
            "/services/data/v67.0/sobjects/Task/",
            json!({"Bogus": 1}),
            "INVALID_FIELD",
        ),
        (
            "/services/data/v67.0/sobjects/Task/",
            json!({"WhoId": "123"}),
            "MALFORMED_ID",
        ),
        (
            "/services/data/v67.0/sobjects/Task/",
            json!([1]),
            "JSON_PARSER_ERROR",
        ),
    ] {
        let (status, body) = post(path, body).await;
        assert_eq!(
            (status, body[0]["errorCode"].as_str()),
            (400, Some(code)),
            "{path}: {body}"
        );
        assert!(body[0]["message"].is_string());
    }
    let (status, body) = post(
        "/services/data/v67.0/sobjects/Contact/",
        json!({"FirstName": "x"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body[0]["fields"], json!(["LastName"]));
    let missing = format!(
        "/services/data/v67.0/sobjects/Contact/{}",
        salesforce_emulator::ids::make_id("003", 99_999)
    );
    let (status, body) = get_json(&emu, &c, &t, &missing).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (404, Some("NOT_FOUND"))
    );
    let (status, _) = send(
        &emu,
        &c,
        &t,
        reqwest::Method::PATCH,
        &missing,
        json!({"LastName": "y"}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = post("/services/data/v67.0/sobjects/Nope/", json!({})).await;
    assert_eq!(status, 404);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn composite_references_and_all_or_none() {
    let (emu, c, t) = setup(10).await;
    let (status, r) = send(
        &emu,
        &c,
        &t,
        reqwest::Method::POST,
        "/services/data/v67.0/composite",
        json!({"allOrNone": true, "compositeRequest": [
            {"method": "POST", "url": "/services/data/v67.0/sobjects/Contact", "referenceId": "newContact", "body": {"LastName": "Caller", "Phone": "+15550001111"}},
            {"method": "POST", "url": "/services/data/v67.0/sobjects/Task", "referenceId": "log", "body": {"Subject": "Call", "WhoId": "@{newContact.id}", "CallObject": "c-1"}},
            {"method": "GET", "url": "/services/data/v67.0/sobjects/Task/@{log.id}?fields=WhoId", "referenceId": "check"}
        ]}),
    )
    .await;
    assert_eq!(status, 200);
    let results = r["compositeResponse"].as_array().unwrap();
    assert_eq!(results[0]["httpStatusCode"], 201);
    assert!(
        results[0]["httpHeaders"]["Location"]
            .as_str()
            .unwrap()
            .contains("/sobjects/Contact/003")
    );
    assert_eq!(results[2]["body"]["WhoId"], results[0]["body"]["id"]);
    assert_eq!(results[2]["referenceId"], "check");
    let contacts_before = emu.contacts().len();

    // allOrNone: a failure rolls back the earlier subrequests.
    let (_, r) = send(
        &emu,
        &c,
        &t,
        reqwest::Method::POST,
        "/services/data/v67.0/composite",
        json!({"allOrNone": true, "compositeRequest": [
            {"method": "POST", "url": "/services/data/v67.0/sobjects/Contact", "referenceId": "a", "body": {"LastName": "RolledBack"}},
            {"method": "POST", "url": "/services/data/v67.0/sobjects/Task", "referenceId": "b", "body": {"CallType": "Bad"}},
            {"method": "POST", "url": "/services/data/v67.0/sobjects/Task", "referenceId": "c", "body": {"Subject": "x"}}
        ]}),
    )
    .await;
    let results = r["compositeResponse"].as_array().unwrap();
    assert_eq!(results[0]["httpStatusCode"], 400);
    assert_eq!(results[0]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(
        results[1]["body"][0]["errorCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(results[2]["body"][0]["errorCode"], "PROCESSING_HALTED");
    assert_eq!(emu.contacts().len(), contacts_before);
    assert_eq!(emu.tasks().len(), 1);
    // The whole composite counted as API calls once each.
    assert_eq!(emu.request_counts()["POST composite"], 2);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_limits() {
    let (emu, c, t) = setup(10).await;
    let path = q("SELECT Id FROM Lead LIMIT 1");

    // Sforce-Limit-Info counts calls.
    let r = api_get(&emu, &c, &t, &path).await;
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=1/100000");

    emu.faults().limit_exceeded(2);
    for _ in 0..2 {
        let (status, body) = get_json(&emu, &c, &t, &path).await;
        assert_eq!(
            (status, body[0]["errorCode"].as_str()),
            (403, Some("REQUEST_LIMIT_EXCEEDED"))
        );
    }
    assert_eq!(get_json(&emu, &c, &t, &path).await.0, 200);

    emu.faults().fail_requests(1, 503);
    assert_eq!(get_json(&emu, &c, &t, &path).await.0, 503);
    assert_eq!(get_json(&emu, &c, &t, &path).await.0, 200);

    // A dropped connection: the client sees an error, not a response.
    emu.faults().drop_connections(1);
    let err = c
        .get(format!("{}{path}", emu.base_url()))
        .bearer_auth(&t)
        .send()
        .await;
    assert!(err.is_err(), "{err:?}");
    assert_eq!(get_json(&emu, &c, &t, &path).await.0, 200);

    // The daily budget runs out.
    emu.faults().set_api_usage(99_999, 100_000);
    assert_eq!(get_json(&emu, &c, &t, &path).await.0, 200);
    let (status, body) = get_json(&emu, &c, &t, &path).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (403, Some("REQUEST_LIMIT_EXCEEDED"))
    );
    emu.faults().set_api_usage(0, 100_000);

    // Expire every session.
    emu.expire_sessions();
    assert_eq!(get_json(&emu, &c, &t, &path).await.0, 401);

    // Latency, over the admin endpoint.
    let r = c
        .post(format!("{}/__admin/faults", emu.base_url()))
        .json(&json!({"latency_ms": 150}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t2 = emu
        .issue_token(KEY, "admin@example.org")
        .unwrap()
        .access_token;
    let start = std::time::Instant::now();
    assert_eq!(get_json(&emu, &c, &t2, &path).await.0, 200);
    assert!(start.elapsed() >= Duration::from_millis(150));
    let r = c
        .delete(format!("{}/__admin/faults", emu.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["latency_ms"], 0);
    let bad = c
        .post(format!("{}/__admin/faults", emu.base_url()))
        .json(&json!({"nonsense": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let (emu, c, t) = setup(10).await;
    let base = emu.base_url();
    let state: Value = c
        .get(format!("{base}/__admin/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["record_counts"]["User"], 10);
    assert_eq!(state["org_id"], emu.org_id());
    let r = c
        .post(format!("{base}/__admin/users"))
        .json(&json!({"first_name": "New", "last_name": "Hire", "email": "new.hire@example.org", "extension": "777"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c
        .post(format!("{base}/__admin/users/{id}/deactivate"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, u) = get_json(
        &emu,
        &c,
        &t,
        &q(&format!(
            "SELECT IsActive, Extension FROM User WHERE Id = '{id}'"
        )),
    )
    .await;
    assert_eq!(u["records"][0]["IsActive"], false);
    assert_eq!(u["records"][0]["Extension"], "777");
    let r = c
        .patch(format!("{base}/__admin/apps/{KEY}"))
        .json(&json!({"rotate_refresh_tokens": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap()["rotate_refresh_tokens"],
        true
    );
    let r = c
        .post(format!("{base}/__admin/apps"))
        .json(&json!({"consumer_key": "k2", "consumer_secret": "s2", "callback_urls": ["https://x/cb"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let tok: Value = c
        .post(format!("{base}/__admin/tokens"))
        .json(&json!({"consumer_key": "k2"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(tok["access_token"].is_string());
    let counts: Value = c
        .get(format!("{base}/__admin/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(counts["GET query"], 1);
    let stats: Value = c
        .get(format!("{base}/__admin/token-stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["per_app"]["k2"]["authorization_code_grants"], 1);
    let tasks: Value = c
        .get(format!("{base}/__admin/tasks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tasks, json!([]));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_use_is_counted_reported_and_set_from_the_org_file_or_the_control_api() {
    // The org file starts it near the limit.
    let seed = salesforce_emulator::Seed::from_toml(
        "[api_usage]\nused = 13500\nmax = 15000\n\n[[contacts]]\nLastName = \"Only\"\n",
    )
    .unwrap();
    let (emu, c) = start(EmulatorConfig {
        seed: Some(seed),
        ..EmulatorConfig::default()
    })
    .await;
    let t = emu
        .issue_token(KEY, "admin@example.org")
        .unwrap()
        .access_token;
    assert_eq!(emu.api_usage(), (13_500, 15_000));

    // The version list is not counted and says nothing.
    let r = api_get(&emu, &c, &t, "/services/data/").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("sforce-limit-info").is_none());
    assert_eq!(emu.api_usage(), (13_500, 15_000));

    // Every other answer counts one and says the figures, errors too.
    let r = api_get(&emu, &c, &t, &q("SELECT Id FROM Contact")).await;
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=13501/15000");
    let r = api_get(&emu, &c, &t, &q("SELECT Nope FROM Contact")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=13502/15000");
    let (_, limits) = get_json(&emu, &c, &t, "/services/data/v67.0/limits").await;
    assert_eq!(
        limits["DailyApiRequests"],
        json!({"Max": 15000, "Remaining": 1497})
    );

    // The control API sets it, e.g. back to a quiet day.
    let r = c
        .post(format!("{}/__admin/faults", emu.base_url()))
        .json(&json!({"api_usage": {"used": 20}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = api_get(&emu, &c, &t, &q("SELECT Id FROM Contact")).await;
    assert_eq!(r.headers()["sforce-limit-info"], "api-usage=21/15000");
    emu.shutdown().await;
}
