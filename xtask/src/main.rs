//! `cargo xtask`: the project's whole set-up and test entry points.
//!
//! - `build`: the plugin and fixtures for wasm32-wasip2, the host, the emulator.
//! - `test`: build, install what the tests need, run every test.
//! - `demo`: build, start the emulator and the host, install the plugin.
//! - `bench`: the benchmarks, printing ratios measured side by side.
//! - `fuzz`: the plugin's fuzz targets, for a given time or number of runs.

mod fuzz;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Components built for wasm32-wasip2: the product and the test fixtures.
const WASM_PACKAGES: &[&str] = &[
    "salesforce-plugin",
    "fixture-probe",
    "fixture-probe-v2",
    "fixture-future-api",
];
/// Built on its own: it links the plugin without its `component` feature,
/// which a shared `cargo build` would unify back on.
const WASM_SEPARATE: &[&str] = &["fixture-assoc-bench"];
const WASM_TARGET: &str = "wasm32-wasip2";

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the plugin (release, wasm32-wasip2), the fixtures, the host and the emulator.
    Build,
    /// Build, install test dependencies, and run every test.
    Test,
    /// Build and run the product: emulator + host + plugin.
    Demo {
        /// Drive the administrator's set-up over HTTP, print each step, and
        /// end on the status instead of waiting for a person.
        #[arg(long)]
        headless: bool,
    },
    /// Run the benchmarks.
    Bench,
    /// cargo fmt --check and clippy -D warnings.
    Lint,
    /// Run the plugin's fuzz targets (not part of `test`).
    Fuzz {
        /// Seconds per target (60 when neither limit is given).
        #[arg(long)]
        seconds: Option<u64>,
        /// Runs (inputs executed) per target; with --seconds, the first
        /// limit reached ends the target.
        #[arg(long)]
        runs: Option<u64>,
        /// Only this target (caller_number, oauth_callback, salesforce_json).
        #[arg(long)]
        target: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Build => build(),
        Task::Test => test(),
        Task::Demo { headless } => demo(headless),
        Task::Bench => bench(),
        Task::Lint => lint(),
        Task::Fuzz {
            seconds,
            runs,
            target,
        } => fuzz::fuzz(
            &root(),
            fuzz::Budget {
                seconds: seconds.or(runs.is_none().then_some(60)),
                runs,
            },
            target.as_deref(),
        ),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the wasm32-wasip2 target")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == WASM_TARGET)
    {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    Ok(())
}

fn build() -> anyhow::Result<()> {
    let started = Instant::now();
    ensure_wasm_target()?;
    let mut wasm = cargo();
    wasm.args(["build", "--release", "--target", WASM_TARGET]);
    for package in WASM_PACKAGES {
        wasm.args(["-p", package]);
    }
    // The separate ones first: building the plugin as their dependency
    // leaves a plugin without its component glue where the product's goes,
    // and the main build below puts the product back.
    for package in WASM_SEPARATE {
        run(cargo().args(["build", "--release", "--target", WASM_TARGET, "-p", package]))?;
    }
    run(&mut wasm)?;
    let built = built_plugin_path();
    let plugin = std::fs::read(&built).context("the plugin was not built")?;
    if !plugin.windows(16).any(|w| w == b"pbx-crm-manifest") {
        bail!(
            "{} lacks its manifest: the plugin was built without its `component` feature",
            built.display()
        );
    }
    run(cargo().args([
        "build",
        "-p",
        "pbx-host",
        "-p",
        "salesforce-emulator",
        "-p",
        "plugin-preinit",
        "--bins",
    ]))?;
    preinitialize(&built, &plugin_path())?;
    let plugin = plugin_path();
    let size = std::fs::metadata(&plugin).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "xtask: built in {:.0} s; plugin {} ({} KiB)",
        started.elapsed().as_secs_f64(),
        plugin.display(),
        size / 1024
    );
    Ok(())
}

/// The vendor's last build step: snapshot the plugin after its
/// `wizer-initialize` export ran (tools/plugin-preinit), so no per-call
/// instance pays for its warm-up. Skipped when the snapshot is newer than
/// the build, which keeps repeated builds fast.
fn preinitialize(built: &Path, shipped: &Path) -> anyhow::Result<()> {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if let (Some(b), Some(s)) = (modified(built), modified(shipped))
        && s > b
    {
        return Ok(());
    }
    if let Some(dir) = shipped.parent() {
        std::fs::create_dir_all(dir)?;
    }
    run(Command::new(bin("plugin-preinit")).arg(built).arg(shipped))
}

