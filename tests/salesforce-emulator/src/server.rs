//! Salesforce's side of the HTTP(S) server: which requests the faults
//! spare, the error bodies, `Sforce-Limit-Info`, routing. The accept loop
//! is the kit's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use emulator_kit::server::{Dropped, connection_faults, read_request, to_hyper};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};

use crate::admin;
use crate::error::RestError;
use crate::http::{Req, Resp};
use crate::ids;
use crate::oauth;
use crate::pages;
use crate::rest;
use crate::state::{Shared, take_one};

const MAX_BODY: usize = 32 * 1024 * 1024;

/// A short name of the endpoint for request counts: version and ids
/// replaced, e.g. `GET query`, `POST sobjects/Task`, `GET sobjects/Task/{id}`.
pub fn endpoint_key(method: &str, path: &str) -> String {
    let trimmed = path.trim_start_matches("/services/");
    let mut parts: Vec<String> = Vec::new();
    for (i, seg) in trimmed.split('/').filter(|s| !s.is_empty()).enumerate() {
        if i == 1 && trimmed.starts_with("data/") && rest::parse_version(seg).is_some() {
            continue;
        }
        let looks_like_locator = seg.starts_with("01g") && seg.contains('-');
        if looks_like_locator {
            parts.push("{locator}".into());
        } else if ids::normalize(seg).is_some() && seg.starts_with('0') {
            parts.push("{id}".into());
        } else {
            parts.push(seg.to_string());
        }
    }
    let p = parts.join("/");
    let p = p.strip_prefix("data/").map(str::to_string).unwrap_or(p);
    let p = if p == "data" { "versions".into() } else { p };
    format!("{method} {p}")
}

fn fault_response(status: u16) -> Resp {
    let (code, msg) = match status {
        500 => (
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you contact support: 1234567890-12345 (-1234567890)",
        ),
        502 => ("BAD_GATEWAY", "Bad Gateway"),
        503 => (
            "SERVER_UNAVAILABLE",
            "Server temporarily unavailable. Please try again later.",
        ),
        504 => ("GATEWAY_TIMEOUT", "Gateway Timeout"),
        _ => ("UNKNOWN_EXCEPTION", "An unexpected error occurred."),
    };
    RestError::new(status, code, msg).into()
}

/// Answers one request (the kit's server calls it).
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    let path = req.uri().path().to_string();
    let is_admin = path.starts_with("/__admin/") || path == "/__admin";
    if !is_admin {
        connection_faults(&shared.faults.drop_next, &shared.faults.latency_ms).await?;
    }
    let Ok(req) = read_request(req, MAX_BODY).await else {
        let r: Resp =
            RestError::new(413, "REQUEST_TOO_LARGE", "The request body is too large").into();
        return Ok(to_hyper(r));
    };
    if is_admin {
        return Ok(to_hyper(admin::handle(&shared, &req)));
    }
    shared.count_request(endpoint_key(&req.method, &path));
    // Every REST answer says the org's API use, but the version list, which
    // is not counted either (as Salesforce documents).
    let is_rest = path.starts_with("/services/data/") && !rest::segments(&path).is_empty();
    let with_limit_info = |resp: Resp| {
        if is_rest {
            resp.with_header("sforce-limit-info", &shared.limit_info())
        } else {
            resp
        }
    };
    if take_one(&shared.faults.fail_next) {
        let status = shared.faults.fail_status.load(Ordering::SeqCst) as u16;
        return Ok(to_hyper(with_limit_info(fault_response(status))));
    }
    let shared2 = shared.clone();
    let resp = tokio::task::spawn_blocking(move || route(&shared2, &req)).await;
    let resp = match resp {
        Ok(r) => r,
        Err(_) => RestError::new(500, "UNKNOWN_EXCEPTION", "An unexpected error occurred.").into(),
    };
    Ok(to_hyper(with_limit_info(resp)))
}

fn route(shared: &Shared, req: &Req) -> Resp {
    let path = req.path.as_str();
    let m = req.method.as_str();
    if path == "/services/data" || path.starts_with("/services/data/") {
        return rest::handle(shared, req);
    }
    match (m, path) {
        ("GET", "/services/oauth2/authorize") => oauth::authorize(shared, req),
        ("POST", "/services/oauth2/authorize/consent") => oauth::consent(shared, req),
        ("POST", "/services/oauth2/token") => oauth::token(shared, req),
        ("POST" | "GET", "/services/oauth2/revoke") => oauth::revoke(shared, req),
        ("GET" | "POST", "/services/oauth2/userinfo") => oauth::userinfo(shared, req),
        ("GET", "/.well-known/openid-configuration") => oauth::openid_configuration(shared),
        ("POST", "/login") => oauth::login(shared, req),
        ("GET", "/" | "/login") => oauth::home(shared, req),
        (_, "/services/oauth2/token") => {
            Resp::oauth_error(405, "invalid_request", "must use HTTP POST")
        }
        ("GET", "/id/keys") => Resp::json(200, &crate::id_token::jwks()),
        ("GET", p) if p.starts_with("/id/") => {
            let segs: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
            match segs.as_slice() {
                ["id", org, user] => oauth::identity(shared, req, org, user),
                _ => Resp::text(404, "Bad_Id"),
            }
        }
        _ if path.starts_with("/services/") => RestError::not_found().into(),
        ("GET", _) => pages::record_page(shared, req)
            .or_else(|| pages::new_record_page(shared, req))
            .unwrap_or_else(pages::not_found),
        _ => pages::not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys() {
        let id = ids::make_id("00T", 3);
        assert_eq!(
            endpoint_key("GET", "/services/data/v67.0/query"),
            "GET query"
        );
        assert_eq!(
            endpoint_key("GET", "/services/data/v67.0/query/"),
            "GET query"
        );
        assert_eq!(
            endpoint_key(
                "GET",
                &format!("/services/data/v67.0/query/{}-2000", ids::make_id("01g", 1))
            ),
            "GET query/{locator}"
        );
        assert_eq!(
            endpoint_key("PATCH", &format!("/services/data/v58.0/sobjects/Task/{id}")),
            "PATCH sobjects/Task/{id}"
        );
        assert_eq!(
            endpoint_key("POST", "/services/oauth2/token"),
            "POST oauth2/token"
        );
        assert_eq!(endpoint_key("GET", "/services/data/"), "GET versions");
        assert_eq!(
            endpoint_key(
                "GET",
                &format!("/id/{}/{}", ids::make_id("00D", 1), ids::make_id("005", 1))
            ),
            "GET id/{id}/{id}"
        );
    }
}
