//! The paper account of one backtest: the live paper broker's rules (order checks, the risk
//! gate at submit and again at the fill, [`fill_on`], the [`Ledger`]) kept in memory, on the
//! run's virtual clock. Nothing reaches the store; every order, fill and refusal goes to the
//! run's trade log, in the order it happened.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use overseer_store::OrderRecord;
use serde::Serialize;

use super::run::Day;
use crate::config::{Costs, RiskLimits};
use crate::desk::{Placer, as_of_ms, new_order};
use crate::error::{Error, Result};
use crate::ledger::{Ledger, Side};
use crate::order::{Amount, Fill, OrderRequest, OrderType, fill_on};
use crate::paper;
use crate::risk::{Book, Proposed, Refusal, RiskGate, RiskState};

/// One line of a run's trade log. Serialised in this field order; the log's hash is over
/// its JSON.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
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

/// An event the account publishes to the run's stages, with the part of the host it comes
/// from as the live desk names it (`trade` for `trade.executed` and `trade.closed`, `risk`
/// for `trade.refused` and `risk.*`).
#[derive(Debug, Clone)]
pub struct Published {
    pub topic: String,
    pub source: &'static str,
    pub payload: serde_json::Value,
}

/// The account of one run.
pub struct Account {
    costs: Costs,
    symbols: Vec<String>,
    ledger: Ledger,
    gate: RiskGate,
    /// Every order placed, in placement order; `open` indexes the ones still `new`, oldest
    /// first.
    orders: Vec<OrderRecord>,
    open: Vec<usize>,
    day: NaiveDate,
    /// The newest close of each symbol.
    marks: BTreeMap<String, f64>,
    pub log: Vec<Entry>,
    pub totals: Totals,
    pub published: Vec<Published>,
}

