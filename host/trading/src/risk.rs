//! The risk gate: host code between every order and the broker. It knows the account's
//! positions (with its open orders counted as if filled), its equity and the latest prices,
//! and refuses an order that would take a position, the order itself or the gross exposure
//! past its limit, trade a symbol off the allowlist, sell short when shorting is off, or pass
//! more orders a minute than the throttle allows.
//!
//! Its state follows NautilusTrader's risk engine: `active`; `reducing` (only orders that take
//! a position towards zero pass) once the day's loss reaches the daily limit, until the next
//! trading day; `halted` (nothing passes) once the drawdown from the highest equity reaches its
//! limit, or the kill switch is on, until a person resumes trading.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;
use serde_json::json;

use crate::config::RiskLimits;
use crate::ledger::Side;

/// Whether orders pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RiskState {
    /// Orders pass within the limits.
    Active,
    /// Only orders that reduce a position pass.
    Reducing,
    /// No order passes.
    Halted,
}

impl RiskState {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskState::Active => "active",
            RiskState::Reducing => "reducing",
            RiskState::Halted => "halted",
        }
    }
}

/// Why an order was refused: a stable code, a sentence, and the numbers that triggered it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Refusal {
    /// `halted`, `reducing`, `symbol_not_allowed`, `short_not_allowed`, `max_order_notional`,
    /// `max_position`, `max_gross_exposure` or `throttled`.
    pub code: &'static str,
    pub message: String,
    /// The numbers, as a JSON object.
    pub detail: serde_json::Value,
}

/// An order as the gate sees it: shares at the price it is valued at.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposed<'a> {
    pub symbol: &'a str,
    pub side: Side,
    pub quantity: f64,
    /// The latest price known at as-of (or the fill price, when checked again at the fill).
    pub price: f64,
}

/// The account as the gate sees it. Open orders are counted on their worst side: a buy is
/// checked as if every open buy of the symbol had filled, a sell as if every open sell had,
/// so an open order on one side never makes room on the other.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Book {
    pub equity: f64,
    /// Shares held per symbol.
    pub positions: BTreeMap<String, f64>,
    /// Shares of open buy orders per symbol.
    pub pending_buys: BTreeMap<String, f64>,
    /// Shares of open sell orders per symbol.
    pub pending_sells: BTreeMap<String, f64>,
    /// The latest price per symbol.
    pub marks: BTreeMap<String, f64>,
}

impl Book {
    fn get(map: &BTreeMap<String, f64>, symbol: &str) -> f64 {
        map.get(symbol).copied().unwrap_or(0.0)
    }

    /// A symbol's position with its open buys filled, and with its open sells filled.
    fn sides(&self, symbol: &str) -> (f64, f64) {
        let held = Book::get(&self.positions, symbol);
        (
            held + Book::get(&self.pending_buys, symbol),
            held - Book::get(&self.pending_sells, symbol),
        )
    }

    /// The gross exposure with every symbol at its worst side, and `symbol` at `quantity`
    /// on one side and `other` on the other, valued at `price`.
    fn gross_with(&self, symbol: &str, quantity: f64, other: f64, price: f64) -> f64 {
        let mut symbols: Vec<&String> = self
            .positions
            .keys()
            .chain(self.pending_buys.keys())
            .chain(self.pending_sells.keys())
            .collect();
        symbols.sort();
        symbols.dedup();
        let others: f64 = symbols
            .into_iter()
            .filter(|s| s.as_str() != symbol)
            .map(|s| {
                let (long, short) = self.sides(s);
                long.abs().max(short.abs()) * Book::get(&self.marks, s)
            })
            .sum();
        others + quantity.abs().max(other.abs()) * price
    }
}

/// The gate's state and limits.
#[derive(Debug, Clone)]
pub struct RiskGate {
    limits: RiskLimits,
    state: RiskState,
    /// Why the state is not `active`.
    reason: Option<String>,
    kill: bool,
    peak_equity: f64,
    /// The trading day the daily loss is measured in, and the equity it started with.
    day: Option<(String, f64)>,
    /// Wall times (ms) of the orders that passed in the last minute.
    passed: VecDeque<u64>,
    /// The equity last seen: the next trading day's loss is measured from it.
    last_equity: Option<f64>,
}

