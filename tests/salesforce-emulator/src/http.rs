//! Salesforce's flavour of the kit's request/response types.

pub use emulator_kit::http::{Dialect, Req, html_escape};

use crate::error::RestError;

/// Salesforce spells the charset `UTF-8` in every `Content-Type`.
#[derive(Debug, Clone)]
pub struct Salesforce;

impl Dialect for Salesforce {
    const CHARSET: &'static str = "UTF-8";
}

/// A response before it becomes a hyper response.
pub type Resp = emulator_kit::http::Resp<Salesforce>;

/// Salesforce takes `Authorization: OAuth X` as well as `Bearer X`.
pub const AUTH_SCHEMES: &[&str] = &["bearer", "oauth"];

impl From<RestError> for Resp {
    fn from(e: RestError) -> Resp {
        Resp::json(e.status, &e.errors)
    }
}
