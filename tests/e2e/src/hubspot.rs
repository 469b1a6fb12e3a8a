//! A HubSpot account (the emulator) wired to a PBX host the way an
//! administrator would: the app's redirect URL is the host's Callback URL,
//! the host trusts the account's CA and grants the HubSpot plugin its
//! address. [`Hub`] is the account and the administrator's steps against
//! any host's admin API, so a host can run it beside the Salesforce
//! [`crate::org::World`]; [`HubSpotWorld`] is a host of its own with the
//! HubSpot plugin.
//!
//! The steps go through the same host code as Salesforce's: the plugin's
//! settings come from its own description (`GET /crm/hubspot/describe`),
//! not from keys this file knows.

use std::path::PathBuf;

use hubspot_emulator::{App, Emulator, EmulatorConfig};
use pbx_host::cli::AdminClient;
use pbx_host::server::RunningHost;
use serde_json::{Value, json};

use crate::org::{Consent, hidden_input};
use crate::{Options, admin, install, start_host};

/// The HubSpot plugin's id.
pub const PLUGIN: &str = "hubspot";
/// The test app's client id.
pub const CLIENT_ID: &str = "pbx-test-client-0c5e2a";
/// The test app's client secret (searched for in leak checks).
pub const CLIENT_SECRET: &str = "HubSpotTestSecret-6d4c2b1a09f8";
/// The account's administrator (also an owner).
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// Its password.
pub const ADMIN_PASSWORD: &str = "emulator";

