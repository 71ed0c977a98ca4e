//! Research: the results the research tracks and the action executor publish
//! (`research.result`), the tasks the planner asks (`research.task`), and the tracks
//! themselves, read from the event log, the agents' manifests, their logs and schedules.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use overseer_kernel::manifest::Kind;
use overseer_store::EventFilter;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::openapi::PageQuery;
use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState};

/// Most events of one topic read back for a listing: the newest.
const SCAN: u32 = 10_000;

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(results)))
        .routes(named(routes!(tasks)))
        .routes(named(routes!(tracks)))
}

/// `?track=…&symbol=…&since=…&limit=N&after=CURSOR` of `GET /v1/research/results`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ResultsQuery {
    /// Only the results of this track.
    track: Option<String>,
    /// Only the results about this symbol.
    symbol: Option<String>,
    /// Only results published at or after this time, in milliseconds since the Unix epoch.
    since: Option<u64>,
    /// Results on the page: 1 to 1,000 (50).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// The cursor of the page before (a result's `event`): the `next` of its answer.
    after: Option<String>,
}

/// A published payload: the JSON object an agent published, with its event's id, source and
/// time added (they replace keys of the same names). Its other keys are the publisher's.
#[derive(ToSchema)]
#[allow(dead_code)]
struct Published {
    /// The id of the event that carried it.
    event: String,
    /// The agent that published it.
    source: String,
    /// When it was published, in ms since the epoch.
    at_ms: u64,
}

/// The payloads of the newest [`SCAN`] events of `topic` since `since_ms`, newest first,
/// each with its event's id, source and time.
async fn published(state: &AppState, topic: &str, since_ms: u64) -> ApiResult<Vec<Value>> {
    let events = state
        .kernel
        .store
        .events(&EventFilter {
            topic: Some(topic),
            since_ms,
            limit: SCAN,
            newest_first: true,
            ..EventFilter::default()
        })
        .await
        .map_err(overseer_kernel::Error::from)?;
    Ok(events
        .into_iter()
        .filter_map(|e| {
            let mut payload: Value = serde_json::from_str(&e.payload).ok()?;
            let fields = payload.as_object_mut()?;
            fields.insert("event".to_string(), json!(e.id));
            fields.insert("source".to_string(), json!(e.source));
            fields.insert("at_ms".to_string(), json!(e.at_ms));
            Some(payload)
        })
        .collect())
}

/// `GET /v1/research/results`.
#[derive(Debug, Serialize, ToSchema)]
struct Results {
    /// Newest first: each `research.result` payload as published (its track, symbols,
    /// findings, …), with its event's id, source and time.
    #[schema(value_type = Vec<Published>)]
    results: Vec<Value>,
    /// The cursor of the next page (a result's `event`), `null` on the last.
    next: Option<String>,
}

/// Results, newest first, by track, symbol and time.
#[utoipa::path(get, path = "/v1/research/results", tag = "research", params(ResultsQuery),
    responses((status = 200, body = Results)))]
async fn results(
    State(state): State<AppState>,
    query: Result<Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Results>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = Paging::new(query.limit, query.after.clone(), 50)?;
    let mut found = published(&state, "research.result", query.since.unwrap_or(0)).await?;
    found.retain(|r| {
        query
            .track
            .as_ref()
            .is_none_or(|t| r["track"] == t.as_str())
            && query.symbol.as_ref().is_none_or(|s| {
                r["symbols"]
                    .as_array()
                    .is_some_and(|list| list.iter().any(|x| x == s.as_str()))
            })
    });
    let (results, next) = paging.slice(found, event_id)?;
    Ok(Json(Results { results, next }))
}

/// A published payload's cursor: the id of its event.
fn event_id(payload: &Value) -> String {
    payload["event"].as_str().unwrap_or_default().to_string()
}

/// `GET /v1/research/tasks`.
#[derive(Debug, Serialize, ToSchema)]
struct Tasks {
    /// Newest first: each `research.task` payload as the planner published it, with its
    /// event's id, source and time.
    #[schema(value_type = Vec<Published>)]
    tasks: Vec<Value>,
    /// The cursor of the next page (a task's `event`), `null` on the last.
    next: Option<String>,
}

/// Research tasks, newest first; the cursor is a task's event id.
#[utoipa::path(get, path = "/v1/research/tasks", tag = "research", params(PageQuery),
    responses((status = 200, body = Tasks)))]
