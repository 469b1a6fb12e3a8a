//! The pages' scripts, styles and icon, served as files under `/assets/` (anyone
//! may fetch them: they hold no data). The Content-Security-Policy of every
//! page (`pages.rs`) allows scripts and styles only from this origin, so
//! nothing is inline: each page links its own files here.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// The served files: (name, content type, text).
const FILES: &[(&str, &str, &str)] = &[
    (
        "portal.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/portal.js"),
    ),
    (
        "portal.css",
        "text/css; charset=utf-8",
        include_str!("assets/portal.css"),
    ),
    (
        "agent.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/agent.js"),
    ),
    (
        "agent.css",
        "text/css; charset=utf-8",
        include_str!("assets/agent.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
    (
        "page.css",
        "text/css; charset=utf-8",
        include_str!("assets/page.css"),
    ),
];

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/assets/{name}", get(asset))
}

async fn asset(Path(name): Path<String>) -> Response {
    let Some((_, content_type, text)) = FILES.iter().find(|(n, ..)| *n == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // The files change only with the host's version; an hour keeps
            // an upgrade visible soon.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        *text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_its_type_and_unknown_names_are_not() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        for (name, ty, text) in FILES {
            let response = rt.block_on(asset(Path((*name).to_string())));
            assert_eq!(response.status(), StatusCode::OK, "{name}");
            assert_eq!(response.headers()[header::CONTENT_TYPE], *ty, "{name}");
            assert_eq!(
                response.headers()[header::X_CONTENT_TYPE_OPTIONS],
                "nosniff"
            );
            assert!(!text.is_empty(), "{name}");
        }
        for name in ["../portal.rs", "portal.html", "missing.js"] {
            let response = rt.block_on(asset(Path(name.to_string())));
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{name}");
        }
    }
}
