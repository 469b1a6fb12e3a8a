//! Small helpers around the host's http-fetch every CRM client needs:
//! building requests (form posts, bearer GETs), reading answers, and
//! making text from outside fit for one line of a message.
//!
//! A `Request` carries bearer tokens and form bodies with secrets, so nothing
//! here (or anywhere) formats one with `{:?}`.

use url::Url;

use crate::bindings::pbx::crm::http_fetch::{Header, Method, Request, Response};

/// Time limit per exchange. The host's per-call deadline is 10 s by default;
/// asking for less leaves the plugin time to store what it learned.
pub const TIMEOUT_MS: u32 = 8_000;

/// A header line.
pub fn header(name: &str, value: &str) -> Header {
    Header {
        name: name.to_string(),
        value: value.to_string(),
    }
}

/// An `application/x-www-form-urlencoded` body.
pub fn form_body(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        form.append_pair(name, value);
    }
    form.finish().into_bytes()
}

/// A form POST (OAuth 2.0 token endpoints take their parameters this
/// way, client credentials included).
pub fn post_form(url: &str, pairs: &[(&str, &str)]) -> Request {
    Request {
        method: Method::Post,
        url: url.to_string(),
        headers: vec![
            header("content-type", "application/x-www-form-urlencoded"),
            header("accept", "application/json"),
        ],
        body: Some(form_body(pairs)),
        timeout_ms: Some(TIMEOUT_MS),
    }
}

/// A GET with an optional bearer token.
pub fn get(url: &str, bearer: Option<&str>) -> Request {
    let mut headers = vec![header("accept", "application/json")];
    if let Some(token) = bearer {
        headers.push(header("authorization", &format!("Bearer {token}")));
    }
    Request {
        method: Method::Get,
        url: url.to_string(),
        headers,
        body: None,
        timeout_ms: Some(TIMEOUT_MS),
    }
}

/// The first value of header `name` (case-insensitive).
pub fn response_header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Text from outside (an error description, a body) made fit for one line of
/// a message: control characters become spaces, runs of white space one
/// space, and it is cut at 200 characters (the spaces count too).
pub fn sanitize(text: &str) -> String {
    const MAX: usize = 200;
    let mut out = String::new();
    let mut count = 0;
    for word in text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
    {
        if !out.is_empty() {
            if count == MAX {
                out.push('…');
                return out;
            }
            out.push(' ');
            count += 1;
        }
        for c in word.chars() {
            if count == MAX {
                out.push('…');
                return out;
            }
            out.push(c);
            count += 1;
        }
    }
    out
}

/// `scheme://host[:port]` of `url`, or the text itself when it is no URL.
pub fn origin(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => match (u.host_str(), u.port()) {
            (Some(host), Some(port)) => format!("{}://{host}:{port}", u.scheme()),
            (Some(host), None) => format!("{}://{host}", u.scheme()),
            _ => url.to_string(),
        },
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_text_is_one_bounded_line() {
        assert_eq!(sanitize("  a\r\nb\t\u{7}c  "), "a b c");
        let long = "x".repeat(500);
        assert_eq!(sanitize(&long).chars().count(), 201);
    }

    /// Found by the `oauth_callback` fuzz target: the spaces between words
    /// were not counted, so text of one-letter words came out almost twice
    /// as long as the 200 characters promised.
    #[test]
    fn sanitize_cuts_at_200_characters_spaces_included() {
        let words = "a ".repeat(300);
        let clean = sanitize(&words);
        assert_eq!(clean.chars().count(), 201, "{clean}");
        assert!(clean.ends_with('…'));
        assert_eq!(sanitize(&"a ".repeat(100)).chars().count(), 199);
    }

    #[test]
    fn origins_drop_paths_and_queries() {
        assert_eq!(
            origin("https://crm.example.com/oauth/token?x=1"),
            "https://crm.example.com"
        );
        assert_eq!(
            origin("https://127.0.0.1:8443/id/1"),
            "https://127.0.0.1:8443"
        );
    }

    #[test]
    fn form_bodies_are_url_encoded() {
        let body = form_body(&[("a", "x y&z"), ("b", "+/=")]);
        assert_eq!(String::from_utf8_lossy(&body), "a=x+y%26z&b=%2B%2F%3D");
    }
}