/// What the gate says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RiskStatus {
    pub state: RiskState,
    pub reason: Option<String>,
    pub kill_switch: bool,
    pub peak_equity: f64,
    pub day_start_equity: Option<f64>,
    pub limits: RiskLimits,
}

impl RiskGate {
    pub fn new(limits: RiskLimits, equity: f64) -> RiskGate {
        RiskGate {
            limits,
            state: RiskState::Active,
            reason: None,
            kill: false,
            peak_equity: equity,
            day: None,
            passed: VecDeque::new(),
            last_equity: None,
        }
    }

    /// Take back a state kept across a restart: the highest equity, and a halt that a person
    /// has not yet ended.
    pub fn restore(&mut self, peak_equity: f64, halted: Option<String>) {
        self.peak_equity = self.peak_equity.max(peak_equity);
        if let Some(reason) = halted {
            self.halt(&reason);
        }
    }

    pub fn state(&self) -> RiskState {
        self.state
    }

    pub fn limits(&self) -> &RiskLimits {
        &self.limits
    }

    pub fn status(&self) -> RiskStatus {
        RiskStatus {
            state: self.state,
            reason: self.reason.clone(),
            kill_switch: self.kill,
            peak_equity: self.peak_equity,
            day_start_equity: self.day.as_ref().map(|(_, e)| *e),
            limits: self.limits.clone(),
        }
    }

    /// Turn the kill switch on (`halted` at once) or off.
    pub fn set_kill(&mut self, on: bool) {
        self.kill = on;
        if on {
            self.halt("kill switch");
        }
    }

    /// Back to `active` after a halt: the kill switch off, the drawdown measured from
    /// `equity` again and the day's loss from now.
    pub fn resume(&mut self, equity: f64, day: &str) {
        self.kill = false;
        self.state = RiskState::Active;
        self.reason = None;
        self.peak_equity = equity;
        self.day = Some((day.to_string(), equity));
        self.last_equity = Some(equity);
    }

    fn halt(&mut self, reason: &str) {
        self.state = RiskState::Halted;
        self.reason = Some(reason.to_string());
    }

    /// Update the state for the account's `equity` on trading day `day` (an ISO date: days
    /// compare as text): a new day ends
    /// `reducing`; the day's loss and the drawdown are checked against their limits.
    ///
    /// A day's loss is measured from the equity last seen before it (the previous close).
    /// An earlier day than the one under way (a call that lags the clock) changes nothing.
    pub fn observe(&mut self, equity: f64, day: &str) -> RiskState {
        match &self.day {
            Some((current, _)) if current.as_str() == day => {}
            Some((current, _)) if day < current.as_str() => return self.state,
            _ => {
                let start = self.last_equity.unwrap_or(equity);
                // The day's name in the buffer of the last one: a backtest turns days fast.
                match &mut self.day {
                    Some((name, at_start)) => {
                        name.clear();
                        name.push_str(day);
                        *at_start = start;
                    }
                    None => self.day = Some((day.to_string(), start)),
                }
                if self.state == RiskState::Reducing {
                    self.state = RiskState::Active;
                    self.reason = None;
                }
            }
        }
        self.last_equity = Some(equity);
        if self.kill {
            self.halt("kill switch");
        }
        if self.state == RiskState::Halted {
            return self.state;
        }
        self.peak_equity = self.peak_equity.max(equity);
        let drawdown = if self.peak_equity > 0.0 {
            1.0 - equity / self.peak_equity
        } else {
            0.0
        };
        if drawdown >= self.limits.max_drawdown {
            self.halt(&format!(
                "drawdown {:.2}% from the peak {:.2} reached the limit {:.2}%",
                drawdown * 100.0,
                self.peak_equity,
                self.limits.max_drawdown * 100.0
            ));
            return self.state;
        }
        let start = self.day.as_ref().map_or(equity, |(_, e)| *e);
        let loss = if start > 0.0 {
            1.0 - equity / start
        } else {
            0.0
        };
        if loss >= self.limits.daily_loss_limit {
            self.state = RiskState::Reducing;
            self.reason = Some(format!(
                "the day's loss {:.2}% reached the limit {:.2}%",
                loss * 100.0,
                self.limits.daily_loss_limit * 100.0
            ));
        }
        self.state
    }

