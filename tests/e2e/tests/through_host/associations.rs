//! Associating Salesforce users with PBX extensions, through the real host
//! against the emulator: sync with paging and progress, the automatic
//! proposal and its reasons, Save with its rules, refresh, and interrupted
//! syncs keeping the last good list.

use std::time::Duration;

use e2e_tests::org::{Setup, World, add_extension};
use salesforce_emulator::NewUser;
use salesforce_plugin::users::STEP_BUDGET_MS;
use serde_json::{Value, json};

/// Make every emulator request take a sync step's whole time budget, so a
/// step reads one page (against the fast emulator one step reads them all,
/// and nothing could fail "part-way").
fn slow_org(world: &World) {
    world
        .org
        .faults()
        .latency(Duration::from_millis(STEP_BUDGET_MS));
}

fn add_user(world: &World, first: &str, email: &str) -> String {
    world
        .org
        .add_user(NewUser {
            first_name: first.into(),
            last_name: "Test".into(),
            email: email.into(),
            username: Some(format!("{}@users.test", first.to_lowercase())),
            ..NewUser::default()
        })
        .expect("user added")
}

async fn users(world: &World) -> Value {
    world.api.get("/crm/salesforce/users").await.expect("users")
}

fn entry<'a>(list: &'a Value, id: &str) -> &'a Value {
    list["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["user"]["id"] == id))
        .unwrap_or_else(|| panic!("{id} is not listed"))
}

/// A synced user's id by username.
fn id_of(list: &Value, username: &str) -> String {
    user_field(list, username, "id")
}

