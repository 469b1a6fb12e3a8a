//! The binary as a child process: the first stdout line is the base URL,
//! the CA is written out, `--app` keeps the redirect URL's colons.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Kills the child (by its own handle) when the test ends.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_tls_with_its_ca_and_registers_apps() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_path = dir.path().join("ca.pem");
    let redirect = "https://pbx.example.com:8443/oauth/hubspot/callback";
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubspot-emulator"))
        .args(["--listen", "127.0.0.1:0", "--ca-cert-out"])
        .arg(&ca_path)
        .args(["--app", &format!("cli-id:cli-secret:{redirect}")])
        .args(["--admin-password", "pw", "--rate-limit-per-10s", "7"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn emulator");
    let stdout = child.stdout.take().expect("stdout");
    let _child = Kill(child);
    let mut base = String::new();
    BufReader::new(stdout)
        .read_line(&mut base)
        .expect("first line");
    let base = base.trim();
    assert!(base.starts_with("https://127.0.0.1:"), "{base}");
    let ca = std::fs::read(&ca_path).expect("CA written before the URL");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("PEM"))
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    // The app is registered with its redirect URL; the admin logs in with
    // the password given.
    let mut authorize = url::Url::parse(&format!("{base}/oauth/authorize")).expect("url");
    authorize
        .query_pairs_mut()
        .append_pair("client_id", "cli-id")
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "crm.objects.owners.read");
    let page = client.get(authorize.as_str()).send().await.expect("GET");
    assert_eq!(page.status(), 200);
    let resp = client
        .post(format!("{base}/oauth/authorize"))
        .form(&[
            ("client_id", "cli-id"),
            ("redirect_uri", redirect),
            ("scope", "crm.objects.owners.read"),
            ("email", "admin@example.com"),
            ("password", "pw"),
        ])
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), 302);
    let location = resp.headers()["location"].to_str().expect("ascii");
    assert!(location.starts_with(redirect), "{location}");
    let code = url::Url::parse(location)
        .expect("url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let tok: serde_json::Value = client
        .post(format!("{base}/oauth/v1/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "cli-id"),
            ("client_secret", "cli-secret"),
            ("redirect_uri", redirect),
            ("code", &code),
        ])
        .send()
        .await
        .expect("POST token")
        .json()
        .await
        .expect("json");
    let access = tok["access_token"].as_str().expect("access token");
    let owners = client
        .get(format!("{base}/crm/v3/owners"))
        .bearer_auth(access)
        .send()
        .await
        .expect("GET owners");
    assert_eq!(owners.status(), 200);
    assert_eq!(owners.headers()["x-hubspot-ratelimit-max"], "7");
}
