//! Calls through the real host against the emulated org: caller lookup in
//! every number format, the Task of a call with every field, exactly-once
//! logging (repeats, disorder, a killed host, an org outage, a plugin call
//! past its deadline), unknown callers, bad numbers, click-to-call and the
//! `pbx-host call` CLI. Assertions are on the org's state.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_tests::org::{
    Setup, World, call_event, calls_world, drain, send_call, send_event, tasks_of, user_id,
};
use e2e_tests::{binary, pbx_at};
use pbx_host::cli::AdminClient;
use serde_json::{Map, Value, json};

/// 2026-01-15 12:00:00 UTC: the same calendar day in the Americas and Europe.
const NOON: u64 = 1_768_478_400_000;

fn fields(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("an object")
}

async fn lookup(world: &World, number: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/calls/lookup", world.host.url()))
        .query(&[("number", number)])
        .bearer_auth(&world.host.admin_token)
        .send()
        .await
        .expect("the host answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn event(world: &World, event: &Value) -> (u16, Value) {
    send_event(&world.host.url(), &world.host.admin_token, event).await
}

const FORMATS: [&str; 6] = [
    "(212) 555-0147",
    "+1 212-555-0147",
    "212.555.0147",
    "2125550147",
    "+12125550147",
    "1 (212) 555 0147",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_is_found_from_every_format_and_the_winner_is_documented() {
    let world = calls_world(Setup::default()).await;
    let mut contacts = Vec::new();
    for (i, phone) in FORMATS.iter().enumerate() {
        let id = world
            .org
            .insert(
                "Contact",
                fields(json!({"LastName": format!("Format{i}"), "Phone": phone})),
            )
            .expect("contact");
        contacts.push(id);
        // Distinct modification times: the newest must win.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for query in FORMATS {
        let (status, found) = lookup(&world, query).await;
        assert_eq!(status, 200, "{query}: {found}");
        assert_eq!(found["number"], "+12125550147", "{query}: {found}");
        let mut ids: Vec<String> = found["others"]
            .as_array()
            .expect("others")
            .iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_string())
            .collect();
        ids.push(found["best"]["id"].as_str().unwrap_or_default().to_string());
        ids.sort();
        let mut expected = contacts.clone();
        expected.sort();
        assert_eq!(ids, expected, "{query} must find all six: {found}");
        assert_eq!(
            found["best"]["id"],
            contacts[5].as_str(),
            "the most recently modified Contact wins: {found}"
        );
        assert_eq!(found["name"], "Format5", "{found}");
    }

    // Contact, then Lead, then Account, whatever was modified last.
    let account = world
        .org
        .insert(
            "Account",
            fields(json!({"Name": "Shared Line Inc", "Phone": "+1 (646) 555-0190"})),
        )
        .expect("account");
    let lead = world
        .org
        .insert(
            "Lead",
            fields(json!({"LastName": "Leady", "Company": "L", "Phone": "646.555.0190"})),
        )
        .expect("lead");
    let contact = world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Contacty", "Phone": "6465550190"})),
        )
        .expect("contact");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let newer_lead = world
        .org
        .insert(
            "Lead",
            fields(json!({"LastName": "Newer", "Company": "N", "Phone": "+16465550190"})),
        )
        .expect("lead");
    let (status, found) = lookup(&world, "646-555-0190").await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["best"]["id"], contact.as_str(), "{found}");
    assert_eq!(found["best"]["object_type"], "Contact", "{found}");
    let others: Vec<&str> = found["others"]
        .as_array()
        .expect("others")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        others,
        vec![newer_lead.as_str(), lead.as_str(), account.as_str()],
        "Leads (newest first) before the Account: {found}"
    );

    let (status, unknown) = lookup(&world, "+1 303 555 0111").await;
    assert_eq!(status, 200, "{unknown}");
    assert_eq!(unknown["best"], Value::Null, "{unknown}");
    assert_eq!(unknown["number"], "+13035550111", "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_call_is_one_task_with_every_field() {
    let world = calls_world(Setup::default()).await;
    let account = world
        .org
        .insert(
            "Account",
            fields(json!({"Name": "Globex", "Phone": "+1 (212) 555-0160"})),
        )
        .expect("account");
    let contact = world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Simpson", "FirstName": "Homer", "Phone": "(212) 555-0160", "AccountId": account})),
        )
        .expect("contact");
    let recording = "https://pbx.example.com/recordings/task-1.wav";
    for phase in ["ringing", "answered", "ended"] {
        let mut e = call_event("task-1", phase, "212-555-0160", "1001", NOON);
        if phase == "ended" {
            e["recording_url"] = json!(recording);
        }
        let (status, body) = event(&world, &e).await;
        assert_eq!(status, 200, "{phase}: {body}");
        assert_eq!(body["delivered"], true, "{phase}: {body}");
    }
    let report = drain(&world.api, Duration::from_secs(30)).await;
    let tasks = tasks_of(&world, "task-1");
    assert_eq!(tasks.len(), 1, "{report} {tasks:?}");
    let t = &tasks[0];
    assert!(
        t["Subject"]
            .as_str()
            .is_some_and(|s| s.to_lowercase().contains("call")),
        "{t}"
    );
    assert_eq!(t["TaskSubtype"], "Call", "{t}");
    assert_eq!(t["CallType"], "Inbound", "{t}");
    assert_eq!(t["CallDurationInSeconds"], 60, "talk time: {t}");
    assert_eq!(t["CallDisposition"], "answered", "{t}");
    assert_eq!(t["CallObject"], "task-1", "{t}");
    assert_eq!(t["WhoId"], contact.as_str(), "{t}");
    assert_eq!(t["WhatId"], account.as_str(), "{t}");
    assert_eq!(
        t["OwnerId"],
        user_id(&world, "admin@example.org").as_str(),
        "{t}"
    );
    assert_eq!(t["ActivityDate"], "2026-01-15", "{t}");
    assert_eq!(t["Status"], "Completed", "{t}");
    assert!(
        t["Description"]
            .as_str()
            .is_some_and(|d| d.contains(recording)),
        "{t}"
    );
    let status = world.status().await;
    assert_eq!(status["pending_call_logs"], 0, "{status}");
    assert_eq!(status["queued_call_events"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_out_of_order_events_log_one_task() {
    let world = calls_world(Setup::default()).await;
    let number = "+1 212 555 0161";
    // Ended first, then the rest, then everything again, some at once.
    let order = [
        "ended", "ringing", "answered", "ended", "answered", "ringing", "ended",
    ];
    for phase in order {
        let (status, body) = event(&world, &call_event("dup-1", phase, number, "1001", NOON)).await;
        assert!(status < 300, "{phase}: {status} {body}");
    }
    let again = call_event("dup-1", "ended", number, "1001", NOON);
    let bursts = (0..5).map(|_| event(&world, &again));
    for (status, body) in futures::future::join_all(bursts).await {
        assert!(status < 300, "{status} {body}");
    }
    drain(&world.api, Duration::from_secs(30)).await;
    assert_eq!(tasks_of(&world, "dup-1").len(), 1);
    // A later run changes nothing.
    drain(&world.api, Duration::from_secs(5)).await;
    assert_eq!(tasks_of(&world, "dup-1").len(), 1);
}

/// A `pbx-host serve` child process on `data_dir`.
struct ChildHost {
    child: Child,
    api: AdminClient,
    url: String,
    token: String,
}

async fn serve_child(world_dir: &std::path::Path, org: &str, ca: &std::path::Path) -> ChildHost {
    let data_dir = world_dir.join("pbx");
    let url_file = data_dir.join("admin-url");
    let _ = std::fs::remove_file(&url_file);
    let child = Command::new(binary("pbx-host"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--journal-interval-ms",
            "300",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--grant")
        .arg(format!("salesforce={org}"))
        .arg("--trust-ca")
        .arg(ca)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pbx-host serve starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !url_file.exists() {
        assert!(
            Instant::now() < deadline,
            "pbx-host serve never wrote admin-url"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let api = AdminClient::from_data_dir(&data_dir).expect("admin client");
    let url = std::fs::read_to_string(&url_file)
        .expect("admin-url")
        .trim()
        .to_string();
    let token = std::fs::read_to_string(data_dir.join("admin-token"))
        .expect("admin-token")
        .trim()
        .to_string();
    ChildHost {
        child,
        api,
        url,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_killed_between_ended_and_create_logs_the_call_once_after_restart() {
    let world = calls_world(Setup::default()).await;
    let World {
        org,
        host,
        api,
        ca_path,
        dir,
        ..
    } = world;
    drop(api);
    host.shutdown().await;

    let mut first = serve_child(dir.path(), &org.base_url(), &ca_path).await;
    let counts_before = org.request_counts().values().sum::<u64>();
    // Every org request now takes a while: the Task create will be in
    // flight when the host dies.
    org.faults().latency(Duration::from_millis(1500));
    let ended = call_event("kill-1", "ended", "+1 212 555 0162", "1001", NOON);
    let (status, body) = send_event(&first.url, &first.token, &ended).await;
    assert!(status < 300, "{status} {body}");
    // The ended event kicked the journal: wait until the plugin's delivery
    // has reached the org once, then kill the host in the middle of the
    // next request (the create, or the create's answer).
    let deadline = Instant::now() + Duration::from_secs(30);
    while org.request_counts().values().sum::<u64>() == counts_before {
        assert!(
            Instant::now() < deadline,
            "the plugin never reached the org"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    first.child.kill().expect("kill -9 the host");
    let _ = first.child.wait();
    let killed_with = tasks_of_org(&org, "kill-1").len();

    org.faults().clear();
    let mut second = serve_child(dir.path(), &org.base_url(), &ca_path).await;
    // The ticker alone (every 300 ms) must deliver it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tasks_of_org(&org, "kill-1").is_empty() {
        assert!(Instant::now() < deadline, "no Task after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = second
        .api
        .get("/crm/salesforce/status")
        .await
        .expect("status");
    let _ = second.child.kill();
    let _ = second.child.wait();
    assert_eq!(
        tasks_of_org(&org, "kill-1").len(),
        1,
        "{killed_with} Task(s) when killed; status after restart {status}"
    );
    assert_eq!(status["pending_call_logs"], 0, "{status}");
}

fn tasks_of_org(org: &salesforce_emulator::Emulator, call_id: &str) -> Vec<Value> {
    org.tasks()
        .into_iter()
        .filter(|t| t["CallObject"] == call_id)
        .collect()
}

/// Calls `out-N` for each N of `range` (ringing, answered, ended), then one
/// delivery run; its report.
async fn calls_then_a_delivery_run(world: &World, range: std::ops::Range<u64>) -> Value {
    for i in range {
        send_call(
            world,
            &format!("out-{i}"),
            "+1 212 555 0163",
            "1001",
            NOON + i,
        )
        .await;
    }
    world
        .api
        .post("/calls/run-pending", &json!({}))
        .await
        .expect("run-pending")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_org_outage_loses_no_call_and_doubles_none() {
    let world = calls_world(Setup::default()).await;
    // 503s for a while...
    world.org.faults().fail_requests(10_000, 503);
    let report = calls_then_a_delivery_run(&world, 0..4).await;
    assert!(world.org.tasks().is_empty(), "{report}");
    let status = world.status().await;
    assert!(
        status["pending_call_logs"].as_u64().unwrap_or(0) >= 4,
        "the waiting call logs show in the status: {status}"
    );
    // ...then connections closed without an answer...
    world.org.faults().clear();
    world.org.faults().drop_connections(10_000);
    calls_then_a_delivery_run(&world, 4..8).await;
    assert!(world.org.tasks().is_empty());
    // ...then nothing listening at all (connection refused)...
    world.org.faults().clear();
    world.org.go_down().await;
    let report = calls_then_a_delivery_run(&world, 8..12).await;
    assert!(world.org.tasks().is_empty(), "{report}");
    assert!(
        world.status().await["pending_call_logs"]
            .as_u64()
            .unwrap_or(0)
            >= 12,
        "every call log waits while the org is unreachable"
    );
    // ...then the org is back.
    world.org.come_back().await;
    let report = drain(&world.api, Duration::from_secs(60)).await;
    for i in 0..12 {
        assert_eq!(
            tasks_of(&world, &format!("out-{i}")).len(),
            1,
            "out-{i}: {report}"
        );
    }
    assert_eq!(world.org.tasks().len(), 12);
    assert_eq!(world.status().await["pending_call_logs"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_the_plugins_deadline_is_kept_by_the_host_and_delivered_again() {
    let world = calls_world(Setup {
        host: e2e_tests::Options {
            deadline_ms: Some(1_000),
            ..e2e_tests::Options::default()
        },
        ..Setup::default()
    })
    .await;
    world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Slow", "Phone": "+1 212 555 0164"})),
        )
        .expect("contact");
    world.org.faults().latency(Duration::from_millis(2_500));
    let (status, body) = event(
        &world,
        &call_event("late-1", "ringing", "+1 212 555 0164", "1001", NOON),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["plugins"][0]["queued"], true, "{body}");
    assert_eq!(body["plugins"][0]["kind"], "deadline", "{body}");
    assert_eq!(world.status().await["queued_call_events"], 1);
    world.org.faults().clear();
    for phase in ["answered", "ended"] {
        let (status, body) = event(
            &world,
            &call_event("late-1", phase, "+1 212 555 0164", "1001", NOON),
        )
        .await;
        assert!(status < 300, "{body}");
    }
    let report = drain(&world.api, Duration::from_secs(30)).await;
    assert_eq!(world.status().await["queued_call_events"], 0, "{report}");
    assert_eq!(tasks_of(&world, "late-1").len(), 1, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_unknown_caller_twice_within_the_search_lag_is_one_contact() {
    let world = calls_world(Setup::default()).await;
    world.org.faults().search_lag(Duration::from_secs(600));
    let contacts_before = world.org.contacts().len();
    send_call(&world, "new-1", "+1 (303) 555-0177", "1001", NOON).await;
    drain(&world.api, Duration::from_secs(30)).await;
    send_call(&world, "new-2", "303.555.0177", "1001", NOON + 120_000).await;
    drain(&world.api, Duration::from_secs(30)).await;
    let created: Vec<Value> = world
        .org
        .contacts()
        .into_iter()
        .filter(|c| {
            c["Phone"].as_str().is_some_and(|p| {
                p.chars()
                    .filter(char::is_ascii_digit)
                    .collect::<String>()
                    .ends_with("3035550177")
            })
        })
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(world.org.contacts().len(), contacts_before + 1);
    let id = created[0]["Id"].clone();
    for call in ["new-1", "new-2"] {
        let tasks = tasks_of(&world, call);
        assert_eq!(tasks.len(), 1, "{call}");
        assert_eq!(tasks[0]["WhoId"], id, "{call}: {tasks:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_numbers_get_a_clear_answer_and_the_host_keeps_serving() {
    let world = calls_world(Setup::default()).await;
    let refused_by_the_host = [
        "",
        "   ",
        "call me",
        "+1 415 CALL NOW",
        "1234567890123456789012345678901234567890",
        "+1 415 555 0100 0000 000",
        "41+55550100",
        "+1;415",
        "\u{260e} 415",
    ];
    for number in refused_by_the_host {
        let (status, body) = event(
            &world,
            &call_event("bad-1", "ringing", number, "1001", NOON),
        )
        .await;
        assert_eq!(status, 400, "{number:?}: {body}");
        assert_eq!(body["field"], "external_number", "{number:?}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains("e.g.")),
            "the fix is named: {body}"
        );
        let (status, body) = lookup(&world, number).await;
        assert_eq!(status, 400, "{number:?}: {body}");
        assert_eq!(body["field"], "number", "{number:?}: {body}");
    }
    // Dialable characters but no real number: the plugin decides, clearly.
    for number in ["+", "1", "+1 (415", "000", "+999 1234"] {
        let (status, body) = lookup(&world, number).await;
        assert!(
            status == 200 || status == 400,
            "{number:?}: {status} {body}"
        );
        assert!(
            status == 200 || body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body}"
        );
        let (status, body) =
            event(&world, &call_event("bad-2", "ended", number, "1001", NOON)).await;
        assert!(status < 500, "{number:?}: {status} {body}");
    }
    // Other broken events name their field.
    for (field, value) in [
        ("call_id", json!("")),
        ("phase", json!("hung-up")),
        ("direction", json!(3)),
        ("extension", json!("")),
        ("started_at_ms", json!("yesterday")),
    ] {
        let mut e = call_event("bad-3", "ringing", "+14155550100", "1001", NOON);
        e[field] = value;
        let (status, body) = event(&world, &e).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["field"], field, "{body}");
    }
    // Still serving.
    let host = world.api.get("/host").await.expect("the host answers");
    assert_eq!(host["runtime"]["failed_calls"], 0, "{host}");
    let (status, body) = lookup(&world, "+14155550100").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn click_to_call_needs_an_associated_extension() {
    let world = calls_world(Setup::default()).await;
    let dialed = world
        .api
        .post(
            "/calls/dial",
            &json!({"extension": "1001", "number": "(415) 555-0100"}),
        )
        .await
        .expect("an associated extension may dial");
    assert_eq!(dialed["number"], "+14155550100", "{dialed}");
    assert_eq!(dialed["extension"], "1001", "{dialed}");
    let list = world
        .api
        .get("/calls/originations")
        .await
        .expect("originations");
    assert_eq!(
        list["originations"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
    assert_eq!(list["originations"][0]["number"], "+14155550100");

    let refused = world
        .api
        .post(
            "/calls/dial",
            &json!({"extension": "1003", "number": "(415) 555-0100"}),
        )
        .await
        .expect_err("1003 is associated with nobody");
    let message = format!("{refused:#}");
    assert!(message.contains("associat"), "the fix is named: {message}");
    let unknown = world
        .api
        .post(
            "/calls/dial",
            &json!({"extension": "1999", "number": "(415) 555-0100"}),
        )
        .await
        .expect_err("no such extension");
    assert!(format!("{unknown:#}").contains("1999"), "{unknown:#}");
    let letters = world
        .api
        .post(
            "/calls/dial",
            &json!({"extension": "1001", "number": "call mom"}),
        )
        .await
        .expect_err("letters");
    assert!(format!("{letters:#}").contains("letters"), "{letters:#}");
    let list = world
        .api
        .get("/calls/originations")
        .await
        .expect("originations");
    assert_eq!(
        list["originations"].as_array().map(Vec::len),
        Some(1),
        "{list}"
    );
}

/// Run `pbx-host ARGS --data-dir DIR`; (success, stdout, stderr).
fn pbx(world: &World, args: &[&str]) -> (bool, String, String) {
    pbx_at(Some(&world.data_dir), args, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_simulates_a_call_dials_and_shows_waiting_call_logs() {
    let world = calls_world(Setup::default()).await;
    let w = &world;
    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "call",
                "simulate",
                "--direction",
                "inbound",
                "--from",
                "+14155550100",
                "--extension",
                "1001",
                "--answer-after",
                "2s",
                "--duration",
                "30s",
                "--disposition",
                "answered",
                "--recording-url",
                "https://pbx.example.com/r/cli-1.wav",
                "--call-id",
                "cli-1",
            ],
        )
    });
    assert!(ok, "{out}\n{err}");
    for phase in ["ringing", "answered", "ended"] {
        assert!(out.contains(phase), "{out}");
    }
    drain(&world.api, Duration::from_secs(30)).await;
    let tasks = tasks_of(&world, "cli-1");
    assert_eq!(tasks.len(), 1, "{out}");
    assert_eq!(tasks[0]["CallDurationInSeconds"], 30, "{:?}", tasks[0]);

    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "call",
                "simulate",
                "--from",
                "+14155550100",
                "--extension",
                "1001",
                "--disposition",
                "no-answer",
                "--call-id",
                "cli-2",
            ],
        )
    });
    assert!(ok, "{err}");
    assert!(
        !out.contains("answered "),
        "a missed call has no answered event: {out}"
    );

    let (ok, out, err) = tokio::task::block_in_place(|| pbx(w, &["crm", "status"]));
    assert!(ok, "{err}");
    assert!(
        out.contains("waiting to be written to Salesforce."),
        "{out}"
    );

    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "call",
                "dial",
                "--extension",
                "1001",
                "--number",
                "415.555.0100",
            ],
        )
    });
    assert!(ok, "{err}");
    assert!(out.contains("+14155550100"), "{out}");
    let (ok, _, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "call",
                "dial",
                "--extension",
                "1003",
                "--number",
                "415.555.0100",
            ],
        )
    });
    assert!(!ok);
    assert!(err.contains("associat"), "{err}");

    let (ok, out, err) =
        tokio::task::block_in_place(|| pbx(w, &["call", "lookup", "(415) 555-0100"]));
    assert!(ok, "{err}");
    assert!(!out.trim().is_empty(), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_events_are_checked_before_any_plugin_sees_them() {
    // Host-side checks only: no connection needed.
    let world = World::start(Setup::default()).await;
    let cases = [
        (json!({}), "call_id"),
        (json!({"call_id": "x"}), "phase"),
        (json!({"call_id": "x", "phase": "ringing"}), "direction"),
        (
            json!({"call_id": "x", "phase": "ringing", "direction": "inbound", "external_number": "+14155550100"}),
            "extension",
        ),
        (
            json!({"call_id": "x", "phase": "ringing", "direction": "inbound", "external_number": "+14155550100", "extension": "1001"}),
            "started_at_ms",
        ),
        (
            json!({"call_id": "x", "phase": "ended", "direction": "inbound", "external_number": "+14155550100", "extension": "1001", "started_at_ms": NOON}),
            "ended_at_ms",
        ),
        (
            json!({"call_id": "x", "phase": "ended", "direction": "inbound", "external_number": "+14155550100", "extension": "1001", "started_at_ms": NOON, "ended_at_ms": NOON + 5, "recording_url": "javascript:alert(1)"}),
            "recording_url",
        ),
        (json!("just a string"), "body"),
    ];
    for (body, field) in cases {
        let (status, answer) = event(&world, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
        assert_eq!(answer["kind"], "invalid-input", "{answer}");
    }
    // Unauthenticated callers get nothing.
    let response = reqwest::Client::new()
        .post(format!("{}/api/calls/events", world.host.url()))
        .json(&call_event("x", "ringing", "+14155550100", "1001", NOON))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status().as_u16(), 401);
    let status = world.status().await;
    assert!(status.get("pending_call_logs").is_some(), "{status}");
    assert_eq!(status["queued_call_events"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_up_says_who_is_calling() {
    let world = calls_world(Setup::default()).await;
    let account = world
        .org
        .insert("Account", fields(json!({"Name": "Caption Corp"})))
        .expect("account");
    world
        .org
        .insert(
            "Contact",
            fields(json!({"FirstName": "Cap", "LastName": "Tion", "Phone": "+1 (212) 555-0177", "AccountId": account})),
        )
        .expect("contact");
    let (status, body) = event(
        &world,
        &call_event("cap-1", "ringing", "212-555-0177", "1001", NOON),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let requests = world.api.get("/browser-requests").await.expect("requests");
    let popup = requests["requests"]
        .as_array()
        .and_then(|list| list.iter().find(|r| r["viewer"]["extension"] == "1001"))
        .cloned()
        .unwrap_or_else(|| panic!("no pop-up for 1001: {requests}"));
    let caption = &popup["caption"];
    assert_eq!(
        caption["title"], "Incoming call from +1 212 555 0177",
        "{popup}"
    );
    assert_eq!(caption["action"], "Open in Salesforce");
    assert_eq!(caption["call_id"], "cap-1");
    assert_eq!(
        caption["details"],
        json!([
            {"label": "Number", "value": "+1 212 555 0177"},
            {"label": "Name", "value": "Cap Tion"},
            {"label": "Record type", "value": "Contact"},
            {"label": "Account", "value": "Caption Corp"},
        ]),
        "{popup}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_to_an_extension_that_does_not_exist_is_refused_and_goes_nowhere() {
    let world = calls_world(Setup::default()).await;
    let number = "+1 212 555 0165";
    world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Nobody's", "Phone": number})),
        )
        .expect("contact");
    let pop_ups_before = world.host.state.services.browser.latest_id();
    for phase in ["ringing", "answered", "ended"] {
        let (status, body) =
            event(&world, &call_event("ghost-1", phase, number, "9999", NOON)).await;
        assert_eq!(status, 400, "{phase}: {body}");
        assert_eq!(body["kind"], "invalid-input", "{body}");
        assert_eq!(body["field"], "extension", "{body}");
        let message = body["error"].as_str().unwrap_or_default();
        assert!(
            message.contains("extension 9999 does not exist") && message.contains("add it"),
            "{body}"
        );
    }
    // Through the CLI the same: the first event is refused, none is sent.
    let w = &world;
    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "call",
                "simulate",
                "--from",
                number,
                "--extension",
                "9999",
                "--call-id",
                "ghost-2",
            ],
        )
    });
    assert!(!ok, "{out}");
    assert!(err.contains("extension 9999 does not exist"), "{err}");
    let report = drain(&world.api, Duration::from_secs(10)).await;
    assert_eq!(world.status().await["queued_call_events"], 0, "{report}");
    for call in ["ghost-1", "ghost-2"] {
        assert!(tasks_of(&world, call).is_empty(), "{call} was logged");
    }
    assert!(
        world
            .host
            .state
            .services
            .browser
            .since(pop_ups_before)
            .is_empty(),
        "a pop-up was opened for a refused call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kept_by_the_host_is_delivered_after_its_extension_is_removed() {
    let world = calls_world(Setup {
        host: e2e_tests::Options {
            deadline_ms: Some(1_000),
            ..e2e_tests::Options::default()
        },
        ..Setup::default()
    })
    .await;
    let number = "+1 212 555 0166";
    world
        .org
        .insert(
            "Contact",
            fields(json!({"LastName": "Kept", "Phone": number})),
        )
        .expect("contact");
    world.org.faults().latency(Duration::from_millis(2_500));
    let (status, body) = event(
        &world,
        &call_event("kept-1", "ringing", number, "1002", NOON),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["plugins"][0]["queued"], true, "{body}");
    world.org.faults().clear();
    world
        .api
        .delete("/extensions/1002")
        .await
        .expect("extension removed");
    // Valid when the PBX sent it: the host delivers it, it does not drop it.
    let report = world
        .api
        .post("/calls/run-pending", &json!({}))
        .await
        .expect("run-pending");
    assert_eq!(report["redelivered"], 1, "{report}");
    assert_eq!(report["still_queued"], 0, "{report}");
    assert_eq!(report["dead_lettered"], 0, "{report}");
    // A new event for it is refused now.
    let (status, body) = event(
        &world,
        &call_event("kept-2", "ringing", number, "1002", NOON),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "extension", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_plugin_says_what_it_did_with_an_event() {
    let world = calls_world(Setup::default()).await;
    let number = "+1 212 555 0167";
    let contact = world
        .org
        .insert(
            "Contact",
            fields(json!({"FirstName": "Ada", "LastName": "Lovelace", "Phone": number})),
        )
        .expect("contact");
    let outcome = |body: &Value| body["plugins"][0]["outcome"].clone();

    let (status, body) = event(
        &world,
        &call_event("said-1", "ringing", number, "1001", NOON),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["plugins"][0]["plugin"], "salesforce", "{body}");
    assert_eq!(
        outcome(&body),
        json!([{"action": "PoppedUp", "detail": format!("pop-up of Contact Ada Lovelace ({contact}) sent to extension 1001")}]),
        "{body}"
    );
    let (_, body) = event(&world, &call_event("said-1", "ended", number, "1001", NOON)).await;
    let task = tasks_of(&world, "said-1");
    assert_eq!(task.len(), 1, "{body}");
    let task_id = task[0]["Id"].as_str().unwrap_or_default();
    assert_eq!(
        outcome(&body),
        json!([{"action": "Logged", "detail": format!("Task {task_id} logged on Contact Ada Lovelace ({contact})")}]),
        "{body}"
    );
    let (_, body) = event(&world, &call_event("said-1", "ended", number, "1001", NOON)).await;
    assert_eq!(outcome(&body)[0]["action"], "Skipped", "{body}");
    assert!(
        outcome(&body)[0]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("repeated event")),
        "{body}"
    );

    // The CLI prints one line per event and plugin, in words.
    let w = &world;
    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "call",
                "simulate",
                "--from",
                number,
                "--extension",
                "1003",
                "--call-id",
                "said-2",
            ],
        )
    });
    assert!(ok, "{err}");
    assert!(
        out.contains(
            "ringing   salesforce: skipped: no pop-up: extension 1003 is not associated with a Salesforce user"
        ),
        "{out}"
    );
    assert!(
        out.contains("answered  salesforce: skipped: no pop-up while answered"),
        "{out}"
    );
    let task = tasks_of(&world, "said-2");
    assert_eq!(task.len(), 1, "{out}");
    let task_id = task[0]["Id"].as_str().unwrap_or_default();
    assert!(
        out.contains(&format!(
            "ended     salesforce: Task {task_id} logged on Contact Ada Lovelace ({contact})"
        )),
        "{out}"
    );
}
