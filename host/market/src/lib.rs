//! overseer-market: the market data agents see, and the clock that says what "now" is.
//!
//! Every answer is bounded by an **as-of date**: the trading day whose close the caller knows
//! (the day of the `market.tick` being handled, or the market clock's day). A daily bar of day
//! D is known once D has closed, so it is visible at as-of D and later; a range that ends
//! after as-of is refused as [`Error::LookAhead`], and nothing after as-of is ever returned.
//!
//! [`Replay`] serves the bundled daily bars of AAPL, MSFT and IBM (2000-03-01 to 2013-03-01),
//! adjusted for splits and dividends; [`MarketClock`] walks its trading days.

pub mod calendar;
mod clock;
mod error;
mod replay;

pub use clock::MarketClock;
pub use error::{Error, Result};
pub use replay::Replay;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// One bar of a symbol. Prices in the symbol's currency (US dollars for the bundled data),
/// adjusted for splits and dividends; volume in shares, adjusted by the same factor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bar {
    /// The trading day the bar covers (exchange-local date).
    pub date: NaiveDate,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
}

/// The length of a bar. Daily only for now; the type is ready for intraday bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Timeframe {
    Day,
}

/// A source of market data, bounded by as-of.
pub trait Market: Send + Sync {
    /// The symbols served, sorted.
    fn symbols(&self) -> Vec<String>;

    /// The bars of `symbol` from `from` to `to` (both inclusive), oldest first.
    ///
    /// # Errors
    /// [`Error::LookAhead`] when `to` is after `as_of`; [`Error::UnknownSymbol`];
    /// [`Error::InvalidRange`] when `from` is after `to`.
    fn bars(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        from: NaiveDate,
        to: NaiveDate,
        as_of: NaiveDate,
    ) -> Result<Vec<Bar>>;

    /// The newest bar of `symbol` known at `as_of` (the bar of `as_of` itself on a trading
    /// day, else the last one before it), or `None` before the data begins.
    ///
    /// # Errors
    /// [`Error::UnknownSymbol`].
    fn latest(&self, symbol: &str, as_of: NaiveDate) -> Result<Option<Bar>>;
}
