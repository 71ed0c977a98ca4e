//! `research-planner`: turns notable events into research tasks on `research.task`,
//! `{id, kind, specialisation, symbols, question, priority, due_ms, as_of, evidence}`, for the
//! action executor to answer.
//!
//! On each `market.tick`, for each symbol with a bar that day (its last year of bars read
//! from the market, as of the tick):
//! - `large_move`: the close-to-close return `c_t / c_{t−1} − 1` is at least `move` (5 %) in
//!   size → technical analysis; `high` priority at twice the threshold;
//! - `volume_spike`: the day's volume is at least `volume_spike` (3) times the mean of the 20
//!   days before → technical analysis (on a day of a large move, the move's task carries the
//!   volume instead: one event, one task);
//! - `drawdown`: the close is at least `drawdown` (20 %) below the highest close of the last
//!   252 → risk assessment.
//!
//! A `trade.refused` makes a `refusal` task for risk assessment.
//!
//! One event makes one task: a kind and symbol that made a task is quiet for `dedupe_days`
//! days of market time (kept in kv; written only when the call succeeds), so a move that
//! runs on for days, or a tick delivered twice, asks once (a condition that lasts past the
//! window asks again). A task is due a day after its as-of (`due_ms`).

use overseer_guest::market::{self, DAY_MS, Timeframe};
use overseer_guest::research::task_specialisation;
use overseer_guest::{Agent, Error, Event, Info, calculator, kv};
use serde_json::{Value, json};

struct Planner;

/// A positive threshold from the config, or `default`.
fn setting(key: &str, default: f64) -> f64 {
    overseer_guest::config_parsed(key)
        .filter(|v: &f64| v.is_finite() && *v > 0.0)
        .unwrap_or(default)
}

/// A task, unless its kind and symbol asked within the window (then `None`).
struct Planned {
    kind: &'static str,
    symbol: String,
    question: String,
    priority: &'static str,
    evidence: Value,
}

/// Publish `planned` as a task unless its kind and symbol are within their quiet window.
fn ask(planned: Planned, as_of: &market::AsOfTime) -> Result<Option<Value>, Error> {
    let key = format!("asked:{}:{}", planned.kind, planned.symbol);
    let window = (setting("dedupe_days", 5.0) * DAY_MS as f64).min(u64::MAX as f64) as u64;
    let last: Option<u64> = kv::get(&key)?.and_then(|v| v.parse().ok());
    if last.is_some_and(|last| as_of.at_ms < last.saturating_add(window)) {
        return Ok(None);
    }
    kv::set(&key, &as_of.at_ms.to_string())?;
    let due_ms = as_of.at_ms + DAY_MS;
    let task = json!({
        "id": format!("{}-{}-{}", planned.kind, planned.symbol, as_of.date),
        "kind": planned.kind,
        "specialisation": task_specialisation(planned.kind),
        "symbols": [planned.symbol],
        "question": planned.question,
        "priority": planned.priority,
        "due_ms": due_ms,
        "as_of": as_of.date,
        "evidence": planned.evidence,
    });
    overseer_guest::emit("research.task", &task.to_string())?;
    Ok(Some(task))
}

/// The notable things about `symbol` on the tick's day.
fn notable(symbol: &str, as_of: &market::AsOfTime) -> Result<Vec<Planned>, Error> {
    let bars = market::bars(
        symbol,
        Timeframe::Day,
        &market::years_before(&as_of.date, 1),
        &as_of.date,
    )?;
    let Some(today) = bars.last().filter(|b| b.date == as_of.date) else {
        return Ok(Vec::new());
    };
    let n = bars.len();
    let mut found = Vec::new();
    if n >= 2 {
        let previous = bars[n - 2].close;
        let change = today.close / previous - 1.0;
        let threshold = setting("move", 0.05);
        if change.abs() >= threshold {
            found.push(Planned {
                kind: "large_move",
                symbol: symbol.to_string(),
                question: format!(
                    "{symbol} moved {:+.1}% on {}: what do its indicators say now?",
                    change * 100.0,
                    as_of.date
                ),
                priority: if change.abs() >= 2.0 * threshold {
                    "high"
                } else {
                    "normal"
                },
                evidence: json!({ "metric": "return_1d", "value": change, "previous_close": previous, "close": today.close }),
            });
        }
    }
    let volumes: Vec<f64> = bars.iter().map(|b| b.volume).collect();
    if let Some(ratio) = calculator::volume_ratio(&volumes, 20) {
        if ratio >= setting("volume_spike", 3.0)
            && let Some(moved) = found.iter_mut().find(|p| p.kind == "large_move")
        {
            // One event, one task: a move on heavy volume asks once, with both numbers.
            moved.question = format!("{} (on {ratio:.1}× its 20-day volume)", moved.question);
            moved.evidence["volume_ratio_20d"] = json!(ratio);
        } else if ratio >= setting("volume_spike", 3.0) {
            found.push(Planned {
                kind: "volume_spike",
                symbol: symbol.to_string(),
                question: format!(
                    "{symbol} traded {ratio:.1}× its 20-day volume on {}: what changed?",
                    as_of.date
                ),
                priority: "normal",
                evidence: json!({ "metric": "volume_ratio_20d", "value": ratio }),
            });
        }
    }
    let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
    let fall = calculator::drawdown_from_high(&closes, 252).unwrap_or(0.0);
    if fall >= setting("drawdown", 0.2) {
        found.push(Planned {
            kind: "drawdown",
            symbol: symbol.to_string(),
            question: format!(
                "{symbol} is {:.1}% below its year's high: how much risk does it carry now?",
                fall * 100.0
            ),
            priority: "normal",
            evidence: json!({ "metric": "drawdown_from_252d_high", "value": fall }),
        });
    }
    Ok(found)
}

impl Agent for Planner {
    fn describe() -> Info {
        Info {
            name: "research-planner".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Notable events into research tasks".to_string(),
            subscriptions: vec!["market.tick".to_string(), "trade.refused".to_string()],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("{}: {e}", event.topic)))?;
        let as_of = market::as_of();
        let mut tasks = Vec::new();
        match event.topic.as_str() {
            "market.tick" => {
                let Some(bars) = payload["bars"].as_object() else {
                    return Err(Error::invalid_input("market.tick: no bars"));
                };
                for symbol in bars.keys() {
                    // One symbol the market cannot serve does not keep the others unread.
                    let found = notable(symbol, &as_of).unwrap_or_else(|e| {
                        overseer_guest::log::warn(&format!("{symbol}: {}", e.message()));
                        Vec::new()
                    });
                    for planned in found {
                        tasks.extend(ask(planned, &as_of)?);
                    }
                }
            }
            "trade.refused" => {
                let symbol = payload["symbol"]
                    .as_str()
                    .ok_or_else(|| Error::invalid_input("trade.refused: no symbol"))?;
                let code = payload["code"].as_str().unwrap_or("refused");
                let planned = Planned {
                    kind: "refusal",
                    symbol: symbol.to_string(),
                    question: format!(
                        "the risk gate refused an order for {symbol} ({code}): is the risk as high as the gate says?"
                    ),
                    priority: "normal",
                    evidence: json!({ "code": code, "message": payload["message"], "detail": payload["detail"] }),
                };
                tasks.extend(ask(planned, &as_of)?);
            }
            _ => {}
        }
        overseer_guest::metric("tasks", tasks.len() as f64);
        Ok(json!({ "as_of": as_of.date, "tasks": tasks }).to_string())
    }
}

overseer_guest::export!(Planner);
