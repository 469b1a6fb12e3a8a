//! Helpers shared by the HTTP-level tests.
#![allow(dead_code)]

use hubspot_emulator::{App, DEFAULT_SCOPES, Emulator, EmulatorConfig};
use reqwest::redirect::Policy;
use serde_json::Value;

pub const CLIENT_ID: &str = "test-client-id";
pub const SECRET: &str = "test-client-secret";
pub const REDIRECT: &str = "https://pbx.example.com/oauth/hubspot/callback";
pub const EMAIL: &str = "admin@example.com";
pub const PASSWORD: &str = "emulator";

pub async fn start(config: EmulatorConfig) -> (Emulator, reqwest::Client) {
    let mut config = config;
    if config.apps.is_empty() {
        let mut app = App::new(CLIENT_ID, SECRET, REDIRECT);
        app.optional_scopes = vec!["crm.objects.companies.write".into(), "timeline".into()];
        app.scopes.retain(|s| s != "crm.objects.companies.write");
        config.apps.push(app);
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

/// The value of an `<input name=... value=...>` in a page.
pub fn form_field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')? + start;
    Some(
        html[start..end]
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

pub fn authorize_url(base: &str, scope: &str, optional: Option<&str>, state: &str) -> String {
    let mut u = url::Url::parse(&format!("{base}/oauth/authorize")).expect("url");
    u.query_pairs_mut()
        .append_pair("client_id", CLIENT_ID)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("scope", scope)
        .append_pair("state", state);
    if let Some(o) = optional {
        u.query_pairs_mut().append_pair("optional_scope", o);
    }
    u.to_string()
}

pub const SCOPE: &str =
    "oauth crm.objects.contacts.read crm.objects.contacts.write crm.objects.owners.read";

/// Opens the install page, logs in and clicks Connect: answers the
/// redirect's URL.
pub async fn consent(
    emu: &Emulator,
    client: &reqwest::Client,
    authorize: &str,
    password: &str,
) -> reqwest::Response {
    let page = client.get(authorize).send().await.expect("GET authorize");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("name=\"password\""), "{html}");
    let mut form: Vec<(String, String)> = [
        "client_id",
        "redirect_uri",
        "scope",
        "optional_scope",
        "state",
    ]
    .iter()
    .map(|k| (k.to_string(), form_field(&html, k).unwrap_or_default()))
    .collect();
    form.push(("email".into(), EMAIL.into()));
    form.push(("password".into(), password.into()));
    client
        .post(format!("{}/oauth/authorize", emu.base_url()))
        .form(&form)
        .send()
        .await
        .expect("POST authorize")
}

/// Runs the install flow; answers the code (and checks the state).
pub async fn get_code(emu: &Emulator, client: &reqwest::Client) -> String {
    let resp = consent(
        emu,
        client,
        &authorize_url(&emu.base_url(), SCOPE, None, "st-1"),
        PASSWORD,
    )
    .await;
    assert_eq!(resp.status(), 302);
    let loc = url::Url::parse(resp.headers()["location"].to_str().expect("ascii")).expect("url");
    assert!(loc.as_str().starts_with(REDIRECT), "{loc}");
    let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
    q.get("code").cloned().expect("code")
}

pub async fn token(
    emu: &Emulator,
    client: &reqwest::Client,
    form: &[(&str, &str)],
) -> (u16, Value) {
    let resp = client
        .post(format!("{}/oauth/v1/token", emu.base_url()))
        .form(form)
        .send()
        .await
        .expect("POST token");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn code_grant(emu: &Emulator, client: &reqwest::Client, code: &str) -> (u16, Value) {
    token(
        emu,
        client,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("redirect_uri", REDIRECT),
            ("code", code),
        ],
    )
    .await
}

pub async fn refresh_grant(
    emu: &Emulator,
    client: &reqwest::Client,
    refresh_token: &str,
) -> (u16, Value) {
    token(
        emu,
        client,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", SECRET),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// An access token with every default scope, without the browser flow.
pub fn access_token(emu: &Emulator) -> String {
    emu.issue_token(CLIENT_ID, EMAIL, Some(DEFAULT_SCOPES))
        .expect("token")
        .access_token
}

pub async fn get(
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
        .expect("GET")
}

pub async fn post(
    emu: &Emulator,
    client: &reqwest::Client,
    token: &str,
    path: &str,
    body: &Value,
) -> reqwest::Response {
    client
        .post(format!("{}{path}", emu.base_url()))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("POST")
}

pub async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

pub async fn get_json(
    emu: &Emulator,
    client: &reqwest::Client,
    token: &str,
    path: &str,
) -> (u16, Value) {
    json_of(get(emu, client, token, path).await).await
}

pub async fn post_json(
    emu: &Emulator,
    client: &reqwest::Client,
    token: &str,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    json_of(post(emu, client, token, path, body).await).await
}
