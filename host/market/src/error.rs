//! The market error type.

use chrono::NaiveDate;

/// What a request for market data can run into.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// The request reaches past its as-of date: data the caller could not have had.
    #[error("look-ahead: the range ends on {to}, after the as-of date {as_of}")]
    LookAhead { to: NaiveDate, as_of: NaiveDate },
    /// No such symbol is served.
    #[error("unknown symbol {0:?}")]
    UnknownSymbol(String),
    /// A range whose start is after its end.
    #[error("invalid range: {from} is after {to}")]
    InvalidRange { from: NaiveDate, to: NaiveDate },
    /// Bundled or configured data that does not parse.
    #[error("market data: {0}")]
    Data(String),
}

impl Error {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::LookAhead { .. } => "look_ahead",
            Error::UnknownSymbol(_) => "unknown_symbol",
            Error::InvalidRange { .. } => "invalid_range",
            Error::Data(_) => "market_data",
        }
    }
}

/// The market result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
