//! Plugin versions through the real host: install beside the active version,
//! activate, roll back, remove; verification of files (hash, signature, API
//! version, component); grants that hold a version back; the precompile
//! cache's keys; and 20 swaps while calls keep flowing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use e2e_tests::org::{Setup, calls_world};
use e2e_tests::{
    Options, admin, component, install, install_bytes, pbx_at, probe, start_host, with_manifest,
};
use pbx_host::cli::AdminClient;
use pbx_host::runtime::signature;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

fn probe_manifest(version: &str, extra_hosts: &[&str]) -> Value {
    let mut hosts = vec![
        "http://127.0.0.1:*",
        "https://127.0.0.1:*",
        "http://localhost:*",
        "http://169.254.169.254",
        "https://*.example.com",
    ];
    hosts.extend_from_slice(extra_hosts);
    json!({
        "id": "probe",
        "name": "Sandbox probe",
        "version": version,
        "vendor": "pbx-host tests",
        "api": "pbx:crm@0.1.0",
        "hosts": hosts,
    })
}

pub(crate) fn probe_version(version: &str, extra_hosts: &[&str]) -> Vec<u8> {
    let bytes = std::fs::read(component("fixture_probe")).expect("probe built");
    with_manifest(&bytes, &probe_manifest(version, extra_hosts))
}

async fn runtime_stats(api: &AdminClient) -> Value {
    api.get("/host").await.expect("host")["runtime"].clone()
}

