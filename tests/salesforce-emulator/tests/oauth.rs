//! The OAuth web-server flow over HTTPS.

mod common;

use std::time::Duration;

use common::*;
use salesforce_emulator::{EmulatorConfig, RefreshTokenPolicy, pkce_challenge, signature};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_with_pkce_signature_and_single_use_code() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let code = get_code(&emu, &client).await;
    let (status, tok) = code_grant(&emu, &client, &code).await;
    assert_eq!(status, 200, "{tok}");
    for field in [
        "access_token",
        "refresh_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    ] {
        assert!(tok[field].is_string(), "{field} in {tok}");
    }
    assert!(tok.get("expires_in").is_none());
    assert_eq!(tok["instance_url"], emu.base_url());
    assert_eq!(tok["token_type"], "Bearer");
    assert_eq!(tok["scope"], "api refresh_token");
    let id = tok["id"].as_str().unwrap();
    assert!(
        id.starts_with(&format!("{}/id/{}/005", emu.base_url(), emu.org_id())),
        "{id}"
    );
    assert_eq!(
        tok["signature"],
        signature(SECRET, id, tok["issued_at"].as_str().unwrap())
    );

    // Single use.
    let (status, err) = code_grant(&emu, &client, &code).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // The identity URL and userinfo answer with the token.
    let access = tok["access_token"].as_str().unwrap();
    let ident: serde_json::Value = client
        .get(id)
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ident["username"], "admin@example.org");
    assert_eq!(ident["organization_id"], emu.org_id());
    assert!(
        ident["urls"]["rest"]
            .as_str()
            .unwrap()
            .contains("{version}")
    );
    let ui: serde_json::Value = api_get(&emu, &client, access, "/services/oauth2/userinfo")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ui["preferred_username"], "admin@example.org");
    let bad = client.get(id).bearer_auth("nope").send().await.unwrap();
    assert_eq!(bad.status(), 403);
    let oidc: serde_json::Value = client
        .get(format!(
            "{}/.well-known/openid-configuration",
            emu.base_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        oidc["token_endpoint"],
        format!("{}/services/oauth2/token", emu.base_url())
    );
    assert_eq!(emu.token_stats().authorization_code_grants, 1);
    assert_eq!(emu.token_stats().failed_token_requests, 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_checks() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let code = get_code(&emu, &client).await;
    let base = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("client_id", KEY),
        ("client_secret", SECRET),
        ("redirect_uri", CALLBACK),
        ("code_verifier", VERIFIER),
    ];
    let with = |k: &str, v: &'static str| {
        base.iter()
            .map(|(a, b)| if *a == k { (*a, v) } else { (*a, *b) })
            .collect::<Vec<_>>()
    };
    let cases = [
        (
            with(
                "code_verifier",
                "wrong-verifier-wrong-verifier-wrong-verifier",
            ),
            "invalid_grant",
            "invalid code verifier",
        ),
        (
            with("client_secret", "wrong"),
            "invalid_client",
            "invalid client credentials",
        ),
        (
            with("redirect_uri", "https://pbx.example.com/other"),
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
        ),
        (
            with("client_id", "unknown"),
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            with("grant_type", "password"),
            "unsupported_grant_type",
            "grant type not supported",
        ),
        (
            with("code", "aPrxbogus"),
            "invalid_grant",
            "invalid authorization code",
        ),
    ];
    for (form, error, desc) in cases {
        let (status, body) = exchange(&emu, &client, &form).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], error, "{body}");
        assert_eq!(body["error_description"], desc, "{body}");
    }
    // None of the failures used the code up.
    let (status, _) = exchange(&emu, &client, &base).await;
    assert_eq!(status, 200);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_expire() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    emu.set_code_lifetime(KEY, Duration::ZERO).unwrap();
    let code = get_code(&emu, &client).await;
    let (status, body) = code_grant(&emu, &client, &code).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("expired authorization code"))
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_errors_and_deny() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let mut b = Browser::new(&emu, &client);
    // Unknown client and redirect mismatch: an error page, no redirect.
    let r = b.get("/services/oauth2/authorize?response_type=code&client_id=nope&redirect_uri=https%3A%2F%2Fx").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("invalid_client_id"));
    let r = b
        .get(&format!("/services/oauth2/authorize?response_type=code&client_id={KEY}&redirect_uri=https%3A%2F%2Fevil.example.com%2Fcb"))
        .await;
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("redirect_uri_mismatch"));

    // Wrong password: the login page again.
    let page = b
        .get(&authorize_url("s1", None))
        .await
        .text()
        .await
        .unwrap();
    let start_url = form_field(&page, "startURL").unwrap();
    let r = b
        .post_form(
            "/login",
            &[
                ("username", "admin@example.org"),
                ("password", "bad"),
                ("startURL", &start_url),
            ],
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("check your username and password")
    );

    // Deny redirects with access_denied and the state.
    let html = b
        .login_and_get_consent(
            &authorize_url("st-deny", None),
            "admin@example.org",
            "emulator",
        )
        .await;
    assert!(html.contains("id=\"allow\"") && html.contains("id=\"deny\""));
    let cb = b.answer_consent(&html, "deny").await;
    let q: std::collections::HashMap<_, _> = cb.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "st-deny");
    assert!(q.contains_key("error_description"));

    // With a session cookie, authorize goes straight to consent; a consent
    // form cannot be answered twice.
    let html = b
        .get(&authorize_url("again", None))
        .await
        .text()
        .await
        .unwrap();
    let pending = form_field(&html, "pending").unwrap();
    let first = b
        .post_form(
            "/services/oauth2/authorize/consent",
            &[("pending", &pending), ("action", "allow")],
        )
        .await;
    assert_eq!(first.status(), 302);
    let second = b
        .post_form(
            "/services/oauth2/authorize/consent",
            &[("pending", &pending), ("action", "allow")],
        )
        .await;
    assert_eq!(second.status(), 400);

    // PKCE required: no challenge -> redirect with invalid_request.
    emu.set_pkce_required(KEY, true).unwrap();
    let r = b.get(&authorize_url("p", None)).await;
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap();
    assert!(
        loc.starts_with(CALLBACK) && loc.contains("error=invalid_request"),
        "{loc}"
    );
    let r = b.get(&authorize_url("p", Some("too-short"))).await;
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("error=invalid_request")
    );
    let r = b.get(&authorize_url("p", Some(&pkce_challenge("v")))).await;
    assert_eq!(r.status(), 200);
    emu.shutdown().await;
}

