//! Building blocks of research agents (the `research` feature): the six specialisations, the
//! evidence record every research result cites, and the window of bars a study reads.
//!
//! An evidence record is `{metric, symbol, value, source, as_of}`: `source` names the bars a
//! number came from (`bars:AAPL:2012-01-03..2013-01-03`), so anyone can fetch them and
//! compute it again.

use serde_json::{Map, Value, json};

use crate::Error;
use crate::market::{self, Bar, Timeframe};

/// The research specialisations, as tracks and tasks name them.
pub const SPECIALISATIONS: [&str; 6] = [
    "alpha_hunting",
    "market_analysis",
    "sentiment_analysis",
    "technical_analysis",
    "risk_assessment",
    "fundamental_research",
];

/// The kinds of research task, each with the specialisation it belongs to: a large one-day
/// move or volume spike is technical, a drawdown or a risk refusal is risk, a question is
/// market analysis and a trading idea is alpha hunting.
pub const TASK_KINDS: [(&str, &str); 6] = [
    ("large_move", "technical_analysis"),
    ("volume_spike", "technical_analysis"),
    ("drawdown", "risk_assessment"),
    ("refusal", "risk_assessment"),
    ("question", "market_analysis"),
    ("idea", "alpha_hunting"),
];

/// The specialisation a task of `kind` belongs to, `None` for an unknown kind.
pub fn task_specialisation(kind: &str) -> Option<&'static str> {
    TASK_KINDS.iter().find(|(k, _)| *k == kind).map(|(_, s)| *s)
}

/// Whether `name` is one of the [`SPECIALISATIONS`].
pub fn is_specialisation(name: &str) -> bool {
    SPECIALISATIONS.contains(&name)
}

/// One number and where it came from. A number that is not finite (too little data for it)
/// is reported as `null` with a note, never as a figure.
pub fn evidence(metric: &str, symbol: &str, value: f64, source: &str, as_of: &str) -> Value {
    if value.is_finite() {
        json!({ "metric": metric, "symbol": symbol, "value": value, "source": source, "as_of": as_of })
    } else {
        json!({ "metric": metric, "symbol": symbol, "value": null, "note": "not computable from the bars", "source": source, "as_of": as_of })
    }
}

/// The daily bars a study reads for one symbol, oldest first.
#[derive(Debug, Clone)]
pub struct Series {
    pub symbol: String,
    pub bars: Vec<Bar>,
}

impl Series {
    /// The closes, oldest first.
    pub fn closes(&self) -> Vec<f64> {
        self.bars.iter().map(|b| b.close).collect()
    }

    /// `bars:SYMBOL:FIRST..LAST`: which bars a number was computed from.
    pub fn source(&self) -> String {
        match (self.bars.first(), self.bars.last()) {
            (Some(first), Some(last)) => {
                format!("bars:{}:{}..{}", self.symbol, first.date, last.date)
            }
            _ => format!("bars:{}", self.symbol),
        }
    }
}

/// The last `window` daily bars of each symbol up to `as_of` (read from two years before
/// it); a symbol with fewer than `min` is left out, with a log line. Errors are the
/// market's (`invalid-input` for an unknown symbol, `denied` without the grant).
pub fn load(
    symbols: &[String],
    as_of: &str,
    window: usize,
    min: usize,
) -> Result<Vec<Series>, Error> {
    let from = market::years_before(as_of, 2);
    let mut out = Vec::new();
    for symbol in symbols {
        let mut bars = market::bars(symbol, Timeframe::Day, &from, as_of)?;
        if bars.len() > window {
            bars.drain(..bars.len() - window);
        }
        if bars.len() >= min {
            out.push(Series {
                symbol: symbol.clone(),
                bars,
            });
        } else {
            crate::log::info(&format!("{symbol}: {} bars, too few to study", bars.len()));
        }
    }
    Ok(out)
}

