//! http-fetch through the real host: only granted targets, every redirect
//! hop checked, private addresses refused, responses capped. A counting
//! listener proves nothing was sent to a denied target.

use e2e_tests::{CountingServer, Options, probe, probe_host};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_granted_targets_are_reached() {
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
    let (_dir, host, api) = probe_host(Options {
        grants: vec![
            format!("probe=http://127.0.0.1:{}", granted.port),
            format!("probe=http://127.0.0.1:{}", redirector.port),
        ],
        ..Options::default()
    })
    .await;

    // Granted (exactly, so loopback is allowed for it).
    let ok = probe(
        &api,
        "probe",
        "fetch",
        &format!("http://127.0.0.1:{}/", granted.port),
    )
    .await;
    assert_eq!(ok.as_deref(), Ok("ok 200 5"));

    // Requested by the manifest (http://127.0.0.1:*) but not granted.
    let denied = probe(
        &api,
        "probe",
        "fetch",
        &format!("http://127.0.0.1:{}/", refused.port),
    )
    .await;
    let denied = denied.expect("the call itself succeeds");
    assert!(
        denied.starts_with(&format!("denied http://127.0.0.1:{}", refused.port)),
        "{denied}"
    );

    // A granted host redirecting to a refused one: the hop is checked again.
    let hop = probe(
        &api,
        "probe",
        "fetch",
        &format!("http://127.0.0.1:{}/", redirector.port),
    )
    .await;
    let hop = hop.expect("the call itself succeeds");
    assert!(
        hop.starts_with(&format!("denied http://127.0.0.1:{}", refused.port)),
        "{hop}"
    );

    // The cloud metadata address, requested by the manifest but never granted.
    let metadata = probe(
        &api,
        "probe",
        "fetch",
        "http://169.254.169.254/latest/meta-data/",
    )
    .await;
    let metadata = metadata.expect("the call itself succeeds");
    assert!(
        metadata.starts_with("denied http://169.254.169.254"),
        "{metadata}"
    );

    // Nothing ever reached the refused listener.
    assert_eq!(refused.connections_before_now().await, 0);
    assert_eq!(granted.connections_before_now().await, 1);
    assert_eq!(redirector.connections_before_now().await, 1);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_response_is_too_large() {
    let big = CountingServer::start("200 OK", &[], 3 << 20).await;
    let (_dir, host, api) = probe_host(Options {
        grants: vec![format!("probe=http://127.0.0.1:{}", big.port)],
        max_response_mib: Some(1),
        ..Options::default()
    })
    .await;
    let answer = probe(
        &api,
        "probe",
        "fetch",
        &format!("http://127.0.0.1:{}/", big.port),
    )
    .await;
    assert_eq!(answer.as_deref(), Ok("too-large 1048576"));
    host.shutdown().await;
}
