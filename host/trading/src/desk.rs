//! The trading side of one daemon: the market clock and the market it steps through, the
//! paper account (its ledger rebuilt from the stored fills), and the risk gate every order
//! passes. The clock's task advances one trading day per `market_speed`: open orders fill
//! against the new day's bar, the gate sees the new equity, and a `market.tick` is published
//! with the day as its as-of time.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use chrono::{NaiveDate, NaiveTime};
use overseer_kernel::bus::{Bus, host_event};
use overseer_kernel::capability::Trigger;
use overseer_market::{Bar, Market, MarketClock, Timeframe};
use overseer_providers::alpaca::{Alpaca, NewOrder};
use overseer_store::{
    EquityPoint, FillRecord, OrderFilter, OrderRecord, RefusalRecord, Store, audit, now_ms,
};
use serde::Serialize;
use serde_json::json;

use crate::config::TradingConfig;
use crate::error::{Error, Result};
use crate::ledger::{Ledger, Side};
use crate::live::NewsSource;
use crate::order::{Amount, Fill, OrderRequest, OrderType, fill_on};
use crate::paper;
use crate::risk::{Book, Proposed, RiskGate, RiskState, RiskStatus};

/// The UTC time a US trading day's close is stamped with: 16:00 in New York is 21:00 UTC
/// (20:00 in summer; either way the same UTC date).
const CLOSE_UTC: NaiveTime = match NaiveTime::from_hms_opt(21, 0, 0) {
    Some(t) => t,
    None => NaiveTime::MIN,
};

/// The as-of time of trading day `day`: its close, in milliseconds since the Unix epoch.
pub fn as_of_ms(day: NaiveDate) -> u64 {
    u64::try_from(day.and_time(CLOSE_UTC).and_utc().timestamp_millis()).unwrap_or(0)
}

/// The trading day an as-of time belongs to (its UTC date).
pub fn as_of_day(ms: u64) -> NaiveDate {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// Keys of the trading side's state in the store.
const CLOCK_KEY: &str = "clock";
const KILL_KEY: &str = "kill";
const RISK_KEY: &str = "risk";

/// What the gate keeps across a restart.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
struct KeptRisk {
    peak_equity: f64,
    /// Why trading is halted, when it is (not by the kill switch, which is kept apart).
    halted: Option<String>,
}

/// The account with its ledger and gate: changed under one lock, so a check and the order it
/// passes are one step.
struct Account {
    ledger: Ledger,
    gate: RiskGate,
}

/// Where the trading side's prices, news and fills come from.
pub struct Sources {
    pub market: Arc<dyn Market>,
    pub news: Option<Arc<dyn NewsSource>>,
    pub venue: Venue,
    /// The trading days of the market clock.
    pub days: Vec<NaiveDate>,
    /// The clock's first day, unless the store holds where it stopped.
    pub start: NaiveDate,
}

/// The trading side. Cheap to clone.
#[derive(Clone)]
pub struct Trading {
    inner: Arc<Inner>,
}

struct Inner {
    config: TradingConfig,
    market: Arc<dyn Market>,
    /// Articles, when the market has them (the replay does not).
    news: Option<Arc<dyn NewsSource>>,
    store: Store,
    bus: Bus,
    clock: Mutex<MarketClock>,
    account: tokio::sync::Mutex<Account>,
    /// A file whose presence halts trading (`<data-dir>/KILL`).
    kill_file: PathBuf,
    venue: Venue,
}

/// Where orders go once the gate passes them.
#[derive(Clone)]
pub enum Venue {
    /// The paper account in the store: fills at the next bar's open, with costs.
    Paper,
    /// An Alpaca account: orders placed there, fills read back at every tick.
    Alpaca(Alpaca),
}

/// A position valued at as-of.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PositionView {
    pub symbol: String,
    pub quantity: f64,
    pub average_price: f64,
    pub price: f64,
    pub market_value: f64,
    pub unrealized_pnl: f64,
}

/// A position's round trip, and who opened it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ClosedTrade {
    pub symbol: String,
    /// The agent that placed the order that opened the position, and its version.
    pub agent: String,
    pub agent_version: Option<u32>,
    /// That order's client id (the trade executor's names the signal: `<as-of>-<symbol>-<action>`).
    pub opened_by: Option<String>,
    /// The event that order answered, `{event, topic, source, source_version}`: for the
    /// trade executor, the `trade.signal` and the strategy version that published it.
    pub signal: Option<serde_json::Value>,
    pub closed_on: String,
    pub pnl: f64,
    pub pnl_pct: f64,
}

