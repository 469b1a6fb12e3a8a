//! HubSpot's official clients, unmodified, against the emulator:
//! `@hubspot/api-client` (npm) and `hubspot-api-client` (PyPI), pinned in
//! `tests/conformance/`.
//!
//! They need `npm ci --prefix tests/conformance` and
//! `pip install -r tests/conformance/requirements.txt` (what `cargo xtask
//! test` runs first). Without them these tests fail; they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use hubspot_emulator::{App, Emulator, EmulatorConfig};

const CLIENT_ID: &str = "conformance-client-id";
const SECRET: &str = "conformance-client-secret";
const REDIRECT: &str = "https://pbx.example.com:8443/oauth/hubspot/callback";
const EMAIL: &str = "admin@example.com";
const PASSWORD: &str = "emulator";
/// Owners beyond the admin: three pages of 100 for the clients' paging.
const OWNERS: usize = 249;
const CALLER: &str = "+1 415 555 0142";

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance")
}

fn start() -> (Emulator, tempfile::NamedTempFile) {
    let emu = Emulator::start_blocking(EmulatorConfig {
        apps: vec![App::new(CLIENT_ID, SECRET, REDIRECT)],
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    for i in 0..OWNERS {
        emu.add_owner(&format!("rep{i}@example.com"), "Rep", &format!("No{i}"));
    }
    for (i, phone) in ["+1 415 555 0100", CALLER, "+1 415 555 0199"]
        .iter()
        .enumerate()
    {
        let name = format!("Caller{i}");
        emu.insert(
            "contacts",
            &[("firstname", &name), ("lastname", "Doe"), ("phone", phone)],
        )
        .expect("contact");
    }
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), emu.ca_cert_pem()).expect("write CA");
    (emu, ca)
}

fn command(program: &str, script: &str, emu: &Emulator, ca: &Path) -> Command {
    let dir = conformance_dir();
    let mut cmd = Command::new(program);
    // Machine-wide CA bundle variables would override the emulator's CA.
    for var in [
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.arg(dir.join(script))
        .current_dir(&dir)
        .env("EMU_BASE_URL", emu.base_url())
        .env("EMU_CA_FILE", ca)
        .env("EMU_CLIENT_ID", CLIENT_ID)
        .env("EMU_CLIENT_SECRET", SECRET)
        .env("EMU_REDIRECT_URI", REDIRECT)
        .env("EMU_EMAIL", EMAIL)
        .env("EMU_PASSWORD", PASSWORD)
        .env("EMU_EXPECTED_OWNERS", (OWNERS + 1).to_string())
        .env("EMU_CALLER_PHONE", CALLER);
    cmd
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {what}: {e}. Run `cargo xtask test`, which installs the conformance clients.")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    println!("{stdout}");
}

/// What both clients did, seen from the emulator rather than their word.
fn check_account(emu: &Emulator, title: &str) {
    let stats = emu.token_stats();
    assert_eq!(
        (stats.authorization_code_grants, stats.refresh_grants),
        (1, 1),
        "{stats:?}"
    );
    let calls = emu.calls();
    let call = calls
        .iter()
        .find(|c| c["properties"]["hs_call_title"] == title)
        .unwrap_or_else(|| panic!("no call titled {title} in {calls:?}"));
    let id = call["id"].as_str().expect("id");
    let contacts = emu.associations_of("calls", id, "contacts");
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    assert_eq!(contacts[0].1, 194);
    let counts = emu.request_counts();
    assert!(
        counts.get("GET /crm/v3/owners").copied().unwrap_or(0) >= 3,
        "{counts:?}"
    );
    assert!(
        counts.contains_key("POST /crm/v3/objects/contacts/search"),
        "{counts:?}"
    );
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn hubspot_api_client_python_against_the_emulator() {
    let probe = Command::new(python())
        .args(["-c", "import hubspot, requests"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "hubspot-api-client is not installed for {}: run `cargo xtask test` (it runs `pip install -r tests/conformance/requirements.txt`)",
        python()
    );
    let (emu, ca) = start();
    let cmd = command(&python(), "hubspot_check.py", &emu, ca.path());
    run(cmd, "python3 tests/conformance/hubspot_check.py");
    check_account(&emu, "python-conformance");
    emu.shutdown_blocking();
}

#[test]
fn hubspot_api_client_node_against_the_emulator() {
    let dir = conformance_dir();
    assert!(
        dir.join("node_modules/@hubspot/api-client/package.json")
            .exists(),
        "@hubspot/api-client is not installed in {}: run `cargo xtask test` (it runs `npm ci --prefix tests/conformance`)",
        dir.display()
    );
    let (emu, ca) = start();
    let mut cmd = command("node", "hubspot_check.js", &emu, ca.path());
    cmd.env("NODE_EXTRA_CA_CERTS", ca.path());
    run(cmd, "node tests/conformance/hubspot_check.js");
    check_account(&emu, "node-conformance");
    emu.shutdown_blocking();
}
