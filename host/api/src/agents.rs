//! Agents and their versions: list, show, push, roll back, invoke, logs, release, retire.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use bytes::Bytes;
use overseer_kernel::{Deployed, Manifest, Push, bus::host_event};
use overseer_store::LogRecord;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::openapi::{AgentPath, PageQuery};
use crate::{ApiError, ApiResult, AppState, PageQueryResult, agent_name, known_agent, paging};

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(named(routes!(list_agents)))
        .routes(named(routes!(show_agent, retire_agent)))
        .routes(named(routes!(list_versions, push_version)))
        .routes(named(routes!(rollback)))
        .routes(named(routes!(invoke)))
        .routes(named(routes!(logs)))
        .routes(named(routes!(release)))
}

/// Where an agent stands.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
enum AgentState {
    /// A version serves.
    Active,
    /// Retired: its history is kept, a push revives it.
    Retired,
    /// No version was ever activated.
    NoVersion,
    /// The store names an active version that cannot load.
    Unservable,
}

/// `GET /v1/agents`.
#[derive(Debug, Serialize, ToSchema)]
struct AgentList {
    agents: Vec<AgentSummary>,
    /// The cursor of the next page (an agent's name), `null` on the last.
    next: Option<String>,
}

/// An agent in the listing.
#[derive(Debug, Serialize, ToSchema)]
struct AgentSummary {
    name: String,
    active_version: Option<u32>,
    /// SHA-256 of the serving component, hex.
    digest: Option<String>,
    description: Option<String>,
    state: AgentState,
    quarantined: bool,
}

/// `GET /v1/agents/{name}`.
#[derive(Debug, Serialize, ToSchema)]
struct AgentDetail {
    name: String,
    active_version: Option<u32>,
    state: AgentState,
    retired: bool,
    digest: Option<String>,
    /// The serving version's manifest (`agent.toml` as JSON), its secrets redacted.
    manifest: Option<Value>,
    /// The serving version's limits, as the host resolved them.
    limits: Option<ResolvedLimits>,
    /// Whether the serving version's watch window is open.
    watching: bool,
    quarantined: bool,
    counters: Counters,
}

/// A version's limits after the host's defaults and ceilings.
#[derive(Debug, Serialize, ToSchema)]
struct ResolvedLimits {
    fuel: u64,
    memory_bytes: u64,
    timeout_ms: u64,
    concurrency: u32,
    queue: u32,
    /// The schedule's period, when the agent runs on one.
    every_ms: Option<u64>,
    /// Instances kept between calls (`[limits] reuse`), when on.
    reuse: Option<Reuse>,
}

/// Instance reuse of a version.
#[derive(Debug, Serialize, ToSchema)]
struct Reuse {
    /// Calls one instance serves; `null` when only its age limits it.
    calls: Option<u32>,
    /// Age past which an instance is dropped.
    max_age_ms: Option<u64>,
    /// Instances waiting for a call now.
    idle: usize,
    /// Instances made since the version was loaded.
    made: u64,
}

/// An agent's counters since the daemon started.
#[derive(Debug, Serialize, ToSchema)]
struct Counters {
    invocations_ok: u64,
    swaps: u64,
    rollbacks: u64,
    quarantines: u64,
    rejected_versions: u64,
    fuel_consumed: u64,
    consecutive_health_failures: u32,
    /// Calls running now.
    running: u32,
    /// Calls waiting for a slot now.
    waiting: u32,
}

/// An agent's state for the listing: `active`, `retired`, `no_version`, or `unservable` when
/// the store names an active version that cannot load.
async fn agent_state(
    state: &AppState,
    record: &overseer_store::AgentRecord,
) -> ApiResult<AgentState> {
    let live = state
        .kernel
        .registry
        .get(&record.name)
        .and_then(|s| s.active());
    Ok(match (live, record.active_version, record.retired_ms) {
        (Some(_), _, _) => AgentState::Active,
        (None, Some(number), _) => {
            let faulty = state
                .kernel
                .store
                .version(&record.name, number)
                .await?
                .is_some_and(|v| v.fault.is_some());
            if faulty {
                AgentState::Unservable
            } else {
                AgentState::NoVersion
            }
        }
        (None, None, Some(_)) => AgentState::Retired,
        (None, None, None) => AgentState::NoVersion,
    })
}

