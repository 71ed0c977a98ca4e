//! Edits, diffs, source and its analysis: `/v1/agents/{name}/edits`, `/versions/{a}/diff/{b}`,
//! `/source` and `/analysis`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use overseer_kernel::Error;
use overseer_selfedit::analysis::{Finding, Unparsed};
use overseer_selfedit::{EditRequest, Snapshot, patch, snapshot};
use overseer_store::EditRecord;

use crate::openapi::{AgentPath, PageQuery};
use crate::{ApiError, ApiResult, AppState, agent_name, known_agent};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(list_edits, propose_edit)))
        .routes(named(routes!(show_edit)))
        .routes(named(routes!(version_diff)))
        .routes(named(routes!(show_source)))
        .routes(named(routes!(analyze_source)))
}

/// `{name}` and `{id}`: an edit of an agent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct EditPath {
    /// The agent's name, `[a-z0-9][a-z0-9-]{0,62}`.
    #[param(example = "echo", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// The edit's id.
    #[param(example = 1)]
    id: i64,
}

/// `{name}`, `{a}` and `{b}`: two versions of an agent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct DiffPath {
    /// The agent's name, `[a-z0-9][a-z0-9-]{0,62}`.
    #[param(example = "echo", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    name: String,
    /// The version the diff goes from.
    #[param(example = 1)]
    a: u32,
    /// The version the diff goes to.
    #[param(example = 2)]
    b: u32,
}

/// Propose an edit of the agent's source.
///
/// A unified diff or whole files against a base version. Cheap checks run at once; building
/// and checking run in the background, announced on the bus as `edit.<state>` (202).
#[utoipa::path(post, path = "/v1/agents/{name}/edits", tag = "edits", params(AgentPath),
    request_body = EditRequest,
    responses((status = 202, description = "accepted: the edit's record, state `applying`", body = EditRecord)))]
async fn propose_edit(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<EditRecord>)> {
    agent_name(&name)?;
    let request: EditRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(format!(
            "expected {{\"base_version\": N, \"diff\": \"...\" or \"files\": {{...}}, \"reason\": \"...\"}}: {e}"
        ))
    })?;
    let record = state.selfedit.submit(&name, request).await?;
    Ok((StatusCode::ACCEPTED, Json(record)))
}

/// `GET /v1/agents/{name}/edits`.
#[derive(Debug, Serialize, ToSchema)]
struct EditList {
    agent: String,
    /// Newest first.
    edits: Vec<EditRecord>,
    /// The cursor of the page of older edits (an edit's id), `null` on the last.
    next: Option<String>,
}

/// Edits newest first; `next` pages to older ones.
#[utoipa::path(get, path = "/v1/agents/{name}/edits", tag = "edits", params(AgentPath, PageQuery),
    responses((status = 200, body = EditList)))]
async fn list_edits(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<EditList>> {
    let paging = crate::paging(query, 100)?;
    agent_name(&name)?;
    let edits = state
        .kernel
        .store
        .edits(&name, paging.store_page()?)
        .await?;
    // An agent being created from source has edits before it has a record.
    if edits.is_empty() {
        known_agent(&state, &name).await?;
    }
    let (edits, next) = paging.newest_first(edits, |e| e.id);
    Ok(Json(EditList {
        agent: name,
        edits,
        next,
    }))
}

/// One edit and what became of it.
#[utoipa::path(get, path = "/v1/agents/{name}/edits/{id}", tag = "edits", params(EditPath),
    responses((status = 200, body = EditRecord)))]
async fn show_edit(
    State(state): State<AppState>,
    Path(EditPath { name, id }): Path<EditPath>,
) -> ApiResult<Json<EditRecord>> {
    agent_name(&name)?;
    let edit = state.selfedit.edit(&name, id).await?;
    Ok(Json(edit))
}

/// `GET /v1/agents/{name}/versions/{a}/diff/{b}`.
#[derive(Debug, Serialize, ToSchema)]
struct VersionDiff {
    agent: String,
    /// The version the diff goes from (`a`).
    from: u32,
    /// The version the diff goes to (`b`).
    to: u32,
    /// A unified diff of the two versions' source, secrets redacted; empty when they are the
    /// same.
    diff: String,
}

