//! Staying connected, against the emulator: refresh after a forced expiry,
//! exactly one refresh for 20 concurrent calls, rotation, a revoked refresh
//! token, and disconnect.

use e2e_tests::org::{Setup, World};

/// One REST-backed call (a caller lookup, a SOSL search for a number no
/// other call looks up), made straight through the host's runtime as the
/// admin API would. Lookups write nothing shared, so concurrent ones only
/// meet at the token.
async fn rest_call(world: &World, n: u32) -> Result<(), String> {
    let number = format!("+1 212 555 {:04}", 100 + n);
    let result = world
        .host
        .state
        .runtime
        .plugin("salesforce")
        .lookup_caller(&number, "US")
        .await;
    result.map(|_caller| ()).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_session_is_refreshed_once_and_the_call_succeeds() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    world.org.expire_sessions();
    let job = world.sync_users().await;
    assert_eq!(job["ok"], true, "{job}");
    assert_eq!(world.org.token_stats().refresh_grants, 1);
    assert_eq!(world.status().await["state"], "Connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_calls_on_an_expired_session_cause_one_refresh() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    world.org.expire_sessions();
    // Polled together, the 20 calls overlap at their first request.
    let results = futures::future::join_all((0..20).map(|n| rest_call(&world, n))).await;
    let failed: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert_eq!(
        world.org.token_stats().refresh_grants,
        1,
        "exactly one refresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_stored_and_used_next_time() {
    let world = World::start(Setup {
        rotate_refresh_tokens: true,
        ..Setup::default()
    })
    .await;
    world.connect().await;
    for round in 1..=3 {
        world.org.expire_sessions();
        rest_call(&world, 100 + round as u32)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(world.org.token_stats().refresh_grants, round);
    }
    assert_eq!(world.status().await["state"], "Connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_needs_reauthorization_and_keeps_the_rest() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    let settings_before = world
        .api
        .get("/crm/salesforce/settings")
        .await
        .expect("settings");
    world.org.revoke_refresh_tokens();
    world.org.expire_sessions();
    let err = rest_call(&world, 0)
        .await
        .expect_err("the session cannot come back");
    assert!(err.contains("authorize again"), "{err}");
    let status = world.status().await;
    assert_eq!(status["state"], "ReauthorizationNeeded", "{status}");
    assert!(
        status["message"]
            .as_str()
            .is_some_and(|m| m.contains("authorize")),
        "{status}"
    );
    let settings_after = world
        .api
        .get("/crm/salesforce/settings")
        .await
        .expect("settings");
    assert_eq!(settings_before, settings_after, "settings are kept");
    // Authorizing again brings it back.
    assert_eq!(world.connect().await["state"], "Connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_revokes_at_salesforce_and_keeps_settings() {
    let world = World::start(Setup::default()).await;
    world.connect().await;
    let status = world
        .api
        .post("/crm/salesforce/disconnect", &serde_json::json!({}))
        .await
        .expect("disconnect");
    assert_eq!(status["state"], "Disconnected");
    assert_eq!(world.org.token_stats().revocations, 1);
    assert!(
        world.org.live_tokens().is_empty(),
        "{:?}",
        world.org.live_tokens()
    );
    let err = rest_call(&world, 0)
        .await
        .expect_err("no session after disconnect");
    assert!(
        err.to_lowercase().contains("not connected") || err.contains("authorize"),
        "{err}"
    );
}
