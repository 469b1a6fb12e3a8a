//! Small request/response types between hyper and the handlers.

use hyper::HeaderMap;
use hyper::body::Bytes;
use serde::Serialize;

use crate::error::RestError;

/// An HTTP request with its body read.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

fn pairs(s: &str) -> Vec<(String, String)> {
    url::form_urlencoded::parse(s.as_bytes())
        .into_owned()
        .collect()
}

impl Req {
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        self.query.as_deref().map(pairs).unwrap_or_default()
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> Vec<(String, String)> {
        std::str::from_utf8(&self.body)
            .map(pairs)
            .unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|line| {
                line.split(';').find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    (k == name).then(|| v.to_string())
                })
            })
    }

    /// The token of `Authorization: Bearer X` (or `OAuth X`).
    pub fn bearer(&self) -> Option<String> {
        let h = self.header("authorization")?.trim();
        let (scheme, token) = h.split_once(' ')?;
        (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("oauth"))
            .then(|| token.trim().to_string())
            .filter(|t| !t.is_empty())
    }
}

/// A response before it becomes a hyper response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Resp {
        Resp {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    pub fn json<T: Serialize + ?Sized>(status: u16, v: &T) -> Resp {
        let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
        Resp::new(status, "application/json;charset=UTF-8", body)
    }

    pub fn raw_json(status: u16, body: Vec<u8>) -> Resp {
        Resp::new(status, "application/json;charset=UTF-8", body)
    }

    pub fn html(status: u16, body: String) -> Resp {
        Resp::new(status, "text/html;charset=UTF-8", body.into_bytes())
    }

    pub fn text(status: u16, body: &str) -> Resp {
        Resp::new(status, "text/plain;charset=UTF-8", body.as_bytes().to_vec())
    }

    pub fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn redirect(location: &str) -> Resp {
        Resp::empty(302).with_header("location", location)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Resp {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// An OAuth error body `{"error","error_description"}`.
    pub fn oauth_error(status: u16, error: &str, description: &str) -> Resp {
        Resp::json(
            status,
            &serde_json::json!({"error": error, "error_description": description}),
        )
    }
}

impl From<RestError> for Resp {
    fn from(e: RestError) -> Resp {
        Resp::json(e.status, &e.errors)
    }
}

/// Escapes text for HTML.
pub fn html_escape(s: &str) -> String {
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
