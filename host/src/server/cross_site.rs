//! Cross-site request forgery: a page elsewhere must not make an
//! administrator's or agent's browser change anything here with its
//! cookies. SameSite=Strict cookies are not enough on their own (a
//! same-site page on another port, older browsers), so every request that
//! may change state (anything but GET, HEAD, OPTIONS) passes this check,
//! on every route:
//!
//! - a bearer-token request (the CLI, scripts) carries no ambient
//!   credential a browser adds on its own, and passes;
//! - else the browser's `Sec-Fetch-Site` must say `same-origin` or `none`
//!   (typed by the user); without it, an `Origin` header must be this
//!   host's own origin (its Homepage URL or `--public-url`, or the Host
//!   the request was sent to). A client that sends neither is no browser, so no forgery;
//! - a body must be one a cross-site form cannot send unchecked:
//!   `application/json` under `/api` (`application/wasm` for a plugin
//!   upload), and JSON or the portal's own URL-encoded forms elsewhere.
//!   `text/plain` and `multipart/form-data` are refused everywhere.
//!
//! A refused request reaches no handler, so it changes nothing.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::state::AppState;

/// Middleware: refuse cross-site or oddly typed state-changing requests.
pub async fn guard(State(st): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    match check(
        request.method(),
        request.uri().path(),
        request.headers(),
        &st.network.own_urls(),
    ) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It came from another site.
    CrossSite(String),
    /// Its body has a type this route does not take.
    ContentType(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, kind, message) = match self {
            Refusal::CrossSite(m) => (StatusCode::FORBIDDEN, "cross-site", m),
            Refusal::ContentType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content-type", m),
        };
        (
            status,
            Json(serde_json::json!({ "error": message, "kind": kind })),
        )
            .into_response()
    }
}

/// The decision, apart from axum for the tests.
pub fn check(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    own: &[url::Url],
) -> Result<(), Refusal> {
    if [Method::GET, Method::HEAD, Method::OPTIONS].contains(method) {
        return Ok(());
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("Bearer "));
    if bearer {
        return Ok(());
    }
    check_origin(headers, own)?;
    check_content_type(method, path, headers)
}

fn check_origin(headers: &HeaderMap, own_urls: &[url::Url]) -> Result<(), Refusal> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        return match site.trim() {
            "same-origin" | "none" => Ok(()),
            other => Err(Refusal::CrossSite(format!(
                "this request came from another site (Sec-Fetch-Site: {other}) and was refused: use the portal's own page"
            ))),
        };
    }
    let Some(origin) = text(header::ORIGIN.as_str()) else {
        return Ok(());
    };
    let origins: Vec<String> = own_urls
        .iter()
        .map(|u| u.origin().ascii_serialization())
        .collect();
    let own = origins.first().cloned().unwrap_or_default();
    let same_host = url::Url::parse(origin).ok().is_some_and(|o| {
        let authority = match o.port() {
            Some(port) => format!("{}:{port}", o.host_str().unwrap_or_default()),
            None => o.host_str().unwrap_or_default().to_string(),
        };
        text(header::HOST.as_str()).is_some_and(|h| h.eq_ignore_ascii_case(&authority))
    });
    if origins.iter().any(|o| o == origin) || same_host {
        Ok(())
    } else {
        Err(Refusal::CrossSite(format!(
            "this request came from another origin ({}) and was refused: use the portal at {own}",
            origin.chars().take(100).collect::<String>()
        )))
    }
}

