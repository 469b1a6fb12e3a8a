//! The HubSpot side of `cargo xtask demo`: the emulated HubSpot account
//! beside the Salesforce org, seeded with the same staff as owners (the
//! same e-mail addresses, so Associate Automatically matches the same
//! extensions and the same one is left for the manual step) and the same
//! caller as a contact; its headless set-up through the host's CLI; and the
//! check that the demo call was logged there as a Call of the contact.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::{
    Api, DEMO_CALLER, EXTENSIONS, Pbx, absolute, check_proposal, hidden_input, https_client, indent,
};
use crate::bin;

/// The HubSpot plugin's id.
pub const PLUGIN: &str = "hubspot";
/// The demo app's client id (the one the administrator pastes).
pub const CLIENT_ID: &str = "pbx-demo-hubspot-app";
/// Who logs in on the emulated install page.
pub const LOGIN: (&str, &str) = ("admin@example.com", "emulator");
/// A second app, the headless check's own, to read the account's calls
/// back (the emulator has no back door; it is read as any client would).
const CHECK_APP: &str = "pbx-demo-check";
const CHECK_REDIRECT: &str = "https://127.0.0.1/pbx-demo-check";
/// The caller as the account stores the contact's phone (E.164).
const CALLER_PHONE: &str = "+12125550101";

/// `hubspot-emulator` with the demo's apps, owners and contact.
pub fn emulator_command(
    ca: &Path,
    client_secret: &str,
    callback_url: &str,
    check_secret: &str,
) -> Command {
    let mut cmd = Command::new(bin("hubspot-emulator"));
    cmd.args(["--listen", "127.0.0.1:0", "--ca-cert-out"])
        .arg(ca)
        .arg("--app")
        .arg(format!("{CLIENT_ID}:{client_secret}:{callback_url}"))
        .arg("--app")
        .arg(format!("{CHECK_APP}:{check_secret}:{CHECK_REDIRECT}"));
    for e in EXTENSIONS {
        let email = e.by_hand_with.unwrap_or(e.email);
        let (first, last) = e.name.split_once(' ').unwrap_or((e.name, "-"));
        cmd.arg("--owner").arg(format!("{email}:{first}:{last}"));
    }
    let (first, last) = DEMO_CALLER
        .2
        .split_once(' ')
        .unwrap_or((DEMO_CALLER.2, "-"));
    cmd.arg("--contact")
        .arg(format!("{first}:{last}:{CALLER_PHONE}"));
    cmd
}

/// The plugin's settings by kind, from its own description: (the client
/// id's key, the secret's key, the keys of its URL settings: the API's and
/// the install page's base, one address in the emulator).
pub fn setting_keys(api: &Api) -> anyhow::Result<(String, String, Vec<String>)> {
    let info = api.get(&format!("/crm/{PLUGIN}/describe"))?;
    let fields = info["settings"].as_array().cloned().unwrap_or_default();
    // The API names kinds as the contract's enum (`Text`, `Secret`, `Url`).
    let kind = |f: &Value| f["kind"].as_str().unwrap_or_default().to_lowercase();
    let key_of = |wanted: &dyn Fn(&Value) -> bool, what: &str| {
        fields
            .iter()
            .find(|f| wanted(f))
            .and_then(|f| f["key"].as_str())
            .map(str::to_string)
            .with_context(|| format!("the HubSpot plugin describes no {what} setting: {info}"))
    };
    let id = key_of(
        &|f| {
            kind(f) == "text"
                && format!("{} {}", f["key"], f["label"])
                    .to_lowercase()
                    .contains("client")
        },
        "client id",
    )?;
    let secret = key_of(&|f| kind(f) == "secret", "secret")?;
    let urls: Vec<String> = fields
        .iter()
        .filter(|f| kind(f) == "url")
        .filter_map(|f| f["key"].as_str().map(str::to_string))
        .collect();
    if urls.is_empty() {
        bail!("the HubSpot plugin describes no URL setting: {info}");
    }
    Ok((id, secret, urls))
}

/// What the headless set-up needs of the account.
pub struct Headless<'a> {
    pub ca: &'a Path,
    pub url: &'a str,
    pub client_secret: &'a str,
    pub check_secret: &'a str,
}

