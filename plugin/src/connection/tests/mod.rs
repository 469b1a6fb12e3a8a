//! The connection end to end against the fake host and fake Salesforce:
//! authorization (`authorize`), disconnecting and the status
//! (`disconnect`), and no secret anywhere it could leak (`secrets`).

mod authorize;
mod disconnect;
mod secrets;

use std::collections::BTreeMap;

use crate::bindings::pbx::crm::http_fetch::{self, Denial};
use crate::store::keys;
use crate::testing::FakeHost;

fn params(url: &str) -> BTreeMap<String, String> {
    url::Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

/// The store without pending attempts (which a callback consumes).
fn dump_without_attempts(host: &FakeHost) -> String {
    host.kv_dump()
        .lines()
        .filter(|l| !l.starts_with(keys::ATTEMPT_PREFIX))
        .collect::<Vec<_>>()
        .join("\n")
}

fn denied_answer() -> Result<http_fetch::Response, http_fetch::Error> {
    Err(http_fetch::Error::Denied(Denial {
        host: "https://login.salesforce.com".into(),
        rule: "not granted by the operator (grant it with --grant PLUGIN_ID=https://login.salesforce.com)".into(),
    }))
}

fn answer(status: u16, body: &str) -> Result<http_fetch::Response, http_fetch::Error> {
    Ok(http_fetch::Response {
        status,
        headers: Vec::new(),
        body: body.as_bytes().to_vec(),
    })
}
