//! The paper account of one backtest: the live paper broker's rules (order checks, the risk
//! gate at submit and again at the fill, [`fill_on`], the [`Ledger`]) kept in memory, on the
//! run's virtual clock. Nothing reaches the store; every order, fill and refusal goes to the
//! run's trade log, in the order it happened.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use overseer_market::Bar;
use overseer_store::OrderRecord;
use serde::Serialize;

use crate::config::{Costs, RiskLimits};
use crate::desk::{Placer, as_of_ms, new_order};
use crate::error::{Error, Result};
use crate::ledger::{Closed, Ledger, Side};
use crate::order::{Amount, Fill, OrderRequest, OrderType, fill_on};
use crate::risk::{Book, Proposed, Refusal, RiskGate, RiskState};

/// One line of a run's trade log. Serialised in this field order; the log's hash is over
/// its JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// The trading day it happened (a fill's day; the day an order was placed or refused).
    pub day: NaiveDate,
    /// `fill`, `refused`, `expired` or `canceled`.
    pub kind: &'static str,
    /// The agent whose order it was, and its version.
    pub agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    pub order_id: String,
    pub symbol: String,
    pub side: &'static str,
    /// Shares (0 for a refusal of a notional order).
    pub quantity: f64,
    /// The fill price, slippage included (0 when it did not fill).
    pub price: f64,
    /// The bar's price before slippage.
    pub base: f64,
    pub commission: f64,
    pub slippage: f64,
    /// The realised P&L when the fill closed a position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pnl: Option<f64>,
    /// The refusal's code and sentence, or why an order expired or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the account has paid and traded, for the metrics.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub fees: f64,
    pub slippage: f64,
    pub traded: f64,
    /// The realised P&L of each closed trade, in order.
    pub closed: Vec<f64>,
}

/// An event the account publishes to the run's stages (`trade.executed`, `trade.closed`,
/// `trade.refused`, `risk.*`).
#[derive(Debug, Clone)]
pub struct Published {
    pub topic: String,
    pub payload: serde_json::Value,
}

/// The account of one run.
pub struct Account {
    costs: Costs,
    symbols: Vec<String>,
    ledger: Ledger,
    gate: RiskGate,
    /// Every order, in placement order; `open` indexes the ones still `new`.
    orders: Vec<OrderRecord>,
    open: Vec<usize>,
    day: NaiveDate,
    /// The close of each symbol at the current day.
    marks: BTreeMap<String, f64>,
    pub log: Vec<Entry>,
    pub totals: Totals,
    pub published: Vec<Published>,
}

