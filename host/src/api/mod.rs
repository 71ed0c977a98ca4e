//! The HTTP API v1 (axum): routes, bearer-token auth on mutations, the body limit, and
//! `serve(listener, host, shutdown)` so a test can bind `127.0.0.1:0` and drive a real server.

mod edits;
mod error;

use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

pub use error::ApiError;

use crate::deploy;
use crate::error::{Error, check_name};
use crate::manifest::Manifest;
use crate::state::Host;
use crate::store::now_ms;

type ApiResult<T = Response> = Result<T, ApiError>;

/// The router of the whole API.
pub fn app(host: Arc<Host>) -> Router {
    let body_limit = host.config.body_limit;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{name}", get(show_agent).delete(retire_agent))
        .route(
            "/v1/agents/{name}/versions",
            get(list_versions).post(push_version),
        )
        .route("/v1/agents/{name}/rollback", post(rollback))
        .route("/v1/agents/{name}/invoke", post(invoke))
        .route("/v1/agents/{name}/logs", get(logs))
        .route("/v1/agents/{name}/release", post(release))
        .route("/v1/alerts", get(list_alerts))
        .route("/v1/alerts/{id}", get(show_alert))
        .route("/v1/alerts/{id}/resolve", post(resolve_alert))
        .route("/v1/system", get(system))
        .route("/v1/events", get(events))
        .route("/v1/llm", get(llm))
        .route("/metrics", get(metrics))
        .merge(edits::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn_with_state(host.clone(), authorize))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(host)
}

/// Serve the API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    host: Arc<Host>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let result = axum::serve(listener, app(host.clone()))
        .with_graceful_shutdown(shutdown)
        .await;
    host.registry.stop_schedules();
    result
}

/// Every request that changes something must carry the bearer token.
async fn authorize(State(host): State<Arc<Host>>, request: Request, next: Next) -> Response {
    let mutation = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if mutation && !has_token(request.headers(), &host.token) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compare in constant time so the token cannot be guessed byte by byte.
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

fn agent_name(name: &str) -> ApiResult<()> {
    check_name(name).map_err(ApiError::from)
}

/// The stored record of an agent, or `invalid_name` / `agent_not_found`.
async fn known_agent(host: &Host, name: &str) -> ApiResult<crate::store::AgentRecord> {
    agent_name(name)?;
    host.store
        .agent(name)
        .await?
        .ok_or_else(|| Error::AgentNotFound(name.to_string()).into())
}

/// An alert, or `alert_not_found`.
async fn known_alert(host: &Host, id: i64) -> ApiResult<crate::store::AlertRecord> {
    host.store
        .alert(id)
        .await?
        .ok_or_else(|| Error::AlertNotFound(id).into())
}

async fn list_agents(State(host): State<Arc<Host>>) -> ApiResult<Json<Value>> {
    let mut agents = Vec::new();
    for record in host.store.agents().await.map_err(ApiError::from)? {
        let live = host.registry.get(&record.name).and_then(|s| s.active());
        agents.push(json!({
            "name": record.name,
            "active_version": record.active_version,
            "digest": live.as_ref().map(|v| v.digest.clone()),
            "description": live.as_ref().and_then(|v| v.manifest.description.clone()),
            "state": match (&live, record.retired_ms) {
                (Some(_), _) => "active",
                (None, Some(_)) => "retired",
                (None, None) => "no_version",
            },
        }));
    }
    Ok(Json(json!({ "agents": agents })))
}

async fn show_agent(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = known_agent(&host, &name).await?;
    let slot = host.registry.get(&name);
    let live = slot.as_ref().and_then(|s| s.active());
    let gate = slot.as_ref().map(|s| s.gate());
    Ok(Json(json!({
        "name": record.name,
        "active_version": record.active_version,
        "retired": record.retired_ms.is_some(),
        "digest": live.as_ref().map(|v| v.digest.clone()),
        "manifest": live.as_ref().map(|v| v.manifest.clone()),
        "limits": live.as_ref().map(|v| json!({
            "fuel": v.resolved.limits.fuel,
            "memory_bytes": v.resolved.limits.memory_bytes,
            "timeout_ms": v.resolved.limits.timeout.as_millis() as u64,
            "concurrency": v.resolved.concurrency,
            "queue": v.resolved.queue,
            "every_ms": v.resolved.every.map(|d| d.as_millis() as u64),
        })),
        "quarantined": record.quarantined_ms.is_some(),
        "counters": {
            "invocations_ok": host.metrics.count(&name, "ok"),
            "swaps": host.metrics.agent_counter(&name, "swaps"),
            "rollbacks": host.metrics.agent_counter(&name, "rollbacks"),
            "quarantines": host.metrics.agent_counter(&name, "quarantines"),
            "rejected_versions": host.metrics.agent_counter(&name, "rejected"),
            "fuel_consumed": host.metrics.agent_counter(&name, "fuel"),
            "consecutive_health_failures": slot.as_ref().map(|s| s.health_failures.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0),
            "running": gate.as_ref().map(|g| g.running()).unwrap_or(0),
            "waiting": gate.as_ref().map(|g| g.waiting()).unwrap_or(0),
        },
    })))
}

async fn list_versions(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = known_agent(&host, &name).await?;
    let versions: Vec<Value> = host
        .store
        .versions(&name)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|v| {
            let state = if Some(v.number) == record.active_version {
                "active"
            } else if v.state == "rejected" {
                "rejected"
            } else if v.verdict.as_deref() == Some("rolled-back") {
                "rolled-back"
            } else {
                "inactive"
            };
            let mut value = serde_json::to_value(&v).unwrap_or(Value::Null);
            value["state"] = json!(state);
            value
        })
        .collect();
    Ok(Json(
        json!({ "agent": name, "active_version": record.active_version, "versions": versions }),
    ))
}

