//! `pbx-host` subcommands as an operator runs them, against a running host
//! (found through its data directory) and the emulated org.

use e2e_tests::org::{CONSUMER_KEY, CONSUMER_SECRET, Consent, Setup, World};
use e2e_tests::{Options, api_call, component, pbx_at, start_host};
use serde_json::json;

/// Run `pbx-host ARGS --data-dir DIR` with `stdin`; (success, stdout, stderr).
fn pbx(world: &World, args: &[&str], stdin: &str) -> (bool, String, String) {
    pbx_at(Some(&world.data_dir), args, stdin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configure_authorize_status_and_disconnect_from_the_cli() {
    let world = World::start(Setup::default()).await;
    let w = &world;
    let org = world.org.base_url();

    let (ok, out, err) = tokio::task::block_in_place(|| pbx(w, &["crm", "callback-url"], ""));
    assert!(ok, "{err}");
    assert_eq!(
        out.trim(),
        format!("{}/crm/salesforce/oauth/callback", world.host.url())
    );

    // The secret comes on stdin, never on the command line.
    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "crm",
                "configure",
                "--consumer-key",
                CONSUMER_KEY,
                "--consumer-secret-stdin",
                "--login-url",
                &org,
            ],
            &format!("{CONSUMER_SECRET}\n"),
        )
    });
    assert!(ok, "{err}");
    assert!(out.contains("Saved"), "{out}");

    let (ok, url, err) =
        tokio::task::block_in_place(|| pbx(w, &["crm", "authorize", "--no-browser"], ""));
    assert!(ok, "{err}");
    let url = url.trim().to_string();
    assert!(
        url.starts_with(&format!("{org}/services/oauth2/authorize?")),
        "{url}"
    );
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let Consent::Redirect(location) = world.consent(&url, true).await else {
        panic!("Allow redirects");
    };
    assert_eq!(world.callback(&location).await.0, 200);

    let (ok, out, err) = tokio::task::block_in_place(|| pbx(w, &["crm", "status"], ""));
    assert!(ok, "{err}");
    assert!(out.contains("Connected"), "{out}");
    assert!(out.contains("admin@example.org"), "{out}");
    let (ok, json, _) = tokio::task::block_in_place(|| pbx(w, &["crm", "status", "--json"], ""));
    assert!(ok);
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    assert_eq!(status["state"], "Connected");

    let (ok, out, err) = tokio::task::block_in_place(|| pbx(w, &["crm", "disconnect"], ""));
    assert!(ok, "{err}");
    assert!(out.contains("Disconnected"), "{out}");
    assert_eq!(
        world.org.token_stats().revocations,
        1,
        "revoked at Salesforce"
    );
    assert_eq!(world.status().await["state"], "Disconnected");
    // Settings are kept: the key is still there, the secret still set.
    let settings = world
        .api
        .get("/crm/salesforce/settings")
        .await
        .expect("settings");
    let secret = settings["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|v| v["key"] == "consumer-secret"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(secret["is_set"], true);
    assert!(!settings.to_string().contains(CONSUMER_SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_errors_name_the_fix() {
    let world = World::start(Setup::default()).await;
    let w = &world;
    let (ok, _, err) = tokio::task::block_in_place(|| {
        pbx(w, &["crm", "configure", "--consumer-key", "two words"], "")
    });
    assert!(!ok);
    assert!(err.contains("Consumer Key"), "{err}");
    let (ok, _, err) =
        tokio::task::block_in_place(|| pbx(w, &["crm", "authorize", "--no-browser"], ""));
    assert!(!ok);
    assert!(
        err.contains("Consumer Key") || err.contains("Consumer Secret"),
        "{err}"
    );
    let (ok, _, err) =
        tokio::task::block_in_place(|| pbx(w, &["extension", "add", "10x1", "--name", "Ann"], ""));
    assert!(!ok);
    assert!(err.contains("1-16 digits"), "{err}");
    let (ok, _, err) =
        tokio::task::block_in_place(|| pbx(w, &["plugin", "install", "/nonexistent.wasm"], ""));
    assert!(!ok);
    assert!(err.contains("cannot read /nonexistent.wasm"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_sync_list_and_associate_from_the_cli() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    let w = &world;
    let (ok, _, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "extension",
                "add",
                "1001",
                "--name",
                "Ada",
                "--email",
                "ADMIN@example.org",
            ],
            "",
        )
    });
    assert!(ok, "{err}");
    let (ok, _, err) =
        tokio::task::block_in_place(|| pbx(w, &["extension", "add", "1002", "--name", "Ben"], ""));
    assert!(ok, "{err}");

    let (ok, out, err) = tokio::task::block_in_place(|| pbx(w, &["crm", "users", "sync"], ""));
    assert!(ok, "{err}");
    assert!(out.contains("Synced"), "{out}");

    let (ok, out, err) =
        tokio::task::block_in_place(|| pbx(w, &["crm", "associate", "--auto", "--yes"], ""));
    assert!(ok, "{err}");
    // The proposal's table: the admin user's row ends in its extension.
    assert!(
        out.lines()
            .any(|l| l.starts_with("Admin User ") && l.ends_with(" 1001")),
        "{out}"
    );
    assert!(out.contains("Saved"), "{out}");

    // By e-mail (any case) or by id.
    let user1 = world
        .org
        .users()
        .into_iter()
        .find(|u| u["Username"] == "user1@example.org")
        .expect("user1");
    let email = user1["Email"].as_str().unwrap_or_default().to_uppercase();
    let (ok, out, err) =
        tokio::task::block_in_place(|| pbx(w, &["crm", "associate", &email, "1002"], ""));
    assert!(ok, "{err}");
    assert!(out.contains("1002"), "{out}");
    // The same extension for another user is refused, naming the rule.
    let (ok, _, err) = tokio::task::block_in_place(|| {
        pbx(w, &["crm", "associate", "admin@example.org", "1002"], "")
    });
    assert!(!ok);
    assert!(err.contains("1002"), "{err}");

    let (ok, out, _) = tokio::task::block_in_place(|| pbx(w, &["crm", "users", "list"], ""));
    assert!(ok);
    let line = out
        .lines()
        .find(|l| l.contains("admin@example.org"))
        .unwrap_or_default();
    assert!(
        line.contains("1001") && line.contains("associated"),
        "{out}"
    );
    let (ok, json, _) =
        tokio::task::block_in_place(|| pbx(w, &["crm", "users", "list", "--json"], ""));
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let user1_id = user1["Id"].as_str().unwrap_or_default();
    let entry = list["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["user"]["id"] == user1_id))
        .cloned()
        .unwrap_or_default();
    assert_eq!(entry["extension"], "1002");

    let (ok, _, err) =
        tokio::task::block_in_place(|| pbx(w, &["crm", "unassociate", user1_id], ""));
    assert!(ok, "{err}");
    let list = world.api.get("/crm/salesforce/users").await.expect("users");
    let entry = list["entries"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["user"]["id"] == user1_id))
        .cloned()
        .unwrap_or_default();
    assert!(entry["extension"].is_null(), "{entry}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_versions_from_the_cli() {
    let world = World::start(Setup::default()).await;
    let w = &world;
    let listing = world.api.get("/plugins").await.expect("list");
    let mut manifest = listing["plugins"][0]["manifest"].clone();
    let old = manifest["version"].as_str().expect("version").to_string();
    let new = format!("{old}-cli");
    manifest["version"] = serde_json::json!(new);
    manifest["hosts"]
        .as_array_mut()
        .expect("hosts")
        .push(serde_json::json!("https://api.cli.test"));
    let shipped = std::fs::read(e2e_tests::component("salesforce_plugin")).expect("plugin");
    let bytes = e2e_tests::with_manifest(&shipped, &manifest);
    let file = world.data_dir.join("next.wasm");
    std::fs::write(&file, &bytes).expect("write");
    let file = file.to_string_lossy().into_owned();

    let (ok, _, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &["plugin", "install", &file, "--sha256", &"0".repeat(64)],
            "",
        )
    });
    assert!(!ok && err.contains("SHA-256"), "{err}");

    let sha = e2e_tests::sha256_hex(&bytes);
    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &["plugin", "install", &file, "--activate", "--sha256", &sha],
            "",
        )
    });
    assert!(ok, "{err}");
    assert!(
        out.contains("not activated") && out.contains("https://api.cli.test"),
        "{out}"
    );
    assert!(out.contains("pbx-host plugin grant salesforce"), "{out}");

    let (ok, out, err) = tokio::task::block_in_place(|| pbx(w, &["plugin", "list"], ""));
    assert!(ok, "{err}");
    assert!(
        out.contains(&new) && out.contains("waiting for grants"),
        "{out}"
    );

    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &["plugin", "grant", "salesforce", "https://api.cli.test"],
            "",
        )
    });
    assert!(ok && out.contains("https://api.cli.test"), "{out}{err}");
    let (ok, out, err) = tokio::task::block_in_place(|| {
        pbx(
            w,
            &[
                "plugin",
                "grant",
                "salesforce",
                "--kv-keys",
                "20000",
                "--kv-mib",
                "128",
            ],
            "",
        )
    });
    assert!(
        ok && out.contains("may keep 20000 keys, 128 MiB"),
        "{out}{err}"
    );
    let (ok, out, err) =
        tokio::task::block_in_place(|| pbx(w, &["plugin", "activate", "salesforce", &new], ""));
    assert!(
        ok && out.contains(&format!("salesforce {new} is active")),
        "{out}{err}"
    );
    let (ok, out, err) =
        tokio::task::block_in_place(|| pbx(w, &["plugin", "rollback", "salesforce"], ""));
    assert!(
        ok && out.contains(&format!("salesforce {old} is active")),
        "{out}{err}"
    );
    let (ok, out, err) =
        tokio::task::block_in_place(|| pbx(w, &["plugin", "remove", "salesforce", &new], ""));
    assert!(ok && out.contains("removed"), "{out}{err}");
    let (ok, out, _) = tokio::task::block_in_place(|| pbx(w, &["plugin", "list", "--json"], ""));
    assert!(ok);
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        list["plugins"][0]["versions"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(list["plugins"][0]["active"], serde_json::json!(old));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_signs_with_the_cli_and_a_host_requiring_signatures_installs_it() {
    let vendor = tempfile::tempdir().expect("vendor dir");
    let key = vendor.path().join("acme.key");
    let key_arg = key.to_string_lossy().into_owned();
    let run = |args: &[&str]| pbx_at(None, args, "");

    let keygen = [
        "vendor",
        "keygen",
        "--out",
        &key_arg,
        "--key-id",
        "acme-2026",
    ];
    let (ok, out, err) = run(&keygen);
    assert!(ok, "{err}");
    let trust = out
        .lines()
        .find_map(|l| l.split_once("--trusted-key "))
        .map(|(_, t)| t.trim().to_string())
        .expect("keygen prints the trust setting");
    assert!(trust.starts_with("acme-2026="), "{out}");
    let pem = std::fs::read_to_string(&key).expect("key file");
    assert!(
        !out.contains(pem.lines().nth(1).expect("pem body")),
        "the private key is not printed"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads the key");
    }
    // A second keygen never replaces a key.
    let (ok, _, err) = run(&keygen);
    assert!(!ok && err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_to_string(&key).expect("key"), pem);

    // Sign a build in place; the printed SHA-256 is the signed file's.
    let unsigned = std::fs::read(component("fixture_probe")).expect("probe built");
    let file = vendor.path().join("probe.wasm");
    std::fs::write(&file, &unsigned).expect("copy");
    let file_arg = file.to_string_lossy().into_owned();
    let (ok, out, err) = run(&[
        "vendor",
        "sign",
        &file_arg,
        "--key",
        &key_arg,
        "--key-id",
        "acme-2026",
    ]);
    assert!(ok, "{err}");
    let signed = std::fs::read(&file).expect("signed file");
    assert!(signed.len() > unsigned.len() && signed.starts_with(&unsigned));
    let sha = e2e_tests::sha256_hex(&signed);
    assert!(out.contains(&format!("SHA-256: {sha}")), "{out}");
    let unsigned_file = vendor.path().join("unsigned.wasm");
    std::fs::write(&unsigned_file, &unsigned).expect("copy");

    // A host that trusts the key and requires signatures.
    let data = tempfile::tempdir().expect("data dir");
    let host = start_host(
        data.path(),
        Options {
            trusted_keys: vec![trust],
            require_signature: true,
            ..Options::default()
        },
    )
    .await;
    let at = |args: &[&str]| pbx_at(Some(data.path()), args, "");
    let unsigned_arg = unsigned_file.to_string_lossy().into_owned();
    let (ok, _, err) = tokio::task::block_in_place(|| at(&["plugin", "install", &unsigned_arg]));
    assert!(!ok && err.contains("not signed"), "{err}");
    let (ok, _, err) =
        tokio::task::block_in_place(|| at(&["plugin", "install", &file_arg, "--sha256", &sha]));
    assert!(ok, "{err}");
    let (ok, out, err) = tokio::task::block_in_place(|| at(&["plugin", "list", "--json"]));
    assert!(ok, "{err}");
    let list: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(
        list["plugins"][0]["versions"][0]["signed_by"], "acme-2026",
        "{list}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_extension_is_replaced_only_when_asked() {
    let data = tempfile::tempdir().expect("data dir");
    let host = start_host(data.path(), Options::default()).await;
    let at = |args: &[&str]| pbx_at(Some(data.path()), args, "");
    let ada = json!([{"number": "1001", "name": "Ada Lovelace", "email": "ada@acme.com"}]);
    let listed = || async {
        api_call(&host, reqwest::Method::GET, "/extensions", None)
            .await
            .1["extensions"]
            .clone()
    };

    let (ok, out, err) = tokio::task::block_in_place(|| {
        at(&[
            "extension",
            "add",
            "1001",
            "--name",
            "Ada Lovelace",
            "--email",
            "ada@acme.com",
        ])
    });
    assert!(ok, "{err}");
    assert!(out.contains("extension 1001 added"), "{out}");

    // The API: 409 `exists`, naming whose it is; nothing changes.
    let bob = json!({"number": "1001", "name": "Bob", "email": "bob@acme.com"});
    let (status, body) = api_call(&host, reqwest::Method::POST, "/extensions", Some(&bob)).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["kind"], "exists", "{body}");
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("extension 1001 exists (Ada Lovelace, ada@acme.com); "),
        "{message}"
    );
    assert!(message.contains("replace=yes"), "{message}");
    assert_eq!(listed().await, ada);
    let (status, body) = api_call(
        &host,
        reqwest::Method::POST,
        "/extensions?replace=maybe",
        Some(&bob),
    )
    .await;
    assert_eq!((status, &body["field"]), (400, &json!("replace")), "{body}");
    assert_eq!(listed().await, ada);

    // The CLI: refused the same way, naming --replace; --replace replaces.
    let (ok, _, err) =
        tokio::task::block_in_place(|| at(&["extension", "add", "1001", "--name", "Bob"]));
    assert!(!ok);
    assert!(
        err.contains("extension 1001 exists (Ada Lovelace, ada@acme.com)"),
        "{err}"
    );
    assert!(err.contains("--replace"), "{err}");
    assert_eq!(listed().await, ada);
    let (ok, _, err) = tokio::task::block_in_place(|| {
        at(&["extension", "add", "1001", "--name", "Bob", "--replace"])
    });
    assert!(ok, "{err}");
    assert_eq!(listed().await, json!([{"number": "1001", "name": "Bob"}]));
    let (status, body) = api_call(
        &host,
        reqwest::Method::POST,
        "/extensions?replace=yes",
        Some(&json!({"number": "1001", "name": "Cleo"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Removing asks first; without a terminal it refuses, naming --yes.
    let (ok, _, err) = tokio::task::block_in_place(|| at(&["extension", "remove", "1001"]));
    assert!(!ok);
    assert!(err.contains("--yes"), "{err}");
    assert_eq!(listed().await, json!([{"number": "1001", "name": "Cleo"}]));
    let (ok, _, err) = tokio::task::block_in_place(|| at(&["extension", "remove", "7777"]));
    assert!(!ok);
    assert!(err.contains("extension 7777 does not exist"), "{err}");
    let (ok, out, err) =
        tokio::task::block_in_place(|| at(&["extension", "remove", "1001", "--yes"]));
    assert!(ok, "{err}");
    assert!(out.contains("extension 1001 removed"), "{out}");
    assert_eq!(listed().await, json!([]));
}

/// `pbx-host serve` on `data_dir`, once it has written its admin URL.
fn serve_until_ready(data_dir: &std::path::Path) -> std::process::Child {
    use std::time::{Duration, Instant};
    let url_file = data_dir.join("admin-url");
    let _ = std::fs::remove_file(&url_file);
    let child = std::process::Command::new(e2e_tests::binary("pbx-host"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pbx-host serve starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !url_file.exists() {
        assert!(Instant::now() < deadline, "serve never wrote admin-url");
        std::thread::sleep(Duration::from_millis(50));
    }
    child
}

/// Supervisors (systemd, Docker) stop a service with SIGTERM: the host shuts
/// down gracefully, exits 0 and lets go of its store, so it starts again on
/// the same data directory at once.
#[test]
fn serve_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    for round in 0..2 {
        let mut child = serve_until_ready(dir.path());
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        let status = child.wait().expect("serve exits");
        assert_eq!(
            status.code(),
            Some(0),
            "round {round}: serve must exit 0 on SIGTERM, not die by the signal ({status})"
        );
    }
}
