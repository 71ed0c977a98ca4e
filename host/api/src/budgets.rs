//! LLM budgets: every agent's budget, what it used today and holds for calls under way, the
//! host's caps; a person sets one agent's budget within them.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use overseer_kernel::capability::budget::SetError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/budgets", get(list))
        .route("/v1/budgets/{agent}", put(set))
}

fn budgets(state: &AppState) -> ApiResult<&overseer_kernel::capability::LlmBudgets> {
    state.budgets.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "budgets_unavailable",
            "this host keeps no LLM budgets",
        )
    })
}

/// The caps, and every agent's budget by name; the cursor is an agent's name.
async fn list(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 100)?;
    let budgets = budgets(&state)?;
    let agents: Vec<String> = state
        .kernel
        .store
        .agents()
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    let (page, next) = paging.slice(budgets.view(&agents), |b| b.agent.clone())?;
    let config = budgets.config();
    Ok(Json(json!({
        "caps": {
            "agent_tokens_per_day": config.max_agent_tokens_per_day,
            "agent_usd_per_day": config.max_agent_usd_per_day,
            "total_tokens_per_day": config.total_tokens_per_day,
            "total_usd_per_day": config.total_usd_per_day,
        },
        "default": { "tokens": config.agent_tokens_per_day, "usd": config.agent_usd_per_day },
        "used_today": budgets.total_used(),
        "budgets": page,
        "next": next,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBudget {
    tokens_per_day: u64,
    usd_per_day: f64,
}

async fn set(
    State(state): State<AppState>,
    Path(agent): Path<String>,
    body: Result<Json<NewBudget>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let budgets = budgets(&state)?;
    overseer_kernel::check_name(&agent)?;
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    match budgets
        .set(&agent, body.tokens_per_day, body.usd_per_day)
        .await
    {
        Ok(view) => Ok(Json(json!(view))),
        Err(SetError::Invalid(message)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "over_budget_cap",
            message,
        )),
        Err(SetError::Store(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            e.to_string(),
        )),
    }
}
