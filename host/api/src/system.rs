//! The host: liveness, resources and agent health, the event log, the LLM's usage, and the
//! Prometheus metrics.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use overseer_kernel::config::{Budgets, Retention};
use overseer_store::{AlertFilter, EventFilter, EventRecord, LlmUsage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::{ApiResult, AppState};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(health)))
        .routes(named(routes!(system)))
        .routes(named(routes!(limits)))
        .routes(named(routes!(events)))
        .routes(named(routes!(llm)))
        .routes(named(routes!(metrics)))
}

/// `GET /v1/health`.
#[derive(Debug, Serialize, ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
    /// The daemon's version.
    version: &'static str,
}

/// The host is up; no token needed.
#[utoipa::path(get, path = "/v1/health", tag = "system", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// `GET /v1/limits`.
#[derive(Debug, Serialize, ToSchema)]
struct Limits {
    /// The ceilings a manifest may ask for.
    maxima: Maxima,
    /// The limits of a manifest that says nothing.
    defaults: Defaults,
    /// What each agent may write.
    budgets: Budgets,
    retention: Retention,
    /// The compiled-component cache's size, in MiB.
    cache_max_mb: u64,
}

/// The host's ceilings.
#[derive(Debug, Serialize, ToSchema)]
struct Maxima {
    fuel: u64,
    memory_mb: u64,
    timeout_ms: u64,
    queue: u32,
    /// Guest calls running at once, host-wide.
    concurrent_calls: u32,
    /// Instances alive at once, host-wide.
    instances: u32,
}

/// The limits of a silent manifest.
#[derive(Debug, Serialize, ToSchema)]
struct Defaults {
    fuel: u64,
    memory_mb: u64,
    timeout_ms: u64,
    concurrency: u32,
    queue: u32,
}

/// The host's ceilings for manifests, the limits of a silent manifest, the write budgets and
/// the retention policy: what a pusher may ask for and what an agent may write.
#[utoipa::path(get, path = "/v1/limits", tag = "system", responses((status = 200, body = Limits)))]
async fn limits(State(state): State<AppState>) -> Json<Limits> {
    let config = &state.kernel.config;
    Json(Limits {
        maxima: Maxima {
            fuel: config.max_fuel,
            memory_mb: config.max_memory_mb,
            timeout_ms: config.max_timeout_ms,
            queue: config.max_queue,
            concurrent_calls: config.max_concurrent_calls,
            instances: config.max_instances,
        },
        defaults: Defaults {
            fuel: config.fuel,
            memory_mb: config.memory_mb,
            timeout_ms: config.timeout_ms,
            concurrency: config.concurrency,
            queue: config.queue,
        },
        budgets: config.budgets.clone(),
        retention: config.retention.clone(),
        cache_max_mb: config.cache_max_mb,
    })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// A topic, or `prefix.*`.
    topic: Option<String>,
    /// Events after this sequence number (the `next` of the page before).
    after: Option<i64>,
    /// Events at or after this time, in ms since the epoch.
    since_ms: Option<u64>,
    /// Events on the page: 1 to 1,000 (100).
    #[param(minimum = 1)]
    limit: Option<u32>,
}

/// `GET /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
struct Events {
    /// Oldest first; each payload is the JSON text as published.
    events: Vec<EventRecord>,
    /// The sequence number to ask after for the next page, `null` on the last.
    next: Option<i64>,
}

/// Events oldest first after the `after` id; `next` is the id the next page starts after.
#[utoipa::path(get, path = "/v1/events", tag = "system", params(EventsQuery),
    responses((status = 200, body = Events)))]
async fn events(
    State(state): State<AppState>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Events>> {
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
    Ok(Json(Events { events, next }))
}

/// Prometheus metrics, in the OpenMetrics text format.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, body = String,
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8")))]
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

/// `GET /v1/llm`.
#[derive(Debug, Serialize, ToSchema)]
struct LlmView {
    /// Whether an endpoint is configured.
    configured: bool,
    /// The endpoint, its credentials removed.
    url: Option<String>,
    model: Option<String>,
    /// Per agent.
    usage: Vec<LlmUsage>,
}

/// The LLM endpoint (never its key) and the tokens each agent has used.
#[utoipa::path(get, path = "/v1/llm", tag = "system", responses((status = 200, body = LlmView)))]
async fn llm(State(state): State<AppState>) -> ApiResult<Json<LlmView>> {
    let usage = state.kernel.store.llm_usage().await?;
    Ok(Json(LlmView {
        configured: state.llm.model().is_some(),
        url: state.llm.url(),
        model: state.llm.model().map(str::to_string),
        usage,
    }))
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

/// `GET /v1/system`.
#[derive(Debug, Serialize, ToSchema)]
struct SystemView {
    /// Host CPU use, in percent of all cores.
    cpu_percent: f32,
    memory: Memory,
    /// The data directory's disk, when a mounted file system holds it.
    disk: Option<Disk>,
    /// `sqlite` or `postgres`.
    database: &'static str,
    agents: AgentHealth,
    open_alerts: usize,
    compile_cache: CacheCounts,
}

/// Host memory, in bytes.
#[derive(Debug, Serialize, ToSchema)]
struct Memory {
    used_bytes: u64,
    total_bytes: u64,
}

/// The data directory's disk.
#[derive(Debug, Serialize, ToSchema)]
struct Disk {
    mount_point: String,
    total_bytes: u64,
    available_bytes: u64,
}

/// Serving agents by health.
#[derive(Debug, Serialize, ToSchema)]
struct AgentHealth {
    healthy: u32,
    /// Failing health checks, or with an open alert.
    degraded: u32,
    quarantined: u32,
    /// The store names an active version that cannot load.
    unservable: u32,
}

/// The compiled-component cache's lookups since the start.
#[derive(Debug, Serialize, ToSchema)]
struct CacheCounts {
    hits: u64,
    misses: u64,
}

/// Host CPU, memory and disk; the database; agents by health; the compile cache.
#[utoipa::path(get, path = "/v1/system", tag = "system", responses((status = 200, body = SystemView)))]
async fn system(State(state): State<AppState>) -> ApiResult<Json<SystemView>> {
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
    let disk = disk_holding(&state.data_dir).map(|d| Disk {
        mount_point: d.mount_point.to_string_lossy().into_owned(),
        total_bytes: d.total_bytes,
        available_bytes: d.available_bytes,
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
    Ok(Json(SystemView {
        cpu_percent: cpu,
        memory: Memory {
            used_bytes: used,
            total_bytes: total,
        },
        disk,
        database: kernel.store.kind(),
        agents: AgentHealth {
            healthy,
            degraded,
            quarantined,
            unservable,
        },
        open_alerts: open_alerts.len(),
        compile_cache: CacheCounts {
            hits: cache.hits,
            misses: cache.misses,
        },
    }))
}
