//! Errors: the REST API's JSON error arrays, and the library's own errors.

use serde::Serialize;

/// One entry of Salesforce's REST error array
/// `[{"message": ..., "errorCode": ..., "fields": [...]}]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiError {
    pub message: String,
    #[serde(rename = "errorCode")]
    pub error_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            message: message.into(),
            error_code: code.to_string(),
            fields: None,
        }
    }

    pub fn with_fields(code: &str, message: impl Into<String>, fields: Vec<String>) -> ApiError {
        ApiError {
            message: message.into(),
            error_code: code.to_string(),
            fields: Some(fields),
        }
    }
}

/// A REST failure: an HTTP status with Salesforce's error array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestError {
    pub status: u16,
    pub errors: Vec<ApiError>,
}

impl RestError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> RestError {
        RestError {
            status,
            errors: vec![ApiError::new(code, message)],
        }
    }

    pub fn bad_request(errors: Vec<ApiError>) -> RestError {
        RestError {
            status: 400,
            errors,
        }
    }

    pub fn not_found() -> RestError {
        RestError::new(404, "NOT_FOUND", "The requested resource does not exist")
    }

    pub fn invalid_session() -> RestError {
        RestError::new(401, "INVALID_SESSION_ID", "Session expired or invalid")
    }
}

/// Errors of the library API (starting, seeding, configuring an emulator).
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("invalid seed: {0}")]
    Seed(String),
    #[error("unknown connected app {0}")]
    UnknownApp(String),
    #[error("unknown user {0}")]
    UnknownUser(String),
    #[error("invalid record: {0:?}")]
    Record(Vec<ApiError>),
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
