//! Research: the results the research tracks and the action executor publish
//! (`research.result`), the tasks the planner asks (`research.task`), and the tracks
//! themselves, read from the event log, the agents' manifests, their logs and schedules.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use overseer_kernel::manifest::Kind;
use overseer_store::EventFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::page::Paging;
use crate::{ApiError, ApiResult, AppState};

/// Most events of one topic read back for a listing: the newest.
const SCAN: u32 = 10_000;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/research/results", get(results))
        .route("/v1/research/tasks", get(tasks))
        .route("/v1/research/tracks", get(tracks))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultsQuery {
    track: Option<String>,
    symbol: Option<String>,
    /// Milliseconds since the Unix epoch.
    since: Option<u64>,
    limit: Option<u32>,
    after: Option<String>,
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

/// Results, newest first, by track, symbol and time.
async fn results(
    State(state): State<AppState>,
    query: Result<Query<ResultsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
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
    let (found, next) = paging.slice(found, event_id)?;
    Ok(Json(json!({ "results": found, "next": next })))
}

/// A published payload's cursor: the id of its event.
fn event_id(payload: &Value) -> String {
    payload["event"].as_str().unwrap_or_default().to_string()
}

/// Research tasks, newest first; the cursor is a task's event id.
async fn tasks(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = crate::paging(query, 200)?;
    let found = published(&state, "research.task", 0).await?;
    let (found, next) = paging.slice(found, event_id)?;
    Ok(Json(json!({ "tasks": found, "next": next })))
}

/// Lines of an agent's log searched for its last failed run.
const FAILURE_SCAN: u32 = 500;

/// The newest failed run of `agent` among its last log lines: `{at_ms, version, message}`,
/// as the host logged it.
async fn last_failure(state: &AppState, agent: &str) -> ApiResult<Option<Value>> {
    let lines = state
        .kernel
        .store
        .logs(agent, overseer_store::Page::latest(FAILURE_SCAN))
        .await
        .map_err(overseer_kernel::Error::from)?;
    Ok(lines
        .iter()
        .rev()
        .find(|l| l.message.starts_with(overseer_kernel::INVOCATION_FAILED))
        .map(|l| json!({ "at_ms": l.at_ms, "version": l.version, "message": l.message })))
}

/// Every research agent: its specialisation, schedule, state, last result and failures.
async fn tracks(
    State(state): State<AppState>,
    query: crate::PageQueryResult,
) -> ApiResult<Json<Value>> {
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
        let every_ms = version.resolved.every.map(|d| d.as_millis() as u64);
        let market_every_days = version
            .manifest
            .config
            .get("market_every_days")
            .and_then(|d| d.parse::<u64>().ok());
        let latest = last.get(&slot.name);
        let last_ms = latest.and_then(|r| r["at_ms"].as_u64());
        tracks.push(json!({
            "agent": slot.name,
            "version": version.number,
            "track": version.manifest.config.get("track"),
            "specialisation": version.manifest.config.get("specialisation"),
            "every_ms": every_ms,
            "quarantined": slot.quarantined(),
            "runs_ok": metrics.count(&slot.name, "ok"),
            // Of the active version: a rollback starts the count again.
            "version_calls": version.calls.load(Ordering::Relaxed),
            "version_failures": version.failures.load(Ordering::Relaxed),
            "last_result_ms": last_ms,
            "last_result": latest,
            "last_failure": last_failure(&state, &slot.name).await?,
            // On its schedule; on the replayed market also every `market_every_days`.
            "next_run_ms": state.kernel.schedules.next_run_ms(&slot.name),
            "market_every_days": market_every_days,
        }));
    }
    let (tracks, next) = paging.slice(tracks, |t| {
        t["agent"].as_str().unwrap_or_default().to_string()
    })?;
    Ok(Json(json!({ "tracks": tracks, "next": next })))
}
