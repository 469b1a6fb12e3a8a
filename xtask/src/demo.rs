//! `cargo xtask demo [--headless]`: the emulated Salesforce org and HubSpot
//! account and the PBX host with both plugins, side by side, seeded with
//! one coherent story.
//!
//! The Salesforce side of the story is the emulator's demo org
//! (tests/salesforce-emulator/demo/org.toml); the PBX side, the
//! extensions, is here. Most extensions carry their user's Salesforce
//! e-mail and are matched by Associate Automatically; one carries another
//! address of its user and is associated by hand; a few users have none.
//! The HubSpot account (`hubspot.rs`) has the same staff as owners.

mod hubspot;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::{bin, hubspot_plugin_path, plugin_path, root, target_dir};

/// An extension of the demo PBX.
pub struct DemoExtension {
    pub number: &'static str,
    pub name: &'static str,
    pub email: &'static str,
    /// The Salesforce user's e-mail when the extension's differs: the
    /// administrator associates it by hand.
    pub by_hand_with: Option<&'static str>,
}

pub const EXTENSIONS: &[DemoExtension] = &[
    DemoExtension {
        number: "1001",
        name: "Admin User",
        email: "admin@example.org",
        by_hand_with: None,
    },
    DemoExtension {
        number: "1002",
        name: "Ben Carter",
        email: "ben.carter@example.org",
        by_hand_with: None,
    },
    DemoExtension {
        number: "1003",
        name: "Cleo Nakamura",
        email: "cleo.nakamura@example.org",
        by_hand_with: None,
    },
    DemoExtension {
        number: "1004",
        name: "Dan Okafor",
        email: "dan.okafor@example.org",
        by_hand_with: None,
    },
    DemoExtension {
        number: "1005",
        name: "Eve Miller",
        email: "eve@frontdesk.example.org",
        by_hand_with: Some("eve.miller@example.org"),
    },
];

/// A caller in the demo org (a contact at Globex) and the extension the
/// headless demo rings, to check that the pop-up opens the caller's record.
const DEMO_CALLER: (&str, &str, &str) = ("(212) 555-0101", "1002", "Miles O'Brien");

const PLUGIN: &str = "salesforce";
const ADMIN: (&str, &str) = ("admin@example.org", "emulator");

/// The emulator's demo org.
pub fn demo_org() -> PathBuf {
    root()
        .join("tests")
        .join("salesforce-emulator")
        .join("demo")
        .join("org.toml")
}

// --- Processes the demo started: stopped on SIGINT/SIGTERM and at the end.

/// Ids of the running children, newest last.
static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn started() -> std::sync::MutexGuard<'static, Vec<u32>> {
    STARTED.lock().unwrap_or_else(|p| p.into_inner())
}

/// A child process stopped (SIGINT, then SIGKILL after 10 s) when dropped,
/// so an error or a signal leaves nothing running.
pub struct Guard(pub Child);

impl Guard {
    pub fn spawn(cmd: &mut Command) -> anyhow::Result<Guard> {
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {cmd:?}"))?;
        started().push(child.id());
        Ok(Guard(child))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.0.id();
        started().retain(|p| *p != pid);
        stop(pid);
    }
}

/// Ask `pid` (our child) to stop as Ctrl-C does, so the host closes its
/// store; kill it when it has not exited after 10 s. Reaps it.
pub fn stop(pid: u32) {
    stop_within(pid, Duration::from_secs(10));
}