/// What `/v1/performance` shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Performance {
    /// The figures of the equity curve (see [`crate::performance`]); none before two closes.
    pub metrics: Option<crate::performance::Metrics>,
    pub curve: Vec<EquityPoint>,
    /// The drawdown at each close, as a fraction.
    pub drawdown: Vec<f64>,
    pub trades: Vec<ClosedTrade>,
    /// Realised P&L per strategy: the agent and version whose signal opened the trade
    /// (`strategy v3`); orders placed without a signal count under their own agent.
    pub realized_by_strategy: BTreeMap<String, f64>,
    /// Unrealised P&L of the positions held at the market clock, per agent that opened them.
    pub unrealized_by_agent: BTreeMap<String, f64>,
    pub realized_by_agent: BTreeMap<String, f64>,
    pub realized_by_symbol: BTreeMap<String, f64>,
}

/// The account valued at as-of: what `/v1/portfolio` shows.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Portfolio {
    pub as_of: NaiveDate,
    pub currency: &'static str,
    pub initial_cash: f64,
    pub cash: f64,
    pub equity: f64,
    pub gross_exposure: f64,
    pub realized_pnl: f64,
    pub unrealized_pnl: f64,
    pub commissions: f64,
    pub positions: Vec<PositionView>,
    pub risk_state: RiskState,
}

impl Trading {
    /// The trading side on `store`: the ledger rebuilt from the stored fills, the clock at
    /// the stored day (or `config.start`), the kill switch as it was left.
    ///
    /// # Errors
    /// The store's; [`Error::Market`] when the market has no trading day on or after the
    /// start.
    pub async fn open(
        config: TradingConfig,
        sources: Sources,
        store: Store,
        bus: Bus,
        data_dir: PathBuf,
    ) -> Result<Trading> {
        let Sources {
            market,
            news,
            venue,
            days,
            start,
        } = sources;
        let start = match store.trading_state(CLOCK_KEY).await? {
            Some(day) => day.parse().unwrap_or(start),
            None => start,
        };
        let clock = MarketClock::new(days, start).ok_or_else(|| {
            overseer_market::Error::Data(format!("no trading day on or after {start}"))
        })?;
        let ledger = ledger_of(config.initial_cash, &store.fills().await?);
        let mut gate = RiskGate::new(config.risk.clone(), config.initial_cash);
        if store.trading_state(KILL_KEY).await?.as_deref() == Some("on") {
            gate.set_kill(true);
        }
        // The highest equity and a halt nobody has ended outlive a restart.
        if let Some(kept) = store.trading_state(RISK_KEY).await?
            && let Ok(kept) = serde_json::from_str::<KeptRisk>(&kept)
        {
            gate.restore(kept.peak_equity, kept.halted);
        }
        let trading = Trading {
            inner: Arc::new(Inner {
                config,
                market,
                news,
                store,
                bus,
                clock: Mutex::new(clock),
                account: tokio::sync::Mutex::new(Account { ledger, gate }),
                kill_file: data_dir.join("KILL"),
                venue,
            }),
        };
        let as_of = trading.as_of();
        let equity = trading.portfolio_at(as_of).await.equity;
        {
            let mut account = trading.inner.account.lock().await;
            account.gate.observe(equity, &as_of.to_string());
        }
        Ok(trading)
    }

    pub fn config(&self) -> &TradingConfig {
        &self.inner.config
    }

    pub fn market(&self) -> &Arc<dyn Market> {
        &self.inner.market
    }

    /// The market's news, when it has any.
    pub fn news(&self) -> Option<&Arc<dyn NewsSource>> {
        self.inner.news.as_ref()
    }

    /// Add the exchange's trading days after the clock's calendar up to `through` (a live
    /// market's newest close).
    pub fn extend_calendar(&self, through: NaiveDate) {
        let mut clock = self.inner.clock.lock().unwrap_or_else(|p| p.into_inner());
        let after = clock.as_of().succ_opt().unwrap_or(through);
        for day in overseer_market::calendar::trading_days(after, through) {
            clock.push(day);
        }
    }

    /// The market clock's day.
    pub fn as_of(&self) -> NaiveDate {
        self.inner
            .clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_of()
    }

    /// The latest close of every symbol at `as_of`.
    pub fn marks(&self, as_of: NaiveDate) -> BTreeMap<String, f64> {
        self.inner
            .market
            .symbols()
            .into_iter()
            .filter_map(|symbol| {
                let bar = self.inner.market.latest(&symbol, as_of).ok()??;
                Some((symbol, bar.close))
            })
            .collect()
    }

