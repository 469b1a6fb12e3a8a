//! Real, unmodified Salesforce clients against the emulator: jsforce (npm)
//! and simple-salesforce (PyPI), pinned in `tests/conformance/`.
//!
//! They need `npm ci --prefix tests/conformance` and
//! `pip install -r tests/conformance/requirements.txt` (what `cargo xtask
//! test` runs first). Without them these tests fail; they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use salesforce_emulator::{ConnectedApp, Emulator, EmulatorConfig};

const USERS: usize = 5000; // three pages of 2,000
const KEY: &str = "conformance-key";
const SECRET: &str = "conformance-secret";
const CALLBACK: &str = "https://pbx.example.com:8443/oauth/callback";

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance")
}

fn start() -> (Emulator, tempfile::NamedTempFile) {
    let mut app = ConnectedApp::new(KEY, SECRET, CALLBACK);
    app.pkce_required = true;
    let emu = Emulator::start_blocking(EmulatorConfig {
        users: USERS,
        apps: vec![app],
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), emu.ca_cert_pem()).expect("write CA");
    (emu, ca)
}

fn run(mut cmd: Command, what: &str) {
    // The machine-wide CA bundle variables would override the emulator's CA
    // (requests prefers REQUESTS_CA_BUNDLE over a session's `verify`).
    for var in [
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}. Run `cargo xtask test`, which installs the conformance clients."));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

#[test]
fn jsforce_against_the_emulator() {
    let dir = conformance_dir();
    assert!(
        dir.join("node_modules/jsforce/package.json").exists(),
        "jsforce is not installed in {}: run `cargo xtask test` (it runs `npm ci --prefix tests/conformance`)",
        dir.display()
    );
    let (emu, ca) = start();
    let mut cmd = Command::new("node");
    cmd.arg(dir.join("jsforce_check.js"))
        .current_dir(&dir)
        .env("NODE_EXTRA_CA_CERTS", ca.path())
        .env("EMU_BASE_URL", emu.base_url())
        .env("EMU_CLIENT_ID", KEY)
        .env("EMU_CLIENT_SECRET", SECRET)
        .env("EMU_CALLBACK", CALLBACK)
        .env("EMU_USERNAME", "admin@example.org")
        .env("EMU_PASSWORD", "emulator")
        .env("EMU_EXPECTED_USERS", USERS.to_string());
    run(cmd, "node tests/conformance/jsforce_check.js");
    // The org saw what jsforce did, independently of jsforce's word.
    let stats = emu.token_stats();
    assert_eq!(stats.authorization_code_grants, 1);
    assert_eq!(stats.refresh_grants, 1);
    assert_eq!(stats.revocations, 1);
    assert!(emu.tasks().iter().any(|t| {
        t["CallObject"]
            .as_str()
            .is_some_and(|c| c.starts_with("jsforce-"))
    }));
    emu.shutdown_blocking();
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn simple_salesforce_against_the_emulator() {
    let dir = conformance_dir();
    let probe = Command::new(python())
        .args(["-c", "import simple_salesforce, requests"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "simple-salesforce is not installed for {}: run `cargo xtask test` (it runs `pip install -r tests/conformance/requirements.txt`)",
        python()
    );
    let (emu, ca) = start();
    let token = emu.issue_token(KEY, "admin@example.org").expect("token");
    let mut cmd = Command::new(python());
    cmd.arg(dir.join("simple_salesforce_check.py"))
        .current_dir(&dir)
        .env("EMU_BASE_URL", emu.base_url())
        .env("EMU_CA_FILE", ca.path())
        .env("EMU_ACCESS_TOKEN", &token.access_token)
        .env("EMU_EXPECTED_USERS", USERS.to_string());
    run(cmd, "python3 tests/conformance/simple_salesforce_check.py");
    let tasks = emu.tasks();
    assert!(
        tasks
            .iter()
            .any(|t| t["CallObject"] == "simple-salesforce-1" && t["Description"] == "updated")
    );
    let counts = emu.request_counts();
    assert!(
        counts.get("GET query/{locator}").copied().unwrap_or(0) >= 2,
        "{counts:?}"
    );
    emu.shutdown_blocking();
}
