//! The ledger of an account: cash, positions at average cost, realised profit and loss, all
//! computed from its fills in order. Money in dollars, quantities in shares.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }

    /// +1 for a buy, −1 for a sell.
    pub fn sign(self) -> f64 {
        match self {
            Side::Buy => 1.0,
            Side::Sell => -1.0,
        }
    }

    pub fn parse(text: &str) -> Option<Side> {
        match text {
            "buy" => Some(Side::Buy),
            "sell" => Some(Side::Sell),
            _ => None,
        }
    }
}

/// A position in one symbol. A negative quantity is short.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, utoipa::ToSchema)]
pub struct Holding {
    pub quantity: f64,
    /// Average cost per share, commission included.
    pub average_price: f64,
}

/// A position that a fill took to zero (or across it).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Closed {
    pub symbol: String,
    /// Shares closed.
    pub quantity: f64,
    pub entry_price: f64,
    pub exit_price: f64,
    /// Realised by this close, commission included.
    pub pnl: f64,
    /// `pnl` over the cost of the closed shares.
    pub pnl_pct: f64,
}

/// Cash and positions of an account.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Ledger {
    pub initial_cash: f64,
    pub cash: f64,
    pub positions: BTreeMap<String, Holding>,
    pub realized_pnl: f64,
    pub commissions: f64,
}

/// Quantities this close to zero are zero: fractional fills leave float dust.
const DUST: f64 = 1e-9;

impl Ledger {
    pub fn new(initial_cash: f64) -> Ledger {
        Ledger {
            initial_cash,
            cash: initial_cash,
            positions: BTreeMap::new(),
            realized_pnl: 0.0,
            commissions: 0.0,
        }
    }

    /// The shares held of `symbol` (0 when none).
    pub fn quantity(&self, symbol: &str) -> f64 {
        self.positions.get(symbol).map_or(0.0, |h| h.quantity)
    }

    /// Book a fill of `quantity` shares at `price` with `commission`. Answers the position it
    /// closed, when it reduced one.
    pub fn apply(
        &mut self,
        symbol: &str,
        side: Side,
        quantity: f64,
        price: f64,
        commission: f64,
    ) -> Option<Closed> {
        let signed = side.sign() * quantity;
        self.cash -= signed * price + commission;
        self.commissions += commission;
        let holding = self.positions.entry(symbol.to_string()).or_default();
        let before = holding.quantity;
        let mut closed = None;
        if before == 0.0 || before.signum() == signed.signum() {
            // Opening or adding: the commission is part of the cost.
            // Long: the commission raises the average cost; short: it lowers the average
            // price received. Either way it is paid, so it adds to the signed cost.
            let cost = before * holding.average_price + signed * price + commission;
            holding.quantity = before + signed;
            holding.average_price = cost / holding.quantity;
        } else {
            let closing = signed.abs().min(before.abs());
            let share_of_commission = commission * closing / quantity;
            let pnl =
                (price - holding.average_price) * closing * before.signum() - share_of_commission;
            self.realized_pnl += pnl;
            closed = Some(Closed {
                symbol: symbol.to_string(),
                quantity: closing,
                entry_price: holding.average_price,
                exit_price: price,
                pnl,
                pnl_pct: pnl / (holding.average_price * closing),
            });
            let after = before + signed;
            if after.abs() <= DUST {
                holding.quantity = 0.0;
            } else if after.signum() == before.signum() {
                holding.quantity = after;
            } else {
                // Across zero: the rest opens a position the other way at this price, with
                // its share of the commission in its cost.
                let opening_commission = commission - share_of_commission;
                holding.quantity = after;
                holding.average_price = (after * price + opening_commission) / after;
            }
        }
        if holding.quantity == 0.0 {
            self.positions.remove(symbol);
        }
        closed
    }

    /// The account valued at `marks` (the latest price of each symbol; a symbol without one
    /// is valued at its average price).
    pub fn value(&self, marks: &BTreeMap<String, f64>) -> Valuation {
        let mut market_value = 0.0;
        let mut gross = 0.0;
        for (symbol, holding) in &self.positions {
            let price = marks.get(symbol).copied().unwrap_or(holding.average_price);
            market_value += holding.quantity * price;
            gross += (holding.quantity * price).abs();
        }
        Valuation {
            cash: self.cash,
            equity: self.cash + market_value,
            gross_exposure: gross,
        }
    }
}