    /// The account valued at `as_of`.
    ///
    /// With Alpaca as the broker, cash, equity and positions are the account's as Alpaca
    /// reports them now (the realised P&L and commissions are those of the fills read back);
    /// when Alpaca cannot be reached, the ledger of those fills.
    ///
    /// A day before the clock's (a call that lags it) sees the paper account as it stood
    /// then: only the fills of that day and before.
    pub async fn portfolio_at(&self, as_of: NaiveDate) -> Portfolio {
        let marks = self.marks(as_of);
        let account = self.inner.account.lock().await;
        let mut view = portfolio(&account, &marks, as_of);
        if matches!(self.inner.venue, Venue::Paper) && as_of < self.as_of() {
            match self.inner.store.fills().await {
                Ok(mut fills) => {
                    let day = as_of.to_string();
                    fills.retain(|f| f.date.as_str() <= day.as_str());
                    let ledger = ledger_of(self.inner.config.initial_cash, &fills);
                    let then = Account {
                        ledger,
                        gate: account.gate.clone(),
                    };
                    view = portfolio(&then, &marks, as_of);
                }
                Err(e) => tracing::warn!(error = %e, "fills not read: the account as it is now"),
            }
        }
        if let Venue::Alpaca(alpaca) = &self.inner.venue {
            match tokio::try_join!(alpaca.account(), alpaca.positions()) {
                Ok((remote, positions)) => {
                    view.cash = remote.cash;
                    view.equity = remote.equity;
                    view.positions = positions
                        .into_iter()
                        .map(|p| PositionView {
                            symbol: p.symbol,
                            quantity: p.qty,
                            average_price: p.avg_entry_price,
                            price: p.current_price,
                            market_value: p.market_value,
                            unrealized_pnl: p.unrealized_pl,
                        })
                        .collect();
                    view.gross_exposure = view.positions.iter().map(|p| p.market_value.abs()).sum();
                    view.unrealized_pnl = view.positions.iter().map(|p| p.unrealized_pnl).sum();
                }
                Err(e) => tracing::warn!(error = %e, "Alpaca account not read; showing the ledger"),
            }
        }
        view
    }

    /// Live performance: the equity curve of the closes, its figures, the costs paid, and
    /// every closed trade with the agent and the order (its client id names the signal) that
    /// opened it, with realised P&L per agent and per symbol.
    ///
    /// # Errors
    /// The store's.
    pub async fn performance(&self, risk_free: f64) -> Result<Performance> {
        let store = &self.inner.store;
        let curve = store.equity_curve().await?;
        let fills = store.fills().await?;
        let orders: BTreeMap<String, OrderRecord> = store
            .orders(&OrderFilter {
                limit: u32::MAX,
                ..OrderFilter::default()
            })
            .await?
            .into_iter()
            .map(|o| (o.id.clone(), o))
            .collect();
        let mut ledger = Ledger::new(self.inner.config.initial_cash);
        let mut costs = crate::performance::Costs::default();
        // The order that opened each symbol's position: what a close is attributed to.
        let mut opened_by: BTreeMap<String, String> = BTreeMap::new();
        let mut trades = Vec::new();
        let mut by_agent: BTreeMap<String, f64> = BTreeMap::new();
        let mut by_symbol: BTreeMap<String, f64> = BTreeMap::new();
        let mut by_strategy: BTreeMap<String, f64> = BTreeMap::new();
        for fill in &fills {
            let side = Side::parse(&fill.side).unwrap_or(Side::Buy);
            costs.fees += fill.commission;
            costs.slippage += fill.slippage;
            costs.traded += fill.quantity * fill.price;
            let held = ledger.quantity(&fill.symbol);
            let closed = ledger.apply(
                &fill.symbol,
                side,
                fill.quantity,
                fill.price,
                fill.commission,
            );
            if held == 0.0 {
                opened_by.insert(fill.symbol.clone(), fill.order_id.clone());
            }
            if let Some(closed) = closed {
                let opener = opened_by.get(&fill.symbol).and_then(|id| orders.get(id));
                let agent = opener.map_or("unknown".to_string(), |o| o.agent.clone());
                let signal: Option<serde_json::Value> = opener
                    .and_then(|o| o.trigger.as_deref())
                    .and_then(|t| serde_json::from_str(t).ok());
                costs.closed.push(closed.pnl);
                *by_agent.entry(agent.clone()).or_default() += closed.pnl;
                *by_symbol.entry(fill.symbol.clone()).or_default() += closed.pnl;
                *by_strategy
                    .entry(strategy_of(opener, signal.as_ref()))
                    .or_default() += closed.pnl;
                trades.push(ClosedTrade {
                    symbol: fill.symbol.clone(),
                    opened_by: opener.map(|o| o.client_order_id.clone()),
                    agent_version: opener.and_then(|o| o.agent_version),
                    agent,
                    signal,
                    closed_on: fill.date.clone(),
                    pnl: closed.pnl,
                    pnl_pct: closed.pnl_pct,
                });
            }
        }
        let marks = self.marks(self.as_of());
        let mut unrealized_by_agent: BTreeMap<String, f64> = BTreeMap::new();
        for (symbol, holding) in &ledger.positions {
            let Some(price) = marks.get(symbol) else {
                continue;
            };
            let agent = opened_by
                .get(symbol)
                .and_then(|id| orders.get(id))
                .map_or("unknown".to_string(), |o| o.agent.clone());
            *unrealized_by_agent.entry(agent).or_default() +=
                (price - holding.average_price) * holding.quantity;
        }
        let points: Vec<crate::performance::Point> = curve
            .iter()
            .map(|p| crate::performance::Point {
                equity: p.equity,
                gross_exposure: p.gross_exposure,
            })
            .collect();
        let metrics =
            (points.len() >= 2).then(|| crate::performance::metrics(&points, &costs, risk_free));
        let drawdown = crate::performance::drawdowns(curve.iter().map(|p| p.equity));
        Ok(Performance {
            metrics,
            curve,
            drawdown,
            trades,
            realized_by_agent: by_agent,
            realized_by_symbol: by_symbol,
            realized_by_strategy: by_strategy,
            unrealized_by_agent,
        })
    }

