//! The `market`, `broker` and `memory` interfaces as agents reach them: each call sees the
//! market at its as-of time (the event's, else the market clock's). Shadow runs (checks,
//! canary replays, health) read what real calls read, and change nothing: a shadow submit is
//! checked and answered as an order that was never placed, a shadow remember stores nothing.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::NaiveDate;
use overseer_kernel::capability::{CallContext, Provider};
use overseer_sandbox::{
    Account, AsOfTime, Bar, GuestError, NewsItem, Order, OrderRequest as WitOrder, Position,
    Timeframe,
};
use overseer_store::OrderRecord;

use crate::desk::{Placer, Trading, as_of_day, as_of_ms, new_order};
use crate::error::Error;
use crate::order::{Amount, OrderRequest, OrderType, TimeInForce};

/// The as-of day of a call: its event's, else the market clock's. An event's as-of is never
/// later than the clock.
pub(crate) fn call_as_of(trading: &Trading, call: &CallContext) -> NaiveDate {
    let clock = trading.as_of();
    call.as_of_ms
        .map(as_of_day)
        .map_or(clock, |day| day.min(clock))
}

/// An error of the trading side as the agent sees it.
pub(crate) fn guest_error(error: Error) -> GuestError {
    match &error {
        Error::InvalidOrder(_)
        | Error::Market(_)
        | Error::OrderNotFound(_)
        | Error::NotOpen { .. }
        | Error::NoPrice(_) => GuestError::InvalidInput(error.to_string()),
        Error::Refused(refusal) => {
            GuestError::Denied(format!("risk:{}: {}", refusal.code, refusal.message))
        }
        Error::Broker(e) if e.code() == "provider_invalid" || e.code() == "provider_forbidden" => {
            GuestError::Denied(error.to_string())
        }
        Error::Broker(_) | Error::Store(_) => GuestError::Unavailable(error.to_string()),
    }
}

pub(crate) fn parse_day(what: &str, text: &str) -> Result<NaiveDate, GuestError> {
    text.parse().map_err(|_| {
        GuestError::InvalidInput(format!("{what} {text:?} is not a date like 2012-01-03"))
    })
}

pub(crate) fn wit_bar(bar: &overseer_market::Bar) -> Bar {
    Bar {
        date: bar.date.to_string(),
        open: bar.open,
        high: bar.high,
        low: bar.low,
        close: bar.close,
        volume: bar.volume,
    }
}

/// The newest bar of `symbol` known at `day`, as the contract shows it.
pub(crate) fn latest_bar(
    market: &dyn overseer_market::Market,
    symbol: &str,
    day: NaiveDate,
) -> Result<Option<Bar>, GuestError> {
    let bar = market
        .latest(symbol, day)
        .map_err(|e| guest_error(e.into()))?;
    Ok(bar.as_ref().map(wit_bar))
}

/// `invalid-input` for a symbol `market` does not serve.
pub(crate) fn known_symbol(
    market: &dyn overseer_market::Market,
    symbol: &str,
) -> Result<(), GuestError> {
    if market.symbols().iter().any(|s| s == symbol) {
        Ok(())
    } else {
        Err(GuestError::InvalidInput(format!(
            "unknown symbol {symbol:?}"
        )))
    }
}

/// Serves `market` from the trading side's market.
pub struct MarketProvider {
    trading: Trading,
}

impl MarketProvider {
    pub fn new(trading: Trading) -> Self {
        MarketProvider { trading }
    }
}

impl Provider<dyn overseer_sandbox::Market> for MarketProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Market> {
        Arc::new(CallMarket {
            trading: self.trading.clone(),
            as_of: call_as_of(&self.trading, call),
        })
    }

    fn shadow(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Market> {
        self.real(call)
    }
}

/// The market of one call, fixed at its as-of day.
struct CallMarket {
    trading: Trading,
    as_of: NaiveDate,
}