fn check_content_type(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.trim() != "0")
        && (headers.contains_key(header::CONTENT_LENGTH)
            || headers.contains_key(header::TRANSFER_ENCODING));
    if !has_body {
        return Ok(());
    }
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let upload = *method == Method::POST && path == "/api/plugins";
    let allowed: &[&str] = if upload {
        &["application/wasm"]
    } else if path.starts_with("/api/") || path == "/api" {
        &["application/json"]
    } else {
        &["application/json", "application/x-www-form-urlencoded"]
    };
    if allowed.contains(&essence.as_str()) {
        Ok(())
    } else {
        Err(Refusal::ContentType(format!(
            "a {method} to {path} must send Content-Type: {} (it sent {})",
            allowed.join(" or "),
            if essence.is_empty() {
                "none".to_string()
            } else {
                essence
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn public() -> url::Url {
        url::Url::parse("https://pbx.example.com").expect("static URL")
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    fn post(path: &str, pairs: &[(&'static str, &str)]) -> Result<(), Refusal> {
        check(&Method::POST, path, &headers(pairs), &[public()])
    }

    #[test]
    fn reads_always_pass() {
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert_eq!(
            check(&Method::GET, "/api/plugins", &cross, &[public()]),
            Ok(())
        );
    }

    #[test]
    fn cross_site_browsers_are_refused() {
        for site in ["cross-site", "same-site"] {
            let r = post(
                "/api/crm/salesforce/disconnect",
                &[("sec-fetch-site", site), ("cookie", "pbx_session=x")],
            );
            assert!(matches!(r, Err(Refusal::CrossSite(_))), "{site}: {r:?}");
        }
        // Without Sec-Fetch-Site: a bodiless POST with a foreign Origin.
        let r = post(
            "/api/crm/salesforce/disconnect",
            &[
                ("origin", "https://evil.example"),
                ("host", "pbx.example.com"),
                ("cookie", "pbx_session=x"),
            ],
        );
        assert!(matches!(r, Err(Refusal::CrossSite(_))), "{r:?}");
        // The same host on another port is another origin.
        let r = post(
            "/logout",
            &[
                ("origin", "http://127.0.0.1:9999"),
                ("host", "127.0.0.1:8080"),
            ],
        );
        assert!(matches!(r, Err(Refusal::CrossSite(_))), "{r:?}");
    }

    #[test]
    fn the_hosts_own_pages_pass() {
        assert_eq!(
            post(
                "/api/crm/salesforce/disconnect",
                &[("sec-fetch-site", "same-origin")]
            ),
            Ok(())
        );
        assert_eq!(
            post(
                "/logout",
                &[
                    ("origin", "https://pbx.example.com"),
                    ("host", "10.0.0.5:8443")
                ]
            ),
            Ok(())
        );
        assert_eq!(
            post(
                "/logout",
                &[
                    ("origin", "http://127.0.0.1:8080"),
                    ("host", "127.0.0.1:8080")
                ]
            ),
            Ok(())
        );
    }

    #[test]
    fn bodies_must_have_the_routes_type() {
        let same = ("sec-fetch-site", "same-origin");
        let r = post(
            "/api/extensions",
            &[
                same,
                ("content-type", "text/plain"),
                ("content-length", "10"),
            ],
        );
        assert!(matches!(r, Err(Refusal::ContentType(_))), "{r:?}");
        let r = post("/api/extensions", &[same, ("content-length", "10")]);
        assert!(matches!(r, Err(Refusal::ContentType(_))), "{r:?}");
        let r = post(
            "/login",
            &[
                same,
                ("content-type", "multipart/form-data; boundary=x"),
                ("content-length", "10"),
            ],
        );
        assert!(matches!(r, Err(Refusal::ContentType(_))), "{r:?}");
        let r = post(
            "/api/plugins",
            &[
                same,
                ("content-type", "application/json"),
                ("content-length", "10"),
            ],
        );
        assert!(matches!(r, Err(Refusal::ContentType(_))), "{r:?}");
        for (path, ty) in [
            ("/api/extensions", "application/json; charset=utf-8"),
            ("/api/plugins", "application/wasm"),
            ("/login", "application/x-www-form-urlencoded"),
        ] {
            assert_eq!(
                post(
                    path,
                    &[same, ("content-type", ty), ("content-length", "10")]
                ),
                Ok(()),
                "{path} {ty}"
            );
        }
        // No body, no type needed.
        assert_eq!(post("/api/crm/salesforce/authorize", &[same]), Ok(()));
        assert_eq!(
            post(
                "/api/crm/salesforce/authorize",
                &[same, ("content-length", "0")]
            ),
            Ok(())
        );
    }

    #[test]
    fn bearer_requests_are_not_cookie_authenticated_and_pass() {
        assert_eq!(
            post(
                "/api/plugins",
                &[
                    ("authorization", "Bearer abc"),
                    ("sec-fetch-site", "cross-site"),
                    ("content-type", "text/plain"),
                    ("content-length", "3"),
                ]
            ),
            Ok(())
        );
    }
}
