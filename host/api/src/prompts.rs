//! The prompt registry, its A/B experiments, and the architect's specs of new agents.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use overseer_meta::prompts::{ExperimentSpec, NewVersion, PromptError};
use overseer_selfedit::architect::AgentSpec;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::overseer::verdict;
use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/prompts", get(list))
        .route("/v1/prompts/{name}", get(show))
        .route("/v1/prompts/{name}/versions", post(write))
        .route("/v1/prompts/{name}/diff/{a}/{b}", get(diff))
        .route("/v1/prompts/{name}/labels", post(label))
        .route("/v1/prompts/{name}/rollback", post(rollback))
        .route("/v1/experiments", get(experiments).post(start))
        .route("/v1/experiments/{id}", get(experiment))
        .route("/v1/experiments/{id}/stop", post(stop))
        .route("/v1/architect", get(architect))
        .route("/v1/architect/specs", post(submit_spec))
        .route("/v1/architect/specs/{id}", get(spec))
        .route("/v1/architect/specs/{id}/approve", post(approve_spec))
        .route("/v1/architect/specs/{id}/reject", post(reject_spec))
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

/// Every prompt, its owner, variables and labels.
/// Prompts by name; the cursor is a prompt's name.
async fn list(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 100)?;
    let (prompts, next) = paging.slice(state.prompts.list().await?, |p| {
        p["name"].as_str().unwrap_or_default().to_string()
    })?;
    Ok(Json(json!({ "prompts": prompts, "next": next })))
}

/// A prompt's versions and the history of its labels.
async fn show(State(state): State<AppState>, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(state.prompts.show(&name).await?))
}

/// A new version (the first makes the prompt).
async fn write(
    State(state): State<AppState>,
    Path(name): Path<String>,
    new: Result<Json<NewVersion>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let record = state.prompts.write(&name, body(new)?, "person").await?;
    Ok((StatusCode::CREATED, Json(json!(record))))
}

async fn diff(
    State(state): State<AppState>,
    Path((name, a, b)): Path<(String, u32, u32)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(
        json!({ "diff": state.prompts.diff(&name, a, b).await? }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Label {
    label: String,
    version: u32,
    #[serde(default)]
    reason: String,
}

async fn label(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Result<Json<Label>, JsonRejection>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!(record)))
}

/// `production` back on the version it labelled before.
async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.prompts.rollback(&name, "person").await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentsQuery {
    prompt: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// Experiments read at most for one page: more than any host runs.
const EXPERIMENTS_SCAN: u32 = 10_000;

/// Experiments newest first; the cursor is an experiment's id.
async fn experiments(
    State(state): State<AppState>,
    query: Result<Query<ExperimentsQuery>, QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after, 50)?;
    let before = paging.store_page()?.before.unwrap_or(i64::MAX);
    let mut found = state
        .kernel
        .store
        .experiments(
            query.prompt.as_deref(),
            query.state.as_deref(),
            EXPERIMENTS_SCAN,
        )
        .await
        .map_err(overseer_kernel::Error::from)?;
    found.retain(|e| e.id < before);
    let (found, next) = paging.newest_first(found, |e| e.id);
    Ok(Json(json!({ "experiments": found, "next": next })))
}

async fn start(
    State(state): State<AppState>,
    spec: Result<Json<ExperimentSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let record = state.prompts.start(body(spec)?, "person").await?;
    Ok((StatusCode::CREATED, Json(json!(record))))
}

/// An experiment and what its outcomes show now: each arm's count, rate with its Wilson
/// interval, mean score and p-value against the control.
async fn experiment(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let record = state.prompts.experiment(id).await?;
    let findings = state.prompts.findings(&record).await?;
    Ok(Json(json!({ "experiment": record, "findings": findings })))
}

async fn stop(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(state.prompts.stop(id, "person").await?)))
}

/// The specs, newest first, and the workflow of the agents serving now; the cursor is a
/// spec's id.
async fn architect(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 100)?;
    let specs = state
        .kernel
        .store
        .specs(paging.store_page()?)
        .await
        .map_err(overseer_kernel::Error::from)?;
    let (specs, next) = paging.newest_first(specs, |s| s.id);
    Ok(Json(
        json!({ "specs": specs, "next": next, "workflow": state.selfedit.workflow().await }),
    ))
}

/// A person's spec: built at once (a person asking for a privileged grant still approves it
/// on its own, after reading it back).
async fn submit_spec(
    State(state): State<AppState>,
    spec: Result<Json<AgentSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let record = state
        .selfedit
        .submit_spec(body(spec)?, "person", false)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!(record))))
}

async fn spec(State(state): State<AppState>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    let record = state
        .kernel
        .store
        .spec(id)
        .await
        .map_err(overseer_kernel::Error::from)?
        .ok_or(overseer_selfedit::Error::SpecNotFound(id))?;
    Ok(Json(json!(record)))
}

async fn approve_spec(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(
        state.selfedit.approve_spec(id, "person").await?
    )))
}

async fn reject_spec(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    request: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let reason = verdict(&request)?;
    Ok(Json(json!(
        state.selfedit.reject_spec(id, "person", &reason).await?
    )))
}
