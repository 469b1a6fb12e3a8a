//! What every HTML page the host serves shares: security headers (the
//! Content-Security-Policy among them) and escaping.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The Content-Security-Policy of every page: scripts, styles and
/// connections only from this origin and never inline (an injected string
/// cannot run), images also as data: URLs, no plugins, no framing, no
/// `<base>`, forms only to this origin.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Security headers for every page: the Content-Security-Policy, no
/// framing, no sniffing, no referrer (a callback URL carries a code).
pub fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// The icon every page links in its `<head>` (served by `assets.rs`; the
/// policy's `img-src 'self'` allows it).
pub const FAVICON: &str = r#"<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">"#;

/// A message for a page, HTML-escaped: a command the message quotes
/// between backticks (written for the terminal) is shown as code, so no
/// page shows a backtick.
pub fn message_html(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    let mut out = String::with_capacity(s.len() + 16);
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 1 && i + 1 < parts.len() {
            out.push_str("<code>");
            out.push_str(&escape(part));
            out.push_str("</code>");
        } else {
            // An unpaired backtick: dropped, the text kept.
            out.push_str(&escape(part));
        }
    }
    out
}

/// HTML-escape text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_show_quoted_commands_as_code_and_no_backtick() {
        assert_eq!(
            message_html("run `pbx-host extension list` to see <them>"),
            "run <code>pbx-host extension list</code> to see &lt;them&gt;"
        );
        assert_eq!(message_html("one ` unpaired"), "one  unpaired");
        assert_eq!(message_html("plain"), "plain");
        assert_eq!(message_html("`<b>`"), "<code>&lt;b&gt;</code>");
    }
}