#[async_trait]
impl overseer_sandbox::Market for CallMarket {
    fn as_of(&self) -> AsOfTime {
        AsOfTime {
            at_ms: as_of_ms(self.as_of),
            date: self.as_of.to_string(),
        }
    }

    fn symbols(&self) -> Vec<String> {
        self.trading.market().symbols()
    }

    async fn bars(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        from: &str,
        to: &str,
    ) -> Result<Vec<Bar>, GuestError> {
        let Timeframe::Day = timeframe;
        let from = parse_day("from", from)?;
        let to = parse_day("to", to)?;
        let bars = self
            .trading
            .bars(symbol, from, to, self.as_of)
            .map_err(guest_error)?;
        Ok(bars.iter().map(wit_bar).collect())
    }

    async fn latest(&self, symbol: &str) -> Result<Option<Bar>, GuestError> {
        latest_bar(self.trading.market().as_ref(), symbol, self.as_of)
    }

    async fn news(
        &self,
        symbol: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<NewsItem>, GuestError> {
        known_symbol(self.trading.market().as_ref(), symbol)?;
        // The replayed market carries prices only: no articles.
        let Some(news) = self.trading.news() else {
            return Ok(Vec::new());
        };
        let until = as_of_ms(self.as_of);
        if since_ms > until {
            return Err(GuestError::InvalidInput(format!(
                "look-ahead: news since {since_ms} ms is after the as-of time {until} ms"
            )));
        }
        let articles = news
            .news(symbol, since_ms, until, limit)
            .await
            .map_err(|e| GuestError::Unavailable(e.to_string()))?;
        Ok(articles
            .into_iter()
            .map(|a| NewsItem {
                id: a.id,
                headline: a.headline,
                summary: a.summary,
                publisher: a.publisher,
                url: a.url,
                published_ms: a.published_ms,
                symbols: a.symbols,
                sentiment: a.sentiment,
            })
            .collect())
    }
}

/// Serves `broker` from the trading side's paper account.
pub struct BrokerProvider {
    trading: Trading,
}

impl BrokerProvider {
    pub fn new(trading: Trading) -> Self {
        BrokerProvider { trading }
    }
}

impl Provider<dyn overseer_sandbox::Broker> for BrokerProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Broker> {
        Arc::new(CallBroker {
            trading: self.trading.clone(),
            placer: Placer::of(call),
            as_of: call_as_of(&self.trading, call),
            shadow: false,
        })
    }

