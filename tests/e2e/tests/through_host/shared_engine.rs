//! Two runtimes (two PBXs' plugin runtimes) on one process's engine: a
//! version installed in both is compiled once, and neither sees the
//! other's state: an instance belongs to one runtime's loaded version,
//! whose kv namespace is that runtime's store.

use std::sync::Arc;

use e2e_tests::component;
use pbx_host::capabilities::Services;
use pbx_host::capabilities::browser::BrowserRequests;
use pbx_host::directory::Directory;
use pbx_host::runtime::wit::SettingInput;
use pbx_host::runtime::{Limits, Runtime, SharedEngine};
use pbx_host::store::{Quota, Store};

/// A runtime with its own data directory and store, on `shared`.
fn runtime(shared: &Arc<SharedEngine>, dir: &std::path::Path) -> Runtime {
    let store = Store::open(dir).expect("store");
    let services = Arc::new(Services {
        http: pbx_host::outbound::Client::new(pbx_host::outbound::ClientConfig::default())
            .expect("client"),
        browser: BrowserRequests::new(false),
        directory: Directory::new(store.namespace("host/extensions", Quota::UNLIMITED)),
    });
    Runtime::sharing(
        shared.clone(),
        dir,
        store,
        services,
        Limits::default(),
        Default::default(),
    )
    .expect("runtime")
}

/// The probe's answer to `command arg` (see tests/fixtures/probe).
async fn probe(runtime: &Runtime, command: &str, arg: &str) -> String {
    let status = runtime
        .plugin("probe")
        .save_settings(&[SettingInput {
            key: command.into(),
            value: Some(arg.into()),
        }])
        .await
        .expect("the probe answers");
    status.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtimes_on_one_engine_compile_once_and_keep_their_state_apart() {
    let shared = SharedEngine::new(&Limits::default()).expect("engine");
    let (a_dir, b_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let a = runtime(&shared, a_dir.path());
    let b = runtime(&shared, b_dir.path());
    let bytes = std::fs::read(component("fixture_probe")).expect("probe built");
    a.install(&bytes).expect("installs on A");
    b.install(&bytes).expect("installs on B");
    assert_eq!(a.stats().compiled, 1);
    assert_eq!(
        (b.stats().compiled, b.stats().cache_loads),
        (0, 0),
        "B takes the component A compiled"
    );

    assert_eq!(probe(&a, "kv-set", "who=A").await, "ok");
    assert_eq!(
        probe(&b, "kv-get", "who").await,
        "absent",
        "A's state is A's"
    );
    assert_eq!(probe(&b, "kv-set", "who=B").await, "ok");
    // Calls alternate; each runtime's instances see only its own value.
    for _ in 0..5 {
        assert_eq!(probe(&a, "kv-get", "who").await, "value A");
        assert_eq!(probe(&b, "kv-get", "who").await, "value B");
    }
}
