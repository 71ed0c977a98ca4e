//! `world-monitor`: on each `market.tick`, reads a year of daily bars and the latest news of
//! every watched symbol as of the tick, computes indicators with the SDK's calculator (ta-rs:
//! SMA 20/50, EMA 12/26, RSI 14, MACD 12/26/9, ATR 14) and a sentiment score (the provider's when it gives one,
//! else VADER's compound score of the headline and summary; the LLM's when one is
//! configured), and publishes them as one `market.snapshot`.

use overseer_guest::calculator::{self, Candle};
use overseer_guest::market::{self, Bar, NewsItem};
use overseer_guest::{Agent, Error, Event, Info, llm, log, prompts};
use serde_json::{Value, json};

struct WorldMonitor;

/// Indicators of one symbol at its last bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Indicators {
    pub close: f64,
    pub change_1d: f64,
    pub sma_20: f64,
    pub sma_50: f64,
    pub ema_12: f64,
    pub ema_26: f64,
    pub rsi_14: f64,
    pub macd: f64,
    pub macd_signal: f64,
    pub macd_histogram: f64,
    pub atr_14: f64,
}

/// Fewest bars the indicators need to have warmed up (the 50-day average).
pub const MIN_BARS: usize = 50;

/// The indicators over `bars` (oldest first), or `None` with fewer than [`MIN_BARS`]: the
/// SDK's calculator, which every agent shares.
pub fn indicators(bars: &[Bar]) -> Option<Indicators> {
    if bars.len() < MIN_BARS {
        return None;
    }
    let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
    let candles: Vec<Candle> = bars
        .iter()
        .map(|b| Candle {
            open: b.open,
            high: b.high,
            low: b.low,
            close: b.close,
            volume: b.volume,
        })
        .collect();
    let close = *closes.last()?;
    let previous = closes[closes.len() - 2];
    let macd = calculator::macd(&closes, 12, 26, 9)?;
    Some(Indicators {
        close,
        change_1d: close / previous - 1.0,
        sma_20: calculator::sma(&closes, 20)?,
        sma_50: calculator::sma(&closes, 50)?,
        ema_12: calculator::ema(&closes, 12)?,
        ema_26: calculator::ema(&closes, 26)?,
        rsi_14: calculator::rsi(&closes, 14)?,
        macd: macd.macd,
        macd_signal: macd.signal,
        macd_histogram: macd.histogram,
        atr_14: calculator::atr(&candles, 14)?,
    })
}

/// `up` when the close and the 20-day average are above the 50-day one, `down` when both
/// are below, else `flat`.
pub fn trend(i: &Indicators) -> &'static str {
    if i.close > i.sma_50 && i.sma_20 > i.sma_50 {
        "up"
    } else if i.close < i.sma_50 && i.sma_20 < i.sma_50 {
        "down"
    } else {
        "flat"
    }
}

/// The sentiment of one article, from −1 to 1.
fn article_sentiment(
    analyzer: &vader_sentiment::SentimentIntensityAnalyzer,
    item: &NewsItem,
) -> f64 {
    item.sentiment.unwrap_or_else(|| {
        let text = format!("{}. {}", item.headline, item.summary);
        analyzer
            .polarity_scores(&text)
            .get("compound")
            .copied()
            .unwrap_or(0.0)
    })
}

/// The LLM's score of the headlines, from −1 to 1, when a model is configured and answers
/// with a number.
fn llm_sentiment(symbol: &str, news: &[NewsItem]) -> Option<f64> {
    llm::model()?;
    let headlines: Vec<&str> = news.iter().map(|n| n.headline.as_str()).collect();
    let variables = serde_json::json!({ "symbol": symbol, "headlines": headlines.join("\n") });
    let served = prompts::get("sentiment", symbol, &variables.to_string()).ok()?;
    let score = llm::complete(&prompts::request(&served, 8, 0.0))
        .ok()
        .and_then(|answer| answer.text.trim().parse::<f64>().ok())
        .filter(|score| (-1.0..=1.0).contains(score));
    // A use succeeds when the model answered a score in range.
    let _ = prompts::report(served.use_id, None, Some(score.is_some()));
    score
}

fn symbols() -> Vec<String> {
    let configured = overseer_guest::config("symbols").unwrap_or_default();
    let configured: Vec<String> = configured
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if configured.is_empty() {
        market::symbols()
    } else {
        configured
    }
}

impl Agent for WorldMonitor {
    fn describe() -> Info {
        Info {
            name: "world-monitor".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Indicators and news sentiment per symbol on every market tick"
                .to_string(),
            subscriptions: vec!["market.tick".to_string()],
        }
    }

    fn handle(_event: Event) -> Result<String, Error> {
        let as_of = market::as_of();
        let news_limit: u32 = overseer_guest::config("news_limit")
            .and_then(|n| n.parse().ok())
            .unwrap_or(10);
        let analyzer = vader_sentiment::SentimentIntensityAnalyzer::new();
        let mut snapshot = serde_json::Map::new();
        for symbol in symbols() {
            let bars = market::bars(
                &symbol,
                market::Timeframe::Day,
                &market::years_before(&as_of.date, 1),
                &as_of.date,
            )?;
            let Some(i) = indicators(&bars) else {
                log::info(&format!(
                    "{symbol}: {} bars, too few for indicators",
                    bars.len()
                ));
                continue;
            };
            let since = as_of.at_ms.saturating_sub(3 * 24 * 3_600_000);
            let news = market::news(&symbol, since, news_limit)?;
            let sentiment = if news.is_empty() {
                0.0
            } else {
                llm_sentiment(&symbol, &news).unwrap_or_else(|| {
                    news.iter()
                        .map(|n| article_sentiment(&analyzer, n))
                        .sum::<f64>()
                        / news.len() as f64
                })
            };
            let date = bars.last().map(|b| b.date.clone()).unwrap_or_default();
            snapshot.insert(
                symbol.clone(),
                json!({
                    "date": date,
                    "close": i.close,
                    "change_1d": i.change_1d,
                    "sma_20": i.sma_20,
                    "sma_50": i.sma_50,
                    "ema_12": i.ema_12,
                    "ema_26": i.ema_26,
                    "rsi_14": i.rsi_14,
                    "macd": i.macd,
                    "macd_signal": i.macd_signal,
                    "macd_histogram": i.macd_histogram,
                    "atr_14": i.atr_14,
                    "trend": trend(&i),
                    "sentiment": sentiment,
                    "news": news.len(),
                    "headlines": news.iter().take(3).map(|n| n.headline.clone()).collect::<Vec<_>>(),
                }),
            );
        }
        let payload = json!({ "as_of": as_of.date, "symbols": Value::Object(snapshot) });
        overseer_guest::emit("market.snapshot", &payload.to_string())?;
        overseer_guest::metric(
            "symbols_watched",
            payload["symbols"].as_object().map_or(0, |m| m.len()) as f64,
        );
        Ok(payload.to_string())
    }
}

overseer_guest::export!(WorldMonitor);
