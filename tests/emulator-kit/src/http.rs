//! Small request/response types between hyper and an emulator's handlers.

use std::marker::PhantomData;

use hyper::HeaderMap;
use hyper::body::Bytes;
use serde::Serialize;

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

    /// Every value of a repeatable query parameter, commas split too
    /// (`properties=a,b&properties=c`).
    pub fn query_list(&self, name: &str) -> Vec<String> {
        self.query_pairs()
            .into_iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, v)| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The body as an `application/x-www-form-urlencoded` form.
    pub fn form(&self) -> Vec<(String, String)> {
        std::str::from_utf8(&self.body)
            .map(pairs)
            .unwrap_or_default()
    }

    pub fn form_param(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
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

    /// The token of `Authorization: SCHEME X` for one of `schemes`
    /// (case-insensitive): a CRM may take more than `Bearer`, as
    /// Salesforce takes `OAuth`.
    pub fn token(&self, schemes: &[&str]) -> Option<String> {
        let h = self.header("authorization")?.trim();
        let (scheme, token) = h.split_once(' ')?;
        schemes
            .iter()
            .any(|s| scheme.eq_ignore_ascii_case(s))
            .then(|| token.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// The token of `Authorization: Bearer X`.
    pub fn bearer(&self) -> Option<String> {
        self.token(&["bearer"])
    }
}

/// What differs between the CRMs' answers at this level: only how the
/// charset is spelled in `Content-Type`, which the emulators copy from
/// the real services so that a client's byte-for-byte check sees no
/// difference.
pub trait Dialect {
    /// `UTF-8` (Salesforce) or `utf-8` (HubSpot).
    const CHARSET: &'static str;
}

/// A response before it becomes a hyper response.
#[derive(Debug, Clone)]
pub struct Resp<D> {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    dialect: PhantomData<D>,
}

impl<D: Dialect> Resp<D> {
    pub fn new(status: u16, content_type: &str, body: Vec<u8>) -> Resp<D> {
        Resp {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body,
            dialect: PhantomData,
        }
    }

    fn typed(status: u16, media_type: &str, body: Vec<u8>) -> Resp<D> {
        Resp::new(
            status,
            &format!("{media_type};charset={}", D::CHARSET),
            body,
        )
    }

    pub fn json<T: Serialize + ?Sized>(status: u16, v: &T) -> Resp<D> {
        let body = serde_json::to_vec(v).unwrap_or_else(|_| b"null".to_vec());
        Resp::typed(status, "application/json", body)
    }

    pub fn raw_json(status: u16, body: Vec<u8>) -> Resp<D> {
        Resp::typed(status, "application/json", body)
    }

    pub fn html(status: u16, body: String) -> Resp<D> {
        Resp::typed(status, "text/html", body.into_bytes())
    }

    pub fn text(status: u16, body: &str) -> Resp<D> {
        Resp::typed(status, "text/plain", body.as_bytes().to_vec())
    }

    pub fn empty(status: u16) -> Resp<D> {
        Resp {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            dialect: PhantomData,
        }
    }

    pub fn redirect(location: &str) -> Resp<D> {
        Resp::empty(302).with_header("location", location)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Resp<D> {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// An OAuth 2.0 error body `{"error","error_description"}` (RFC 6749).
    pub fn oauth_error(status: u16, error: &str, description: &str) -> Resp<D> {
        Resp::json(
            status,
            &serde_json::json!({"error": error, "error_description": description}),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone)]
    struct Upper;
    impl Dialect for Upper {
        const CHARSET: &'static str = "UTF-8";
    }

    fn req(headers: &[(&'static str, &'static str)], query: Option<&str>) -> Req {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(*k, hyper::header::HeaderValue::from_static(v));
        }
        Req {
            method: "GET".into(),
            path: "/".into(),
            query: query.map(str::to_string),
            headers: map,
            body: Bytes::new(),
        }
    }

    #[test]
    fn content_types_spell_the_dialects_charset() {
        let r = Resp::<Upper>::json(200, &serde_json::json!({}));
        assert_eq!(
            r.headers,
            vec![(
                "content-type".to_string(),
                "application/json;charset=UTF-8".to_string()
            )]
        );
    }

    #[test]
    fn tokens_only_of_the_schemes_asked_for() {
        let oauth = req(&[("authorization", "OAuth abc")], None);
        assert_eq!(oauth.bearer(), None);
        assert_eq!(oauth.token(&["bearer", "oauth"]).as_deref(), Some("abc"));
        let bearer = req(&[("authorization", "bearer  xyz ")], None);
        assert_eq!(bearer.bearer().as_deref(), Some("xyz"));
        assert_eq!(req(&[("authorization", "Bearer ")], None).bearer(), None);
    }

    #[test]
    fn query_lists_and_cookies() {
        let r = req(
            &[("cookie", "a=1; sid=s2"), ("cookie", "b=3")],
            Some("p=a,b&p=c&q=d"),
        );
        assert_eq!(r.query_list("p"), vec!["a", "b", "c"]);
        assert_eq!(r.query_param("q").as_deref(), Some("d"));
        assert_eq!(r.cookie("sid").as_deref(), Some("s2"));
        assert_eq!(r.cookie("b").as_deref(), Some("3"));
        assert_eq!(r.cookie("c"), None);
    }
}
