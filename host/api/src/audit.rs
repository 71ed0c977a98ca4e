//! The audit trail: its entries, and a walk of its hash chain that finds an entry modified,
//! removed or moved behind the store's back.

use axum::Json;
use axum::extract::{Query, State};
use overseer_store::audit::{self, AuditRecord, Verification};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::{ApiError, ApiResult, AppState};

/// Entries read per page of a walk.
const PAGE: u32 = 10_000;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(entries)))
        .routes(named(routes!(verify)))
}

/// `?after=SEQ&limit=N` of the trail.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EntriesQuery {
    /// Entries numbered after this one: the `next` of the page before (default 0, from the
    /// first).
    after: Option<i64>,
    /// Entries on the page: 1 to 1,000 (100 by default).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

/// `GET /v1/audit`.
#[derive(Debug, Serialize, ToSchema)]
struct AuditEntries {
    /// Oldest first.
    entries: Vec<AuditRecord>,
    /// The `seq` of the page's last entry when the page is full, for `?after=`; `null` when
    /// the page is the last.
    next: Option<i64>,
}

/// Entries oldest first, each as stored (its detail the exact text that was hashed).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(EntriesQuery),
    responses((status = 200, body = AuditEntries)))]
async fn entries(
    State(state): State<AppState>,
    query: Result<Query<EntriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<AuditEntries>> {
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
    Ok(Json(AuditEntries {
        entries: found,
        next,
    }))
}

/// The whole trail walked: whether it holds, its length and head, and every problem found.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = Verification)))]
async fn verify(State(state): State<AppState>) -> ApiResult<Json<Verification>> {
    let store = &state.kernel.store;
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &AuditRecord| e.seq);
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
    Ok(Json(audit::verify(&all)))
}
