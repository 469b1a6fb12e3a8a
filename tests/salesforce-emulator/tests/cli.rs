//! The binary as a child process: first stdout line is the base URL, the
//! CA is written out, `--app` keeps the callback URL's colons.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str]) -> (Kill, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_salesforce-emulator"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn emulator");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    (Kill(child), line.trim().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_tls_with_its_ca_and_registers_apps() {
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    let seed_path = dir.path().join("org.toml");
    std::fs::write(
        &seed_path,
        "org_name = \"Seeded\"\n[[contacts]]\nLastName = \"Doe\"\nPhone = \"(212) 555-0100\"\n",
    )
    .unwrap();
    let (_child, base) = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--ca-cert-out",
        ca_path.to_str().unwrap(),
        "--seed",
        seed_path.to_str().unwrap(),
        "--users",
        "3",
        "--app",
        "cli-key:cli-secret:https://pbx.example.com:8443/cb",
        "--admin-password",
        "pw",
    ]);
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = std::fs::read(&ca_path).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let state: serde_json::Value = client
        .get(format!("{base}/__admin/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["org_name"], "Seeded");
    assert_eq!(state["record_counts"]["User"], 3);
    assert_eq!(state["record_counts"]["Contact"], 1);
    assert_eq!(
        state["apps"][0]["callback_urls"][0],
        "https://pbx.example.com:8443/cb"
    );
    let login = client
        .post(format!("{base}/login"))
        .form(&[
            ("username", "admin@example.org"),
            ("password", "pw"),
            ("startURL", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 302);
    let cookie = login.headers()["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("sid=") && cookie.contains("Secure"),
        "{cookie}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_plain_http_only_when_asked() {
    let (_child, base) = spawn(&["--insecure-http"]);
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let versions: serde_json::Value = reqwest::get(format!("{base}/services/data/"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        versions
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["version"] == "67.0")
    );
}
