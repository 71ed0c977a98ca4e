//! Edits, diffs, source and its analysis: `/v1/agents/{name}/edits`, `/versions/{a}/diff/{b}`,
//! `/source` and `/analysis`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use overseer_kernel::Error;
use overseer_selfedit::{EditRequest, Snapshot, patch, snapshot};

use crate::{ApiError, ApiResult, AppState, agent_name, known_agent};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/agents/{name}/edits",
            get(list_edits).post(propose_edit),
        )
        .route("/v1/agents/{name}/edits/{id}", get(show_edit))
        .route("/v1/agents/{name}/versions/{a}/diff/{b}", get(version_diff))
        .route("/v1/agents/{name}/source", get(show_source))
        .route("/v1/agents/{name}/analysis", get(analyze_source))
}

async fn propose_edit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    agent_name(&name)?;
    let request: EditRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "expected {{\"base_version\": N, \"diff\": \"...\" or \"files\": {{...}}, \"reason\": \"...\"}}: {e}"
        ))
    })?;
    let record = state.selfedit.submit(&name, request).await?;
    Ok((StatusCode::ACCEPTED, Json(record)).into_response())
}

/// Edits newest first; `next` pages to older ones.
async fn list_edits(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 100)?;
    known_agent(&state, &name).await?;
    let edits = state
        .kernel
        .store
        .edits(&name, paging.store_page()?)
        .await?;
    let (edits, next) = paging.newest_first(edits, |e| e.id);
    Ok(Json(json!({ "agent": name, "edits": edits, "next": next })))
}

async fn show_edit(
    State(state): State<AppState>,
    Path((name, id)): Path<(String, i64)>,
) -> ApiResult<Json<Value>> {
    agent_name(&name)?;
    let edit = state.selfedit.edit(&name, id).await?;
    Ok(Json(json!(edit)))
}

async fn version_diff(
    State(state): State<AppState>,
    Path((name, a, b)): Path<(String, u32, u32)>,
) -> ApiResult<Json<Value>> {
    known_agent(&state, &name).await?;
    let from = source_of(&state, &name, a).await?;
    let to = source_of(&state, &name, b).await?;
    Ok(Json(json!({
        "agent": name,
        "from": a,
        "to": b,
        "diff": patch::diff(&from, &to),
    })))
}

/// A version's source as it may be shown: its secrets redacted.
async fn source_of(state: &AppState, agent: &str, version: u32) -> ApiResult<Snapshot> {
    Ok(state
        .selfedit
        .version_source(agent, version)
        .await?
        .ok_or_else(|| overseer_selfedit::Error::NoSource(agent.to_string()))?
        .redacted())
}

/// The source of the version asked for, or of the active one.
async fn asked_source(
    state: &AppState,
    agent: &str,
    version: Option<u32>,
) -> ApiResult<(u32, Snapshot)> {
    let record = known_agent(state, agent).await?;
    let version = version
        .or(record.active_version)
        .ok_or_else(|| Error::NoActiveVersion(agent.to_string()))?;
    Ok((version, source_of(state, agent, version).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VersionQuery {
    /// A version other than the active one.
    version: Option<u32>,
}

/// Findings of the analysis of a version's source (the active one by default).
async fn analyze_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<Value>> {
    let (version, snapshot) = asked_source(&state, &name, query.version).await?;
    let analysis =
        tokio::task::spawn_blocking(move || overseer_selfedit::analysis::analyze(&snapshot))
            .await
            .map_err(|e| Error::Internal(format!("analysis task: {e}")))?;
    Ok(Json(json!({
        "agent": name,
        "version": version,
        "files": analysis.files,
        "findings": analysis.findings,
        "unparsed": analysis.unparsed,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceQuery {
    /// One file to return whole; without it, the list of files.
    path: Option<String>,
    /// A version other than the active one.
    version: Option<u32>,
}

async fn show_source(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<SourceQuery>,
) -> ApiResult<Response> {
    let (version, snapshot) = asked_source(&state, &name, query.version).await?;
    let body = match query.path {
        Some(path) => {
            snapshot::check_path(&path)?;
            let text = snapshot.files.get(&path).ok_or_else(|| {
                ApiError::invalid(format!("version {version} has no file {path:?}"))
            })?;
            json!({ "agent": name, "version": version, "path": path, "content": text })
        }
        None => {
            let files: Vec<Value> = snapshot
                .files
                .iter()
                .map(|(path, text)| json!({ "path": path, "bytes": text.len() }))
                .collect();
            json!({ "agent": name, "version": version, "files": files })
        }
    };
    Ok(Json(body).into_response())
}
