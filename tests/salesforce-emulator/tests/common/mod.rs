//! Helpers shared by the HTTP-level tests.
#![allow(dead_code)]

use reqwest::redirect::Policy;
use salesforce_emulator::{ConnectedApp, Emulator, EmulatorConfig, pkce_challenge};
use serde_json::Value;

pub const KEY: &str = "test-key";
pub const SECRET: &str = "test-secret";
pub const CALLBACK: &str = "https://pbx.example.com/oauth/callback";
pub const VERIFIER: &str = "a-long-enough-code-verifier-0123456789-abcdefghijklmnop";

pub async fn start(config: EmulatorConfig) -> (Emulator, reqwest::Client) {
    let mut config = config;
    if config.apps.is_empty() {
        config.apps.push(ConnectedApp::new(KEY, SECRET, CALLBACK));
    }
    let emu = Emulator::start(config).await.expect("emulator starts");
    let client = client_for(&emu);
    (emu, client)
}

pub fn client_for(emu: &Emulator) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(emu.ca_cert_pem().as_bytes()).expect("CA");
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .redirect(Policy::none())
        .build()
        .expect("client")
}

/// A browser-like session: keeps the `sid` cookie.
pub struct Browser {
    pub client: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
}

pub fn form_field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&amp;", "&")
            .replace("&quot;", "\""),
    )
}

impl Browser {
    pub fn new(emu: &Emulator, client: &reqwest::Client) -> Browser {
        Browser {
            client: client.clone(),
            base: emu.base_url(),
            cookie: None,
        }
    }

    pub async fn get(&mut self, url: &str) -> reqwest::Response {
        let url = if url.starts_with('/') {
            format!("{}{url}", self.base)
        } else {
            url.to_string()
        };
        let mut rb = self.client.get(url);
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", c);
        }
        rb.send().await.expect("GET")
    }

    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut rb = self.client.post(format!("{}{path}", self.base)).form(form);
        if let Some(c) = &self.cookie {
            rb = rb.header("cookie", c);
        }
        let resp = rb.send().await.expect("POST");
        if let Some(sc) = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
        {
            self.cookie = sc.split(';').next().map(str::to_string);
        }
        resp
    }

    /// Logs in through the authorize URL's login form; answers the
    /// consent page's HTML.
    pub async fn login_and_get_consent(
        &mut self,
        authorize_url: &str,
        user: &str,
        password: &str,
    ) -> String {
        let page = self.get(authorize_url).await;
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("name=\"password\""), "{html}");
        let start = form_field(&html, "startURL").expect("startURL");
        let resp = self
            .post_form(
                "/login",
                &[
                    ("username", user),
                    ("password", password),
                    ("startURL", &start),
                ],
            )
            .await;
        assert_eq!(resp.status(), 302, "login accepted");
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let consent = self.get(&loc).await;
        assert_eq!(consent.status(), 200);
        consent.text().await.unwrap()
    }

    /// Clicks Allow or Deny; answers the callback redirect URL.
    pub async fn answer_consent(&mut self, consent_html: &str, action: &str) -> url::Url {
        let pending = form_field(consent_html, "pending").expect("pending");
        let resp = self
            .post_form(
                "/services/oauth2/authorize/consent",
                &[("pending", &pending), ("action", action)],
            )
            .await;
        assert_eq!(resp.status(), 302);
        url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap()
    }
}

pub fn authorize_url(state: &str, challenge: Option<&str>) -> String {
    let mut u = url::Url::parse("https://x/services/oauth2/authorize").unwrap();
    u.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", KEY)
        .append_pair("redirect_uri", CALLBACK)
        .append_pair("scope", "api refresh_token")
        .append_pair("state", state);
    if let Some(c) = challenge {
        u.query_pairs_mut()
            .append_pair("code_challenge", c)
            .append_pair("code_challenge_method", "S256");
    }
    format!("{}?{}", u.path(), u.query().unwrap())
}

/// Runs the whole flow with PKCE; answers the authorization code.
pub async fn get_code(emu: &Emulator, client: &reqwest::Client) -> String {
    let mut b = Browser::new(emu, client);
    let html = b
        .login_and_get_consent(
            &authorize_url("st", Some(&pkce_challenge(VERIFIER))),
            "admin@example.org",
            "emulator",
        )
        .await;
    let cb = b.answer_consent(&html, "allow").await;
    cb.query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code")
}

pub async fn exchange(
    emu: &Emulator,
    client: &reqwest::Client,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let resp = client
        .post(format!("{}/services/oauth2/token", emu.base_url()))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn code_grant(emu: &Emulator, client: &reqwest::Client, code: &str) -> (u16, Value) {
    exchange(
        emu,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", KEY),
            ("client_secret", SECRET),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ],
    )
    .await
}

pub async fn api_get(
    emu: &Emulator,
    client: &reqwest::Client,
    token: &str,
    path: &str,
) -> reqwest::Response {
    client
        .get(format!("{}{path}", emu.base_url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}