    /// The gate's state and limits.
    pub async fn risk(&self) -> RiskStatus {
        self.inner.account.lock().await.gate.status()
    }

    /// Orders, newest first.
    pub async fn orders(&self, open_only: bool, limit: u32) -> Result<Vec<OrderRecord>> {
        Ok(self
            .inner
            .store
            .orders(&OrderFilter {
                open_only,
                symbol: None,
                limit,
            })
            .await?)
    }

    /// Place an order for `agent` at `as_of`: checked, passed through the risk gate, stored
    /// as `new` to fill at the next bar. A second submit with the same client order id
    /// answers the first order and places nothing.
    ///
    /// # Errors
    /// [`Error::InvalidOrder`] or `unknown_symbol` for a bad order; [`Error::Refused`] when
    /// the gate refuses it (recorded, and published as `trade.refused`); [`Error::NoPrice`]
    /// before the symbol's data begins.
    pub async fn submit(
        &self,
        by: &Placer,
        request: &OrderRequest,
        as_of: NaiveDate,
    ) -> Result<OrderRecord> {
        let agent = by.agent.as_str();
        request.validate(&self.inner.market.symbols())?;
        let id = match self.inner.venue {
            Venue::Paper => format!("paper-{}", request.client_order_id),
            Venue::Alpaca(_) => format!("alpaca-{}", request.client_order_id),
        };
        let price = self
            .inner
            .market
            .latest(&request.symbol, as_of)?
            .map(|bar| bar.close)
            .ok_or_else(|| Error::NoPrice(request.symbol.clone()))?;
        let quantity = match request.amount {
            Amount::Quantity(q) => q,
            Amount::Notional(n) => n / request.limit_price.unwrap_or(price),
        };
        let marks = self.marks(as_of);
        let mut account = self.inner.account.lock().await;
        // Under the lock: a retry racing the first submit finds its order.
        if let Some(existing) = self.inner.store.order(&id).await? {
            if existing.agent != agent {
                return Err(Error::InvalidOrder(format!(
                    "client order id {:?} is another's order",
                    request.client_order_id
                )));
            }
            return Ok(existing);
        }
        self.check_kill_file(&mut account).await;
        let book = self.book(&account, &marks).await?;
        account.gate.observe(book.equity, &as_of.to_string());
        let proposed = Proposed {
            symbol: &request.symbol,
            side: request.side,
            quantity,
            price,
        };
        if let Err(refusal) = account.gate.check(&proposed, &book, Some(now_ms())) {
            drop(account);
            self.refused(agent, request, &refusal, as_of).await;
            return Err(Error::Refused(refusal));
        }
        if let Venue::Alpaca(alpaca) = &self.inner.venue {
            let (amount, notional) = match request.amount {
                Amount::Quantity(q) => (q, false),
                Amount::Notional(n) => (n, true),
            };
            alpaca
                .submit(&NewOrder {
                    symbol: &request.symbol,
                    side: request.side.as_str(),
                    amount,
                    notional,
                    order_type: request.order_type.as_str(),
                    limit_price: request.limit_price,
                    time_in_force: request.time_in_force.as_str(),
                    client_order_id: &request.client_order_id,
                })
                .await?;
        }
        let order = new_order(id, by, request, quantity, as_of);
        let (order, _) = self.inner.store.insert_order(&order).await?;
        Ok(order)
    }

    /// Cancel an open order.
    ///
    /// # Errors
    /// [`Error::OrderNotFound`]; [`Error::NotOpen`] for an order already done.
    pub async fn cancel(&self, id: &str) -> Result<OrderRecord> {
        let _account = self.inner.account.lock().await;
        let mut order = self
            .inner
            .store
            .order(id)
            .await?
            .ok_or_else(|| Error::OrderNotFound(id.to_string()))?;
        if order.status != "new" {
            return Err(Error::NotOpen {
                id: order.id,
                status: order.status,
            });
        }
        if let Venue::Alpaca(alpaca) = &self.inner.venue {
            let remote = alpaca.order_by_client_id(&order.client_order_id).await?;
            alpaca.cancel(&remote.id).await?;
        }
        order.status = "canceled".to_string();
        order.reason = Some("cancelled by its owner".to_string());
        self.inner.store.update_order(&order, None).await?;
        Ok(order)
    }

