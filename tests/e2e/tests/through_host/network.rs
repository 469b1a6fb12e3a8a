//! The Homepage URL through the real host: set by the administrator (admin
//! API and CLI), refused when it is not an origin (nothing changes), warned
//! about when a CRM would object, kept across a restart, and the one place
//! every Callback URL is composed from (the OAuth callback included). And
//! the README's `serve` example grants every host the plugin requests.

use e2e_tests::org::{CONSUMER_KEY, CONSUMER_SECRET, Consent, Setup, World};
use pbx_host::outbound::HostPattern;
use reqwest::Method;
use serde_json::{Value, json};

fn warnings(view: &Value) -> Vec<String> {
    view["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_string))
        .collect()
}

async fn callback(world: &World) -> String {
    world
        .api
        .get("/crm/salesforce/callback-url")
        .await
        .expect("callback url")["callback_url"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_sets_the_homepage_url_and_callback_urls_follow() {
    let world = World::start(Setup::default()).await;
    let base = world.host.url();

    // Before anything is set, --public-url (here: where the host listens)
    // stands in, with the loopback warning.
    let view = world.api.get("/network").await.expect("network");
    assert_eq!(view["homepage_url"], base.as_str(), "{view}");
    assert_eq!(view["source"], "public-url");
    let said = warnings(&view);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("127.0.0.1 is this machine"), "{said:?}");

    // A domain over https: no warning; the Callback URL follows.
    let view = world
        .api
        .put(
            "/network",
            &json!({"homepage_url": "https://pbx.example.com/"}),
        )
        .await
        .expect("set");
    assert_eq!(view["homepage_url"], "https://pbx.example.com");
    assert_eq!(view["source"], "administrator");
    assert_eq!(view["public_url"], base.as_str());
    assert_eq!(warnings(&view), Vec::<String>::new());
    assert_eq!(
        callback(&world).await,
        "https://pbx.example.com/crm/salesforce/oauth/callback"
    );
    let host = world.api.get("/host").await.expect("host");
    assert_eq!(host["public_url"], "https://pbx.example.com");
    // The authorization asks the CRM to come back there.
    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings");
    let consent = world.authorize().await.expect("authorize");
    let redirect = url::Url::parse(&consent)
        .expect("consent url")
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(
        redirect.as_deref(),
        Some("https://pbx.example.com/crm/salesforce/oauth/callback")
    );

    // Refused: not an origin, not http(s), a misspelt key. Each names the
    // field and the fix; nothing changes.
    for (body, why) in [
        (
            json!({"homepage_url": "https://pbx.example.com/pbx"}),
            "has a path",
        ),
        (
            json!({"homepage_url": "ftp://pbx.example.com"}),
            "not an http or https URL",
        ),
        (json!({"homepage_url": "pbx.example.com"}), "is not a URL"),
        (json!({"homepage_url": ""}), "is empty"),
    ] {
        let (status, answer) =
            e2e_tests::api_call(&world.host, Method::PUT, "/network", Some(&body)).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["kind"], "invalid-input");
        assert_eq!(answer["field"], "homepage_url");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{error}");
        assert!(error.contains("e.g. https://pbx.example.com"), "{error}");
    }
    let (status, _) = e2e_tests::api_call(
        &world.host,
        Method::PUT,
        "/network",
        Some(&json!({"homepage": "https://other.example.com"})),
    )
    .await;
    assert!((400..500).contains(&status), "{status}");
    let view = world.api.get("/network").await.expect("network");
    assert_eq!(view["homepage_url"], "https://pbx.example.com");

    // What a CRM objects to is said, and still saved (the administrator
    // may know better).
    let view = world
        .api
        .put(
            "/network",
            &json!({"homepage_url": "http://192.0.2.7:8080"}),
        )
        .await
        .expect("set");
    let said = warnings(&view);
    assert_eq!(said.len(), 2, "{said:?}");
    assert!(said[0].contains("not https"), "{said:?}");
    assert!(said[1].contains("192.0.2.7 is an IP address"), "{said:?}");
    let view = world
        .api
        .put("/network", &json!({"homepage_url": "http://0.0.0.0:8080"}))
        .await
        .expect("set");
    assert!(
        warnings(&view)
            .iter()
            .any(|w| w.contains("0.0.0.0 is where the host listens")),
        "{view}"
    );

    // Only the administrator: no token, no session, no answer.
    let anonymous = reqwest::Client::new();
    let get = anonymous
        .get(format!("{base}/api/network"))
        .send()
        .await
        .expect("answer");
    assert_eq!(get.status(), 401);
    let put = anonymous
        .put(format!("{base}/api/network"))
        .json(&json!({"homepage_url": "https://evil.example.com"}))
        .send()
        .await
        .expect("answer");
    assert_eq!(put.status(), 401);
    let view = world.api.get("/network").await.expect("network");
    assert_eq!(view["homepage_url"], "http://0.0.0.0:8080");

    // Reset: --public-url applies again.
    let view = world
        .api
        .put("/network", &json!({"homepage_url": null}))
        .await
        .expect("reset");
    assert_eq!(view["source"], "public-url");
    assert_eq!(view["homepage_url"], base.as_str());
    assert_eq!(
        callback(&world).await,
        format!("{base}/crm/salesforce/oauth/callback")
    );
}

/// The OAuth callback itself completes against the Homepage URL: the app
/// is registered with `http://localhost:PORT/…` (the same host, named
/// otherwise), and only a host composing its callback from the Homepage
/// URL gets the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oauth_callback_completes_at_the_homepage_url() {
    let world = World::start(Setup {
        no_app: true,
        ..Setup::default()
    })
    .await;
    let port = world.host.addr.port();
    let homepage = format!("http://localhost:{port}");
    let callback_url = format!("{homepage}/crm/salesforce/oauth/callback");
    world.org.add_app(salesforce_emulator::ConnectedApp::new(
        CONSUMER_KEY,
        CONSUMER_SECRET,
        &callback_url,
    ));
    world
        .api
        .put("/network", &json!({"homepage_url": homepage}))
        .await
        .expect("set");
    world
        .configure(CONSUMER_KEY, CONSUMER_SECRET)
        .await
        .expect("settings");
    let consent = world.authorize().await.expect("authorize");
    let Consent::Redirect(location) = world.consent(&consent, true).await else {
        panic!("the org did not redirect to the registered callback");
    };
    assert!(location.starts_with(&callback_url), "{location}");
    let (status, page) = world.callback(&location).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Authorization succeeded!"), "{page}");
    assert_eq!(world.status().await["state"], "Connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_homepage_url_survives_a_restart_and_the_cli_sets_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("pbx");
    let host = e2e_tests::start_host(&data, e2e_tests::Options::default()).await;
    let cli = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let data = data.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                e2e_tests::pbx_at(Some(&data), &args, "")
            })
            .await
            .expect("the CLI ran")
        }
    };

    let (ok, out, err) = cli(&["network", "set", "--homepage-url", "http://10.1.2.3"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Homepage URL: http://10.1.2.3"), "{out}");
    assert!(out.contains("set by the administrator"), "{out}");
    assert!(out.contains("warning: It is not https"), "{out}");
    assert!(out.contains("warning: 10.1.2.3 is an IP address"), "{out}");

    let (ok, out, err) = cli(&[
        "network",
        "set",
        "--homepage-url",
        "https://pbx.example.com/x",
    ])
    .await;
    assert!(!ok, "{out}");
    assert!(
        err.contains("has a path") && err.contains("e.g. https://pbx.example.com"),
        "{err}"
    );

    let (ok, out, err) = cli(&[
        "network",
        "set",
        "--homepage-url",
        "https://pbx.example.com",
    ])
    .await;
    assert!(ok, "{err}");
    assert!(!out.contains("warning"), "{out}");
    assert!(
        out.contains("Callback URL: https://pbx.example.com/crm/{plugin}/oauth/callback"),
        "{out}"
    );

    // Restarted on the same data directory: the setting is the store's.
    host.shutdown().await;
    let host = e2e_tests::start_host(&data, e2e_tests::Options::default()).await;
    let (ok, out, err) = cli(&["network", "show", "--json"]).await;
    assert!(ok, "{err}");
    let view: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(view["homepage_url"], "https://pbx.example.com");
    assert_eq!(view["source"], "administrator");
    assert_eq!(view["public_url"], host.url().as_str());

    let (ok, out, err) = cli(&["network", "set", "--reset"]).await;
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("Homepage URL: {}", host.url())),
        "{out}"
    );
    assert!(out.contains("from serve --public-url"), "{out}");
    host.shutdown().await;
}

