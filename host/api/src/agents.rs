//! Agents and their versions: list, show, push, roll back, invoke, logs, release, retire.

use axum::extract::rejection::BytesRejection;
use axum::extract::{Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use overseer_kernel::{Deployed, Manifest, Push, bus::host_event};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, ApiResult, AppState, PageQueryResult, agent_name, known_agent, paging};

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
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
}

/// An agent's state for the listing: `active`, `retired`, `no_version`, or `unservable` when
/// the store names an active version that cannot load.
async fn agent_state(
    state: &AppState,
    record: &overseer_store::AgentRecord,
) -> ApiResult<&'static str> {
    let live = state
        .kernel
        .registry
        .get(&record.name)
        .and_then(|s| s.active());
    Ok(match (live, record.active_version, record.retired_ms) {
        (Some(_), _, _) => "active",
        (None, Some(number), _) => {
            let faulty = state
                .kernel
                .store
                .version(&record.name, number)
                .await?
                .is_some_and(|v| v.fault.is_some());
            if faulty { "unservable" } else { "no_version" }
        }
        (None, None, Some(_)) => "retired",
        (None, None, None) => "no_version",
    })
}

async fn list_agents(
    State(state): State<AppState>,
    query: PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = paging(query, 100)?;
    let (records, next) = paging.slice(state.kernel.store.agents().await?, |a| a.name.clone())?;
    let mut agents = Vec::new();
    for record in records {
        let live = state
            .kernel
            .registry
            .get(&record.name)
            .and_then(|s| s.active());
        agents.push(json!({
            "name": record.name,
            "active_version": record.active_version,
            "digest": live.as_ref().map(|v| v.digest.clone()),
            "description": live.as_ref().and_then(|v| v.manifest.description.clone()),
            "state": agent_state(&state, &record).await?,
            "quarantined": record.quarantined_ms.is_some(),
        }));
    }
    Ok(Json(json!({ "agents": agents, "next": next })))
}

async fn show_agent(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = known_agent(&state, &name).await?;
    let kernel = &state.kernel;
    let slot = kernel.registry.get(&name);
    let live = slot.as_ref().and_then(|s| s.active());
    let gate = slot.as_ref().map(|s| s.gate());
    let metrics = &kernel.metrics;
    Ok(Json(json!({
        "name": record.name,
        "active_version": record.active_version,
        "state": agent_state(&state, &record).await?,
        "retired": record.retired_ms.is_some(),
        "digest": live.as_ref().map(|v| v.digest.clone()),
        "manifest": live.as_ref().map(|v| {
            let mut manifest = json!(v.manifest.as_ref());
            overseer_kernel::manifest::redact_json(&mut manifest);
            manifest
        }),
        "limits": live.as_ref().map(|v| json!({
            "fuel": v.resolved.limits.fuel,
            "memory_bytes": v.resolved.limits.memory_bytes,
            "timeout_ms": v.resolved.limits.timeout.as_millis() as u64,
            "concurrency": v.resolved.concurrency,
            "queue": v.resolved.queue,
            "every_ms": v.resolved.every.map(|d| d.as_millis() as u64),
            "reuse": v.instances.as_ref().map(|instances| {
                let policy = instances.policy();
                json!({
                    "calls": (policy.calls != u32::MAX).then_some(policy.calls),
                    "max_age_ms": policy.max_age.map(|d| d.as_millis() as u64),
                    "idle": instances.idle(),
                    "made": instances.made(),
                })
            }),
        })),
        "watching": live.as_ref().is_some_and(|v| v.watching()),
        "quarantined": record.quarantined_ms.is_some(),
        "counters": {
            "invocations_ok": metrics.count(&name, "ok"),
            "swaps": metrics.agent_counter(&name, "swaps"),
            "rollbacks": metrics.agent_counter(&name, "rollbacks"),
            "quarantines": metrics.agent_counter(&name, "quarantines"),
            "rejected_versions": metrics.agent_counter(&name, "rejected"),
            "fuel_consumed": metrics.agent_counter(&name, "fuel"),
            "consecutive_health_failures": kernel.supervisor.health_failures(&name),
            "running": gate.as_ref().map(|g| g.running()).unwrap_or(0),
            "waiting": gate.as_ref().map(|g| g.waiting()).unwrap_or(0),
        },
    })))
}

