//! Hostile plugins through the real host: every attack the probe fixture can
//! make, its outcome, and that the host kept serving, the portal, the API
//! and another plugin (the 0.2.0 probe, `probe-v2`, as a bystander). The
//! table in docs/SECURITY.md ("Hostile plugins") points at these tests and
//! at the ones in `sandbox` and `outbound`.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use e2e_tests::{CountingServer, Options, admin, install, probe, probe_host, start_host};
use pbx_host::cli::AdminClient;
use serde_json::json;

/// The probe and its bystander in one host.
async fn hostile_host(
    options: Options,
) -> (
    tempfile::TempDir,
    pbx_host::server::RunningHost,
    AdminClient,
) {
    let (dir, host, api) = probe_host(options).await;
    install(&api, "fixture_probe_v2")
        .await
        .expect("the bystander installs");
    (dir, host, api)
}

/// The bystander answers, and so does the attacker in a fresh instance.
async fn both_still_answer(api: &AdminClient) {
    assert_eq!(
        probe(api, "probe-v2", "kv-get", "bystander")
            .await
            .as_deref(),
        Ok("absent"),
        "another plugin keeps answering"
    );
    assert_eq!(
        probe(api, "probe", "env", "").await.as_deref(),
        Ok("vars 0 args 0"),
        "the attacker's next call runs in a fresh instance"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_calls_on_every_core_leave_the_portal_and_the_api_answering() {
    // Long enough that every check below is done while the loops run.
    let deadline = Duration::from_secs(20);
    let (_dir, host, api) = hostile_host(Options {
        deadline_ms: Some(deadline.as_millis() as u64),
        ..Options::default()
    })
    .await;
    let cores = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(2);
    let calls_before = api.get("/host").await.expect("host")["runtime"]["calls"]
        .as_u64()
        .expect("calls");
    let loops: Vec<_> = (0..cores)
        .map(|_| {
            let api = admin(&host);
            // Not an empty value: the host would ask the plugin for its
            // settings form first, a call that would count as a loop's.
            tokio::spawn(async move { probe(&api, "probe", "loop", "forever").await })
        })
        .collect();

    // Every loop has started (the runtime counted its call): from here
    // each runs until its deadline unless the host fails it.
    let waiting_since = std::time::Instant::now();
    loop {
        let calls = api.get("/host").await.expect("the API answers")["runtime"]["calls"]
            .as_u64()
            .expect("calls");
        if calls >= calls_before + cores as u64 {
            break;
        }
        assert!(
            waiting_since.elapsed() < deadline,
            "the API answered only after the loops' deadline: they held its workers (or never started)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The portal, the admin API and another plugin answer...
    let login = reqwest::get(format!("{}/login", host.url()))
        .await
        .expect("the portal answers");
    assert_eq!(login.status(), 200);
    api.get("/plugins").await.expect("the API answers");
    assert_eq!(
        probe(&api, "probe-v2", "kv-get", "bystander")
            .await
            .as_deref(),
        Ok("absent")
    );
    // ...while every loop is still running: progress, not speed.
    let running = loops.iter().filter(|l| !l.is_finished()).count();
    assert_eq!(
        running, cores,
        "the host answered only after the looping calls ended: they held its workers"
    );

    for looped in loops {
        let err = looped
            .await
            .expect("task")
            .expect_err("an endless loop cannot succeed");
        assert!(
            err.contains("did not finish within its 20s deadline"),
            "{err}"
        );
    }
    both_still_answer(&api).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_overflow_fails_the_call_alone() {
    let (_dir, host, api) = hostile_host(Options::default()).await;
    let err = probe(&api, "probe", "recurse", "")
        .await
        .expect_err("the stack runs out");
    assert!(err.contains("plugin probe failed"), "{err}");
    both_still_answer(&api).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_and_a_trap_fail_their_calls_alone() {
    let (_dir, host, api) = hostile_host(Options {
        memory_mib: Some(32),
        ..Options::default()
    })
    .await;
    let err = probe(&api, "probe", "grow", "")
        .await
        .expect_err("cannot grow forever");
    assert!(err.contains("exceeded its memory limit of 32 MiB"), "{err}");
    both_still_answer(&api).await;
    let err = probe(&api, "probe", "panic", "boom")
        .await
        .expect_err("a panic fails the call");
    assert!(err.contains("panicked: probe panic: boom"), "{err}");
    both_still_answer(&api).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_flood_stops_at_the_quota() {
    let (_dir, host, api) = hostile_host(Options::default()).await;
    api.post(
        "/plugins/probe/grants",
        &json!({"kv_max_keys": 100, "kv_max_mib": 1}),
    )
    .await
    .expect("a small quota");
    let flood = probe(&api, "probe", "kv-flood", "1000")
        .await
        .expect("the call itself succeeds");
    assert!(flood.starts_with("wrote "), "{flood}");
    assert!(flood.contains("then quota-exceeded"), "{flood}");
    let written: u32 = flood
        .trim_start_matches("wrote ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(written <= 100, "{flood}");
    // The bystander's own namespace is untouched and writable.
    assert_eq!(
        probe(&api, "probe-v2", "kv-set", "mine=1").await.as_deref(),
        Ok("ok")
    );
    both_still_answer(&api).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_browser_opens_only_granted_hosts_short_urls_at_a_bounded_rate() {
    let (_dir, host, api) = hostile_host(Options {
        grants: vec!["probe=https://crm.example.com".into()],
        ..Options::default()
    })
    .await;
    let open = |url: String| {
        let api = &api;
        async move { probe(api, "probe", "open", &url).await.expect("call") }
    };
    assert_eq!(
        open("https://crm.example.com/record/1".into()).await,
        "opened"
    );
    for refused in [
        // Neither requested nor granted: a phishing page.
        "https://login.evil.test/".to_string(),
        // Requested by the manifest, not granted.
        "https://other.example.com/login".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://127.0.0.1:9/".into(),
        "javascript:alert(1)".into(),
        format!("https://crm.example.com/{}", "a".repeat(5000)),
    ] {
        let answer = open(refused.clone()).await;
        assert!(
            answer.starts_with("refused "),
            "{refused:.60}: {answer:.200}"
        );
    }
    let flood = probe(
        &api,
        "probe",
        "open-flood",
        "100 https://crm.example.com/again",
    )
    .await
    .expect("call");
    let opened: usize = flood
        .strip_prefix("opened ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("a count");
    assert!(
        (20..=40).contains(&opened),
        "a burst of about 30 then 10 a second: {flood}"
    );
    assert!(flood.contains("limited to 30 pages at once"), "{flood}");

    // Only the granted pages were recorded for the portal.
    let requests = api.get("/browser-requests?after=0").await.expect("list");
    let urls: Vec<&str> = requests["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(|r| r["url"].as_str())
        .collect();
    assert_eq!(urls.len(), 1 + opened, "{urls:?}");
    assert!(
        urls.iter()
            .all(|u| u.starts_with("https://crm.example.com/")),
        "{urls:?}"
    );
    both_still_answer(&api).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_response_is_cut_at_the_cap() {
    // 1 GiB offered; the host stops reading at its cap.
    let huge = CountingServer::start("200 OK", &[], 1 << 30).await;
    let (_dir, host, api) = hostile_host(Options {
        grants: vec![format!("probe=http://127.0.0.1:{}", huge.port)],
        ..Options::default()
    })
    .await;
    let answer = probe(
        &api,
        "probe",
        "fetch",
        &format!("http://127.0.0.1:{}/", huge.port),
    )
    .await;
    assert_eq!(answer.as_deref(), Ok("too-large 16777216"));
    both_still_answer(&api).await;
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_names_and_the_metadata_address_are_refused() {
    let listener = CountingServer::start("200 OK", &[], 5).await;
    let (_dir, host, api) = hostile_host(Options::default()).await;
    for target in [
        format!("http://localhost:{}/", listener.port),
        format!("http://127.0.0.1:{}/", listener.port),
        "http://169.254.169.254/latest/meta-data/".to_string(),
    ] {
        let answer = probe(&api, "probe", "fetch", &target)
            .await
            .expect("the call itself succeeds");
        assert!(answer.starts_with("denied "), "{target}: {answer}");
    }
    assert_eq!(listener.connections_before_now().await, 0);
    both_still_answer(&api).await;
    host.shutdown().await;
}

/// What the host logs under the target `plugin`, from every test of this
/// binary (the subscriber is global); tests look for their own marks.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn plugin_logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("off,plugin=info"))
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .try_init()
            .expect("no other test of this binary sets a global subscriber");
        logs
    })
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_log_text_cannot_forge_lines_or_flood_the_log() {
    let logs = plugin_logs();
    let (_dir, host, api) = hostile_host(Options::default()).await;
    let forged = "2026-12-05T09:00:00.000000Z  INFO pbx_host::server: admin-signed-in-4c1b";
    assert_eq!(
        probe(&api, "probe", "log", &format!("hello\n{forged}\r\x1b[2K"))
            .await
            .as_deref(),
        Ok("logged")
    );
    assert_eq!(
        probe(&api, "probe", "log-flood", "5000").await.as_deref(),
        Ok("logged 5000")
    );
    both_still_answer(&api).await;
    host.shutdown().await;

    let lines = logs.lines();
    assert!(
        !lines.iter().any(|l| l.starts_with(forged)),
        "a plugin forged a log line: {:?}",
        lines.iter().find(|l| l.contains("admin-signed-in-4c1b"))
    );
    let mark = lines
        .iter()
        .find(|l| l.contains("admin-signed-in-4c1b"))
        .expect("the message is logged");
    assert!(
        mark.contains("hello\\n2026-12-05") && mark.contains("\\r\\u{1b}[2K"),
        "{mark}"
    );
    let flood = lines.iter().filter(|l| l.contains("probe flood")).count();
    assert_eq!(flood, 1000, "at most 1000 messages a call");
    assert!(
        !lines.iter().any(|l| l.starts_with("forged line")),
        "the flood's newlines are escaped too"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("logged more than 1000 messages in one call")),
        "the cut is said once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_precompile_cache_file_not_written_by_the_host_is_never_loaded() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    install(&api, "fixture_probe").await.expect("probe");
    install(&api, "fixture_probe_v2").await.expect("probe-v2");
    host.shutdown().await;

    let cache = dir.path().join("cache");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.permissions().mode() & 0o777);
    assert_eq!(mode(&cache), 0o700, "the cache folder is owner-only");
    let mut files: Vec<_> = std::fs::read_dir(&cache)
        .expect("cache")
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    // Native code from elsewhere, in the right place: probe-v2's compiled
    // form (valid for this engine) under probe's name, and the other way.
    let (a, b) = (
        std::fs::read(&files[0]).expect("read"),
        std::fs::read(&files[1]).expect("read"),
    );
    std::fs::write(&files[0], &b).expect("swap");
    std::fs::write(&files[1], &a).expect("swap");

    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    let stats = api.get("/host").await.expect("host")["runtime"].clone();
    assert_eq!(
        stats["cache_loads"], 0,
        "a swapped file was loaded: {stats}"
    );
    assert_eq!(stats["compiled"], 2, "{stats}");
    // Each plugin is itself again, and the cache is repaired.
    assert_eq!(
        probe(&api, "probe", "kv-get", "x").await.as_deref(),
        Ok("absent")
    );
    assert_eq!(
        probe(&api, "probe-v2", "kv-get-many", "x").await.as_deref(),
        Ok("values x absent")
    );
    host.shutdown().await;
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    let stats = api.get("/host").await.expect("host")["runtime"].clone();
    assert_eq!(stats["cache_loads"], 2, "{stats}");
    host.shutdown().await;
}
