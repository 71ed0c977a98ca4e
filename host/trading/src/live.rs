//! A live market: daily bars of the configured symbols fetched from Polygon or Alpaca into
//! memory and served from there, bounded by as-of like the replay; news fetched per call,
//! bounded by the call's as-of time. Its clock is the exchange's calendar in wall time: a
//! trading day is ticked once its session has closed (with a settling margin), never outside.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Days, NaiveDate, Utc};
use overseer_market::{Bar, Market, Replay, Timeframe, calendar};
use overseer_providers::alpaca::Alpaca;
use overseer_providers::polygon::{Article, Polygon};
use overseer_providers::rest::RestError;

use crate::desk::Trading;

/// Calendar days of history fetched behind the newest close: room for a year of indicators.
pub const HISTORY_DAYS: u64 = 400;

/// How long after a session's close its bar is taken as final.
pub const SETTLE: Duration = Duration::from_secs(15 * 60);

/// News about the market, bounded by the caller.
#[async_trait]
pub trait NewsSource: Send + Sync {
    /// Up to `limit` articles about `symbol` published from `since_ms` to `until_ms`, newest
    /// first.
    async fn news(
        &self,
        symbol: &str,
        since_ms: u64,
        until_ms: u64,
        limit: u32,
    ) -> Result<Vec<Article>, RestError>;
}

/// A remote source of bars and news.
#[derive(Clone)]
pub enum Remote {
    Polygon(Polygon),
    Alpaca(Alpaca),
}

/// Bars of a live provider, held in memory.
pub struct LiveMarket {
    remote: Remote,
    symbols: Vec<String>,
    bars: RwLock<Replay>,
}

fn time(ms: u64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX)).unwrap_or_default()
}

impl LiveMarket {
    pub fn new(remote: Remote, mut symbols: Vec<String>) -> LiveMarket {
        symbols.sort();
        symbols.dedup();
        LiveMarket {
            remote,
            symbols,
            bars: RwLock::new(Replay::default()),
        }
    }

    /// Fetch every symbol's daily bars up to `through`, [`HISTORY_DAYS`] back.
    ///
    /// # Errors
    /// The provider's, for the first symbol that fails (the others keep what they had).
    pub async fn refresh(&self, through: NaiveDate) -> Result<(), RestError> {
        let from = through
            .checked_sub_days(Days::new(HISTORY_DAYS))
            .unwrap_or(through);
        for symbol in &self.symbols {
            let bars = match &self.remote {
                Remote::Polygon(p) => p.daily_bars(symbol, from, through).await?,
                Remote::Alpaca(a) => a.daily_bars(symbol, from, through).await?,
            };
            let bars: Vec<Bar> = bars.into_iter().filter(|b| b.date <= through).collect();
            let mut held = self.bars.write().unwrap_or_else(|p| p.into_inner());
            if let Err(e) = held.set_series(symbol, bars) {
                tracing::warn!(symbol, error = %e, "bars not kept");
            }
        }
        Ok(())
    }
}

#[async_trait]
impl NewsSource for LiveMarket {
    async fn news(
        &self,
        symbol: &str,
        since_ms: u64,
        until_ms: u64,
        limit: u32,
    ) -> Result<Vec<Article>, RestError> {
        let (since, until) = (time(since_ms), time(until_ms));
        let articles = match &self.remote {
            Remote::Polygon(p) => p.news(symbol, since, until, limit).await?,
            Remote::Alpaca(a) => a.news(symbol, since, until, limit).await?,
        };
        // Whatever the provider answers, nothing published after as-of.
        Ok(articles
            .into_iter()
            .filter(|a| a.published_ms <= until_ms)
            .collect())
    }
}

impl Market for LiveMarket {
    fn symbols(&self) -> Vec<String> {
        self.symbols.clone()
    }

    fn bars(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        from: NaiveDate,
        to: NaiveDate,
        as_of: NaiveDate,
    ) -> overseer_market::Result<Vec<Bar>> {
        self.known(symbol)?;
        let held = self.bars.read().unwrap_or_else(|p| p.into_inner());
        match held.bars(symbol, timeframe, from, to, as_of) {
            Err(overseer_market::Error::UnknownSymbol(_)) => Ok(Vec::new()),
            other => other,
        }
    }

    fn latest(&self, symbol: &str, as_of: NaiveDate) -> overseer_market::Result<Option<Bar>> {
        self.known(symbol)?;
        let held = self.bars.read().unwrap_or_else(|p| p.into_inner());
        match held.latest(symbol, as_of) {
            Err(overseer_market::Error::UnknownSymbol(_)) => Ok(None),
            other => other,
        }
    }
}

impl LiveMarket {
    /// Whether some symbol has a bar of `day`.
    pub fn has_bars_of(&self, day: NaiveDate) -> bool {
        let held = self.bars.read().unwrap_or_else(|p| p.into_inner());
        self.symbols
            .iter()
            .any(|s| matches!(held.latest(s, day), Ok(Some(bar)) if bar.date == day))
    }

