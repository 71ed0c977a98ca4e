//! The trading side: the market, the paper portfolio, orders and fills, the risk gate (with
//! the kill switch), and trade memory. Every answer is as of the market clock unless asked
//! for an earlier day; nothing after it is ever shown. 503 `trading_disabled` when the daemon
//! runs without it.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::NaiveDate;
use overseer_market::Bar;
use overseer_store::{FillRecord, OrderRecord};
use overseer_trading::risk::RiskStatus;
use overseer_trading::{
    Amount, Costs, OrderRequest, OrderType, Performance, Placer, Portfolio, Side, TimeInForce,
    Trading,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::openapi::PageQuery;
use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState, PageQueryResult};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(market)))
        .routes(named(routes!(bars)))
        .routes(named(routes!(portfolio)))
        .routes(named(routes!(orders, submit)))
        .routes(named(routes!(cancel)))
        .routes(named(routes!(trades)))
        .routes(named(routes!(risk, set_risk)))
        .routes(named(routes!(memory)))
        .routes(named(routes!(performance)))
}

fn trading(state: &AppState) -> ApiResult<&Trading> {
    state.trading.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "trading_disabled",
            "the trading side is off ([trading] enabled = false)",
        )
    })
}

impl From<overseer_trading::Error> for ApiError {
    fn from(error: overseer_trading::Error) -> Self {
        use overseer_trading::Error as E;
        let status = match &error {
            // Data the market could not read is the source's failure, not the request's.
            E::Market(m) if m.code() == "market_data" => StatusCode::BAD_GATEWAY,
            E::InvalidOrder(_) | E::Market(_) => StatusCode::BAD_REQUEST,
            E::Refused(_) => StatusCode::FORBIDDEN,
            E::OrderNotFound(_) => StatusCode::NOT_FOUND,
            E::NotOpen { .. } | E::NoPrice(_) => StatusCode::CONFLICT,
            E::Broker(e) => match e.code() {
                "provider_invalid" => StatusCode::UNPROCESSABLE_ENTITY,
                "provider_forbidden" => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_GATEWAY,
            },
            E::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let code = match &error {
            E::Refused(refusal) => refusal.code,
            other => other.code(),
        };
        ApiError::new(status, code, error.to_string())
    }
}

fn day(what: &str, text: &str) -> ApiResult<NaiveDate> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_range",
            format!("{what} {text:?} is not a date like 2012-01-03"),
        )
    })
}

/// `GET /v1/market`.
#[derive(Debug, Serialize, ToSchema)]
struct MarketView {
    /// The market clock's trading day.
    as_of: NaiveDate,
    /// The symbols the market serves, sorted.
    symbols: Vec<String>,
    /// Wall time per replayed trading day, in milliseconds.
    market_speed_ms: u64,
    /// The paper broker's costs, in basis points of the traded value.
    costs: Costs,
}

/// The market clock's day, the symbols served, the replay's speed and the trading costs.
#[utoipa::path(get, path = "/v1/market", tag = "trading",
    responses((status = 200, body = MarketView)))]
async fn market(State(state): State<AppState>) -> ApiResult<Json<MarketView>> {
    let trading = trading(&state)?;
    Ok(Json(MarketView {
        as_of: trading.as_of(),
        symbols: trading.market().symbols(),
        market_speed_ms: trading.config().market_speed_ms,
        costs: trading.config().costs,
    }))
}

/// `{symbol}`: a symbol the market serves.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SymbolPath {
    /// The symbol, as `GET /v1/market` lists it.
    #[param(example = "AAPL")]
    symbol: String,
}

/// `?from&to&as_of` of `GET /v1/market/{symbol}/bars`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct BarsQuery {
    /// The first day (`YYYY-MM-DD`, inclusive); 45 days before `to` when absent.
    #[param(format = Date)]
    from: Option<String>,
    /// The last day (`YYYY-MM-DD`, inclusive); `as_of` when absent.
    #[param(format = Date)]
    to: Option<String>,
    /// The day the bars are seen from (`YYYY-MM-DD`), at most the market clock's (the
    /// default): no bar after it is shown.
    #[param(format = Date)]
    as_of: Option<String>,
}

/// `GET /v1/market/{symbol}/bars`.
#[derive(Debug, Serialize, ToSchema)]
struct BarsView {
    symbol: String,
    /// The day the bars were seen from.
    as_of: NaiveDate,
    /// Oldest first.
    bars: Vec<Bar>,
}

