//! Two contract versions on one host: the probe built against pbx:crm@0.1.0
//! (`probe`) and the same probe built against 0.2.0 (`probe-v2`) run side
//! by side, and every capability behaves the same through both, because the
//! 0.1.0 imports are shims over the 0.2.0 implementation. What only 0.2.0
//! has (`kv-store.get-many`, the optional `lifecycle.migrate`) works, and
//! `migrate` is `None` for components without it.

use e2e_tests::{CountingServer, Options, component, install, probe, probe_host, with_manifest};
use pbx_host::runtime::CallError;
use pbx_host::server::RunningHost;
use serde_json::json;

/// The probe under each contract version.
const BOTH: [&str; 2] = ["probe", "probe-v2"];

/// A host with both probes installed.
async fn both_probes(
    options: Options,
) -> (tempfile::TempDir, RunningHost, pbx_host::cli::AdminClient) {
    let (dir, host, api) = probe_host(options).await;
    install(&api, "fixture_probe_v2")
        .await
        .expect("the 0.2.0 probe installs");
    (dir, host, api)
}

/// `lifecycle.migrate` through the runtime, as plugin activation calls it.
async fn migrate(
    host: &RunningHost,
    plugin: &str,
    from: &'static str,
) -> Result<Option<Result<(), String>>, String> {
    match host.state.runtime.plugin(plugin).migrate(from).await {
        Ok(answer) => Ok(answer.map(Ok)),
        Err(CallError::Refused { error, .. }) => Ok(Some(Err(error.message))),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_versions_are_installed_and_served_side_by_side() {
    let (_dir, host, api) = both_probes(Options::default()).await;

    let plugins = api.get("/plugins").await.expect("list");
    let versions: Vec<(String, String)> = plugins["plugins"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    let active = p["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|v| v["active"] == true);
                    (
                        p["manifest"]["id"].as_str().unwrap_or_default().to_string(),
                        active
                            .and_then(|v| v["api_version"].as_str())
                            .unwrap_or_default()
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        versions,
        [
            ("probe".to_string(), "0.1.0".to_string()),
            ("probe-v2".to_string(), "0.2.0".to_string())
        ]
    );

    for plugin in BOTH {
        // Exports without an error: results converted to the newest types.
        let status = api
            .get(&format!("/crm/{plugin}/status"))
            .await
            .expect("status");
        assert_eq!(status["state"], "Configured", "{plugin}");
        assert_eq!(status["message"], "probe ready", "{plugin}");
        let info = api
            .get(&format!("/crm/{plugin}/describe"))
            .await
            .expect("describe");
        assert_eq!(info["crm_name"], "Probe", "{plugin}");
        // An error result keeps its kind and message through the conversion.
        let err = api
            .post(&format!("/crm/{plugin}/disconnect"), &json!({}))
            .await
            .expect_err("the probe cannot disconnect");
        assert!(
            format!("{err:#}").contains("the probe does not do that"),
            "{plugin}: {err:#}"
        );
        let pending = host
            .state
            .runtime
            .plugin(plugin)
            .run_pending()
            .await
            .map_err(|e| e.to_string());
        assert!(matches!(pending, Ok(0)), "{plugin}: {pending:?}");
        // Imports: a command that uses the host.
        assert_eq!(
            probe(&api, plugin, "kv-get", "nothing").await.as_deref(),
            Ok("absent"),
            "{plugin}"
        );
    }
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_fetch_denies_and_allows_the_same_through_both_versions() {
    let granted = CountingServer::start("200 OK", &[], 5).await;
    let refused = CountingServer::start("200 OK", &[], 5).await;
    let redirector = CountingServer::start(
        "302 Found",
        &[format!(
            "location: http://127.0.0.1:{}/stolen",
            refused.port
        )],
        0,
    )
    .await;
    let grants = BOTH
        .iter()
        .flat_map(|id| {
            [
                format!("{id}=http://127.0.0.1:{}", granted.port),
                format!("{id}=http://127.0.0.1:{}", redirector.port),
            ]
        })
        .collect();
    let (_dir, host, api) = both_probes(Options {
        grants,
        ..Options::default()
    })
    .await;

    let mut answers = Vec::new();
    for plugin in BOTH {
        let mut fetch = Vec::new();
        for port in [granted.port, refused.port, redirector.port] {
            let url = format!("http://127.0.0.1:{port}/");
            fetch.push(probe(&api, plugin, "fetch", &url).await);
        }
        fetch.push(probe(&api, plugin, "fetch", "http://169.254.169.254/latest/").await);
        answers.push(fetch);
    }
    let denied = format!("denied http://127.0.0.1:{}", refused.port);
    for (plugin, fetch) in BOTH.iter().zip(&answers) {
        assert_eq!(fetch[0].as_deref(), Ok("ok 200 5"), "{plugin}");
        for answer in &fetch[1..3] {
            let answer = answer.as_deref().unwrap_or_default();
            assert!(answer.starts_with(&denied), "{plugin}: {answer}");
        }
        let metadata = fetch[3].as_deref().unwrap_or_default();
        assert!(
            metadata.starts_with("denied http://169.254.169.254"),
            "{plugin}: {metadata}"
        );
    }
    // The same denial, rule and all, whatever the version.
    assert_eq!(answers[0], answers[1]);

    assert_eq!(refused.connections_before_now().await, 0);
    assert_eq!(granted.connections_before_now().await, 2);
    assert_eq!(redirector.connections_before_now().await, 2);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_store_semantics_are_the_same_through_both_versions() {
    let (_dir, host, api) = both_probes(Options::default()).await;
    let long_key = "k".repeat(2_000);
    let script: Vec<(&str, &str)> = vec![
        ("kv-get", "a"),
        ("kv-set", "a=1"),
        ("kv-get", "a"),
        ("kv-batch", "b=2;c=3"),
        ("kv-list", ""),
        ("kv-set", "=empty"),
        ("kv-get", &long_key),
        ("kv-set", "a=changed"),
        ("kv-get", "a"),
    ];
    let mut answers = Vec::new();
    for plugin in BOTH {
        let mut run = Vec::new();
        for (command, arg) in &script {
            run.push(
                probe(&api, plugin, command, arg)
                    .await
                    .unwrap_or_else(|e| format!("call failed: {e}")),
            );
        }
        answers.push(run);
    }
    assert_eq!(answers[0], answers[1], "0.1.0 and 0.2.0 differ");
    let run = &answers[0];
    assert_eq!(run[0], "absent");
    assert_eq!(run[1], "ok");
    assert_eq!(run[2], "value 1");
    assert_eq!(run[3], "ok");
    assert_eq!(run[4], "keys a,b,c");
    assert!(run[5].starts_with("invalid-key: "), "{}", run[5]);
    assert!(
        run[6].starts_with("invalid-key: ") && run[6].contains("1024"),
        "{}",
        run[6]
    );
    assert_eq!(run[8], "value changed");

    // A plugin id keeps its namespace across contract versions: the 0.2.0
    // build installed as `probe` reads what the 0.1.0 build wrote.
    let v2 = std::fs::read(component("fixture_probe_v2")).expect("read probe-v2");
    let as_probe = with_manifest(
        &v2,
        &json!({"id": "probe", "name": "Probe", "version": "2.0.0", "vendor": "tests",
                "api": "pbx:crm@0.2.0", "hosts": []}),
    );
    let installed = api
        .post_bytes("/plugins?activate=yes", as_probe)
        .await
        .expect("the upgrade installs and activates");
    assert_eq!(installed["api_version"], "0.2.0", "{installed}");
    assert_eq!(installed["activated"], true, "{installed}");
    assert_eq!(
        probe(&api, "probe", "kv-get-many", "a,b,c")
            .await
            .as_deref(),
        Ok("values a=changed,b=2,c=3")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_reads_several_keys_in_one_call() {
    let (_dir, host, api) = both_probes(Options::default()).await;
    let v2 = "probe-v2";
    assert_eq!(
        probe(&api, v2, "kv-batch", "a=1;b=2").await.as_deref(),
        Ok("ok")
    );
    assert_eq!(
        probe(&api, v2, "kv-get-many", "b,missing,a")
            .await
            .as_deref(),
        Ok("values b=2,missing absent,a=1")
    );
    // One invalid key fails the whole call, with get's error.
    let empty = probe(&api, v2, "kv-get-many", "a,").await;
    let single = probe(&api, v2, "kv-get", "").await;
    assert!(
        empty
            .as_deref()
            .is_ok_and(|a| a.starts_with("invalid-key: ")),
        "{empty:?}"
    );
    assert_eq!(empty, single);
    // The host bounds the keys of one call.
    let keys: Vec<String> = (0..1_025).map(|n| format!("k{n}")).collect();
    let too_many = probe(&api, v2, "kv-get-many", &keys.join(",")).await;
    assert!(
        too_many
            .as_deref()
            .is_ok_and(|a| a.starts_with("invalid-key: ") && a.contains("at most 1024")),
        "{too_many:?}"
    );
    let at_most = probe(&api, v2, "kv-get-many", &keys[..1_024].join(",")).await;
    assert!(
        at_most.as_deref().is_ok_and(|a| a.starts_with("values ")),
        "{at_most:?}"
    );
    // The 0.1.0 probe has no such command (its contract has no get-many).
    assert_eq!(
        probe(&api, "probe", "kv-get-many", "a").await.as_deref(),
        Ok("unknown command kv-get-many")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_optional_migrate_export_is_found_and_called() {
    let (_dir, host, api) = both_probes(Options::default()).await;
    install(&api, "salesforce_plugin")
        .await
        .expect("plugin installs");

    // probe-v2 exports lifecycle (world plugin-with-migrate).
    assert_eq!(migrate(&host, "probe-v2", "0.9.0").await, Ok(Some(Ok(()))));
    assert_eq!(
        probe(&api, "probe-v2", "kv-get", "migrate/from")
            .await
            .as_deref(),
        Ok("value 0.9.0")
    );
    assert_eq!(
        probe(
            &api,
            "probe-v2",
            "migrate-fail",
            "the schema is newer than this version"
        )
        .await
        .as_deref(),
        Ok("ok")
    );
    assert_eq!(
        migrate(&host, "probe-v2", "3.0.0").await,
        Ok(Some(Err("the schema is newer than this version".into())))
    );
    assert_eq!(
        probe(&api, "probe-v2", "migrate-fail", "").await.as_deref(),
        Ok("ok")
    );
    assert_eq!(migrate(&host, "probe-v2", "1.0.0").await, Ok(Some(Ok(()))));

    // Without the export: a 0.1.0 plugin, and a 0.2.0 plugin of world `plugin`.
    assert_eq!(migrate(&host, "probe", "0.9.0").await, Ok(None));
    assert_eq!(migrate(&host, "salesforce", "0.0.1").await, Ok(None));
    host.shutdown().await;
}
