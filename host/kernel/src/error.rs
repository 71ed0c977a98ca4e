//! The kernel's error type. Each variant has a stable code; the API maps them to HTTP
//! statuses in one place.

use overseer_sandbox::{Fault, GuestError};

/// Everything that can go wrong in the kernel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An agent name that does not match `[a-z0-9][a-z0-9-]{0,62}`.
    #[error(
        "invalid agent name {0:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    InvalidName(String),
    /// A name the host keeps for itself.
    #[error("{0:?} is reserved for the host's own events and parts: choose another name")]
    ReservedName(String),
    /// A request whose body or parameters are malformed.
    #[error("{0}")]
    InvalidRequest(String),
    /// An `agent.toml` that does not parse or holds values out of range.
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),
    /// No such agent.
    #[error("agent {0:?} not found")]
    AgentNotFound(String),
    /// No such version of an agent.
    #[error("agent {agent:?} has no version {version}")]
    VersionNotFound { agent: String, version: u32 },
    /// The agent exists but has no version serving.
    #[error("agent {0:?} has no active version")]
    NoActiveVersion(String),
    /// A rollback was asked for but there is nothing to go back to.
    #[error("agent {0:?} has no earlier good version to roll back to")]
    NoPreviousVersion(String),
    /// A version that cannot serve: rejected by the pipeline, condemned by its watch window,
    /// or stored but no longer loadable.
    #[error("version {version} of {agent:?} cannot serve: {reason}")]
    VersionNotServable {
        agent: String,
        version: u32,
        reason: String,
    },
    /// A pushed component failed a step of the deploy pipeline; the active version is unchanged.
    #[error("version {version} rejected at {stage}: {message}")]
    Rejected {
        /// The number the rejected version was recorded under.
        version: u32,
        /// The pipeline step that failed: `validate`, `describe`, `health` or `canary`.
        stage: &'static str,
        /// Stable code of the reason.
        code: &'static str,
        message: String,
    },
    /// The agent was taken out of routing after repeated failures.
    #[error("agent {0:?} is quarantined after repeated failures; push, roll back or release it")]
    Quarantined(String),
    /// No such alert.
    #[error("alert {0} not found")]
    AlertNotFound(i64),
    /// The agent's queue is full.
    #[error("agent {0:?} is overloaded: its concurrency limit and queue are full")]
    Overloaded(String),
    /// The agent returned an error.
    #[error("agent error from version {version}: {}", error.message())]
    Guest { version: u32, error: GuestError },
    /// The agent faulted: a limit or a trap.
    #[error("version {version} faulted: {fault}")]
    Fault { version: u32, fault: Fault },
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] overseer_store::Error),
    /// Anything else the kernel could not do.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidName(_) => "invalid_name",
            Error::ReservedName(_) => "reserved_name",
            Error::InvalidRequest(_) => "invalid_request",
            Error::InvalidManifest(_) => "invalid_manifest",
            Error::AgentNotFound(_) => "agent_not_found",
            Error::VersionNotFound { .. } => "version_not_found",
            Error::NoActiveVersion(_) => "no_active_version",
            Error::NoPreviousVersion(_) => "no_previous_version",
            Error::VersionNotServable { .. } => "version_not_servable",
            Error::Rejected { code, .. } => code,
            Error::Overloaded(_) => "overloaded",
            Error::Quarantined(_) => "quarantined",
            Error::AlertNotFound(_) => "alert_not_found",
            Error::Guest { error, .. } => error.code(),
            Error::Fault { fault, .. } => fault.code(),
            Error::Store(_) => "store_error",
            Error::Internal(_) => "internal",
        }
    }

    /// The version that answered or was recorded, when the error concerns one.
    pub fn version(&self) -> Option<u32> {
        match self {
            Error::Rejected { version, .. }
            | Error::Guest { version, .. }
            | Error::Fault { version, .. }
            | Error::VersionNotServable { version, .. } => Some(*version),
            _ => None,
        }
    }
}

/// The kernel's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error of a spawned task or a blocking thread.
pub(crate) fn internal(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what}: {e}"))
}