/// A symbol's daily bars from `from` to `to`, as seen on `as_of`.
#[utoipa::path(get, path = "/v1/market/{symbol}/bars", tag = "trading",
    params(SymbolPath, BarsQuery),
    responses((status = 200, body = BarsView)))]
async fn bars(
    State(state): State<AppState>,
    Path(SymbolPath { symbol }): Path<SymbolPath>,
    Query(query): Query<BarsQuery>,
) -> ApiResult<Json<BarsView>> {
    let trading = trading(&state)?;
    let clock = trading.as_of();
    let as_of = match &query.as_of {
        Some(text) => day("as_of", text)?.min(clock),
        None => clock,
    };
    let to = match &query.to {
        Some(text) => day("to", text)?,
        None => as_of,
    };
    let from = match &query.from {
        Some(text) => day("from", text)?,
        None => to - chrono::Days::new(45),
    };
    let bars = trading.bars(&symbol, from, to, as_of)?;
    Ok(Json(BarsView {
        symbol,
        as_of,
        bars,
    }))
}

/// `?risk_free` of `GET /v1/performance`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PerformanceQuery {
    /// The annual risk-free rate for Sharpe and Sortino, as a fraction (0.02 = 2 %), from -1
    /// to 1; 0 when absent.
    #[param(minimum = -1, maximum = 1)]
    risk_free: Option<f64>,
}

/// The paper account's performance.
///
/// Its metrics, equity curve, drawdowns, closed trades, and realised and unrealised P&L per
/// strategy, agent and symbol.
#[utoipa::path(get, path = "/v1/performance", tag = "trading", params(PerformanceQuery),
    responses((status = 200, body = Performance)))]
async fn performance(
    State(state): State<AppState>,
    Query(query): Query<PerformanceQuery>,
) -> ApiResult<Json<Performance>> {
    let trading = trading(&state)?;
    let risk_free = query.risk_free.unwrap_or(0.0);
    if !risk_free.is_finite() || !(-1.0..=1.0).contains(&risk_free) {
        return Err(ApiError::invalid("risk_free: an annual rate from -1 to 1"));
    }
    Ok(Json(trading.performance(risk_free).await?))
}

/// The paper account valued at the market clock: cash, equity, P&L and positions.
#[utoipa::path(get, path = "/v1/portfolio", tag = "trading",
    responses((status = 200, body = Portfolio)))]
async fn portfolio(State(state): State<AppState>) -> ApiResult<Json<Portfolio>> {
    let trading = trading(&state)?;
    Ok(Json(trading.portfolio_at(trading.as_of()).await))
}

/// `?open&limit&after` of `GET /v1/orders`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct OrdersQuery {
    /// Only orders still `new` (unfilled); all when absent.
    open: Option<bool>,
    /// Orders on the page: 1 to 1,000 (100 when absent).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// The cursor of the page before: the `next` of its answer (an order's id).
    after: Option<String>,
}

/// Orders read at most for one page.
const ORDERS_SCAN: u32 = 10_000;

/// `GET /v1/orders`.
#[derive(Debug, Serialize, ToSchema)]
struct OrderList {
    /// Newest first.
    orders: Vec<OrderRecord>,
    /// The cursor of the next page (an order's id), `null` on the last.
    next: Option<String>,
}

/// Orders newest first; the cursor is an order's id.
#[utoipa::path(get, path = "/v1/orders", tag = "trading", params(OrdersQuery),
    responses((status = 200, body = OrderList)))]
async fn orders(
    State(state): State<AppState>,
    query: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<OrderList>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after, 100)?;
    let trading = trading(&state)?;
    let orders = trading
        .orders(query.open.unwrap_or(false), ORDERS_SCAN)
        .await?;
    let (orders, next) = paging.slice(orders, |o| o.id.clone())?;
    Ok(Json(OrderList { orders, next }))
}

/// An order placed through the API: shares or dollars, market or limit.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrder {
    /// A symbol the market serves.
    #[schema(example = "AAPL")]
    symbol: String,
    side: Side,
    /// Shares; give this or `notional`, not both.
    quantity: Option<f64>,
    /// Dollars; give this or `quantity`, not both.
    notional: Option<f64>,
    /// `market` (the default) or `limit`.
    #[serde(default = "market_order", rename = "type")]
    order_type: OrderType,
    /// The limit price in dollars, for a `limit` order.
    limit_price: Option<f64>,
    /// `day` (the default) or `gtc`.
    #[serde(default = "day_order")]
    time_in_force: TimeInForce,
    /// The caller's id, unique: a retried submit answers the first order. `api-<uuid>` when
    /// absent.
    client_order_id: Option<String>,
}

