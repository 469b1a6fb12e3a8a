//! The CLI as a safe terminal program, through the real `pbx-host` binary:
//! its admin token never goes to a proxy, a closed stdout (`… | head`) ends
//! it quietly with its work done, and CRM text reaches the terminal with
//! its control characters escaped.

use std::path::Path;
use std::process::{Command, Stdio};

use e2e_tests::org::{Setup, World, add_extension};
use e2e_tests::{CountingServer, Options, binary, pbx_at, probe_host};
use salesforce_emulator::NewUser;
use serde_json::Value;

/// The proxy variables reqwest and curl read, all pointing at `proxy`.
const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "all_proxy",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_never_goes_to_a_proxy() {
    let (dir, host, _api) = probe_host(Options::default()).await;
    // A local listener standing for the proxy: it counts every connection.
    let proxy = CountingServer::start("200 OK", &[], 0).await;
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let data_dir = dir.path().to_path_buf();
    let out = tokio::task::block_in_place(|| {
        let mut command = Command::new(binary("pbx-host"));
        command
            .args(["status", "--json", "--data-dir"])
            .arg(&data_dir);
        for var in PROXY_VARS {
            command.env(var, &proxy_url);
        }
        command
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdin(Stdio::null())
            .output()
            .expect("pbx-host runs")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        proxy.connections_before_now().await,
        0,
        "the CLI connected to the proxy (with the admin token)"
    );
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Value = serde_json::from_str(&stdout).expect("the host's status, as JSON");
    assert!(status.is_object(), "{stdout}");
    host.shutdown().await;
}

/// `pbx-host ARGS --data-dir DIR` with its stdout already closed, as after
/// `| head` has read its lines; (exit code, stderr).
fn with_closed_stdout(data_dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    tokio::task::block_in_place(|| closed_stdout_run(data_dir, args, ""))
}

/// As [`with_closed_stdout`], with `stdin` as the command's input (the
/// answer to its prompt).
fn with_closed_stdout_answering(
    data_dir: &Path,
    args: &[&str],
    stdin: &str,
) -> (Option<i32>, String) {
    tokio::task::block_in_place(|| closed_stdout_run(data_dir, args, stdin))
}

fn closed_stdout_run(data_dir: &Path, args: &[&str], stdin: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let (reader, writer) = std::io::pipe().expect("a pipe");
    // Closed before the process starts: its first write meets a broken pipe.
    drop(reader);
    let mut child = Command::new(binary("pbx-host"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("pbx-host runs");
    if let Some(mut input) = child.stdin.take() {
        // A command that reads nothing may be gone already: no error then.
        let _ = input.write_all(stdin.as_bytes());
    }
    let out = child.wait_with_output().expect("pbx-host ends");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_text_is_escaped_and_a_closed_stdout_ends_the_cli_quietly() {
    let world = World::start(Setup::default()).await;
    // A CRM user whose name tries to retitle the window, ring the bell,
    // clear the screen and overwrite its own line.
    world
        .org
        .add_user(NewUser {
            first_name: "Eve\u{1b}]0;owned\u{7}".into(),
            last_name: "Mallory\u{1b}[2J\r".into(),
            email: "eve@example.org".into(),
            ..NewUser::default()
        })
        .expect("user added");
    world.connect().await;
    add_extension(&world, "1001", None).await;
    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    let dir = world.data_dir.clone();
    let pbx = |args: &[&str]| tokio::task::block_in_place(|| pbx_at(Some(&dir), args, ""));

    let (ok, listed, err) = pbx(&["crm", "users", "list"]);
    assert!(ok, "{err}");
    assert!(
        listed.contains("Eve\\u{1b}]0;owned\\u{7} Mallory\\u{1b}[2J\\r"),
        "{listed}"
    );
    let (ok, saved, err) = pbx(&["crm", "associate", "eve@example.org", "1001"]);
    assert!(ok, "{err}");
    assert!(saved.contains("Eve\\u{1b}]0;owned\\u{7}"), "{saved}");
    for output in [&listed, &saved] {
        assert!(
            !output.contains(['\u{1b}', '\u{7}', '\r']),
            "a control character reached the terminal: {output:?}"
        );
    }

    // A closed pipe: no panic, status 0, and the command's work is done.
    let (code, err) = with_closed_stdout(&dir, &["crm", "users", "list"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    let (code, err) = with_closed_stdout(&dir, &["crm", "unassociate", "eve@example.org"]);
    assert_eq!((code, err.as_str()), (Some(0), ""));
    let users = world.api.get("/crm/salesforce/users").await.expect("users");
    let eve = users["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["user"]["email"] == "eve@example.org")
        .cloned()
        .unwrap_or_default();
    assert_eq!(eve["user"]["email"], "eve@example.org", "{users}");
    assert!(eve["extension"].is_null(), "still associated: {eve}");
    // `call simulate` prints as it sends; every event still goes out.
    let (code, err) = with_closed_stdout(
        &dir,
        &[
            "call",
            "simulate",
            "--from",
            "+14155550100",
            "--extension",
            "1001",
            "--call-id",
            "closed-pipe",
        ],
    );
    assert_eq!((code, err.as_str()), (Some(0), ""));
    let report = e2e_tests::org::drain(&world.api, std::time::Duration::from_secs(30)).await;
    assert_eq!(
        e2e_tests::org::tasks_of(&world, "closed-pipe").len(),
        1,
        "the ended event was sent and logged: {report}"
    );
    // A prompt answered on stdin while stdout is closed: the answer is
    // still read and the associations saved.
    add_extension(&world, "1002", Some("eve@example.org")).await;
    let (code, err) = with_closed_stdout_answering(&dir, &["crm", "associate", "--auto"], "y\n");
    assert_eq!((code, err.as_str()), (Some(0), ""));
    let eve = world
        .api
        .get("/crm/salesforce/associations/extension/1002")
        .await
        .expect("association");
    assert_eq!(eve["user"]["email"], "eve@example.org", "not saved: {eve}");
}
