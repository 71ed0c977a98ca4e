//! Orders as the trading side takes them: checked before anything else sees them, and filled
//! by the paper broker against the next bar after their as-of day.

use overseer_market::Bar;
use serde::{Deserialize, Serialize};

use crate::config::Costs;
use crate::error::{Error, Result};
use crate::ledger::Side;

/// The most shares one order may ask for.
pub const MAX_QUANTITY: f64 = 1e9;
/// The most money one order may ask for, in dollars.
pub const MAX_NOTIONAL: f64 = 1e12;

/// How much to trade.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Amount {
    /// Shares.
    Quantity(f64),
    /// Dollars; the shares are fixed at the fill price.
    Notional(f64),
}

/// Market orders fill at the next bar's open; limit orders when a bar reaches the price.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderType {
    Market,
    Limit,
}

impl OrderType {
    /// `limit` for a stored `"limit"`, else market.
    pub fn parse(text: &str) -> OrderType {
        if text == "limit" {
            OrderType::Limit
        } else {
            OrderType::Market
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Market => "market",
            OrderType::Limit => "limit",
        }
    }
}

/// How long an unfilled order lives: through the next trading day, or until cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeInForce {
    Day,
    Gtc,
}

impl TimeInForce {
    pub fn as_str(self) -> &'static str {
        match self {
            TimeInForce::Day => "day",
            TimeInForce::Gtc => "gtc",
        }
    }
}

/// An order to place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OrderRequest {
    pub symbol: String,
    pub side: Side,
    pub amount: Amount,
    pub order_type: OrderType,
    #[serde(default)]
    pub limit_price: Option<f64>,
    pub time_in_force: TimeInForce,
    pub client_order_id: String,
}

impl OrderRequest {
    /// Check the order on its own: a symbol the market serves, a positive finite amount
    /// within [`MAX_QUANTITY`] / [`MAX_NOTIONAL`], a limit price exactly when it is a limit
    /// order, and a client order id of 1 to 64 letters, digits and `-_.:`.
    ///
    /// # Errors
    /// [`Error::InvalidOrder`], or [`Error::Market`] with `unknown_symbol`.
    pub fn validate(&self, symbols: &[String]) -> Result<()> {
        if !symbols.contains(&self.symbol) {
            return Err(overseer_market::Error::UnknownSymbol(self.symbol.clone()).into());
        }
        let (what, value, max) = match self.amount {
            Amount::Quantity(q) => ("quantity", q, MAX_QUANTITY),
            Amount::Notional(n) => ("notional", n, MAX_NOTIONAL),
        };
        if !value.is_finite() || value <= 0.0 {
            return Err(Error::InvalidOrder(format!(
                "{what} must be a positive number, not {value}"
            )));
        }
        if value > max {
            return Err(Error::InvalidOrder(format!(
                "{what} {value} is over the most one order may ask for ({max})"
            )));
        }
        match (self.order_type, self.limit_price) {
            (OrderType::Limit, None) => {
                return Err(Error::InvalidOrder(
                    "a limit order needs a limit price".to_string(),
                ));
            }
            (OrderType::Limit, Some(p)) if !p.is_finite() || p <= 0.0 => {
                return Err(Error::InvalidOrder(format!(
                    "the limit price must be a positive number, not {p}"
                )));
            }
            (OrderType::Market, Some(_)) => {
                return Err(Error::InvalidOrder(
                    "a market order takes no limit price".to_string(),
                ));
            }
            _ => {}
        }
        let id = &self.client_order_id;
        if id.is_empty()
            || id.len() > 64
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        {
            return Err(Error::InvalidOrder(format!(
                "client order id {id:?}: 1 to 64 letters, digits and -_.:"
            )));
        }
        Ok(())
    }
}

/// Where an order fills on `bar`, or `None` when it does not: `(base, price)`, the bar's
/// price and the price paid or received after slippage.
///
/// A market order fills at the open. A buy limit fills when the low reaches the limit, at the
/// open if the bar opens below it, else at the limit; a sell limit mirrors it. Slippage moves
/// the price `slippage_bps` against the trader, never past a limit.
pub fn fill_price(
    order_type: OrderType,
    side: Side,
    limit: Option<f64>,
    bar: &Bar,
    costs: &Costs,
) -> Option<(f64, f64)> {
    let slip = costs.slippage_bps / 10_000.0;
    let (base, cap) = match (order_type, side, limit) {
        (OrderType::Market, _, _) => (bar.open, None),
        (OrderType::Limit, Side::Buy, Some(limit)) if bar.low <= limit => {
            (bar.open.min(limit), Some(limit))
        }
        (OrderType::Limit, Side::Sell, Some(limit)) if bar.high >= limit => {
            (bar.open.max(limit), Some(limit))
        }
        _ => return None,
    };
    let slipped = base * (1.0 + side.sign() * slip);
    let price = match (side, cap) {
        (Side::Buy, Some(cap)) => slipped.min(cap),
        (Side::Sell, Some(cap)) => slipped.max(cap),
        (_, None) => slipped,
    };
    Some((base, price))
}

/// One execution of an open order.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Fill {
    /// Shares: the order's, or for a notional order its notional over the fill price.
    pub quantity: f64,
    /// The price paid or received, slippage included.
    pub price: f64,
    /// The bar's price before slippage.
    pub base: f64,
    /// In dollars, on `quantity × price`.
    pub commission: f64,
    /// In dollars: `|price − base| × quantity`.
    pub slippage: f64,
}