/// Agents by name.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", params(PageQuery),
    responses((status = 200, body = AgentList)))]
async fn list_agents(
    State(state): State<AppState>,
    query: PageQueryResult,
) -> ApiResult<Json<AgentList>> {
    let paging = paging(query, 100)?;
    let (records, next) = paging.slice(state.kernel.store.agents().await?, |a| a.name.clone())?;
    let mut agents = Vec::new();
    for record in records {
        let live = state
            .kernel
            .registry
            .get(&record.name)
            .and_then(|s| s.active());
        agents.push(AgentSummary {
            state: agent_state(&state, &record).await?,
            digest: live.as_ref().map(|v| v.digest.clone()),
            description: live.as_ref().and_then(|v| v.manifest.description.clone()),
            quarantined: record.quarantined_ms.is_some(),
            active_version: record.active_version,
            name: record.name,
        });
    }
    Ok(Json(AgentList { agents, next }))
}

/// One agent: its state, the serving version's manifest and limits, and its counters.
#[utoipa::path(get, path = "/v1/agents/{name}", tag = "agents", params(AgentPath),
    responses((status = 200, body = AgentDetail)))]
async fn show_agent(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
) -> ApiResult<Json<AgentDetail>> {
    let record = known_agent(&state, &name).await?;
    let kernel = &state.kernel;
    let slot = kernel.registry.get(&name);
    let live = slot.as_ref().and_then(|s| s.active());
    let gate = slot.as_ref().map(|s| s.gate());
    let metrics = &kernel.metrics;
    Ok(Json(AgentDetail {
        state: agent_state(&state, &record).await?,
        retired: record.retired_ms.is_some(),
        digest: live.as_ref().map(|v| v.digest.clone()),
        manifest: live.as_ref().map(|v| {
            let mut manifest = serde_json::to_value(v.manifest.as_ref()).unwrap_or(Value::Null);
            overseer_kernel::manifest::redact_json(&mut manifest);
            manifest
        }),
        limits: live.as_ref().map(|v| ResolvedLimits {
            fuel: v.resolved.limits.fuel,
            memory_bytes: v.resolved.limits.memory_bytes as u64,
            timeout_ms: v.resolved.limits.timeout.as_millis() as u64,
            concurrency: v.resolved.concurrency,
            queue: v.resolved.queue,
            every_ms: v.resolved.every.map(|d| d.as_millis() as u64),
            reuse: v.instances.as_ref().map(|instances| {
                let policy = instances.policy();
                Reuse {
                    calls: (policy.calls != u32::MAX).then_some(policy.calls),
                    max_age_ms: policy.max_age.map(|d| d.as_millis() as u64),
                    idle: instances.idle(),
                    made: instances.made(),
                }
            }),
        }),
        watching: live.as_ref().is_some_and(|v| v.watching()),
        quarantined: record.quarantined_ms.is_some(),
        counters: Counters {
            invocations_ok: metrics.count(&name, "ok"),
            swaps: metrics.agent_counter(&name, "swaps"),
            rollbacks: metrics.agent_counter(&name, "rollbacks"),
            quarantines: metrics.agent_counter(&name, "quarantines"),
            rejected_versions: metrics.agent_counter(&name, "rejected"),
            fuel_consumed: metrics.agent_counter(&name, "fuel"),
            consecutive_health_failures: kernel.supervisor.health_failures(&name),
            running: gate.as_ref().map(|g| g.running()).unwrap_or(0),
            waiting: gate.as_ref().map(|g| g.waiting()).unwrap_or(0),
        },
        active_version: record.active_version,
        name: record.name,
    }))
}