/// An emulated HubSpot account and its CA file.
pub struct Hub {
    /// The account.
    pub emulator: Emulator,
    /// The account's CA certificate, as a file the host trusts.
    pub ca_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Hub {
    /// Start the account (its administrator is its only user and owner).
    pub async fn start() -> Hub {
        let emulator = Emulator::start(EmulatorConfig::default())
            .await
            .expect("the HubSpot emulator starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_path = dir.path().join("hubspot-ca.pem");
        std::fs::write(&ca_path, emulator.ca_cert_pem()).expect("write the CA");
        Hub {
            emulator,
            ca_path,
            _dir: dir,
        }
    }

    /// `options` with the HubSpot plugin's grant and the account's CA.
    pub fn options(&self, mut options: Options) -> Options {
        options
            .grants
            .push(format!("{PLUGIN}={}", self.emulator.base_url()));
        options.trust_ca.push(self.ca_path.clone());
        options
    }

    /// Install the HubSpot plugin on `host` and register the app with the
    /// host's Callback URL.
    pub async fn install_on(&self, host: &RunningHost, api: &AdminClient) {
        let installed = install(api, "hubspot_plugin")
            .await
            .expect("the HubSpot plugin installs");
        assert_eq!(installed["manifest"]["id"], PLUGIN, "{installed}");
        self.emulator
            .add_app(App::new(CLIENT_ID, CLIENT_SECRET, callback_url(host)));
    }

    /// Save the client id, the secret and the account's address, from the
    /// plugin's own description: the secret setting takes the secret, URL
    /// settings the emulator's base URL (API and install page both), the
    /// text setting naming the client the id.
    pub async fn configure(
        &self,
        api: &AdminClient,
        id: &str,
        secret: &str,
    ) -> Result<Value, String> {
        let info = api
            .get(&format!("/crm/{PLUGIN}/describe"))
            .await
            .map_err(|e| format!("{e:#}"))?;
        let fields = info["settings"].as_array().cloned().unwrap_or_default();
        let mut settings = Vec::new();
        for field in &fields {
            let key = field["key"].as_str().unwrap_or_default();
            let text =
                format!("{key} {}", field["label"].as_str().unwrap_or_default()).to_lowercase();
            // The API names kinds as the contract's enum (`Text`, `Secret`, `Url`).
            let kind = field["kind"].as_str().unwrap_or_default().to_lowercase();
            let value = match kind.as_str() {
                "secret" => Some(secret.to_string()),
                "url" => Some(self.emulator.base_url()),
                "text" if text.contains("client") => Some(id.to_string()),
                _ => None,
            };
            if let Some(value) = value {
                settings.push(json!({"key": key, "value": value}));
            }
        }
        assert!(
            settings.len() >= 3,
            "the plugin describes no client id, secret and URL settings: {info}"
        );
        api.put(
            &format!("/crm/{PLUGIN}/settings"),
            &json!({ "settings": settings }),
        )
        .await
        .map_err(|e| format!("{e:#}"))
    }

    /// Begin an authorization; the install page's URL.
    pub async fn authorize(&self, api: &AdminClient) -> Result<String, String> {
        api.post(&format!("/crm/{PLUGIN}/authorize"), &json!({}))
            .await
            .map(|v| v["url"].as_str().unwrap_or_default().to_string())
            .map_err(|e| format!("{e:#}"))
    }

    /// The administrator in a browser: the install page, log in and
    /// connect the app. Where HubSpot redirects the browser (the callback
    /// URL with its query), or the page it showed instead.
    pub async fn install_page(&self, url: &str, email: &str, password: &str) -> Consent {
        let browser = self.browser();
        let page = browser.get(url).send().await.expect("install page");
        let html = page.text().await.expect("install page html");
        if !html.contains("id=\"authorize\"") {
            return Consent::Page(html);
        }
        let field = |name: &str| hidden_input(&html, name).unwrap_or_default();
        let answer = browser
            .post(format!("{}/oauth/authorize", self.emulator.base_url()))
            .form(&[
                ("client_id", field("client_id")),
                ("redirect_uri", field("redirect_uri")),
                ("scope", field("scope")),
                ("optional_scope", field("optional_scope")),
                ("state", field("state")),
                ("email", email.to_string()),
                ("password", password.to_string()),
                ("action", "authorize".to_string()),
            ])
            .send()
            .await
            .expect("the install form answers");
        match answer
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
        {
            Some(location) => Consent::Redirect(location.to_string()),
            None => Consent::Page(answer.text().await.unwrap_or_default()),
        }
    }

    /// Configure, authorize, log in on the install page and follow the
    /// callback: the status, connected.
    pub async fn connect(&self, api: &AdminClient) -> Value {
        self.configure(api, CLIENT_ID, CLIENT_SECRET)
            .await
            .expect("settings save");
        let url = self.authorize(api).await.expect("authorization starts");
        let Consent::Redirect(location) =
            self.install_page(&url, ADMIN_EMAIL, ADMIN_PASSWORD).await
        else {
            panic!("HubSpot did not redirect after the install");
        };
        let (status, page) = crate::org::follow_callback(&location).await;
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("Authorization succeeded!"), "{page}");
        let status = self.status(api).await;
        assert_eq!(status["state"], "Connected", "{status}");
        status
    }

    /// The integration's status.
    pub async fn status(&self, api: &AdminClient) -> Value {
        api.get(&format!("/crm/{PLUGIN}/status"))
            .await
            .expect("status")
    }

    /// Run a user sync to its end through the host's job; the final job.
    pub async fn sync_users(&self, api: &AdminClient) -> Value {
        crate::org::sync_job(api, PLUGIN).await
    }

    /// The owner id of `email`.
    pub fn owner_id(&self, email: &str) -> String {
        self.emulator
            .owners()
            .iter()
            .find(|o| o["email"] == email)
            .and_then(|o| o["id"].as_str())
            .unwrap_or_else(|| panic!("no owner {email}"))
            .to_string()
    }

    /// Save associations `(owner e-mail, extension)` (replacing all others).
    pub async fn associate(&self, api: &AdminClient, pairs: &[(&str, &str)]) -> Value {
        let list = api
            .get(&format!("/crm/{PLUGIN}/users"))
            .await
            .expect("users");
        let associations: Vec<Value> = pairs
            .iter()
            .map(|(email, extension)| {
                json!({"user_id": self.owner_id(email), "extension": extension})
            })
            .collect();
        api.put(
            &format!("/crm/{PLUGIN}/associations"),
            &json!({"version": list["version"], "associations": associations}),
        )
        .await
        .expect("associations saved")
    }

    /// The calls (engagements) associated with a contact, with all their
    /// properties.
    pub fn calls_of_contact(&self, contact_id: &str) -> Vec<Value> {
        let ids: Vec<String> = self
            .emulator
            .associations_of("contacts", contact_id, "calls")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        self.emulator
            .calls()
            .into_iter()
            .filter(|c| {
                c["id"]
                    .as_str()
                    .is_some_and(|id| ids.iter().any(|i| i == id))
            })
            .collect()
    }

    /// A browser-like client: cookies, no automatic redirects, the
    /// account's CA.
    pub fn browser(&self) -> reqwest::Client {
        let ca =
            reqwest::Certificate::from_pem(self.emulator.ca_cert_pem().as_bytes()).expect("CA");
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(ca)
            .build()
            .expect("client")
    }
}

/// A HubSpot account and a host of its own with the HubSpot plugin.
pub struct HubSpotWorld {
    /// The account.
    pub hub: Hub,
    /// The PBX host.
    pub host: RunningHost,
    /// Its admin API.
    pub api: AdminClient,
    /// The host's data directory (inside `dir`).
    pub data_dir: PathBuf,
    /// Temp files of the test.
    pub dir: tempfile::TempDir,
}

impl HubSpotWorld {
    /// Start the account and the host, install the plugin, register the app.
    pub async fn start(options: Options) -> HubSpotWorld {
        let hub = Hub::start().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("pbx");
        let host = start_host(&data_dir, hub.options(options)).await;
        let api = admin(&host);
        hub.install_on(&host, &api).await;
        HubSpotWorld {
            hub,
            host,
            api,
            data_dir,
            dir,
        }
    }
}

/// The host's Callback URL for the HubSpot plugin.
pub fn callback_url(host: &RunningHost) -> String {
    format!("{}/crm/{PLUGIN}/oauth/callback", host.url())
}

/// A connected account ready for call load (the calls bench): extension
/// 1001 associated with the administrator's owner, a contact with the
/// number `caller`, and HubSpot's request limits lifted, so the figures
/// are the host's and the plugin's, not the emulated rate limit's.
pub async fn calls_world(caller: &str) -> HubSpotWorld {
    let world = HubSpotWorld::start(Options::default()).await;
    world.hub.emulator.set_rate_limit(u32::MAX);
    world.hub.emulator.set_search_rate_limit(None);
    world.hub.connect(&world.api).await;
    world
        .api
        .post(
            "/extensions",
            &json!({"number": "1001", "name": "Ext 1001", "email": ADMIN_EMAIL}),
        )
        .await
        .expect("extension saved");
    let job = world.hub.sync_users(&world.api).await;
    assert_eq!(job["ok"], true, "{job}");
    world
        .hub
        .associate(&world.api, &[(ADMIN_EMAIL, "1001")])
        .await;
    world
        .hub
        .emulator
        .insert(
            "contacts",
            &[
                ("firstname", "Bench"),
                ("lastname", "Caller"),
                ("phone", caller),
            ],
        )
        .expect("contact");
    world
}
