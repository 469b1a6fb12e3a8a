//! Which Salesforce users are listed, the ids people type, and the
//! incremental refresh, through the real host against the emulator: only
//! Standard users by default and every type with `user-types=all`;
//! `crm associate` with a 15-character id and the refusal of a wrong one;
//! a refresh after a rename, a deactivation, a change of type and a new
//! user, in at most 2 API requests.

use e2e_tests::org::{Setup, World, add_extension};
use e2e_tests::pbx_at;
use salesforce_emulator::NewUser;
use serde_json::{Value, json};

/// A user of `kind` (Salesforce's `UserType`) named `first` Test.
fn add_user(world: &World, first: &str, kind: &str) -> String {
    world
        .org
        .add_user(NewUser {
            first_name: first.into(),
            last_name: "Test".into(),
            email: format!("{}@users.test", first.to_lowercase()),
            user_type: Some(kind.into()),
            ..NewUser::default()
        })
        .expect("user added")
}

async fn users(world: &World) -> Value {
    world.api.get("/crm/salesforce/users").await.expect("users")
}

fn ids(list: &Value) -> Vec<String> {
    list["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["user"]["id"].as_str().map(str::to_string))
        .collect()
}

fn entry<'a>(list: &'a Value, id: &str) -> Option<&'a Value> {
    list["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["user"]["id"] == id))
}

async fn set_user_types(world: &World, value: &str) {
    world
        .api
        .put(
            "/crm/salesforce/settings",
            &json!({"settings": [{"key": "user-types", "value": value}]}),
        )
        .await
        .expect("the setting is saved");
}

/// API requests the org counted so far.
fn api_requests(world: &World) -> u64 {
    world.org.api_usage().0
}

/// Run a sync through the host's job; how many API requests it made.
async fn sync_counting(world: &World) -> u64 {
    let before = api_requests(world);
    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    api_requests(world) - before
}

