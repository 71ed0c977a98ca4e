//! The audit trail: its entries, and a walk of its hash chain that finds an entry modified,
//! removed or moved behind the store's back.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use overseer_store::audit;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState};

/// Entries read per page of a walk.
const PAGE: u32 = 10_000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/audit", get(entries))
        .route("/v1/audit/verify", get(verify))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntriesQuery {
    /// Entries numbered after this one.
    after: Option<i64>,
    limit: Option<u32>,
}

/// Entries oldest first, each as stored (its detail the exact text that was hashed).
async fn entries(
    State(state): State<AppState>,
    query: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let limit = crate::page::Paging::new(query.limit, None, 100)?
        .limit
        .min(PAGE);
    let found = state
        .kernel
        .store
        .audit(query.after.unwrap_or(0), limit)
        .await
        .map_err(overseer_kernel::Error::from)?;
    let next = (found.len() == limit as usize)
        .then(|| found.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({ "entries": found, "next": next })))
}

/// The whole trail walked: `{ok, entries, head, problems: [{seq, problem, message}]}`.
async fn verify(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let store = &state.kernel.store;
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &audit::AuditRecord| e.seq);
        let page = store
            .audit(after, PAGE)
            .await
            .map_err(overseer_kernel::Error::from)?;
        let done = page.len() < PAGE as usize;
        all.extend(page);
        if done {
            break;
        }
    }
    Ok(Json(json!(audit::verify(&all))))
}
