//! Secrets stay secret, over a full run as an administrator would make it:
//! settings with the consumer secret (through the CLI, the secret on
//! stdin), authorization, a token refresh, user sync, extensions and
//! associations, an agent's password (set through the CLI) and their
//! sign-in, calls with pop-ups and their call logs, the dead-letter list,
//! the signed-in sessions, then a disconnect; then the HubSpot plugin
//! beside it (its client secret through the CLI on stdin, its install
//! page, its owners, its pages). The consumer secret, the HubSpot client
//! secret, the agent's password and every access and refresh token the
//! org issued (from the emulator's control API) are then searched for in:
//!
//! - the host's logs (this process's, at TRACE),
//! - every API answer, portal and agent page fetched during the run,
//! - the output (stdout and stderr) of real `pbx-host` CLI commands,
//! - the raw bytes of every file under the data directory, `store.redb`
//!   included: its values are sealed, so no plaintext may be in it.
//!
//! Each must appear 0 times. A new kind of secret joins the scan through
//! [`Scan::add_secret`].

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use e2e_tests::Options;
use e2e_tests::hubspot::{self, Hub};
use e2e_tests::org::{
    CONSUMER_KEY, CONSUMER_SECRET, Consent, Setup, World, add_extension, drain, send_call,
};
use serde_json::{Map, Value, json};

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

/// What the run showed, and the secrets that must not be in it.
#[derive(Default)]
struct Scan {
    /// (what it was, its text): API answers, pages, CLI output.
    seen: Vec<(String, String)>,
    /// (what kind of secret, its value).
    secrets: Vec<(String, String)>,
}

impl Scan {
    /// Add a secret to the scanned list: `kind` names it in failures (the
    /// value itself is never printed). Its URL-encoded form is searched
    /// for too, as it would travel in a query or a form.
    fn add_secret(&mut self, kind: &str, value: &str) {
        assert!(
            value.len() >= 8,
            "a {kind} this short would match by chance"
        );
        if !self.secrets.iter().any(|(_, v)| v == value) {
            self.secrets.push((kind.to_string(), value.to_string()));
        }
        let encoded: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
        if encoded != value && !self.secrets.iter().any(|(_, v)| *v == encoded) {
            self.secrets
                .push((format!("{kind} (URL-encoded)"), encoded));
        }
    }

    /// Every token the org has issued and not yet revoked.
    fn add_live_tokens(&mut self, world: &World) {
        for token in world.org.live_tokens() {
            self.add_secret("token", &token);
        }
    }

    fn saw(&mut self, what: impl Into<String>, text: impl Into<String>) {
        self.seen.push((what.into(), text.into()));
    }

    /// An admin API answer.
    async fn get(&mut self, world: &World, path: &str) -> Value {
        let value = world.api.get(path).await.expect(path);
        self.saw(format!("GET /api{path}"), value.to_string());
        value
    }

    /// A real `pbx-host` command against the world's host: its stdout
    /// and stderr, which must hold no secret either.
    fn cli(&mut self, world: &World, args: &[&str], stdin: &str) -> String {
        let (ok, out, err) =
            tokio::task::block_in_place(|| e2e_tests::pbx_at(Some(&world.data_dir), args, stdin));
        assert!(ok, "pbx-host {}: {err}", args.join(" "));
        self.saw(
            format!("pbx-host {}", args.join(" ")),
            format!("{out}\n{err}"),
        );
        out
    }

    /// The finding, if `haystack` holds a secret: which kind.
    fn find_in(&self, haystack: &[u8]) -> Option<&str> {
        self.secrets
            .iter()
            .find(|(_, v)| haystack.windows(v.len()).any(|w| w == v.as_bytes()))
            .map(|(kind, _)| kind.as_str())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_is_in_logs_pages_api_answers_cli_output_or_files() {
    let logs = Captured::default();
    let sink = logs.clone();
    // Everything the host and the plugins log, at every level; the
    // compiler's own tracing is left out (it is huge and never sees data).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,pbx_host=trace,plugin=trace,reqwest=trace,hyper=debug,axum=trace,cranelift_codegen=warn,wasmtime_cranelift=warn",
        ))
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    // The HubSpot account's grant and CA from the start; its plugin is
    // installed after the Salesforce run (whose CLI names no plugin).
    let hub = Hub::start().await;
    let world = World::start(Setup {
        host: hub.options(Options::default()),
        ..Setup::default()
    })
    .await;
    let mut scan = Scan::default();
    scan.add_secret("consumer secret", CONSUMER_SECRET);