async fn tasks(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Tasks>> {
    let paging = crate::paging(query, 200)?;
    let found = published(&state, "research.task", 0).await?;
    let (tasks, next) = paging.slice(found, event_id)?;
    Ok(Json(Tasks { tasks, next }))
}

/// Lines of an agent's log searched for its last failed run.
const FAILURE_SCAN: u32 = 500;

/// A track's last failed run, as the host logged it.
#[derive(Debug, Serialize, ToSchema)]
struct LastFailure {
    /// When, in ms since the epoch.
    at_ms: u64,
    /// The version that failed.
    version: Option<u32>,
    /// The log line: why the call failed.
    message: String,
}

/// The newest failed run of `agent` among its last log lines.
async fn last_failure(state: &AppState, agent: &str) -> ApiResult<Option<LastFailure>> {
    let lines = state
        .kernel
        .store
        .logs(agent, overseer_store::Page::latest(FAILURE_SCAN))
        .await
        .map_err(overseer_kernel::Error::from)?;
    Ok(lines
        .into_iter()
        .rev()
        .find(|l| l.message.starts_with(overseer_kernel::INVOCATION_FAILED))
        .map(|l| LastFailure {
            at_ms: l.at_ms,
            version: l.version,
            message: l.message,
        }))
}

/// `GET /v1/research/tracks`.
#[derive(Debug, Serialize, ToSchema)]
struct Tracks {
    /// By agent name.
    tracks: Vec<Track>,
    /// The cursor of the next page (a track's agent), `null` on the last.
    next: Option<String>,
}

/// A research agent with a specialisation to study.
#[derive(Debug, Serialize, ToSchema)]
struct Track {
    agent: String,
    /// Its active version.
    version: u32,
    /// `[config] track` of its manifest.
    track: Option<String>,
    /// `[config] specialisation` of its manifest: what it studies.
    specialisation: String,
    /// Its schedule's period, in milliseconds, when it runs on one.
    every_ms: Option<u64>,
    quarantined: bool,
    /// Calls answered since the daemon started.
    runs_ok: u64,
    /// Calls of the active version (a rollback starts the count again).
    version_calls: u64,
    /// Failed calls of the active version.
    version_failures: u64,
    /// When its last result was published, in ms since the epoch.
    last_result_ms: Option<u64>,
    /// Its last `research.result`, as in `GET /v1/research/results`.
    #[schema(value_type = Option<Published>)]
    last_result: Option<Value>,
    last_failure: Option<LastFailure>,
    /// When its schedule runs it next, in ms since the epoch; on the replayed market it also
    /// runs every `market_every_days`.
    next_run_ms: Option<u64>,
    /// `[config] market_every_days` of its manifest: market days between its runs on the
    /// replayed market.
    market_every_days: Option<u64>,
}

/// Every research agent: its specialisation, schedule, state, last result and failures.
#[utoipa::path(get, path = "/v1/research/tracks", tag = "research", params(PageQuery),
    responses((status = 200, body = Tracks)))]
async fn tracks(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Tracks>> {
    let paging = crate::paging(query, 100)?;
    let results = published(&state, "research.result", 0).await?;
    // Newest first: the first of each source is its last result.
    let mut last: BTreeMap<String, &Value> = BTreeMap::new();
    for result in &results {
        if let Some(source) = result["source"].as_str() {
            last.entry(source.to_string()).or_insert(result);
        }
    }
    let metrics = &state.kernel.metrics;
    let mut tracks = Vec::new();
    for slot in state.kernel.registry.slots() {
        let Some(version) = slot.active() else {
            continue;
        };
        // A track is a research agent with a specialisation to study (not the planner).
        let about = &version.manifest.agent;
        if about.kind != Some(Kind::Research)
            || !version.manifest.config.contains_key("specialisation")
        {
            continue;
        }
        let config = &version.manifest.config;
        let market_every_days = config
            .get("market_every_days")
            .and_then(|d| d.parse::<u64>().ok());
        let latest = last.get(&slot.name).copied();
        tracks.push(Track {
            agent: slot.name.clone(),
            version: version.number,
            track: config.get("track").cloned(),
            specialisation: config.get("specialisation").cloned().unwrap_or_default(),
            every_ms: version.resolved.every.map(|d| d.as_millis() as u64),
            quarantined: slot.quarantined(),
            runs_ok: metrics.count(&slot.name, "ok"),
            version_calls: version.calls.load(Ordering::Relaxed),
            version_failures: version.failures.load(Ordering::Relaxed),
            last_result_ms: latest.and_then(|r| r["at_ms"].as_u64()),
            last_result: latest.cloned(),
            last_failure: last_failure(&state, &slot.name).await?,
            next_run_ms: state.kernel.schedules.next_run_ms(&slot.name),
            market_every_days,
        });
    }
    let (tracks, next) = paging.slice(tracks, |t| t.agent.clone())?;
    Ok(Json(Tracks { tracks, next }))
}