/// The administrator's HubSpot set-up through the host's CLI, and its
/// checks: connected, owners synced, the proposal as the story says, every
/// extension with its owner.
pub fn headless_setup(pbx: &Pbx<'_>, api: &Api, demo: &Headless<'_>) -> anyhow::Result<()> {
    let pbx = |args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["crm", "--plugin", PLUGIN];
        all.extend_from_slice(args);
        pbx.run(&all, stdin)
    };
    let step = |n: u32, text: &str| println!("\n== HubSpot step {n}: {text}");

    step(
        1,
        "the HubSpot page's Callback URL is the app's redirect URL (the emulated account has it)",
    );
    println!("   Callback URL: {}", pbx(&["callback-url"], None)?);

    step(
        2,
        "paste the client id and secret, Save, and connect on HubSpot's install page",
    );
    let (id_key, secret_key, _) = setting_keys(api)?;
    println!(
        "{}",
        indent(&pbx(
            &[
                "configure",
                &format!("--{id_key}"),
                CLIENT_ID,
                &format!("--{secret_key}-stdin"),
            ],
            Some(demo.client_secret),
        )?)
    );
    let install_url = pbx(&["authorize", "--no-browser"], None)?;
    let install_url = install_url
        .lines()
        .find_map(|l| l.split_whitespace().find(|w| w.starts_with("https://")))
        .context("`crm --plugin hubspot authorize --no-browser` printed no URL")?
        .to_string();
    println!(
        "   HubSpot's install page: {}",
        install_url.split('?').next().unwrap_or_default()
    );
    let browser = https_client(demo.ca, true)?;
    let location = install(&browser, demo.url, &install_url)?;
    println!(
        "   logged in to HubSpot as {} and connected the app",
        LOGIN.0
    );
    let page = browser.get(&location).send()?.text()?;
    let title = page
        .split("<h1 id=\"result\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap_or("?");
    println!("   the callback page says: {title}");

    step(3, "the status");
    println!("{}", indent(&pbx(&["status"], None)?));
    let status = api.get(&format!("/crm/{PLUGIN}/status"))?;
    if status["state"] != "Connected" {
        bail!("HubSpot is not Connected after the install: {status}");
    }

    step(
        4,
        "sync the HubSpot owners, Associate Automatically, and the last one by hand",
    );
    println!("{}", indent(&pbx(&["users", "sync"], None)?));
    let users = api.get(&format!("/crm/{PLUGIN}/users"))?;
    let email_of = users["entries"]
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
    let proposal = api.get(&format!("/crm/{PLUGIN}/associations/proposal"))?;
    check_proposal(&proposal, &email_of)?;
    println!("{}", indent(&pbx(&["associate", "--auto", "--yes"], None)?));
    for e in EXTENSIONS {
        if let Some(user) = e.by_hand_with {
            println!("{}", indent(&pbx(&["associate", user, e.number], None)?));
        }
    }
    for e in EXTENSIONS {
        let user = api.get(&format!(
            "/crm/{PLUGIN}/associations/extension/{}",
            e.number
        ))?;
        let email = user["user"]["email"].as_str().unwrap_or_default();
        let want = e.by_hand_with.unwrap_or(e.email);
        if !email.eq_ignore_ascii_case(want) {
            bail!(
                "HubSpot: extension {} is associated with {:?}, not {want}",
                e.number,
                user["user"]
            );
        }
    }
    println!("   every extension has its HubSpot owner");
    Ok(())
}

/// The install page: log in and connect; answers where HubSpot sends the
/// browser (the callback with its code).
fn install(
    browser: &reqwest::blocking::Client,
    base: &str,
    install_url: &str,
) -> anyhow::Result<String> {
    let page = browser.get(install_url).send()?.text()?;
    let field = |name: &str| hidden_input(&page, name).unwrap_or_default();
    if field("client_id").is_empty() {
        bail!("HubSpot showed no install form: {page}");
    }
    let answer = browser
        .post(format!("{base}/oauth/authorize"))
        .form(&[
            ("client_id", field("client_id")),
            ("redirect_uri", field("redirect_uri")),
            ("scope", field("scope")),
            ("optional_scope", field("optional_scope")),
            ("state", field("state")),
            ("email", LOGIN.0.to_string()),
            ("password", LOGIN.1.to_string()),
            ("action", "authorize".to_string()),
        ])
        .send()?;
    let location = answer
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .map(|l| absolute(base, l))
        .context("HubSpot did not redirect after the install")?;
    Ok(location)
}

/// The demo call (rung on the Salesforce side's step) is in HubSpot as one
/// Call of the caller's contact: read back with the check's own app,
/// letting the host deliver what waits, within a bound.
pub fn check_call_logged(api: &Api, demo: &Headless<'_>) -> anyhow::Result<()> {
    let browser = https_client(demo.ca, true)?;
    let scope = "crm.objects.contacts.read";
    let query: String = url_query(&[
        ("client_id", CHECK_APP),
        ("redirect_uri", CHECK_REDIRECT),
        ("scope", scope),
    ]);
    let location = install(
        &browser,
        demo.url,
        &format!("{}/oauth/authorize?{query}", demo.url),
    )?;
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .context("no code in HubSpot's redirect")?
        .to_string();
    let token: Value = browser
        .post(format!("{}/oauth/v1/token", demo.url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", CHECK_APP),
            ("client_secret", demo.check_secret),
            ("redirect_uri", CHECK_REDIRECT),
            ("code", code.as_str()),
        ])
        .send()?
        .error_for_status()?
        .json()?;
    let access = token["access_token"]
        .as_str()
        .context("no access token for the check")?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        api.post("/calls/run-pending", &json!({}))?;
        let get = |path: &str| -> anyhow::Result<Value> {
            Ok(browser
                .get(format!("{}{path}", demo.url))
                .bearer_auth(&access)
                .send()?
                .error_for_status()?
                .json()?)
        };
        let calls = get("/crm/v3/objects/calls?properties=hs_call_title,hubspot_owner_id")?;
        let results = calls["results"].as_array().cloned().unwrap_or_default();
        if results.len() > 1 {
            bail!("HubSpot has {} Calls for one call: {calls}", results.len());
        }
        // Its contacts: read by id (a list leaves associations out).
        let call = match results.first().and_then(|c| c["id"].as_str()) {
            Some(id) => Some(get(&format!(
                "/crm/v3/objects/calls/{id}?associations=contacts&properties=hs_call_title"
            ))?),
            None => None,
        };
        let with_contact = call.filter(|c| {
            c["associations"]["contacts"]["results"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        });
        match with_contact {
            Some(call) => {
                println!(
                    "   HubSpot has the call as a Call of {}: {}",
                    DEMO_CALLER.2,
                    call["properties"]["hs_call_title"]
                        .as_str()
                        .unwrap_or("(untitled)")
                );
                return Ok(());
            }
            None if Instant::now() > deadline => {
                bail!(
                    "HubSpot has no Call of {} within 30 s: {calls}",
                    DEMO_CALLER.2
                )
            }
            None => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

fn url_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let v: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join("&")
}