    // The portal, as the administrator's browser.
    let portal = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let page = |path: &str| format!("{}{path}", world.host.url());
    let login = portal
        .post(page("/login"))
        .form(&[("token", world.host.admin_token.as_str())])
        .send()
        .await
        .expect("portal login");
    scan.saw("POST /login", login.text().await.unwrap_or_default());

    // Settings through the CLI, the secret on stdin; authorize; consent.
    let org = world.org.base_url();
    scan.cli(
        &world,
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
    );
    let url = scan.cli(&world, &["crm", "authorize", "--no-browser"], "");
    let Consent::Redirect(location) = world.consent(url.trim(), true).await else {
        panic!("Allow redirects");
    };
    let (status, callback_page) = world.callback(&location).await;
    assert_eq!(status, 200, "{callback_page}");
    scan.saw("the OAuth callback page", callback_page);
    scan.add_live_tokens(&world);
    assert!(
        scan.secrets.len() >= 3,
        "an access and a refresh token were issued"
    );

    // Extensions, users (after a forced refresh), associations.
    for x in ["1001", "1002"] {
        add_extension(&world, x, None).await;
    }
    // An agent's password: set through the CLI, used to sign in.
    let agent_password = "leak-check agent password 7d1f";
    scan.add_secret("agent password", agent_password);
    scan.cli(
        &world,
        &["extension", "password", "set", "1001", "--password-stdin"],
        agent_password,
    );
    let agent = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("agent client");
    let signed_in = agent
        .post(page("/agent/sign-in"))
        .form(&[
            ("extension", "1001"),
            ("password", agent_password),
            ("next", "/agent/1001"),
        ])
        .send()
        .await
        .expect("agent sign-in");
    assert!(
        signed_in.status().is_redirection(),
        "the agent signed in: {}",
        signed_in.status()
    );
    scan.saw("POST /agent/sign-in", format!("{:?}", signed_in.headers()));
    world.org.expire_sessions();
    scan.cli(&world, &["crm", "users", "sync"], "");
    scan.add_live_tokens(&world);
    scan.cli(
        &world,
        &["crm", "associate", "admin@example.org", "1001"],
        "",
    );
    scan.cli(&world, &["crm", "users", "list"], "");
    scan.cli(&world, &["crm", "users", "list", "--json"], "");

    // A call from a known contact: its pop-up, its call log.
    let contact: Map<String, Value> =
        json!({"LastName": "Leakless", "FirstName": "Lee", "Phone": "+1 212 555 0190"})
            .as_object()
            .cloned()
            .unwrap_or_default();
    let contact_id = world.org.insert("Contact", contact).expect("contact");
    let now = 1_768_478_400_000;
    send_call(&world, "leak-1", "+1 212 555 0190", "1001", now).await;
    let report = drain(&world.api, Duration::from_secs(30)).await;
    scan.saw("run-pending", report.to_string());
    assert_eq!(
        e2e_tests::org::tasks_of(&world, "leak-1").len(),
        1,
        "the call was logged: {report}"
    );
    let popups = scan.get(&world, "/browser-requests").await;
    assert!(
        popups["requests"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["url"].as_str().is_some_and(|u| u.contains(&contact_id))),
        "the contact popped up: {popups}"
    );
    scan.add_live_tokens(&world);
    for path in ["/agent/1001", "/agent/1001/calls"] {
        let text = agent
            .get(page(path))
            .send()
            .await
            .expect(path)
            .text()
            .await
            .unwrap_or_default();
        scan.saw(format!("GET {path} (agent)"), text);
    }

    // Every read-only answer and page, and the CLI's views of them.
    for path in [
        "/crm/salesforce/status",
        "/crm/salesforce/settings",
        "/crm/salesforce/describe",
        "/crm/salesforce/callback-url",
        "/crm/salesforce/users",
        "/crm/salesforce/associations/proposal",
        "/calls/lookup?number=%2B12125550190",
        "/calls/originations",
        "/calls/dead-letters",
        "/sessions",
        "/extensions",
        "/plugins",
        "/host",
    ] {
        scan.get(&world, path).await;
    }
    for path in ["/", "/login", "/agent/1001", "/agent/1002"] {
        let text = portal
            .get(page(path))
            .send()
            .await
            .expect(path)
            .text()
            .await
            .unwrap_or_default();
        scan.saw(format!("GET {path}"), text);
    }
    for args in [
        &["crm", "status"][..],
        &["crm", "status", "--json"],
        &["crm", "settings", "list"],
        &["crm", "settings", "list", "--json"],
        &["crm", "describe"],
        &["call", "lookup", "+1 212 555 0190"],
        &["call", "run-pending"],
        &["call", "dead-letters", "--json"],
        &["plugin", "list", "--json"],
        &["extension", "list"],
        &["agent", "list"],
        &["agent", "list", "--json"],
        &["status"],
        &["status", "--json"],
    ] {
        scan.cli(&world, args, "");
    }
    scan.add_live_tokens(&world);

