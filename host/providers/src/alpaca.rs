//! Alpaca: daily bars (`GET /v2/stocks/{symbol}/bars`, all adjustments, paged) and news
//! (`GET /v1beta1/news`) from its data API, and the trading API — account, positions, orders,
//! `POST /v2/orders` with the caller's `client_order_id`, cancel — against the paper endpoint
//! unless the live one is asked for. Every request carries `APCA-API-KEY-ID` and
//! `APCA-API-SECRET-KEY`. Alpaca writes money and quantities as decimal strings.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use overseer_market::Bar;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use crate::polygon::Article;
use crate::rest::{Rest, RestError};
use crate::secret::Secret;

/// Alpaca's market-data API.
pub const DATA_URL: &str = "https://data.alpaca.markets";
/// Alpaca's paper-trading API: the default.
pub const PAPER_URL: &str = "https://paper-api.alpaca.markets";
/// Alpaca's live-trading API: real money, only with `--live-trading`.
pub const LIVE_URL: &str = "https://api.alpaca.markets";

/// Pages of bars read for one request at most.
const MAX_PAGES: usize = 50;

/// A number Alpaca writes as a string (or, in places, as a number).
fn decimal<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Decimal {
        Text(String),
        Number(f64),
    }
    match Decimal::deserialize(deserializer)? {
        Decimal::Number(n) => Ok(n),
        Decimal::Text(t) => t.parse().map_err(serde::de::Error::custom),
    }
}

fn optional_decimal<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "decimal")] f64);
    Ok(Option::<Wrap>::deserialize(deserializer)?.map(|Wrap(n)| n))
}

/// The account.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Account {
    pub id: String,
    pub status: String,
    pub currency: String,
    #[serde(deserialize_with = "decimal")]
    pub cash: f64,
    #[serde(deserialize_with = "decimal")]
    pub equity: f64,
    #[serde(deserialize_with = "decimal")]
    pub buying_power: f64,
}

/// A position.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Position {
    pub symbol: String,
    /// Negative when short.
    #[serde(deserialize_with = "decimal")]
    pub qty: f64,
    #[serde(deserialize_with = "decimal")]
    pub avg_entry_price: f64,
    #[serde(deserialize_with = "decimal")]
    pub market_value: f64,
    #[serde(deserialize_with = "decimal")]
    pub current_price: f64,
    #[serde(deserialize_with = "decimal")]
    pub unrealized_pl: f64,
}

/// An order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Order {
    pub id: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    #[serde(rename = "type")]
    pub order_type: String,
    pub time_in_force: String,
    #[serde(default, deserialize_with = "optional_decimal")]
    pub qty: Option<f64>,
    #[serde(default, deserialize_with = "optional_decimal")]
    pub notional: Option<f64>,
    #[serde(default, deserialize_with = "optional_decimal")]
    pub limit_price: Option<f64>,
    /// `new`, `accepted`, `partially_filled`, `filled`, `canceled`, `expired`, `rejected`, …
    pub status: String,
    #[serde(deserialize_with = "decimal")]
    pub filled_qty: f64,
    #[serde(default, deserialize_with = "optional_decimal")]
    pub filled_avg_price: Option<f64>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub filled_at: Option<DateTime<Utc>>,
}

/// An order to place.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrder<'a> {
    pub symbol: &'a str,
    /// `buy` or `sell`.
    pub side: &'a str,
    /// Shares, or dollars when `notional`.
    pub amount: f64,
    pub notional: bool,
    /// `market` or `limit`.
    pub order_type: &'a str,
    pub limit_price: Option<f64>,
    /// `day` or `gtc`.
    pub time_in_force: &'a str,
    pub client_order_id: &'a str,
}

#[derive(Deserialize)]
struct Bars {
    #[serde(default)]
    bars: Option<Vec<AlpacaBar>>,
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
struct AlpacaBar {
    t: DateTime<Utc>,
    o: f64,
    h: f64,
    l: f64,
    c: f64,
    v: f64,
}

#[derive(Deserialize)]
struct News {
    #[serde(default)]
    news: Vec<NewsItem>,
}

#[derive(Deserialize)]
struct NewsItem {
    id: u64,
    headline: String,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    url: String,
    created_at: DateTime<Utc>,
    #[serde(default)]
    symbols: Vec<String>,
}

/// A client of Alpaca's data and trading APIs.
#[derive(Clone)]
pub struct Alpaca {
    data: Rest,
    trading: Rest,
}

impl Alpaca {
    /// A client with the key pair, of the data API at `data_url` and the trading API at
    /// `trading_url`.
    ///
    /// # Errors
    /// A key that cannot be a header.
    pub fn new(
        data_url: &str,
        trading_url: &str,
        key_id: &Secret,
        secret: &Secret,
    ) -> Result<Alpaca, String> {
        let headers = [
            ("apca-api-key-id", key_id.expose()),
            ("apca-api-secret-key", secret.expose()),
        ];
        let timeout = Duration::from_secs(30);
        Ok(Alpaca {
            data: Rest::new("alpaca", data_url, &headers, timeout)?,
            trading: Rest::new("alpaca", trading_url, &headers, timeout)?,
        })
    }

