//! HubSpot's side of the HTTP(S) server: the rate limiter, error bodies,
//! routing. The accept loop and the connection faults are the kit's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use emulator_kit::server::{Dropped, connection_faults, read_request, to_hyper};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use serde_json::json;

use crate::crm;
use crate::error::HsError;
use crate::http::{Req, Resp};
use crate::oauth;
use crate::state::{INTERVAL_MS, RateVerdict, Shared, lock, take_one};

const MAX_BODY: usize = 16 * 1024 * 1024;

/// A short name of the endpoint for request counts, ids replaced:
/// `GET /crm/v3/objects/contacts/{id}`.
pub fn endpoint_key(method: &str, path: &str) -> String {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut out = Vec::new();
    for (i, s) in segs.iter().enumerate() {
        let token_position = i > 0 && matches!(segs[i - 1], "access-tokens" | "refresh-tokens");
        if token_position {
            out.push("{token}".to_string());
        } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            out.push("{id}".to_string());
        } else {
            out.push((*s).to_string());
        }
    }
    format!("{method} /{}", out.join("/"))
}

fn rate_headers(resp: Resp, v: &RateVerdict) -> Resp {
    let resp = match v.daily {
        Some((max, remaining)) => resp
            .with_header("X-HubSpot-RateLimit-Daily", &max.to_string())
            .with_header(
                "X-HubSpot-RateLimit-Daily-Remaining",
                &remaining.to_string(),
            ),
        None => resp,
    };
    resp.with_header(
        "X-HubSpot-RateLimit-Interval-Milliseconds",
        &INTERVAL_MS.to_string(),
    )
    .with_header("X-HubSpot-RateLimit-Max", &v.max.to_string())
    .with_header("X-HubSpot-RateLimit-Remaining", &v.remaining.to_string())
    .with_header("X-HubSpot-RateLimit-Secondly", &v.secondly.to_string())
    .with_header(
        "X-HubSpot-RateLimit-Secondly-Remaining",
        &v.secondly_remaining.to_string(),
    )
}

fn too_many(v: &RateVerdict) -> Resp {
    let daily = v.daily.is_some_and(|(_, remaining)| remaining == 0);
    let (message, policy) = if daily {
        ("You have reached your daily limit.", "DAILY")
    } else {
        (
            "You have reached your ten_secondly_rolling limit.",
            "TEN_SECONDLY_ROLLING",
        )
    };
    let body = HsError::new(429, "RATE_LIMITS", message)
        .with("errorType", json!("RATE_LIMIT"))
        .with("policyName", json!(policy));
    let retry_secs = (v.retry_after_ms + 999) / 1000;
    Resp::from(body).with_header("Retry-After", &retry_secs.max(1).to_string())
}

fn too_many_searches(wait_ms: i64) -> Resp {
    let body = HsError::new(429, "RATE_LIMITS", "You have reached your secondly limit.")
        .with("errorType", json!("RATE_LIMIT"))
        .with("policyName", json!("SECONDLY"));
    let retry_secs = (wait_ms + 999) / 1000;
    Resp::from(body).with_header("Retry-After", &retry_secs.max(1).to_string())
}

fn fault_response(status: u16) -> Resp {
    let message = match status {
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "internal error",
    };
    HsError::new(status, "INTERNAL_ERROR", message).into()
}

/// Answers one request (the kit's server calls it).
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    connection_faults(&shared.faults.drop_next, &shared.faults.latency_ms).await?;
    let Ok(req) = read_request(req, MAX_BODY).await else {
        return Ok(to_hyper(Resp::from(HsError::new(
            413,
            "VALIDATION_ERROR",
            "The request body is too large",
        ))));
    };
    let path = req.path.clone();
    shared.count_request(endpoint_key(&req.method, &path));
    // The CRM APIs count against the rate limit and say so in headers.
    let now = shared.now_ms();
    let verdict = path
        .starts_with("/crm/")
        .then(|| lock(&shared.rate).check(now));
    if let Some(v) = verdict.filter(|v| !v.allowed) {
        return Ok(to_hyper(rate_headers(too_many(&v), &v)));
    }
    // Searches have a per-second limit of their own besides.
    let is_search = req.method == "POST" && path.starts_with("/crm/") && path.ends_with("/search");
    if let Some(v) = verdict.filter(|_| is_search)
        && let Err(wait_ms) = lock(&shared.rate).check_search(now)
    {
        return Ok(to_hyper(rate_headers(too_many_searches(wait_ms), &v)));
    }
    let resp = if take_one(&shared.faults.fail_next) {
        let status = shared.faults.fail_status.load(Ordering::SeqCst) as u16;
        fault_response(status)
    } else {
        let shared2 = shared.clone();
        tokio::task::spawn_blocking(move || route(&shared2, &req))
            .await
            .unwrap_or_else(|_| fault_response(500))
    };
    let resp = match &verdict {
        Some(v) => rate_headers(resp, v),
        None => resp,
    };
    Ok(to_hyper(resp))
}

fn route(shared: &Shared, req: &Req) -> Resp {
    let path = req.path.as_str();
    let m = req.method.as_str();
    if path.starts_with("/crm/") {
        return crm::handle(shared, req);
    }
    match (m, path) {
        ("GET", "/oauth/authorize") => oauth::authorize(shared, req),
        ("POST", "/oauth/authorize") => oauth::authorize_submit(shared, req),
        ("POST", "/oauth/v1/token") => oauth::token(shared, req),
        (_, "/oauth/v1/token") => {
            HsError::new(405, "VALIDATION_ERROR", "Method not allowed").into()
        }
        _ => {
            if let Some(t) = path.strip_prefix("/oauth/v1/access-tokens/") {
                return match m {
                    "GET" => oauth::access_token_info(shared, t),
                    _ => HsError::new(405, "VALIDATION_ERROR", "Method not allowed").into(),
                };
            }
            if let Some(t) = path.strip_prefix("/oauth/v1/refresh-tokens/") {
                return match m {
                    "GET" => oauth::refresh_token_info(shared, t),
                    "DELETE" => oauth::revoke_refresh_token(shared, t),
                    _ => HsError::new(405, "VALIDATION_ERROR", "Method not allowed").into(),
                };
            }
            HsError::not_found().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_keys_hide_ids_and_tokens() {
        assert_eq!(
            endpoint_key("GET", "/crm/v3/objects/contacts/123"),
            "GET /crm/v3/objects/contacts/{id}"
        );
        assert_eq!(
            endpoint_key("DELETE", "/oauth/v1/refresh-tokens/rt-abc"),
            "DELETE /oauth/v1/refresh-tokens/{token}"
        );
        assert_eq!(
            endpoint_key(
                "PUT",
                "/crm/v4/objects/calls/5/associations/default/contacts/7"
            ),
            "PUT /crm/v4/objects/calls/{id}/associations/default/contacts/{id}"
        );
    }
}
