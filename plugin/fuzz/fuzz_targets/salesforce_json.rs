//! Salesforce's JSON answers, as the plugin reads them: the token endpoint
//! (`oauth::token_answer`, with its OAuth errors), REST refusals
//! (`ApiError::parse`), SOSL phone searches (`calls::lookup::search_matches`),
//! SOQL pages of users (`users::page_chunk`) and other query pages, and the
//! identity URL. Every input goes through every reader, since they are all
//! JSON and share structure. Properties, not only "no panic":
//! - a token answer's `Debug` never shows a token;
//! - error text reaching a message is one line without control characters;
//! - search matches link only to `{instance}/lightning/r/{type}/{id}/view`
//!   with a plain type and id;
//! - a users page stores as user records that read back as the page said.

#![no_main]

use libfuzzer_sys::fuzz_target;
use salesforce_plugin::bindings::pbx::crm::http_fetch::{Header, Response};
use salesforce_plugin::calls::lookup::{rank, search_matches};
use salesforce_plugin::oauth::{Identity, TokenAnswer, TokenFailure, token_answer};
use salesforce_plugin::salesforce::{ApiError, ApiResponse, QueryPage};
use salesforce_plugin::users::{UserRecord, page_chunk};
use serde_json::Value;

const INSTANCE: &str = "https://acme.my.salesforce.com";
const LOGIN: &str = "https://login.salesforce.com";
const CALLBACK: &str = "https://pbx.example.com/crm/callback";

fn one_line(text: &str) {
    assert!(!text.chars().any(char::is_control), "{text:?}");
}

fn response(status: u16, body: &[u8]) -> Response {
    Response {
        status,
        headers: vec![Header {
            name: "content-type".into(),
            value: "application/json".into(),
        }],
        body: body.to_vec(),
    }
}

fn token(data: &[u8]) {
    for status in [200, 400] {
        match token_answer(&response(status, data)) {
            Ok(answer) => {
                assert!((200..=299).contains(&status));
                // Debug masks the tokens: other tokens, the same text.
                let shown = format!("{answer:?}");
                let other = TokenAnswer {
                    access_token: "other".into(),
                    refresh_token: answer.refresh_token.as_ref().map(|_| "other".into()),
                    ..answer.clone()
                };
                assert_eq!(shown, format!("{other:?}"));
                let _ = answer.issued_at_ms();
            }
            Err(failure) => {
                if let TokenFailure::OAuth {
                    error, description, ..
                } = &failure
                {
                    one_line(error);
                    one_line(description);
                    assert!(error.chars().count() <= 201 && description.chars().count() <= 201);
                }
                one_line(&failure.for_authorization(CALLBACK, LOGIN).to_string());
                one_line(&failure.for_refresh(LOGIN).to_string());
                one_line(&failure.describe(LOGIN));
            }
        }
    }
}

fn api_error(data: &[u8]) {
    let api = ApiError::parse(400, data);
    if api.errors.is_empty() {
        // Only an empty error array lists no error.
        assert!(serde_json::from_slice::<Vec<Value>>(data).is_ok());
    }
    one_line(&api.to_string());
    if let Some(code) = api.code() {
        assert!(api.has_code(code));
    }
    let response = ApiResponse {
        status: 200,
        headers: Vec::new(),
        body: data.to_vec(),
    };
    if let Err(e) = response.json::<Value>("a query") {
        one_line(&e.to_string());
    }
}

fn search(value: &Value) {
    let mut matches = search_matches(value, INSTANCE);
    let records = match value {
        Value::Array(list) => list.len(),
        other => other
            .get("searchRecords")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
    };
    assert!(matches.len() <= records);
    for m in &matches {
        let plain =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        assert!(plain(&m.object), "{m:?}");
        assert!(plain(&m.id) && !m.id.contains('_'), "{m:?}");
        assert_eq!(
            m.url,
            format!("{INSTANCE}/lightning/r/{}/{}/view", m.object, m.id)
        );
    }
    let before = matches.len();
    rank(&mut matches);
    assert_eq!(matches.len(), before);
    for pair in matches.windows(2) {
        let kind = |o: &str| {
            ["Contact", "Lead", "Account"]
                .iter()
                .position(|k| *k == o)
                .unwrap_or(3)
        };
        assert!(kind(&pair[0].object) <= kind(&pair[1].object));
    }
}

/// The user record a page's entry must become: what the page said, blank
/// optional text as absent, active unless it says otherwise.
fn expected_user(r: &Value) -> UserRecord {
    let text = |f: &str| r.get(f).and_then(Value::as_str).map(str::to_string);
    let some = |f: &str| text(f).filter(|t| !t.trim().is_empty());
    UserRecord {
        id: text("Id").unwrap_or_default(),
        name: text("Name").unwrap_or_default(),
        username: text("Username").unwrap_or_default(),
        email: some("Email"),
        active: r.get("IsActive").and_then(Value::as_bool).unwrap_or(true),
        kind: some("UserType"),
        title: some("Title"),
        department: some("Department"),
        phone: some("Phone"),
        mobile: some("MobilePhone"),
        extension: some("Extension"),
        modified: some("LastModifiedDate"),
    }
}

fn users(data: &[u8], value: Option<&Value>) {
    let Ok(chunk) = page_chunk(data) else {
        return;
    };
    let stored: Vec<UserRecord> = match serde_json::from_slice(&chunk) {
        Ok(s) => s,
        Err(e) => panic!(
            "a stored chunk does not read back: {e}: {}",
            String::from_utf8_lossy(&chunk)
        ),
    };
    // serde also reads a struct from an array of its fields; the model
    // below knows only Salesforce's form, objects by field name.
    let records = value
        .filter(|v| v.is_object())
        .and_then(|v| v.get("records"))
        .and_then(Value::as_array)
        .filter(|list| list.iter().all(Value::is_object));
    if let Some(records) = records {
        let expected: Vec<UserRecord> = records.iter().map(expected_user).collect();
        assert_eq!(stored, expected);
    }
}

fuzz_target!(|data: &[u8]| {
    token(data);
    api_error(data);
    let value = serde_json::from_slice::<Value>(data).ok();
    if let Some(value) = &value {
        search(value);
    }
    users(data, value.as_ref());
    let _ = serde_json::from_slice::<QueryPage<Value>>(data);
    let _ = serde_json::from_slice::<Identity>(data);
});
