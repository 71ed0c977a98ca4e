//! Polygon.io: daily aggregates (`GET /v2/aggs/ticker/{T}/range/1/day/{from}/{to}`, adjusted
//! for splits), news with its per-ticker sentiment insights (`GET /v2/reference/news`) and
//! companies' financials from their SEC filings (`GET /vX/reference/financials`),
//! authenticated with `Authorization: Bearer <key>`.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use overseer_market::Bar;
use serde::Deserialize;

use crate::rest::{Rest, RestError};
use crate::secret::Secret;

/// Polygon's API.
pub const DEFAULT_URL: &str = "https://api.polygon.io";

/// One news article.
#[derive(Debug, Clone, PartialEq)]
pub struct Article {
    pub id: String,
    pub headline: String,
    pub summary: String,
    pub publisher: String,
    pub url: String,
    pub published_ms: u64,
    pub symbols: Vec<String>,
    /// The provider's sentiment for the symbol asked about, −1 to 1.
    pub sentiment: Option<f64>,
}

/// One figure of a filing.
#[derive(Debug, Clone, PartialEq)]
pub struct LineItem {
    /// `income_statement`, `balance_sheet`, `cash_flow_statement`, `comprehensive_income`.
    pub statement: String,
    /// Polygon's concept: `revenues`, `net_income_loss`, `equity`, …
    pub name: String,
    pub value: f64,
    /// `USD`, `USD / shares`, …
    pub unit: String,
}

/// The figures of one annual or quarterly report.
#[derive(Debug, Clone, PartialEq)]
pub struct Filing {
    /// `annual` or `quarterly`.
    pub timeframe: String,
    pub fiscal_year: String,
    /// `FY`, `Q1` … `Q4`.
    pub fiscal_period: String,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
    /// The day it was filed with the SEC.
    pub filing_date: NaiveDate,
    pub items: Vec<LineItem>,
}

/// A client of Polygon.
#[derive(Clone)]
pub struct Polygon {
    rest: Rest,
}

#[derive(Deserialize)]
struct Aggregates {
    #[serde(default)]
    results: Vec<Aggregate>,
}

#[derive(Deserialize)]
struct Aggregate {
    /// The start of the bar, in milliseconds since the epoch.
    t: i64,
    o: f64,
    h: f64,
    l: f64,
    c: f64,
    v: f64,
}

#[derive(Deserialize)]
struct Financials {
    #[serde(default)]
    results: Vec<FinancialsResult>,
}

#[derive(Deserialize)]
struct FinancialsResult {
    #[serde(default)]
    timeframe: String,
    #[serde(default)]
    fiscal_year: String,
    #[serde(default)]
    fiscal_period: String,
    start_date: Option<NaiveDate>,
    end_date: Option<NaiveDate>,
    filing_date: Option<NaiveDate>,
    /// Statement → concept → `{label, order, unit, value, …}`.
    #[serde(default)]
    financials: serde_json::Map<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct News {
    #[serde(default)]
    results: Vec<NewsResult>,
}

#[derive(Deserialize)]
struct NewsResult {
    id: String,
    title: String,
    #[serde(default)]
    description: Option<String>,
    publisher: Publisher,
    article_url: String,
    published_utc: DateTime<Utc>,
    #[serde(default)]
    tickers: Vec<String>,
    #[serde(default)]
    insights: Vec<Insight>,
}

#[derive(Deserialize)]
struct Publisher {
    name: String,
}

#[derive(Deserialize)]
struct Insight {
    ticker: String,
    sentiment: String,
}

impl Polygon {
    /// A client of Polygon at `url` with `key`.
    ///
    /// # Errors
    /// A key that cannot be a header.
    pub fn new(url: &str, key: &Secret) -> Result<Polygon, String> {
        let auth = format!("Bearer {}", key.expose());
        Ok(Polygon {
            rest: Rest::new(
                "polygon",
                url,
                &[("authorization", &auth)],
                Duration::from_secs(30),
            )?,
        })
    }

    /// Pause `first` before the first retry.
    pub fn with_backoff(self, first: Duration) -> Polygon {
        Polygon {
            rest: self.rest.with_backoff(first),
        }
    }

