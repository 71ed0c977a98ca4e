//! `rag-playbook`: the memory of the trading pipeline. It keeps the latest signal per symbol
//! (in kv), remembers each fill in the shared `trades` collection with the situation and
//! reasoning of the signal behind it (`kind: entry` or `exit`), and, when a position closes,
//! its outcome (`kind: outcome`, with `pnl_pct` and `outcome: win|loss`): what the strategy
//! recalls for similar situations.

use overseer_guest::{Agent, Error, Event, Info, kv, memory};
use serde_json::{Value, json};

struct RagPlaybook;

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

fn number(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

impl Agent for RagPlaybook {
    fn describe() -> Info {
        Info {
            name: "rag-playbook".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Trades and their outcomes, remembered for the strategy".to_string(),
            subscriptions: vec![
                "trade.signal".to_string(),
                "trade.executed".to_string(),
                "trade.closed".to_string(),
            ],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("payload: {e}")))?;
        match event.topic.as_str() {
            "trade.signal" => {
                let symbol = text(&payload, "symbol");
                kv::set(&format!("signal/{symbol}"), &event.payload)?;
                Ok(json!({ "kept": symbol }).to_string())
            }
            "trade.executed" => {
                let order = &payload["order"];
                let symbol = text(order, "symbol");
                let side = text(order, "side");
                let signal: Value = kv::get(&format!("signal/{symbol}"))?
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or(Value::Null);
                let situation = text(&signal, "situation");
                let reasoning = text(&signal, "reasoning");
                let as_of = text(&payload, "as_of");
                let price = number(order, "fill_price");
                let line = format!(
                    "{} {symbol} {:.4} shares at {price:.2} on {as_of}. Situation: {situation}. Reasoning: {reasoning}",
                    side.to_uppercase(),
                    number(order, "filled_quantity"),
                );
                let kind = if side == "buy" { "entry" } else { "exit" };
                let metadata = json!({
                    "kind": kind,
                    "symbol": symbol,
                    "side": side,
                    "as_of": as_of,
                    "price": price,
                    "order_id": text(order, "id"),
                    "confidence": signal.get("confidence"),
                });
                let id = memory::remember("trades", &line, &metadata.to_string())?;
                if side == "buy" {
                    kv::set(
                        &format!("entry/{symbol}"),
                        &json!({ "situation": situation, "reasoning": reasoning, "as_of": as_of })
                            .to_string(),
                    )?;
                }
                Ok(json!({ "remembered": id, "kind": kind }).to_string())
            }
            "trade.closed" => {
                let closed = &payload["closed"];
                let symbol = text(closed, "symbol");
                let entry: Value = kv::get(&format!("entry/{symbol}"))?
                    .and_then(|s| serde_json::from_str(&s).ok())
                    .unwrap_or(Value::Null);
                let pnl_pct = number(closed, "pnl_pct");
                let outcome = if pnl_pct >= 0.0 { "win" } else { "loss" };
                let line = format!(
                    "{symbol} {outcome}: {:+.2}% ({:+.2} dollars), bought at {:.2}, sold at {:.2} on {}. Situation at entry: {}. Reasoning at entry: {}",
                    pnl_pct * 100.0,
                    number(closed, "pnl"),
                    number(closed, "entry_price"),
                    number(closed, "exit_price"),
                    text(&payload, "as_of"),
                    text(&entry, "situation"),
                    text(&entry, "reasoning"),
                );
                let metadata = json!({
                    "kind": "outcome",
                    "symbol": symbol,
                    "outcome": outcome,
                    "pnl_pct": pnl_pct,
                    "pnl": number(closed, "pnl"),
                    "entered": text(&entry, "as_of"),
                    "closed": text(&payload, "as_of"),
                });
                let id = memory::remember("trades", &line, &metadata.to_string())?;
                overseer_guest::metric("outcomes", 1.0);
                Ok(json!({ "remembered": id, "kind": "outcome", "outcome": outcome }).to_string())
            }
            other => Err(Error::invalid_input(format!("not a trade topic: {other}"))),
        }
    }
}

overseer_guest::export!(RagPlaybook);
