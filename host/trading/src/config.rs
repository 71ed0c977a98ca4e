//! The trading side's configuration: the `[trading]` table of the configuration file.

use std::time::Duration;

use chrono::NaiveDate;
use overseer_providers::Secret;
use serde::{Deserialize, Serialize};

/// Where prices come from, how fast the replayed market runs, what trading costs, and the risk
/// limits. Every field has a default: the bundled replay, a paper account of 100 000 dollars,
/// 1 bp of commission and 5 bp of slippage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TradingConfig {
    /// Whether the market clock runs and the trading interfaces are served.
    pub enabled: bool,
    /// The first trading day of the replay (the clock resumes where it stopped on restart).
    pub start: NaiveDate,
    /// Wall time per replayed trading day, in milliseconds (`--market-speed`).
    pub market_speed_ms: u64,
    /// The paper account's starting cash, in dollars.
    pub initial_cash: f64,
    pub costs: Costs,
    pub risk: RiskLimits,
    /// Where prices come from: `replay` (the bundled daily bars, the default), `polygon` or
    /// `alpaca` (live, in wall time on the exchange's calendar).
    pub market: MarketKind,
    /// Where orders go: `paper` (the default) or `alpaca`.
    pub broker: BrokerKind,
    /// The symbols a live market serves (the replay serves its bundled ones).
    pub symbols: Vec<String>,
    pub polygon: PolygonConfig,
    pub alpaca: AlpacaConfig,
    /// Orders go to Alpaca's live endpoint, with real money. Set only by `--live-trading`,
    /// never by the file.
    #[serde(skip)]
    pub live_trading: bool,
}

/// Where prices come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MarketKind {
    #[default]
    Replay,
    Polygon,
    Alpaca,
}

/// Where orders go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    #[default]
    Paper,
    Alpaca,
}

/// Polygon.io (`[trading.polygon]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PolygonConfig {
    pub url: String,
    /// The API key (`OVERSEER_POLYGON_KEY`).
    #[serde(skip_serializing)]
    pub key: Option<Secret>,
}

impl Default for PolygonConfig {
    fn default() -> Self {
        PolygonConfig {
            url: overseer_providers::polygon::DEFAULT_URL.to_string(),
            key: None,
        }
    }
}

/// Alpaca (`[trading.alpaca]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlpacaConfig {
    pub data_url: String,
    pub paper_url: String,
    pub live_url: String,
    /// `APCA-API-KEY-ID` (`OVERSEER_ALPACA_KEY_ID`).
    #[serde(skip_serializing)]
    pub key_id: Option<Secret>,
    /// `APCA-API-SECRET-KEY` (`OVERSEER_ALPACA_SECRET`).
    #[serde(skip_serializing)]
    pub secret: Option<Secret>,
}

impl Default for AlpacaConfig {
    fn default() -> Self {
        AlpacaConfig {
            data_url: overseer_providers::alpaca::DATA_URL.to_string(),
            paper_url: overseer_providers::alpaca::PAPER_URL.to_string(),
            live_url: overseer_providers::alpaca::LIVE_URL.to_string(),
            key_id: None,
            secret: None,
        }
    }
}

impl Default for TradingConfig {
    fn default() -> Self {
        TradingConfig {
            enabled: true,
            // A year and a quarter of replay before the bundled data ends, with twelve years
            // of history behind it for indicators.
            start: NaiveDate::from_ymd_opt(2012, 1, 3).unwrap_or_default(),
            market_speed_ms: 2_000,
            initial_cash: 100_000.0,
            costs: Costs::default(),
            risk: RiskLimits::default(),
            market: MarketKind::Replay,
            broker: BrokerKind::Paper,
            symbols: vec!["AAPL".to_string(), "MSFT".to_string(), "IBM".to_string()],
            polygon: PolygonConfig::default(),
            alpaca: AlpacaConfig::default(),
            live_trading: false,
        }
    }
}

impl TradingConfig {
    /// Wall time per replayed trading day.
    pub fn market_speed(&self) -> Duration {
        Duration::from_millis(self.market_speed_ms)
    }
}

/// Trading costs of the paper broker, in basis points (1 bp = 0.01 %) of the traded value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Costs {
    /// Commission on every fill.
    pub commission_bps: f64,
    /// How far from the bar's price a fill lands, against the trader: a buy pays more, a sell
    /// gets less.
    pub slippage_bps: f64,
}

impl Default for Costs {
    fn default() -> Self {
        Costs {
            commission_bps: 1.0,
            slippage_bps: 5.0,
        }
    }
}

/// The limits of the risk gate. Fractions are of the account's equity (1.0 = 100 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RiskLimits {
    /// The largest position in one symbol, at market value.
    pub max_position: f64,
    /// The largest order, in dollars.
    pub max_order_notional: f64,
    /// The largest sum of the absolute market values of all positions.
    pub max_gross_exposure: f64,
    /// A loss within one trading day at which only orders that reduce exposure pass, until
    /// the next day (`reducing`).
    pub daily_loss_limit: f64,
    /// A fall from the highest equity at which every order is refused until a person resumes
    /// trading (`halted`).
    pub max_drawdown: f64,
    /// Orders that may pass the gate in any minute of wall time.
    pub orders_per_minute: u32,
    /// The symbols that may be traded; empty: every symbol the market serves.
    pub allowlist: Vec<String>,
    /// Whether a sell may take a position below zero.
    pub allow_short: bool,
}

impl Default for RiskLimits {
    fn default() -> Self {
        RiskLimits {
            max_position: 0.25,
            max_order_notional: 25_000.0,
            max_gross_exposure: 0.9,
            daily_loss_limit: 0.03,
            max_drawdown: 0.15,
            orders_per_minute: 60,
            allowlist: Vec::new(),
            allow_short: false,
        }
    }
}

impl std::str::FromStr for MarketKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "replay" => Ok(MarketKind::Replay),
            "polygon" => Ok(MarketKind::Polygon),
            "alpaca" => Ok(MarketKind::Alpaca),
            other => Err(format!("market {other:?}: replay, polygon or alpaca")),
        }
    }
}

impl std::str::FromStr for BrokerKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "paper" => Ok(BrokerKind::Paper),
            "alpaca" => Ok(BrokerKind::Alpaca),
            other => Err(format!("broker {other:?}: paper or alpaca")),
        }
    }
}