fn versions(list: &Value, id: &str) -> Vec<(String, bool)> {
    list["plugins"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["id"] == id)
        .flat_map(|p| p["versions"].as_array().cloned().unwrap_or_default())
        .map(|v| {
            (
                v["version"].as_str().unwrap_or_default().to_string(),
                v["active"] == true,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_over_with_the_state_and_rolls_back() {
    let world = calls_world(Setup::default()).await;
    let listing = world.api.get("/plugins").await.expect("list");
    let mut manifest = listing["plugins"][0]["manifest"].clone();
    let old = manifest["version"].as_str().expect("version").to_string();
    let new = format!("{old}-next");
    manifest["version"] = json!(new);
    let shipped = std::fs::read(component("salesforce_plugin")).expect("plugin");
    let users_before = world.api.get("/crm/salesforce/users").await.expect("users");

    // Installed beside the active version, not activated by default.
    let report = install_bytes(&world.api, with_manifest(&shipped, &manifest))
        .await
        .expect("installs");
    assert_eq!(report["activated"], false, "{report}");
    let list = world.api.get("/plugins").await.expect("list");
    assert_eq!(
        versions(&list, "salesforce"),
        vec![(old.clone(), true), (new.clone(), false)]
    );

    let done = world
        .api
        .post("/plugins/salesforce/activate", &json!({"version": new}))
        .await
        .expect("activates");
    assert_eq!(done["active"], json!(new));
    assert_eq!(done["previous"], json!(old));
    // Tokens, settings, users and associations are the plugin id's, not the
    // version's: the new version is Connected at once.
    assert_eq!(world.status().await["state"], "Connected");
    let users_after = world.api.get("/crm/salesforce/users").await.expect("users");
    assert_eq!(users_before, users_after, "associations intact");

    // The active version cannot be removed; rollback returns the old one.
    let err = world
        .api
        .delete(&format!("/plugins/salesforce/versions/{new}"))
        .await
        .expect_err("active");
    assert!(format!("{err:#}").contains("active version"), "{err:#}");
    let back = world
        .api
        .post("/plugins/salesforce/rollback", &json!({}))
        .await
        .expect("rolls back");
    assert_eq!(back["active"], json!(old));
    assert_eq!(back["previous"], json!(new));
    assert_eq!(world.status().await["state"], "Connected");
    world
        .api
        .delete(&format!("/plugins/salesforce/versions/{new}"))
        .await
        .expect("removed");
    let list = world.api.get("/plugins").await.expect("list");
    assert_eq!(versions(&list, "salesforce"), vec![(old, true)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_are_refused_with_the_reason_and_nothing_is_recorded() {
    let (_dir, host, api) = empty_host().await;
    let good = std::fs::read(component("fixture_probe")).expect("probe");

    let sha = e2e_tests::sha256_hex(&good);
    // Damage in the framing is caught by inspection...
    let mut corrupted = good.clone();
    corrupted[9] ^= 0x7f;
    let err = install_bytes(&api, corrupted).await.expect_err("corrupted");
    assert!(err.contains("not a WebAssembly component"), "{err}");
    // ...damage anywhere else by the published hash.
    let mut damaged = good.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x01;
    let err = api
        .post_bytes(&format!("/plugins?sha256={sha}"), damaged)
        .await
        .expect_err("wrong hash");
    assert!(format!("{err:#}").contains("SHA-256"), "{err:#}");

    let err = install_bytes(&api, b"\0asm\x01\0\0\0".to_vec())
        .await
        .expect_err("core module");
    assert!(err.contains("core module"), "{err}");

    let err = install(&api, "fixture_future_api")
        .await
        .expect_err("future API");
    assert!(err.contains("pbx:crm@9.0.0"), "{err}");

    let list = api.get("/plugins").await.expect("list");
    assert_eq!(list["plugins"].as_array().map(Vec::len), Some(0), "{list}");

    // The right hash is accepted.
    let ok = api
        .post_bytes(&format!("/plugins?sha256={sha}"), good)
        .await
        .expect("right hash");
    assert_eq!(ok["sha256"], json!(sha));
    host.shutdown().await;
}

/// A host with nothing installed, in its own data directory (kept alive).
async fn empty_host() -> (
    tempfile::TempDir,
    pbx_host::server::RunningHost,
    AdminClient,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    (dir, host, api)
}

fn vendor_key() -> (Ed25519KeyPair, String) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("keygen");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let public = base64::engine::general_purpose::STANDARD.encode(pair.public_key().as_ref());
    (pair, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_signatures_are_required_only_trusted_untouched_files_install() {
    let (vendor, public) = vendor_key();
    let (stranger, _) = vendor_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(
        dir.path(),
        Options {
            trusted_keys: vec![format!("tests={public}")],
            require_signature: true,
            ..Options::default()
        },
    )
    .await;
    let api = admin(&host);
    let unsigned = std::fs::read(component("fixture_probe")).expect("probe");

    let err = install_bytes(&api, unsigned.clone())
        .await
        .expect_err("unsigned");
    assert!(err.contains("not signed"), "{err}");
    let err = install_bytes(&api, signature::sign(&unsigned, "stranger", &stranger))
        .await
        .expect_err("untrusted");
    assert!(err.contains("does not trust"), "{err}");
    let err = install_bytes(&api, signature::sign(&unsigned, "tests", &stranger))
        .await
        .expect_err("forged");
    assert!(err.contains("does not match"), "{err}");
    let mut altered = signature::sign(&unsigned, "tests", &vendor);
    altered[100] ^= 1;
    let err = install_bytes(&api, altered).await.expect_err("altered");
    assert!(
        err.contains("does not match") || err.contains("not valid"),
        "{err}"
    );

    let ok = install_bytes(&api, signature::sign(&unsigned, "tests", &vendor))
        .await
        .expect("signed by a trusted key");
    assert_eq!(ok["signed_by"], "tests");
    assert_eq!(ok["activated"], true);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_asking_for_more_hosts_waits_for_a_grant_and_the_cache_follows() {
    let (dir, host, api) = empty_host().await;
    install_bytes(&api, probe_version("1.0.0", &[]))
        .await
        .expect("v1");
    assert_eq!(runtime_stats(&api).await["compiled"], 1);

    let more = "https://api.newvendor.test";
    let report = api
        .post_bytes("/plugins?activate=yes", probe_version("2.0.0", &[more]))
        .await
        .expect("v2 installs");
    assert_eq!(report["activated"], false, "{report}");
    assert_eq!(report["waiting_for_grants"], json!([more]));
    // A new file is compiled.
    assert_eq!(runtime_stats(&api).await["compiled"], 2);
    let err = api
        .post("/plugins/probe/activate", &json!({"version": "2.0.0"}))
        .await
        .expect_err("not granted");
    assert!(format!("{err:#}").contains("plugin grant probe"), "{err:#}");

    let granted = api
        .post("/plugins/probe/grants", &json!({"pattern": more}))
        .await
        .expect("granted");
    assert_eq!(granted["granted"], json!([more]));
    // Grants are part of the cache key: the active version was compiled
    // again for them.
    assert_eq!(runtime_stats(&api).await["compiled"], 3);
    let done = api
        .post("/plugins/probe/activate", &json!({"version": "2.0.0"}))
        .await
        .expect("activates once granted");
    assert_eq!(done["active"], "2.0.0");
    let bad = api
        .post(
            "/plugins/probe/grants",
            &json!({"pattern": "not a pattern"}),
        )
        .await
        .expect_err("bad pattern");
    assert!(format!("{bad:#}").contains("scheme://host"), "{bad:#}");
    host.shutdown().await;

    // Same files, grants and engine after a restart: everything from the
    // cache, nothing compiled.
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    let stats = runtime_stats(&api).await;
    assert_eq!(stats["compiled"], 0, "{stats}");
    assert_eq!(stats["cache_loads"], 1, "{stats}");
    let list = api.get("/plugins").await.expect("list");
    assert_eq!(
        versions(&list, "probe"),
        vec![("1.0.0".into(), false), ("2.0.0".into(), true)]
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_swaps_under_a_loop_of_calls_fail_no_call() {
    let (_dir, host, api) = empty_host().await;
    install_bytes(&api, probe_version("1.0.0", &[]))
        .await
        .expect("v1");
    install_bytes(&api, probe_version("1.1.0", &[]))
        .await
        .expect("v2 installed, inactive");
    let runtime = host.state.runtime.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (runtime, stop) = (runtime.clone(), stop.clone());
            tokio::spawn(async move {
                let mut answered = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let (result, timing) = runtime.plugin("probe").describe().timed().await;
                    answered.push((
                        result.map(|_| ()).map_err(|e| e.to_string()),
                        timing.version,
                    ));
                }
                answered
            })
        })
        .collect();

    let mut swaps = 0;
    for round in 0..10 {
        for version in ["1.1.0", "1.0.0"] {
            let done = if version == "1.0.0" && round % 2 == 0 {
                api.post("/plugins/probe/rollback", &json!({})).await
            } else {
                // 1.0.0 after 1.1.0 is a downgrade, allowed explicitly.
                api.post(
                    "/plugins/probe/activate",
                    &json!({"version": version, "allow_downgrade": true}),
                )
                .await
            }
            .expect("swap");
            assert_eq!(done["active"], version);
            swaps += 1;
            // A call started after the swap returned runs on the new version.
            let (result, timing) = runtime.plugin("probe").describe().timed().await;
            assert!(result.is_ok());
            assert_eq!(timing.version.as_deref(), Some(version));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    for caller in callers {
        answered.extend(caller.await.expect("caller"));
    }
    assert_eq!(swaps, 20);
    let failed: Vec<_> = answered.iter().filter(|(r, _)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        failed.first()
    );
    let on = |v: &str| {
        answered
            .iter()
            .filter(|(_, got)| got.as_deref() == Some(v))
            .count()
    };
    assert_eq!(
        on("1.0.0") + on("1.1.0"),
        answered.len(),
        "every call was answered by exactly one of the two versions"
    );
    assert!(
        on("1.0.0") > 0 && on("1.1.0") > 0,
        "calls ran on both versions"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_runs_migrate_once_and_a_failed_migration_keeps_the_old_version() {
    let (_dir, host, api) = empty_host().await;
    let bytes = std::fs::read(component("fixture_probe_v2")).expect("probe-v2 built");
    let mut manifest: Value =
        serde_json::from_str(include_str!("../../../fixtures/probe-v2/manifest.json"))
            .expect("manifest");
    install_bytes(&api, bytes.clone()).await.expect("1.0.0");
    manifest["version"] = json!("1.1.0");
    install_bytes(&api, with_manifest(&bytes, &manifest))
        .await
        .expect("1.1.0 installed, inactive");

    // The plugin's state says the migration cannot be done.
    e2e_tests::probe(&api, "probe-v2", "migrate-fail", "the schema is newer")
        .await
        .expect("armed");
    let err = api
        .post("/plugins/probe-v2/activate", &json!({"version": "1.1.0"}))
        .await
        .expect_err("migration fails");
    let err = format!("{err:#}");
    assert!(
        err.contains("migration from 1.0.0 failed") && err.contains("the schema is newer"),
        "{err}"
    );
    let list = api.get("/plugins").await.expect("list");
    assert_eq!(
        versions(&list, "probe-v2"),
        vec![("1.0.0".into(), true), ("1.1.0".into(), false)],
        "the old version stays active"
    );

    e2e_tests::probe(&api, "probe-v2", "migrate-fail", "")
        .await
        .expect("cleared");
    let done = api
        .post("/plugins/probe-v2/activate", &json!({"version": "1.1.0"}))
        .await
        .expect("activates");
    assert_eq!(done["migrated"], true, "{done}");
    assert_eq!(
        e2e_tests::probe(&api, "probe-v2", "kv-get", "migrate/from")
            .await
            .as_deref(),
        Ok("value 1.0.0"),
        "migrate ran with the version active before"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_asking_for_more_kv_space_waits_for_a_kv_grant() {
    let (_dir, host, api) = empty_host().await;
    install_bytes(&api, probe_version("1.0.0", &[]))
        .await
        .expect("v1");
    let bytes = std::fs::read(component("fixture_probe")).expect("probe built");
    let mut manifest = probe_manifest("2.0.0", &[]);
    manifest["kv"] = json!({"max_keys": 50_000, "max_mib": 256});
    let report = api
        .post_bytes("/plugins?activate=yes", with_manifest(&bytes, &manifest))
        .await
        .expect("v2 installs");
    assert_eq!(report["activated"], false, "{report}");
    assert_eq!(
        report["waiting_for_grants"],
        json!(["kv-store 50000 keys, 256 MiB"])
    );
    let list = api.get("/plugins").await.expect("list");
    assert_eq!(list["plugins"][0]["kv_max_keys"], 10_000, "the default");

    let err = api
        .post("/plugins/probe/grants", &json!({"kv_max_keys": 50_000}))
        .await
        .expect_err("half a quota");
    assert!(format!("{err:#}").contains("kv_max_mib"), "{err:#}");
    api.post(
        "/plugins/probe/grants",
        &json!({"kv_max_keys": 50_000, "kv_max_mib": 256}),
    )
    .await
    .expect("granted");
    let done = api
        .post("/plugins/probe/activate", &json!({"version": "2.0.0"}))
        .await
        .expect("activates once granted");
    assert_eq!(done["active"], "2.0.0");
    let list = api.get("/plugins").await.expect("list");
    assert_eq!(list["plugins"][0]["kv_max_keys"], 50_000);
    assert_eq!(list["plugins"][0]["kv_max_bytes"], 256u64 << 20);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_id_keeps_its_vendor_key_and_its_newest_version_unless_the_administrator_says_otherwise()
 {
    let (vendor, public) = vendor_key();
    let (other, other_public) = vendor_key();
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(
        dir.path(),
        Options {
            trusted_keys: vec![format!("vendor={public}"), format!("other={other_public}")],
            ..Options::default()
        },
    )
    .await;
    let api = admin(&host);
    let signed = |version: &str, key_id: &str, key: &Ed25519KeyPair| {
        signature::sign(&probe_version(version, &[]), key_id, key)
    };
    let first = install_bytes(&api, signed("1.0.0", "vendor", &vendor))
        .await
        .expect("the first version pins the id to its key");
    assert_eq!(first["signed_by"], "vendor");
    assert_eq!(
        probe(&api, "probe", "kv-set", "token=secret")
            .await
            .as_deref(),
        Ok("ok")
    );

    // Another trusted vendor's build of the same id would inherit its
    // stored data: refused, and so is an unsigned one.
    let err = api
        .post_bytes("/plugins?activate=yes", signed("2.0.0", "other", &other))
        .await
        .expect_err("another key");
    let err = format!("{err:#}");
    assert!(
        err.contains("pinned to vendor key \"vendor\"") && err.contains("--repin"),
        "{err}"
    );
    let err = install_bytes(&api, probe_version("2.0.0", &[]))
        .await
        .expect_err("unsigned");
    assert!(err.contains("is not signed"), "{err}");
    let list = api.get("/plugins").await.expect("list");
    assert_eq!(versions(&list, "probe"), vec![("1.0.0".to_string(), true)]);

    // The same vendor's next version is accepted.
    let next = api
        .post_bytes("/plugins?activate=yes", signed("2.0.0", "vendor", &vendor))
        .await
        .expect("same key");
    assert_eq!(next["activated"], true);

    // Going back to an older version is the administrator's explicit call.
    let refused = reqwest::Client::new()
        .post(format!("{}/api/plugins/probe/activate", host.url()))
        .bearer_auth(&host.admin_token)
        .header("content-type", "application/json")
        .body(json!({"version": "1.0.0"}).to_string())
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 409);
    let err = refused.text().await.unwrap_or_default();
    assert!(
        err.contains("older than 2.0.0") && err.contains("--allow-downgrade"),
        "{err}"
    );
    assert_eq!(
        api.get("/plugins").await.expect("list")["plugins"][0]["active"],
        "2.0.0",
        "a refused activation changes nothing"
    );
    let back = api
        .post(
            "/plugins/probe/activate",
            &json!({"version": "1.0.0", "allow_downgrade": true}),
        )
        .await
        .expect("allowed");
    assert_eq!(back["active"], "1.0.0");
    let forward = api
        .post("/plugins/probe/activate", &json!({"version": "2.0.0"}))
        .await
        .expect("forward again");
    assert_eq!(forward["active"], "2.0.0");
    let rolled = api
        .post("/plugins/probe/rollback", &json!({}))
        .await
        .expect("rollback is an explicit step back");
    assert_eq!(rolled["active"], "1.0.0");

    // The administrator re-pins to the new key explicitly; from then on
    // the old key is the stranger.
    let repinned = api
        .post_bytes(
            "/plugins?activate=yes&repin=yes",
            signed("3.0.0", "other", &other),
        )
        .await
        .expect("re-pinned");
    assert_eq!(repinned["signed_by"], "other");
    assert_eq!(repinned["activated"], true);
    let list = api.get("/plugins").await.expect("list");
    assert_eq!(list["plugins"][0]["pinned_key"], "other");
    assert_eq!(list["plugins"][0]["newest_activated"], "3.0.0");
    assert_eq!(
        probe(&api, "probe", "kv-get", "token").await.as_deref(),
        Ok("value secret")
    );
    let err = install_bytes(&api, signed("4.0.0", "vendor", &vendor))
        .await
        .expect_err("the old key");
    assert!(err.contains("pinned to vendor key \"other\""), "{err}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_version_installed_with_activation_off_stays_inactive() {
    let data = tempfile::tempdir().expect("data dir");
    let host = start_host(data.path(), Options::default()).await;
    let wanted = ["http://127.0.0.1:*", "http://169.254.169.254"];

    // The API: `activate=no` on the plugin's very first version.
    let response = reqwest::Client::new()
        .post(format!("{}/api/plugins?activate=no", host.url()))
        .bearer_auth(&host.admin_token)
        .header("content-type", "application/wasm")
        .body(probe_version("1.0.0", &[]))
        .send()
        .await
        .expect("the host answers");
    assert_eq!(response.status().as_u16(), 201);
    let report: Value = response.json().await.expect("JSON");
    assert_eq!(report["activated"], false, "{report}");
    for host_pattern in wanted {
        assert!(
            report["requested"]
                .as_array()
                .is_some_and(|r| r.iter().any(|h| h == host_pattern)),
            "{report}"
        );
    }
    let list = admin(&host).get("/plugins").await.expect("list");
    assert_eq!(versions(&list, "probe"), vec![("1.0.0".to_string(), false)]);
    let probe = &list["plugins"][0];
    assert!(probe["active"].is_null(), "{list}");
    assert!(
        probe["versions"][0]["requested"]
            .as_array()
            .is_some_and(|r| wanted.iter().all(|w| r.iter().any(|h| h == w))),
        "{list}"
    );
    // Nothing answers for it: no version is active.
    let refused = admin(&host).get("/crm/probe/status").await;
    assert!(refused.is_err(), "{refused:?}");

    // The CLI: --no-activate, and it prints what the version requests.
    let mut manifest = probe_manifest("1.0.0", &[]);
    manifest["id"] = json!("probe-two");
    let file = data.path().join("probe-two.wasm");
    let bytes = std::fs::read(component("fixture_probe")).expect("probe built");
    std::fs::write(&file, with_manifest(&bytes, &manifest)).expect("write");
    let file = file.to_string_lossy().into_owned();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx_at(
            Some(data.path()),
            &["plugin", "install", &file, "--no-activate"],
            "",
        )
    });
    assert!(ok, "{err}");
    assert!(out.contains("it requests: "), "{out}");
    assert!(out.contains("http://169.254.169.254"), "{out}");
    assert!(out.contains("not activated"), "{out}");
    let list = admin(&host).get("/plugins").await.expect("list");
    assert_eq!(
        versions(&list, "probe-two"),
        vec![("1.0.0".to_string(), false)]
    );
}
