//! overseer-trading: the trading side of the host. The market clock steps a market
//! ([`overseer_market`]) one trading day at a time and publishes `market.tick`; agents read
//! the market through the `market` interface bounded by their as-of time, trade through
//! `broker` (a paper account whose every order passes the [`risk`] gate), and keep what they
//! learn in `memory`. The kernel knows none of it: this crate registers the interfaces it
//! serves.

pub mod backtest;
mod capability;
mod config;
mod desk;
mod error;
pub mod fundamentals;
mod ledger;
pub mod live;
pub mod memory;
mod order;
mod paper;
pub mod performance;
pub mod risk;

pub use capability::{BrokerProvider, MarketProvider};
pub use config::{
    AlpacaConfig, BrokerKind, Costs, MarketKind, PolygonConfig, RiskLimits, TradingConfig,
};
pub use desk::{
    ClosedTrade, Performance, Placer, Portfolio, PositionView, Sources, Trading, Venue, as_of_day,
    as_of_ms,
};
pub use error::{Error, Result};
pub use ledger::{Closed, Holding, Ledger, Side, Valuation};
pub use memory::MemoryProvider;
pub use order::{
    Amount, MAX_NOTIONAL, MAX_QUANTITY, OrderRequest, OrderType, TimeInForce, commission,
    fill_price,
};