impl Account {
    /// An account holding `cash`, trading `symbols` under `limits` with `costs`.
    pub fn new(cash: f64, symbols: Vec<String>, limits: RiskLimits, costs: Costs) -> Self {
        Account {
            costs,
            symbols,
            ledger: Ledger::new(cash),
            gate: RiskGate::new(limits, cash),
            orders: Vec::new(),
            open: Vec::new(),
            day: NaiveDate::MIN,
            marks: BTreeMap::new(),
            log: Vec::new(),
            totals: Totals::default(),
            published: Vec::new(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn risk_state(&self) -> RiskState {
        self.gate.state()
    }

    /// Every order placed, in placement order.
    pub fn orders(&self) -> &[OrderRecord] {
        &self.orders
    }

    /// The open orders.
    pub fn open_orders(&self) -> impl Iterator<Item = &OrderRecord> {
        self.open.iter().map(|&i| &self.orders[i])
    }

    /// `(equity, cash, gross exposure)` at the current marks.
    pub fn value(&self) -> (f64, f64, f64) {
        let v = self.ledger.value(&self.marks);
        (v.equity, v.cash, v.gross_exposure)
    }

    /// Run day `day`: mark the positions at its closes (as the live desk values a fill's
    /// day), fill the open orders placed before it on its `bars` (oldest first; day orders
    /// its bar does not fill expire), and let the gate see the close's equity. A halt
    /// cancels the open orders.
    pub fn open_day(&mut self, day: NaiveDate, label: &str, bars: &BTreeMap<String, Bar>) {
        self.day = day;
        for (symbol, bar) in bars {
            match self.marks.get_mut(symbol) {
                Some(mark) => *mark = bar.close,
                None => {
                    self.marks.insert(symbol.clone(), bar.close);
                }
            }
        }
        let open = std::mem::take(&mut self.open);
        let mut still = Vec::new();
        for index in open {
            let order = &self.orders[index];
            if order.submitted.as_str() >= label {
                still.push(index);
                continue;
            }
            let side = Side::parse(&order.side).unwrap_or(Side::Buy);
            let fill = bars.get(&order.symbol).and_then(|bar| {
                fill_on(
                    OrderType::parse(&order.order_type),
                    side,
                    order.limit_price,
                    order.quantity,
                    order.notional,
                    bar,
                    &self.costs,
                )
            });
            match fill {
                Some(fill) => self.fill(index, side, fill),
                None if order.time_in_force == "day" => {
                    self.close_order(index, "expired", format!("not filled on {day}"));
                }
                None => still.push(index),
            }
        }
        self.open = still;
        let before = self.gate.state();
        let (equity, _, _) = self.value();
        let after = self.gate.observe(equity, label);
        if after != before {
            if after == RiskState::Halted {
                self.cancel_open("trading halted");
            }
            let status = self.gate.status();
            self.published.push(Published {
                topic: format!("risk.{}", after.as_str()),
                payload: serde_json::json!({
                    "state": after, "reason": status.reason, "equity": equity, "as_of": day
                }),
            });
        }
    }

    /// Fill order `index` at `fill`, checked again by the gate at its price.
    fn fill(&mut self, index: usize, side: Side, fill: Fill) {
        let order = &self.orders[index];
        let mut book = self.book(&self.marks);
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
        if let Err(refusal) = self.gate.check(&proposed, &book, None) {
            let reason = format!("risk:{}: {}", refusal.code, refusal.message);
            self.refused(index, &refusal);
            self.close_order(index, "rejected", reason);
            return;
        }
        let day = self.day;
        let order = &mut self.orders[index];
        let closed = self.ledger.apply(
            &order.symbol,
            side,
            fill.quantity,
            fill.price,
            fill.commission,
        );
        order.quantity = fill.quantity;
        order.status = "filled".to_string();
        order.filled_quantity = fill.quantity;
        order.fill_price = Some(fill.price);
        order.commission = fill.commission;
        order.filled = Some(day.to_string());
        self.totals.fees += fill.commission;
        self.totals.slippage += fill.slippage;
        self.totals.traded += fill.quantity * fill.price;
        self.log.push(Entry {
            day,
            kind: "fill",
            agent: order.agent.clone(),
            version: order.agent_version,
            order_id: order.id.clone(),
            symbol: order.symbol.clone(),
            side: side.as_str(),
            quantity: fill.quantity,
            price: fill.price,
            base: fill.base,
            commission: fill.commission,
            slippage: fill.slippage,
            pnl: closed.as_ref().map(|c| c.pnl),
            reason: None,
        });
        let order = order.clone();
        self.published.push(Published {
            topic: "trade.executed".to_string(),
            payload: serde_json::json!({ "order": order, "fill": fill, "as_of": day }),
        });
        if let Some(closed) = closed {
            self.closed(&order, closed);
        }
    }

    fn closed(&mut self, order: &OrderRecord, closed: Closed) {
        self.totals.closed.push(closed.pnl);
        self.published.push(Published {
            topic: "trade.closed".to_string(),
            payload: serde_json::json!({
                "closed": closed,
                "order_id": order.id,
                "client_order_id": order.client_order_id,
                "as_of": self.day,
            }),
        });
    }

    /// Place an order for `agent` at the current day: checked, through the gate, open until
    /// the next bar. A second submit with the same client order id answers the first order.
    ///
    /// # Errors
    /// As the live desk's submit: a bad order, a refusal, no price yet.
    pub fn submit(&mut self, by: &Placer, request: &OrderRequest) -> Result<OrderRecord> {
        let agent = by.agent.as_str();
        request.validate(&self.symbols)?;
        let id = format!("backtest-{}", request.client_order_id);
        if let Some(existing) = self.orders.iter().find(|o| o.id == id) {
            if existing.agent != agent {
                return Err(Error::InvalidOrder(format!(
                    "client order id {:?} is another's order",
                    request.client_order_id
                )));
            }
            return Ok(existing.clone());
        }
        let price = *self
            .marks
            .get(&request.symbol)
            .ok_or_else(|| Error::NoPrice(request.symbol.clone()))?;
        let quantity = match request.amount {
            Amount::Quantity(q) => q,
            Amount::Notional(n) => n / request.limit_price.unwrap_or(price),
        };
        let book = self.book(&self.marks);
        let proposed = Proposed {
            symbol: &request.symbol,
            side: request.side,
            quantity,
            price,
        };
        let mut order = new_order(id, by, request, quantity, self.day);
        order.at_ms = as_of_ms(self.day);
        // The throttle counts wall time, which a backtest does not have: it is not applied.
        if let Err(refusal) = self.gate.check(&proposed, &book, None) {
            self.orders.push(order);
            let index = self.orders.len() - 1;
            self.refused(index, &refusal);
            let reason = format!("risk:{}: {}", refusal.code, refusal.message);
            self.orders[index].status = "rejected".to_string();
            self.orders[index].reason = Some(reason);
            return Err(Error::Refused(refusal));
        }
        self.orders.push(order.clone());
        self.open.push(self.orders.len() - 1);
        Ok(order)
    }

    /// Cancel an open order.
    ///
    /// # Errors
    /// [`Error::OrderNotFound`]; [`Error::NotOpen`] for an order already done.
    pub fn cancel(&mut self, id: &str) -> Result<OrderRecord> {
        let index = self
            .orders
            .iter()
            .position(|o| o.id == id)
            .ok_or_else(|| Error::OrderNotFound(id.to_string()))?;
        if self.orders[index].status != "new" {
            return Err(Error::NotOpen {
                id: id.to_string(),
                status: self.orders[index].status.clone(),
            });
        }
        self.open.retain(|&i| i != index);
        self.close_order(index, "canceled", "cancelled by its owner".to_string());
        Ok(self.orders[index].clone())
    }

    fn cancel_open(&mut self, reason: &str) {
        for index in std::mem::take(&mut self.open) {
            self.close_order(index, "canceled", reason.to_string());
        }
    }

    /// Close order `index` as `status` (not filled), logged with `reason`.
    fn close_order(&mut self, index: usize, status: &str, reason: String) {
        let order = &mut self.orders[index];
        order.status = status.to_string();
        order.reason = Some(reason.clone());
        if status == "rejected" {
            return;
        }
        let entry = Entry {
            day: self.day,
            kind: if status == "expired" {
                "expired"
            } else {
                "canceled"
            },
            agent: order.agent.clone(),
            version: order.agent_version,
            order_id: order.id.clone(),
            symbol: order.symbol.clone(),
            side: Side::parse(&order.side).unwrap_or(Side::Buy).as_str(),
            quantity: order.quantity,
            price: 0.0,
            base: 0.0,
            commission: 0.0,
            slippage: 0.0,
            pnl: None,
            reason: Some(reason),
        };
        self.log.push(entry);
    }

    fn refused(&mut self, index: usize, refusal: &Refusal) {
        let order = &self.orders[index];
        self.log.push(Entry {
            day: self.day,
            kind: "refused",
            agent: order.agent.clone(),
            version: order.agent_version,
            order_id: order.id.clone(),
            symbol: order.symbol.clone(),
            side: Side::parse(&order.side).unwrap_or(Side::Buy).as_str(),
            quantity: order.quantity,
            price: 0.0,
            base: 0.0,
            commission: 0.0,
            slippage: 0.0,
            pnl: None,
            reason: Some(format!("{}: {}", refusal.code, refusal.message)),
        });
        self.published.push(Published {
            topic: "trade.refused".to_string(),
            payload: serde_json::json!({
                "agent": order.agent,
                "client_order_id": order.client_order_id,
                "symbol": order.symbol,
                "side": order.side,
                "code": refusal.code,
                "message": refusal.message,
                "detail": refusal.detail,
                "as_of": self.day,
            }),
        });
    }

    /// The gate's view: positions, open orders on their worst side, `marks`.
    fn book(&self, marks: &BTreeMap<String, f64>) -> Book {
        let mut pending_buys = BTreeMap::new();
        let mut pending_sells = BTreeMap::new();
        for order in self.open_orders() {
            let pending = match Side::parse(&order.side) {
                Some(Side::Sell) => &mut pending_sells,
                _ => &mut pending_buys,
            };
            *pending.entry(order.symbol.clone()).or_default() += order.quantity;
        }
        Book {
            equity: self.ledger.value(marks).equity,
            positions: self
                .ledger
                .positions
                .iter()
                .map(|(symbol, holding)| (symbol.clone(), holding.quantity))
                .collect(),
            pending_buys,
            pending_sells,
            marks: marks.clone(),
        }
    }

    /// The marks (closes) at the current day.
    pub fn marks(&self) -> &BTreeMap<String, f64> {
        &self.marks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::TimeInForce;

    fn bar(day: &str, open: f64, close: f64) -> Bar {
        Bar {
            date: day.parse().unwrap(),
            open,
            high: open.max(close) + 1.0,
            low: open.min(close) - 1.0,
            close,
            volume: 1000.0,
        }
    }

    fn day(symbol: &str, b: Bar) -> BTreeMap<String, Bar> {
        BTreeMap::from([(symbol.to_string(), b)])
    }

    fn buy(quantity: f64, id: &str) -> OrderRequest {
        OrderRequest {
            symbol: "AAA".to_string(),
            side: Side::Buy,
            amount: Amount::Quantity(quantity),
            order_type: OrderType::Market,
            limit_price: None,
            time_in_force: TimeInForce::Day,
            client_order_id: id.to_string(),
        }
    }

    fn placer() -> Placer {
        Placer {
            agent: "a".to_string(),
            version: Some(1),
            trigger: None,
        }
    }

    fn limits() -> RiskLimits {
        RiskLimits {
            max_position: 1.0,
            max_order_notional: 1e9,
            max_gross_exposure: 1.0,
            daily_loss_limit: 1.0,
            max_drawdown: 1.0,
            ..RiskLimits::default()
        }
    }

    #[test]
    fn an_order_fills_at_the_next_open_with_its_costs_and_the_log_says_so() {
        let costs = Costs {
            commission_bps: 10.0,
            slippage_bps: 100.0,
        };
        let mut account = Account::new(10_000.0, vec!["AAA".to_string()], limits(), costs);
        account.open_day(
            "2020-01-02".parse().unwrap(),
            "2020-01-02",
            &day("AAA", bar("2020-01-02", 99.0, 100.0)),
        );
        account.submit(&placer(), &buy(10.0, "1")).unwrap();
        // A retry answers the first order.
        account.submit(&placer(), &buy(10.0, "1")).unwrap();
        account.open_day(
            "2020-01-03".parse().unwrap(),
            "2020-01-03",
            &day("AAA", bar("2020-01-03", 50.0, 60.0)),
        );
        // 50 × 1.01 = 50.5 a share; 10 shares = 505; commission 0.505; slippage 5.
        assert_eq!(account.log.len(), 1);
        let fill = &account.log[0];
        assert!((fill.price - 50.5).abs() < 1e-12);
        assert!((fill.commission - 0.505).abs() < 1e-12);
        assert!((fill.slippage - 5.0).abs() < 1e-12);
        let (equity, cash, gross) = account.value();
        assert!((cash - (10_000.0 - 505.0 - 0.505)).abs() < 1e-9);
        assert!((gross - 600.0).abs() < 1e-9);
        assert!((equity - (cash + 600.0)).abs() < 1e-9);
    }

    #[test]
    fn the_gate_refuses_past_its_limits_and_the_refusal_is_logged_and_published() {
        let limits = RiskLimits {
            max_order_notional: 500.0,
            ..limits()
        };
        let mut account = Account::new(10_000.0, vec!["AAA".to_string()], limits, Costs::default());
        account.open_day(
            "2020-01-02".parse().unwrap(),
            "2020-01-02",
            &day("AAA", bar("2020-01-02", 99.0, 100.0)),
        );
        let refused = account.submit(&placer(), &buy(10.0, "1")).unwrap_err();
        assert!(matches!(refused, Error::Refused(_)));
        assert_eq!(account.log[0].kind, "refused");
        assert!(account.published.iter().any(|p| p.topic == "trade.refused"));
        assert_eq!(account.open_orders().count(), 0);
    }

    #[test]
    fn a_day_order_without_a_bar_expires() {
        let mut account = Account::new(
            10_000.0,
            vec!["AAA".to_string(), "BBB".to_string()],
            limits(),
            Costs::default(),
        );
        account.open_day(
            "2020-01-02".parse().unwrap(),
            "2020-01-02",
            &day("AAA", bar("2020-01-02", 99.0, 100.0)),
        );
        account.submit(&placer(), &buy(1.0, "1")).unwrap();
        account.open_day(
            "2020-01-03".parse().unwrap(),
            "2020-01-03",
            &day("BBB", bar("2020-01-03", 9.0, 10.0)),
        );
        assert_eq!(account.log[0].kind, "expired");
        assert_eq!(account.open_orders().count(), 0);
    }
}