    /// The daily bars of `symbol` from `from` to `to`, oldest first, adjusted for splits.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn daily_bars(
        &self,
        symbol: &str,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Bar>, RestError> {
        let aggregates: Aggregates = self
            .rest
            .get(
                &format!("/v2/aggs/ticker/{symbol}/range/1/day/{from}/{to}"),
                &[
                    ("adjusted", "true".to_string()),
                    ("sort", "asc".to_string()),
                    ("limit", "50000".to_string()),
                ],
            )
            .await?;
        aggregates
            .results
            .into_iter()
            .map(|a| {
                // A daily bar starts at midnight in New York: 04:00 or 05:00 UTC, the same date.
                let date = DateTime::from_timestamp_millis(a.t)
                    .map(|t| t.date_naive())
                    .ok_or_else(|| RestError::Malformed {
                        service: "polygon",
                        message: format!("bar time {}", a.t),
                    })?;
                Ok(Bar {
                    date,
                    open: a.o,
                    high: a.h,
                    low: a.l,
                    close: a.c,
                    volume: a.v,
                })
            })
            .collect()
    }

    /// Up to `limit` (1 to 100) `timeframe` (`annual`, `quarterly`) filings of `symbol` filed
    /// on or before `filed_by`, newest first: the figures known on that day. A result without
    /// a filing date is left out (when it became known cannot be told), as is any filed
    /// later, whatever the service answers.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn financials(
        &self,
        symbol: &str,
        timeframe: &str,
        filed_by: NaiveDate,
        limit: u32,
    ) -> Result<Vec<Filing>, RestError> {
        let answer: Financials = self
            .rest
            .get(
                "/vX/reference/financials",
                &[
                    ("ticker", symbol.to_string()),
                    ("timeframe", timeframe.to_string()),
                    ("filing_date.lte", filed_by.to_string()),
                    ("order", "desc".to_string()),
                    ("sort", "filing_date".to_string()),
                    ("limit", limit.clamp(1, 100).to_string()),
                ],
            )
            .await?;
        Ok(answer
            .results
            .into_iter()
            .filter_map(|r| {
                let filing_date = r.filing_date.filter(|d| *d <= filed_by)?;
                let items = r
                    .financials
                    .iter()
                    .filter_map(|(statement, concepts)| Some((statement, concepts.as_object()?)))
                    .flat_map(|(statement, concepts)| {
                        concepts.iter().filter_map(move |(name, point)| {
                            Some(LineItem {
                                statement: statement.clone(),
                                name: name.clone(),
                                value: point["value"].as_f64().filter(|v| v.is_finite())?,
                                unit: point["unit"].as_str().unwrap_or_default().to_string(),
                            })
                        })
                    })
                    .collect();
                Some(Filing {
                    timeframe: r.timeframe,
                    fiscal_year: r.fiscal_year,
                    fiscal_period: r.fiscal_period,
                    start_date: r.start_date,
                    end_date: r.end_date,
                    filing_date,
                    items,
                })
            })
            .collect())
    }

    /// Up to `limit` articles about `symbol` published from `since` to `until`, newest first.
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
            .rest
            .get(
                "/v2/reference/news",
                &[
                    ("ticker", symbol.to_string()),
                    (
                        "published_utc.gte",
                        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ),
                    (
                        "published_utc.lte",
                        until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    ),
                    ("order", "desc".to_string()),
                    ("sort", "published_utc".to_string()),
                    ("limit", limit.clamp(1, 1000).to_string()),
                ],
            )
            .await?;
        Ok(news
            .results
            .into_iter()
            .map(|n| Article {
                sentiment: n
                    .insights
                    .iter()
                    .find(|i| i.ticker == symbol)
                    .and_then(|i| match i.sentiment.as_str() {
                        "positive" => Some(1.0),
                        "neutral" => Some(0.0),
                        "negative" => Some(-1.0),
                        _ => None,
                    }),
                id: n.id,
                headline: n.title,
                summary: n.description.unwrap_or_default(),
                publisher: n.publisher.name,
                url: n.article_url,
                published_ms: u64::try_from(n.published_utc.timestamp_millis()).unwrap_or(0),
                symbols: n.tickers,
            })
            .collect())
    }
}
