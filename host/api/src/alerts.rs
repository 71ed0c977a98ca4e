//! Alerts: list, show, resolve by hand.

use axum::Json;
use axum::extract::{Path, Query, State};
use overseer_store::{AlertFilter, AlertRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::openapi::IdPath;
use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState, known_alert};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(list_alerts)))
        .routes(named(routes!(show_alert)))
        .routes(named(routes!(resolve_alert)))
}

/// Which alerts a list holds, by state.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum AlertStateFilter {
    /// Not resolved yet.
    Open,
    /// Resolved, by the host or by hand.
    Resolved,
    /// Both (the default).
    All,
}

/// `?state=&agent=&limit=&after=` of the alerts' list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AlertsQuery {
    /// `open`, `resolved` or `all` (the default).
    #[param(inline)]
    state: Option<AlertStateFilter>,
    /// Only this agent's alerts.
    agent: Option<String>,
    /// Items on the page: 1 to 1,000 (100 by default).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// The cursor of the page before: the `next` of its answer.
    after: Option<String>,
}

/// `GET /v1/alerts`.
#[derive(Debug, Serialize, ToSchema)]
struct AlertList {
    /// Newest first.
    alerts: Vec<AlertRecord>,
    /// The cursor of the page of older alerts (an alert's id), `null` on the last.
    next: Option<String>,
}

/// Alerts newest first; `next` pages to older ones.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(AlertsQuery),
    responses((status = 200, body = AlertList)))]
async fn list_alerts(
    State(state): State<AppState>,
    query: Result<Query<AlertsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AlertList>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after.clone(), 100)?;
    let page = paging.store_page()?;
    let open = match query.state {
        None | Some(AlertStateFilter::All) => None,
        Some(AlertStateFilter::Open) => Some(true),
        Some(AlertStateFilter::Resolved) => Some(false),
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
    Ok(Json(AlertList { alerts, next }))
}

/// One alert.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts", params(IdPath),
    responses((status = 200, body = AlertRecord)))]
async fn show_alert(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult<Json<AlertRecord>> {
    Ok(Json(known_alert(&state, id).await?))
}

/// Resolve an alert by hand, with `{"reason": "…"}` or no body; answers the resolved alert.
#[utoipa::path(post, path = "/v1/alerts/{id}/resolve", tag = "alerts", params(IdPath),
    request_body(content = Option<crate::overseer::Verdict>, content_type = "application/json"),
    responses((status = 200, body = AlertRecord)))]
async fn resolve_alert(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
    body: axum::body::Bytes,
) -> ApiResult<Json<AlertRecord>> {
    let reason = crate::overseer::verdict(&body)?;
    known_alert(&state, id).await?;
    let resolution = if reason.is_empty() {
        "resolved by request".to_string()
    } else {
        format!("resolved by request: {reason}")
    };
    state.kernel.alerts.resolve_one(id, &resolution).await?;
    Ok(Json(known_alert(&state, id).await?))
}