    let disconnected = world
        .api
        .post("/crm/salesforce/disconnect", &json!({}))
        .await
        .expect("disconnect");
    scan.saw(
        "POST /api/crm/salesforce/disconnect",
        disconnected.to_string(),
    );

    // HubSpot beside it: the secret on stdin, the install page, the owners.
    hub.install_on(&world.host, &world.api).await;
    scan.add_secret("HubSpot client secret", hubspot::CLIENT_SECRET);
    let hub_url = hub.emulator.base_url();
    let crm = |rest: &[&'static str]| [&["crm", "--plugin", hubspot::PLUGIN][..], rest].concat();
    scan.cli(
        &world,
        &[
            "crm",
            "--plugin",
            hubspot::PLUGIN,
            "settings",
            "set",
            &format!("api-base-url={hub_url}"),
            &format!("app-base-url={hub_url}"),
        ],
        "",
    );
    scan.cli(
        &world,
        &crm(&[
            "configure",
            "--client-id",
            hubspot::CLIENT_ID,
            "--client-secret-stdin",
        ]),
        &format!("{}\n", hubspot::CLIENT_SECRET),
    );
    let url = scan.cli(&world, &crm(&["authorize", "--no-browser"]), "");
    let Consent::Redirect(location) = hub
        .install_page(url.trim(), hubspot::ADMIN_EMAIL, hubspot::ADMIN_PASSWORD)
        .await
    else {
        panic!("HubSpot did not redirect after the install");
    };
    let (status, callback_page) = e2e_tests::org::follow_callback(&location).await;
    assert_eq!(status, 200, "{callback_page}");
    scan.saw("the HubSpot OAuth callback page", callback_page);
    scan.cli(&world, &crm(&["users", "sync"]), "");
    for args in [
        crm(&["status", "--json"]),
        crm(&["settings", "list", "--json"]),
        crm(&["users", "list", "--json"]),
    ] {
        scan.cli(&world, &args, "");
    }
    for path in [
        "/crm/hubspot/status",
        "/crm/hubspot/settings",
        "/crm/hubspot/describe",
        "/crm/hubspot/users",
    ] {
        scan.get(&world, path).await;
    }
    for path in ["/crm/hubspot", "/crm/salesforce"] {
        let text = portal
            .get(page(path))
            .send()
            .await
            .expect(path)
            .text()
            .await
            .unwrap_or_default();
        scan.saw(format!("GET {path}"), text);
    }
    let disconnected = world
        .api
        .post("/crm/hubspot/disconnect", &json!({}))
        .await
        .expect("disconnect");
    scan.saw("POST /api/crm/hubspot/disconnect", disconnected.to_string());

    let logs =
        String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        logs.contains("connected to Salesforce"),
        "the logs were captured"
    );
    assert_eq!(
        scan.find_in(logs.as_bytes()),
        None,
        "a secret is in the logs"
    );
    for (what, text) in &scan.seen {
        assert_eq!(
            scan.find_in(text.as_bytes()),
            None,
            "a secret is in: {what}"
        );
    }
    let data_dir = world.data_dir.clone();
    world.host.shutdown().await;
    let files = scan_files(&scan, &data_dir);
    assert!(files >= 4, "{files} files");
}

/// Scan the raw bytes of every file under `dir`; how many there were.
fn scan_files(scan: &Scan, dir: &Path) -> usize {
    let files = e2e_tests::files_under(dir);
    for file in &files {
        let bytes = std::fs::read(file).expect("read");
        assert_eq!(
            scan.find_in(&bytes),
            None,
            "{} holds a secret in plaintext",
            file.display()
        );
    }
    assert!(
        files.iter().any(|f| f.ends_with(pbx_host::store::DB_FILE)),
        "the store was scanned"
    );
    files.len()
}
