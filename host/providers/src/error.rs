//! The providers' error type: the four answers an agent can act on, as the contract's `error`
//! variant names them.

/// Why a request to the outside world did not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request itself is malformed: a bad URL, method or header.
    #[error("{0}")]
    InvalidInput(String),
    /// The request is not allowed: an origin outside the agent's `http_allow`.
    #[error("{0}")]
    Denied(String),
    /// Nothing is configured, or the service cannot be reached or keeps failing: try later.
    #[error("{0}")]
    Unavailable(String),
    /// The service refused the request or answered something unusable.
    #[error("{0}")]
    Failed(String),
}

/// The providers' result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
