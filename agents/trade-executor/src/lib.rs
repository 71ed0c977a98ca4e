//! `trade-executor`: turns a `trade.signal` into an order. A BUY spends confidence ×
//! `risk_per_trade` of the account's equity (a notional market order for the day); a SELL
//! sells the position held, all of it at confidence 0.6 or more, else that fraction of it.
//! The client order id is `<as-of>-<symbol>-<action>`: a signal delivered twice places one
//! order. The broker's risk gate may refuse; the host then publishes `trade.refused`, and
//! this agent answers with the refusal rather than failing.

use overseer_guest::broker::{self, Amount, OrderRequest, OrderType, Side, TimeInForce};
use overseer_guest::{Agent, Error, Event, Info, log};
use serde_json::{Value, json};

struct TradeExecutor;

fn config(key: &str, default: f64) -> f64 {
    overseer_guest::config(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn order_json(order: &broker::Order) -> Value {
    json!({
        "id": order.id,
        "client_order_id": order.client_order_id,
        "symbol": order.symbol,
        "side": if order.side == Side::Buy { "buy" } else { "sell" },
        "quantity": order.quantity,
        "notional": order.notional,
        "status": order.status,
        "submitted": order.submitted,
    })
}

impl Agent for TradeExecutor {
    fn describe() -> Info {
        Info {
            name: "trade-executor".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Sized orders from trade signals, through the risk gate".to_string(),
            subscriptions: vec!["trade.signal".to_string()],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let signal: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("signal: {e}")))?;
        let symbol = signal["symbol"]
            .as_str()
            .ok_or_else(|| Error::invalid_input("signal: no symbol"))?;
        let action = signal["action"].as_str().unwrap_or("HOLD");
        let confidence = signal["confidence"].as_f64().unwrap_or(0.0).clamp(0.0, 1.0);
        let as_of = overseer_guest::market::as_of().date;
        if confidence < config("min_confidence", 0.2) {
            return Ok(json!({ "skipped": "confidence below min_confidence" }).to_string());
        }
        let (side, amount) = match action {
            "BUY" => {
                let equity = broker::account()?.equity;
                let notional = (confidence * config("risk_per_trade", 0.10) * equity).floor();
                if notional < config("min_notional", 100.0) {
                    return Ok(json!({ "skipped": "order below min_notional" }).to_string());
                }
                (Side::Buy, Amount::Notional(notional))
            }
            "SELL" => {
                let held = broker::positions()?
                    .into_iter()
                    .find(|p| p.symbol == symbol)
                    .map_or(0.0, |p| p.quantity);
                if held <= 0.0 {
                    return Ok(json!({ "skipped": "nothing held to sell" }).to_string());
                }
                let quantity = if confidence >= 0.6 {
                    held
                } else {
                    held * confidence
                };
                (Side::Sell, Amount::Quantity(quantity))
            }
            _ => return Ok(json!({ "skipped": "not a BUY or SELL" }).to_string()),
        };
        let request = OrderRequest {
            symbol: symbol.to_string(),
            side,
            amount,
            order_type: OrderType::Market,
            limit_price: None,
            time_in_force: TimeInForce::Day,
            client_order_id: format!("{as_of}-{symbol}-{}", action.to_lowercase()),
        };
        match broker::submit(&request) {
            Ok(order) => {
                log::info(&format!("{action} {symbol}: order {} placed", order.id));
                overseer_guest::metric("orders", 1.0);
                Ok(json!({ "order": order_json(&order) }).to_string())
            }
            Err(Error::Denied(reason)) => {
                log::warn(&format!("{action} {symbol} refused: {reason}"));
                overseer_guest::metric("refused", 1.0);
                Ok(json!({ "refused": reason }).to_string())
            }
            Err(other) => Err(other),
        }
    }
}

overseer_guest::export!(TradeExecutor);