fn market_order() -> OrderType {
    OrderType::Market
}

fn day_order() -> TimeInForce {
    TimeInForce::Day
}

/// Place an order.
///
/// Checked, passed through the risk gate, and filled at the next bar. A second submit with
/// the same `client_order_id` answers the first order and places nothing.
#[utoipa::path(post, path = "/v1/orders", tag = "trading", request_body = NewOrder,
    responses((status = 201, description = "the order, placed (or the first one of its client id)", body = OrderRecord)))]
async fn submit(
    State(state): State<AppState>,
    body: Result<Json<NewOrder>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<OrderRecord>)> {
    let trading = trading(&state)?;
    let Json(order) = body?;
    let amount = match (order.quantity, order.notional) {
        (Some(q), None) => Amount::Quantity(q),
        (None, Some(n)) => Amount::Notional(n),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_order",
                "give quantity (shares) or notional (dollars), one of them",
            ));
        }
    };
    let request = OrderRequest {
        symbol: order.symbol,
        side: order.side,
        amount,
        order_type: order.order_type,
        limit_price: order.limit_price,
        time_in_force: order.time_in_force,
        client_order_id: order
            .client_order_id
            .unwrap_or_else(|| format!("api-{}", uuid::Uuid::new_v4())),
    };
    let placed = trading
        .submit(&Placer::api(), &request, trading.as_of())
        .await?;
    Ok((StatusCode::CREATED, Json(placed)))
}

/// `{id}`: an order.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct OrderPath {
    /// The order's id, as `GET /v1/orders` shows it.
    #[param(example = "paper-api-1")]
    id: String,
}

/// Cancel an order that has not filled.
#[utoipa::path(delete, path = "/v1/orders/{id}", tag = "trading", params(OrderPath),
    responses((status = 200, description = "the order, cancelled", body = OrderRecord)))]
async fn cancel(
    State(state): State<AppState>,
    Path(OrderPath { id }): Path<OrderPath>,
) -> ApiResult<Json<OrderRecord>> {
    let trading = trading(&state)?;
    Ok(Json(trading.cancel(&id).await?))
}

/// `GET /v1/trades`.
#[derive(Debug, Serialize, ToSchema)]
struct TradeList {
    /// Fills, newest first.
    trades: Vec<FillRecord>,
    /// The cursor of the next page (a fill's `seq`), `null` on the last.
    next: Option<String>,
}

/// Fills newest first; the cursor is a fill's sequence number.
#[utoipa::path(get, path = "/v1/trades", tag = "trading", params(PageQuery),
    responses((status = 200, body = TradeList)))]
async fn trades(
    State(state): State<AppState>,
    query: PageQueryResult,
) -> ApiResult<Json<TradeList>> {
    let paging = crate::paging(query, 100)?;
    let trading = trading(&state)?;
    let mut fills = trading
        .store()
        .fills()
        .await
        .map_err(overseer_trading::Error::from)?;
    fills.reverse();
    let (trades, next) = paging.slice(fills, |f| f.seq.to_string())?;
    Ok(Json(TradeList { trades, next }))
}

/// Refusals read at most for one page.
const REFUSALS_SCAN: u32 = 10_000;

/// An order the risk gate refused.
#[derive(Debug, Serialize, ToSchema)]
struct RefusalShown {
    seq: i64,
    /// The agent (or `api`) that placed it.
    agent: String,
    client_order_id: String,
    symbol: String,
    /// `buy` or `sell`.
    side: String,
    /// The gate's stable reason code (`max_position`, `halted`, …).
    code: String,
    message: String,
    /// The numbers that triggered it, a JSON object (`null` if what was kept is not JSON).
    detail: Value,
    /// The market day it was refused on (`YYYY-MM-DD`).
    as_of: String,
    /// Wall time, in milliseconds since the Unix epoch.
    at_ms: u64,
}

/// `GET /v1/risk`.
#[derive(Debug, Serialize, ToSchema)]
struct RiskView {
    /// The gate's state and limits.
    risk: RiskStatus,
    /// Newest first.
    refusals: Vec<RefusalShown>,
    /// The cursor of the next page (a refusal's `seq`), `null` on the last.
    next: Option<String>,
}

