//! The prompt registry, its A/B experiments, and the architect's specs of new agents.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use overseer_meta::prompts::{
    ExperimentSpec, Findings, NewVersion, PromptDetail, PromptError, PromptSummary,
};
use overseer_selfedit::architect::{AgentSpec, Workflow};
use overseer_store::{ExperimentRecord, PromptLabelRecord, PromptVersionRecord, SpecRecord};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::openapi::{IdPath, PageQuery};
use crate::overseer::{Verdict, verdict};
use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(list)))
        .routes(named(routes!(show)))
        .routes(named(routes!(write)))
        .routes(named(routes!(diff)))
        .routes(named(routes!(label)))
        .routes(named(routes!(rollback)))
        .routes(named(routes!(experiments, start)))
        .routes(named(routes!(experiment)))
        .routes(named(routes!(stop)))
        .routes(named(routes!(architect)))
        .routes(named(routes!(submit_spec)))
        .routes(named(routes!(spec)))
        .routes(named(routes!(approve_spec)))
        .routes(named(routes!(reject_spec)))
}

impl From<PromptError> for ApiError {
    fn from(e: PromptError) -> Self {
        let status = match &e {
            PromptError::NotFound(_)
            | PromptError::NoVersion { .. }
            | PromptError::NoExperiment(_) => StatusCode::NOT_FOUND,
            PromptError::Invalid(_) | PromptError::Template(_) => StatusCode::BAD_REQUEST,
            PromptError::Conflict(_) => StatusCode::CONFLICT,
            PromptError::Denied(_) => StatusCode::FORBIDDEN,
            PromptError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::body(e.status(), e.body_text()))
}

/// `{name}`: a prompt.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct PromptPath {
    /// The prompt's name, `OWNER.KEY`.
    #[param(example = "echo.greeting")]
    name: String,
}

/// `GET /v1/prompts`.
#[derive(Debug, Serialize, ToSchema)]
struct PromptList {
    /// By name, as the registry lists them.
    prompts: Vec<PromptSummary>,
    /// The cursor of the next page (a prompt's name), `null` on the last.
    next: Option<String>,
}

/// Every prompt: its owner, variables, number of versions and labels; the cursor is a
/// prompt's name.
#[utoipa::path(get, path = "/v1/prompts", tag = "prompts", params(PageQuery),
    responses((status = 200, body = PromptList)))]
async fn list(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<PromptList>> {
    let paging = crate::paging(query, 100)?;
    let (prompts, next) = paging.slice(state.prompts.list().await?, |p| p.name.clone())?;
    Ok(Json(PromptList { prompts, next }))
}

/// A prompt's versions and the history of its labels.
#[utoipa::path(get, path = "/v1/prompts/{name}", tag = "prompts", params(PromptPath),
    responses((status = 200, body = PromptDetail)))]
async fn show(
    State(state): State<AppState>,
    Path(PromptPath { name }): Path<PromptPath>,
) -> ApiResult<Json<PromptDetail>> {
    Ok(Json(state.prompts.show(&name).await?))
}

/// A new version (the first makes the prompt).
#[utoipa::path(post, path = "/v1/prompts/{name}/versions", tag = "prompts", params(PromptPath),
    request_body = NewVersion,
    responses((status = 201, description = "the version as kept", body = PromptVersionRecord)))]
async fn write(
    State(state): State<AppState>,
    Path(PromptPath { name }): Path<PromptPath>,
    new: Result<Json<NewVersion>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<PromptVersionRecord>)> {
    let record = state.prompts.write(&name, body(new)?, "person").await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// `{name}/diff/{a}/{b}`: a prompt and two of its versions.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct DiffPath {
    /// The prompt's name, `OWNER.KEY`.
    #[param(example = "echo.greeting")]
    name: String,
    /// The version diffed from.
    #[param(example = 1)]
    a: u32,
    /// The version diffed to.
    #[param(example = 2)]
    b: u32,
}

/// `GET /v1/prompts/{name}/diff/{a}/{b}`.
#[derive(Debug, Serialize, ToSchema)]
struct PromptDiff {
    /// The unified diff of the two versions' system messages and templates.
    diff: String,
}

/// The unified diff of two versions.
#[utoipa::path(get, path = "/v1/prompts/{name}/diff/{a}/{b}", tag = "prompts", params(DiffPath),
    responses((status = 200, body = PromptDiff)))]
