//! A sync that fails part-way keeps the previous list and says why; refused
//! cursors, lost chunks and expired query locators ask for a new sync.

use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::integration::ConnectionState;
use crate::plugin::Plugin;
use crate::store::keys;
use crate::testing::err as kind;
use crate::testing::user_list::*;
use crate::users::page_key;

use super::*;

#[test]
fn a_503_part_way_keeps_the_previous_list_and_says_so() {
    let (host, sf) = connected(5_000);
    sync(&host);
    let before = index(&host);
    let net = slow(&host);
    let first = step(&net, None);
    sf.script_rest(&[(503, "Service Unavailable")]);
    let failed = Plugin::new(&net).sync_users(first.cursor.as_deref());
    let (k, message) = kind(failed);
    assert_eq!(k, ErrorKind::CrmUnavailable, "{message}");
    assert!(
        message.starts_with(
            "user sync stopped after 2,000 of 5,000 users: Salesforce is unavailable (HTTP 503)"
        ),
        "{message}"
    );
    assert!(
        message.ends_with("; the previous list of 5,000 users is kept; sync again"),
        "{message}"
    );
    assert_eq!(index(&host), before);
    assert_eq!(entries(&host).len(), 5_000);
    let status = Plugin::new(&host).status();
    assert_eq!(status.state, ConnectionState::Connected);
    let problem = status.problem.unwrap_or_default();
    assert!(
        problem.contains("user sync stopped after 2,000 of 5,000 users"),
        "{problem}"
    );
    assert_eq!(
        last_sync(&host).map(|l| (l.ok, l.fetched, l.total)),
        Some((false, 2_000, 5_000))
    );

    // During the back-off nothing is sent; afterwards the same cursor
    // continues where the sync stopped.
    let (k, _) = kind(Plugin::new(&net).sync_users(first.cursor.as_deref()));
    assert_eq!(k, ErrorKind::CrmUnavailable);
    host.advance_ms(6_000);
    let mut progress = step(&net, first.cursor.as_deref());
    assert_eq!(progress.fetched, 4_000);
    while let Some(c) = progress.cursor.clone() {
        progress = step(&net, Some(&c));
    }
    assert_eq!(progress.fetched, 5_000);
    assert_eq!(last_sync(&host).map(|l| l.ok), Some(true));
    assert_eq!(Plugin::new(&host).status().problem, None);
    assert_ne!(index(&host), before);
}

#[test]
fn a_failure_within_a_step_writes_none_of_it_and_its_cursor_goes_on() {
    let (host, sf) = connected(12_000);
    sf.set_user_page_size(500);
    sync(&host);
    let before = index(&host);
    // Request 13 is the third page of the second step.
    let net = failing_at(&host, 13, (503, "Service Unavailable"));
    let first = step(&net, None);
    assert_eq!(first.fetched, 5_000);
    let staged = sync_keys(&host);
    let (k, message) = kind(Plugin::new(&net).sync_users(first.cursor.as_deref()));
    assert_eq!(k, ErrorKind::CrmUnavailable, "{message}");
    assert!(
        message.starts_with(
            "user sync stopped after 5,000 of 12,000 users: Salesforce is unavailable (HTTP 503)"
        ),
        "{message}"
    );
    assert!(
        message.ends_with("; the previous list of 12,000 users is kept; sync again"),
        "{message}"
    );
    // Nothing of the failed step was written (its two good pages neither).
    assert_eq!(sync_keys(&host), staged);
    assert_eq!(index(&host), before);
    assert_eq!(
        last_sync(&host).map(|l| (l.ok, l.fetched, l.total)),
        Some((false, 5_000, 12_000))
    );
    // After the back-off the same cursor reads those pages again and goes on.
    host.advance_ms(6_000);
    let served = sf.user_pages();
    assert_eq!(sync_from(&net, first.cursor), 12_000);
    assert_eq!(sf.user_pages() - served, 14);
    assert_listed_in_order(&host, 12_000);
    assert_ne!(index(&host), before);
    assert_eq!(Plugin::new(&host).status().problem, None);
}

#[test]
fn the_api_limit_part_way_keeps_the_list_and_a_new_sync_later_succeeds() {
    let (host, sf) = connected(4_000);
    sync(&host);
    let first = step(slow(&host), None);
    sf.script_rest(&[(
        403,
        r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
    )]);
    let (k, message) = kind(Plugin::new(&host).sync_users(first.cursor.as_deref()));
    assert_eq!(k, ErrorKind::RateLimited, "{message}");
    assert!(message.contains("API limit"), "{message}");
    assert!(
        message.contains("previous list of 4,000 users is kept"),
        "{message}"
    );
    assert_eq!(entries(&host).len(), 4_000);
    let problem = Plugin::new(&host).status().problem.unwrap_or_default();
    assert!(
        problem.contains("user sync stopped after 2,000 of 4,000"),
        "{problem}"
    );

    host.advance_ms(10 * 60 * 1000);
    sf.set_users(org(4_100));
    let steps = sync(&host);
    assert_eq!(steps.last().map(|s| s.fetched), Some(4_100));
    assert_eq!(Plugin::new(&host).status().problem, None);
}