/// An account's value at some prices.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Valuation {
    pub cash: f64,
    /// Cash plus the market value of the positions.
    pub equity: f64,
    /// The sum of the absolute market values of the positions.
    pub gross_exposure: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_trip_books_cash_cost_and_pnl_by_hand() {
        let mut ledger = Ledger::new(10_000.0);
        assert_eq!(ledger.apply("AAPL", Side::Buy, 10.0, 100.0, 1.0), None);
        // Cost 1000 + 1 commission: 100.1 a share.
        assert_eq!(ledger.cash, 8_999.0);
        assert!((ledger.positions["AAPL"].average_price - 100.1).abs() < 1e-12);
        let closed = ledger.apply("AAPL", Side::Sell, 4.0, 110.0, 0.44).unwrap();
        // (110 − 100.1) × 4 − 0.44 = 39.16
        assert!((closed.pnl - 39.16).abs() < 1e-9, "{closed:?}");
        assert!((ledger.cash - (8_999.0 + 440.0 - 0.44)).abs() < 1e-9);
        assert_eq!(ledger.quantity("AAPL"), 6.0);
        ledger.apply("AAPL", Side::Sell, 6.0, 90.0, 0.54).unwrap();
        assert!(ledger.positions.is_empty());
        // Everything closed: equity is cash, and cash moved by exactly the realised P&L.
        let value = ledger.value(&BTreeMap::new());
        assert!((value.equity - (10_000.0 + ledger.realized_pnl)).abs() < 1e-9);
        assert_eq!(value.gross_exposure, 0.0);
    }

    #[test]
    fn a_short_round_trip_pays_both_commissions() {
        let mut ledger = Ledger::new(10_000.0);
        ledger.apply("X", Side::Sell, 10.0, 100.0, 1.0);
        // Proceeds 1000 less 1 of commission: 99.9 a share received.
        assert!((ledger.positions["X"].average_price - 99.9).abs() < 1e-12);
        let closed = ledger.apply("X", Side::Buy, 10.0, 100.0, 1.0).unwrap();
        assert!((closed.pnl - -2.0).abs() < 1e-9, "{closed:?}");
        assert!((ledger.cash - 9_998.0).abs() < 1e-9);
    }

    #[test]
    fn a_sell_across_zero_books_each_part_of_the_commission() {
        let mut ledger = Ledger::new(10_000.0);
        ledger.apply("X", Side::Buy, 10.0, 100.0, 0.0);
        // Sell 15 at 110 with 1.5 of commission: 1.0 closes the 10, 0.5 opens the short 5.
        let closed = ledger.apply("X", Side::Sell, 15.0, 110.0, 1.5).unwrap();
        assert!((closed.pnl - 99.0).abs() < 1e-9, "{closed:?}");
        let short = ledger.positions["X"];
        assert_eq!(short.quantity, -5.0);
        assert!((short.average_price - 109.9).abs() < 1e-9, "{short:?}");
        // Covered at 109.9: the short's 0.50 of price gain pays its 0.50 of commission.
        let covered = ledger.apply("X", Side::Buy, 5.0, 109.9, 0.0).unwrap();
        assert!(covered.pnl.abs() < 1e-9, "{covered:?}");
        assert!((ledger.realized_pnl - 99.0).abs() < 1e-9);
        // Flat again: cash moved by exactly the realised P&L.
        assert!((ledger.cash - 10_099.0).abs() < 1e-9, "{}", ledger.cash);
    }

    #[test]
    fn valuation_marks_positions_at_their_prices() {
        let mut ledger = Ledger::new(1_000.0);
        ledger.apply("X", Side::Buy, 5.0, 100.0, 0.0);
        let marks = BTreeMap::from([("X".to_string(), 120.0)]);
        let value = ledger.value(&marks);
        assert_eq!(value.cash, 500.0);
        assert_eq!(value.equity, 1_100.0);
        assert_eq!(value.gross_exposure, 600.0);
    }
}
