//! The trading error type.

use crate::risk::Refusal;

/// What a request of the trading side can run into. Each variant has a stable code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An order that is not one: zero, negative, NaN or huge amounts, a limit order without a
    /// price, a malformed client order id.
    #[error("invalid order: {0}")]
    InvalidOrder(String),
    /// A market request that is not one: a malformed date, an unknown symbol, a range past
    /// as-of (look-ahead).
    #[error(transparent)]
    Market(#[from] overseer_market::Error),
    /// The risk gate refused the order.
    #[error("refused by the risk gate: {}: {}", .0.code, .0.message)]
    Refused(Refusal),
    /// No such order.
    #[error("no order {0:?}")]
    OrderNotFound(String),
    /// An order that is done cannot be cancelled.
    #[error("order {id} is {status}: only open orders can be cancelled")]
    NotOpen { id: String, status: String },
    /// No price is known for the symbol at as-of.
    #[error("no price for {0} at as-of")]
    NoPrice(String),
    /// The broker's service refused or failed.
    #[error(transparent)]
    Broker(#[from] overseer_providers::rest::RestError),
    #[error(transparent)]
    Store(#[from] overseer_store::Error),
}

impl Error {
    /// The stable code of this error, as the API reports it.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidOrder(_) => "invalid_order",
            Error::Market(e) => e.code(),
            Error::Refused(_) => "risk_refused",
            Error::OrderNotFound(_) => "order_not_found",
            Error::NotOpen { .. } => "order_not_open",
            Error::NoPrice(_) => "no_price",
            Error::Broker(e) => e.code(),
            Error::Store(_) => "store_error",
        }
    }
}

/// The trading result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