    /// Turn the kill switch on: trading halts at once and open orders are cancelled.
    pub async fn kill(&self) -> Result<RiskStatus> {
        self.inner.store.set_trading_state(KILL_KEY, "on").await?;
        let mut account = self.inner.account.lock().await;
        account.gate.set_kill(true);
        let status = account.gate.status();
        drop(account);
        self.keep_risk(&status).await;
        self.cancel_open("trading halted").await?;
        let detail = json!({ "reason": "kill switch" });
        audit::record(
            &*self.inner.store,
            "person",
            "risk.halted",
            "trading",
            &detail,
        )
        .await;
        self.publish("risk.halted", detail, "risk").await;
        Ok(status)
    }

    /// Resume trading after a halt: the kill switch off (the kill file must be gone too),
    /// the drawdown measured from the equity now.
    pub async fn resume(&self) -> Result<RiskStatus> {
        self.inner.store.set_trading_state(KILL_KEY, "off").await?;
        let as_of = self.as_of();
        let equity = self.portfolio_at(as_of).await.equity;
        let mut account = self.inner.account.lock().await;
        account.gate.resume(equity, &as_of.to_string());
        self.check_kill_file(&mut account).await;
        let status = account.gate.status();
        drop(account);
        self.keep_risk(&status).await;
        let detail = json!({ "state": status.state });
        audit::record(
            &*self.inner.store,
            "person",
            "risk.resumed",
            "trading",
            &detail,
        )
        .await;
        self.publish("risk.resumed", detail, "risk").await;
        Ok(status)
    }

    /// Advance the clock one trading day: fill what the new day's bars fill, let the gate
    /// see the new equity, publish `market.tick`. Answers the new day, or `None` at the end
    /// of the market's data.
    pub async fn step(&self) -> Result<Option<NaiveDate>> {
        let day = {
            let mut clock = self.inner.clock.lock().unwrap_or_else(|p| p.into_inner());
            clock.advance()
        };
        let Some(day) = day else {
            return Ok(None);
        };
        self.inner
            .store
            .set_trading_state(CLOCK_KEY, &day.to_string())
            .await?;
        // A kill switch thrown since the last tick stops this one's fills.
        let (before, halted) = {
            let mut account = self.inner.account.lock().await;
            let before = account.gate.state();
            self.check_kill_file(&mut account).await;
            (before, account.gate.state() == RiskState::Halted)
        };
        if halted {
            self.cancel_open("trading halted").await?;
        }
        self.fill_open(day).await?;
        // The day's close, as the broker values it: what the gate sees and the curve keeps.
        let close = self.portfolio_at(day).await;
        let equity = close.equity;
        let (after, status) = {
            let mut account = self.inner.account.lock().await;
            let after = account.gate.observe(equity, &day.to_string());
            (after, account.gate.status())
        };
        self.keep_risk(&status).await;
        let point = EquityPoint {
            day: day.to_string(),
            equity: close.equity,
            cash: close.cash,
            gross_exposure: close.gross_exposure,
            realized_pnl: close.realized_pnl,
            at_ms: i64::try_from(now_ms()).unwrap_or(i64::MAX),
        };
        if let Err(e) = self.inner.store.record_equity(&point).await {
            tracing::warn!(error = %e, "the day's equity was not recorded");
        }
        if after != before {
            if after == RiskState::Halted {
                self.cancel_open("trading halted").await?;
            }
            let status = self.risk().await;
            let action = format!("risk.{}", after.as_str());
            let detail =
                json!({ "state": after, "reason": status.reason, "equity": equity, "day": day });
            audit::record(&*self.inner.store, "host", &action, "trading", &detail).await;
            self.publish_at(&action, detail, "risk", day).await;
        }
        let bars: BTreeMap<String, Bar> = self
            .inner
            .market
            .symbols()
            .into_iter()
            .filter_map(|symbol| {
                let bar = self.inner.market.latest(&symbol, day).ok()??;
                (bar.date == day).then_some((symbol, bar))
            })
            .collect();
        self.publish_at(
            "market.tick",
            json!({ "as_of": day, "as_of_ms": as_of_ms(day), "bars": bars }),
            "market",
            day,
        )
        .await;
        Ok(Some(day))
    }

    /// Read back from the broker what became of the open orders (Alpaca fills arrive
    /// between ticks); the paper broker fills only at ticks.
    pub async fn sync(&self) -> Result<()> {
        match &self.inner.venue {
            Venue::Alpaca(alpaca) => self.sync_alpaca(alpaca, self.as_of()).await,
            Venue::Paper => Ok(()),
        }
    }

