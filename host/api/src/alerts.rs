//! Alerts: list, show, resolve by hand.

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use overseer_store::AlertFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState, known_alert};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/alerts", get(list_alerts))
        .route("/v1/alerts/{id}", get(show_alert))
        .route("/v1/alerts/{id}/resolve", post(resolve_alert))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertsQuery {
    state: Option<String>,
    agent: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// Alerts newest first; `next` pages to older ones.
async fn list_alerts(
    State(state): State<AppState>,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after.clone(), 100)?;
    let page = paging.store_page()?;
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
            before: page.before,
            limit: page.limit,
        })
        .await?;
    let (alerts, next) = paging.newest_first(alerts, |a| a.id);
    Ok(Json(json!({ "alerts": alerts, "next": next })))
}

async fn show_alert(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(known_alert(&state, id).await?)))
}

/// Resolve an alert by hand, with `{"reason": "…"}` or no body.
async fn resolve_alert(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let reason = crate::overseer::verdict(&body)?;
    known_alert(&state, id).await?;
    let resolution = if reason.is_empty() {
        "resolved by request".to_string()
    } else {
        format!("resolved by request: {reason}")
    };
    state.kernel.alerts.resolve_one(id, &resolution).await?;
    Ok(Json(json!(known_alert(&state, id).await?)))
}