/// Check a trading rule with the host's backtester (`grant = ["backtest"]`): the strategy
/// the manifest's `validate_with` names (the bundled `rules` when it names none, or one
/// configured like it: `live`, `rule`, `symbol`) trading `rule` on `symbol` over the three
/// years to `as_of`, walk-forward (rolling: a year in sample, a quarter out, its `lookback`
/// chosen from 20 to 120 bars in sample). Answers `{rule, symbol, backtest, out_of_sample:
/// {sharpe, total_return, max_drawdown, trades, fees}, in_sample_score, out_of_sample_score,
/// buy_and_hold_return}`, the out-of-sample figures being those of the stitched test
/// windows. Errors are the backtest interface's.
pub fn validate_rule(rule: &str, symbol: &str, as_of: &str) -> Result<Value, Error> {
    let strategy = crate::config("validate_with").unwrap_or_else(|| "rules".to_string());
    let spec = json!({
        "agent": strategy,
        "symbols": [symbol],
        "from": market::years_before(as_of, 3),
        "to": as_of,
        "config": { "live": "true", "rule": rule, "symbol": symbol },
        "walk_forward": {
            "windows": "rolling",
            "in_sample": 252,
            "out_of_sample": 63,
            "params": { "lookback": { "from": 20, "to": 120, "step": 20 } },
        },
    });
    let text = crate::backtest::run(&spec.to_string())?;
    let report: Value = serde_json::from_str(&text)
        .map_err(|e| Error::failed(format!("the backtest's report: {e}")))?;
    let m = &report["metrics"];
    Ok(json!({
        "rule": rule,
        "symbol": symbol,
        "backtest": report["id"],
        "out_of_sample": {
            "sharpe": m["sharpe"],
            "total_return": m["total_return"],
            "max_drawdown": m["max_drawdown"],
            "trades": m["trades"],
            "fees": m["fees"],
        },
        "in_sample_score": report["walk_forward"]["in_sample_score"],
        "out_of_sample_score": report["walk_forward"]["out_of_sample_score"],
        "buy_and_hold_return": report["benchmark"]["total_return"],
    }))
}

/// A written analysis of `subject` (the thesis, the question) from `evidence` and nothing
/// else, by the host's LLM (`grant = ["llm", "prompts"]`) with the agent's `[prompts.analysis]`
/// (variables `subject` and `evidence`), the use reported a success when the model wrote
/// something: three sentences citing the numbers. Answers
/// the fields to add to a result, `{analysis, analysis_note?}`: the note says the model may
/// know what came after `as_of_ms` when that is more than two days before now (a replayed
/// day). `None` without a model; errors are the `llm` interface's (whose host side retries
/// what may pass).
pub fn analysis(
    subject: &str,
    evidence: &Value,
    as_of_ms: u64,
) -> Result<Option<Map<String, Value>>, Error> {
    if crate::llm::model().is_none() {
        return Ok(None);
    }
    // The agent's `[prompts.analysis]`, from the registry (grant `prompts`).
    // The experiment unit: the subject's first words (a unit is at most 256 bytes).
    let unit: String = subject.chars().take(120).collect();
    let served = crate::prompts::get(
        "analysis",
        &unit,
        &json!({ "subject": subject, "evidence": evidence }).to_string(),
    )?;
    let answer = crate::llm::complete(&crate::prompts::request(&served, 300, 0.2));
    let written = answer
        .as_ref()
        .map(|a| a.text.trim().to_string())
        .unwrap_or_default();
    let _ = crate::prompts::report(served.use_id, None, Some(!written.is_empty()));
    answer?;
    let mut out = Map::new();
    out.insert("analysis".to_string(), json!(written));
    if crate::now_ms().saturating_sub(as_of_ms) > 2 * market::DAY_MS {
        out.insert(
            "analysis_note".to_string(),
            json!("written by a model that may know what happened after the as-of day"),
        );
    }
    Ok(Some(out))
}