    /// Pause `first` before the first retry.
    pub fn with_backoff(self, first: Duration) -> Alpaca {
        Alpaca {
            data: self.data.with_backoff(first),
            trading: self.trading.with_backoff(first),
        }
    }

    /// The daily bars of `symbol` from `from` to `to`, oldest first, adjusted for splits and
    /// dividends, every page of them.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn daily_bars(
        &self,
        symbol: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Bar>, RestError> {
        let mut out = Vec::new();
        let mut page: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut query = vec![
                ("timeframe", "1Day".to_string()),
                ("start", from.to_string()),
                ("end", to.to_string()),
                ("adjustment", "all".to_string()),
                ("limit", "10000".to_string()),
            ];
            if let Some(token) = &page {
                query.push(("page_token", token.clone()));
            }
            let bars: Bars = self
                .data
                .get(&format!("/v2/stocks/{symbol}/bars"), &query)
                .await?;
            out.extend(bars.bars.unwrap_or_default().into_iter().map(|b| Bar {
                // A daily bar is stamped at midnight New York time: 04:00 or 05:00 UTC.
                date: b.t.date_naive(),
                open: b.o,
                high: b.h,
                low: b.l,
                close: b.c,
                volume: b.v,
            }));
            match bars.next_page_token {
                Some(token) if !token.is_empty() => page = Some(token),
                _ => return Ok(out),
            }
        }
        Err(RestError::Malformed {
            service: "alpaca",
            message: format!("more than {MAX_PAGES} pages of bars"),
        })
    }

    /// Up to `limit` articles about `symbol` from `since` to `until`, newest first.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn news(
        &self,
        symbol: &str,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Article>, RestError> {
        let news: News = self
            .data
            .get(
                "/v1beta1/news",
                &[
                    ("symbols", symbol.to_string()),
                    (
                        "start",
                        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ),
                    (
                        "end",
                        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ),
                    ("sort", "desc".to_string()),
                    ("limit", limit.clamp(1, 50).to_string()),
                ],
            )
            .await?;
        Ok(news
            .news
            .into_iter()
            .map(|n| Article {
                id: n.id.to_string(),
                headline: n.headline,
                summary: n.summary,
                publisher: n.source,
                url: n.url,
                published_ms: u64::try_from(n.created_at.timestamp_millis()).unwrap_or(0),
                symbols: n.symbols,
                sentiment: None,
            })
            .collect())
    }

    /// The account.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn account(&self) -> Result<Account, RestError> {
        self.trading.get("/v2/account", &[]).await
    }

    /// Every open position.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn positions(&self) -> Result<Vec<Position>, RestError> {
        self.trading.get("/v2/positions", &[]).await
    }

    /// Orders, newest first: the open ones, or all.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn orders(&self, open_only: bool, limit: u32) -> Result<Vec<Order>, RestError> {
        self.trading
            .get(
                "/v2/orders",
                &[
                    ("status", if open_only { "open" } else { "all" }.to_string()),
                    ("limit", limit.clamp(1, 500).to_string()),
                    ("direction", "desc".to_string()),
                ],
            )
            .await
    }

    /// Place an order. Alpaca refuses a second order with the same client order id (422).
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn submit(&self, order: &NewOrder<'_>) -> Result<Order, RestError> {
        let mut body = json!({
            "symbol": order.symbol,
            "side": order.side,
            "type": order.order_type,
            "time_in_force": order.time_in_force,
            "client_order_id": order.client_order_id,
        });
        let amount = order.amount.to_string();
        if order.notional {
            body["notional"] = json!(amount);
        } else {
            body["qty"] = json!(amount);
        }
        if let Some(limit) = order.limit_price {
            body["limit_price"] = json!(limit.to_string());
        }
        self.trading.post("/v2/orders", &body).await
    }

    /// The order placed with `client_order_id`, if any.
    ///
    /// # Errors
    /// [`RestError`]; an unknown id is `Invalid` with status 404.
    pub async fn order_by_client_id(&self, client_order_id: &str) -> Result<Order, RestError> {
        self.trading
            .get(
                "/v2/orders:by_client_order_id",
                &[("client_order_id", client_order_id.to_string())],
            )
            .await
    }

    /// Ask for an open order to be cancelled.
    ///
    /// # Errors
    /// [`RestError`]: `Invalid` with status 422 when it can no longer be cancelled.
    pub async fn cancel(&self, order_id: &str) -> Result<(), RestError> {
        self.trading.delete(&format!("/v2/orders/{order_id}")).await
    }
}
