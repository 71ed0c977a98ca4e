//! The Overseer: its loops (interval, next run, last run), their kept runs, a run on demand,
//! and the daily reports as JSON, Markdown and HTML.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use overseer_meta::governance::{self, Decision, GovernanceError};
use overseer_meta::{LOOPS, Overseer, RunError, report};
use overseer_store::{DecisionRecord, LoopRunRecord, ReportSummary};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::openapi::{IdPath, PageQuery};
use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(loops)))
        .routes(named(routes!(runs)))
        .routes(named(routes!(run_now)))
        .routes(named(routes!(reports)))
        .routes(named(routes!(report_file)))
        .routes(named(routes!(decisions, propose)))
        .routes(named(routes!(decision)))
        .routes(named(routes!(approve)))
        .routes(named(routes!(reject)))
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

/// `?state=…&limit=N&after=CURSOR` of `GET /v1/decisions`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DecisionsQuery {
    /// Only decisions in this state.
    #[param(inline)]
    state: Option<DecisionState>,
    /// Decisions on the page: 1 to 1,000 (50).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// The cursor of the page before (a decision's id): the `next` of its answer.
    after: Option<String>,
}

/// Where a decision stands.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum DecisionState {
    /// Waits for a person's verdict.
    AwaitingApproval,
    Approved,
    Applied,
    /// Its actions could not be applied.
    Failed,
    Rejected,
    /// Nobody approved it in time.
    Expired,
}

impl DecisionState {
    fn as_str(self) -> &'static str {
        match self {
            DecisionState::AwaitingApproval => "awaiting_approval",
            DecisionState::Approved => "approved",
            DecisionState::Applied => "applied",
            DecisionState::Failed => "failed",
            DecisionState::Rejected => "rejected",
            DecisionState::Expired => "expired",
        }
    }
}

/// `GET /v1/decisions`.
#[derive(Debug, Serialize, ToSchema)]
struct Decisions {
    /// Newest first.
    decisions: Vec<DecisionRecord>,
    /// The cursor of the next page (a decision's id), `null` on the last.
    next: Option<String>,
}

/// Decisions newest first, in one state when asked.
#[utoipa::path(get, path = "/v1/decisions", tag = "overseer", params(DecisionsQuery),
    responses((status = 200, body = Decisions)))]
async fn decisions(
    State(state): State<AppState>,
    query: Result<Query<DecisionsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Decisions>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after, 50)?;
    let found = state
        .kernel
        .store
        .decisions(query.state.map(DecisionState::as_str), paging.store_page()?)
        .await
        .map_err(overseer_kernel::Error::from)?;
    let (decisions, next) = paging.newest_first(found, |d| d.id);
    Ok(Json(Decisions { decisions, next }))
}

/// One decision and what became of it.
#[utoipa::path(get, path = "/v1/decisions/{id}", tag = "overseer", params(IdPath),
    responses((status = 200, body = DecisionRecord)))]
async fn decision(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult<Json<DecisionRecord>> {
    let found = state
        .kernel
        .store
        .decision(id)
        .await
        .map_err(overseer_kernel::Error::from)?
        .ok_or(GovernanceError::NotFound(id))?;
    Ok(Json(found))
}

/// A person's decision, taken through the same policy as the meeting's: applied at once, or
/// left awaiting approval when it touches capital, asks for an agent or a privileged one.
#[utoipa::path(post, path = "/v1/decisions", tag = "overseer", request_body = Decision,
    responses((status = 201, description = "the decision as kept", body = DecisionRecord)))]
async fn propose(
    State(state): State<AppState>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<DecisionRecord>)> {
    let overseer = overseer(&state)?;
    let Json(body) = body?;
    let decision = governance::parse(&body)?;
    let record = overseer.propose("request", "person", &decision).await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// The reason a person gives for an approval or a rejection.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Reason)]
pub(crate) struct Verdict {
    /// Why; empty when left out.
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
#[utoipa::path(post, path = "/v1/decisions/{id}/approve", tag = "overseer", params(IdPath),
    request_body(content = Option<Verdict>, content_type = "application/json"),
    responses((status = 200, body = DecisionRecord)))]
async fn approve(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
    body: axum::body::Bytes,
) -> ApiResult<Json<DecisionRecord>> {
    let reason = verdict(&body)?;
    let record = overseer(&state)?.approve(id, "person", &reason).await?;
    Ok(Json(record))
}

/// Reject a decision waiting for a person: it is never applied.
#[utoipa::path(post, path = "/v1/decisions/{id}/reject", tag = "overseer", params(IdPath),
    request_body(content = Option<Verdict>, content_type = "application/json"),
    responses((status = 200, body = DecisionRecord)))]