/// `application/wasm` (or any non-multipart body) is the component itself; `multipart/form-data`
/// carries a `component` part and an optional `manifest` part (TOML).
async fn push_version(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> ApiResult {
    agent_name(&name)?;
    let multipart = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let (bytes, manifest) = if multipart {
        let form = <Multipart as axum::extract::FromRequest<()>>::from_request(request, &())
            .await
            .map_err(|e| ApiError::body(e.status(), e.body_text()))?;
        read_push_form(form).await?
    } else {
        let bytes = <Bytes as axum::extract::FromRequest<()>>::from_request(request, &())
            .await
            .map_err(|e: BytesRejection| ApiError::body(e.status(), e.body_text()))?;
        (bytes.to_vec(), None)
    };
    let deployed = deploy::push(&host, &name, bytes, manifest, "push")
        .await
        .map_err(ApiError::from)?;
    let status = if deployed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(deployed)).into_response())
}

async fn read_push_form(mut form: Multipart) -> ApiResult<(Vec<u8>, Option<Manifest>)> {
    let mut component = None;
    let mut manifest = None;
    while let Some(field) = form
        .next_field()
        .await
        .map_err(|e| ApiError::body(e.status(), e.body_text()))?
    {
        let part = field.name().unwrap_or_default().to_string();
        let data = field
            .bytes()
            .await
            .map_err(|e| ApiError::body(e.status(), e.body_text()))?;
        match part.as_str() {
            "component" => component = Some(data.to_vec()),
            "manifest" => {
                let text = std::str::from_utf8(&data)
                    .map_err(|_| ApiError::from(Error::InvalidManifest("not UTF-8".to_string())))?;
                manifest = Some(Manifest::parse(text).map_err(ApiError::from)?);
            }
            other => {
                return Err(ApiError::from(Error::InvalidRequest(format!(
                    "unexpected form part {other:?}: send `component` and optionally `manifest`"
                ))));
            }
        }
    }
    let component = component.ok_or_else(|| {
        ApiError::from(Error::InvalidRequest(
            "the form has no `component` part".to_string(),
        ))
    })?;
    Ok((component, manifest))
}

#[derive(Debug, Default, Deserialize)]
struct RollbackRequest {
    version: Option<u32>,
}

async fn rollback(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<deploy::Deployed>> {
    agent_name(&name)?;
    let request: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::from(Error::InvalidRequest(format!(
                "expected {{\"version\": N}} or an empty body: {e}"
            )))
        })?
    };
    Ok(Json(
        deploy::rollback(&host, &name, request.version)
            .await
            .map_err(ApiError::from)?,
    ))
}

async fn invoke(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    agent_name(&name)?;
    let body = body.map_err(|e| ApiError::body(e.status(), e.body_text()))?;
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        "null".to_string()
    } else {
        let text = String::from_utf8(body.to_vec()).map_err(|_| {
            ApiError::from(Error::InvalidRequest(
                "the payload is not UTF-8".to_string(),
            ))
        })?;
        serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|e| {
            ApiError::from(Error::InvalidRequest(format!(
                "the payload must be a JSON document: {e}"
            )))
        })?;
        text
    };
    let event = overseer_sandbox::Event {
        id: uuid::Uuid::new_v4().to_string(),
        topic: "invoke".to_string(),
        payload,
        source: "http".to_string(),
        at_ms: now_ms(),
    };
    let invoked = host.invoke(&name, event).await.map_err(ApiError::from)?;
    // An agent answers with JSON; show it as JSON, or as a string if it is not.
    let output = serde_json::from_str::<Value>(&invoked.output)
        .unwrap_or_else(|_| Value::String(invoked.output.clone()));
    Ok(Json(json!({
        "agent": name,
        "version": invoked.version,
        "output": output,
        "elapsed_ms": invoked.elapsed.as_secs_f64() * 1000.0,
        "fuel_used": invoked.fuel_used,
    })))
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    limit: Option<u32>,
}

async fn logs(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    known_agent(&host, &name).await?;
    let limit = query.limit.unwrap_or(100).min(10_000);
    let lines = host
        .store
        .logs(&name, limit)
        .await
        .map_err(ApiError::from)?;
    Ok(Json(json!({ "agent": name, "logs": lines })))
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    topic: Option<String>,
    after: Option<i64>,
    since_ms: Option<u64>,
    limit: Option<u32>,
}

