//! Secrets stay secret: after a whole connect, refresh and disconnect, the
//! consumer secret and every token the org issued are searched for in the
//! data directory, the host's logs (at TRACE) and every page and API answer
//! served during the run. None may be found.

use std::io::Write;
use std::sync::{Arc, Mutex};

use e2e_tests::org::{CONSUMER_SECRET, Consent, Setup, World};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_token_is_in_files_logs_or_pages() {
    let logs = Captured::default();
    let sink = logs.clone();
    // Everything the host and the plugins log, at every level; the
    // compiler's own tracing is left out (it is huge and never sees data).
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "info,pbx_host=trace,plugin=trace,reqwest=trace,hyper=debug,axum=trace,cranelift_codegen=warn,wasmtime_cranelift=warn",
        ))
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    let world = World::start(Setup::default()).await;
    let mut served: Vec<String> = Vec::new();
    let mut tokens: Vec<String> = Vec::new();

    // The portal pages.
    let portal = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .expect("client");
    let login = portal
        .post(format!("{}/login", world.host.url()))
        .form(&[("token", world.host.admin_token.as_str())])
        .send()
        .await
        .expect("portal login");
    served.push(login.text().await.unwrap_or_default());

    // Connect: settings, authorize, consent, callback.
    served.push(
        world
            .configure(e2e_tests::org::CONSUMER_KEY, CONSUMER_SECRET)
            .await
            .expect("settings")
            .to_string(),
    );
    let url = world.authorize().await.expect("authorize");
    let Consent::Redirect(location) = world.consent(&url, true).await else {
        panic!("Allow redirects");
    };
    served.push(world.callback(&location).await.1);
    tokens.extend(world.org.live_tokens());
    assert!(
        tokens.len() >= 2,
        "an access and a refresh token were issued"
    );

    // A refresh.
    world.org.expire_sessions();
    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    tokens.extend(world.org.live_tokens());

    for path in [
        "/crm/salesforce/status",
        "/crm/salesforce/settings",
        "/crm/salesforce/describe",
        "/crm/salesforce/users",
        "/browser-requests",
        "/plugins",
        "/host",
    ] {
        served.push(world.api.get(path).await.expect(path).to_string());
    }
    served.push(
        portal
            .get(format!("{}/", world.host.url()))
            .send()
            .await
            .expect("portal")
            .text()
            .await
            .unwrap_or_default(),
    );
    served.push(
        world
            .api
            .post("/crm/salesforce/disconnect", &json!({}))
            .await
            .expect("disconnect")
            .to_string(),
    );

    let mut secrets = vec![CONSUMER_SECRET.to_string()];
    secrets.extend(tokens.iter().cloned());
    let logs =
        String::from_utf8_lossy(&logs.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        logs.contains("connected to Salesforce"),
        "the logs were captured"
    );
    for secret in &secrets {
        assert!(!logs.contains(secret.as_str()), "a secret is in the logs");
        for (i, page) in served.iter().enumerate() {
            assert!(
                !page.contains(secret.as_str()),
                "a secret is in served page #{i}"
            );
        }
    }
    let data_dir = world.data_dir.clone();
    world.host.shutdown().await;
    let mut files = 0;
    for file in e2e_tests::files_under(&data_dir) {
        let bytes = std::fs::read(&file).expect("read");
        files += 1;
        for secret in &secrets {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{} holds a secret in plaintext",
                file.display()
            );
        }
    }
    assert!(files >= 4, "{files} files");
}