/// The risk state, and the gate's refusals newest first.
///
/// The cursor is a refusal's sequence number.
#[utoipa::path(get, path = "/v1/risk", tag = "trading", params(PageQuery),
    responses((status = 200, body = RiskView)))]
async fn risk(State(state): State<AppState>, query: PageQueryResult) -> ApiResult<Json<RiskView>> {
    let paging = crate::paging(query, 50)?;
    let trading = trading(&state)?;
    let refusals = trading
        .store()
        .refusals(REFUSALS_SCAN)
        .await
        .map_err(overseer_trading::Error::from)?;
    let (refusals, next) = paging.slice(refusals, |r| r.seq.to_string())?;
    let refusals = refusals
        .into_iter()
        .map(|r| RefusalShown {
            detail: serde_json::from_str(&r.detail).unwrap_or(Value::Null),
            seq: r.seq,
            agent: r.agent,
            client_order_id: r.client_order_id,
            symbol: r.symbol,
            side: r.side,
            code: r.code,
            message: r.message,
            as_of: r.as_of,
            at_ms: r.at_ms,
        })
        .collect();
    Ok(Json(RiskView {
        risk: trading.risk().await,
        refusals,
        next,
    }))
}

/// What to do with the kill switch.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RiskAction {
    /// `kill` halts all trading; `resume` ends a halt.
    #[schema(schema_with = risk_actions)]
    action: String,
}

/// `kill` or `resume`, as a string enumeration.
fn risk_actions() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["kill", "resume"]))
        .description(Some("`kill` halts all trading; `resume` ends a halt."))
        .into()
}

/// `POST /v1/risk`.
#[derive(Debug, Serialize, ToSchema)]
struct RiskSet {
    /// The gate's state and limits after the action.
    risk: RiskStatus,
}

/// Throw the kill switch (`kill`) or end a halt (`resume`).
#[utoipa::path(post, path = "/v1/risk", tag = "trading", request_body = RiskAction,
    responses((status = 200, body = RiskSet)))]
async fn set_risk(
    State(state): State<AppState>,
    body: Result<Json<RiskAction>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<RiskSet>> {
    let trading = trading(&state)?;
    let Json(body) = body?;
    let status = match body.action.as_str() {
        "kill" => trading.kill().await?,
        "resume" => trading.resume().await?,
        other => {
            return Err(ApiError::invalid(format!(
                "action {other:?}: use kill or resume"
            )));
        }
    };
    Ok(Json(RiskSet { risk: status }))
}

/// `?collection&q&k` of `GET /v1/memory`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MemoryQuery {
    /// The stored name: `shared/<name>` or `<agent>/<name>`.
    #[param(example = "shared/notes")]
    collection: String,
    /// The text to rank by; the newest memories when absent.
    q: Option<String>,
    /// Memories to answer, at most (20 when absent).
    k: Option<u32>,
}

/// A remembered text.
#[derive(Debug, Serialize, ToSchema)]
struct MemoryShown {
    id: i64,
    collection: String,
    text: String,
    /// Its metadata: the JSON object it was kept with (`null` if what was kept is not JSON).
    metadata: Value,
    /// Relevance to `q`, higher is better; 0 without a query.
    score: f64,
    /// When it was kept, in milliseconds since the Unix epoch.
    at_ms: u64,
}

/// `GET /v1/memory`.
#[derive(Debug, Serialize, ToSchema)]
struct MemoryList {
    /// Most relevant first.
    memories: Vec<MemoryShown>,
}

/// Recall from a trade-memory collection: the texts most relevant to `q`.
#[utoipa::path(get, path = "/v1/memory", tag = "trading", params(MemoryQuery),
    responses((status = 200, body = MemoryList)))]
async fn memory(
    State(state): State<AppState>,
    Query(query): Query<MemoryQuery>,
) -> ApiResult<Json<MemoryList>> {
    let found = overseer_trading::memory::recall(
        &state.kernel.store,
        state.embeddings.as_ref(),
        &query.collection,
        query.q.as_deref().unwrap_or(""),
        query.k.unwrap_or(20),
        &Map::new(),
        None,
    )
    .await
    .map_err(overseer_trading::Error::from)?;
    let memories = found
        .into_iter()
        .map(|m| MemoryShown {
            metadata: serde_json::from_str::<Value>(&m.metadata).unwrap_or(Value::Null),
            id: m.id,
            collection: m.collection,
            text: m.text,
            score: m.rank,
            at_ms: m.at_ms,
        })
        .collect();
    Ok(Json(MemoryList { memories }))
}
