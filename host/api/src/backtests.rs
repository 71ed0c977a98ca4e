//! Backtests: `POST /v1/backtests` checks a spec and starts it (202 with its id),
//! `GET /v1/backtests/{id}` shows its progress and, once done, its report (metrics, the
//! buy-and-hold benchmark, the equity curve, the trade log and the hashes), and
//! `DELETE /v1/backtests/{id}` stops one at its next bar, and `GET /v1/backtests` lists the
//! ids.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use overseer_trading::backtest::{Backtester, Failure, Spec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::openapi::PageQuery;
use crate::{ApiError, ApiResult, AppState, PageQueryResult};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(list, start)))
        .routes(named(routes!(status, cancel)))
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

/// `POST /v1/backtests`.
#[derive(Debug, Serialize, ToSchema)]
struct BacktestStarted {
    /// The backtest's id, for `GET /v1/backtests/{id}`.
    id: String,
    /// Its status as `GET /v1/backtests/{id}` shows it (the domain's `Status`: `id`,
    /// `state`, `spec`, `done`, `total`, and `report` or `error` once it ended); `null` if
    /// it could not be read back.
    #[schema(value_type = Option<overseer_trading::backtest::Status>)]
    status: Value,
}

/// Check a backtest's spec and start it; 202 with its id.
#[utoipa::path(post, path = "/v1/backtests", tag = "backtests", request_body = Spec,
    responses((status = 202, description = "started", body = BacktestStarted)))]
async fn start(
    State(state): State<AppState>,
    body: Result<Json<Spec>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<BacktestStarted>)> {
    let backtests = backtester(&state)?;
    let Json(spec) = body?;
    overseer_kernel::check_name(&spec.agent)?;
    let id = backtests.start(spec).await?;
    let status = backtests.status(&id).unwrap_or(Value::Null);
    Ok((StatusCode::ACCEPTED, Json(BacktestStarted { id, status })))
}

/// `{id}`: a backtest.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct BacktestPath {
    /// The backtest's id, as `POST /v1/backtests` answered it: `[a-z0-9-]{1,64}`.
    id: String,
}

/// `DELETE /v1/backtests/{id}`.
#[derive(Debug, Serialize, ToSchema)]
struct BacktestStopping {
    id: String,
    /// Whether it was running and now stops at its next bar; `false` when it had ended.
    stopping: bool,
}

/// Stop a backtest at its next bar.
#[utoipa::path(delete, path = "/v1/backtests/{id}", tag = "backtests", params(BacktestPath),
    responses((status = 200, body = BacktestStopping)))]
async fn cancel(
    State(state): State<AppState>,
    Path(BacktestPath { id }): Path<BacktestPath>,
) -> ApiResult<Json<BacktestStopping>> {
    let backtests = backtester(&state)?;
    let stopping = backtests.cancel(&id)?;
    Ok(Json(BacktestStopping { id, stopping }))
}

/// A backtest's progress, and its report or failure once it ended.
///
/// The report holds the metrics, the buy-and-hold benchmark, the equity curve, the trade log
/// and the hashes.
#[utoipa::path(get, path = "/v1/backtests/{id}", tag = "backtests", params(BacktestPath),
    responses((status = 200, description = "the backtest's status: `id`, `state` (`running`, \
        `done` or `failed`), `spec`, `done` and `total` bars, and `report` or `error` once it \
        ended", body = overseer_trading::backtest::Status)))]
async fn status(
    State(state): State<AppState>,
    Path(BacktestPath { id }): Path<BacktestPath>,
) -> ApiResult<Json<Value>> {
    let backtests = backtester(&state)?;
    backtests.status(&id).map(Json).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "backtest_not_found",
            format!("no backtest {id:?}"),
        )
    })
}

/// `GET /v1/backtests`.
#[derive(Debug, Serialize, ToSchema)]
struct BacktestList {
    /// Backtest ids, newest first.
    backtests: Vec<String>,
    /// The cursor of the next page (a backtest's id), `null` on the last.
    next: Option<String>,
}

/// The ids of the backtests run or kept, newest first.
#[utoipa::path(get, path = "/v1/backtests", tag = "backtests", params(PageQuery),
    responses((status = 200, body = BacktestList)))]
async fn list(
    State(state): State<AppState>,
    query: PageQueryResult,
) -> ApiResult<Json<BacktestList>> {
    let paging = crate::paging(query, 100)?;
    let backtests = backtester(&state)?;
    let (backtests, next) = paging.slice(backtests.ids(), |id| id.to_string())?;
    Ok(Json(BacktestList { backtests, next }))
}
