//! The REST client end to end against the fake host and fake Salesforce:
//! its paths, the session refresh (one refresh across concurrent
//! instances), the back-off after limits and outages, and typed errors.

use std::sync::{Arc, Barrier};

use serde_json::Value;

use crate::auth::Tokens;
use crate::bindings::ErrorKind;
use crate::bindings::exports::pbx::crm::integration::ConnectionState;
use crate::bindings::pbx::crm::http_fetch::{self, Denial, Method};
use crate::host::Host as _;
use crate::plugin::Plugin;
use crate::salesforce::{QueryPage, Salesforce, SalesforceError};
use crate::store::keys;
use crate::testing::{INSTANCE, KEY, SECRET};
use crate::testing::{NOW, api_err, configured, connect, connected, limits, tokens};

use super::*;

#[test]
fn paths_are_relative_to_the_api_version_unless_absolute() {
    assert_eq!(
        api_url("https://na1.salesforce.com/", "sobjects/Task/"),
        "https://na1.salesforce.com/services/data/v67.0/sobjects/Task/"
    );
    assert_eq!(
        api_url(
            "https://na1.salesforce.com",
            "/services/data/v67.0/query/01g-2000"
        ),
        "https://na1.salesforce.com/services/data/v67.0/query/01g-2000"
    );
    assert_eq!(
        query::query_path("SELECT Id FROM User WHERE Name = 'A+B'"),
        "query?q=SELECT%20Id%20FROM%20User%20WHERE%20Name%20%3D%20%27A%2BB%27"
    );
}

// --- the REST client: refresh ----------------------------------------------

#[test]
fn an_expired_session_is_refreshed_once_and_the_request_retried() {
    let (host, sf) = connected();
    assert!(limits(&host).is_ok());
    sf.expire_sessions();
    host.clear_requests();

    let result = limits(&host).map_err(|e| e.to_string());
    assert!(result.is_ok(), "{result:?}");
    let requests = host.requests();
    let urls: Vec<&str> = requests.iter().map(|r| r.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "https://acme.my.salesforce.com/services/data/v67.0/limits",
            "https://login.salesforce.com/services/oauth2/token",
            "https://acme.my.salesforce.com/services/data/v67.0/limits",
        ]
    );
    let form = requests[1].form();
    assert_eq!(
        form.get("grant_type").map(String::as_str),
        Some("refresh_token")
    );
    assert_eq!(form.get("client_id").map(String::as_str), Some(KEY));
    assert_eq!(form.get("client_secret").map(String::as_str), Some(SECRET));
    assert!(
        form.get("refresh_token")
            .is_some_and(|t| t.starts_with("5Aep861"))
    );
    assert_ne!(
        requests[0].header("authorization"),
        requests[2].header("authorization")
    );
    assert_eq!(sf.refresh_grants(), 1);
    let t = tokens(&host);
    assert_eq!(t.as_ref().map(|t| t.generation), Some(2));
    // Without rotation the refresh token stays.
    assert_eq!(
        t.and_then(|t| t.refresh_token),
        form.get("refresh_token").cloned()
    );
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
}

#[test]
fn a_rotated_refresh_token_is_stored() {
    let (host, sf) = connected();
    sf.set_rotate(true);
    let first = tokens(&host)
        .and_then(|t| t.refresh_token)
        .unwrap_or_default();
    sf.expire_sessions();
    assert!(limits(&host).is_ok());
    let second = tokens(&host)
        .and_then(|t| t.refresh_token)
        .unwrap_or_default();
    assert_ne!(first, second);
    assert!(!sf.refresh_token_is_live(&first));
    assert!(sf.refresh_token_is_live(&second));
    // The stored one works for the next refresh too.
    sf.expire_sessions();
    assert!(limits(&host).is_ok());
    assert_eq!(sf.refresh_grants(), 2);
    assert_eq!(tokens(&host).map(|t| t.generation), Some(3));
}

