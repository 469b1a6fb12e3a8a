//! Errors: HubSpot's JSON error bodies, and the library's own errors.

use serde_json::{Value, json};

/// A fresh correlation id (HubSpot puts one in every error body).
pub fn correlation_id() -> String {
    let a: u128 = rand::random();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// An API failure: an HTTP status and HubSpot's error body
/// `{"status":"error","message",...,"correlationId","category"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct HsError {
    pub status: u16,
    pub body: Value,
}

impl HsError {
    /// The common shape of the CRM APIs' errors.
    pub fn new(status: u16, category: &str, message: impl Into<String>) -> HsError {
        HsError {
            status,
            body: json!({
                "status": "error",
                "message": message.into(),
                "correlationId": correlation_id(),
                "category": category,
            }),
        }
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: Value) -> HsError {
        if let Some(m) = self.body.as_object_mut() {
            m.insert(key.to_string(), value);
        }
        self
    }

    pub fn validation(message: impl Into<String>) -> HsError {
        HsError::new(400, "VALIDATION_ERROR", message)
    }

    pub fn not_found() -> HsError {
        HsError::new(404, "OBJECT_NOT_FOUND", "resource not found")
    }

    /// The OAuth token endpoint's errors: `{"status":"BAD_AUTH_CODE",...}`.
    pub fn oauth(status_code: &str, message: &str) -> HsError {
        HsError {
            status: 400,
            body: json!({
                "status": status_code,
                "message": message,
                "correlationId": correlation_id(),
            }),
        }
    }
}

/// Errors of the library API (starting, seeding, controlling an emulator).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("unknown app {0}")]
    UnknownApp(String),
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("unknown object type {0}")]
    UnknownType(String),
    #[error("invalid record: {0}")]
    Record(String),
    #[error("runtime: {0}")]
    Runtime(String),
}

/// Keeps the start-up errors this crate's own, as they were before the
/// server moved to the kit.
impl From<emulator_kit::server::StartError> for EmulatorError {
    fn from(e: emulator_kit::server::StartError) -> EmulatorError {
        use emulator_kit::server::StartError;
        match e {
            StartError::Bind { addr, source } => EmulatorError::Bind { addr, source },
            StartError::Tls(e) => EmulatorError::Tls(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlation_ids_look_like_uuids() {
        let id = correlation_id();
        assert_eq!(id.len(), 36, "{id}");
        assert_eq!(id.matches('-').count(), 4, "{id}");
        assert_ne!(id, correlation_id());
    }
}
