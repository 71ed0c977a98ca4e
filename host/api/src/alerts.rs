//! Alerts: list, show, resolve by hand.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use overseer_store::AlertFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState, known_alert};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/alerts", get(list_alerts))
        .route("/v1/alerts/{id}", get(show_alert))
        .route("/v1/alerts/{id}/resolve", post(resolve_alert))
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    state: Option<String>,
    agent: Option<String>,
    limit: Option<u32>,
}

async fn list_alerts(
    State(state): State<AppState>,
    Query(query): Query<AlertsQuery>,
) -> ApiResult<Json<Value>> {
    let open = match query.state.as_deref() {
        None | Some("all") => None,
        Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "state {other:?}: use open, resolved or all"
            )));
        }
    };
    let alerts = state
        .kernel
        .store
        .alerts(&AlertFilter {
            open,
            agent: query.agent.as_deref(),
            limit: query.limit.unwrap_or(100).min(10_000),
        })
        .await?;
    Ok(Json(json!({ "alerts": alerts })))
}

async fn show_alert(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(known_alert(&state, id).await?)))
}

async fn resolve_alert(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    known_alert(&state, id).await?;
    state
        .kernel
        .alerts
        .resolve_one(id, "resolved by request")
        .await?;
    Ok(Json(json!(known_alert(&state, id).await?)))
}