fn user_field(list: &Value, username: &str, field: &str) -> String {
    list["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["user"]["username"] == username))
        .and_then(|e| e["user"][field].as_str())
        .unwrap_or_else(|| panic!("no user {username}"))
        .to_string()
}

/// An org user's e-mail address by username (before any sync).
fn org_email(world: &World, username: &str) -> String {
    world
        .org
        .users()
        .iter()
        .find(|u| u["Username"] == username)
        .and_then(|u| u["Email"].as_str())
        .unwrap_or_else(|| panic!("no org user {username}"))
        .to_string()
}

async fn save(world: &World, version: &Value, pairs: &[(&str, &str)]) -> Result<Value, String> {
    let associations: Vec<Value> = pairs
        .iter()
        .map(|(u, x)| json!({"user_id": u, "extension": x}))
        .collect();
    world
        .api
        .put(
            "/crm/salesforce/associations",
            &json!({"version": version, "associations": associations}),
        )
        .await
        .map_err(|e| format!("{e:#}"))
}

/// Make the next sync a full one: save `user-types` as `value` (the other
/// value than the current list's).
async fn full_sync_next(world: &World, value: &str) {
    world
        .api
        .put(
            "/crm/salesforce/settings",
            &json!({"settings": [{"key": "user-types", "value": value}]}),
        )
        .await
        .expect("the setting is saved");
}

/// One step of the plugin's sync, straight through the runtime.
async fn sync_step(
    world: &World,
    cursor: Option<String>,
) -> Result<(u32, u32, Option<String>), String> {
    let result = world
        .host
        .state
        .runtime
        .plugin("salesforce")
        .sync_users(cursor.as_deref())
        .await;
    result
        .map(|p| (p.fetched, p.total, p.cursor))
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn automatic_association_by_email_with_its_reasons() {
    let world = World::start(Setup {
        users: 10,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    // Salesforce requires an e-mail on every User, so "no e-mail" is only
    // possible on the PBX side here (the plugin's unit tests cover users
    // without one).
    let umlaut = add_user(&world, "Zoe", "Zoë@Exämple.org");
    let twin_a = add_user(&world, "Twina", "twin@example.org");
    let twin_b = add_user(&world, "Twinb", "twin@example.org");
    let user1_email = org_email(&world, "user1@example.org");
    let user2_email = org_email(&world, "user2@example.org");
    add_extension(&world, "1001", Some("admin@example.org")).await;
    add_extension(
        &world,
        "1002",
        Some(&format!("  {} ", user1_email.to_uppercase())),
    )
    .await;
    add_extension(&world, "1003", Some(&user2_email)).await;
    add_extension(&world, "1004", Some(&user2_email)).await;
    add_extension(&world, "1005", Some("zoë@exämple.org")).await;
    add_extension(&world, "1006", Some("twin@example.org")).await;
    add_extension(&world, "1007", None).await;

    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    let list = users(&world).await;
    let admin = id_of(&list, "admin@example.org");
    let user1 = id_of(&list, "user1@example.org");
    let user2 = id_of(&list, "user2@example.org");

    let proposal = world
        .api
        .get("/crm/salesforce/associations/proposal")
        .await
        .expect("proposal");
    let matches: Vec<(String, String)> = proposal["matches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["user_id"].as_str().unwrap_or_default().into(),
                m["extension"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    for pair in [
        (admin.clone(), "1001"),
        (user1.clone(), "1002"),
        (umlaut.clone(), "1005"),
    ] {
        assert!(
            matches.contains(&(pair.0.clone(), pair.1.to_string())),
            "{pair:?} in {matches:?}"
        );
    }
    assert_eq!(matches.len(), 3, "{matches:?}");
    let reason = |id: &str| {
        proposal["unmatched"]
            .as_array()
            .and_then(|u| u.iter().find(|u| u["user_id"] == id))
            .map(|u| u["reason"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(reason(&user2), json!({"SharedEmail": ["1003", "1004"]}));
    assert_eq!(reason(&twin_a), json!({"SharedUserEmail": [twin_b]}));
    assert_eq!(
        reason(&id_of(&list, "user3@example.org")),
        json!("NoExtension")
    );

    // Nothing is stored until Save.
    assert!(
        list["entries"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["extension"].is_null()))
    );
    let saved = save(
        &world,
        &proposal["version"],
        &matches
            .iter()
            .map(|(u, x)| (u.as_str(), x.as_str()))
            .collect::<Vec<_>>(),
    )
    .await
    .expect("saved");
    let list = users(&world).await;
    assert_eq!(list["version"], saved["version"]);
    assert_eq!(entry(&list, &admin)["extension"], "1001");
    assert_eq!(entry(&list, &admin)["state"], "Associated");

    // Lookups both ways.
    let by_ext = world
        .api
        .get("/crm/salesforce/associations/extension/1002")
        .await
        .expect("lookup");
    assert_eq!(by_ext["user"]["id"], user1.as_str());
    let by_user = world
        .api
        .get(&format!("/crm/salesforce/associations/user/{admin}"))
        .await
        .expect("lookup");
    assert_eq!(by_user["extension"], "1001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_enforces_one_to_one_existing_extensions_and_versions() {
    let world = World::start(Setup {
        users: 6,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    for n in ["1001", "1002", "1003"] {
        add_extension(&world, n, None).await;
    }
    assert_eq!(world.sync_users().await["ok"], true);
    let list = users(&world).await;
    let (a, b) = (
        id_of(&list, "admin@example.org"),
        id_of(&list, "user1@example.org"),
    );
    let v0 = list["version"].clone();

    let err = save(&world, &v0, &[(&a, "1001"), (&b, "1001")])
        .await
        .expect_err("one extension, two users");
    assert!(
        err.contains("1001") && err.contains("one extension belongs to one"),
        "{err}"
    );
    let err = save(&world, &v0, &[(&a, "1001"), (&a, "1002")])
        .await
        .expect_err("one user, two extensions");
    assert!(err.contains("1001") && err.contains("1002"), "{err}");
    let err = save(&world, &v0, &[(&a, "4242")])
        .await
        .expect_err("no such extension");
    assert!(err.contains("4242"), "{err}");

    // An extension removed between the proposal and Save.
    world.api.delete("/extensions/1003").await.expect("removed");
    let err = save(&world, &v0, &[(&a, "1003")])
        .await
        .expect_err("removed meanwhile");
    assert!(err.contains("extension 1003 does not exist"), "{err}");
    assert_eq!(users(&world).await["version"], v0, "nothing stored");

    // Two Saves racing from the same version: the second is refused.
    let first = save(&world, &v0, &[(&a, "1001")])
        .await
        .expect("first save");
    let err = save(&world, &v0, &[(&b, "1002")])
        .await
        .expect_err("stale version");
    assert!(err.contains("someone else"), "{err}");
    let list = users(&world).await;
    assert_eq!(list["version"], first["version"]);
    assert_eq!(
        entry(&list, &a)["extension"],
        "1001",
        "the first save is kept"
    );
    assert!(entry(&list, &b)["extension"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_marks_deactivated_users_and_removed_extensions_stale() {
    let world = World::start(Setup {
        users: 6,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    add_extension(&world, "1001", None).await;
    add_extension(&world, "1002", None).await;
    assert_eq!(world.sync_users().await["ok"], true);
    let list = users(&world).await;
    let (a, b) = (
        id_of(&list, "admin@example.org"),
        id_of(&list, "user1@example.org"),
    );
    save(&world, &list["version"], &[(&a, "1001"), (&b, "1002")])
        .await
        .expect("saved");

    world.org.deactivate_user(&b).expect("deactivate");
    world.api.delete("/extensions/1001").await.expect("removed");
    assert_eq!(world.sync_users().await["ok"], true);
    let list = users(&world).await;
    assert_eq!(
        entry(&list, &b)["state"],
        "StaleUser",
        "kept until Save, marked stale"
    );
    assert_eq!(entry(&list, &b)["extension"], "1002");
    assert_eq!(entry(&list, &a)["state"], "StaleExtension");
    // Stale associations answer no lookups.
    let by_ext = world
        .api
        .get("/crm/salesforce/associations/extension/1002")
        .await
        .expect("lookup");
    assert!(by_ext["user"].is_null(), "{by_ext}");

    // The administrator re-assigns and saves: the stale ones are gone.
    add_extension(&world, "1003", None).await;
    save(&world, &list["version"], &[(&a, "1003")])
        .await
        .expect("saved");
    let list = users(&world).await;
    assert_eq!(entry(&list, &a)["state"], "Associated");
    assert!(
        list["entries"]
            .as_array()
            .is_some_and(|e| e.iter().all(|e| e["user"]["id"] != b.as_str()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_sync_keeps_the_last_good_list_and_says_why() {
    let world = World::start(Setup {
        users: 4_500,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    assert_eq!(world.sync_users().await["ok"], true);
    let good = users(&world).await["entries"].as_array().map(Vec::len);
    assert!(good.is_some_and(|n| n > 4_000), "{good:?}");

    // A sync now would be a refresh (one request); a changed user-types
    // setting makes it a full one, which can fail part-way. The org's
    // users are all Standard, so either value lists the same users.
    full_sync_next(&world, "all").await;
    // 503s after the first page.
    slow_org(&world);
    let (fetched, total, cursor) = sync_step(&world, None).await.expect("first page");
    assert!(fetched > 0 && total > fetched && cursor.is_some());
    world.org.faults().fail_requests(20, 503);
    let err = sync_step(&world, cursor).await.expect_err("503");
    assert!(
        err.contains("503") || err.contains("unavailable") || err.contains("server error"),
        "{err}"
    );
    assert_eq!(
        users(&world).await["entries"].as_array().map(Vec::len),
        good,
        "the last good list stays"
    );
    let status = world.status().await;
    assert!(
        status["problem"]
            .as_str()
            .is_some_and(|p| p.contains("sync")),
        "{status}"
    );
    world.org.faults().clear();
    slow_org(&world);

    // An expired session part-way through: refreshed once, the sync goes on.
    let (_, _, mut cursor) = loop {
        match sync_step(&world, None).await {
            Ok(step) => break step,
            // The plugin backs off after the 503s; wait it out like an operator would.
            Err(e) if e.contains("retries after") || e.contains("back") => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    world.org.expire_sessions();
    while let Some(c) = cursor {
        cursor = sync_step(&world, Some(c))
            .await
            .expect("the sync goes on after a refresh")
            .2;
    }
    assert_eq!(world.org.token_stats().refresh_grants, 1);
    assert!(
        world.status().await["problem"].is_null(),
        "a good sync clears the problem"
    );

    // A session that cannot come back part-way: the last good list stays.
    full_sync_next(&world, "standard").await;
    let (_, _, cursor) = sync_step(&world, None).await.expect("first page");
    world.org.revoke_refresh_tokens();
    world.org.expire_sessions();
    let err = sync_step(&world, cursor).await.expect_err("dead session");
    assert!(err.contains("authorize again"), "{err}");
    assert_eq!(
        users(&world).await["entries"].as_array().map(Vec::len),
        good
    );
    assert_eq!(world.status().await["state"], "ReauthorizationNeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_of_fifty_thousand_users_works_and_shows_progress() {
    let world = World::start(Setup {
        users: 50_000,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    let mut job = world
        .api
        .post("/crm/salesforce/users/sync", &json!({}))
        .await
        .expect("the sync starts");
    let mut seen = std::collections::BTreeSet::new();
    while job["running"] == true {
        seen.insert(job["fetched"].as_u64().unwrap_or(0));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        job = world
            .api
            .get("/crm/salesforce/users/sync")
            .await
            .expect("progress");
    }
    assert_eq!(job["ok"], true, "{job}");
    let active = world
        .org
        .users()
        .iter()
        .filter(|u| u["IsActive"] == true)
        .count() as u64;
    assert_eq!(job["fetched"].as_u64(), Some(active));
    assert_eq!(job["total"].as_u64(), Some(active));
    assert!(seen.len() >= 3, "progress moved through {seen:?}");
    let list = users(&world).await;
    assert_eq!(
        list["entries"].as_array().map(|e| e.len() as u64),
        Some(active)
    );
}