async fn events(
    State(host): State<Arc<Host>>,
    Query(query): Query<EventsQuery>,
) -> ApiResult<Json<Value>> {
    let limit = query.limit.unwrap_or(100).min(10_000);
    let events = host
        .store
        .events(
            query.topic.as_deref(),
            query.after.unwrap_or(0),
            query.since_ms.unwrap_or(0),
            limit,
        )
        .await
        .map_err(ApiError::from)?;
    Ok(Json(json!({ "events": events })))
}

async fn metrics(State(host): State<Arc<Host>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        host.metrics.render(host.sandbox.cache_stats()),
    )
        .into_response()
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::body(e.status(), e.body_text())
    }
}

async fn retire_agent(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    agent_name(&name)?;
    deploy::retire(&host, &name).await.map_err(ApiError::from)?;
    Ok(Json(json!({ "agent": name, "retired": true })))
}

async fn release(
    State(host): State<Arc<Host>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    known_agent(&host, &name).await?;
    host.release(&name, "released by request")
        .await
        .map_err(ApiError::from)?;
    Ok(Json(json!({ "agent": name, "quarantined": false })))
}

#[derive(Debug, Deserialize)]
struct AlertsQuery {
    state: Option<String>,
    agent: Option<String>,
    limit: Option<u32>,
}

async fn list_alerts(
    State(host): State<Arc<Host>>,
    Query(query): Query<AlertsQuery>,
) -> ApiResult<Json<Value>> {
    let open = match query.state.as_deref() {
        None | Some("all") => None,
        Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some(other) => {
            return Err(Error::InvalidRequest(format!(
                "state {other:?}: use open, resolved or all"
            ))
            .into());
        }
    };
    let alerts = host
        .store
        .alerts(
            open,
            query.agent.as_deref(),
            query.limit.unwrap_or(100).min(10_000),
        )
        .await
        .map_err(ApiError::from)?;
    Ok(Json(json!({ "alerts": alerts })))
}

async fn show_alert(State(host): State<Arc<Host>>, Path(id): Path<i64>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(known_alert(&host, id).await?)))
}

async fn resolve_alert(
    State(host): State<Arc<Host>>,
    Path(id): Path<i64>,
) -> ApiResult<Json<Value>> {
    known_alert(&host, id).await?;
    host.store
        .resolve_alert(id, "resolved by request")
        .await
        .map_err(ApiError::from)?;
    Ok(Json(json!(known_alert(&host, id).await?)))
}

/// The LLM endpoint (never its key) and the tokens each agent has used.
async fn llm(State(host): State<Arc<Host>>) -> ApiResult<Json<Value>> {
    let usage = host.store.llm_usage().await?;
    Ok(Json(json!({
        "configured": host.llm.model().is_some(),
        "url": host.llm.url(),
        "model": host.llm.model(),
        "usage": usage,
    })))
}

async fn system(State(host): State<Arc<Host>>) -> ApiResult<Json<Value>> {
    let (cpu, used, total) = {
        let mut system = host.system.lock().unwrap_or_else(|p| p.into_inner());
        system.refresh_cpu_usage();
        system.refresh_memory();
        (
            system.global_cpu_usage(),
            system.used_memory(),
            system.total_memory(),
        )
    };
    let data_dir = std::fs::canonicalize(&host.config.data_dir)
        .unwrap_or_else(|_| host.config.data_dir.clone());
    let disks = sysinfo::Disks::new_with_refreshed_list();
    let disk = disks
        .list()
        .iter()
        .filter(|d| data_dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| {
            json!({
                "mount_point": d.mount_point(),
                "total_bytes": d.total_space(),
                "available_bytes": d.available_space(),
            })
        });
    let open_alerts = host
        .store
        .alerts(Some(true), None, 10_000)
        .await
        .map_err(ApiError::from)?;
    let (mut healthy, mut degraded, mut quarantined) = (0, 0, 0);
    for slot in host.registry.slots() {
        if slot.active().is_none() {
            continue;
        }
        if slot.quarantined.load(std::sync::atomic::Ordering::Acquire) {
            quarantined += 1;
        } else if slot
            .health_failures
            .load(std::sync::atomic::Ordering::Acquire)
            > 0
            || open_alerts.iter().any(|a| a.agent == slot.name)
        {
            degraded += 1;
        } else {
            healthy += 1;
        }
    }
    Ok(Json(json!({
        "cpu_percent": cpu,
        "memory": { "used_bytes": used, "total_bytes": total },
        "disk": disk,
        "agents": { "healthy": healthy, "degraded": degraded, "quarantined": quarantined },
        "open_alerts": open_alerts.len(),
        "compile_cache": {
            "hits": host.sandbox.cache_stats().hits,
            "misses": host.sandbox.cache_stats().misses,
        },
    })))
}