    fn shadow(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Broker> {
        Arc::new(CallBroker {
            trading: self.trading.clone(),
            placer: Placer::of(call),
            as_of: call_as_of(&self.trading, call),
            shadow: true,
        })
    }
}

struct CallBroker {
    trading: Trading,
    placer: Placer,
    as_of: NaiveDate,
    shadow: bool,
}

/// An order of the contract as the trading side takes it.
pub(crate) fn order_request(order: &WitOrder) -> OrderRequest {
    use overseer_sandbox::{Amount as A, OrderType as T, Side as S, TimeInForce as F};
    OrderRequest {
        symbol: order.symbol.clone(),
        side: match order.side {
            S::Buy => crate::ledger::Side::Buy,
            S::Sell => crate::ledger::Side::Sell,
        },
        amount: match order.amount {
            A::Quantity(q) => Amount::Quantity(q),
            A::Notional(n) => Amount::Notional(n),
        },
        order_type: match order.order_type {
            T::Market => OrderType::Market,
            T::Limit => OrderType::Limit,
        },
        limit_price: order.limit_price,
        time_in_force: match order.time_in_force {
            F::Day => TimeInForce::Day,
            F::Gtc => TimeInForce::Gtc,
        },
        client_order_id: order.client_order_id.clone(),
    }
}

/// A position as the contract shows it.
pub(crate) fn wit_position(p: &crate::desk::PositionView) -> Position {
    Position {
        symbol: p.symbol.clone(),
        quantity: p.quantity,
        average_price: p.average_price,
        price: p.price,
        market_value: p.market_value,
        unrealized_pnl: p.unrealized_pnl,
    }
}

/// A stored order as the contract shows it.
pub(crate) fn wit_order(order: &OrderRecord) -> Order {
    use overseer_sandbox::{OrderType as T, Side as S, TimeInForce as F};
    Order {
        id: order.id.clone(),
        client_order_id: order.client_order_id.clone(),
        symbol: order.symbol.clone(),
        side: if order.side == "sell" {
            S::Sell
        } else {
            S::Buy
        },
        order_type: if order.order_type == "limit" {
            T::Limit
        } else {
            T::Market
        },
        time_in_force: if order.time_in_force == "gtc" {
            F::Gtc
        } else {
            F::Day
        },
        quantity: order.quantity,
        notional: order.notional,
        limit_price: order.limit_price,
        status: order.status.clone(),
        filled_quantity: order.filled_quantity,
        fill_price: order.fill_price,
        commission: order.commission,
        submitted: order.submitted.clone(),
        filled: order.filled.clone(),
    }
}

#[async_trait]
impl overseer_sandbox::Broker for CallBroker {
    async fn account(&self) -> Result<Account, GuestError> {
        let p = self.trading.portfolio_at(self.as_of).await;
        Ok(Account {
            currency: p.currency.to_string(),
            cash: p.cash,
            equity: p.equity,
            gross_exposure: p.gross_exposure,
            realized_pnl: p.realized_pnl,
            risk_state: p.risk_state.as_str().to_string(),
        })
    }

    async fn positions(&self) -> Result<Vec<Position>, GuestError> {
        let p = self.trading.portfolio_at(self.as_of).await;
        Ok(p.positions.iter().map(wit_position).collect())
    }

    async fn orders(&self, open_only: bool, limit: u32) -> Result<Vec<Order>, GuestError> {
        let orders = self
            .trading
            .orders(false, u32::MAX)
            .await
            .map_err(guest_error)?;
        // As the orders stood at the call's as-of day: none placed later, none filled or
        // closed later.
        let day = self.as_of.to_string();
        Ok(orders
            .into_iter()
            .filter(|o| o.submitted.as_str() <= day.as_str())
            .map(|mut o| {
                if o.filled.as_deref().is_some_and(|f| f > day.as_str()) {
                    o.status = "new".to_string();
                    o.filled = None;
                    o.fill_price = None;
                    o.filled_quantity = 0.0;
                    o.commission = 0.0;
                }
                o
            })
            .filter(|o| !open_only || o.status == "new")
            .take(limit as usize)
            .map(|o| wit_order(&o))
            .collect())
    }

    async fn submit(&self, request: WitOrder) -> Result<Order, GuestError> {
        let request = order_request(&request);
        if self.shadow {
            request
                .validate(&self.trading.market().symbols())
                .map_err(guest_error)?;
            // Checked and answered, never placed: its shares are fixed only at a fill.
            let quantity = match request.amount {
                Amount::Quantity(q) => q,
                Amount::Notional(_) => 0.0,
            };
            let id = format!("shadow-{}", request.client_order_id);
            return Ok(wit_order(&new_order(
                id,
                &self.placer,
                &request,
                quantity,
                self.as_of,
            )));
        }
        let order = self
            .trading
            .submit(&self.placer, &request, self.as_of)
            .await
            .map_err(guest_error)?;
        Ok(wit_order(&order))
    }

    async fn cancel(&self, order_id: &str) -> Result<Order, GuestError> {
        if self.shadow {
            let order = self
                .trading
                .store()
                .order(order_id)
                .await
                .map_err(|e| guest_error(e.into()))?
                .ok_or_else(|| guest_error(Error::OrderNotFound(order_id.to_string())))?;
            return Ok(wit_order(&order));
        }
        let order = self.trading.cancel(order_id).await.map_err(guest_error)?;
        Ok(wit_order(&order))
    }
}