async fn diff(
    State(state): State<AppState>,
    Path(DiffPath { name, a, b }): Path<DiffPath>,
) -> ApiResult<Json<PromptDiff>> {
    Ok(Json(PromptDiff {
        diff: state.prompts.diff(&name, a, b).await?,
    }))
}

/// A label moved to a version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewLabel)]
pub(crate) struct Label {
    /// `production` or `candidate`.
    label: String,
    /// The version it points at from now on.
    version: u32,
    /// Why, for the record.
    #[serde(default)]
    reason: String,
}

/// Point a label at a version.
#[utoipa::path(post, path = "/v1/prompts/{name}/labels", tag = "prompts", params(PromptPath),
    request_body = Label,
    responses((status = 200, body = PromptLabelRecord)))]
async fn label(
    State(state): State<AppState>,
    Path(PromptPath { name }): Path<PromptPath>,
    request: Result<Json<Label>, JsonRejection>,
) -> ApiResult<Json<PromptLabelRecord>> {
    let request = body(request)?;
    let record = state
        .prompts
        .label(
            &name,
            &request.label,
            request.version,
            "person",
            &request.reason,
        )
        .await?;
    Ok(Json(record))
}

/// `production` back on the version it labelled before.
#[utoipa::path(post, path = "/v1/prompts/{name}/rollback", tag = "prompts", params(PromptPath),
    responses((status = 200, body = PromptLabelRecord)))]
async fn rollback(
    State(state): State<AppState>,
    Path(PromptPath { name }): Path<PromptPath>,
) -> ApiResult<Json<PromptLabelRecord>> {
    Ok(Json(state.prompts.rollback(&name, "person").await?))
}

/// `?prompt=…&state=…&limit=N&after=CURSOR` of `GET /v1/experiments`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ExperimentsQuery {
    /// Only the experiments on this prompt.
    prompt: Option<String>,
    /// Only those in this state.
    #[param(inline)]
    state: Option<ExperimentState>,
    /// Experiments on the page: 1 to 1,000 (50).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// The cursor of the page before (an experiment's id): the `next` of its answer.
    after: Option<String>,
}

/// Where an experiment stands.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum ExperimentState {
    Running,
    /// Ended with a winner, now `production`.
    Promoted,
    /// Ended with the first variant (the control) the winner: production kept.
    Kept,
    /// Ended without a difference.
    NoDifference,
    /// Stopped by a person; nothing promoted.
    Stopped,
}

impl ExperimentState {
    fn as_str(self) -> &'static str {
        match self {
            ExperimentState::Running => "running",
            ExperimentState::Promoted => "promoted",
            ExperimentState::Kept => "kept",
            ExperimentState::NoDifference => "no_difference",
            ExperimentState::Stopped => "stopped",
        }
    }
}

/// Experiments read at most for one page: more than any host runs.
const EXPERIMENTS_SCAN: u32 = 10_000;

/// `GET /v1/experiments`.
#[derive(Debug, Serialize, ToSchema)]
struct Experiments {
    /// Newest first.
    experiments: Vec<ExperimentRecord>,
    /// The cursor of the next page (an experiment's id), `null` on the last.
    next: Option<String>,
}

/// Experiments newest first; the cursor is an experiment's id.
#[utoipa::path(get, path = "/v1/experiments", tag = "prompts", params(ExperimentsQuery),
    responses((status = 200, body = Experiments)))]
async fn experiments(
    State(state): State<AppState>,
    query: Result<Query<ExperimentsQuery>, QueryRejection>,
) -> ApiResult<Json<Experiments>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after, 50)?;
    let before = paging.store_page()?.before.unwrap_or(i64::MAX);
    let mut found = state
        .kernel
        .store
        .experiments(
            query.prompt.as_deref(),
            query.state.map(ExperimentState::as_str),
            EXPERIMENTS_SCAN,
        )
        .await
        .map_err(overseer_kernel::Error::from)?;
    found.retain(|e| e.id < before);
    let (experiments, next) = paging.newest_first(found, |e| e.id);
    Ok(Json(Experiments { experiments, next }))
}

/// Start an A/B experiment between versions of a prompt; one runs on a prompt at a time.
#[utoipa::path(post, path = "/v1/experiments", tag = "prompts", request_body = ExperimentSpec,
    responses((status = 201, description = "the experiment, running", body = ExperimentRecord)))]