/// `GET /v1/agents/{name}/versions`.
#[derive(Debug, Serialize, ToSchema)]
struct VersionList {
    agent: String,
    active_version: Option<u32>,
    versions: Vec<VersionShown>,
    /// The cursor of the next page (a version's number), `null` on the last.
    next: Option<String>,
}

/// Where a version stands, as shown.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
enum ShownState {
    /// The agent's active version.
    Active,
    /// Passed its checks; not serving.
    Inactive,
    /// Failed a check of the pipeline.
    Rejected,
    /// Stored, but no longer loadable.
    Unservable,
    /// Condemned by its watch window or replaced by a rollback.
    RolledBack,
}

/// A version with its shown state, its manifest's secrets redacted.
#[derive(Debug, Serialize, ToSchema)]
struct VersionShown {
    agent: String,
    number: u32,
    /// SHA-256 of the component, hex.
    digest: String,
    /// The component's size in bytes.
    size: u64,
    /// The manifest (`agent.toml`) as JSON.
    manifest: Value,
    origin: overseer_store::Origin,
    /// The edit that built it, when its origin is an edit.
    edit: Option<i64>,
    /// The version that was active when this one was pushed.
    parent: Option<u32>,
    state: ShownState,
    /// Where a rejected version stopped, its code and why.
    stage: Option<String>,
    code: Option<String>,
    reason: Option<String>,
    checks: Vec<overseer_store::Check>,
    created_ms: u64,
    verdict: Option<overseer_store::Verdict>,
    verdict_detail: Option<String>,
    /// Calls and failures counted by its last verdict.
    calls: u64,
    failures: u64,
    /// The source snapshot it was built from.
    source_digest: Option<String>,
    /// Why a stored version cannot be served.
    fault: Option<String>,
}

/// The agent's versions, oldest first.
#[utoipa::path(get, path = "/v1/agents/{name}/versions", tag = "agents", params(AgentPath, PageQuery),
    responses((status = 200, body = VersionList)))]
async fn list_versions(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
    query: PageQueryResult,
) -> ApiResult<Json<VersionList>> {
    let paging = paging(query, 100)?;
    let record = known_agent(&state, &name).await?;
    let (versions, next) = paging.slice(state.kernel.store.versions(&name).await?, |v| {
        v.number.to_string()
    })?;
    let versions = versions
        .into_iter()
        .map(|v| {
            let state = if v.state == overseer_store::VersionState::Rejected {
                ShownState::Rejected
            } else if v.fault.is_some() {
                ShownState::Unservable
            } else if Some(v.number) == record.active_version {
                ShownState::Active
            } else if v.condemned() {
                ShownState::RolledBack
            } else {
                ShownState::Inactive
            };
            let mut manifest = v.manifest;
            overseer_kernel::manifest::redact_json(&mut manifest);
            VersionShown {
                agent: v.agent,
                number: v.number,
                digest: v.digest,
                size: v.size,
                manifest,
                origin: v.origin,
                edit: v.edit,
                parent: v.parent,
                state,
                stage: v.stage,
                code: v.code,
                reason: v.reason,
                checks: v.checks,
                created_ms: v.created_ms,
                verdict: v.verdict,
                verdict_detail: v.verdict_detail,
                calls: v.calls,
                failures: v.failures,
                source_digest: v.source_digest,
                fault: v.fault,
            }
        })
        .collect();
    Ok(Json(VersionList {
        agent: name,
        active_version: record.active_version,
        versions,
        next,
    }))
}

/// The form of a push with a manifest.
#[derive(ToSchema)]
#[allow(dead_code)]
struct PushForm {
    /// The component (`wasm32-wasip2`).
    #[schema(value_type = Wasm)]
    component: Vec<u8>,
    /// The manifest, `agent.toml` as TOML text; without it the active version's is kept.
    manifest: Option<String>,
}

/// A component's bytes: a WebAssembly component for `wasm32-wasip2`.
struct Wasm;

impl utoipa::PartialSchema for Wasm {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .content_media_type("application/wasm")
            .into()
    }
}

impl ToSchema for Wasm {}