/// The Salesforce plugin as cargo builds it.
fn built_plugin_path() -> PathBuf {
    target_dir()
        .join(WASM_TARGET)
        .join("release")
        .join("salesforce_plugin.wasm")
}

/// The Salesforce plugin as shipped: pre-initialized.
fn plugin_path() -> PathBuf {
    target_dir().join("plugins").join("salesforce_plugin.wasm")
}

fn bin(name: &str) -> PathBuf {
    target_dir().join("debug").join(name)
}

/// Debian packages the tests need: Chromium and its WebDriver for the portal
/// tests. Installed only when missing, without prompting.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("chromium", "/usr/bin/chromium"),
    ("chromium-driver", "/usr/bin/chromedriver"),
];

fn install_debian_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(_, binary)| !Path::new(binary).exists())
        .map(|(package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let sudo = |program: &str| {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let mut cmd = if root {
            Command::new(program)
        } else {
            let mut c = Command::new("sudo");
            c.arg(program);
            c
        };
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    run(sudo("apt-get").args(["update", "-qq"]))?;
    run(sudo("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

/// What the tests need beyond Rust: the real Salesforce clients used to check
/// the emulator, and a browser. Idempotent: each step skips what is there.
fn install_test_dependencies() -> anyhow::Result<()> {
    install_debian_packages()?;
    let conformance = root().join("tests").join("conformance");
    if conformance.join("package-lock.json").exists() {
        let up_to_date = conformance
            .join("node_modules")
            .join(".package-lock.json")
            .exists()
            && newer(
                &conformance.join("node_modules").join(".package-lock.json"),
                &conformance.join("package-lock.json"),
            );
        if !up_to_date {
            run(Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&conformance))?;
        }
    }
    let requirements = conformance.join("requirements.txt");
    if requirements.exists() {
        run(Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--root-user-action=ignore",
                "-r",
            ])
            .arg(&requirements))?;
    }
    Ok(())
}

fn newer(a: &Path, b: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    matches!((modified(a), modified(b)), (Some(a), Some(b)) if a >= b)
}

fn test() -> anyhow::Result<()> {
    let started = Instant::now();
    build()?;
    install_test_dependencies()?;
    run(cargo().args(["test", "--workspace", "--no-fail-fast"]))?;
    eprintln!(
        "xtask: every test passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn lint() -> anyhow::Result<()> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn bench() -> anyhow::Result<()> {
    build()?;
    run(cargo().args(["bench", "-p", "salesforce-emulator", "--bench", "emulator"]))?;
    run(cargo().args(["bench", "-p", "pbx-host", "--bench", "runtime"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "association"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "sync"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "calls"]))?;
    run(cargo().args(["bench", "-p", "e2e-tests", "--bench", "swap"]))
}

/// A child process killed when dropped, so Ctrl-C or an error leaves nothing running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn wait_for_file(path: &Path, timeout: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && !text.trim().is_empty()
        {
            return Ok(text.trim().to_string());
        }
        if Instant::now() > deadline {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn demo(headless: bool) -> anyhow::Result<()> {
    build()?;
    let dir = target_dir().join("demo");
    // A fresh org and PBX each run, so the demo always starts at step 1.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let data_dir = dir.join("pbx-data");
    let ca = dir.join("emulator-ca.pem");

    let host_port = free_port()?;
    let public_url = format!("http://127.0.0.1:{host_port}");
    let callback_url = format!("{public_url}/crm/salesforce/oauth/callback");
    let consumer_key = "3MVG9demoConsumerKey";
    let consumer_secret = format!("demo-secret-{:08x}", std::process::id());

    let mut emulator = Command::new(bin("salesforce-emulator"));
    emulator
        .args(["--listen", "127.0.0.1:0", "--users", "25", "--ca-cert-out"])
        .arg(&ca)
        .arg("--app")
        .arg(format!("{consumer_key}:{consumer_secret}:{callback_url}"))
        .stdout(Stdio::piped());
    eprintln!("xtask: starting the Salesforce emulator");
    let mut emulator = Guard(emulator.spawn().context("cannot start the emulator")?);
    let emulator_url = {
        use std::io::BufRead;
        let stdout = emulator.0.stdout.take().context("no emulator stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        line.trim().to_string()
    };
    if !emulator_url.starts_with("https://") {
        bail!("the emulator printed {emulator_url:?} instead of its URL");
    }

    eprintln!("xtask: starting pbx-host");
    let _host = Guard(
        Command::new(bin("pbx-host"))
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", &format!("127.0.0.1:{host_port}")])
            .args(["--public-url", &public_url])
            .arg("--trust-ca")
            .arg(&ca)
            .args(["--grant", &format!("salesforce={emulator_url}")])
            // The headless demo prints its own steps; keep the host quiet.
            .env("RUST_LOG", if headless { "warn" } else { "info" })
            .spawn()
            .context("cannot start pbx-host")?,
    );
    wait_for_file(&data_dir.join("admin-url"), Duration::from_secs(30))?;
    let token = wait_for_file(&data_dir.join("admin-token"), Duration::from_secs(5))?;

    let cli = |args: &[&str]| {
        run(Command::new(bin("pbx-host"))
            .args(args)
            .arg("--data-dir")
            .arg(&data_dir))
    };
    cli(&["plugin", "install", &plugin_path().to_string_lossy()])?;
    for (number, name, email) in [
        ("1001", "Ada Admin", "admin@example.org"),
        ("1002", "Ben Sales", "user1@example.org"),
        ("1003", "Cleo Support", "user2@example.org"),
    ] {
        cli(&["extension", "add", number, "--name", name, "--email", email])?;
    }

    if headless {
        return headless_setup(&HeadlessDemo {
            data_dir: &data_dir,
            ca: &ca,
            emulator_url: &emulator_url,
            consumer_key,
            consumer_secret: &consumer_secret,
        });
    }
    println!();
    println!("  PBX portal:        {public_url}/");
    println!(
        "  Admin token:       {token}   (also in {})",
        data_dir.join("admin-token").display()
    );
    println!("  Callback URL:      {callback_url}");
    println!("  Salesforce (emulated): {emulator_url}  (log in as admin@example.org / emulator)");
    println!("  Consumer Key:      {consumer_key}");
    println!("  Consumer Secret:   {consumer_secret}");
    println!("  Login host:        My Domain, {emulator_url}");
    println!();
    println!("  Open the portal, log in with the admin token, paste the key and secret, Save.");
    println!("  Press Ctrl-C to stop.");
    let _ = emulator.0.wait();
    Ok(())
}

struct HeadlessDemo<'a> {
    data_dir: &'a Path,
    ca: &'a Path,
    emulator_url: &'a str,
    consumer_key: &'a str,
    consumer_secret: &'a str,
}

/// The administrator's set-up, driven over HTTP with the CLI and a
/// cookie-keeping client in the role of the browser.
fn headless_setup(demo: &HeadlessDemo<'_>) -> anyhow::Result<()> {
    let pbx = |args: &[&str], stdin: Option<&str>| -> anyhow::Result<String> {
        use std::io::Write;
        let mut child = Command::new(bin("pbx-host"))
            .args(args)
            .arg("--data-dir")
            .arg(demo.data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run pbx-host")?;
        if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
            input.write_all(text.as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("pbx-host {} failed", args.join(" "));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
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
    println!(
        "   {}",
        pbx(
            &[
                "crm",
                "configure",
                "--consumer-key",
                demo.consumer_key,
                "--consumer-secret-stdin",
                "--login-url",
                demo.emulator_url
            ],
            Some(demo.consumer_secret),
        )?
    );
    let consent_url = pbx(&["crm", "authorize", "--no-browser"], None)?;
    println!(
        "   Salesforce's authorization page: {}",
        consent_url.split('?').next().unwrap_or_default()
    );
    let ca = reqwest::Certificate::from_pem(&std::fs::read(demo.ca)?)?;
    let browser = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(ca)
        .build()?;
    let login_page = browser.get(&consent_url).send()?.text()?;
    let start_url = hidden_input(&login_page, "startURL").context("no login form")?;
    let after_login = browser
        .post(format!("{}/login", demo.emulator_url))
        .form(&[
            ("username", "admin@example.org"),
            ("password", "emulator"),
            ("startURL", &start_url),
        ])
        .send()?;
    println!("   logged in to Salesforce as admin@example.org");
    let consent_page = match after_login
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
    {
        Some(next) => {
            let next = if next.starts_with("http") {
                next.to_string()
            } else {
                format!("{}{next}", demo.emulator_url)
            };
            browser.get(next).send()?.text()?
        }
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
    println!("{}", indent(&pbx(&["crm", "status"], None)?));
    Ok(())
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