/// The fill of an open order (`side`, `order_type`, `limit`, its `quantity` or
/// `notional`) on `bar`, the first bar after the day it was placed; `None` when the bar does
/// not fill it (a day order then expires). The paper broker's one rule, live and in
/// backtests.
pub fn fill_on(
    order_type: OrderType,
    side: Side,
    limit: Option<f64>,
    quantity: f64,
    notional: Option<f64>,
    bar: &Bar,
    costs: &Costs,
) -> Option<Fill> {
    let (base, price) = fill_price(order_type, side, limit, bar, costs)?;
    let quantity = notional.map_or(quantity, |n| n / price);
    Some(Fill {
        quantity,
        price,
        base,
        commission: commission(quantity, price, costs),
        slippage: (price - base).abs() * quantity,
    })
}

/// Commission on `quantity` shares at `price`.
pub fn commission(quantity: f64, price: f64, costs: &Costs) -> f64 {
    quantity * price * costs.commission_bps / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(open: f64, high: f64, low: f64, close: f64) -> Bar {
        Bar {
            date: chrono::NaiveDate::from_ymd_opt(2012, 1, 4).unwrap(),
            open,
            high,
            low,
            close,
            volume: 1e6,
        }
    }

    fn request(amount: Amount, order_type: OrderType, limit: Option<f64>) -> OrderRequest {
        OrderRequest {
            symbol: "AAPL".to_string(),
            side: Side::Buy,
            amount,
            order_type,
            limit_price: limit,
            time_in_force: TimeInForce::Day,
            client_order_id: "c-1".to_string(),
        }
    }

    #[test]
    fn fills_commission_and_slippage_match_the_hand_computed_values() {
        let costs = Costs {
            commission_bps: 10.0,
            slippage_bps: 20.0,
        };
        let b = bar(100.0, 105.0, 95.0, 102.0);
        // Market buy: 100 × 1.002 = 100.2; sell: 100 × 0.998 = 99.8.
        let (base, buy) = fill_price(OrderType::Market, Side::Buy, None, &b, &costs).unwrap();
        assert_eq!(base, 100.0);
        assert!((buy - 100.2).abs() < 1e-12);
        let (_, sell) = fill_price(OrderType::Market, Side::Sell, None, &b, &costs).unwrap();
        assert!((sell - 99.8).abs() < 1e-12);
        // Commission: 10 shares × 100.2 × 10 bp = 1.002.
        assert!((commission(10.0, 100.2, &costs) - 1.002).abs() < 1e-12);
        // Buy limit 97, reached by the low: filled at the limit, slippage capped by it.
        let (base, price) =
            fill_price(OrderType::Limit, Side::Buy, Some(97.0), &b, &costs).unwrap();
        assert_eq!((base, price), (97.0, 97.0));
        // Buy limit 101 above the open: filled at the open plus slippage, 100.2.
        let (_, price) = fill_price(OrderType::Limit, Side::Buy, Some(101.0), &b, &costs).unwrap();
        assert!((price - 100.2).abs() < 1e-12);
        // Limits the bar never reaches do not fill.
        assert_eq!(
            fill_price(OrderType::Limit, Side::Buy, Some(94.0), &b, &costs),
            None
        );
        assert_eq!(
            fill_price(OrderType::Limit, Side::Sell, Some(106.0), &b, &costs),
            None
        );
        // Sell limit 104, reached by the high: at the limit.
        let (_, price) = fill_price(OrderType::Limit, Side::Sell, Some(104.0), &b, &costs).unwrap();
        assert_eq!(price, 104.0);
    }

    #[test]
    fn bad_orders_are_refused_with_a_reason() {
        let symbols = ["AAPL".to_string()];
        for amount in [
            Amount::Quantity(0.0),
            Amount::Quantity(-5.0),
            Amount::Quantity(f64::NAN),
            Amount::Quantity(f64::INFINITY),
            Amount::Quantity(1e10),
            Amount::Notional(-1.0),
            Amount::Notional(1e13),
        ] {
            let error = request(amount, OrderType::Market, None)
                .validate(&symbols)
                .unwrap_err();
            assert_eq!(error.code(), "invalid_order", "{amount:?}");
        }
        let no_price = request(Amount::Quantity(1.0), OrderType::Limit, None);
        assert!(
            no_price
                .validate(&symbols)
                .unwrap_err()
                .to_string()
                .contains("limit price")
        );
        let nan_price = request(Amount::Quantity(1.0), OrderType::Limit, Some(f64::NAN));
        assert_eq!(
            nan_price.validate(&symbols).unwrap_err().code(),
            "invalid_order"
        );
        let priced_market = request(Amount::Quantity(1.0), OrderType::Market, Some(1.0));
        assert_eq!(
            priced_market.validate(&symbols).unwrap_err().code(),
            "invalid_order"
        );
        let mut unknown = request(Amount::Quantity(1.0), OrderType::Market, None);
        unknown.symbol = "NOPE".to_string();
        assert_eq!(
            unknown.validate(&symbols).unwrap_err().code(),
            "unknown_symbol"
        );
        let mut bad_id = request(Amount::Quantity(1.0), OrderType::Market, None);
        bad_id.client_order_id = "has space".to_string();
        assert_eq!(
            bad_id.validate(&symbols).unwrap_err().code(),
            "invalid_order"
        );
        assert!(
            request(Amount::Notional(500.0), OrderType::Market, None)
                .validate(&symbols)
                .is_ok()
        );
    }
}
