//! The store's error type.

/// Everything that can go wrong reading or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or failed a statement, or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not read back: a state, a JSON document, a number out of range.
    #[error("stored data does not read back: {0}")]
    Corrupt(String),
    /// A database URL of neither backend.
    #[error("unsupported database {0:?}: use a path, sqlite://PATH or postgres://…")]
    Url(String),
    /// A write kept colliding with concurrent writers of the same rows.
    #[error("gave up after {0} attempts against concurrent writers")]
    Contended(u32),
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
