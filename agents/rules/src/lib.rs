//! `rules`: a rule strategy on one symbol, for backtests of research ideas. Each tick, from
//! the closes of the last `lookback` bars (read from the market, bounded by the tick's
//! as-of):
//! - `momentum`: hold while the return over `lookback` bars is above `edge`;
//! - `mean_reversion`: buy when the close is more than `z` deviations below its `lookback`
//!   mean, sell when it is back above the mean;
//! - `sma_cross`: hold while the `lookback / 4` average is above the `lookback` one.
//!
//! Entries buy `fraction` of the equity at the close (a market order for the next open);
//! exits sell the position. With `live = "false"` (as shipped) it places nothing: a backtest
//! turns it on with `"config": {"live": "true", …}`.

use overseer_guest::broker::{self, Amount, OrderRequest, OrderType, Side, TimeInForce};
use overseer_guest::market::{self, Timeframe};
use overseer_guest::{Agent, Error, Event, Info, calculator};
use serde_json::{Value, json};

struct Rules;

thread_local! {
    /// The closes seen, oldest first, and the day of the last: one instance serves a whole
    /// backtest, so the history is read from the market once and then grows by the ticks.
    static CLOSES: std::cell::RefCell<(Vec<f64>, String)> =
        const { std::cell::RefCell::new((Vec::new(), String::new())) };
}

/// The closes up to the tick's day: the cached ones plus the tick's close, or read from the
/// market when the cache does not end the day before.
fn closes(symbol: &str, as_of: &str, close: f64) -> Result<Vec<f64>, Error> {
    CLOSES.with(|cache| {
        let mut cache = cache.borrow_mut();
        let (closes, last) = &mut *cache;
        if last.as_str() == as_of {
            return Ok(closes.clone());
        }
        let continues = !last.is_empty() && last.as_str() < as_of;
        if continues {
            closes.push(close);
        } else {
            let bars = market::bars(
                symbol,
                Timeframe::Day,
                &market::years_before(as_of, 3),
                as_of,
            )?;
            *closes = bars.iter().map(|b| b.close).collect();
        }
        // Keep what the longest rule needs.
        if closes.len() > 600 {
            let extra = closes.len() - 600;
            closes.drain(..extra);
        }
        *last = as_of.to_string();
        Ok(closes.clone())
    })
}

fn config(key: &str, default: &str) -> String {
    overseer_guest::config(key).unwrap_or_else(|| default.to_string())
}

fn number(key: &str, default: f64) -> f64 {
    config(key, "")
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .unwrap_or(default)
}

/// Whether the rule wants to hold the symbol, given `closes` (oldest first), or `None`
/// for no opinion (not enough bars).
fn wants(rule: &str, closes: &[f64], lookback: usize, held: bool) -> Option<bool> {
    let n = closes.len();
    if n <= lookback {
        return None;
    }
    let close = closes[n - 1];
    match rule {
        "momentum" => Some(close / closes[n - 1 - lookback] - 1.0 > number("edge", 0.0)),
        "mean_reversion" => {
            let window = &closes[n - lookback..];
            let (mean, sd) = (calculator::mean(window), calculator::std_dev(window));
            if !sd.is_finite() || sd <= 0.0 {
                return Some(held);
            }
            let z = (close - mean) / sd;
            Some(if held { z < 0.0 } else { z < -number("z", 2.0) })
        }
        _ => {
            let fast = calculator::sma(closes, (lookback / 4).max(1))?;
            let slow = calculator::sma(closes, lookback)?;
            Some(fast > slow)
        }
    }
}

impl Agent for Rules {
    fn describe() -> Info {
        Info {
            name: "rules".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Rule strategies for backtests of research ideas".to_string(),
            subscriptions: vec!["market.tick".to_string()],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        if config("live", "false").trim() != "true" {
            return Ok(json!({ "action": "none", "why": "live is false" }).to_string());
        }
        let tick: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("tick: {e}")))?;
        let symbol = config("symbol", "AAPL");
        if tick["bars"].get(&symbol).is_none() {
            return Ok(json!({ "action": "none" }).to_string());
        }
        let rule = config("rule", "momentum");
        if !matches!(rule.as_str(), "momentum" | "mean_reversion" | "sma_cross") {
            return Err(Error::invalid_input(format!(
                "rule {rule:?} is not momentum, mean_reversion or sma_cross"
            )));
        }
        let lookback = (number("lookback", 60.0) as usize).clamp(2, 500);
        let as_of = market::as_of();
        let Some(close) = tick["bars"][symbol.as_str()]["close"].as_f64() else {
            return Err(Error::invalid_input(format!("tick: no close of {symbol}")));
        };
        let closes = closes(&symbol, &as_of.date, close)?;
        let held = broker::positions()?
            .iter()
            .find(|p| p.symbol == symbol)
            .map_or(0.0, |p| p.quantity);
        let Some(want) = wants(&rule, &closes, lookback, held > 0.0) else {
            return Ok(json!({ "action": "none", "why": "too few bars" }).to_string());
        };
        let (side, quantity) = match (want, held > 0.0) {
            (true, false) => {
                let equity = broker::account()?.equity;
                let q = (number("fraction", 0.2) * equity / close).floor();
                if !q.is_finite() || q < 1.0 {
                    return Ok(json!({ "action": "none", "why": "under one share" }).to_string());
                }
                (Side::Buy, q)
            }
            (false, true) => (Side::Sell, held),
            _ => return Ok(json!({ "action": "hold" }).to_string()),
        };
        let order = broker::submit(&OrderRequest {
            symbol: symbol.clone(),
            side,
            amount: Amount::Quantity(quantity),
            order_type: OrderType::Market,
            limit_price: None,
            time_in_force: TimeInForce::Day,
            client_order_id: format!(
                "{}-{}",
                as_of.date,
                if side == Side::Buy { "buy" } else { "sell" }
            ),
        });
        Ok(match order {
            Ok(o) => {
                json!({ "action": if side == Side::Buy { "buy" } else { "sell" }, "order": o.id })
            }
            Err(e) => json!({ "action": "refused", "why": e.message() }),
        }
        .to_string())
    }
}

overseer_guest::export!(Rules);
