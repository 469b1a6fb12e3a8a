//! Salesforce's refusals: the error array a REST answer carries, typed so
//! callers can act on a code (`REQUIRED_FIELD_MISSING`, `NOT_FOUND`), and how
//! a refusal becomes the plugin's error.

use std::fmt;

use serde::Deserialize;

use crate::error::PluginError;
use crate::http;

/// One entry of Salesforce's error array.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ApiErrorItem {
    /// The human-readable message.
    #[serde(default)]
    pub message: String,
    /// The code, e.g. `REQUIRED_FIELD_MISSING`.
    #[serde(rename = "errorCode", default)]
    pub error_code: String,
    /// The fields concerned, if any.
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Salesforce refused a request: its status and error array, for callers to
/// act on (e.g. `REQUIRED_FIELD_MISSING`, `NOT_FOUND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The errors Salesforce listed (one synthesized when the body was not
    /// an error array).
    pub errors: Vec<ApiErrorItem>,
}

impl ApiError {
    /// Parse a non-2xx answer.
    pub fn parse(status: u16, body: &[u8]) -> Self {
        let errors = serde_json::from_slice::<Vec<ApiErrorItem>>(body)
            .or_else(|_| serde_json::from_slice::<ApiErrorItem>(body).map(|e| vec![e]))
            .unwrap_or_else(|_| {
                vec![ApiErrorItem {
                    message: http::sanitize(&String::from_utf8_lossy(body)),
                    error_code: String::new(),
                    fields: Vec::new(),
                }]
            });
        Self { status, errors }
    }

    /// Whether any entry has `code`.
    pub fn has_code(&self, code: &str) -> bool {
        self.errors.iter().any(|e| e.error_code == code)
    }

    /// The first entry's code, if any.
    pub fn code(&self) -> Option<&str> {
        self.errors
            .iter()
            .map(|e| e.error_code.as_str())
            .find(|c| !c.is_empty())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Salesforce refused the request (HTTP {}", self.status)?;
        for e in &self.errors {
            let message = http::sanitize(&e.message);
            match (e.error_code.is_empty(), message.is_empty()) {
                (false, false) => write!(f, "; {}: {message}", http::sanitize(&e.error_code))?,
                (false, true) => write!(f, "; {}", http::sanitize(&e.error_code))?,
                (true, false) => write!(f, "; {message}")?,
                (true, true) => {}
            }
            if !e.fields.is_empty() {
                write!(f, " (fields: {})", http::sanitize(&e.fields.join(", ")))?;
            }
        }
        write!(f, ")")
    }
}

impl std::error::Error for ApiError {}

/// Why a REST call failed.
#[derive(Debug, thiserror::Error)]
pub enum SalesforceError {
    /// Salesforce answered, refusing the request.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Anything else (not connected, back-off, unreachable, ...), already
    /// worded for the administrator.
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

impl From<SalesforceError> for PluginError {
    fn from(e: SalesforceError) -> Self {
        match e {
            SalesforceError::Plugin(p) => p,
            SalesforceError::Api(api) => {
                let message = api.to_string();
                match api.status {
                    404 => PluginError::NotFound(message),
                    409 | 412 => PluginError::Conflict(message),
                    _ => PluginError::InvalidInput(message),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_arrays_become_typed_errors() {
        let api = ApiError::parse(
            400,
            br#"[{"message":"Required fields are missing: [LastName]","errorCode":"REQUIRED_FIELD_MISSING","fields":["LastName"]}]"#,
        );
        assert!(api.has_code("REQUIRED_FIELD_MISSING"));
        assert_eq!(api.code(), Some("REQUIRED_FIELD_MISSING"));
        assert_eq!(api.errors[0].fields, ["LastName"]);
        let text = api.to_string();
        assert!(
            text.contains("REQUIRED_FIELD_MISSING: Required fields are missing"),
            "{text}"
        );
        assert!(text.contains("(fields: LastName)"), "{text}");

        let html = ApiError::parse(404, b"<html>\nnot here</html>");
        assert_eq!(html.code(), None);
        assert!(html.to_string().contains("<html> not here</html>"));
        assert!(matches!(
            PluginError::from(SalesforceError::Api(html)),
            PluginError::NotFound(_)
        ));
    }
}