impl Account {
    /// An account holding `cash`, trading `symbols` under `limits` with `costs`, the symbols
    /// valued at `marks` until their first bar.
    pub fn new(
        cash: f64,
        symbols: Vec<String>,
        limits: RiskLimits,
        costs: Costs,
        marks: BTreeMap<String, f64>,
    ) -> Self {
        Account {
            costs,
            symbols,
            ledger: Ledger::new(cash),
            gate: RiskGate::new(limits, cash),
            orders: Vec::new(),
            open: Vec::new(),
            day: NaiveDate::MIN,
            marks,
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

    /// `(equity, cash, gross exposure)` at the current marks.
    pub fn value(&self) -> (f64, f64, f64) {
        let v = self.ledger.value(&self.marks);
        (v.equity, v.cash, v.gross_exposure)
    }

    /// The newest close of each symbol.
    pub fn marks(&self) -> &BTreeMap<String, f64> {
        &self.marks
    }

    /// Run `day` as the live desk's step does: mark the positions at its closes, fill the
    /// open orders placed before it on its bars (oldest first, each checked again by the
    /// gate with the other open orders still pending; a day order its bar does not fill
    /// expires), and let the gate see the close's equity. A halt cancels the open orders.
    pub fn open_day(&mut self, day: &Day) {
        self.day = day.date;
        for (symbol, bar) in &day.bars {
            match self.marks.get_mut(symbol) {
                Some(mark) => *mark = bar.close,
                None => {
                    self.marks.insert(symbol.clone(), bar.close);
                }
            }
        }
        for index in self.open.clone() {
            let order = &self.orders[index];
            if order.submitted.as_str() >= day.label.as_str() {
                continue;
            }
            let side = Side::parse(&order.side).unwrap_or(Side::Buy);
            let fill = day.bars.get(&order.symbol).and_then(|bar| {
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
                    let reason = format!("not filled on {}", day.date);
                    self.close_order(index, "expired", reason);
                }
                None => {}
            }
        }
        let before = self.gate.state();
        let (equity, _, _) = self.value();
        let after = self.gate.observe(equity, &day.label);
        if after != before {
            if after == RiskState::Halted {
                self.cancel_open("trading halted");
            }
            let status = self.gate.status();
            self.published.push(Published {
                topic: format!("risk.{}", after.as_str()),
                source: "risk",
                payload: serde_json::json!({
                    "state": after, "reason": status.reason, "equity": equity
                }),
            });
        }
    }

    /// Fill open order `index` at `fill`, checked again by the gate at its price with the
    /// other open orders pending, as live.
    fn fill(&mut self, index: usize, side: Side, fill: Fill) {
        let book = self.book();
        let checked = paper::check_fill(&mut self.gate, book, &self.orders[index], side, &fill);
        if let Err(refusal) = checked {
            let reason = format!("risk:{}: {}", refusal.code, refusal.message);
            let order = self.orders[index].clone();
            self.refused(&order, &refusal);
            self.close_order(index, "rejected", reason);
            return;
        }
        self.open.retain(|&i| i != index);
        let day = self.day;
        let order = &mut self.orders[index];
        let closed = self.ledger.apply(
            &order.symbol,
            side,
            fill.quantity,
            fill.price,
            fill.commission,
        );
        let record = paper::mark_filled(order, &fill, day, as_of_ms(day));
        self.totals.fees += fill.commission;
        self.totals.slippage += fill.slippage;
        self.totals.traded += fill.quantity * fill.price;
        let order = order.clone();
        self.log.push(Entry {
            pnl: closed.as_ref().map(|c| c.pnl),
            price: fill.price,
            base: fill.base,
            commission: fill.commission,
            slippage: fill.slippage,
            ..Entry::of(day, "fill", &order)
        });
        self.published.push(Published {
            topic: "trade.executed".to_string(),
            source: "trade",
            payload: paper::executed(&order, &record, day),
        });
        if let Some(closed) = closed {
            self.totals.closed.push(closed.pnl);
            self.published.push(Published {
                topic: "trade.closed".to_string(),
                source: "trade",
                payload: paper::closed(&closed, &order, day),
            });
        }
    }

    /// Place an order for `by` at the current day: checked, through the gate, open until
    /// the next bar. A second submit with the same client order id answers the first
    /// order; a refused one is not kept, so a retry is checked again (as live).
    ///
    /// # Errors
    /// As the live desk's submit: a bad order, a refusal, no price yet.
    pub fn submit(&mut self, by: &Placer, request: &OrderRequest) -> Result<OrderRecord> {
        request.validate(&self.symbols)?;
        let id = format!("backtest-{}", request.client_order_id);
        if let Some(existing) = self.orders.iter().find(|o| o.id == id) {
            if existing.agent != by.agent {
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
        let mut order = new_order(id, by, request, quantity, self.day);
        order.at_ms = as_of_ms(self.day);
        let proposed = Proposed {
            symbol: &request.symbol,
            side: request.side,
            quantity,
            price,
        };
        // The throttle counts wall time, which a backtest does not have: it is not applied.
        if let Err(refusal) = self.gate.check(&proposed, &self.book(), None) {
            self.refused(&order, &refusal);
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
        self.close_order(index, "canceled", "cancelled by its owner".to_string());
        Ok(self.orders[index].clone())
    }

    fn cancel_open(&mut self, reason: &str) {
        for index in self.open.clone() {
            self.close_order(index, "canceled", reason.to_string());
        }
    }

    /// Close open order `index` as `status` (not filled), with `reason`; an expiry or a
    /// cancellation goes to the log (a rejection was logged as a refusal).
    fn close_order(&mut self, index: usize, status: &'static str, reason: String) {
        self.open.retain(|&i| i != index);
        let order = &mut self.orders[index];
        order.status = status.to_string();
        order.reason = Some(reason.clone());
        if status == "rejected" {
            return;
        }
        let entry = Entry {
            reason: Some(reason),
            ..Entry::of(self.day, status, order)
        };
        self.log.push(entry);
    }

    /// Log and publish the gate's refusal of `order`.
    fn refused(&mut self, order: &OrderRecord, refusal: &Refusal) {
        self.log.push(Entry {
            reason: Some(format!("{}: {}", refusal.code, refusal.message)),
            ..Entry::of(self.day, "refused", order)
        });
        let side = Side::parse(&order.side).unwrap_or(Side::Buy);
        self.published.push(Published {
            topic: "trade.refused".to_string(),
            source: "risk",
            payload: paper::refused(
                &order.agent,
                &order.client_order_id,
                &order.symbol,
                side,
                refusal,
                self.day,
            ),
        });
    }

    /// The gate's view: positions, open orders on their worst side, the marks.
    fn book(&self) -> Book {
        let open = self.open.iter().map(|&i| &self.orders[i]);
        paper::book(
            self.ledger.value(&self.marks).equity,
            paper::held(&self.ledger),
            open,
            &self.marks,
        )
    }
}

impl Entry {
    /// A line about `order` on `day`, with nothing filled.
    fn of(day: NaiveDate, kind: &'static str, order: &OrderRecord) -> Entry {
        Entry {
            day,
            kind,
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
            reason: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::order::TimeInForce;
    use overseer_market::Bar;

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

    fn day(symbol: &str, b: Bar) -> Day {
        Day::new(b.date, BTreeMap::from([(symbol.to_string(), b)]))
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
        let mut account = Account::new(
            10_000.0,
            vec!["AAA".to_string()],
            limits(),
            costs,
            BTreeMap::new(),
        );
        account.open_day(&day("AAA", bar("2020-01-02", 99.0, 100.0)));
        account.submit(&placer(), &buy(10.0, "1")).unwrap();
        // A retry answers the first order.
        account.submit(&placer(), &buy(10.0, "1")).unwrap();
        account.open_day(&day("AAA", bar("2020-01-03", 50.0, 60.0)));
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
        let mut account = Account::new(
            10_000.0,
            vec!["AAA".to_string()],
            limits,
            Costs::default(),
            BTreeMap::new(),
        );
        account.open_day(&day("AAA", bar("2020-01-02", 99.0, 100.0)));
        let refused = account.submit(&placer(), &buy(10.0, "1")).unwrap_err();
        assert!(matches!(refused, Error::Refused(_)));
        assert_eq!(account.log[0].kind, "refused");
        assert!(account.published.iter().any(|p| p.topic == "trade.refused"));
        assert_eq!(account.open.len(), 0);
    }

    #[test]
    fn a_day_order_without_a_bar_expires() {
        let mut account = Account::new(
            10_000.0,
            vec!["AAA".to_string(), "BBB".to_string()],
            limits(),
            Costs::default(),
            BTreeMap::new(),
        );
        account.open_day(&day("AAA", bar("2020-01-02", 99.0, 100.0)));
        account.submit(&placer(), &buy(1.0, "1")).unwrap();
        account.open_day(&day("BBB", bar("2020-01-03", 9.0, 10.0)));
        assert_eq!(account.log[0].kind, "expired");
        assert_eq!(account.open.len(), 0);
    }
}
