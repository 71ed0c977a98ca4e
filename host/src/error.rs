//! The host's error type. Each variant has a stable code; the API maps them to HTTP statuses
//! in one place (`api/error.rs`).

use overseer_sandbox::{Fault, GuestError};

/// Everything that can go wrong in the host.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An agent name that does not match `[a-z0-9][a-z0-9-]{0,62}`.
    #[error(
        "invalid agent name {0:?}: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
    )]
    InvalidName(String),
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
    /// A rollback to a version that never passed its checks.
    #[error("version {version} of {agent:?} was rejected and cannot serve")]
    VersionNotServable { agent: String, version: u32 },
    /// A pushed component failed a step of the deploy pipeline; the active version is unchanged.
    #[error("version {version} rejected at {stage}: {message}")]
    Rejected {
        /// The number the rejected version was recorded under.
        version: u32,
        /// The pipeline step that failed: `validate`, `describe` or `health`.
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
    #[error("agent error from version {version}: {error}")]
    Guest { version: u32, error: GuestError },
    /// The agent faulted: a limit or a trap.
    #[error("version {version} faulted: {fault}")]
    Fault { version: u32, fault: Fault },
    /// A path that leaves the agent's source: `..`, absolute, or through a symbolic link.
    #[error("path {0:?} escapes the agent's source")]
    PathEscape(String),
    /// The agent has no source to edit (it was pushed as a component).
    #[error("agent {0:?} has no source to edit: it was pushed as a component")]
    NoSource(String),
    /// A diff that is not a unified diff, or does not apply to the version it names.
    #[error("the patch does not apply: {0}")]
    PatchFailed(String),
    /// The edit's base is not the active version and its change does not apply to the active one.
    #[error(
        "version {base} is no longer active ({active} is) and the change does not apply to it: {detail}"
    )]
    StaleBase {
        base: u32,
        active: u32,
        detail: String,
    },
    /// No such edit.
    #[error("edit {0} not found")]
    EditNotFound(i64),
    /// The LLM endpoint is not configured or cannot be reached.
    #[error("LLM unavailable: {0}")]
    LlmUnavailable(String),
    /// Not allowed to whoever asked: an agent editing itself or a privileged agent, or an
    /// edit that would change an agent's capabilities.
    #[error("denied: {0}")]
    Denied(String),
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] sqlx::Error),
    /// Building agents from source failed.
    #[error("build failed: {0}")]
    Build(String),
    /// Anything else the host could not do.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidName(_) => "invalid_name",
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
            Error::PathEscape(_) => "path_escape",
            Error::NoSource(_) => "no_source",
            Error::PatchFailed(_) => "patch_failed",
            Error::StaleBase { .. } => "stale_base",
            Error::EditNotFound(_) => "edit_not_found",
            Error::LlmUnavailable(_) => "unavailable",
            Error::Denied(_) => "denied",
            Error::Store(_) => "store_error",
            Error::Build(_) => "build_failed",
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

/// The host's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Check an agent name against `[a-z0-9][a-z0-9-]{0,62}`.
pub fn check_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if first_ok && rest_ok && name.len() <= 63 {
        Ok(())
    } else {
        Err(Error::InvalidName(name.chars().take(80).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        for ok in ["echo", "a", "0", "world-monitor", &"a".repeat(63)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "Echo",
            "a_b",
            "a.b",
            "a/b",
            "..",
            &"a".repeat(64),
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
