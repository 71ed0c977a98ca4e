//! `strategy`: the organic strategy. For each symbol of a `market.snapshot` it recalls the
//! outcomes of the most similar past trades from the shared `trades` memory, scores the
//! snapshot by rules, and publishes BUY or SELL as `trade.signal` with a confidence and its
//! reasoning (HOLD is counted, not published).
//!
//! The rules, in points: trend up +1 / down −1; MACD histogram above zero +0.5 / below −0.5;
//! RSI under 30 +1 (oversold) / over 70 −1 (overbought); sentiment × 0.5; and the mean
//! outcome of the recalled trades (their P&L in %) × 0.2, within ±0.5. A score of at least
//! `threshold` is BUY, at most −`threshold` SELL; the confidence is |score| / 3, at most 1.
//!
//! With an LLM configured the same inputs are put to it, and its answer is used when it
//! parses as `{"action": "BUY"|"SELL"|"HOLD", "confidence": 0..1, "reasoning": "…"}`; any
//! other answer falls back to the rules.

use overseer_guest::{Agent, Error, Event, Info, llm, log, memory, prompts};
use serde::Deserialize;
use serde_json::{Value, json};

struct Strategy;

/// A decision about one symbol.
#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Decision {
    action: String,
    confidence: f64,
    reasoning: String,
}

