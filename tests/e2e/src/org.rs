//! A Salesforce org (the emulator) and a PBX host wired together the way an
//! administrator would: the connected app's Callback URL is the host's, the
//! host trusts the org's CA and grants the plugin its address.

use std::path::PathBuf;

use pbx_host::cli::AdminClient;
use pbx_host::server::RunningHost;
use salesforce_emulator::{ConnectedApp, Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::{Options, admin, install, start_host};

/// The consumer key of the test app.
pub const CONSUMER_KEY: &str = "3MVG9testConsumerKey.pbx";
/// The consumer secret of the test app (searched for in leak checks).
pub const CONSUMER_SECRET: &str = "TestConsumerSecret-1f0e9d8c7b6a";
/// The emulator's administrator.
pub const ADMIN_USER: &str = "admin@example.org";
/// Its password.
pub const ADMIN_PASSWORD: &str = "emulator";

/// An org, a host with the Salesforce plugin, and the test's temp dir.
pub struct World {
    /// The org.
    pub org: Emulator,
    /// The PBX host.
    pub host: RunningHost,
    /// Its admin API.
    pub api: AdminClient,
    /// The host's data directory (inside `dir`).
    pub data_dir: PathBuf,
    /// The org's CA certificate file.
    pub ca_path: PathBuf,
    /// Temp files of the test.
    pub dir: tempfile::TempDir,
    /// The host's `--store` (kept across [`World::restarted`]).
    pub store: Option<String>,
}

/// How to set the world up.
#[derive(Clone, Default)]
pub struct Setup {
    /// Users in the org.
    pub users: usize,
    /// Host options beyond the grant and CA (which are added).
    pub host: Options,
    /// Extra tweaks of the connected app.
    pub rotate_refresh_tokens: bool,
    /// Register the app with this callback instead of the host's.
    pub app_callback: Option<String>,
    /// Don't register any app.
    pub no_app: bool,
}

impl World {
    /// Start the org and the host, install the plugin, register the app.
    pub async fn start(setup: Setup) -> World {
        let org = Emulator::start(EmulatorConfig {
            users: setup.users.max(5),
            ..EmulatorConfig::default()
        })
        .await
        .expect("the emulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_path = dir.path().join("org-ca.pem");
        std::fs::write(&ca_path, org.ca_cert_pem()).expect("write the CA");
        let data_dir = dir.path().join("pbx");
        let mut options = setup.host.clone();
        options
            .grants
            .push(format!("salesforce={}", org.base_url()));
        options.trust_ca.push(ca_path.clone());
        let host = start_host(&data_dir, options).await;
        let api = admin(&host);
        install(&api, "salesforce_plugin")
            .await
            .expect("the plugin installs");
        let callback = setup
            .app_callback
            .clone()
            .unwrap_or_else(|| callback_url(&host));
        if !setup.no_app {
            let mut app = ConnectedApp::new(CONSUMER_KEY, CONSUMER_SECRET, &callback);
            app.rotate_refresh_tokens = setup.rotate_refresh_tokens;
            org.add_app(app);
        }
        World {
            org,
            host,
            api,
            data_dir,
            ca_path,
            dir,
            store: setup.host.store.clone(),
        }
    }

    /// The same world after the host stopped and started again on its data
    /// directory (with the default options, the org's grant and CA; on a
    /// new port, so a new admin client).
    pub async fn restarted(self) -> World {
        let World {
            org,
            host,
            data_dir,
            ca_path,
            dir,
            store,
            ..
        } = self;
        host.shutdown().await;
        let options = Options {
            grants: vec![format!("salesforce={}", org.base_url())],
            trust_ca: vec![ca_path.clone()],
            store: store.clone(),
            ..Options::default()
        };
        let host = start_host(&data_dir, options).await;
        let api = admin(&host);
        World {
            org,
            host,
            api,
            data_dir,
            ca_path,
            dir,
            store,
        }
    }

    /// Save key, secret and the org's address as the My Domain login host.
    pub async fn configure(&self, key: &str, secret: &str) -> Result<Value, String> {
        self.configure_login(key, secret, &self.org.base_url())
            .await
    }

    /// Save key, secret and a My Domain URL.
    pub async fn configure_login(
        &self,
        key: &str,
        secret: &str,
        my_domain: &str,
    ) -> Result<Value, String> {
        self.api
            .put(
                "/crm/salesforce/settings",
                &json!({"settings": [
                    {"key": "consumer-key", "value": key},
                    {"key": "consumer-secret", "value": secret},
                    {"key": "login-host", "value": "my-domain"},
                    {"key": "my-domain-url", "value": my_domain},
                ]}),
            )
            .await
            .map_err(|e| format!("{e:#}"))
    }

    /// Begin an authorization; the consent page's URL.
    pub async fn authorize(&self) -> Result<String, String> {
        self.api
            .post("/crm/salesforce/authorize", &json!({}))
            .await
            .map(|v| v["url"].as_str().unwrap_or_default().to_string())
            .map_err(|e| format!("{e:#}"))
    }

    /// The administrator in a browser: log in to the org, then Allow or
    /// Deny. Returns where Salesforce redirects the browser (the callback
    /// URL with its query), or the page it showed instead.
    pub async fn consent(&self, consent_url: &str, allow: bool) -> Consent {
        consent_in(&self.org, consent_url, allow).await
    }

    /// Let the browser follow the redirect to the PBX's callback: the page.
    pub async fn callback(&self, location: &str) -> (u16, String) {
        follow_callback(location).await
    }

    /// Configure, authorize, allow and follow the callback: connected.
    pub async fn connect(&self) -> Value {
        self.configure(CONSUMER_KEY, CONSUMER_SECRET)
            .await
            .expect("settings save");
        let url = self.authorize().await.expect("authorization starts");
        let Consent::Redirect(location) = self.consent(&url, true).await else {
            panic!("the org did not redirect after Allow");
        };
        let (status, page) = self.callback(&location).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Authorization succeeded!"), "{page}");
        self.status().await
    }

    /// Run a user sync to its end through the host's job; the final job.
    pub async fn sync_users(&self) -> Value {
        sync_job(&self.api, "salesforce").await
    }

    /// The integration's status.
    pub async fn status(&self) -> Value {
        self.api
            .get("/crm/salesforce/status")
            .await
            .expect("status")
    }

    /// A browser-like client: cookies, no automatic redirects, the org's CA.
    pub fn browser(&self) -> reqwest::Client {
        org_browser(&self.org)
    }

    /// Every key of the plugin's kv namespace, for "nothing was stored".
    /// Leaves out the call journal's own bookkeeping (`calls/pruned-at`),
    /// which the host's periodic delivery run writes whenever it passes.
    pub fn plugin_keys(&self) -> Vec<String> {
        self.host
            .state
            .store
            .namespace("plugin/salesforce", pbx_host::store::Quota::UNLIMITED)
            .list_keys("")
            .expect("list keys")
            .into_iter()
            .filter(|k| k != "calls/pruned-at")
            .collect()
    }
}

/// A browser-like client for `org`: cookies, no automatic redirects, its CA.
pub fn org_browser(org: &Emulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(org.ca_cert_pem().as_bytes()).expect("CA");
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(ca)
        .build()
        .expect("client")
}

/// The administrator of `org` in a browser: log in, then Allow or Deny;
/// where the org redirects the browser, or the page it showed instead.
pub async fn consent_in(org: &Emulator, consent_url: &str, allow: bool) -> Consent {
    let browser = org_browser(org);
    let page = browser
        .get(consent_url)
        .send()
        .await
        .expect("authorize page");
    let mut html = page.text().await.expect("authorize html");
    if html.contains("id=\"login_form\"") {
        let start = hidden_input(&html, "startURL").unwrap_or_default();
        let login = browser
            .post(format!("{}/login", org.base_url()))
            .form(&[
                ("username", ADMIN_USER),
                ("password", ADMIN_PASSWORD),
                ("startURL", start.as_str()),
            ])
            .send()
            .await
            .expect("login");
        html = follow(&browser, &org.base_url(), login).await;
    }
    let Some(pending) = hidden_input(&html, "pending") else {
        return Consent::Page(html);
    };
    let answer = browser
        .post(format!(
            "{}/services/oauth2/authorize/consent",
            org.base_url()
        ))
        .form(&[
            ("pending", pending.as_str()),
            ("action", if allow { "allow" } else { "deny" }),
        ])
        .send()
        .await
        .expect("consent");
    match answer
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
    {
        Some(location) => Consent::Redirect(location.to_string()),
        None => Consent::Page(answer.text().await.unwrap_or_default()),
    }
}

/// The administrator's browser following a CRM's redirect to the PBX's
/// callback: (HTTP status, the page).
pub async fn follow_callback(location: &str) -> (u16, String) {
    let response = reqwest::get(location).await.expect("the callback answers");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// Run a user sync of `plugin` to its end through the host's job; the
/// final job.
pub async fn sync_job(api: &AdminClient, plugin: &str) -> Value {
    let path = format!("/crm/{plugin}/users/sync");
    let mut job = api.post(&path, &json!({})).await.expect("the sync starts");
    // The job runs in the background; poll it like the portal does.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while job["running"].as_bool() == Some(true) {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync never ended: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        job = api.get(&path).await.expect("sync progress");
    }
    job
}

/// Where the administrator's browser ended up.
#[derive(Debug)]
pub enum Consent {
    /// A redirect to this URL.
    Redirect(String),
    /// A page without a redirect (an error page of the org).
    Page(String),
}

/// The host's Callback URL.
pub fn callback_url(host: &RunningHost) -> String {
    format!("{}/crm/salesforce/oauth/callback", host.url())
}

async fn follow(browser: &reqwest::Client, base: &str, mut response: reqwest::Response) -> String {
    for _ in 0..5 {
        let Some(location) = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
        else {
            break;
        };
        let next = if location.starts_with("http") {
            location.to_string()
        } else {
            format!("{base}{location}")
        };
        response = browser.get(next).send().await.expect("follow");
    }
    response.text().await.unwrap_or_default()
}

/// The value of `<input type="hidden" name="NAME" value="...">`.
pub fn hidden_input(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let tag_start = html[..at].rfind('<')?;
    let tag_end = at + html[at..].find('>')?;
    let tag = &html[tag_start..tag_end];
    let value = tag.split("value=\"").nth(1)?;
    let value = &value[..value.find('"')?];
    Some(
        value
            .replace("&amp;", "&")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">"),
    )
}

/// Add an extension through the admin API (the number must be new).
pub async fn add_extension(world: &World, number: &str, email: Option<&str>) {
    world
        .api
        .post(
            "/extensions",
            &json!({"number": number, "name": format!("Ext {number}"), "email": email}),
        )
        .await
        .expect("extension saved");
}

/// The org user's id by username.
pub fn user_id(world: &World, username: &str) -> String {
    user_id_in(&world.org, username)
}

/// The id of `org`'s user `username`.
pub fn user_id_in(org: &Emulator, username: &str) -> String {
    org.users()
        .iter()
        .find(|u| u["Username"] == username)
        .and_then(|u| u["Id"].as_str())
        .unwrap_or_else(|| panic!("no org user {username}"))
        .to_string()
}

/// Save associations `(username, extension)` (replacing all others).
pub async fn associate(world: &World, pairs: &[(&str, &str)]) {
    let list = world.api.get("/crm/salesforce/users").await.expect("users");
    let associations: Vec<Value> = pairs
        .iter()
        .map(|(username, extension)| {
            json!({"user_id": user_id(world, username), "extension": extension})
        })
        .collect();
    world
        .api
        .put(
            "/crm/salesforce/associations",
            &json!({"version": list["version"], "associations": associations}),
        )
        .await
        .expect("associations saved");
}

/// A world ready for calls: connected, users synced, extensions 1001
/// (associated with admin@example.org), 1002 (user1@example.org) and 1003
/// (nobody).
pub async fn calls_world(setup: Setup) -> World {
    let world = World::start(setup).await;
    world.connect().await;
    for x in ["1001", "1002", "1003"] {
        add_extension(&world, x, None).await;
    }
    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    associate(
        &world,
        &[("admin@example.org", "1001"), ("user1@example.org", "1002")],
    )
    .await;
    world
}

/// A call event as the PBX sends it (`POST /api/calls/events`).
pub fn call_event(
    call_id: &str,
    phase: &str,
    number: &str,
    extension: &str,
    started_at_ms: u64,
) -> Value {
    let mut event = json!({
        "call_id": call_id,
        "phase": phase,
        "direction": "inbound",
        "external_number": number,
        "extension": extension,
        "started_at_ms": started_at_ms,
    });
    if phase != "ringing" {
        event["answered_at_ms"] = json!(started_at_ms + 3_000);
    }
    if phase == "ended" {
        event["ended_at_ms"] = json!(started_at_ms + 63_000);
        event["disposition"] = json!("answered");
    }
    event
}

/// Send one call event; (HTTP status, body).
pub async fn send_event(base_url: &str, token: &str, event: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{base_url}/api/calls/events"))
        .bearer_auth(token)
        .json(event)
        .send()
        .await
        .expect("the host answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Send ringing, answered and ended of one call; the last answer.
pub async fn send_call(world: &World, call_id: &str, number: &str, extension: &str, at: u64) {
    for phase in ["ringing", "answered", "ended"] {
        let (status, body) = send_event(
            &world.host.url(),
            &world.host.admin_token,
            &call_event(call_id, phase, number, extension, at),
        )
        .await;
        assert!(status < 500, "{phase} of {call_id}: {status} {body}");
    }
}

/// Let the plugins deliver what waits until nothing does (or `within`
/// passes); the last report of `POST /api/calls/run-pending`.
pub async fn drain(api: &AdminClient, within: std::time::Duration) -> Value {
    let deadline = std::time::Instant::now() + within;
    loop {
        let report = api
            .post("/calls/run-pending", &json!({}))
            .await
            .expect("run-pending");
        let idle = report["plugins"].as_array().is_some_and(|ps| {
            ps.iter().all(|p| {
                p["pending_call_logs"].as_u64() == Some(0)
                    && p["queued_call_events"].as_u64() == Some(0)
            })
        });
        if idle || std::time::Instant::now() > deadline {
            return report;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The org's Tasks logging call `call_id`.
pub fn tasks_of(world: &World, call_id: &str) -> Vec<Value> {
    world
        .org
        .tasks()
        .into_iter()
        .filter(|t| t["CallObject"] == call_id)
        .collect()
}
