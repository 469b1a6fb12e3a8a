//! The sandbox through the real host: deadlines, memory cap, traps, and the
//! host keeps serving after each.

use std::time::{Duration, Instant};

use e2e_tests::{Options, install, probe, probe_host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_fails_on_its_deadline_and_the_next_call_succeeds() {
    let (_dir, host, api) = probe_host(Options {
        deadline_ms: Some(1_000),
        ..Options::default()
    })
    .await;
    install(&api, "salesforce_plugin")
        .await
        .expect("plugin installs");

    let started = Instant::now();
    let looped = probe(&api, "probe", "loop", "").await;
    let took = started.elapsed();
    let err = looped.expect_err("an endless loop cannot succeed");
    assert!(
        err.contains("did not finish within its 1s deadline"),
        "{err}"
    );
    assert!(
        took < Duration::from_millis(2_000),
        "stopped after {took:?}"
    );

    // Another plugin, straight after.
    let status = api
        .get("/crm/salesforce/status")
        .await
        .expect("the host still serves");
    assert_eq!(status["state"], "NotConfigured");
    // And the same plugin again, in a fresh instance.
    assert_eq!(
        probe(&api, "probe", "kv-get", "nothing").await.as_deref(),
        Ok("absent")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_past_the_memory_cap_is_a_clear_error() {
    let (_dir, host, api) = probe_host(Options {
        memory_mib: Some(32),
        ..Options::default()
    })
    .await;

    let err = probe(&api, "probe", "grow", "")
        .await
        .expect_err("cannot grow forever");
    assert!(err.contains("exceeded its memory limit of 32 MiB"), "{err}");
    assert_eq!(
        probe(&api, "probe", "kv-get", "x").await.as_deref(),
        Ok("absent")
    );
    let info = api.get("/host").await.expect("host info");
    assert_eq!(info["runtime"]["failed_calls"], 1);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_carries_its_message_and_the_host_stays_up() {
    let (_dir, host, api) = probe_host(Options::default()).await;

    let err = probe(&api, "probe", "panic", "the ledger is gone")
        .await
        .expect_err("a panic fails the call");
    assert!(
        err.contains("panicked: probe panic: the ledger is gone"),
        "{err}"
    );
    assert_eq!(
        probe(&api, "probe", "print", "hi").await.as_deref(),
        Ok("printed")
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_gets_no_environment_and_no_arguments() {
    let (_dir, host, api) = probe_host(Options::default()).await;
    // The host process has an environment; the plugin must not see it.
    assert!(std::env::vars().count() > 0);
    assert_eq!(
        probe(&api, "probe", "env", "").await.as_deref(),
        Ok("vars 0 args 0")
    );
    host.shutdown().await;
}