fn number(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The words memory is searched with: the symbol and the shape of the market.
fn situation(symbol: &str, s: &Value) -> String {
    let rsi = number(s, "rsi_14");
    let rsi_zone = if rsi < 30.0 {
        "oversold"
    } else if rsi > 70.0 {
        "overbought"
    } else {
        "neutral"
    };
    let momentum = if number(s, "macd_histogram") >= 0.0 {
        "momentum_up"
    } else {
        "momentum_down"
    };
    let trend = s.get("trend").and_then(Value::as_str).unwrap_or("flat");
    format!("{symbol} trend_{trend} rsi_{rsi_zone} {momentum}")
}

/// The rules' decision, given the mean P&L (%) of recalled outcomes.
fn rules(s: &Value, recalled_pnl: Option<f64>, threshold: f64) -> Decision {
    let mut score = 0.0;
    let mut why = Vec::new();
    match s.get("trend").and_then(Value::as_str) {
        Some("up") => {
            score += 1.0;
            why.push("trend up (close and SMA20 above SMA50)".to_string());
        }
        Some("down") => {
            score -= 1.0;
            why.push("trend down (close and SMA20 below SMA50)".to_string());
        }
        _ => {}
    }
    let histogram = number(s, "macd_histogram");
    if histogram > 0.0 {
        score += 0.5;
        why.push(format!("MACD histogram {histogram:.3} > 0"));
    } else if histogram < 0.0 {
        score -= 0.5;
        why.push(format!("MACD histogram {histogram:.3} < 0"));
    }
    let rsi = number(s, "rsi_14");
    if rsi < 30.0 {
        score += 1.0;
        why.push(format!("RSI {rsi:.1} oversold"));
    } else if rsi > 70.0 {
        score -= 1.0;
        why.push(format!("RSI {rsi:.1} overbought"));
    }
    let sentiment = number(s, "sentiment");
    if sentiment != 0.0 {
        score += 0.5 * sentiment;
        why.push(format!("news sentiment {sentiment:.2}"));
    }
    if let Some(pnl) = recalled_pnl {
        let nudge = (0.2 * pnl * 100.0).clamp(-0.5, 0.5);
        score += nudge;
        why.push(format!("similar past trades averaged {:+.2}%", pnl * 100.0));
    }
    let action = if score >= threshold {
        "BUY"
    } else if score <= -threshold {
        "SELL"
    } else {
        "HOLD"
    };
    Decision {
        action: action.to_string(),
        confidence: (score.abs() / 3.0).min(1.0),
        reasoning: format!("score {score:+.2}: {}", why.join("; ")),
    }
}

/// The LLM's decision on the same inputs, when a model is configured and answers in shape.
fn ask_llm(symbol: &str, s: &Value, memories: &[String]) -> Option<Decision> {
    llm::model()?;
    let memories = if memories.is_empty() {
        "none".to_string()
    } else {
        memories.join("\n")
    };
    let variables = json!({ "symbol": symbol, "indicators": s, "memories": memories });
    let served = prompts::get("decision", symbol, &variables.to_string()).ok()?;
    let decision = llm::complete(&prompts::request(&served, 300, 0.2))
        .ok()
        .and_then(|answer| parse_decision(&answer.text));
    // A use succeeds when the model answered a decision in shape.
    let _ = prompts::report(served.use_id, None, Some(decision.is_some()));
    decision
}

/// A decision from the model's answer: the JSON object in it, in shape.
fn parse_decision(text: &str) -> Option<Decision> {
    let text = text.trim();
    let json = text
        .find('{')
        .and_then(|start| text.rfind('}').map(|end| &text[start..=end]))?;
    let decision: Decision = serde_json::from_str(json).ok()?;
    let valid = matches!(decision.action.as_str(), "BUY" | "SELL" | "HOLD")
        && (0.0..=1.0).contains(&decision.confidence);
    valid.then_some(decision)
}

impl Agent for Strategy {
    fn describe() -> Info {
        Info {
            name: "strategy".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "BUY / SELL / HOLD from snapshots and the memory of past trades"
                .to_string(),
            subscriptions: vec!["market.snapshot".to_string()],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let snapshot: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("snapshot: {e}")))?;
        let as_of = snapshot.get("as_of").cloned().unwrap_or(Value::Null);
        let Some(symbols) = snapshot.get("symbols").and_then(Value::as_object) else {
            return Err(Error::invalid_input("snapshot: no symbols"));
        };
        let threshold: f64 = overseer_guest::config("threshold")
            .and_then(|t| t.parse().ok())
            .unwrap_or(1.0);
        let k: u32 = overseer_guest::config("recall")
            .and_then(|k| k.parse().ok())
            .unwrap_or(5);
        let mut signals = Vec::new();
        let mut holds = 0;
        for (symbol, s) in symbols {
            let query = situation(symbol, s);
            let filter = json!({ "kind": "outcome", "symbol": symbol }).to_string();
            let recalled = memory::recall("trades", &query, k, &filter).unwrap_or_else(|e| {
                log::warn(&format!("recall failed: {}", e.message()));
                Vec::new()
            });
            let outcomes: Vec<f64> = recalled
                .iter()
                .filter_map(|m| serde_json::from_str::<Value>(&m.metadata).ok())
                .filter_map(|m| m.get("pnl_pct").and_then(Value::as_f64))
                .collect();
            let mean = (!outcomes.is_empty())
                .then(|| outcomes.iter().sum::<f64>() / outcomes.len() as f64);
            let texts: Vec<String> = recalled.iter().map(|m| m.text.clone()).collect();
            let (decision, by) = match ask_llm(symbol, s, &texts) {
                Some(d) => (d, "llm"),
                None => (rules(s, mean, threshold), "rules"),
            };
            if decision.action == "HOLD" {
                holds += 1;
                continue;
            }
            let signal = json!({
                "symbol": symbol,
                "action": decision.action,
                "confidence": decision.confidence,
                "reasoning": decision.reasoning,
                "decided_by": by,
                "as_of": as_of,
                "price": number(s, "close"),
                "atr": number(s, "atr_14"),
                "situation": query,
                "memories": recalled.len(),
            });
            overseer_guest::emit("trade.signal", &signal.to_string())?;
            signals.push(signal);
        }
        overseer_guest::metric("signals", signals.len() as f64);
        overseer_guest::metric("holds", f64::from(holds));
        Ok(json!({ "as_of": as_of, "signals": signals, "holds": holds }).to_string())
    }
}

overseer_guest::export!(Strategy);
