//! Backtests: `POST /v1/backtests` checks a spec and starts it (202 with its id),
//! `GET /v1/backtests/{id}` shows its progress and, once done, its report (metrics, the
//! buy-and-hold benchmark, the equity curve, the trade log and the hashes), and
//! `DELETE /v1/backtests/{id}` stops one at its next bar, and `GET /v1/backtests` lists the
//! ids.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use overseer_trading::backtest::{Backtester, Failure, Spec};
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/backtests", get(list).post(start))
        .route("/v1/backtests/{id}", get(status).delete(cancel))
}

fn backtester(state: &AppState) -> ApiResult<&std::sync::Arc<Backtester>> {
    state.backtests.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backtests_unavailable",
            "this daemon runs no backtests",
        )
    })
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        let status = match failure.code {
            "invalid_request" | "invalid_range" | "empty_range" | "unknown_symbol"
            | "invalid_data" | "no_feed" | "invalid_name" => StatusCode::BAD_REQUEST,
            "agent_not_found" | "version_not_found" | "backtest_not_found" => StatusCode::NOT_FOUND,
            "version_not_servable" | "no_active_version" => StatusCode::CONFLICT,
            "busy" => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, failure.code, failure.message)
    }
}

async fn start(
    State(state): State<AppState>,
    body: Result<Json<Spec>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let backtests = backtester(&state)?;
    let Json(spec) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    overseer_kernel::check_name(&spec.agent)?;
    let id = backtests.start(spec).await?;
    let status = backtests.status(&id).unwrap_or(Value::Null);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": status })),
    ))
}

async fn cancel(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let backtests = backtester(&state)?;
    let stopping = backtests.cancel(&id)?;
    Ok(Json(json!({ "id": id, "stopping": stopping })))
}

async fn status(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let backtests = backtester(&state)?;
    backtests.status(&id).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "backtest_not_found",
            format!("no backtest {id:?}"),
        )
    })
}

/// Backtests by id, in the order they started.
async fn list(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 100)?;
    let backtests = backtester(&state)?;
    let (ids, next) = paging.slice(backtests.ids(), |id| id.to_string())?;
    Ok(Json(json!({ "backtests": ids, "next": next })))
}