/// The unified diff between two versions' source.
#[utoipa::path(get, path = "/v1/agents/{name}/versions/{a}/diff/{b}", tag = "edits", params(DiffPath),
    responses((status = 200, body = VersionDiff)))]
async fn version_diff(
    State(state): State<AppState>,
    Path(DiffPath { name, a, b }): Path<DiffPath>,
) -> ApiResult<Json<VersionDiff>> {
    known_agent(&state, &name).await?;
    let from = source_of(&state, &name, a).await?;
    let to = source_of(&state, &name, b).await?;
    Ok(Json(VersionDiff {
        diff: patch::diff(&from, &to),
        agent: name,
        from: a,
        to: b,
    }))
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

/// `?version=N` of an analysis.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct VersionQuery {
    /// A version other than the active one.
    version: Option<u32>,
}

/// `GET /v1/agents/{name}/analysis`.
#[derive(Debug, Serialize, ToSchema)]
struct SourceAnalysis {
    agent: String,
    /// The version analysed.
    version: u32,
    /// Rust, Python and JavaScript files analysed.
    files: usize,
    findings: Vec<Finding>,
    /// Files that do not parse, or are too deep or long to walk.
    unparsed: Vec<Unparsed>,
}

/// Findings of the analysis of a version's source (the active one by default).
#[utoipa::path(get, path = "/v1/agents/{name}/analysis", tag = "edits", params(AgentPath, VersionQuery),
    responses((status = 200, body = SourceAnalysis)))]
async fn analyze_source(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<Json<SourceAnalysis>> {
    let (version, snapshot) = asked_source(&state, &name, query.version).await?;
    let analysis =
        tokio::task::spawn_blocking(move || overseer_selfedit::analysis::analyze(&snapshot))
            .await
            .map_err(|e| Error::Internal(format!("analysis task: {e}")))?;
    Ok(Json(SourceAnalysis {
        agent: name,
        version,
        files: analysis.files,
        findings: analysis.findings,
        unparsed: analysis.unparsed,
    }))
}

/// `?path=FILE&version=N` of a source read.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SourceQuery {
    /// One file to return whole (a relative path, as the list shows it); without it, the list
    /// of files.
    path: Option<String>,
    /// A version other than the active one.
    version: Option<u32>,
}

/// `GET /v1/agents/{name}/source`: one file with `?path`, the list of files without.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
enum SourceAnswer {
    File(SourceFile),
    Files(SourceFiles),
}

/// One file of a version's source, whole.
#[derive(Debug, Serialize, ToSchema)]
struct SourceFile {
    agent: String,
    version: u32,
    /// The file's relative path.
    path: String,
    /// Its text, secrets redacted.
    content: String,
}

/// The files of a version's source.
#[derive(Debug, Serialize, ToSchema)]
struct SourceFiles {
    agent: String,
    version: u32,
    /// By path.
    files: Vec<SourceEntry>,
}

/// A file in the list of a version's source.
#[derive(Debug, Serialize, ToSchema)]
struct SourceEntry {
    /// The file's relative path.
    path: String,
    /// Its size in bytes (UTF-8), secrets redacted.
    bytes: usize,
}

/// A version's source: one file, or the list of its files.
///
/// The active version's unless `?version` names another; one file whole with `?path`, or
/// the list of its files and their sizes without.
#[utoipa::path(get, path = "/v1/agents/{name}/source", tag = "edits", params(AgentPath, SourceQuery),
    responses((status = 200, body = SourceAnswer)))]
async fn show_source(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
    Query(query): Query<SourceQuery>,
) -> ApiResult<Json<SourceAnswer>> {
    let (version, snapshot) = asked_source(&state, &name, query.version).await?;
    let answer = match query.path {
        Some(path) => {
            snapshot::check_path(&path)?;
            let text = snapshot.files.get(&path).ok_or_else(|| {
                ApiError::invalid(format!("version {version} has no file {path:?}"))
            })?;
            SourceAnswer::File(SourceFile {
                agent: name,
                version,
                path,
                content: text.clone(),
            })
        }
        None => SourceAnswer::Files(SourceFiles {
            agent: name,
            version,
            files: snapshot
                .files
                .iter()
                .map(|(path, text)| SourceEntry {
                    path: path.clone(),
                    bytes: text.len(),
                })
                .collect(),
        }),
    };
    Ok(Json(answer))
}
