//! Why an outbound fetch failed, and why the client could not be built.
//! Messages never carry header values or bodies: they hold plugins' tokens.

/// Why the [`Client`](super::Client) could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An extra CA entry could not be used. `index` counts from 1.
    #[error("extra trusted CA #{index}: {reason}")]
    BadCa {
        /// Position in [`ClientConfig::extra_roots_pem`](super::ClientConfig::extra_roots_pem), from 1.
        index: usize,
        /// What is wrong with its content.
        reason: String,
    },
    /// The `User-Agent` is not a valid header value.
    #[error("user agent is not a valid header value")]
    BadUserAgent,
    /// The HTTP client could not be set up.
    #[error("could not set up the HTTP client: {0}")]
    Build(String),
}

/// Why a fetch failed. Messages never contain header values or bodies.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum FetchError {
    /// The policy or the address rules refuse the target; nothing was sent.
    #[error("{host} is not allowed: {rule}")]
    Denied {
        /// The refused target as `scheme://host:port`.
        host: String,
        /// The rule that refused it.
        rule: String,
    },
    /// The fetch took longer than allowed.
    #[error("request timed out")]
    Timeout,
    /// The target could not be reached (DNS, TCP, TLS, broken connection).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The response body is larger than the cap (in bytes).
    #[error("response body larger than {0} bytes")]
    TooLarge(u64),
    /// The request is malformed, or the server's redirects are.
    #[error("invalid request: {0}")]
    Invalid(String),
}
