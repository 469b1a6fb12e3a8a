//! HubSpot's flavour of the kit's request/response types.

pub use emulator_kit::http::{Dialect, Req, html_escape};

use crate::error::HsError;

/// HubSpot spells the charset `utf-8` in every `Content-Type`.
#[derive(Debug, Clone)]
pub struct HubSpot;

impl Dialect for HubSpot {
    const CHARSET: &'static str = "utf-8";
}

/// A response before it becomes a hyper response.
pub type Resp = emulator_kit::http::Resp<HubSpot>;

impl From<HsError> for Resp {
    fn from(e: HsError) -> Resp {
        Resp::json(e.status, &e.body)
    }
}