async fn start(
    State(state): State<AppState>,
    spec: Result<Json<ExperimentSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ExperimentRecord>)> {
    let record = state.prompts.start(body(spec)?, "person").await?;
    Ok((StatusCode::CREATED, Json(record)))
}

/// `GET /v1/experiments/{id}`.
#[derive(Debug, Serialize, ToSchema)]
struct ExperimentView {
    experiment: ExperimentRecord,
    /// What its outcomes show now.
    findings: Findings,
}

/// An experiment and what its outcomes show now: each arm's count, rate with its Wilson
/// interval, mean score and p-value against the control.
#[utoipa::path(get, path = "/v1/experiments/{id}", tag = "prompts", params(IdPath),
    responses((status = 200, body = ExperimentView)))]
async fn experiment(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult<Json<ExperimentView>> {
    let experiment = state.prompts.experiment(id).await?;
    let findings = state.prompts.findings(&experiment).await?;
    Ok(Json(ExperimentView {
        experiment,
        findings,
    }))
}

/// Stop a running experiment by hand: nothing is promoted.
#[utoipa::path(post, path = "/v1/experiments/{id}/stop", tag = "prompts", params(IdPath),
    responses((status = 200, body = ExperimentRecord)))]
async fn stop(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult<Json<ExperimentRecord>> {
    Ok(Json(state.prompts.stop(id, "person").await?))
}

/// `GET /v1/architect`.
#[derive(Debug, Serialize, ToSchema)]
struct Architect {
    /// Newest first.
    specs: Vec<SpecRecord>,
    /// The cursor of the next page (a spec's id), `null` on the last.
    next: Option<String>,
    /// How the serving agents' topics connect.
    workflow: Workflow,
}

/// The specs, newest first, and the workflow of the agents serving now; the cursor is a
/// spec's id.
#[utoipa::path(get, path = "/v1/architect", tag = "prompts", params(PageQuery),
    responses((status = 200, body = Architect)))]
async fn architect(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Architect>> {
    let paging = crate::paging(query, 100)?;
    let specs = state
        .kernel
        .store
        .specs(paging.store_page()?)
        .await
        .map_err(overseer_kernel::Error::from)?;
    let (specs, next) = paging.newest_first(specs, |s| s.id);
    Ok(Json(Architect {
        specs,
        next,
        workflow: state.selfedit.workflow().await,
    }))
}

/// A person's spec: built at once (a person asking for a privileged grant still approves it
/// on its own, after reading it back).
#[utoipa::path(post, path = "/v1/architect/specs", tag = "prompts", request_body = AgentSpec,
    responses((status = 202, description = "the spec as kept; the architect builds it", body = SpecRecord)))]
async fn submit_spec(
    State(state): State<AppState>,
    spec: Result<Json<AgentSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<SpecRecord>)> {
    let record = state
        .selfedit
        .submit_spec(body(spec)?, "person", false)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// A spec and how far the architect has taken it.
#[utoipa::path(get, path = "/v1/architect/specs/{id}", tag = "prompts", params(IdPath),
    responses((status = 200, body = SpecRecord)))]
async fn spec(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult<Json<SpecRecord>> {
    let record = state
        .kernel
        .store
        .spec(id)
        .await
        .map_err(overseer_kernel::Error::from)?
        .ok_or(overseer_selfedit::Error::SpecNotFound(id))?;
    Ok(Json(record))
}

/// Approve a spec awaiting a person: the architect designs and builds it.
#[utoipa::path(post, path = "/v1/architect/specs/{id}/approve", tag = "prompts", params(IdPath),
    responses((status = 200, body = SpecRecord)))]
async fn approve_spec(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult<Json<SpecRecord>> {
    Ok(Json(state.selfedit.approve_spec(id, "person").await?))
}

/// Reject a spec awaiting a person: it is never built.
#[utoipa::path(post, path = "/v1/architect/specs/{id}/reject", tag = "prompts", params(IdPath),
    request_body(content = Option<Verdict>, content_type = "application/json"),
    responses((status = 200, body = SpecRecord)))]
async fn reject_spec(
    State(state): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
    request: axum::body::Bytes,
) -> ApiResult<Json<SpecRecord>> {
    let reason = verdict(&request)?;
    Ok(Json(
        state.selfedit.reject_spec(id, "person", &reason).await?,
    ))
}
