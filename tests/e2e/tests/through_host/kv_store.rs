//! The kv-store through the real host: plugin ids are isolated, a batch is
//! all or nothing, and values are encrypted at rest.

use e2e_tests::{
    Options, admin, component, install, install_bytes, probe, probe_host, start_host, with_manifest,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plugin_ids_are_isolated() {
    let (_dir, host, api) = probe_host(Options::default()).await;
    // The same code under another id: a second tenant.
    let bytes = std::fs::read(component("fixture_probe")).expect("read probe");
    let other = with_manifest(
        &bytes,
        &json!({"id": "probe-b", "name": "B", "version": "1.0.0", "vendor": "tests", "api": "pbx:crm@0.1.0", "hosts": []}),
    );
    install_bytes(&api, other).await.expect("probe-b installs");

    assert_eq!(
        probe(&api, "probe", "kv-set", "settings=mine")
            .await
            .as_deref(),
        Ok("ok")
    );
    assert_eq!(
        probe(&api, "probe-b", "kv-get", "settings")
            .await
            .as_deref(),
        Ok("absent")
    );
    assert_eq!(
        probe(&api, "probe-b", "kv-set", "settings=theirs")
            .await
            .as_deref(),
        Ok("ok")
    );
    assert_eq!(
        probe(&api, "probe", "kv-get", "settings").await.as_deref(),
        Ok("value mine")
    );
    assert_eq!(
        probe(&api, "probe", "kv-list", "").await.as_deref(),
        Ok("keys settings")
    );

    // Neither sees the Salesforce plugin's keys, nor it theirs.
    install(&api, "salesforce_plugin")
        .await
        .expect("plugin installs");
    api.put(
        "/crm/salesforce/settings",
        &json!({"settings": [{"key": "consumer-key", "value": "3MVG9isolated"}]}),
    )
    .await
    .expect("settings save");
    let settings = api.get("/crm/salesforce/settings").await.expect("settings");
    let key = settings["settings"]
        .as_array()
        .and_then(|s| s.iter().find(|v| v["key"] == "consumer-key"))
        .map(|v| v["value"].clone());
    assert_eq!(key, Some(json!("3MVG9isolated")));
    assert_eq!(
        probe(&api, "probe", "kv-get", "settings").await.as_deref(),
        Ok("value mine")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_mid_batch_leaves_no_partial_write() {
    let (_dir, host, api) = probe_host(Options::default()).await;
    assert_eq!(
        probe(&api, "probe", "kv-set", "a=before").await.as_deref(),
        Ok("ok")
    );

    host.state.store.fail_next_batch_after(2);
    let failed = probe(&api, "probe", "kv-batch", "a=1;b=2;c=3")
        .await
        .expect("the call succeeds");
    assert!(failed.starts_with("unavailable"), "{failed}");

    assert_eq!(
        probe(&api, "probe", "kv-get", "a").await.as_deref(),
        Ok("value before")
    );
    assert_eq!(
        probe(&api, "probe", "kv-get", "b").await.as_deref(),
        Ok("absent")
    );
    assert_eq!(
        probe(&api, "probe", "kv-get", "c").await.as_deref(),
        Ok("absent")
    );
    // The next batch goes through whole.
    assert_eq!(
        probe(&api, "probe", "kv-batch", "a=1;b=2;c=3")
            .await
            .as_deref(),
        Ok("ok")
    );
    assert_eq!(
        probe(&api, "probe", "kv-list", "").await.as_deref(),
        Ok("keys a,b,c")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_secret_is_nowhere_in_the_data_directory_in_plaintext() {
    let secret = "Consumer-Secret-7f3a9c2e-plaintext-marker";
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    install(&api, "salesforce_plugin")
        .await
        .expect("plugin installs");
    api.put(
        "/crm/salesforce/settings",
        &json!({"settings": [
            {"key": "consumer-key", "value": "3MVG9key"},
            {"key": "consumer-secret", "value": secret},
        ]}),
    )
    .await
    .expect("settings save");
    let shown = api
        .get("/crm/salesforce/settings")
        .await
        .expect("settings")
        .to_string();
    assert!(
        !shown.contains(secret),
        "the API showed the secret: {shown}"
    );
    host.shutdown().await;

    let mut scanned = 0;
    for file in e2e_tests::files_under(dir.path()) {
        let bytes = std::fs::read(&file).expect("read data file");
        scanned += 1;
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{} holds the secret in plaintext",
            file.display()
        );
    }
    assert!(scanned >= 3, "only {scanned} files scanned");
}