#[test]
fn a_refused_refresh_token_needs_reauthorization_and_keeps_the_rest() {
    let (host, sf) = connected();
    host.kv_put("associations/users", r#"{"005A":"1001"}"#);
    let settings_before = host.kv_text(keys::SETTINGS);
    sf.expire_sessions();
    sf.kill_refresh_tokens();

    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::NotConnected);
    assert_eq!(
        m,
        "Salesforce refused the stored refresh token (expired access/refresh token): authorize again from the PBX portal (click Save)"
    );
    let status = Plugin::new(&host).status();
    assert_eq!(status.state, ConnectionState::ReauthorizationNeeded);
    assert_eq!(status.message, m);
    assert_eq!(
        status.account.as_deref(),
        Some("admin@example.org (org 00D000000000001AAA)")
    );
    assert!(tokens(&host).is_none());
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
    assert_eq!(host.kv_text(keys::SETTINGS), settings_before);
    assert!(host.kv_text("associations/users").is_some());

    // Later calls fail fast with the same reason, sending nothing.
    host.clear_requests();
    let (k, m2) = api_err(limits(&host));
    assert_eq!((k, m2), (ErrorKind::NotConnected, m));
    assert!(host.requests().is_empty());

    // Authorizing again connects.
    assert_eq!(
        connect(&host, &sf)
            .map(|s| s.state)
            .map_err(|e| e.to_string()),
        Ok(ConnectionState::Connected)
    );
    assert!(limits(&host).is_ok());
}

#[test]
fn without_a_refresh_token_an_expired_session_needs_reauthorization() {
    let (host, sf) = configured();
    sf.set_no_refresh(true);
    assert!(connect(&host, &sf).is_ok());
    sf.expire_sessions();
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::NotConnected);
    assert!(m.contains("refresh_token, offline_access"), "{m}");
    assert_eq!(sf.refresh_grants(), 0);
    assert_eq!(
        Plugin::new(&host).status().state,
        ConnectionState::ReauthorizationNeeded
    );
}

#[test]
fn twenty_instances_hitting_an_expired_session_refresh_once() {
    let (host, sf) = connected();
    host.use_real_sleep();
    // A slow token endpoint makes the others find the lease held.
    sf.set_token_delay_ms(60);
    sf.expire_sessions();
    host.clear_requests();
    let barrier = Barrier::new(20);
    let results: Vec<Result<Value, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    // Each thread is its own instance over the shared host.
                    Salesforce::new(&host)
                        .get::<Value>("limits")
                        .map_err(|e| e.to_string())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into())))
            .collect()
    });
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    assert_eq!(
        sf.refresh_grants(),
        1,
        "exactly one refresh reached Salesforce"
    );
    assert!(
        host.sleeps() > 0,
        "some instances waited for the lease holder"
    );
    let token_requests = host
        .requests()
        .iter()
        .filter(|r| r.url.ends_with("/oauth2/token"))
        .count();
    assert_eq!(token_requests, 1);
    assert_eq!(tokens(&host).map(|t| t.generation), Some(2));
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
}

#[test]
fn a_lapsed_lease_of_a_crashed_instance_is_taken_over() {
    let (host, sf) = connected();
    sf.expire_sessions();
    host.kv_put(
        keys::REFRESH_LEASE,
        &format!(
            r#"{{"holder":"crashed","expires_at_ms":{},"generation":1}}"#,
            NOW + 5_000
        ),
    );
    let result = limits(&host).map_err(|e| e.to_string());
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(sf.refresh_grants(), 1);
    assert!(
        host.now_ms() >= NOW + 5_000,
        "waited for the lease to lapse"
    );
    assert!(host.sleeps() > 0);
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
}