fn pbx(world: &World, args: &[&str]) -> (bool, String, String) {
    pbx_at(Some(&world.data_dir), args, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_users_who_can_have_a_phone_are_listed_unless_the_setting_says_all() {
    let world = World::start(Setup {
        users: 5,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    let others = [
        add_user(&world, "Chatty", "CsnOnly"),
        add_user(&world, "Partner", "PowerPartner"),
        add_user(&world, "Customer", "CspLitePortal"),
        add_user(&world, "Robot", "AutomatedProcess"),
    ];
    let standard = add_user(&world, "Stan", "Standard");

    sync_counting(&world).await;
    let listed = ids(&users(&world).await);
    assert!(listed.contains(&standard), "{listed:?}");
    for id in &others {
        assert!(
            !listed.contains(id),
            "{id} is not a Standard user: {listed:?}"
        );
    }
    let standard_count = listed.len();

    // The setting makes the next sync a full one listing every type.
    let form = world
        .api
        .get("/crm/salesforce/describe")
        .await
        .expect("describe");
    assert!(
        form.to_string().contains("user-types"),
        "the portal's form offers the setting: {form}"
    );
    set_user_types(&world, "all").await;
    sync_counting(&world).await;
    let listed = ids(&users(&world).await);
    for id in others.iter().chain([&standard]) {
        assert!(listed.contains(id), "{id}: {listed:?}");
    }
    assert_eq!(listed.len(), standard_count + others.len());

    // And back.
    set_user_types(&world, "standard").await;
    sync_counting(&world).await;
    assert_eq!(ids(&users(&world).await).len(), standard_count);

    // A value the plugin does not know is refused and changes nothing.
    let refused = world
        .api
        .put(
            "/crm/salesforce/settings",
            &json!({"settings": [{"key": "user-types", "value": "everyone"}]}),
        )
        .await
        .expect_err("refused");
    assert!(
        format!("{refused:#}").contains("choose standard"),
        "{refused:#}"
    );
    let settings = world
        .api
        .get("/crm/salesforce/settings")
        .await
        .expect("settings");
    assert!(
        settings["settings"].as_array().is_some_and(|s| s
            .iter()
            .any(|v| v["key"] == "user-types" && v["value"] == "standard")),
        "{settings}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associate_takes_fifteen_character_ids_and_refuses_wrong_ones() {
    let world = World::start(Setup {
        users: 5,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    add_extension(&world, "1001", None).await;
    add_extension(&world, "1002", None).await;
    sync_counting(&world).await;
    let list = users(&world).await;
    let id = ids(&list)[1].clone();
    assert_eq!(id.len(), 18);
    let short = &id[..15];

    let (ok, out, err) = pbx(&world, &["crm", "associate", short, "1001"]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains(&id) && out.contains("1001"),
        "shows the 18-character id: {out}"
    );
    let list = users(&world).await;
    let saved = entry(&list, &id).expect("listed");
    assert_eq!(saved["extension"], "1001");
    assert_eq!(saved["state"], "Associated");
    let version = list["version"].clone();

    // A wrong checksum, and no id at all: refused, naming the fix, and
    // nothing changes.
    let wrong = format!("{short}{}", if id.ends_with("AAA") { "BBB" } else { "AAA" });
    for bad in [wrong.as_str(), "005-not-an-id"] {
        let (ok, out, err) = pbx(&world, &["crm", "associate", bad, "1002"]);
        assert!(!ok, "{bad}: {out}");
        assert!(
            err.contains("Salesforce user id")
                && (err.contains("15 or 18") || err.contains("first 15")),
            "{bad}: {err}"
        );
        let after = users(&world).await;
        assert_eq!(after["version"], version, "{bad} changed nothing");
        assert_eq!(
            entry(&after, &id).map(|e| e["extension"].clone()),
            Some(json!("1001"))
        );
    }

    // The 15-character id moves the user and then removes the extension.
    let (ok, out, err) = pbx(&world, &["crm", "associate", short, "1002"]);
    assert!(ok, "{out}{err}");
    assert_eq!(
        entry(&users(&world).await, &id).map(|e| e["extension"].clone()),
        Some(json!("1002"))
    );
    let (ok, out, err) = pbx(&world, &["crm", "unassociate", short]);
    assert!(ok, "{out}{err}");
    assert!(out.contains(&id) && out.contains("no extension"), "{out}");
    assert!(entry(&users(&world).await, &id).is_some_and(|e| e["extension"].is_null()));

    // The lookup by user takes either form too.
    pbx(&world, &["crm", "associate", &id, "1001"]);
    let by_short = world
        .api
        .get(&format!("/crm/salesforce/associations/user/{short}"))
        .await
        .expect("lookup");
    assert_eq!(by_short["extension"], "1001");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_reads_only_the_changes_in_at_most_two_requests() {
    let world = World::start(Setup {
        users: 4_500,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    add_extension(&world, "1001", None).await;
    add_extension(&world, "1002", None).await;

    let full = sync_counting(&world).await;
    assert!(
        full >= 3,
        "a full sync of 4,500 users reads 3 pages: {full}"
    );
    let list = users(&world).await;
    let count = ids(&list).len();
    let listed = ids(&list);
    let (renamed, leaving, demoted) = (listed[1].clone(), listed[2].clone(), listed[3].clone());
    world
        .api
        .put(
            "/crm/salesforce/associations",
            &json!({"version": list["version"], "associations": [
                {"user_id": renamed, "extension": "1001"},
                {"user_id": leaving, "extension": "1002"},
            ]}),
        )
        .await
        .expect("saved");

    // Nothing changed: a refresh reads nothing new.
    assert!(sync_counting(&world).await <= 2);
    assert_eq!(ids(&users(&world).await), listed);

    let mut rename = serde_json::Map::new();
    rename.insert("FirstName".into(), json!("Renamed"));
    world.org.update_user(&renamed, rename).expect("renamed");
    world.org.deactivate_user(&leaving).expect("deactivated");
    let mut demote = serde_json::Map::new();
    demote.insert("UserType".into(), json!("CsnOnly"));
    world.org.update_user(&demoted, demote).expect("demoted");
    let newcomer = add_user(&world, "Newcomer", "Standard");
    add_user(&world, "Chatter", "CsnOnly");

    let refresh = sync_counting(&world).await;
    assert!(
        refresh <= 2,
        "a refresh makes at most 2 API requests: {refresh}"
    );
    let list = users(&world).await;
    let renamed_entry = entry(&list, &renamed).expect("still listed");
    assert!(
        renamed_entry["user"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("Renamed ")),
        "{renamed_entry}"
    );
    assert_eq!(renamed_entry["state"], "Associated");
    let gone = entry(&list, &leaving).expect("kept until Save");
    assert_eq!(gone["state"], "StaleUser");
    assert_eq!(gone["extension"], "1002");
    assert!(
        entry(&list, &demoted).is_none(),
        "a Chatter Free user leaves the list"
    );
    assert!(entry(&list, &newcomer).is_some(), "a new user joins");
    // count + newcomer - demoted, and the deactivated one shown as stale.
    assert_eq!(ids(&list).len(), count + 1 - 1);
    // Stale pairs answer no lookups.
    let by_ext = world
        .api
        .get("/crm/salesforce/associations/extension/1002")
        .await
        .expect("lookup");
    assert!(by_ext["user"].is_null(), "{by_ext}");

    // The refreshed list is what the org has: its active Standard users.
    let mut truth: Vec<String> = world
        .org
        .users()
        .iter()
        .filter(|u| u["IsActive"] == true && u["UserType"] == "Standard")
        .filter_map(|u| u["Id"].as_str().map(str::to_string))
        .collect();
    let mut refreshed: Vec<String> = list["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["state"] != "StaleUser")
        .filter_map(|e| e["user"]["id"].as_str().map(str::to_string))
        .collect();
    truth.sort();
    refreshed.sort();
    assert_eq!(refreshed, truth);
}
