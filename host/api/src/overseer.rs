//! The Overseer: its loops (interval, next run, last run), their kept runs, a run on demand,
//! and the daily reports as JSON, Markdown and HTML.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use overseer_meta::governance::{self, GovernanceError};
use overseer_meta::{LOOPS, Overseer, RunError, report};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/overseer", get(loops))
        .route("/v1/overseer/runs", get(runs))
        .route("/v1/overseer/loops/{name}/run", post(run_now))
        .route("/v1/reports", get(reports))
        .route("/v1/reports/{file}", get(report_file))
        .route("/v1/decisions", get(decisions).post(propose))
        .route("/v1/decisions/{id}", get(decision))
        .route("/v1/decisions/{id}/approve", post(approve))
        .route("/v1/decisions/{id}/reject", post(reject))
}

impl From<GovernanceError> for ApiError {
    fn from(e: GovernanceError) -> Self {
        let status = match &e {
            GovernanceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            GovernanceError::NotFound(_) => StatusCode::NOT_FOUND,
            GovernanceError::NotAwaiting { .. } => StatusCode::CONFLICT,
            GovernanceError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionsQuery {
    state: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// Decisions newest first, in one state when asked.
async fn decisions(
    State(state): State<AppState>,
    query: Result<Query<DecisionsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after, 50)?;
    let found = state
        .kernel
        .store
        .decisions(query.state.as_deref(), paging.store_page()?)
        .await
        .map_err(overseer_kernel::Error::from)?;
    let (found, next) = paging.newest_first(found, |d| d.id);
    Ok(Json(json!({ "decisions": found, "next": next })))
}

async fn decision(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let found = state
        .kernel
        .store
        .decision(id)
        .await
        .map_err(overseer_kernel::Error::from)?
        .ok_or(GovernanceError::NotFound(id))?;
    Ok(Json(json!(found)))
}

/// A person's decision, taken through the same policy as the meeting's.
async fn propose(
    State(state): State<AppState>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let overseer = overseer(&state)?;
    let Json(body) = body.map_err(|e| ApiError::invalid(e.body_text()))?;
    let decision = governance::parse(&body)?;
    let record = overseer.propose("request", "person", &decision).await?;
    Ok((StatusCode::CREATED, Json(json!(record))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Verdict {
    #[serde(default)]
    reason: String,
}

/// The reason an approval or rejection gives: `{"reason": "…"}`, or no body.
pub(crate) fn verdict(body: &[u8]) -> ApiResult<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let verdict: Verdict = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("{{\"reason\": …}} expected: {e}")))?;
    Ok(verdict.reason)
}

/// Approve a decision waiting for a person: it is applied at once.
async fn approve(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let reason = verdict(&body)?;
    let record = overseer(&state)?.approve(id, "person", &reason).await?;
    Ok(Json(json!(record)))
}

/// Reject a decision waiting for a person: it is never applied.
async fn reject(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let reason = verdict(&body)?;
    let record = overseer(&state)?.reject(id, "person", &reason).await?;
    Ok(Json(json!(record)))
}

pub(crate) fn overseer(state: &AppState) -> ApiResult<&Arc<Overseer>> {
    state.overseer.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overseer_disabled",
            "the Overseer's loops are off ([overseer] enabled = false)",
        )
    })
}

/// Each loop: its interval, when it runs next, and its last run.
async fn loops(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let overseer = overseer(&state)?;
    let mut loops = Vec::new();
    for name in LOOPS {
        let last = state
            .kernel
            .store
            .loop_runs(Some(name), overseer_store::Page::latest(1))
            .await
            .map_err(overseer_kernel::Error::from)?;
        loops.push(json!({
            "name": name,
            "every_ms": overseer.interval(name).map(|d| d.as_millis() as u64),
            "next_run_ms": overseer.next_run_ms(name),
            "last_run": last.first(),
        }));
    }
    Ok(Json(json!({
        "clock_factor": overseer.config().clock_factor,
        "loops": loops,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    #[serde(rename = "loop")]
    name: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// Kept runs, newest first.
async fn runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    if let Some(name) = &query.name
        && !LOOPS.contains(&name.as_str())
    {
        return Err(ApiError::invalid(format!(
            "loop {name:?}: one of {}",
            LOOPS.join(", ")
        )));
    }
    let paging = Paging::new(query.limit, query.after.clone(), 50)?;
    let runs = state
        .kernel
        .store
        .loop_runs(query.name.as_deref(), paging.store_page()?)
        .await
        .map_err(overseer_kernel::Error::from)?;
    let (runs, next) = paging.newest_first(runs, |r| r.id);
    Ok(Json(json!({ "runs": runs, "next": next })))
}

/// Run a loop now, as its interval would, and answer the run.
async fn run_now(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let overseer = overseer(&state)?;
    match overseer.run(&name).await {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_loop",
            format!("no loop {name:?}: one of {}", LOOPS.join(", ")),
        )),
        Some(Ok(run)) => Ok(Json(json!(run))),
        Some(Err(e @ RunError::Running(_))) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "loop_running",
            e.to_string(),
        )),
        Some(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            e.to_string(),
        )),
    }
}

/// Days of reports read at most: the retention keeps a year.
const REPORTS_KEPT: u32 = 366;

/// The reports kept, newest first; the cursor is a report's date.
async fn reports(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 100)?;
    let reports = state
        .kernel
        .store
        .reports(REPORTS_KEPT)
        .await
        .map_err(overseer_kernel::Error::from)?;
    let (reports, next) = paging.slice(reports, |r| r.date.clone())?;
    Ok(Json(json!({ "reports": reports, "next": next })))
}

/// `DATE.json`, `DATE.md` or `DATE.html` (`latest` for the newest date).
async fn report_file(
    State(state): State<AppState>,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    let Some((date, format)) = file.rsplit_once('.') else {
        return Err(ApiError::invalid(format!(
            "{file:?}: DATE.json, DATE.md or DATE.html"
        )));
    };
    if !matches!(format, "json" | "md" | "html") {
        return Err(ApiError::invalid(format!(
            "{file:?}: the formats are json, md and html"
        )));
    }
    let store = &state.kernel.store;
    let date = if date == "latest" {
        let newest = store
            .reports(1)
            .await
            .map_err(overseer_kernel::Error::from)?;
        newest.first().map(|r| r.date.clone()).unwrap_or_default()
    } else {
        date.to_string()
    };
    let Some(body) = store
        .report(&date)
        .await
        .map_err(overseer_kernel::Error::from)?
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_report",
            format!("no report of {date:?}"),
        ));
    };
    Ok(match format {
        "json" => Json(body).into_response(),
        "md" => (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            report::markdown(&body),
        )
            .into_response(),
        _ => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            report::html(&body),
        )
            .into_response(),
    })
}