#[test]
fn a_lease_that_never_ends_makes_the_wait_give_up() {
    let (host, sf) = connected();
    sf.expire_sessions();
    host.kv_put(
        keys::REFRESH_LEASE,
        &format!(
            r#"{{"holder":"slow","expires_at_ms":{},"generation":1}}"#,
            NOW + 3_600_000
        ),
    );
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::CrmUnavailable);
    assert!(m.contains("still refreshing"), "{m}");
    assert_eq!(sf.refresh_grants(), 0);
    let waited = host.now_ms() - NOW;
    assert!((8_000..9_000).contains(&waited), "waited {waited} ms");
}

#[test]
fn a_session_refreshed_by_another_instance_is_just_used() {
    let (host, sf) = connected();
    sf.expire_sessions();
    let Some(old) = tokens(&host) else {
        panic!("not connected");
    };
    // Instance A got a 401 and refreshes.
    let a = Salesforce::new(&host).session_after_expiry(&old);
    assert!(a.is_ok_and(|t| t.generation == 2));
    assert_eq!(sf.refresh_grants(), 1);
    // Instance B's request with the old session got its 401 later: it
    // re-reads the tokens and uses A's session, without a second refresh.
    let b = Salesforce::new(&host).session_after_expiry(&old);
    assert!(b.is_ok_and(|t| t.generation == 2));
    assert_eq!(sf.refresh_grants(), 1);
}

#[test]
fn a_refresh_finished_just_before_taking_the_lease_is_not_repeated() {
    let (host, sf) = connected();
    let Some(old) = tokens(&host) else {
        panic!("not connected");
    };
    // This instance read the old tokens and found no lease; right before its
    // lease batch commits, another instance finishes a refresh (new tokens,
    // lease deleted). The lease batch must fail on the tokens precondition
    // so this instance uses the new session instead of refreshing again.
    let newer = Tokens {
        access_token: "someone-elses-session".into(),
        generation: old.generation + 1,
        ..old.clone()
    };
    let bytes = serde_json::to_vec(&newer).unwrap_or_default();
    host.before_next_batch(move |kv| {
        kv.insert(keys::TOKENS.into(), bytes);
    });
    let got = Salesforce::new(&host).session_after_expiry(&old);
    assert!(got.is_ok_and(|t| t.access_token == "someone-elses-session"));
    assert_eq!(sf.refresh_grants(), 0);
    assert!(host.kv_text(keys::REFRESH_LEASE).is_none());
}

// --- the REST client: limits, outages, errors ------------------------------

#[test]
fn the_api_limit_backs_off_without_sending_and_clears_after_success() {
    let (host, sf) = connected();
    sf.script_rest(&[(
        403,
        r#"[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]"#,
    )]);
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::RateLimited);
    assert_eq!(
        m,
        "Salesforce's API limit was reached (TotalRequests Limit exceeded.); the PBX retries after 22:13:25 UTC"
    );
    let status = Plugin::new(&host).status();
    assert_eq!(status.state, ConnectionState::Connected);
    assert_eq!(status.problem.as_deref(), Some(m.as_str()));

    // During the back-off nothing is sent.
    host.clear_requests();
    for _ in 0..5 {
        let (k, _) = api_err(limits(&host));
        assert_eq!(k, ErrorKind::RateLimited);
    }
    host.advance_ms(4_999);
    assert_eq!(api_err(limits(&host)).0, ErrorKind::RateLimited);
    assert!(host.requests().is_empty(), "no request during the back-off");

    // After it, one request goes out; success clears the problem.
    host.advance_ms(1);
    assert!(limits(&host).is_ok());
    assert_eq!(host.requests().len(), 1);
    assert!(host.kv_text(keys::BACKOFF).is_none());
    assert_eq!(Plugin::new(&host).status().problem, None);
}

