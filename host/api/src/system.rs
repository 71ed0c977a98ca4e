//! The host: liveness, resources and agent health, the event log, the LLM's usage, and the
//! Prometheus metrics.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use overseer_store::{AlertFilter, EventFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiResult, AppState};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/system", get(system))
        .route("/v1/limits", get(limits))
        .route("/v1/events", get(events))
        .route("/v1/llm", get(llm))
        .route("/metrics", get(metrics))
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// The host's ceilings for manifests, the limits of a silent manifest, the write budgets and
/// the retention policy: what a pusher may ask for and what an agent may write.
async fn limits(State(state): State<AppState>) -> Json<Value> {
    let config = &state.kernel.config;
    Json(json!({
        "maxima": {
            "fuel": config.max_fuel,
            "memory_mb": config.max_memory_mb,
            "timeout_ms": config.max_timeout_ms,
            "queue": config.max_queue,
            "concurrent_calls": config.max_concurrent_calls,
            "instances": config.max_instances,
        },
        "defaults": {
            "fuel": config.fuel,
            "memory_mb": config.memory_mb,
            "timeout_ms": config.timeout_ms,
            "concurrency": config.concurrency,
            "queue": config.queue,
        },
        "budgets": config.budgets,
        "retention": config.retention,
        "cache_max_mb": config.cache_max_mb,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    topic: Option<String>,
    after: Option<i64>,
    since_ms: Option<u64>,
    limit: Option<u32>,
}

/// Events oldest first after the `after` id; `next` is the id the next page starts after.
async fn events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|e| crate::ApiError::invalid(e.body_text()))?;
    let limit = crate::page::Paging::new(query.limit, None, 100)?.limit;
    let events = state
        .kernel
        .store
        .events(&EventFilter {
            topic: query.topic.as_deref(),
            after: query.after.unwrap_or(0),
            since_ms: query.since_ms.unwrap_or(0),
            limit,
            newest_first: false,
        })
        .await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({ "events": events, "next": next })))
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state
            .kernel
            .metrics
            .render(state.kernel.sandbox.cache_stats()),
    )
        .into_response()
}

/// The LLM endpoint (never its key) and the tokens each agent has used.
async fn llm(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let usage = state.kernel.store.llm_usage().await?;
    Ok(Json(json!({
        "configured": state.llm.model().is_some(),
        "url": state.llm.url(),
        "model": state.llm.model(),
        "usage": usage,
    })))
}

/// The mounted file system a directory is on, and its space in bytes.
#[derive(Debug, Clone)]
pub struct DiskSpace {
    pub mount_point: std::path::PathBuf,
    pub total_bytes: u64,
    pub available_bytes: u64,
}

/// The disk holding `dir` (or, when `dir` does not exist yet, its nearest ancestor that does):
/// the mount point that is the longest prefix of its canonical path. `None` when no mounted
/// file system holds it.
pub fn disk_holding(dir: &std::path::Path) -> Option<DiskSpace> {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let existing = absolute.ancestors().find(|p| p.exists())?;
    let canonical = std::fs::canonicalize(existing).unwrap_or_else(|_| existing.to_path_buf());
    let disks = sysinfo::Disks::new_with_refreshed_list();
    disks
        .list()
        .iter()
        .filter(|d| canonical.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| DiskSpace {
            mount_point: d.mount_point().to_path_buf(),
            total_bytes: d.total_space(),
            available_bytes: d.available_space(),
        })
}

async fn system(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let (cpu, used, total) = {
        let mut system = state.system.lock().unwrap_or_else(|p| p.into_inner());
        system.refresh_cpu_usage();
        system.refresh_memory();
        (
            system.global_cpu_usage(),
            system.used_memory(),
            system.total_memory(),
        )
    };
    let disk = disk_holding(&state.data_dir).map(|d| {
        json!({
            "mount_point": d.mount_point,
            "total_bytes": d.total_bytes,
            "available_bytes": d.available_bytes,
        })
    });
    let kernel = &state.kernel;
    let open_alerts = kernel
        .store
        .alerts(&AlertFilter {
            open: Some(true),
            agent: None,
            before: None,
            limit: 10_000,
        })
        .await?;
    let (mut healthy, mut degraded, mut quarantined, mut unservable) = (0, 0, 0, 0);
    for record in kernel.store.agents().await? {
        let Some(active) = record.active_version else {
            continue;
        };
        let slot = kernel.registry.get(&record.name);
        if slot.as_ref().and_then(|s| s.active()).is_none() {
            // The store names an active version the kernel could not load.
            if kernel
                .store
                .version(&record.name, active)
                .await?
                .is_some_and(|v| v.fault.is_some())
            {
                unservable += 1;
            }
            continue;
        }
        if record.quarantined_ms.is_some() {
            quarantined += 1;
        } else if kernel.supervisor.health_failures(&record.name) > 0
            || open_alerts.iter().any(|a| a.agent == record.name)
        {
            degraded += 1;
        } else {
            healthy += 1;
        }
    }
    let cache = kernel.sandbox.cache_stats();
    Ok(Json(json!({
        "cpu_percent": cpu,
        "memory": { "used_bytes": used, "total_bytes": total },
        "disk": disk,
        "database": kernel.store.kind(),
        "agents": {
            "healthy": healthy,
            "degraded": degraded,
            "quarantined": quarantined,
            "unservable": unservable,
        },
        "open_alerts": open_alerts.len(),
        "compile_cache": { "hits": cache.hits, "misses": cache.misses },
    })))
}