fn stop_within(pid: u32, grace: Duration) {
    let Ok(pid) = i32::try_from(pid) else { return };
    // SAFETY: signalling and reaping our own child by its id.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let deadline = Instant::now() + grace;
    loop {
        let mut status = 0;
        // SAFETY: as above; WNOHANG never blocks.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        // Exited (reaped now), or not our child any more.
        if r == pid || r == -1 {
            return;
        }
        if Instant::now() > deadline {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops every child still running, newest first.
fn stop_all() {
    let pids = std::mem::take(&mut *started());
    for pid in pids.into_iter().rev() {
        stop(pid);
    }
}

/// On SIGINT (Ctrl-C) or SIGTERM: stop what the demo started, then exit
/// (130 or 143, as a shell reports those signals).
pub fn stop_on_signals() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Registered before any child starts, so no signal is missed.
    let (mut interrupt, mut terminate) = {
        let _ctx = rt.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    std::thread::spawn(move || {
        let code = rt.block_on(async {
            tokio::select! {
                _ = interrupt.recv() => 130,
                _ = terminate.recv() => 143,
            }
        });
        eprintln!("\nxtask: stopping the emulator and the host");
        stop_all();
        std::process::exit(code);
    });
    Ok(())
}

// --- The demo.

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub fn wait_for_file(path: &Path, child: &mut Guard, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return Ok(text.trim().to_string());
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            bail!(
                "the host stopped ({status}) before writing {}",
                path.display()
            );
        }
        if Instant::now() > deadline {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A log file for a child's stdout and stderr.
fn log_to(path: &Path) -> anyhow::Result<(Stdio, Stdio)> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok((file.try_clone()?.into(), file.into()))
}

/// Starts the demo (the binaries are built); waits for Ctrl-C, or with
/// `headless` drives and checks the set-up and returns.
pub fn run(headless: bool) -> anyhow::Result<()> {
    stop_on_signals()?;
    // The headless check (part of `cargo xtask test`) has its own directory,
    // so it never wipes a demo someone is using.
    let dir = target_dir().join(if headless { "demo-headless" } else { "demo" });
    // A fresh org and PBX each run, so the demo always starts at step 1.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let data_dir = dir.join("pbx-data");
    let ca = dir.join("emulator-ca.pem");
    let host_log = dir.join("host.log");
    let emulator_log = dir.join("emulator.log");
    let hub_ca = dir.join("hubspot-ca.pem");
    let hub_log = dir.join("hubspot-emulator.log");

    let host_port = free_port()?;
    let public_url = format!("http://127.0.0.1:{host_port}");
    let callback_url = format!("{public_url}/crm/{PLUGIN}/oauth/callback");
    let consumer_key = "3MVG9demoConsumerKey";
    let consumer_secret = format!("demo-secret-{:08x}", std::process::id());
    let hub_callback_url = format!("{public_url}/crm/{}/oauth/callback", hubspot::PLUGIN);
    let hub_secret = format!("demo-hubspot-secret-{:08x}", std::process::id());
    let hub_check_secret = format!("demo-check-secret-{:08x}", std::process::id());

    eprintln!(
        "xtask: starting the Salesforce emulator (log: {})",
        emulator_log.display()
    );
    let mut emulator = Guard::spawn(
        Command::new(bin("salesforce-emulator"))
            .args(["--listen", "127.0.0.1:0", "--seed"])
            .arg(demo_org())
            .arg("--ca-cert-out")
            .arg(&ca)
            .arg("--app")
            .arg(format!("{consumer_key}:{consumer_secret}:{callback_url}"))
            .stdout(Stdio::piped())
            .stderr(log_to(&emulator_log)?.1),
    )?;
    let emulator_url = {
        use std::io::BufRead;
        let stdout = emulator.0.stdout.take().context("no emulator stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        line.trim().to_string()
    };
    if !emulator_url.starts_with("https://") {
        bail!(
            "the emulator printed {emulator_url:?} instead of its URL; see {}",
            emulator_log.display()
        );
    }

    eprintln!(
        "xtask: starting the HubSpot emulator (log: {})",
        hub_log.display()
    );
    let mut hub = Guard::spawn(
        hubspot::emulator_command(&hub_ca, &hub_secret, &hub_callback_url, &hub_check_secret)
            .stdout(Stdio::piped())
            .stderr(log_to(&hub_log)?.1),
    )?;
    let hub_url = {
        use std::io::BufRead;
        let stdout = hub.0.stdout.take().context("no HubSpot emulator stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        line.trim().to_string()
    };
    if !hub_url.starts_with("https://") {
        bail!(
            "the HubSpot emulator printed {hub_url:?} instead of its URL; see {}",
            hub_log.display()
        );
    }

    eprintln!("xtask: starting pbx-host (log: {})", host_log.display());
    let (out, err) = log_to(&host_log)?;
    let mut host = Guard::spawn(
        Command::new(bin("pbx-host"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", &format!("127.0.0.1:{host_port}")])
            .args(["--public-url", &public_url])
            .arg("--trust-ca")
            .arg(&ca)
            .arg("--trust-ca")
            .arg(&hub_ca)
            .args(["--grant", &format!("{PLUGIN}={emulator_url}")])
            .args(["--grant", &format!("{}={hub_url}", hubspot::PLUGIN)])
            .env("RUST_LOG", "info")
            .stdout(out)
            .stderr(err),
    )?;
    let admin_url = wait_for_file(
        &data_dir.join("admin-url"),
        &mut host,
        Duration::from_secs(30),
    )?;
    let token = wait_for_file(
        &data_dir.join("admin-token"),
        &mut host,
        Duration::from_secs(5),
    )?;

    let pbx = Pbx {
        data_dir: &data_dir,
    };
    for plugin in [plugin_path(), hubspot_plugin_path()] {
        pbx.run(&["plugin", "install", &plugin.to_string_lossy()], None)?;
    }
    for e in EXTENSIONS {
        pbx.run(
            &[
                "extension",
                "add",
                e.number,
                "--name",
                e.name,
                "--email",
                e.email,
            ],
            None,
        )?;
    }
    // The emulated org is a My Domain: choosing it for the administrator
    // spares a grant error from the default, Production.
    pbx.run(
        &[
            "crm",
            "--plugin",
            PLUGIN,
            "settings",
            "set",
            &format!("login-url={emulator_url}"),
        ],
        None,
    )?;
    // The emulated HubSpot's one address serves its API and its install
    // page: set, as the login host is for Salesforce.
    let api = Api::new(&admin_url, &token)?;
    let (_, _, hub_url_keys) = hubspot::setting_keys(&api)?;
    let mut set = vec![
        "crm".to_string(),
        "--plugin".into(),
        hubspot::PLUGIN.into(),
        "settings".into(),
        "set".into(),
    ];
    set.extend(hub_url_keys.iter().map(|key| format!("{key}={hub_url}")));
    pbx.run(&set.iter().map(String::as_str).collect::<Vec<_>>(), None)?;

    let org_users = emulator_users(&emulator_url, &ca)?;
    println!();
    print!("{}", story(&org_users));
    println!(
        "    and an emulated HubSpot account: the same staff as owners, {} as a contact",
        DEMO_CALLER.2
    );

    if headless {
        let result = headless_setup(&Headless {
            pbx: &pbx,
            api,
            ca: &ca,
            emulator_url: &emulator_url,
            consumer_key,
            consumer_secret: &consumer_secret,
            hubspot: hubspot::Headless {
                ca: &hub_ca,
                url: &hub_url,
                client_secret: &hub_secret,
                check_secret: &hub_check_secret,
            },
        });
        drop(host);
        drop(hub);
        drop(emulator);
        result?;
        // The logs, written to files: plain text, and no secret in them.
        for log in [&host_log, &emulator_log, &hub_log] {
            let text = std::fs::read_to_string(log)?;
            if text.contains('\u{1b}') {
                bail!("{} has ANSI escape codes", log.display());
            }
            for (what, secret) in [
                ("admin token", token.as_str()),
                ("Consumer Secret", &consumer_secret),
                ("HubSpot client secret", &hub_secret),
            ] {
                if text.contains(secret) {
                    bail!("{} contains the {what}", log.display());
                }
            }
        }
        if std::fs::metadata(&host_log)?.len() == 0 {
            bail!("{} is empty: the host logged nothing", host_log.display());
        }
        println!(
            "\n   logs without colour codes or secrets: {}",
            host_log.display()
        );
        println!("\nxtask: the demo's story checks out");
        return Ok(());
    }

    let ca_path = ca.display();
    println!();
    println!("  PBX portal:        {public_url}/");
    println!("  Salesforce's page: {public_url}/crm/{PLUGIN}");
    println!("  HubSpot's page:    {public_url}/crm/{}", hubspot::PLUGIN);
    println!(
        "  Admin token:       {token}   (also in {})",
        data_dir.join("admin-token").display()
    );
    println!();
    println!("  Salesforce");
    println!("  Callback URL:      {callback_url}");
    println!("  Consumer Key:      {consumer_key}");
    println!("  Consumer Secret:   {consumer_secret}");
    println!("  Login host:        My Domain, {emulator_url}  (already selected)");
    println!(
        "  Salesforce (emulated): {emulator_url}  (log in as {} / {})",
        ADMIN.0, ADMIN.1
    );
    println!();
    println!("  HubSpot");
    println!("  Callback URL:      {hub_callback_url}");
    println!("  Client ID:         {}", hubspot::CLIENT_ID);
    println!("  Client secret:     {hub_secret}");
    println!("  API and app base URLs: {hub_url}  (already set)");
    println!(
        "  HubSpot (emulated): {hub_url}  (log in as {} / {})",
        hubspot::LOGIN.0,
        hubspot::LOGIN.1
    );
    println!();
    let hub_ca_path = hub_ca.display();
    println!("  Each emulator's certificate comes from a CA of its own: Salesforce's {ca_path},");
    println!("  HubSpot's {hub_ca_path}. Trust both for this demo (the steps below for each),");
    println!("  or your browser stops at a certificate warning:");
    println!(
        "    Chromium/Chrome: Settings > Privacy and security > Security > Manage certificates"
    );
    println!(
        "      > Authorities > Import {ca_path}, tick \"Trust this certificate for identifying websites\";"
    );
    println!(
        "    or for NSS (Chromium, Firefox on Linux): certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n pbx-demo -i {ca_path}"
    );
    println!(
        "      and again for HubSpot: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n pbx-demo-hubspot -i {hub_ca_path}"
    );
    println!(
        "      (remove them afterwards: certutil -d sql:$HOME/.pki/nssdb -D -n pbx-demo, and -n pbx-demo-hubspot);"
    );
    println!(
        "    or, once each, open {emulator_url}/ and {hub_url}/ and choose Advanced > Proceed."
    );
    println!();
    println!(
        "  Logs: {}, {} and {}",
        host_log.display(),
        emulator_log.display(),
        hub_log.display()
    );
    println!();
    println!("  Open the portal and log in with the admin token; each CRM has its own page.");
    println!("  On Salesforce's page, paste the Consumer Key and");
    println!(
        "  Secret, click Save, log in to Salesforce as {} / {} and click Allow.",
        ADMIN.0, ADMIN.1
    );
    println!("  Then sync the users, click Associate Automatically and Save, and associate");
    for e in EXTENSIONS {
        if let Some(user) = e.by_hand_with {
            println!("  {user} with extension {} by hand.", e.number);
        }
    }
    println!("  On HubSpot's page, paste the Client ID and secret, click Save, log in to HubSpot");
    println!(
        "  as {} / {} and connect the app; then the same: sync, Associate Automatically,",
        hubspot::LOGIN.0,
        hubspot::LOGIN.1
    );
    println!("  Save, and the same one by hand. A call then reaches both CRMs:");
    println!(
        "    pbx-host call simulate --from \"{}\" --extension {} --data-dir {}",
        DEMO_CALLER.0,
        DEMO_CALLER.1,
        data_dir.display()
    );
    println!("  Press Ctrl-C to stop.");
    // Until a signal (its handler stops both and exits) or a crash.
    loop {
        for (name, child, log) in [
            ("the emulator", &mut emulator, &emulator_log),
            ("the HubSpot emulator", &mut hub, &hub_log),
            ("pbx-host", &mut host, &host_log),
        ] {
            if let Some(status) = child.0.try_wait()? {
                bail!("{name} stopped ({status}); see {}", log.display());
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The users of the emulated org: `(e-mail, name, active)`.
fn emulator_users(emulator_url: &str, ca: &Path) -> anyhow::Result<Vec<(String, String, bool)>> {
    let client = https_client(ca, false)?;
    let users: Vec<Value> = client
        .get(format!("{emulator_url}/__admin/users"))
        .send()?
        .error_for_status()?
        .json()?;
    Ok(users
        .iter()
        .map(|u| {
            let text = |f: &str| u[f].as_str().unwrap_or_default().to_string();
            (
                text("Email"),
                text("Name"),
                u["IsActive"] != Value::Bool(false),
            )
        })
        .collect())
}

/// What was seeded, in a few lines.
pub fn story(users: &[(String, String, bool)]) -> String {
    let mut out =
        String::from("  Seeded: an emulated Salesforce org and a PBX with these extensions\n");
    let width = EXTENSIONS.iter().map(|e| e.email.len()).max().unwrap_or(0);
    for e in EXTENSIONS {
        let how = match e.by_hand_with {
            Some(user) => format!("associate by hand with the Salesforce user {user}"),
            None if users
                .iter()
                .any(|(m, _, _)| m.eq_ignore_ascii_case(e.email)) =>
            {
                "matched by e-mail (Associate Automatically)".to_string()
            }
            None => "no Salesforce user has this e-mail".to_string(),
        };
        out.push_str(&format!(
            "    {}  {:<14} {:<width$}  {how}\n",
            e.number, e.name, e.email
        ));
    }
    let claimed: BTreeSet<String> = EXTENSIONS
        .iter()
        .flat_map(|e| [e.email, e.by_hand_with.unwrap_or(e.email)])
        .map(str::to_ascii_lowercase)
        .collect();
    let without: Vec<String> = users
        .iter()
        .filter(|(m, _, _)| !claimed.contains(&m.to_ascii_lowercase()))
        .map(|(m, n, _)| format!("{n} ({m})"))
        .collect();
    out.push_str(&format!(
        "    Salesforce users without an extension: {}\n",
        if without.is_empty() {
            "none".to_string()
        } else {
            without.join(", ")
        }
    ));
    out
}

fn https_client(ca: &Path, cookies: bool) -> anyhow::Result<reqwest::blocking::Client> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca)?)?;
    Ok(reqwest::blocking::Client::builder()
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// The host's CLI, as the administrator runs it.
struct Pbx<'a> {
    data_dir: &'a Path,
}

impl Pbx<'_> {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = Command::new(bin("pbx-host"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run pbx-host")?;
        if let Some(mut input) = child.stdin.take() {
            input.write_all(stdin.unwrap_or_default().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "pbx-host {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

/// The admin API, to read what the checks need.
struct Api {
    base: String,
    token: String,
    client: reqwest::blocking::Client,
}

impl Api {
    fn new(admin_url: &str, token: &str) -> anyhow::Result<Api> {
        Ok(Api {
            base: format!("{}/api", admin_url.trim_end_matches('/')),
            token: token.to_string(),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
        })
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()?;
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST /api{path}: {status} {body}");
        }
        Ok(body)
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()?;
        let status = resp.status();
        let body: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET /api{path}: {status} {body}");
        }
        Ok(body)
    }
}

struct Headless<'a> {
    pbx: &'a Pbx<'a>,
    api: Api,
    ca: &'a Path,
    emulator_url: &'a str,
    consumer_key: &'a str,
    consumer_secret: &'a str,
    hubspot: hubspot::Headless<'a>,
}

/// The administrator's set-up, driven over HTTP with the CLI and a
/// cookie-keeping client in the role of the browser; then the checks of
/// the story.
fn headless_setup(demo: &Headless<'_>) -> anyhow::Result<()> {
    // Two CRMs: `crm` commands name theirs.
    let pbx = |args: &[&str], stdin: Option<&str>| match args.split_first() {
        Some((&"crm", rest)) => {
            let mut all = vec!["crm", "--plugin", PLUGIN];
            all.extend_from_slice(rest);
            demo.pbx.run(&all, stdin)
        }
        _ => demo.pbx.run(args, stdin),
    };
    let step = |n: u32, text: &str| println!("\n== Step {n}: {text}");

    step(1, "the portal shows the Callback URL");
    let callback = pbx(&["crm", "callback-url"], None)?;
    println!("   Callback URL: {callback}");

    step(
        2,
        "a connected app in Salesforce has that Callback URL (the emulated org has it)",
    );
    println!("   Consumer Key: {}", demo.consumer_key);

    step(
        3,
        "paste key and secret, Save, and Allow on Salesforce's page",
    );
    // The login host is already set (as for the administrator): only the
    // key and the secret are given.
    println!(
        "{}",
        indent(&pbx(
            &[
                "crm",
                "configure",
                "--consumer-key",
                demo.consumer_key,
                "--consumer-secret-stdin",
            ],
            Some(demo.consumer_secret),
        )?)
    );
    let consent_url = pbx(&["crm", "authorize", "--no-browser"], None)?;
    let consent_url = consent_url
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("https://")))
        .context("`crm authorize --no-browser` printed no URL")?
        .to_string();
    println!(
        "   Salesforce's authorization page: {}",
        consent_url.split('?').next().unwrap_or_default()
    );
    let browser = https_client(demo.ca, true)?;
    let login_page = browser.get(&consent_url).send()?.text()?;
    let start_url = hidden_input(&login_page, "startURL").context("no login form")?;
    let after_login = browser
        .post(format!("{}/login", demo.emulator_url))
        .form(&[
            ("username", ADMIN.0),
            ("password", ADMIN.1),
            ("startURL", &start_url),
        ])
        .send()?;
    println!("   logged in to Salesforce as {}", ADMIN.0);
    let consent_page = match after_login
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
    {
        Some(next) => browser
            .get(absolute(demo.emulator_url, next))
            .send()?
            .text()?,
        None => after_login.text()?,
    };
    let pending = hidden_input(&consent_page, "pending").context("no consent form")?;
    let allowed = browser
        .post(format!(
            "{}/services/oauth2/authorize/consent",
            demo.emulator_url
        ))
        .form(&[("pending", pending.as_str()), ("action", "allow")])
        .send()?;
    println!("   clicked Allow");
    let redirect = allowed
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .context("Salesforce did not redirect after Allow")?
        .to_string();
    let page = browser.get(&redirect).send()?.text()?;
    let title = page
        .split("<h1 id=\"result\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap_or("?");
    println!("   the callback page says: {title}");

    step(4, "the status");
    let status = demo.api.get(&format!("/crm/{PLUGIN}/status"))?;
    println!("{}", indent(&pbx(&["crm", "status"], None)?));
    if status["state"] != "Connected" {
        bail!("the integration is not Connected after Allow: {status}");
    }

    step(5, "sync the Salesforce users");
    println!("{}", indent(&pbx(&["crm", "users", "sync"], None)?));

    step(6, "Associate Automatically: the proposal");
    let users = demo.api.get(&format!("/crm/{PLUGIN}/users"))?;
    let email_of: BTreeMap<String, String> = users["entries"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["user"]["id"].as_str()?.to_string(),
                e["user"]["email"].as_str().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    let proposal = demo
        .api
        .get(&format!("/crm/{PLUGIN}/associations/proposal"))?;
    let matched = check_proposal(&proposal, &email_of)?;
    for e in EXTENSIONS {
        match matched.get(e.number) {
            Some(email) => println!("   {}  matched {email}", e.number),
            None => println!(
                "   {}  not matched: {} is for the manual step",
                e.number, e.email
            ),
        }
    }

    step(7, "Save the proposal, and associate the last one by hand");
    println!(
        "{}",
        indent(&pbx(&["crm", "associate", "--auto", "--yes"], None)?)
    );
    for e in EXTENSIONS {
        if let Some(user) = e.by_hand_with {
            println!(
                "{}",
                indent(&pbx(&["crm", "associate", user, e.number], None)?)
            );
        }
    }
    for e in EXTENSIONS {
        let user = demo.api.get(&format!(
            "/crm/{PLUGIN}/associations/extension/{}",
            e.number
        ))?;
        let email = user["user"]["email"].as_str().unwrap_or_default();
        let want = e.by_hand_with.unwrap_or(e.email);
        if !email.eq_ignore_ascii_case(want) {
            bail!(
                "extension {} is associated with {:?}, not {want}",
                e.number,
                user["user"]
            );
        }
    }
    println!("   every extension has its Salesforce user");

    hubspot::headless_setup(demo.pbx, &demo.api, &demo.hubspot)?;

    step(
        8,
        "a call pops up the caller's record, and reaches both CRMs",
    );
    let (number, extension, name) = DEMO_CALLER;
    let before = demo.api.get("/browser-requests")?;
    let after_id = before["requests"]
        .as_array()
        .or_else(|| before.as_array())
        .and_then(|r| r.last())
        .and_then(|r| r["id"].as_u64())
        .unwrap_or(0);
    pbx(
        &[
            "call",
            "simulate",
            "--direction",
            "inbound",
            "--from",
            number,
            "--extension",
            extension,
            "--duration",
            "30s",
        ],
        None,
    )?;
    let requests = demo
        .api
        .get(&format!("/browser-requests?after={after_id}"))?;
    let url = requests["requests"]
        .as_array()
        .or_else(|| requests.as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r["url"].as_str())
        .find(|u| u.contains("/lightning/r/"))
        .with_context(|| format!("no pop-up of a record for {number}: {requests}"))?
        .to_string();
    // The browser that clicked Allow is logged in to the org.
    let record = browser.get(&url).send()?;
    let status = record.status();
    let html = record.text()?;
    // The page escapes the name's apostrophe.
    if !status.is_success() || !html.contains(&name.replace('\'', "&#39;")) {
        bail!("the pop-up {url} shows no record of {name}: {status}");
    }
    println!("   {number} rang {extension}; the pop-up opens {url}, the record of {name}");
    hubspot::check_call_logged(&demo.api, &demo.hubspot)
}

/// Checks the proposal against the story: every extension but the ones
/// associated by hand matched, each with the user of its e-mail. Answers
/// extension → the matched user's e-mail.
fn check_proposal(
    proposal: &Value,
    email_of: &BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let mut matched = BTreeMap::new();
    for m in proposal["matches"].as_array().into_iter().flatten() {
        let user = m["user_id"].as_str().unwrap_or_default();
        let extension = m["extension"].as_str().unwrap_or_default();
        let email = email_of.get(user).with_context(|| {
            format!("the proposal names user {user}, whom the sync did not list")
        })?;
        matched.insert(extension.to_string(), email.clone());
    }
    let mut problems = Vec::new();
    for e in EXTENSIONS {
        match (e.by_hand_with, matched.get(e.number)) {
            (None, Some(email)) if email.eq_ignore_ascii_case(e.email) => {}
            (None, Some(email)) => problems.push(format!(
                "extension {} ({}) matched {email}",
                e.number, e.email
            )),
            (None, None) => problems.push(format!(
                "extension {} ({}) was not matched by e-mail",
                e.number, e.email
            )),
            (Some(_), Some(email)) => problems.push(format!(
                "extension {} is the manual case but matched {email}",
                e.number
            )),
            (Some(_), None) => {}
        }
    }
    let ours: BTreeSet<&str> = EXTENSIONS.iter().map(|e| e.number).collect();
    for extension in matched.keys() {
        if !ours.contains(extension.as_str()) {
            problems.push(format!("extension {extension} is not the demo's"));
        }
    }
    if !problems.is_empty() {
        bail!(
            "Associate Automatically does not tell the demo's story: {}",
            problems.join("; ")
        );
    }
    Ok(matched)
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http") {
        location.to_string()
    } else {
        format!("{base}{location}")
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("   {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of a hidden form input in `html`.
fn hidden_input(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let start = html[..at].rfind('<')?;
    let end = at + html[at..].find('>')?;
    let value = html[start..end].split("value=\"").nth(1)?;
    Some(value[..value.find('"')?].replace("&amp;", "&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<(String, String, bool)> {
        let text = std::fs::read_to_string(demo_org()).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("Email = \""))
            .map(|m| m.trim_end_matches('"').to_string())
            .filter(|m| m.ends_with("@example.org"))
            .map(|m| (m.clone(), m, true))
            .collect()
    }

    #[test]
    fn the_story_has_one_manual_case_and_users_without_extensions() {
        let users = users();
        let story = story(&users);
        let by_mail = story.matches("matched by e-mail").count();
        assert_eq!(by_mail, EXTENSIONS.len() - 1, "{story}");
        assert_eq!(story.matches("associate by hand").count(), 1, "{story}");
        assert!(!story.contains("no Salesforce user has"), "{story}");
        let manual = EXTENSIONS
            .iter()
            .find(|e| e.by_hand_with.is_some())
            .unwrap();
        // The manual case's own e-mail is no user's; its user exists.
        assert!(!users.iter().any(|(m, _, _)| m == manual.email));
        assert!(
            users
                .iter()
                .any(|(m, _, _)| Some(m.as_str()) == manual.by_hand_with)
        );
        let without = story.lines().last().unwrap();
        assert!(without.matches("@example.org").count() >= 2, "{story}");
    }

    #[test]
    fn a_proposal_that_matches_the_manual_case_or_misses_one_is_refused() {
        let email_of: BTreeMap<String, String> = EXTENSIONS
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    format!("u{i}"),
                    e.by_hand_with.unwrap_or(e.email).to_string(),
                )
            })
            .collect();
        let proposal = |extensions: &[&str]| {
            let matches: Vec<Value> = EXTENSIONS
                .iter()
                .enumerate()
                .filter(|(_, e)| extensions.contains(&e.number))
                .map(
                    |(i, e)| serde_json::json!({"user_id": format!("u{i}"), "extension": e.number}),
                )
                .collect();
            serde_json::json!({ "matches": matches })
        };
        let good: Vec<&str> = EXTENSIONS
            .iter()
            .filter(|e| e.by_hand_with.is_none())
            .map(|e| e.number)
            .collect();
        assert_eq!(
            check_proposal(&proposal(&good), &email_of).unwrap().len(),
            good.len()
        );
        let all: Vec<&str> = EXTENSIONS.iter().map(|e| e.number).collect();
        assert!(check_proposal(&proposal(&all), &email_of).is_err());
        assert!(check_proposal(&proposal(&good[1..]), &email_of).is_err());
    }

    #[test]
    fn stopping_reaps_a_child_and_kills_one_that_ignores_sigint() {
        // SAFETY (both probes): signal 0 only checks that the pid exists; a
        // reaped child no longer does.
        let gone = |pid: u32| unsafe { libc::kill(pid as i32, 0) } == -1;
        let child = Guard::spawn(Command::new("sleep").arg("600")).unwrap();
        let pid = child.0.id();
        assert!(started().contains(&pid));
        drop(child);
        assert!(!started().contains(&pid));
        assert!(gone(pid), "sleep ended on SIGINT and was reaped");

        use std::os::unix::process::CommandExt;
        let mut deaf = Command::new("sleep");
        deaf.arg("600");
        // SAFETY: only an async-signal-safe call between fork and exec; an
        // ignored signal stays ignored across exec.
        unsafe {
            deaf.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut child = deaf.spawn().unwrap();
        let pid = child.id();
        let at = Instant::now();
        stop_within(pid, Duration::from_millis(300));
        assert!(
            at.elapsed() >= Duration::from_millis(300),
            "waited its grace"
        );
        assert!(gone(pid), "killed and reaped");
        assert!(child.wait().is_err(), "nothing left for std to reap");
    }

    /// Run by `sigterm_stops_what_was_started_and_leaves_no_orphan` in a
    /// process of its own: installs the handlers, starts a child, prints
    /// its pid and waits for the signal.
    #[test]
    #[ignore = "a helper process of another test"]
    fn signal_helper() {
        stop_on_signals().unwrap();
        let child = Guard::spawn(Command::new("sleep").arg("600")).unwrap();
        // On stderr: libtest writes its own lines to stdout.
        eprintln!("child {}", child.0.id());
        loop {
            std::thread::park();
        }
    }

    #[test]
    fn sigterm_stops_what_was_started_and_leaves_no_orphan() {
        use std::io::BufRead;
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "demo::tests::signal_helper",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(helper.stderr.take().unwrap()).lines();
        let pid: i32 = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("child ").map(|p| p.parse().unwrap()))
            .expect("the helper started its child");
        // SAFETY: signalling the helper we started; probing a pid.
        unsafe { libc::kill(helper.id() as i32, libc::SIGTERM) };
        let status = helper.wait().unwrap();
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        if alive {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        assert_eq!(status.code(), Some(143), "exits as SIGTERM's 128 + 15");
        assert!(!alive, "the helper's child {pid} was left running");
    }
}
