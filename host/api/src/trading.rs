//! The trading side: the market, the paper portfolio, orders and fills, the risk gate (with
//! the kill switch), and trade memory. Every answer is as of the market clock unless asked
//! for an earlier day; nothing after it is ever shown. 503 `trading_disabled` when the daemon
//! runs without it.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::NaiveDate;
use overseer_trading::{Amount, OrderRequest, OrderType, Placer, Side, TimeInForce, Trading};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/market", get(market))
        .route("/v1/market/{symbol}/bars", get(bars))
        .route("/v1/portfolio", get(portfolio))
        .route("/v1/orders", get(orders).post(submit))
        .route("/v1/orders/{id}", delete(cancel))
        .route("/v1/trades", get(trades))
        .route("/v1/risk", get(risk).post(set_risk))
        .route("/v1/memory", get(memory))
        .route("/v1/performance", get(performance))
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

async fn market(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let trading = trading(&state)?;
    Ok(Json(json!({
        "as_of": trading.as_of(),
        "symbols": trading.market().symbols(),
        "market_speed_ms": trading.config().market_speed_ms,
        "costs": trading.config().costs,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BarsQuery {
    from: Option<String>,
    to: Option<String>,
    as_of: Option<String>,
}

async fn bars(
    State(state): State<AppState>,
    Path(symbol): Path<String>,
    Query(query): Query<BarsQuery>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(
        json!({ "symbol": symbol, "as_of": as_of, "bars": bars }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerformanceQuery {
    /// The annual risk-free rate, as a fraction.
    risk_free: Option<f64>,
}

async fn performance(
    State(state): State<AppState>,
    Query(query): Query<PerformanceQuery>,
) -> ApiResult<Json<Value>> {
    let trading = trading(&state)?;
    let risk_free = query.risk_free.unwrap_or(0.0);
    if !risk_free.is_finite() || !(-1.0..=1.0).contains(&risk_free) {
        return Err(ApiError::invalid("risk_free: an annual rate from -1 to 1"));
    }
    Ok(Json(json!(trading.performance(risk_free).await?)))
}

async fn portfolio(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let trading = trading(&state)?;
    Ok(Json(json!(trading.portfolio_at(trading.as_of()).await)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrdersQuery {
    open: Option<bool>,
    limit: Option<u32>,
    after: Option<String>,
}

/// Orders read at most for one page.
const ORDERS_SCAN: u32 = 10_000;

/// Orders newest first; the cursor is an order's id.
async fn orders(
    State(state): State<AppState>,
    query: Result<Query<OrdersQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after, 100)?;
    let trading = trading(&state)?;
    let orders = trading
        .orders(query.open.unwrap_or(false), ORDERS_SCAN)
        .await?;
    let (orders, next) = paging.slice(orders, |o| o.id.clone())?;
    Ok(Json(json!({ "orders": orders, "next": next })))
}

/// An order placed through the API: shares or dollars, market or limit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewOrder {
    symbol: String,
    side: Side,
    quantity: Option<f64>,
    notional: Option<f64>,
    #[serde(default = "market_order", rename = "type")]
    order_type: OrderType,
    limit_price: Option<f64>,
    #[serde(default = "day_order")]
    time_in_force: TimeInForce,
    client_order_id: Option<String>,
}

fn market_order() -> OrderType {
    OrderType::Market
}

fn day_order() -> TimeInForce {
    TimeInForce::Day
}

async fn submit(
    State(state): State<AppState>,
    body: Result<Json<NewOrder>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let trading = trading(&state)?;
    let Json(order) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
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
    Ok((StatusCode::CREATED, Json(json!(placed))))
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let trading = trading(&state)?;
    Ok(Json(json!(trading.cancel(&id).await?)))
}

/// Fills newest first; the cursor is a fill's sequence number.
async fn trades(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 100)?;
    let trading = trading(&state)?;
    let mut fills = trading
        .store()
        .fills()
        .await
        .map_err(overseer_trading::Error::from)?;
    fills.reverse();
    let (fills, next) = paging.slice(fills, |f| f.seq.to_string())?;
    Ok(Json(json!({ "trades": fills, "next": next })))
}

/// Refusals read at most for one page.
const REFUSALS_SCAN: u32 = 10_000;

/// The risk state, and the gate's refusals newest first (the cursor is a refusal's sequence
/// number).
async fn risk(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 50)?;
    let trading = trading(&state)?;
    let refusals = trading
        .store()
        .refusals(REFUSALS_SCAN)
        .await
        .map_err(overseer_trading::Error::from)?;
    let (refusals, next) = paging.slice(refusals, |r| r.seq.to_string())?;
    let refusals: Vec<Value> = refusals
        .into_iter()
        .map(|r| {
            let mut value = json!(r);
            value["detail"] = serde_json::from_str(&r.detail).unwrap_or(Value::Null);
            value
        })
        .collect();
    Ok(Json(json!({
        "risk": trading.risk().await,
        "refusals": refusals,
        "next": next,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RiskAction {
    action: String,
}

async fn set_risk(
    State(state): State<AppState>,
    body: Result<Json<RiskAction>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let trading = trading(&state)?;
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let status = match body.action.as_str() {
        "kill" => trading.kill().await?,
        "resume" => trading.resume().await?,
        other => {
            return Err(ApiError::invalid(format!(
                "action {other:?}: use kill or resume"
            )));
        }
    };
    Ok(Json(json!({ "risk": status })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemoryQuery {
    /// The stored name: `shared/<name>` or `<agent>/<name>`.
    collection: String,
    q: Option<String>,
    k: Option<u32>,
}

async fn memory(
    State(state): State<AppState>,
    Query(query): Query<MemoryQuery>,
) -> ApiResult<Json<Value>> {
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
    let memories: Vec<Value> = found
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id,
                "collection": m.collection,
                "text": m.text,
                "metadata": serde_json::from_str::<Value>(&m.metadata).unwrap_or(Value::Null),
                "score": m.rank,
                "at_ms": m.at_ms,
            })
        })
        .collect();
    Ok(Json(json!({ "memories": memories })))
}