    /// Run the clock until the market's data ends or the trading side is dropped.
    pub fn spawn_clock(&self) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let every = self.inner.config.market_speed();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.tick().await;
            loop {
                interval.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                let trading = Trading { inner };
                match trading.step().await {
                    Ok(Some(_)) => {}
                    Ok(None) => {
                        tracing::info!(as_of = %trading.as_of(), "the market replay reached the end of its data");
                        return;
                    }
                    Err(e) => tracing::warn!(error = %e, "market clock step failed"),
                }
            }
        })
    }

    /// Fill the open orders placed before `day` that its bars fill; expire day orders that
    /// had their day.
    async fn fill_open(&self, day: NaiveDate) -> Result<()> {
        if let Venue::Alpaca(alpaca) = &self.inner.venue {
            return self.sync_alpaca(alpaca, day).await;
        }
        let open = self.orders(true, u32::MAX).await?;
        // Oldest first: orders fill in the order they were placed.
        for mut order in open.into_iter().rev() {
            if order.submitted.as_str() >= day.to_string().as_str() {
                continue;
            }
            let side = Side::parse(&order.side).unwrap_or(Side::Buy);
            let order_type = OrderType::parse(&order.order_type);
            let bar = self
                .inner
                .market
                .latest(&order.symbol, day)?
                .filter(|bar| bar.date == day);
            let fill = bar.and_then(|bar| {
                fill_on(
                    order_type,
                    side,
                    order.limit_price,
                    order.quantity,
                    order.notional,
                    &bar,
                    &self.inner.config.costs,
                )
            });
            let Some(fill) = fill else {
                if order.time_in_force == "day" {
                    order.status = "expired".to_string();
                    order.reason = Some(format!("not filled on {day}"));
                    self.inner.store.update_order(&order, None).await?;
                }
                continue;
            };
            let quantity = fill.quantity;
            let marks = self.marks(day);
            let mut account = self.inner.account.lock().await;
            // Cancelled (by its owner or a halt) since the list was read: it does not fill.
            if self
                .inner
                .store
                .order(&order.id)
                .await?
                .is_none_or(|current| current.status != "new")
            {
                continue;
            }
            let book = self.book(&account, &marks).await?;
            if let Err(refusal) = paper::check_fill(&mut account.gate, book, &order, side, &fill) {
                drop(account);
                order.status = "rejected".to_string();
                order.reason = Some(format!("risk:{}: {}", refusal.code, refusal.message));
                self.inner.store.update_order(&order, None).await?;
                let request = OrderRequest {
                    symbol: order.symbol.clone(),
                    side,
                    amount: Amount::Quantity(quantity),
                    order_type,
                    limit_price: order.limit_price,
                    time_in_force: crate::order::TimeInForce::Day,
                    client_order_id: order.client_order_id.clone(),
                };
                self.refused(&order.agent, &request, &refusal, day).await;
                continue;
            }
            self.book_fill(&mut account, order, side, fill, day).await?;
        }
        Ok(())
    }

    /// Book a fill: the ledger, the order filled with its fill in the store, then
    /// `trade.executed` and, when it closed a position, `trade.closed`.
    async fn book_fill(
        &self,
        account: &mut Account,
        mut order: OrderRecord,
        side: Side,
        fill: Fill,
        day: NaiveDate,
    ) -> Result<()> {
        let Fill {
            quantity,
            price,
            commission,
            ..
        } = fill;
        let closed = account
            .ledger
            .apply(&order.symbol, side, quantity, price, commission);
        let fill = paper::mark_filled(&mut order, &fill, day, now_ms());
        self.inner.store.update_order(&order, Some(&fill)).await?;
        self.publish_at(
            "trade.executed",
            paper::executed(&order, &fill, day),
            "trade",
            day,
        )
        .await;
        if let Some(closed) = closed {
            self.publish_at(
                "trade.closed",
                paper::closed(&closed, &order, day),
                "trade",
                day,
            )
            .await;
        }
        Ok(())
    }

    /// Read back from Alpaca what became of the open orders: fills booked as the paper
    /// broker books them (Alpaca charges no commission; slippage is measured from the day's
    /// open), and cancelled, expired and rejected orders closed.
    async fn sync_alpaca(&self, alpaca: &Alpaca, day: NaiveDate) -> Result<()> {
        for mut order in self.orders(true, u32::MAX).await?.into_iter().rev() {
            let remote = match alpaca.order_by_client_id(&order.client_order_id).await {
                Ok(remote) => remote,
                Err(e) => {
                    tracing::warn!(order = order.id, error = %e, "order not read back from Alpaca");
                    continue;
                }
            };
            let done = matches!(
                remote.status.as_str(),
                "filled" | "canceled" | "expired" | "rejected" | "done_for_day"
            );
            if !done {
                continue;
            }
            // What filled is booked, a partial fill of a cancelled order included; a fill
            // reported without its price waits for the next read-back.
            if remote.filled_qty > 0.0 {
                let Some(price) = remote.filled_avg_price.filter(|p| *p > 0.0) else {
                    tracing::warn!(order = order.id, "Alpaca reports a fill without its price");
                    continue;
                };
                let date = remote.filled_at.map_or(day, |t| t.date_naive());
                let open = self
                    .inner
                    .market
                    .latest(&order.symbol, day)?
                    .filter(|bar| bar.date == date)
                    .map_or(price, |bar| bar.open);
                let side = Side::parse(&order.side).unwrap_or(Side::Buy);
                let fill = Fill {
                    quantity: remote.filled_qty,
                    price,
                    base: open,
                    commission: 0.0,
                    slippage: (price - open).abs() * remote.filled_qty,
                };
                if remote.status != "filled" {
                    order.reason = Some(format!(
                        "alpaca: {} after {} of {} shares filled",
                        remote.status,
                        remote.filled_qty,
                        remote.qty.unwrap_or(remote.filled_qty)
                    ));
                }
                let mut account = self.inner.account.lock().await;
                self.book_fill(&mut account, order, side, fill, date.min(day))
                    .await?;
            } else {
                order.status = if remote.status == "done_for_day" {
                    "expired".to_string()
                } else {
                    remote.status.clone()
                };
                order.reason = Some(format!("alpaca: {}", remote.status));
                self.inner.store.update_order(&order, None).await?;
            }
        }
        Ok(())
    }

    /// The gate's view of the account: positions with open orders counted as filled.
    async fn book(&self, account: &Account, marks: &BTreeMap<String, f64>) -> Result<Book> {
        let (positions, equity): (BTreeMap<String, f64>, f64) = match &self.inner.venue {
            Venue::Paper => (
                paper::held(&account.ledger),
                account.ledger.value(marks).equity,
            ),
            // The broker's account is the truth: what it holds and what it is worth.
            Venue::Alpaca(alpaca) => (
                alpaca
                    .positions()
                    .await?
                    .into_iter()
                    .map(|p| (p.symbol, p.qty))
                    .collect(),
                alpaca.account().await?.equity,
            ),
        };
        let open = self.orders(true, u32::MAX).await?;
        Ok(paper::book(equity, positions, &open, marks))
    }

    /// Keep what the gate must remember across a restart.
    async fn keep_risk(&self, status: &RiskStatus) {
        let kept = KeptRisk {
            peak_equity: status.peak_equity,
            halted: (status.state == RiskState::Halted && !status.kill_switch)
                .then(|| status.reason.clone().unwrap_or_default()),
        };
        let text = serde_json::to_string(&kept).unwrap_or_default();
        if let Err(e) = self.inner.store.set_trading_state(RISK_KEY, &text).await {
            tracing::warn!(error = %e, "the risk gate's state was not kept");
        }
    }

    async fn check_kill_file(&self, account: &mut Account) {
        if self.inner.kill_file.exists() && account.gate.state() != RiskState::Halted {
            tracing::warn!(file = %self.inner.kill_file.display(), "kill file present: trading halted");
            account.gate.set_kill(true);
        }
    }

    async fn cancel_open(&self, reason: &str) -> Result<()> {
        for mut order in self.orders(true, u32::MAX).await? {
            if let Venue::Alpaca(alpaca) = &self.inner.venue {
                let cancelled = match alpaca.order_by_client_id(&order.client_order_id).await {
                    Ok(remote) => alpaca.cancel(&remote.id).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = cancelled {
                    tracing::warn!(order = order.id, error = %e, "the broker did not cancel an open order");
                    continue;
                }
            }
            order.status = "canceled".to_string();
            order.reason = Some(reason.to_string());
            self.inner.store.update_order(&order, None).await?;
        }
        Ok(())
    }

    /// Record a refusal and publish it as `trade.refused`.
    async fn refused(
        &self,
        agent: &str,
        request: &OrderRequest,
        refusal: &crate::risk::Refusal,
        as_of: NaiveDate,
    ) {
        let record = RefusalRecord {
            seq: 0,
            agent: agent.to_string(),
            client_order_id: request.client_order_id.clone(),
            symbol: request.symbol.clone(),
            side: request.side.as_str().to_string(),
            code: refusal.code.to_string(),
            message: refusal.message.clone(),
            detail: refusal.detail.to_string(),
            as_of: as_of.to_string(),
            at_ms: now_ms(),
        };
        if let Err(e) = self.inner.store.insert_refusal(&record).await {
            tracing::warn!(error = %e, "a refusal could not be recorded");
        }
        let payload = paper::refused(
            agent,
            &request.client_order_id,
            &request.symbol,
            request.side,
            refusal,
            as_of,
        );
        self.publish_at("trade.refused", payload, "risk", as_of)
            .await;
    }

    async fn publish(&self, topic: &str, payload: serde_json::Value, source: &str) {
        self.publish_at(topic, payload, source, self.as_of()).await;
    }

    async fn publish_at(
        &self,
        topic: &str,
        payload: serde_json::Value,
        source: &str,
        as_of: NaiveDate,
    ) {
        let event = host_event(topic.to_string(), payload.to_string(), source);
        if let Err(e) = self
            .inner
            .bus
            .publish_as_of(event, Some(as_of_ms(as_of)))
            .await
        {
            tracing::warn!(topic, error = %e, "trading event not published");
        }
    }

    /// Bars of `symbol` from `from` to `to`, bounded by `as_of`.
    ///
    /// # Errors
    /// [`Error::Market`]: look-ahead, an unknown symbol, a range backwards.
    pub fn bars(
        &self,
        symbol: &str,
        from: NaiveDate,
        to: NaiveDate,
        as_of: NaiveDate,
    ) -> Result<Vec<Bar>> {
        Ok(self
            .inner
            .market
            .bars(symbol, Timeframe::Day, from, to, as_of)?)
    }

    /// The store the trading side keeps its records in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
}