async fn list_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = paging(query, 100)?;
    let record = known_agent(&state, &name).await?;
    let (versions, next) = paging.slice(state.kernel.store.versions(&name).await?, |v| {
        v.number.to_string()
    })?;
    let versions: Vec<Value> = versions
        .into_iter()
        .map(|v| {
            let shown = if v.state == overseer_store::VersionState::Rejected {
                "rejected"
            } else if v.fault.is_some() {
                "unservable"
            } else if Some(v.number) == record.active_version {
                "active"
            } else if v.condemned() {
                "rolled-back"
            } else {
                "inactive"
            };
            let mut value = serde_json::to_value(&v).unwrap_or(Value::Null);
            value["state"] = json!(shown);
            overseer_kernel::manifest::redact_json(&mut value["manifest"]);
            value
        })
        .collect();
    Ok(Json(
        json!({ "agent": name, "active_version": record.active_version, "versions": versions, "next": next }),
    ))
}

/// `application/wasm` (or any non-multipart body) is the component itself; `multipart/form-data`
/// carries a `component` part and an optional `manifest` part (TOML).
async fn push_version(
    State(state): State<AppState>,
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
    let deployed = state
        .kernel
        .deployer
        .push(Push::component(&name, bytes, manifest))
        .await?;
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
                let text = std::str::from_utf8(&data).map_err(|_| {
                    ApiError::from(overseer_kernel::Error::InvalidManifest(
                        "not UTF-8".to_string(),
                    ))
                })?;
                manifest = Some(Manifest::parse(text)?);
            }
            other => {
                return Err(ApiError::invalid(format!(
                    "unexpected form part {other:?}: send `component` and optionally `manifest`"
                )));
            }
        }
    }
    let component =
        component.ok_or_else(|| ApiError::invalid("the form has no `component` part"))?;
    Ok((component, manifest))
}

/// A rollback to a named version. Without a body the rollback goes to the previous good
/// version; a body that is not exactly `{"version": N}` is refused, never read as that.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackRequest {
    version: u32,
}

async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Deployed>> {
    agent_name(&name)?;
    let version = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let wrong = |e: &dyn std::fmt::Display| {
            ApiError::invalid(format!(
                "expected {{\"version\": N}}, or no body for the previous good version: {e}"
            ))
        };
        // An object only: serde would read `[2]` as the struct's fields in order.
        let value: Value = serde_json::from_slice(&body).map_err(|e| wrong(&e))?;
        if !value.is_object() {
            return Err(wrong(&"not a JSON object"));
        }
        let request: RollbackRequest = serde_json::from_value(value).map_err(|e| wrong(&e))?;
        Some(request.version)
    };
    Ok(Json(state.kernel.deployer.rollback(&name, version).await?))
}

async fn invoke(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    agent_name(&name)?;
    let body = body.map_err(|e| ApiError::body(e.status(), e.body_text()))?;
    let payload = if body.iter().all(u8::is_ascii_whitespace) {
        "null".to_string()
    } else {
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::invalid("the payload is not UTF-8"))?;
        serde_json::from_str::<serde::de::IgnoredAny>(&text)
            .map_err(|e| ApiError::invalid(format!("the payload must be a JSON document: {e}")))?;
        text
    };
    let event = host_event("invoke".to_string(), payload, "http");
    let invoked = state.kernel.invoker.invoke(&name, event).await?;
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

/// The newest log lines, oldest first; `next` pages back to older ones.
async fn logs(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: PageQueryResult,
) -> ApiResult<Json<Value>> {
    let paging = paging(query, 100)?;
    known_agent(&state, &name).await?;
    let mut lines = state.kernel.store.logs(&name, paging.store_page()?).await?;
    // Read oldest first, the page's extra line is its first.
    let next = if lines.len() > paging.limit as usize {
        lines.remove(0);
        lines.first().map(|line| line.seq.to_string())
    } else {
        None
    };
    Ok(Json(json!({ "agent": name, "logs": lines, "next": next })))
}

async fn retire_agent(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    agent_name(&name)?;
    state.kernel.deployer.retire(&name).await?;
    Ok(Json(json!({ "agent": name, "retired": true })))
}

async fn release(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    known_agent(&state, &name).await?;
    state
        .kernel
        .deployer
        .release(&name, "released by request")
        .await?;
    Ok(Json(json!({ "agent": name, "quarantined": false })))
}
