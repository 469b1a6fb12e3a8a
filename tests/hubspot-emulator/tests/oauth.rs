//! HubSpot's OAuth over HTTPS: install page, code, token, refresh,
//! refusals, token information, revocation, expiry.

mod common;

use std::time::Duration;

use common::*;
use hubspot_emulator::EmulatorConfig;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_code_token_refresh_and_info() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let code = get_code(&emu, &client).await;
    let (status, tok) = code_grant(&emu, &client, &code).await;
    assert_eq!(status, 200, "{tok}");
    assert_eq!(tok["token_type"], "bearer");
    assert_eq!(tok["expires_in"], 1800);
    let access = tok["access_token"].as_str().expect("access").to_string();
    let refresh = tok["refresh_token"].as_str().expect("refresh").to_string();
    assert_ne!(access, refresh);

    // The access token works on the API.
    let (status, owners) = json_of(get(&emu, &client, &access, "/crm/v3/owners").await).await;
    assert_eq!(status, 200, "{owners}");

    // Token information.
    let (status, info) = json_of(
        client
            .get(format!(
                "{}/oauth/v1/access-tokens/{access}",
                emu.base_url()
            ))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["hub_id"], emu.hub_id());
    assert_eq!(info["user"], EMAIL);
    assert_eq!(info["token_type"], "access");
    assert!(info["app_id"].as_u64().is_some() && info["user_id"].as_u64().is_some());
    let scopes: Vec<&str> = info["scopes"]
        .as_array()
        .expect("scopes")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(scopes, SCOPE.split(' ').collect::<Vec<_>>());
    assert!(
        info["expires_in"]
            .as_i64()
            .is_some_and(|s| s > 1790 && s <= 1800)
    );

    let (status, rinfo) = json_of(
        client
            .get(format!(
                "{}/oauth/v1/refresh-tokens/{refresh}",
                emu.base_url()
            ))
            .send()
            .await
            .expect("GET"),
    )
    .await;
    assert_eq!(status, 200, "{rinfo}");
    assert_eq!(rinfo["client_id"], CLIENT_ID);
    assert_eq!(rinfo["token_type"], "refresh");

    // Refresh: a new access token, the same refresh token.
    let (status, again) = refresh_grant(&emu, &client, &refresh).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["access_token"], access.as_str());
    assert_eq!(again["refresh_token"], refresh.as_str());
    assert_eq!(again["expires_in"], 1800);
    let stats = emu.token_stats();
    assert_eq!(
        (stats.authorization_code_grants, stats.refresh_grants),
        (1, 1)
    );

    // Revocation: the refresh token is gone.
    let del = client
        .delete(format!(
            "{}/oauth/v1/refresh-tokens/{refresh}",
            emu.base_url()
        ))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(del.status(), 204);
    let (status, err) = refresh_grant(&emu, &client, &refresh).await;
    assert_eq!(
        (status, err["status"].as_str()),
        (400, Some("BAD_REFRESH_TOKEN"))
    );
    assert!(err["correlationId"].is_string());
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optional_scopes_are_granted_when_the_app_allows_them() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let url = authorize_url(
        &emu.base_url(),
        "crm.objects.contacts.read",
        Some("crm.objects.companies.write not.allowed"),
        "s",
    );
    let resp = consent(&emu, &client, &url, PASSWORD).await;
    assert_eq!(resp.status(), 302);
    let loc = url::Url::parse(resp.headers()["location"].to_str().expect("ascii")).expect("url");
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("code");
    let (_, tok) = code_grant(&emu, &client, &code).await;
    let access = tok["access_token"].as_str().expect("access");
    let info: Value = client
        .get(format!(
            "{}/oauth/v1/access-tokens/{access}",
            emu.base_url()
        ))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(
        info["scopes"],
        serde_json::json!(["crm.objects.contacts.read", "crm.objects.companies.write"])
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_page_refuses_unknown_clients_redirects_and_scopes() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let base = emu.base_url();
    let cases = [
        (
            authorize_url(&base, SCOPE, None, "s").replace(CLIENT_ID, "nope"),
            "client_id",
        ),
        (
            authorize_url(&base, SCOPE, None, "s").replace("pbx.example.com", "evil.example.com"),
            "redirect URL",
        ),
        (
            authorize_url(&base, "crm.objects.deals.read", None, "s"),
            "scopes",
        ),
    ];
    for (url, words) in cases {
        let resp = client.get(&url).send().await.expect("GET");
        assert_eq!(resp.status(), 400, "{url}");
        let html = resp.text().await.expect("text");
        assert!(html.contains(words), "{words}: {html}");
        assert!(!html.contains("name=\"password\""), "{html}");
    }
    // A wrong password stays on the page, without a code.
    let resp = consent(
        &emu,
        &client,
        &authorize_url(&base, SCOPE, None, "s"),
        "wrong",
    )
    .await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().get("location").is_none());
    assert!(resp.text().await.expect("text").contains("incorrect"));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_endpoint_refusals() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let code = get_code(&emu, &client).await;
    let base = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
        ("redirect_uri", REDIRECT),
        ("code", code.as_str()),
    ];
    let with = |k: &str, v: &'static str| {
        base.iter()
            .map(|(a, b)| if *a == k { (*a, v) } else { (*a, *b) })
            .collect::<Vec<_>>()
    };
    for (form, expected) in [
        (with("client_secret", "wrong"), "BAD_CLIENT_SECRET"),
        (with("client_id", "nope"), "BAD_CLIENT_ID"),
        (with("grant_type", "password"), "BAD_GRANT_TYPE"),
        (
            with("redirect_uri", "https://pbx.example.com/other"),
            "BAD_REDIRECT_URI",
        ),
        (with("code", "code-made-up"), "BAD_AUTH_CODE"),
    ] {
        let (status, err) = token(&emu, &client, &form).await;
        assert_eq!(
            (status, err["status"].as_str()),
            (400, Some(expected)),
            "{err}"
        );
        assert!(
            err["message"].is_string() && err["correlationId"].is_string(),
            "{err}"
        );
    }
    // None of those used the code up: it works once, then never again.
    let (status, tok) = code_grant(&emu, &client, &code).await;
    assert_eq!(status, 200, "{tok}");
    let (status, err) = code_grant(&emu, &client, &code).await;
    assert_eq!(
        (status, err["status"].as_str()),
        (400, Some("BAD_AUTH_CODE"))
    );
    assert_eq!(emu.token_stats().failed_token_requests, 6);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_expire() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let code = get_code(&emu, &client).await;
    emu.advance_clock(Duration::from_secs(5 * 60 + 1));
    let (status, err) = code_grant(&emu, &client, &code).await;
    assert_eq!(
        (status, err["status"].as_str()),
        (400, Some("BAD_AUTH_CODE"))
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_expire_after_30_minutes() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    let tok = emu.issue_token(CLIENT_ID, EMAIL, None).expect("token");
    emu.advance_clock(Duration::from_secs(29 * 60));
    let resp = get(&emu, &client, &tok.access_token, "/crm/v3/owners").await;
    assert_eq!(resp.status(), 200);
    emu.advance_clock(Duration::from_secs(6 * 60));
    let (status, err) =
        json_of(get(&emu, &client, &tok.access_token, "/crm/v3/owners").await).await;
    assert_eq!(status, 401, "{err}");
    assert_eq!(err["status"], "error");
    assert_eq!(err["category"], "EXPIRED_AUTHENTICATION");
    assert_eq!(
        err["message"],
        "The OAuth token used to make this call expired 5 minute(s) ago."
    );
    assert!(err["correlationId"].is_string());
    // The token info endpoint says so too; a refresh brings access back.
    let info = client
        .get(format!(
            "{}/oauth/v1/access-tokens/{}",
            emu.base_url(),
            tok.access_token
        ))
        .send()
        .await
        .expect("GET");
    assert_eq!(info.status(), 401);
    let (status, again) = refresh_grant(&emu, &client, &tok.refresh_token).await;
    assert_eq!(status, 200, "{again}");
    let fresh = again["access_token"].as_str().expect("access");
    assert_eq!(
        get(&emu, &client, fresh, "/crm/v3/owners").await.status(),
        200
    );

    // Unknown and missing tokens.
    for t in [Some("made-up"), None] {
        let mut rb = client.get(format!("{}/crm/v3/owners", emu.base_url()));
        if let Some(t) = t {
            rb = rb.bearer_auth(t);
        }
        let (status, err) = json_of(rb.send().await.expect("GET")).await;
        assert_eq!(status, 401);
        assert_eq!(err["category"], "INVALID_AUTHENTICATION");
        assert!(
            err["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Authentication credentials not found.")),
            "{err}"
        );
    }
    emu.shutdown().await;
}