/// Push a component through the pipeline.
///
/// `application/wasm` (or any other body that is not multipart, `application/octet-stream`
/// among them) is the component itself; `multipart/form-data` carries a `component` part and
/// an optional `manifest` part (TOML). 201 with the new version, 200 when the same bytes and
/// manifest are a version already.
#[utoipa::path(post, path = "/v1/agents/{name}/versions", tag = "agents", params(AgentPath),
    request_body(content(
        (Wasm = "application/wasm"),
        (Wasm = "application/octet-stream"),
        (PushForm = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "a new version, live", body = Deployed),
        (status = 200, description = "the same bytes and manifest: nothing new", body = Deployed),
    ))]
async fn push_version(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RollbackRequest {
    version: u32,
}

/// Back to the previous good version (no body), or to `{"version": N}`.
#[utoipa::path(post, path = "/v1/agents/{name}/rollback", tag = "agents", params(AgentPath),
    request_body(content = Option<RollbackRequest>, content_type = "application/json"),
    responses((status = 200, body = Deployed)))]
async fn rollback(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
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

/// What a call answered.
#[derive(Debug, Serialize, ToSchema)]
struct Invoked {
    agent: String,
    /// The version that answered.
    version: u32,
    /// The agent's answer: its JSON, or a string when it is not JSON.
    output: Value,
    elapsed_ms: f64,
    fuel_used: u64,
}

/// Run the agent's `handle` with the JSON body as the event's payload (`null` without one).
#[utoipa::path(post, path = "/v1/agents/{name}/invoke", tag = "agents", params(AgentPath),
    request_body(content = Option<Value>, description = "any JSON document", content_type = "application/json"),
    responses((status = 200, body = Invoked)))]
async fn invoke(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Invoked>> {
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
    Ok(Json(Invoked {
        agent: name,
        version: invoked.version,
        output,
        elapsed_ms: invoked.elapsed.as_secs_f64() * 1000.0,
        fuel_used: invoked.fuel_used,
    }))
}

/// `GET /v1/agents/{name}/logs`.
#[derive(Debug, Serialize, ToSchema)]
struct Logs {
    agent: String,
    /// Oldest first.
    logs: Vec<LogRecord>,
    /// The cursor of the page of older lines (a line's `seq`), `null` on the first.
    next: Option<String>,
}

/// The newest log lines, oldest first; `next` pages back to older ones.
#[utoipa::path(get, path = "/v1/agents/{name}/logs", tag = "agents", params(AgentPath, PageQuery),
    responses((status = 200, body = Logs)))]
async fn logs(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
    query: PageQueryResult,
) -> ApiResult<Json<Logs>> {
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
    Ok(Json(Logs {
        agent: name,
        logs: lines,
        next,
    }))
}

/// What a retirement did.
#[derive(Debug, Serialize, ToSchema)]
struct Retired {
    agent: String,
    retired: bool,
}

/// Retire an agent: history, kv and logs are kept, its open alerts resolved; a push revives it.
#[utoipa::path(delete, path = "/v1/agents/{name}", tag = "agents", params(AgentPath),
    responses((status = 200, body = Retired)))]
async fn retire_agent(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
) -> ApiResult<Json<Retired>> {
    agent_name(&name)?;
    state.kernel.deployer.retire(&name).await?;
    Ok(Json(Retired {
        agent: name,
        retired: true,
    }))
}

/// What a release did.
#[derive(Debug, Serialize, ToSchema)]
struct Released {
    agent: String,
    quarantined: bool,
}

/// Put a quarantined agent back into routing.
#[utoipa::path(post, path = "/v1/agents/{name}/release", tag = "agents", params(AgentPath),
    responses((status = 200, body = Released)))]
async fn release(
    State(state): State<AppState>,
    Path(AgentPath { name }): Path<AgentPath>,
) -> ApiResult<Json<Released>> {
    known_agent(&state, &name).await?;
    state
        .kernel
        .deployer
        .release(&name, "released by request")
        .await?;
    Ok(Json(Released {
        agent: name,
        quarantined: false,
    }))
}
