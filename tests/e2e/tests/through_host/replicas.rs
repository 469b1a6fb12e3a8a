//! Two replicas of the host on one Redis, serving one PBX: they share the
//! admin token, the plugin files, the Homepage URL and the sessions; an
//! authorization (the administrator's, or an agent's sign-in) begun on one
//! completes when Salesforce redirects to the other; a token refresh stays
//! single-flight; a call's events spread over both make one Task; a pop-up
//! reaches the agent's stream on the other replica; a version activated on
//! one serves on the other, calls there running through the swap; and a
//! replica killed with `kill -9` during a calls load loses and doubles no
//! call log.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use e2e_tests::org::{
    Consent, Setup, World, add_extension, associate, call_event, drain, send_event, tasks_of,
};
use e2e_tests::{Options, admin, pbx_at, start_host};
use pbx_host::capabilities::browser::Viewer;
use pbx_host::server::{ADMIN_TOKEN_FILE, RunningHost};
use pbx_host::store::KEY_FILE;
use serde_json::{Map, Value, json};

use crate::plugin_versions::probe_version;
use crate::tenants::token_on_first_line;

/// 2026-01-15 12:00:00 UTC.
const NOON: u64 = 1_768_478_400_000;

/// Another replica on `store`, with the host key of `first_data_dir`
/// copied, as an operator does.
async fn replica(first_data_dir: &Path, dir: &Path, options: Options) -> RunningHost {
    pbx_host::files::create_private_dir(dir).expect("data dir");
    std::fs::copy(first_data_dir.join(KEY_FILE), dir.join(KEY_FILE)).expect("copy host.key");
    start_host(dir, options).await
}

/// The org and the first replica on `server`, with the Homepage URL set:
/// behind a load balancer both replicas have one; here, the first
/// replica's address, where the org's app points.
async fn first_replica(server: &redis_kit::RedisServer) -> World {
    let world = World::start(Setup {
        host: Options {
            store: Some(server.url()),
            ..Options::default()
        },
        ..Setup::default()
    })
    .await;
    world
        .api
        .put("/network", &json!({"homepage_url": world.host.url()}))
        .await
        .expect("the Homepage URL is set");
    world
}

/// A second replica of `world`'s host on `server`, in `dir`, with the
/// org's grant and CA.
async fn second_replica(world: &World, server: &redis_kit::RedisServer, dir: &Path) -> RunningHost {
    replica(
        &world.data_dir,
        dir,
        Options {
            store: Some(server.url()),
            grants: vec![format!("salesforce={}", world.org.base_url())],
            trust_ca: vec![world.ca_path.clone()],
            ..Options::default()
        },
    )
    .await
}

/// Wait for `done`, at most `within`; whether it came.
pub(crate) async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done()
}

fn active_version(host: &RunningHost, id: &str) -> Option<String> {
    active_of(&host.state.runtime, id)
}