async fn reject(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
    body: axum::body::Bytes,
) -> ApiResult<Json<DecisionRecord>> {
    let reason = verdict(&body)?;
    let record = overseer(&state)?.reject(id, "person", &reason).await?;
    Ok(Json(record))
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

/// `GET /v1/overseer`.
#[derive(Debug, Serialize, ToSchema)]
struct Loops {
    /// How much faster than the wall clock the loops' intervals run (`[overseer]
    /// clock_factor`; 1 is real time).
    clock_factor: f64,
    /// Every loop, in the order they are known.
    loops: Vec<LoopView>,
}

/// One of the Overseer's loops.
#[derive(Debug, Serialize, ToSchema)]
struct LoopView {
    /// `health`, `healing`, `performance`, `optimisation` or `governance`.
    name: &'static str,
    /// Its interval after the clock factor, in milliseconds.
    every_ms: Option<u64>,
    /// When it runs next, in ms since the epoch; `null` while its loop is not running.
    next_run_ms: Option<u64>,
    /// Its last kept run, `null` before the first.
    last_run: Option<LoopRunRecord>,
}

/// Each loop: its interval, when it runs next, and its last run.
#[utoipa::path(get, path = "/v1/overseer", tag = "overseer",
    responses((status = 200, body = Loops)))]
async fn loops(State(state): State<AppState>) -> ApiResult<Json<Loops>> {
    let overseer = overseer(&state)?;
    let mut loops = Vec::new();
    for name in LOOPS {
        let last = state
            .kernel
            .store
            .loop_runs(Some(name), overseer_store::Page::latest(1))
            .await
            .map_err(overseer_kernel::Error::from)?;
        loops.push(LoopView {
            name,
            every_ms: overseer.interval(name).map(|d| d.as_millis() as u64),
            next_run_ms: overseer.next_run_ms(name),
            last_run: last.into_iter().next(),
        });
    }
    Ok(Json(Loops {
        clock_factor: overseer.config().clock_factor,
        loops,
    }))
}

/// `?loop=…&limit=N&after=CURSOR` of `GET /v1/overseer/runs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct RunsQuery {
    /// Only this loop's runs: `health`, `healing`, `performance`, `optimisation` or
    /// `governance`.
    #[serde(rename = "loop")]
    name: Option<String>,
    /// Runs on the page: 1 to 1,000 (50).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// The cursor of the page before (a run's id): the `next` of its answer.
    after: Option<String>,
}

/// `GET /v1/overseer/runs`.
#[derive(Debug, Serialize, ToSchema)]
struct Runs {
    /// Newest first.
    runs: Vec<LoopRunRecord>,
    /// The cursor of the next page (a run's id), `null` on the last.
    next: Option<String>,
}

/// Kept runs, newest first.
#[utoipa::path(get, path = "/v1/overseer/runs", tag = "overseer", params(RunsQuery),
    responses((status = 200, body = Runs)))]
async fn runs(
    State(state): State<AppState>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Runs>> {
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
    Ok(Json(Runs { runs, next }))
}

/// `{name}`: one of the Overseer's loops.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct LoopPath {
    /// `health`, `healing`, `performance`, `optimisation` or `governance`.
    #[param(example = "health")]
    name: String,
}

/// Run a loop now, as its interval would, and answer the run.
#[utoipa::path(post, path = "/v1/overseer/loops/{name}/run", tag = "overseer", params(LoopPath),
    responses((status = 200, body = LoopRunRecord)))]
async fn run_now(
    State(state): State<AppState>,
    Path(LoopPath { name }): Path<LoopPath>,
) -> ApiResult<Json<LoopRunRecord>> {
    let overseer = overseer(&state)?;
    match overseer.run(&name).await {
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_loop",
            format!("no loop {name:?}: one of {}", LOOPS.join(", ")),
        )),
        Some(Ok(run)) => Ok(Json(run)),
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

/// `GET /v1/reports`.
#[derive(Debug, Serialize, ToSchema)]
struct Reports {
    /// Newest first.
    reports: Vec<ReportSummary>,
    /// The cursor of the next page (a report's date), `null` on the last.
    next: Option<String>,
}

/// The reports kept, newest first; the cursor is a report's date.
#[utoipa::path(get, path = "/v1/reports", tag = "overseer", params(PageQuery),
    responses((status = 200, body = Reports)))]
async fn reports(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Reports>> {
    let paging = crate::paging(query, 100)?;
    let reports = state
        .kernel
        .store
        .reports(REPORTS_KEPT)
        .await
        .map_err(overseer_kernel::Error::from)?;
    let (reports, next) = paging.slice(reports, |r| r.date.clone())?;
    Ok(Json(Reports { reports, next }))
}

/// `{file}`: a report and its format.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ReportPath {
    /// `DATE.json`, `DATE.md` or `DATE.html`, `DATE` a report's date (`YYYY-MM-DD`) or
    /// `latest` for the newest.
    #[param(example = "latest.json")]
    file: String,
}

/// A daily report: `DATE.json`, `DATE.md` or `DATE.html` (`latest` for the newest date).
#[utoipa::path(get, path = "/v1/reports/{file}", tag = "overseer", params(ReportPath),
    responses((status = 200,
        description = "the report: its JSON document as the governance meeting made it \
            (`.json`), or that rendered as Markdown (`.md`) or as an HTML page (`.html`)",
        content(
            (serde_json::Value = "application/json"),
            (String = "text/markdown; charset=utf-8"),
            (String = "text/html; charset=utf-8"),
        ))))]
async fn report_file(
    State(state): State<AppState>,
    Path(ReportPath { file }): Path<ReportPath>,
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
