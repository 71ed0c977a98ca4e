//! LLM budgets: every agent's budget, what it used today and holds for calls under way, the
//! host's caps; a person sets one agent's budget within them.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use overseer_kernel::capability::budget::{BudgetView, SetError, Spend};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::openapi::{AgentPath, PageQuery};
use crate::{ApiError, ApiResult, AppState, PageQueryResult};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(list)))
        .routes(named(routes!(set)))
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

/// The host's caps on LLM budgets (`[llm_budget]`).
#[derive(Debug, Serialize, ToSchema)]
struct BudgetCaps {
    /// The most tokens a day any one agent's budget may be set to.
    agent_tokens_per_day: u64,
    /// The most dollars a day any one agent's budget may be set to.
    agent_usd_per_day: f64,
    /// Tokens a day all agents together may spend.
    total_tokens_per_day: u64,
    /// Dollars a day all agents together may spend.
    total_usd_per_day: f64,
}

/// `GET /v1/budgets`.
#[derive(Debug, Serialize, ToSchema)]
struct BudgetList {
    caps: BudgetCaps,
    /// The daily budget of an agent nobody set one for: tokens, and dollars.
    default: Spend,
    /// What all agents used today: tokens, and dollars.
    used_today: Spend,
    /// Agents by name: each one's daily budget, what it used today and what it holds for
    /// calls under way (tokens, and dollars).
    budgets: Vec<BudgetView>,
    /// The cursor of the next page (an agent's name), `null` on the last.
    next: Option<String>,
}

/// The caps, and every agent's budget by name; the cursor is an agent's name.
#[utoipa::path(get, path = "/v1/budgets", tag = "budgets", params(PageQuery),
    responses((status = 200, body = BudgetList)))]
async fn list(
    State(state): State<AppState>,
    query: PageQueryResult,
) -> ApiResult<Json<BudgetList>> {
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
    Ok(Json(BudgetList {
        caps: BudgetCaps {
            agent_tokens_per_day: config.max_agent_tokens_per_day,
            agent_usd_per_day: config.max_agent_usd_per_day,
            total_tokens_per_day: config.total_tokens_per_day,
            total_usd_per_day: config.total_usd_per_day,
        },
        default: Spend {
            tokens: config.agent_tokens_per_day,
            usd: config.agent_usd_per_day,
        },
        used_today: budgets.total_used(),
        budgets: page,
        next,
    }))
}

/// An agent's daily LLM budget, within the host's caps.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewBudget {
    /// Tokens a day (prompt and completion).
    tokens_per_day: u64,
    /// Dollars a day.
    #[schema(minimum = 0)]
    usd_per_day: f64,
}

/// Set one agent's daily budget; 400 `over_budget_cap` beyond the caps.
#[utoipa::path(put, path = "/v1/budgets/{name}", tag = "budgets", params(AgentPath),
    request_body = NewBudget,
    responses((status = 200, description = "the agent's budget as set", body = BudgetView)))]
async fn set(
    State(state): State<AppState>,
    Path(AgentPath { name: agent }): Path<AgentPath>,
    body: Result<Json<NewBudget>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<BudgetView>> {
    let budgets = budgets(&state)?;
    overseer_kernel::check_name(&agent)?;
    let Json(body) = body?;
    match budgets
        .set(&agent, body.tokens_per_day, body.usd_per_day)
        .await
    {
        Ok(view) => Ok(Json(view)),
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