    fn known(&self, symbol: &str) -> overseer_market::Result<()> {
        if self.symbols.iter().any(|s| s == symbol) {
            Ok(())
        } else {
            Err(overseer_market::Error::UnknownSymbol(symbol.to_string()))
        }
    }
}

/// The trading days of a live market's clock: [`HISTORY_DAYS`] back from the newest close.
pub fn live_days(now: DateTime<Utc>) -> Vec<NaiveDate> {
    let settled = now - chrono::Duration::from_std(SETTLE).unwrap_or_default();
    let last = calendar::last_close(settled);
    let from = last
        .checked_sub_days(Days::new(HISTORY_DAYS))
        .unwrap_or(last);
    calendar::trading_days(from, last)
}

/// Tick a live market in wall time: every `poll`, when a session has closed (and settled)
/// since the clock's day, fetch its bars and step the clock to it, one day at a time.
pub fn spawn_live_clock(
    trading: &Trading,
    live: Arc<LiveMarket>,
    poll: Duration,
) -> tokio::task::JoinHandle<()> {
    let trading = trading.clone();
    tokio::spawn(async move {
        loop {
            let settled = Utc::now() - chrono::Duration::from_std(SETTLE).unwrap_or_default();
            let closed = calendar::last_close(settled);
            if closed > trading.as_of() {
                match live.refresh(closed).await {
                    // The provider may publish a session's bars a while after its close: the
                    // clock waits for them, so no order expires on a bar it never saw.
                    Ok(()) if !live.has_bars_of(closed) => {
                        tracing::info!(day = %closed, "no bars of the last session yet; the clock waits");
                    }
                    Ok(()) => {
                        trading.extend_calendar(closed);
                        while trading.as_of() < closed {
                            match trading.step().await {
                                Ok(Some(_)) => {}
                                Ok(None) => break,
                                Err(e) => {
                                    tracing::warn!(error = %e, "live clock step failed");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, code = e.code(), "market data not refreshed")
                    }
                }
            }
            if let Err(e) = trading.sync().await {
                tracing::warn!(error = %e, "orders not read back from the broker");
            }
            tokio::time::sleep(poll).await;
        }
    })
}

/// The trading side's sources as configured, and the live market when there is one (its
/// clock is [`spawn_live_clock`]).
pub struct Connected {
    pub sources: crate::Sources,
    pub live: Option<Arc<LiveMarket>>,
}

/// Build the market, news and broker `config` names. A live market fetches its history now;
/// when that fails the daemon still starts, and the clock tries again at every poll.
///
/// # Errors
/// A sentence: keys missing for a remote service, the Alpaca broker over the replayed market,
/// `--live-trading` without the Alpaca broker.
pub async fn connect(config: &crate::TradingConfig) -> Result<Connected, String> {
    use crate::config::{BrokerKind, MarketKind};
    let alpaca = || -> Result<Alpaca, String> {
        let a = &config.alpaca;
        let (Some(key_id), Some(secret)) = (&a.key_id, &a.secret) else {
            return Err(
                "Alpaca needs a key pair: set OVERSEER_ALPACA_KEY_ID and OVERSEER_ALPACA_SECRET"
                    .to_string(),
            );
        };
        let trading = if config.live_trading {
            &a.live_url
        } else {
            &a.paper_url
        };
        Alpaca::new(&a.data_url, trading, key_id, secret)
    };
    if config.live_trading && config.broker != BrokerKind::Alpaca {
        return Err(
            "--live-trading places real orders with Alpaca: it needs broker = \"alpaca\""
                .to_string(),
        );
    }
    let venue = match config.broker {
        BrokerKind::Paper => crate::Venue::Paper,
        BrokerKind::Alpaca if config.market == MarketKind::Replay => {
            return Err("the Alpaca broker trades at today's prices: use a live market (market = \"polygon\" or \"alpaca\")".to_string());
        }
        BrokerKind::Alpaca => crate::Venue::Alpaca(alpaca()?),
    };
    let remote = match config.market {
        MarketKind::Replay => {
            let replay = Replay::bundled().map_err(|e| e.to_string())?;
            let days = replay.trading_days();
            return Ok(Connected {
                sources: crate::Sources {
                    market: Arc::new(replay),
                    news: None,
                    venue,
                    days,
                    start: config.start,
                },
                live: None,
            });
        }
        MarketKind::Polygon => {
            let Some(key) = &config.polygon.key else {
                return Err("Polygon needs a key: set OVERSEER_POLYGON_KEY".to_string());
            };
            Remote::Polygon(Polygon::new(&config.polygon.url, key)?)
        }
        MarketKind::Alpaca => Remote::Alpaca(alpaca()?),
    };
    let live = Arc::new(LiveMarket::new(remote, config.symbols.clone()));
    let days = live_days(Utc::now());
    let start = days.last().copied().unwrap_or(config.start);
    if let Err(e) = live.refresh(start).await {
        tracing::warn!(error = %e, code = e.code(), "market data not fetched at start; the clock retries");
    }
    Ok(Connected {
        sources: crate::Sources {
            market: live.clone(),
            news: Some(live.clone()),
            venue,
            days,
            start,
        },
        live: Some(live),
    })
}