#[test]
fn outages_back_off_doubling_from_five_seconds() {
    let (host, sf) = connected();
    sf.script_rest(&[(503, "<html>down</html>"), (500, "[]"), (503, "")]);
    let mut waits = Vec::new();
    for _ in 0..3 {
        let (k, m) = api_err(limits(&host));
        assert_eq!(k, ErrorKind::CrmUnavailable, "{m}");
        assert!(m.starts_with("Salesforce is unavailable (HTTP 5"), "{m}");
        let until = host
            .kv_json(keys::BACKOFF)
            .and_then(|b| b["until_ms"].as_u64())
            .unwrap_or(0);
        waits.push(until - host.now_ms());
        host.set_now_ms(until);
    }
    assert_eq!(waits, [5_000, 10_000, 20_000]);
    assert!(limits(&host).is_ok());
    assert!(host.kv_text(keys::BACKOFF).is_none());
}

#[test]
fn salesforce_errors_reach_callers_typed() {
    let (host, sf) = connected();
    sf.script_rest(&[(
        400,
        r#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#,
    )]);
    let result =
        Salesforce::new(&host).post_json::<_, Value>("sobjects/Contact/", &serde_json::json!({}));
    match result {
        Err(SalesforceError::Api(api)) => {
            assert_eq!(api.status, 400);
            assert!(api.has_code("REQUIRED_FIELD_MISSING"));
            assert_eq!(api.errors[0].fields, ["LastName"]);
        }
        other => panic!("{:?}", other.map_err(|e| e.to_string())),
    }
    let post = host.requests().pop();
    assert!(post.as_ref().is_some_and(|r| r.method == Method::Post
        && r.header("content-type") == Some("application/json")
        && r.body == "{}"));
}