/// The strategy a trade is credited to: the publisher of the signal its opening order
/// answered (`strategy v3`), else the agent that placed it.
fn strategy_of(opener: Option<&OrderRecord>, signal: Option<&serde_json::Value>) -> String {
    let published = signal
        .filter(|s| s["topic"] == "trade.signal")
        .and_then(|s| {
            let source = s["source"].as_str()?;
            Some(match s["source_version"].as_u64() {
                Some(v) => format!("{source} v{v}"),
                None => source.to_string(),
            })
        });
    published.unwrap_or_else(|| match opener {
        Some(o) => match o.agent_version {
            Some(v) => format!("{} v{v}", o.agent),
            None => o.agent.clone(),
        },
        None => "unknown".to_string(),
    })
}

/// Who places an order: an agent (at a version, handling an event) or the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Placer {
    pub agent: String,
    pub version: Option<u32>,
    /// The event the agent was handling: for the trade executor, the signal.
    pub trigger: Option<Trigger>,
}

impl Placer {
    /// An order from the HTTP API.
    pub fn api() -> Self {
        Placer {
            agent: "api".to_string(),
            version: None,
            trigger: None,
        }
    }

    /// The agent of a call, at its version, handling its event.
    pub fn of(call: &overseer_kernel::capability::CallContext) -> Self {
        Placer {
            agent: call.agent.clone(),
            version: call.version,
            trigger: call.trigger.clone(),
        }
    }
}

