//! The self-editing error type.

/// Everything that can go wrong with source, edits and builds.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request whose body or parameters are malformed.
    #[error("{0}")]
    InvalidRequest(String),
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
    /// Not allowed to whoever asked: an agent editing itself or a privileged agent, or an
    /// edit of what only a person may change.
    #[error("denied: {0}")]
    Denied(String),
    /// An edit whose source is the base's, byte for byte.
    #[error("the edit changes nothing: the source it makes is its base's")]
    NoChange,
    /// The request clashes with what exists: an agent of that name, a spec not waiting.
    #[error("{0}")]
    Conflict(String),
    /// No spec of that id.
    #[error("spec {0} not found")]
    SpecNotFound(i64),
    /// Building agents from source failed.
    #[error("build failed: {0}")]
    Build(String),
    /// Builds must run isolated and the kernel offers no isolation.
    #[error("builds are refused: {0}")]
    Isolation(String),
    /// The kernel refused or failed.
    #[error(transparent)]
    Kernel(#[from] overseer_kernel::Error),
    /// The database failed.
    #[error("store: {0}")]
    Store(#[from] overseer_store::Error),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::PathEscape(_) => "path_escape",
            Error::NoSource(_) => "no_source",
            Error::PatchFailed(_) => "patch_failed",
            Error::StaleBase { .. } => "stale_base",
            Error::EditNotFound(_) => "edit_not_found",
            Error::Denied(_) => "denied",
            Error::Conflict(_) => "conflict",
            Error::NoChange => "no_change",
            Error::SpecNotFound(_) => "spec_not_found",
            Error::Build(_) => "build_failed",
            Error::Isolation(_) => "build_isolation_unavailable",
            Error::Kernel(e) => e.code(),
            Error::Store(_) => "store_error",
            Error::Internal(_) => "internal",
        }
    }
}

/// The self-editing result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