    /// Check `order` against the limits and the state for `book`; with `now_ms`, count it
    /// against the throttle when it passes (a check at fill time passes `None`).
    pub fn check(
        &mut self,
        order: &Proposed<'_>,
        book: &Book,
        now_ms: Option<u64>,
    ) -> Result<(), Refusal> {
        let symbol = order.symbol;
        let (long, short) = book.sides(symbol);
        // The position this order moves, with the open orders of its side filled, and the
        // other side's.
        let (held, other) = match order.side {
            Side::Buy => (long, short),
            Side::Sell => (short, long),
        };
        let after = held + order.side.sign() * order.quantity;
        let notional = order.quantity * order.price;
        let reduces = after.abs() < held.abs() && (after == 0.0 || after.signum() == held.signum());
        let base = json!({
            "symbol": symbol,
            "side": order.side.as_str(),
            "quantity": order.quantity,
            "price": order.price,
            "position": held,
            "position_after": after,
            "equity": book.equity,
        });
        let refuse = |code: &'static str, message: String, extra: serde_json::Value| {
            let mut detail = base.clone();
            if let (Some(detail), Some(extra)) = (detail.as_object_mut(), extra.as_object()) {
                detail.extend(extra.clone());
            }
            Err(Refusal {
                code,
                message,
                detail,
            })
        };
        match self.state {
            RiskState::Halted => {
                return refuse(
                    "halted",
                    format!(
                        "trading is halted ({})",
                        self.reason.as_deref().unwrap_or("no reason")
                    ),
                    json!({}),
                );
            }
            RiskState::Reducing if !reduces => {
                return refuse(
                    "reducing",
                    format!(
                        "only orders that reduce a position pass ({})",
                        self.reason.as_deref().unwrap_or("no reason")
                    ),
                    json!({}),
                );
            }
            _ => {}
        }
        if !self.limits.allowlist.is_empty() && !self.limits.allowlist.iter().any(|s| s == symbol) {
            return refuse(
                "symbol_not_allowed",
                format!("{symbol} is not on the allowlist"),
                json!({ "allowlist": self.limits.allowlist }),
            );
        }
        if after < 0.0 && !self.limits.allow_short && !reduces {
            return refuse(
                "short_not_allowed",
                format!("the order would take {symbol} to {after} shares and shorting is off"),
                json!({}),
            );
        }
        if !reduces {
            if notional > self.limits.max_order_notional {
                return refuse(
                    "max_order_notional",
                    format!(
                        "the order is worth {notional:.2}, over the limit {:.2}",
                        self.limits.max_order_notional
                    ),
                    json!({ "notional": notional, "limit": self.limits.max_order_notional }),
                );
            }
            let value_after = (after * order.price).abs();
            let position_limit = self.limits.max_position * book.equity.max(0.0);
            if value_after > position_limit {
                return refuse(
                    "max_position",
                    format!(
                        "{symbol} would be worth {value_after:.2}, over {:.0}% of equity ({position_limit:.2})",
                        self.limits.max_position * 100.0
                    ),
                    json!({ "value_after": value_after, "limit": position_limit }),
                );
            }
            let gross_after = book.gross_with(symbol, after, other, order.price);
            let gross_limit = self.limits.max_gross_exposure * book.equity.max(0.0);
            if gross_after > gross_limit {
                return refuse(
                    "max_gross_exposure",
                    format!(
                        "gross exposure would be {gross_after:.2}, over {:.0}% of equity ({gross_limit:.2})",
                        self.limits.max_gross_exposure * 100.0
                    ),
                    json!({ "gross_after": gross_after, "limit": gross_limit }),
                );
            }
        }
        if let Some(now) = now_ms {
            while self
                .passed
                .front()
                .is_some_and(|t| now.saturating_sub(*t) >= 60_000)
            {
                self.passed.pop_front();
            }
            if self.passed.len() >= self.limits.orders_per_minute as usize {
                return refuse(
                    "throttled",
                    format!(
                        "{} orders passed in the last minute, the limit",
                        self.passed.len()
                    ),
                    json!({ "limit": self.limits.orders_per_minute }),
                );
            }
            self.passed.push_back(now);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::ledger::Ledger;

    const SYMBOLS: [&str; 3] = ["AAPL", "IBM", "MSFT"];

    #[derive(Debug, Clone)]
    enum Step {
        /// A symbol's price moves by a factor.
        Move(usize, f64),
        /// A new trading day starts.
        NextDay,
        Order(usize, bool, f64),
        Kill,
        Resume,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0..3usize, 0.7..1.4f64).prop_map(|(s, f)| Step::Move(s, f)),
            1 => Just(Step::NextDay),
            6 => (0..3usize, any::<bool>(), 0.01..3_000.0f64)
                .prop_map(|(s, buy, q)| Step::Order(s, buy, q)),
            1 => Just(Step::Kill),
            1 => Just(Step::Resume),
        ]
    }

    /// A trading day's name: days compare as text, like ISO dates.
    fn day_name(day: u32) -> String {
        format!("day-{day:06}")
    }

    fn limits() -> RiskLimits {
        RiskLimits {
            max_position: 0.2,
            max_order_notional: 30_000.0,
            max_gross_exposure: 0.8,
            daily_loss_limit: 0.03,
            max_drawdown: 0.12,
            orders_per_minute: 1_000_000,
            allowlist: Vec::new(),
            allow_short: false,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Random orders at random prices: no accepted order takes a position, an order or
        /// the gross exposure past its limit or a position short; `reducing` passes only
        /// orders that reduce; `halted` passes nothing; a day's loss at the limit means
        /// `reducing` or worse and a drawdown at the limit `halted`; the kill switch halts
        /// the very next order.
        #[test]
        fn no_accepted_order_breaks_a_limit(steps in proptest::collection::vec(step(), 1..120)) {
            let limits = limits();
            let mut ledger = Ledger::new(100_000.0);
            let mut gate = RiskGate::new(limits.clone(), 100_000.0);
            let mut prices: BTreeMap<String, f64> =
                SYMBOLS.iter().map(|s| (s.to_string(), 100.0)).collect();
            let mut day = 0u32;
            let mut day_start = 100_000.0;
            let mut peak = 100_000.0f64;
            let mut now = 0u64;
            for step in steps {
                now += 1;
                match step {
                    // The clock shows the gate every new price and every new day.
                    Step::Move(s, factor) => {
                        if let Some(p) = prices.get_mut(SYMBOLS[s]) {
                            *p *= factor;
                        }
                        gate.observe(ledger.value(&prices).equity, &day_name(day));
                    }
                    Step::NextDay => {
                        day += 1;
                        day_start = ledger.value(&prices).equity;
                        gate.observe(day_start, &day_name(day));
                    }
                    Step::Kill => gate.set_kill(true),
                    Step::Resume => {
                        let equity = ledger.value(&prices).equity;
                        gate.resume(equity, &day_name(day));
                        day_start = equity;
                        peak = equity;
                    }
                    Step::Order(s, buy, quantity) => {
                        let symbol = SYMBOLS[s];
                        let equity = ledger.value(&prices).equity;
                        let state = gate.observe(equity, &day_name(day));
                        if !matches!(state, RiskState::Halted) {
                            peak = peak.max(equity);
                        }
                        if day_start > 0.0 && 1.0 - equity / day_start >= limits.daily_loss_limit {
                            prop_assert_ne!(state, RiskState::Active, "a day's loss at the limit");
                        }
                        if peak > 0.0 && 1.0 - equity / peak >= limits.max_drawdown {
                            prop_assert_eq!(state, RiskState::Halted, "a drawdown at the limit");
                        }
                        let side = if buy { Side::Buy } else { Side::Sell };
                        let price = prices[symbol];
                        let book = Book {
                            equity,
                            positions: ledger
                                .positions
                                .iter()
                                .map(|(s, h)| (s.clone(), h.quantity))
                                .collect(),
                            marks: prices.clone(),
                            ..Book::default()
                        };
                        let before = ledger.quantity(symbol);
                        let order = Proposed { symbol, side, quantity, price };
                        if gate.check(&order, &book, Some(now)).is_err() {
                            continue;
                        }
                        prop_assert_ne!(state, RiskState::Halted, "halted passes nothing");
                        let after = before + side.sign() * quantity;
                        let reduces = after.abs() < before.abs();
                        if state == RiskState::Reducing {
                            prop_assert!(reduces, "reducing passed {before} -> {after}");
                        }
                        prop_assert!(after >= -1e-9, "a short position: {after}");
                        ledger.apply(symbol, side, quantity, price, quantity * price * 1e-4);
                        if !reduces {
                            let value = ledger.value(&prices);
                            prop_assert!(quantity * price <= limits.max_order_notional * (1.0 + 1e-9));
                            prop_assert!(
                                (after * price).abs() <= limits.max_position * equity * (1.0 + 1e-9),
                                "position {} over {} of {equity}", after * price, limits.max_position
                            );
                            prop_assert!(
                                value.gross_exposure <= limits.max_gross_exposure * equity * (1.0 + 1e-9),
                                "gross {} over {} of {equity}", value.gross_exposure, limits.max_gross_exposure
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn an_open_sell_makes_no_room_for_a_buy() {
        let mut gate = RiskGate::new(
            RiskLimits {
                max_position: 0.1,
                ..RiskLimits::default()
            },
            100_000.0,
        );
        // 100 shares at $100 held: the $10,000 limit is reached. A sell far from the market
        // waits; counted as filled it would make room for another 100.
        let book = Book {
            equity: 100_000.0,
            positions: BTreeMap::from([("AAPL".to_string(), 100.0)]),
            pending_sells: BTreeMap::from([("AAPL".to_string(), 100.0)]),
            marks: BTreeMap::from([("AAPL".to_string(), 100.0)]),
            ..Book::default()
        };
        let buy = Proposed {
            symbol: "AAPL",
            side: Side::Buy,
            quantity: 100.0,
            price: 100.0,
        };
        assert_eq!(
            gate.check(&buy, &book, None).unwrap_err().code,
            "max_position"
        );
        // And the sells open already take the position to zero: another would be short.
        let sell = Proposed {
            side: Side::Sell,
            quantity: 1.0,
            ..buy
        };
        assert_eq!(
            gate.check(&sell, &book, None).unwrap_err().code,
            "short_not_allowed"
        );
    }

    #[test]
    fn a_days_loss_is_measured_from_the_previous_close_and_a_late_day_changes_nothing() {
        let mut gate = RiskGate::new(RiskLimits::default(), 100_000.0);
        assert_eq!(gate.observe(100_000.0, "2012-01-03"), RiskState::Active);
        // The next close is 4 % lower: the day's loss, over the 3 % limit.
        assert_eq!(gate.observe(96_000.0, "2012-01-04"), RiskState::Reducing);
        // A call as of the day before does not start a new day.
        assert_eq!(gate.observe(100_000.0, "2012-01-03"), RiskState::Reducing);
        assert_eq!(gate.observe(96_500.0, "2012-01-05"), RiskState::Active);
    }

    #[test]
    fn the_throttle_counts_a_minute_of_wall_time() {
        let mut gate = RiskGate::new(
            RiskLimits {
                orders_per_minute: 2,
                ..RiskLimits::default()
            },
            100_000.0,
        );
        let book = Book {
            equity: 100_000.0,
            ..Book::default()
        };
        let order = Proposed {
            symbol: "AAPL",
            side: Side::Buy,
            quantity: 1.0,
            price: 100.0,
        };
        assert!(gate.check(&order, &book, Some(0)).is_ok());
        assert!(gate.check(&order, &book, Some(1_000)).is_ok());
        let refusal = gate.check(&order, &book, Some(2_000)).unwrap_err();
        assert_eq!(refusal.code, "throttled");
        assert!(gate.check(&order, &book, Some(60_000)).is_ok());
    }

    #[test]
    fn a_refusal_carries_the_numbers_that_triggered_it() {
        let mut gate = RiskGate::new(RiskLimits::default(), 100_000.0);
        let book = Book {
            equity: 100_000.0,
            ..Book::default()
        };
        let order = Proposed {
            symbol: "AAPL",
            side: Side::Buy,
            quantity: 200.0,
            price: 150.0,
        };
        let refusal = gate.check(&order, &book, None).unwrap_err();
        assert_eq!(refusal.code, "max_order_notional");
        assert_eq!(refusal.detail["notional"], 30_000.0);
        assert_eq!(refusal.detail["limit"], 25_000.0);
        let sell = Proposed {
            side: Side::Sell,
            quantity: 1.0,
            ..order
        };
        assert_eq!(
            gate.check(&sell, &book, None).unwrap_err().code,
            "short_not_allowed"
        );
    }
}
