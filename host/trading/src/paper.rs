//! What the live desk and a backtest's account do alike, written once: booking a fill on
//! an order, the gate's view of an account, the positions valued at marks, and the payloads
//! of `trade.executed`, `trade.closed` and `trade.refused`.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use overseer_store::{FillRecord, OrderRecord};
use serde_json::{Value, json};

use crate::desk::PositionView;
use crate::ledger::{Closed, Ledger, Side};
use crate::order::Fill;
use crate::risk::{Book, Proposed, Refusal, RiskGate};

/// Mark `order` filled by `fill` on `day`; answers the fill's record, stamped `at_ms`.
pub(crate) fn mark_filled(
    order: &mut OrderRecord,
    fill: &Fill,
    day: NaiveDate,
    at_ms: u64,
) -> FillRecord {
    order.quantity = fill.quantity;
    order.status = "filled".to_string();
    order.filled_quantity = fill.quantity;
    order.fill_price = Some(fill.price);
    order.commission = fill.commission;
    order.filled = Some(day.to_string());
    FillRecord {
        seq: 0,
        order_id: order.id.clone(),
        symbol: order.symbol.clone(),
        side: order.side.clone(),
        quantity: fill.quantity,
        price: fill.price,
        commission: fill.commission,
        slippage: fill.slippage,
        date: day.to_string(),
        at_ms,
    }
}

/// The gate's view of an account: its positions, its `open` orders on their worst side, its
/// equity at `marks`.
pub(crate) fn book<'a>(
    equity: f64,
    positions: BTreeMap<String, f64>,
    open: impl IntoIterator<Item = &'a OrderRecord>,
    marks: &BTreeMap<String, f64>,
) -> Book {
    let mut pending_buys = BTreeMap::new();
    let mut pending_sells = BTreeMap::new();
    for order in open {
        let pending = match Side::parse(&order.side) {
            Some(Side::Sell) => &mut pending_sells,
            _ => &mut pending_buys,
        };
        *pending.entry(order.symbol.clone()).or_default() += order.quantity;
    }
    Book {
        equity,
        positions,
        pending_buys,
        pending_sells,
        marks: marks.clone(),
    }
}

/// Check `order` again at its fill (`fill` of it on `side`) against `book`, in which it is
/// still open: it is taken out of its side's pending shares first, so it is not counted
/// twice. The throttle is not applied at a fill.
///
/// # Errors
/// The gate's [`Refusal`].
pub(crate) fn check_fill(
    gate: &mut RiskGate,
    mut book: Book,
    order: &OrderRecord,
    side: Side,
    fill: &Fill,
) -> Result<(), Refusal> {
    let pending = match side {
        Side::Buy => &mut book.pending_buys,
        Side::Sell => &mut book.pending_sells,
    };
    if let Some(open) = pending.get_mut(&order.symbol) {
        *open -= order.quantity;
    }
    let proposed = Proposed {
        symbol: &order.symbol,
        side,
        quantity: fill.quantity,
        price: fill.price,
    };
    gate.check(&proposed, &book, None)
}

/// Shares held per symbol.
pub(crate) fn held(ledger: &Ledger) -> BTreeMap<String, f64> {
    ledger
        .positions
        .iter()
        .map(|(symbol, holding)| (symbol.clone(), holding.quantity))
        .collect()
}

/// The positions of `ledger` valued at `marks` (at their average price without a mark).
pub(crate) fn positions(ledger: &Ledger, marks: &BTreeMap<String, f64>) -> Vec<PositionView> {
    ledger
        .positions
        .iter()
        .map(|(symbol, holding)| {
            let price = marks.get(symbol).copied().unwrap_or(holding.average_price);
            PositionView {
                symbol: symbol.clone(),
                quantity: holding.quantity,
                average_price: holding.average_price,
                price,
                market_value: holding.quantity * price,
                unrealized_pnl: (price - holding.average_price) * holding.quantity,
            }
        })
        .collect()
}

/// `trade.executed`.
pub(crate) fn executed(order: &OrderRecord, fill: &FillRecord, day: NaiveDate) -> Value {
    json!({ "order": order, "fill": fill, "as_of": day })
}

/// `trade.closed`.
pub(crate) fn closed(closed: &Closed, order: &OrderRecord, day: NaiveDate) -> Value {
    json!({
        "closed": closed,
        "order_id": order.id,
        "client_order_id": order.client_order_id,
        "as_of": day,
    })
}

/// `trade.refused`.
pub(crate) fn refused(
    agent: &str,
    client_order_id: &str,
    symbol: &str,
    side: Side,
    refusal: &Refusal,
    as_of: NaiveDate,
) -> Value {
    json!({
        "agent": agent,
        "client_order_id": client_order_id,
        "symbol": symbol,
        "side": side,
        "code": refusal.code,
        "message": refusal.message,
        "detail": refusal.detail,
        "as_of": as_of,
    })
}
