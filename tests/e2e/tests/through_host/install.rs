//! Plugin install: versions, imports, and the precompile cache.

use e2e_tests::{Options, admin, component, install, install_bytes, probe, start_host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsupported_api_version_is_refused_naming_the_supported_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    let err = install(&api, "fixture_future_api")
        .await
        .expect_err("refused");
    assert!(err.contains("pbx:crm@9.0.0"), "{err}");
    assert!(err.contains("this host serves pbx:crm@0.1.0"), "{err}");
    assert!(
        !err.contains("linker") && !err.contains("import"),
        "raw linker error: {err}"
    );
    let plugins = api.get("/plugins").await.expect("list");
    assert_eq!(plugins["plugins"].as_array().map(Vec::len), Some(0));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_that_are_not_plugins_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    let err = install_bytes(&api, b"MZ\x90\0 not wasm".to_vec())
        .await
        .expect_err("refused");
    assert!(err.contains("not a WebAssembly component"), "{err}");
    let mut truncated = std::fs::read(component("salesforce_plugin")).expect("read");
    truncated.truncate(truncated.len() / 2);
    let err = install_bytes(&api, truncated).await.expect_err("refused");
    assert!(err.contains("not a WebAssembly component"), "{err}");
    host.shutdown().await;
}

#[test]
fn the_salesforce_plugin_imports_no_files_sockets_or_raw_http() {
    let bytes = std::fs::read(component("salesforce_plugin")).expect("read the plugin");
    let mut imports = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(&bytes) {
        match payload.expect("a valid component") {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => depth += 1,
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import.expect("import").name.0.to_string());
                }
            }
            _ => {}
        }
    }
    assert!(
        imports.iter().any(|i| i.starts_with("pbx:crm/kv-store@")),
        "{imports:?}"
    );
    for forbidden in ["wasi:filesystem", "wasi:sockets", "wasi:http"] {
        assert!(
            !imports.iter().any(|i| i.starts_with(forbidden)),
            "the plugin imports {forbidden}: {imports:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_loads_from_the_precompile_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    install(&api, "fixture_probe")
        .await
        .expect("probe installs");
    let first = api.get("/host").await.expect("host info");
    assert_eq!(first["runtime"]["compiled"], 1);
    assert_eq!(first["runtime"]["cache_loads"], 0);
    host.shutdown().await;

    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    let second = api.get("/host").await.expect("host info");
    assert_eq!(second["runtime"]["compiled"], 0);
    assert_eq!(second["runtime"]["cache_loads"], 1);
    assert_eq!(
        probe(&api, "probe", "kv-get", "x").await.as_deref(),
        Ok("absent")
    );
    host.shutdown().await;

    // A record an older host wrote (hex SHA-256, before BLAKE3) still
    // vouches for its file, which loads, and is rewritten in the new form.
    let records = || {
        let store = pbx_host::store::Store::open(dir.path()).expect("store");
        store.namespace("host/precompiled", pbx_host::store::Quota::UNLIMITED)
    };
    let (name, file) = {
        let records = records();
        let names = records.list_keys("").expect("records");
        assert_eq!(names.len(), 1, "{names:?}");
        let name = names[0].clone();
        let record = records.get(&name).expect("record").expect("recorded");
        assert!(record.starts_with(b"blake3:"), "{record:?}");
        let file = std::fs::read(dir.path().join("cache").join(&name)).expect("cache file");
        let old: String = ring::digest::digest(&ring::digest::SHA256, &file)
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        records.set(&name, old.as_bytes()).expect("old record");
        (name, file)
    };
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    let upgraded = api.get("/host").await.expect("host info");
    assert_eq!(upgraded["runtime"]["compiled"], 0, "{upgraded}");
    assert_eq!(upgraded["runtime"]["cache_loads"], 1, "{upgraded}");
    host.shutdown().await;
    let record = records().get(&name).expect("record").expect("recorded");
    assert!(record.starts_with(b"blake3:"), "rewritten: {record:?}");
    assert_eq!(
        std::fs::read(dir.path().join("cache").join(&name)).expect("cache file"),
        file,
        "the file itself is not rewritten"
    );

    // A cache entry that no longer loads (another engine, a broken file) is
    // compiled again instead of failing the start.
    for entry in std::fs::read_dir(dir.path().join("cache"))
        .expect("cache dir")
        .flatten()
    {
        std::fs::write(entry.path(), b"stale").expect("spoil the cache");
    }
    let host = start_host(dir.path(), Options::default()).await;
    let api = admin(&host);
    let third = api.get("/host").await.expect("host info");
    assert_eq!(third["runtime"]["compiled"], 1);
    assert_eq!(third["runtime"]["cache_loads"], 0);
    assert_eq!(
        probe(&api, "probe", "kv-get", "x").await.as_deref(),
        Ok("absent")
    );
    host.shutdown().await;
}