/// The active version of plugin `id` in `runtime`.
pub(crate) fn active_of(runtime: &pbx_host::runtime::Runtime, id: &str) -> Option<String> {
    runtime
        .plugins()
        .into_iter()
        .find(|p| p.manifest.id == id)
        .map(|p| p.manifest.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_redis_serve_one_pbx() {
    let server = redis_kit::RedisServer::start();
    let world = first_replica(&server).await;

    let b_dir = world.dir.path().join("replica-b");
    let b = second_replica(&world, &server, &b_dir).await;
    // One admin token for the fleet, kept in B's data directory for its
    // CLI too; the plugin B never saw uploaded is served from the store.
    assert_eq!(b.admin_token, world.host.admin_token);
    let b_file = std::fs::read_to_string(b_dir.join(ADMIN_TOKEN_FILE)).expect("B's token file");
    assert_eq!(b_file.trim(), world.host.admin_token);
    assert!(
        active_version(&b, "salesforce").is_some(),
        "B serves the plugin"
    );
    let b_api = admin(&b);

    // The Homepage URL set on B is the one A composes Callback URLs from
    // (within a second); set back to A's address for the rest.
    for homepage in ["https://pbx.example.com".to_string(), world.host.url()] {
        b_api
            .put("/network", &json!({"homepage_url": homepage}))
            .await
            .expect("set on B");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let view = world.api.get("/network").await.expect("network on A");
            if view["homepage_url"] == homepage.as_str() {
                break;
            }
            assert!(Instant::now() < deadline, "A still has {view}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The administrator starts the authorization on A; Salesforce's
    // redirect reaches B.
    world
        .configure(
            e2e_tests::org::CONSUMER_KEY,
            e2e_tests::org::CONSUMER_SECRET,
        )
        .await
        .expect("settings save");
    let url = world.authorize().await.expect("authorization starts");
    let Consent::Redirect(location) = world.consent(&url, true).await else {
        panic!("the org did not redirect after Allow");
    };
    let on_b = location.replace(&world.host.url(), &b.url());
    assert_ne!(
        on_b, location,
        "the redirect goes to A's Callback URL: {location}"
    );
    let (status, page) = world.callback(&on_b).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Authorization succeeded!"), "{page}");
    let status = b_api
        .get("/crm/salesforce/status")
        .await
        .expect("status on B");
    assert_eq!(status["state"], "Connected", "{status}");
    let status = world.status().await;
    assert_eq!(status["state"], "Connected", "A sees it too: {status}");
    assert_eq!(
        status["last_authorization"]["ok"], true,
        "A's portal hears how the callback on B ended: {status}"
    );

    // The administrator's portal session, opened on A, is good on B; signed
    // out on B, it is over on A too.
    let (portal, session) = e2e_tests::portal_session(&world.host).await;
    let on = |host: &RunningHost| {
        portal
            .get(format!("{}/api/extensions", host.url()))
            .header("cookie", &session)
            .send()
    };
    assert_eq!(on(&b).await.expect("B answers").status().as_u16(), 200);
    let out = portal
        .post(format!("{}/logout", b.url()))
        .header("cookie", &session)
        .header("origin", b.url())
        .send()
        .await
        .expect("logout on B");
    assert!(out.status().is_redirection(), "{}", out.status());
    assert_eq!(
        on(&world.host).await.expect("A answers").status().as_u16(),
        401
    );

    // A token refresh stays single-flight across replicas: 20 lookups on
    // an expired session, half on each, make one refresh.
    let refreshes = world.org.token_stats().refresh_grants;
    world.org.expire_sessions();
    let lookups = (0..20u32).map(|n| {
        let host = if n % 2 == 0 { &world.host } else { &b };
        async move {
            host.state
                .runtime
                .plugin("salesforce")
                .lookup_caller(&format!("+1 212 555 {:04}", 100 + n), "US")
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    });
    let results = futures::future::join_all(lookups).await;
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        world.org.token_stats().refresh_grants,
        refreshes + 1,
        "one refresh"
    );

    // Set-up through A, seen by B.
    for x in ["1001", "1002"] {
        add_extension(&world, x, None).await;
    }
    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    associate(&world, &[("admin@example.org", "1001")]).await;
    let extensions = b_api.get("/extensions").await.expect("extensions on B");
    assert!(extensions.to_string().contains("1002"), "{extensions}");

    let fields: Map<String, Value> = json!({"LastName": "Replica", "Phone": "+1 212 555 0190"})
        .as_object()
        .cloned()
        .expect("object");
    let who = world.org.insert("Contact", fields).expect("contact");

    // Two calls, each with its events spread over both replicas.
    let replicas = [&world.host, &b];
    for (n, order) in [[0, 1, 0], [1, 0, 1]].iter().enumerate() {
        let call_id = format!("spread-{n}");
        for (phase, replica) in ["ringing", "answered", "ended"].iter().zip(order) {
            let host = replicas[*replica];
            let (code, body) = send_event(
                &host.url(),
                &host.admin_token,
                &call_event(&call_id, phase, "(212) 555-0190", "1001", NOON + n as u64),
            )
            .await;
            assert_eq!(
                code, 200,
                "{phase} of {call_id} on replica {replica}: {body}"
            );
        }
    }
    drain(&world.api, Duration::from_secs(30)).await;
    drain(&b_api, Duration::from_secs(30)).await;
    for n in 0..2 {
        let tasks = tasks_of(&world, &format!("spread-{n}"));
        assert_eq!(tasks.len(), 1, "spread-{n}: {tasks:?}");
        assert_eq!(tasks[0]["WhoId"], who.as_str());
    }

    // spread-1 rang on B: the pop-up for 1001 is on A too (where 1001's
    // page could be open), and spread-0's, which rang on A, on B; once each.
    for (host, call_id) in [(&world.host, "spread-1"), (&b, "spread-0")] {
        let shown = |host: &RunningHost| {
            host.state
                .services
                .browser
                .since(0)
                .into_iter()
                .filter(|r| {
                    r.viewer == Viewer::Extension("1001".into())
                        && r.caption.as_ref().and_then(|c| c.call_id.as_deref()) == Some(call_id)
                })
                .count()
        };
        assert!(
            eventually(Duration::from_secs(5), || shown(host) > 0).await,
            "the pop-up of {call_id} reached the other replica"
        );
        assert_eq!(shown(host), 1, "{call_id}");
    }

    // The operator replaces the fleet's tokens on A. B takes the new ones
    // at the first request that carries them, keeps them for its CLI, and
    // refuses the old ones from then on.
    let cli_a = |args: &[&str]| pbx_at(Some(&world.data_dir), args, "");
    let (ok, out, err) = cli_a(&["operator", "new-token"]);
    assert!(ok, "{err}");
    let operator = token_on_first_line(&out);
    let (ok, out, err) = cli_a(&["tenant", "new-token", "default"]);
    assert!(ok, "{err}");
    let admin_token = token_on_first_line(&out);
    let client = reqwest::Client::new();
    let status = |path: &str, token: &str| {
        let request = client.get(format!("{}{path}", b.url())).bearer_auth(token);
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    for (path, new, old, file) in [
        (
            "/operator/tenants",
            &operator,
            &world.host.operator_token,
            pbx_host::server::OPERATOR_TOKEN_FILE,
        ),
        (
            "/api/extensions",
            &admin_token,
            &world.host.admin_token,
            ADMIN_TOKEN_FILE,
        ),
    ] {
        assert_ne!(new, old);
        assert_eq!(status(path, new).await, 200, "{path} on B");
        let kept = std::fs::read_to_string(b_dir.join(file)).expect("B's token file");
        assert_eq!(&kept.trim(), new, "{file} on B");
        assert_eq!(status(path, old).await, 401, "{path} on B, old token");
    }
    let (ok, out, err) = pbx_at(Some(&b_dir), &["extension", "list"], "");
    assert!(ok, "B's CLI: {out}{err}");
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_activated_on_one_replica_serves_on_the_other_within_a_second() {
    let server = redis_kit::RedisServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let options = || Options {
        store: Some(server.url()),
        ..Options::default()
    };
    let a_dir = dir.path().join("a");
    let a = start_host(&a_dir, options()).await;
    let a_api = admin(&a);
    e2e_tests::install_bytes(&a_api, probe_version("1.0.0", &[]))
        .await
        .expect("1.0.0 installs");
    let b = replica(&a_dir, &dir.path().join("b"), options()).await;
    assert_eq!(active_version(&b, "probe").as_deref(), Some("1.0.0"));

    // 2.0.0 installed on A, not active yet: B compiles it ahead.
    let response = reqwest::Client::new()
        .post(format!("{}/api/plugins?activate=no", a.url()))
        .bearer_auth(&a.admin_token)
        .header("content-type", "application/wasm")
        .body(probe_version("2.0.0", &[]))
        .send()
        .await
        .expect("the host answers");
    assert_eq!(response.status().as_u16(), 201);
    let compiled_before = b.state.runtime.stats().compiled;
    assert!(
        eventually(Duration::from_secs(60), || {
            b.state.runtime.stats().compiled > compiled_before
        })
        .await,
        "B prepares the new version"
    );
    assert_eq!(active_version(&b, "probe").as_deref(), Some("1.0.0"));

    // Calls keep running on B through the swaps A makes.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (runtime, stop) = (b.state.runtime.clone(), stop.clone());
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

    // Activated on A: B serves it within a second.
    a_api
        .post("/plugins/probe/activate", &json!({"version": "2.0.0"}))
        .await
        .expect("activate");
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(5), || {
            active_version(&b, "probe").as_deref() == Some("2.0.0")
        })
        .await,
        "B follows the activation"
    );
    // The figure; the bench measures it, a test does not time it.
    eprintln!("B followed the activation in {:?}", started.elapsed());
    // A call B starts now runs on it.
    let (result, timing) = b.state.runtime.plugin("probe").describe().timed().await;
    assert!(result.is_ok());
    assert_eq!(timing.version.as_deref(), Some("2.0.0"));
    let b_list = admin(&b).get("/plugins").await.expect("list on B");
    assert!(b_list.to_string().contains("2.0.0"), "{b_list}");

    // Rolled back on A: B goes back too.
    a_api
        .post("/plugins/probe/rollback", &json!({}))
        .await
        .expect("rollback");
    assert!(
        eventually(Duration::from_secs(1), || {
            active_version(&b, "probe").as_deref() == Some("1.0.0")
        })
        .await,
        "B follows the rollback"
    );
    stop.store(true, Ordering::Relaxed);
    let mut answered = Vec::new();
    for caller in callers {
        answered.extend(caller.await.expect("caller"));
    }
    let failed: Vec<_> = answered.iter().filter(|(r, _)| r.is_err()).collect();
    assert!(
        failed.is_empty(),
        "{} calls on B failed: {:?}",
        failed.len(),
        failed.first()
    );
    let on = |v: &str| {
        answered
            .iter()
            .filter(|(_, got)| got.as_deref() == Some(v))
            .count()
    };
    assert_eq!(on("1.0.0") + on("2.0.0"), answered.len());
    b.shutdown().await;
    a.shutdown().await;
}

/// A child process, killed when dropped (a failed test leaves none behind).
pub(crate) struct Replica(pub(crate) std::process::Child);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `pbx-host serve` replica process on `store`, with `world`'s host key,
/// grant and CA: (the process, its URL).
async fn replica_process(world: &World, store: &str) -> (Replica, String) {
    let options = Options {
        grants: vec![format!("salesforce={}", world.org.base_url())],
        trust_ca: vec![world.ca_path.clone()],
        ..Options::default()
    };
    replica_process_in(
        &world.data_dir,
        &world.dir.path().join("replica-process"),
        store,
        &options,
    )
    .await
}

/// A `pbx-host serve` replica process on `store` in `data_dir`, with the
/// host key of `first_data_dir` and `options`' grants and CAs: (the
/// process, its URL).
pub(crate) async fn replica_process_in(
    first_data_dir: &Path,
    data_dir: &Path,
    store: &str,
    options: &Options,
) -> (Replica, String) {
    pbx_host::files::create_private_dir(data_dir).expect("data dir");
    std::fs::copy(first_data_dir.join(KEY_FILE), data_dir.join(KEY_FILE)).expect("copy host.key");
    let url_file = data_dir.join(pbx_host::server::ADMIN_URL_FILE);
    let mut command = std::process::Command::new(e2e_tests::binary("pbx-host"));
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--journal-interval-ms",
            "300",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--store")
        .arg(store);
    for grant in &options.grants {
        command.arg("--grant").arg(grant);
    }
    for ca in &options.trust_ca {
        command.arg("--trust-ca").arg(ca);
    }
    let child = Replica(
        command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("pbx-host serve starts"),
    );
    // It writes its address once it listens.
    let written = eventually(Duration::from_secs(60), || url_file.exists()).await;
    assert!(written, "the replica never wrote {}", url_file.display());
    let url = std::fs::read_to_string(&url_file)
        .expect("admin-url")
        .trim()
        .to_string();
    (child, url)
}

/// Send `event` to replica `first`, and to the other when it does not
/// answer or answers 5xx, as a PBX behind a load balancer would, with the
/// `Host` of tenant `authority` when given: the replica that took it, 0 or
/// 1.
pub(crate) async fn send_with_failover(
    urls: [&str; 2],
    first: usize,
    authority: Option<&str>,
    token: &str,
    event: &Value,
) -> usize {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    for attempt in 0..6 {
        let target = (first + attempt) % 2;
        let mut request = client
            .post(format!("{}/api/calls/events", urls[target]))
            .bearer_auth(token)
            .json(event);
        if let Some(authority) = authority {
            request = request.header("host", authority);
        }
        match request.send().await {
            Ok(r) if r.status().is_success() => return target,
            Ok(r) if r.status().is_client_error() => {
                panic!("{event} refused: {}", r.status())
            }
            _ => continue,
        }
    }
    panic!("no replica took {event}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_during_a_calls_load_loses_and_doubles_no_call_log() {
    let server = redis_kit::RedisServer::start_durable();
    let world = e2e_tests::org::calls_world(Setup {
        host: Options {
            store: Some(server.url()),
            journal_interval_ms: Some(300),
            ..Options::default()
        },
        ..Setup::default()
    })
    .await;
    let fields: Map<String, Value> = json!({"LastName": "Load", "Phone": "+1 212 555 0191"})
        .as_object()
        .cloned()
        .expect("object");
    let who = world.org.insert("Contact", fields).expect("contact");
    let (mut b, b_url) = replica_process(&world, &server.url()).await;
    let a_url = world.host.url();
    let token = world.host.admin_token.clone();

    const CALLS: usize = 24;
    let done = Arc::new(AtomicUsize::new(0));
    let call_done = Arc::new(tokio::sync::Notify::new());
    let took_by_b = Arc::new(AtomicUsize::new(0));
    let failovers = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (a_url, b_url, token) = (a_url.clone(), b_url.clone(), token.clone());
        let (done, call_done) = (done.clone(), call_done.clone());
        let (took_by_b, failovers) = (took_by_b.clone(), failovers.clone());
        workers.push(tokio::spawn(async move {
            for call in (worker..CALLS).step_by(4) {
                let call_id = format!("load-{call}");
                for (n, phase) in ["ringing", "answered", "ended"].iter().enumerate() {
                    let event = call_event(
                        &call_id,
                        phase,
                        "(212) 555-0191",
                        "1001",
                        NOON + call as u64,
                    );
                    let first = (call + n) % 2;
                    let took =
                        send_with_failover([&a_url, &b_url], first, None, &token, &event).await;
                    if took == 1 {
                        took_by_b.fetch_add(1, Ordering::SeqCst);
                    }
                    if took != first {
                        failovers.fetch_add(1, Ordering::SeqCst);
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
                call_done.notify_one();
            }
        }));
    }
    // kill -9 of replica B once a third of the calls are through.
    while done.load(Ordering::SeqCst) < CALLS / 3 {
        call_done.notified().await;
    }
    b.0.kill().expect("kill -9 of replica B");
    b.0.wait().expect("B is gone");
    let at_kill = done.load(Ordering::SeqCst);
    let by_b_before_kill = took_by_b.load(Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }
    assert!(
        at_kill < CALLS,
        "B was killed in the middle: {at_kill} calls through"
    );
    assert!(by_b_before_kill > 0, "B took events before it was killed");
    assert!(
        failovers.load(Ordering::SeqCst) > 0,
        "events meant for B went to A after the kill"
    );

    // A takes over what B left (its journal lease, the plugin's outbox
    // lease): every call logged exactly once.
    drain(&world.api, Duration::from_secs(90)).await;
    for call in 0..CALLS {
        let tasks = tasks_of(&world, &format!("load-{call}"));
        assert_eq!(tasks.len(), 1, "load-{call}: {tasks:?}");
        assert_eq!(tasks[0]["WhoId"], who.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_signs_in_across_replicas_and_gets_pop_ups_from_either() {
    let server = redis_kit::RedisServer::start();
    let world = first_replica(&server).await;
    world.connect().await;
    let (_agent, username) = crate::user_sign_in::add_agent(&world, "Grace");
    add_extension(&world, "1001", None).await;
    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    associate(&world, &[(username.as_str(), "1001")]).await;
    let b = second_replica(&world, &server, &world.dir.path().join("replica-b")).await;

    // Grace begins on A...
    let browser = world.browser();
    let page = browser
        .post(format!("{}/agent/sign-in/crm/salesforce", world.host.url()))
        .header("origin", world.host.url())
        .send()
        .await
        .expect("A answers");
    assert_eq!(page.status().as_u16(), 200);
    let html = page.text().await.expect("page");
    let url = html
        .split("id=\"continue\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(|u| u.replace("&amp;", "&"))
        .unwrap_or_else(|| panic!("a link to the CRM: {html}"));
    let state = url::Url::parse(&url)
        .expect("the CRM's URL")
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .expect("a state");
    let request = pbx_host::runtime::wit::SignInRequest {
        url,
        state,
        expires_at_ms: 0,
    };
    let query =
        crate::user_sign_in::sign_in(&world, &browser, &request, &username, true, || {}).await;
    // ...and Salesforce's redirect reaches B, which signs her in.
    let done = browser
        .get(format!("{}/crm/salesforce/oauth/callback?{query}", b.url()))
        .send()
        .await
        .expect("B answers");
    assert_eq!(done.status().as_u16(), 303, "{:?}", done.text().await);
    // The state is used up on every replica.
    let replay = browser
        .get(format!(
            "{}/crm/salesforce/oauth/callback?{query}",
            world.host.url()
        ))
        .send()
        .await
        .expect("A answers");
    assert!(replay.status().is_client_error(), "{}", replay.status());

    // Her page's stream, open on B, shows the pop-up of a call A took.
    let fields: Map<String, Value> = json!({"LastName": "Stream", "Phone": "+1 212 555 0192"})
        .as_object()
        .cloned()
        .expect("object");
    world.org.insert("Contact", fields).expect("contact");
    let mut stream = browser
        .get(format!("{}/agent/1001/events?after=0", b.url()))
        .send()
        .await
        .expect("B streams");
    assert_eq!(stream.status().as_u16(), 200, "her session is good on B");
    let (code, body) = send_event(
        &world.host.url(),
        &world.host.admin_token,
        &call_event("streamed-1", "ringing", "(212) 555-0192", "1001", NOON),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let mut seen = String::new();
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("streamed-1") {
                return;
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the pop-up never streamed on B; got {seen:?}");
    drop(stream);

    // A guesser of 1002's password, its attempts spread over both
    // replicas, gets five for the fleet, not five per replica: then even
    // the right password is refused on either.
    const PASSWORD: &str = "a-long-enough-password";
    add_extension(&world, "1002", None).await;
    world
        .api
        .put("/extensions/1002/password", &json!({"password": PASSWORD}))
        .await
        .expect("password set");
    let sign_in = |base: String, password: &'static str| {
        let request = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .post(format!("{base}/agent/sign-in"))
            .header("origin", base)
            .form(&[("extension", "1002"), ("password", password)]);
        async move { request.send().await.expect("answers").status().as_u16() }
    };
    for n in 0..5 {
        let base = if n % 2 == 0 {
            world.host.url()
        } else {
            b.url()
        };
        assert_eq!(sign_in(base, "wrong-password").await, 401, "guess {n}");
    }
    for base in [world.host.url(), b.url()] {
        assert_eq!(sign_in(base.clone(), PASSWORD).await, 429, "on {base}");
    }
    b.shutdown().await;
}
