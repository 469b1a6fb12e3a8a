//! An agent's sign-in against the fake host and fake Salesforce: success,
//! denial, a deactivated user, expiry, replay, revocation, and the bound
//! on pending sign-ins.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::bindings::ErrorKind;
use crate::testing::{CALLBACK, FakeHost, FakeSalesforce, configured, connected};

/// The agent who signs in: a second user of the org.
const AGENT: &str = "005000000000002AAA";

fn params(url: &str) -> BTreeMap<String, String> {
    Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn begin(host: &FakeHost) -> SignInRequest {
    SignIn::new(host)
        .begin(CALLBACK)
        .unwrap_or_else(|e| panic!("begin: {e}"))
}

/// `complete`'s answer, the error as text ("expired", "denied: why", ...).
fn complete(host: &FakeHost, query: &str) -> Result<String, String> {
    SignIn::new(host)
        .complete(CALLBACK, query)
        .map_err(|e| match e {
            SignInError::Denied(why) => format!("denied: {why}"),
            SignInError::Inactive(why) => format!("inactive: {why}"),
            SignInError::Expired => "expired".to_string(),
            SignInError::Failed(e) => format!("failed ({:?}): {}", e.kind, e.message),
        })
}

fn pending(host: &FakeHost) -> Vec<String> {
    host.kv_keys()
        .into_iter()
        .filter(|k| k.starts_with(keys::SIGN_IN_PREFIX))
        .collect()
}

/// The access and refresh tokens the fake has issued so far.
fn issued_tokens(sf: &FakeSalesforce) -> BTreeSet<String> {
    sf.issued()
        .into_iter()
        .filter(|t| !t.starts_with("aPrx"))
        .collect()
}

/// Every token the fake issued since `before` is revoked and dead.
fn all_revoked_since(sf: &FakeSalesforce, before: &BTreeSet<String>) {
    let new: Vec<String> = issued_tokens(sf).difference(before).cloned().collect();
    assert!(!new.is_empty(), "no token was issued");
    for token in &new {
        assert!(!sf.is_live(token), "{token} is still live");
        assert!(sf.revoked().contains(token), "{token} was not revoked");
    }
}

#[test]
fn begin_asks_only_for_identity_with_pkce_and_a_fresh_login() {
    let (host, _sf) = configured();
    let request = begin(&host);
    let p = params(&request.url);
    assert!(
        request
            .url
            .starts_with("https://login.salesforce.com/services/oauth2/authorize?")
    );
    assert_eq!(p.get("scope").map(String::as_str), Some("openid"));
    assert_eq!(p.get("prompt").map(String::as_str), Some("login"));
    assert_eq!(
        p.get("code_challenge_method").map(String::as_str),
        Some("S256")
    );
    assert_eq!(p.get("redirect_uri").map(String::as_str), Some(CALLBACK));
    assert_eq!(p.get("state"), Some(&request.state));
    assert!(p.get("code_challenge").is_some_and(|c| c.len() == 43));
    assert_eq!(request.expires_at_ms, host.now_ms() + oauth::ATTEMPT_TTL_MS);
    assert_eq!(pending(&host), vec![keys::sign_in(&request.state)]);
    assert!(
        host.kv_keys()
            .iter()
            .all(|k| !k.starts_with(keys::ATTEMPT_PREFIX)),
        "an agent's sign-in is not an administrator's authorization attempt"
    );
    assert!(
        host.opened().is_empty(),
        "the host decides where the page opens"
    );
}

#[test]
fn begin_needs_the_app_settings() {
    let (host, _sf) = crate::testing::fake_org(crate::testing::NOW);
    let error = SignIn::new(&host)
        .begin(CALLBACK)
        .err()
        .map(|e| e.to_string());
    assert!(
        error.is_some_and(|e| e.contains("Consumer Key")),
        "needs the key"
    );
    assert!(pending(&host).is_empty());
}

#[test]
fn a_signed_in_agent_is_answered_with_the_user_id_and_keeps_no_token() {
    let (host, sf) = connected();
    let before = issued_tokens(&sf);
    let request = begin(&host);
    let query = sf.allow_as(&request.url, AGENT);
    assert_eq!(complete(&host, &query), Ok(AGENT.to_string()));

    all_revoked_since(&sf, &before);
    assert!(pending(&host).is_empty(), "the state is used up");
    let dump = host.kv_dump();
    for token in issued_tokens(&sf).difference(&before) {
        assert!(
            !dump.contains(token.as_str()),
            "a token of the agent was stored"
        );
    }
    // The administrator's connection is untouched.
    assert!(crate::testing::tokens(&host).is_some_and(|t| sf.is_live(&t.access_token)));
}

#[test]
fn an_access_token_alone_is_revoked_too() {
    let (host, sf) = configured();
    sf.set_no_refresh(true);
    let request = begin(&host);
    let query = sf.allow_as(&request.url, AGENT);
    assert_eq!(complete(&host, &query), Ok(AGENT.to_string()));
    all_revoked_since(&sf, &BTreeSet::new());
}

#[test]
fn a_declined_sign_in_is_denied_and_used_up() {
    let (host, sf) = configured();
    let request = begin(&host);
    let query = sf.deny(&request.url);
    assert_eq!(
        complete(&host, &query),
        Err("denied: end-user denied authorization".into())
    );
    assert!(pending(&host).is_empty());
    assert_eq!(complete(&host, &query), Err("expired".into()));
    assert_eq!(sf.code_grants(), 0);
}

#[test]
fn a_denial_for_an_unknown_state_is_expired() {
    let (host, _sf) = configured();
    let forged = "error=access_denied&state=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    assert_eq!(complete(&host, forged), Err("expired".into()));
    assert_eq!(
        complete(&host, "error=access_denied"),
        Err("expired".into())
    );
    assert_eq!(
        complete(&host, "code=x&state=../settings"),
        Err("expired".into())
    );
}

#[test]
fn a_user_deactivated_after_logging_in_is_inactive_and_revoked() {
    let (host, sf) = configured();
    let request = begin(&host);
    let query = sf.allow_as(&request.url, AGENT);
    sf.deactivate(AGENT);
    let answer = complete(&host, &query);
    assert!(
        answer.as_ref().is_err_and(
            |e| e.starts_with("inactive: ") && e.contains(&format!("{AGENT}@example.org"))
        ),
        "{answer:?}"
    );
    all_revoked_since(&sf, &BTreeSet::new());
}

#[test]
fn a_user_the_token_endpoint_calls_inactive_is_inactive() {
    let (host, sf) = configured();
    let request = begin(&host);
    let query = sf.allow_as(&request.url, AGENT);
    sf.deactivate_before_token(AGENT);
    let answer = complete(&host, &query);
    assert!(
        answer.as_ref().is_err_and(|e| e.starts_with("inactive: ")),
        "{answer:?}"
    );
    assert!(issued_tokens(&sf).is_empty());
}

#[test]
fn a_sign_in_expires_after_ten_minutes() {
    let (host, sf) = configured();
    let request = begin(&host);
    let query = sf.allow_as(&request.url, AGENT);
    host.advance_ms(oauth::ATTEMPT_TTL_MS);
    assert_eq!(complete(&host, &query), Err("expired".into()));
    assert_eq!(sf.code_grants(), 0, "an expired sign-in exchanges no code");
    assert!(pending(&host).is_empty());
}

#[test]
fn a_replayed_callback_is_expired_and_exchanges_nothing() {
    let (host, sf) = configured();
    let request = begin(&host);
    let query = sf.allow_as(&request.url, AGENT);
    assert_eq!(complete(&host, &query), Ok(AGENT.to_string()));
    let grants = sf.code_grants();
    assert_eq!(complete(&host, &query), Err("expired".into()));
    assert_eq!(sf.code_grants(), grants);
}

#[test]
fn the_administrators_callback_does_not_complete_a_sign_in() {
    let (host, sf) = configured();
    let auth = crate::plugin::Plugin::new(&host)
        .begin_authorization(CALLBACK)
        .unwrap_or_else(|e| panic!("{e}"));
    let query = sf.allow(&auth.url);
    assert_eq!(complete(&host, &query), Err("expired".into()));
}

#[test]
fn a_failed_exchange_is_failed_with_a_reason() {
    let (host, sf) = configured();
    let request = begin(&host);
    let query = sf.allow_as(&request.url, AGENT);
    // Another code than the one issued.
    let forged = query.replace("code=aPrxCODE", "code=aPrxOTHER");
    let answer = complete(&host, &forged);
    assert!(
        answer.as_ref().is_err_and(
            |e| e.starts_with(&format!("failed ({:?})", ErrorKind::AuthorizationFailed))
        ),
        "{answer:?}"
    );
}

#[test]
fn at_most_200_sign_ins_wait_and_the_oldest_goes_first() {
    let (host, sf) = configured();
    let first = begin(&host);
    let mut last = None;
    for _ in 1..MAX_PENDING {
        host.advance_ms(1);
        last = Some(begin(&host));
    }
    assert_eq!(pending(&host).len(), MAX_PENDING);
    host.advance_ms(1);
    let newest = begin(&host);
    let waiting = pending(&host);
    assert_eq!(waiting.len(), MAX_PENDING);
    assert!(
        !waiting.contains(&keys::sign_in(&first.state)),
        "the oldest was dropped"
    );
    assert!(waiting.contains(&keys::sign_in(&newest.state)));
    let query = sf.allow_as(&first.url, AGENT);
    assert_eq!(complete(&host, &query), Err("expired".into()));
    let Some(last) = last else {
        panic!("no sign-in")
    };
    let query = sf.allow_as(&last.url, AGENT);
    assert_eq!(complete(&host, &query), Ok(AGENT.to_string()));
}

#[test]
fn expired_sign_ins_make_room_before_live_ones() {
    let (host, _sf) = configured();
    let old = begin(&host);
    host.advance_ms(oauth::ATTEMPT_TTL_MS);
    let mut live = Vec::new();
    for _ in 1..MAX_PENDING {
        host.advance_ms(1);
        live.push(begin(&host).state);
    }
    begin(&host);
    let waiting = pending(&host);
    assert!(!waiting.contains(&keys::sign_in(&old.state)));
    assert!(live.iter().all(|s| waiting.contains(&keys::sign_in(s))));
}
