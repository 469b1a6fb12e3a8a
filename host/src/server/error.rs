//! How the admin API says no: a status, a kind, and a message that names
//! the fix, from every error the host's parts return.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::call_input::Invalid;
use crate::directory::DirectoryError;
use crate::runtime::wit::ErrorKind;
use crate::runtime::{CallError, InstallError};

/// Seconds a client waits before trying a 503 again.
const RETRY_AFTER_SECS: &str = "5";

/// An API error: a status and a message that names the fix.
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    field: Option<String>,
}

impl ApiError {
    /// An error of `kind` with `status`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            field: None,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The kind (`invalid-input`, `crm-unavailable`, ...).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Name the input field that is wrong.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The store could not be read or written (a Redis outage, a full
    /// disk): 503 with `Retry-After`, so the PBX and scripts try again;
    /// nothing was taken on.
    pub fn store(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store", message)
    }

    /// No CRM plugin answers: none is installed.
    pub fn no_plugin() -> Self {
        ApiError::new(
            StatusCode::CONFLICT,
            "not-installed",
            "no CRM plugin is installed; install one with `pbx-host plugin install FILE`",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": self.message, "kind": self.kind});
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

impl From<crate::store::KvError> for ApiError {
    fn from(e: crate::store::KvError) -> Self {
        ApiError::store(e.to_string())
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        let status = match &e {
            CallError::NotInstalled(_) => StatusCode::NOT_FOUND,
            CallError::Deadline { .. } => StatusCode::GATEWAY_TIMEOUT,
            CallError::MemoryLimit { .. } | CallError::Trap { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            CallError::Unsupported { .. } => StatusCode::NOT_IMPLEMENTED,
            CallError::Refused { error, .. } => match error.kind {
                ErrorKind::InvalidInput | ErrorKind::AuthorizationFailed => StatusCode::BAD_REQUEST,
                ErrorKind::NotConfigured | ErrorKind::NotConnected | ErrorKind::Conflict => {
                    StatusCode::CONFLICT
                }
                ErrorKind::CrmUnavailable => StatusCode::BAD_GATEWAY,
                ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            },
        };
        ApiError::new(status, e.kind(), e.to_string())
    }
}

impl From<DirectoryError> for ApiError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Invalid(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", m)
            }
            e @ DirectoryError::Exists(_) => {
                ApiError::new(StatusCode::CONFLICT, "exists", e.to_string())
            }
            other => ApiError::store(other.to_string()),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid-input", e.message).with_field(e.field)
    }
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> Self {
        let (status, kind) = match &e {
            InstallError::Refused(_)
            | InstallError::HashMismatch { .. }
            | InstallError::Signature(_) => (StatusCode::BAD_REQUEST, "refused"),
            InstallError::BadGrant(_) => (StatusCode::BAD_REQUEST, "invalid-input"),
            InstallError::NotInstalled(_) | InstallError::UnknownVersion { .. } => {
                (StatusCode::NOT_FOUND, "not-found")
            }
            InstallError::VersionClash { .. }
            | InstallError::NeedsGrants { .. }
            | InstallError::ActiveVersion { .. }
            | InstallError::NoPrevious(_)
            | InstallError::SignerChanged { .. }
            | InstallError::Downgrade { .. }
            | InstallError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            InstallError::Migration { .. } | InstallError::Load(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "load-failed")
            }
            InstallError::Storage(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        };
        ApiError::new(status, kind, e.to_string())
    }
}