/// The `pbx-host serve` commands of the README, each as one line.
fn readme_serve_commands(readme: &str) -> Vec<String> {
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        let line = line.trim();
        if let Some(command) = current.as_mut() {
            command.push(' ');
            command.push_str(line.trim_end_matches('\\'));
            if !line.ends_with('\\') {
                commands.extend(current.take());
            }
        } else if line.starts_with("pbx-host serve ") {
            if line.ends_with('\\') {
                current = Some(line.trim_end_matches('\\').to_string());
            } else {
                commands.push(line.to_string());
            }
        }
    }
    commands
}

#[test]
fn the_readmes_serve_example_grants_every_host_the_plugin_requests() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let shipped = std::fs::read(e2e_tests::component("salesforce_plugin")).expect("plugin");
    let manifest = pbx_host::runtime::inspect::inspect(&shipped)
        .expect("the shipped plugin inspects")
        .manifest;
    let manifest = serde_json::to_value(manifest).expect("manifest");
    let requested: Vec<HostPattern> = manifest["hosts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| h.as_str())
        .map(|h| h.parse().expect("the plugin's pattern parses"))
        .collect();
    // Loopback is for the tests and the demo, not an org.
    let org_hosts: Vec<&HostPattern> = requested
        .iter()
        .filter(|p| !["127.0.0.1", "localhost", "[::1]"].contains(&p.host()))
        .collect();
    assert!(org_hosts.len() >= 4, "{manifest}");

    let commands = readme_serve_commands(&readme);
    assert!(commands.len() >= 2, "{commands:?}");
    for command in &commands {
        let grants: Vec<HostPattern> = command
            .split("--grant ")
            .skip(1)
            .filter_map(|rest| rest.split_whitespace().next())
            .map(|g| g.trim_matches('\''))
            .filter_map(|g| g.strip_prefix("salesforce="))
            .map(|p| p.parse().expect("the README's grant parses"))
            .collect();
        for wanted in &org_hosts {
            assert!(
                grants.iter().any(|g| g.covers(wanted)),
                "the README's `{command}` does not grant {wanted}, which the plugin requests"
            );
        }
    }
}