async fn refresh(
    emu: &salesforce_emulator::Emulator,
    client: &reqwest::Client,
    rt: &str,
) -> (u16, serde_json::Value) {
    exchange(
        emu,
        client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", KEY),
            ("client_secret", SECRET),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_with_and_without_rotation_and_revoke() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let (_, tok) = code_grant(&emu, &client, &get_code(&emu, &client).await).await;
    let rt = tok["refresh_token"].as_str().unwrap().to_string();

    // Without rotation: a new access token, no refresh token, the old one lives on.
    let (status, r1) = refresh(&emu, &client, &rt).await;
    assert_eq!(status, 200, "{r1}");
    assert!(r1.get("refresh_token").is_none());
    assert_ne!(r1["access_token"], tok["access_token"]);
    assert_eq!(
        r1["signature"],
        signature(
            SECRET,
            r1["id"].as_str().unwrap(),
            r1["issued_at"].as_str().unwrap()
        )
    );
    assert_eq!(refresh(&emu, &client, &rt).await.0, 200);

    // With rotation: a new refresh token each time, the old one dies.
    emu.set_refresh_token_rotation(KEY, true).unwrap();
    let (_, r2) = refresh(&emu, &client, &rt).await;
    let rt2 = r2["refresh_token"].as_str().expect("rotated").to_string();
    assert_ne!(rt2, rt);
    let (status, dead) = refresh(&emu, &client, &rt).await;
    assert_eq!(
        (status, dead["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(dead["error_description"], "expired access/refresh token");
    assert_eq!(refresh(&emu, &client, &rt2).await.0, 200);

    // Wrong secret on refresh.
    let (status, body) = exchange(
        &emu,
        &client,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt2),
            ("client_id", KEY),
            ("client_secret", "x"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_client"))
    );

    // Policy: immediately expire.
    emu.set_refresh_token_rotation(KEY, false).unwrap();
    let (_, fresh) = code_grant(&emu, &client, &get_code(&emu, &client).await).await;
    let fresh_rt = fresh["refresh_token"].as_str().unwrap().to_string();
    emu.set_refresh_token_policy(KEY, RefreshTokenPolicy::ImmediatelyExpire)
        .unwrap();
    assert_eq!(refresh(&emu, &client, &fresh_rt).await.0, 400);
    emu.set_refresh_token_policy(KEY, RefreshTokenPolicy::UntilRevoked)
        .unwrap();

    // Revoke: the refresh token and its sessions die.
    let (_, t3) = code_grant(&emu, &client, &get_code(&emu, &client).await).await;
    let rt3 = t3["refresh_token"].as_str().unwrap();
    let access3 = t3["access_token"].as_str().unwrap();
    assert_eq!(
        api_get(&emu, &client, access3, "/services/data/v67.0/limits")
            .await
            .status(),
        200
    );
    let r = client
        .post(format!("{}/services/oauth2/revoke", emu.base_url()))
        .form(&[("token", rt3)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        api_get(&emu, &client, access3, "/services/data/v67.0/limits")
            .await
            .status(),
        401
    );
    assert_eq!(refresh(&emu, &client, rt3).await.0, 400);
    let r = client
        .post(format!("{}/services/oauth2/revoke", emu.base_url()))
        .form(&[("token", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["error"],
        "invalid_token"
    );

    // The admin fault revokes every refresh token.
    emu.revoke_refresh_tokens();
    assert_eq!(refresh(&emu, &client, &rt2).await.0, 400);

    let stats = emu.token_stats();
    assert_eq!(stats.refresh_grants, 4);
    assert_eq!(stats.revocations, 1);
    assert_eq!(stats.per_app[KEY].authorization_code_grants, 3);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_users_cannot_log_in_or_refresh() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let id = emu
        .add_user(salesforce_emulator::NewUser {
            first_name: "Ann".into(),
            last_name: "Lee".into(),
            email: "ann@example.org".into(),
            password: Some("pw".into()),
            ..Default::default()
        })
        .unwrap();
    let mut b = Browser::new(&emu, &client);
    let html = b
        .login_and_get_consent(&authorize_url("s", None), "ann@example.org", "pw")
        .await;
    let cb = b.answer_consent(&html, "allow").await;
    let code = cb
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let (_, tok) = exchange(
        &emu,
        &client,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("client_id", KEY),
            ("client_secret", SECRET),
            ("redirect_uri", CALLBACK),
        ],
    )
    .await;
    let rt = tok["refresh_token"].as_str().unwrap().to_string();
    emu.deactivate_user(&id).unwrap();
    assert_eq!(
        refresh(&emu, &client, &rt).await.1["error_description"],
        "inactive user"
    );
    let mut b2 = Browser::new(&emu, &client);
    let page = b2
        .get(&authorize_url("s", None))
        .await
        .text()
        .await
        .unwrap();
    let start_url = form_field(&page, "startURL").unwrap();
    let r = b2
        .post_form(
            "/login",
            &[
                ("username", "ann@example.org"),
                ("password", "pw"),
                ("startURL", &start_url),
            ],
        )
        .await;
    assert_eq!(r.status(), 200, "login refused");
    emu.shutdown().await;
}