/// `request` as a `new` order of `by` with `id`, for `quantity` shares, placed at `as_of`.
pub(crate) fn new_order(
    id: String,
    by: &Placer,
    request: &OrderRequest,
    quantity: f64,
    as_of: NaiveDate,
) -> OrderRecord {
    OrderRecord {
        id,
        client_order_id: request.client_order_id.clone(),
        agent: by.agent.clone(),
        symbol: request.symbol.clone(),
        side: request.side.as_str().to_string(),
        order_type: request.order_type.as_str().to_string(),
        time_in_force: request.time_in_force.as_str().to_string(),
        quantity,
        notional: match request.amount {
            Amount::Notional(n) => Some(n),
            Amount::Quantity(_) => None,
        },
        limit_price: request.limit_price,
        status: "new".to_string(),
        filled_quantity: 0.0,
        fill_price: None,
        commission: 0.0,
        submitted: as_of.to_string(),
        filled: None,
        reason: None,
        at_ms: now_ms(),
        agent_version: by.version,
        trigger: by
            .trigger
            .as_ref()
            .and_then(|t| serde_json::to_string(t).ok()),
    }
}

/// The ledger of an account that started with `initial_cash` and made `fills`, in order.
fn ledger_of(initial_cash: f64, fills: &[FillRecord]) -> Ledger {
    let mut ledger = Ledger::new(initial_cash);
    for fill in fills {
        let side = Side::parse(&fill.side).unwrap_or(Side::Buy);
        ledger.apply(
            &fill.symbol,
            side,
            fill.quantity,
            fill.price,
            fill.commission,
        );
    }
    ledger
}

fn portfolio(account: &Account, marks: &BTreeMap<String, f64>, as_of: NaiveDate) -> Portfolio {
    let value = account.ledger.value(marks);
    let positions = paper::positions(&account.ledger, marks);
    Portfolio {
        as_of,
        currency: "USD",
        initial_cash: account.ledger.initial_cash,
        cash: value.cash,
        equity: value.equity,
        gross_exposure: value.gross_exposure,
        realized_pnl: account.ledger.realized_pnl,
        unrealized_pnl: positions.iter().map(|p| p.unrealized_pnl).sum(),
        commissions: account.ledger.commissions,
        positions,
        risk_state: account.gate.state(),
    }
}