#[test]
fn a_failure_before_the_first_page_is_reported_too() {
    let (host, sf) = connected(10);
    sf.script_rest(&[(
        500,
        r#"[{"message":"oops","errorCode":"UNKNOWN_EXCEPTION"}]"#,
    )]);
    let (k, message) = kind(Plugin::new(&host).sync_users(None));
    assert_eq!(k, ErrorKind::CrmUnavailable);
    assert!(
        message.starts_with("user sync failed before any user was read"),
        "{message}"
    );
    assert!(
        message.contains("no user list was stored before"),
        "{message}"
    );
    assert_eq!(index(&host), None);
}

#[test]
fn an_expired_session_part_way_is_refreshed_and_the_sync_goes_on() {
    let (host, sf) = connected(4_000);
    let first = step(slow(&host), None);
    assert_eq!(first.fetched, 2_000);
    sf.expire_sessions();
    let second = step(&host, first.cursor.as_deref());
    assert_eq!((second.fetched, second.cursor), (4_000, None));
    assert_eq!(sf.refresh_grants(), 1);
    assert_eq!(entries(&host).len(), 4_000);
}

#[test]
fn a_dead_session_part_way_keeps_the_list_and_asks_to_authorize() {
    let (host, sf) = connected(5_000);
    sync(&host);
    let before = index(&host);
    let first = step(slow(&host), None);
    sf.expire_sessions();
    sf.kill_refresh_tokens();
    let (k, message) = kind(Plugin::new(&host).sync_users(first.cursor.as_deref()));
    assert_eq!(k, ErrorKind::NotConnected, "{message}");
    assert!(message.contains("authorize again"), "{message}");
    assert!(
        message.contains("previous list of 5,000 users is kept"),
        "{message}"
    );
    assert_eq!(index(&host), before);
    let status = Plugin::new(&host).status();
    assert_eq!(status.state, ConnectionState::ReauthorizationNeeded);
    assert!(
        status
            .problem
            .is_some_and(|p| p.contains("user sync stopped after 2,000 of 5,000")),
    );
    // Authorized again, a new sync works.
    reconnect(&host, &sf);
    let steps = sync(&host);
    assert_eq!(steps.last().map(|s| s.fetched), Some(5_000));
    assert_eq!(Plugin::new(&host).status().problem, None);
}

#[test]
fn foreign_or_forgotten_cursors_are_refused() {
    let (host, _sf) = connected(5_000);
    for bad in ["", "garbage", "eyJ2IjoxfQ"] {
        let (k, message) = kind(Plugin::new(&host).sync_users(Some(bad)));
        assert_eq!(k, ErrorKind::InvalidInput, "{bad}");
        assert!(message.contains("start the sync again"), "{message}");
    }
    let first = step(slow(&host), None);
    // Its staging area disappears (the store was reset, say).
    for key in host.kv_keys() {
        if key.starts_with(keys::USERS_SYNC_PREFIX) {
            let _ = crate::host::Host::kv_delete(&host, &key);
        }
    }
    let (k, message) = kind(Plugin::new(&host).sync_users(first.cursor.as_deref()));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(message.contains("unknown"), "{message}");
    assert!(message.contains("start the sync again"), "{message}");
    // Nothing was recorded as a failed sync: nothing was tried.
    assert_eq!(last_sync(&host), None);
}

#[test]
fn a_lost_chunk_says_to_sync_again() {
    let (host, _sf) = connected(10);
    sync(&host);
    let sync_id = index(&host).map(|i| i.sync_id).unwrap_or_default();
    host.kv_put(&page_key(&sync_id, 0), "[{\"broken\"");
    let (k, message) = kind(Plugin::new(&host).list_users());
    assert_eq!(k, ErrorKind::Internal);
    assert!(
        message.ends_with("sync the users again to replace it"),
        "{message}"
    );
    // A new sync repairs it.
    sync(&host);
    assert_eq!(entries(&host).len(), 10);
}

#[test]
fn an_expired_query_locator_asks_for_a_new_sync() {
    let (host, sf) = connected(5_000);
    let first = step(slow(&host), None);
    sf.script_rest(&[(
        400,
        r#"[{"message":"invalid query locator","errorCode":"INVALID_QUERY_LOCATOR"}]"#,
    )]);
    let (k, message) = kind(Plugin::new(&host).sync_users(first.cursor.as_deref()));
    assert_eq!(k, ErrorKind::InvalidInput);
    assert!(
        message.starts_with("user sync stopped after 2,000 of 5,000 users: Salesforce no longer knows this sync's position"),
        "{message}"
    );
    assert!(message.ends_with("sync again"), "{message}");
    assert_eq!(sync(&host).last().map(|s| s.fetched), Some(5_000));
}