#[test]
fn queries_follow_next_records_url() {
    let (host, _sf) = connected();
    let records: Result<Vec<Value>, _> = Salesforce::new(&host).query("SELECT Id FROM User");
    let ids: Vec<String> = records
        .map_err(|e| e.to_string())
        .unwrap_or_default()
        .iter()
        .map(|r| r["Id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, ["1", "2", "3"]);
    let urls: Vec<String> = host.requests().into_iter().map(|r| r.url).collect();
    assert_eq!(
        urls,
        [
            "https://acme.my.salesforce.com/services/data/v67.0/query?q=SELECT%20Id%20FROM%20User",
            "https://acme.my.salesforce.com/services/data/v67.0/query/01gNEXT-2",
        ]
    );
    let page: Result<QueryPage<Value>, _> =
        Salesforce::new(&host).query_page("SELECT Id FROM User");
    assert!(page.is_ok_and(|p| !p.done && p.total_size == 3));
}

#[test]
fn rest_calls_without_a_connection_say_what_to_do() {
    let (host, _sf) = configured();
    let (k, m) = api_err(limits(&host));
    assert_eq!(k, ErrorKind::NotConnected);
    assert!(m.contains("not connected to Salesforce"), "{m}");
    assert!(host.requests().is_empty());
}

#[test]
fn a_denied_instance_host_names_the_grant() {
    let (host, sf) = connected();
    let sf2 = Arc::clone(&sf);
    host.on_fetch(move |req| {
        if req.url.starts_with(INSTANCE) {
            Err(http_fetch::Error::Denied(Denial {
                host: INSTANCE.into(),
                rule: "not granted by the operator".into(),
            }))
        } else {
            sf2.handle(req)
        }
    });
    let (_, m) = api_err(limits(&host));
    assert!(
        m.contains("pbx-host serve --grant salesforce=https://acme.my.salesforce.com"),
        "{m}"
    );
}

// --- the REST client: the org's API use -------------------------------------

fn stored_usage(host: &crate::testing::FakeHost) -> Option<(u64, u64)> {
    let v = host.kv_json(keys::API_USAGE)?;
    Some((v["used"].as_u64()?, v["limit"].as_u64()?))
}

#[test]
fn the_api_use_of_every_answer_is_kept_but_written_only_when_it_moved() {
    let (host, sf) = connected();
    assert!(limits(&host).is_ok());
    assert_eq!(stored_usage(&host), None, "no header, nothing kept");
    sf.set_api_usage(1_000, 15_000);
    assert!(limits(&host).is_ok());
    assert_eq!(stored_usage(&host), Some((1_001, 15_000)));
    // 1 % of 15,000 is 150 requests: fewer move nothing.
    for _ in 0..100 {
        assert!(limits(&host).is_ok());
    }
    assert_eq!(stored_usage(&host), Some((1_001, 15_000)));
    sf.set_api_usage(1_150, 15_000);
    assert!(limits(&host).is_ok());
    assert_eq!(stored_usage(&host), Some((1_151, 15_000)));
    // An error answer carries the figures too.
    sf.set_api_usage(14_000, 15_000);
    sf.script_rest(&[(404, r#"[{"message":"gone","errorCode":"NOT_FOUND"}]"#)]);
    assert!(limits(&host).is_err());
    assert_eq!(stored_usage(&host), Some((14_001, 15_000)));
}

#[test]
fn the_status_shows_the_api_use_and_above_ninety_percent_says_what_waits() {
    let (host, sf) = connected();
    sf.set_api_usage(7_499, 15_000);
    assert!(limits(&host).is_ok());
    let status = Plugin::new(&host).status();
    assert_eq!(status.message, "Connected to Salesforce");
    let figures = |s: &crate::bindings::exports::pbx::crm::integration::Status| {
        s.api_usage.as_ref().map(|u| (u.used, u.limit))
    };
    assert_eq!(figures(&status), Some((7_500, 15_000)));
    assert_eq!(status.problem, None);
    sf.set_api_usage(13_600, 15_000);
    assert!(limits(&host).is_ok());
    let status = Plugin::new(&host).status();
    assert_eq!(figures(&status), Some((13_601, 15_000)));
    let problem = status.problem.unwrap_or_default();
    assert!(
        problem.contains("above 90 % of the org's daily limit (13,601 of 15,000, 90 %)")
            && problem.contains("user syncs and new records for unknown callers wait")
            && problem.contains("calls are still logged"),
        "{problem}"
    );
    assert!(
        host.logs().iter().any(|l| l.contains("above 90 %")),
        "crossing is logged: {:?}",
        host.logs()
    );
}

#[test]
fn above_ninety_percent_a_user_sync_waits_and_resumes_when_the_use_falls() {
    let (host, sf) = connected();
    sf.set_users(vec![crate::testing::sf_user(
        0,
        "Ada Agent",
        Some("ada@example.org"),
    )]);
    sf.set_api_usage(13_700, 15_000);
    assert!(limits(&host).is_ok());
    host.clear_requests();
    let plugin = Plugin::new(&host);
    let (k, m) = crate::testing::err(plugin.sync_users(None));
    assert_eq!(k, ErrorKind::RateLimited);
    assert!(
        m.contains("above 90 % of the org's daily limit (13,701 of 15,000, 91 %)")
            && m.contains("the user sync waits until it falls below 90 %"),
        "{m}"
    );
    assert!(host.requests().is_empty(), "nothing is sent");
    // Within ten minutes the kept figure is trusted; later it is asked
    // again (one `limits` request), and a use that fell lets the sync run.
    host.advance_ms(limits::RECHECK_MS - 1);
    assert!(plugin.sync_users(None).is_err());
    assert!(host.requests().is_empty());
    sf.set_api_usage(2_000, 15_000);
    host.advance_ms(1);
    let step = plugin.sync_users(None);
    assert!(step.is_ok(), "{:?}", step.err());
    let urls: Vec<String> = host.requests().iter().map(|r| r.url.clone()).collect();
    assert_eq!(
        urls.first().map(String::as_str),
        Some("https://acme.my.salesforce.com/services/data/v67.0/limits/"),
        "{urls:?}"
    );
    assert!(
        urls.iter().skip(1).any(|u| u.contains("/query")),
        "{urls:?}"
    );
    assert_eq!(stored_usage(&host).map(|u| u.0 < 2_100), Some(true));
}
