//! Backtests: `POST /v1/backtests` checks a spec and starts it (202 with its id),
//! `GET /v1/backtests/{id}` shows its progress and, once done, its report (metrics, the
//! buy-and-hold benchmark, the equity curve, the trade log and the hashes), and
//! `GET /v1/backtests` lists the ids. A walk-forward without `params` tunes what the agent's
//! source marks (`overseer:tune NAME A..B`) or its manifest does.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use overseer_trading::backtest::{Backtester, Failure, Spec, walk};
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/backtests", get(list).post(start))
        .route("/v1/backtests/{id}", get(status))
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
            "agent_not_found" | "version_not_found" => StatusCode::NOT_FOUND,
            "version_not_servable" | "no_active_version" => StatusCode::CONFLICT,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, failure.code, failure.message)
    }
}

async fn start(
    State(state): State<AppState>,
    body: Result<Json<Spec>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let backtests = backtester(&state)?;
    let Json(mut spec) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    overseer_kernel::check_name(&spec.agent)?;
    if let Some(walk) = spec.walk_forward.as_mut()
        && walk.params.is_empty()
    {
        walk.params = marked_tunables(&state, &spec.agent, spec.version).await?;
    }
    let id = backtests.start(spec).await?;
    let status = backtests.status(&id).unwrap_or(Value::Null);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "status": status })),
    ))
}

/// The tunables marked in the source of the version a spec names, if it has source.
async fn marked_tunables(
    state: &AppState,
    agent: &str,
    version: Option<u32>,
) -> ApiResult<std::collections::BTreeMap<String, walk::Range>> {
    let version = match version {
        Some(v) => Some(v),
        None => state
            .kernel
            .store
            .agent(agent)
            .await
            .map_err(overseer_kernel::Error::from)?
            .and_then(|a| a.active_version),
    };
    let Some(version) = version else {
        return Ok(Default::default());
    };
    // The run's own checks name a missing agent or version.
    let source = state
        .selfedit
        .version_source(agent, version)
        .await
        .unwrap_or_default();
    Ok(source
        .map(|snapshot| {
            snapshot
                .files
                .values()
                .flat_map(|text| walk::scan_source(text))
                .collect()
        })
        .unwrap_or_default())
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

async fn list(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let backtests = backtester(&state)?;
    Ok(Json(json!({ "backtests": backtests.ids() })))
}
