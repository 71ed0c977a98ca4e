//! The deploy pipeline: validate → compile → check (`describe`, `health` under limits) →
//! persist → swap. Also rollback, retirement, and loading the active versions at start.
//! Every state change is written to the store before it takes effect in memory.

use std::sync::Arc;
use std::time::Instant;

use overseer_sandbox::Prepared;
use serde::Serialize;

use crate::error::{Error, Result, check_name};
use crate::manifest::Manifest;
use crate::registry::Version;
use crate::services::ShadowServices;
use crate::source::Snapshot;
use crate::state::Host;
use crate::store::{Check, NewVersion, RejectedAt};

/// What a push or a rollback did.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    pub agent: String,
    pub version: u32,
    pub digest: String,
    /// False when the push matched an existing version and created nothing.
    pub created: bool,
    pub state: &'static str,
    pub checks: Vec<Check>,
    pub message: String,
    /// The interfaces of the contract the component imports, against the manifest's grants.
    pub imports: Vec<Import>,
}

/// An interface of the contract a component imports, and whether its manifest grants it. A
/// call to one that is not granted answers `denied`.
#[derive(Debug, Clone, Serialize)]
pub struct Import {
    /// `runtime`, `kv`, `llm`, `http`, `source`.
    pub interface: String,
    /// The full name: `overseer:agent/llm@0.1.0`.
    pub name: String,
    pub granted: bool,
}

/// The component's imports of this package (its types aside), against `manifest`.
pub fn imports(prepared: &Prepared, manifest: &Manifest) -> Vec<Import> {
    prepared
        .imports()
        .iter()
        .filter_map(|name| {
            let interface = name.strip_prefix("overseer:agent/")?.split('@').next()?;
            (interface != "types").then(|| Import {
                interface: interface.to_string(),
                name: name.clone(),
                granted: manifest.grants(interface),
            })
        })
        .collect()
}

/// Put a new component live for `agent`, or record why it cannot be.
///
/// Without a manifest the active version's manifest is kept. Pushing bytes and a manifest that
/// match an existing version creates nothing: the active one is reported as unchanged, an
/// earlier good one is made active again, a rejected one is refused again.
pub async fn push(
    host: &Arc<Host>,
    agent: &str,
    bytes: Vec<u8>,
    manifest: Option<Manifest>,
    origin: &str,
) -> Result<Deployed> {
    push_with_source(host, agent, bytes, manifest, origin, None).await
}

/// [`push`] of a component built from `source`: the version records the snapshot, and when it
/// goes live the agent's working copy is made to match it.
pub async fn push_with_source(
    host: &Arc<Host>,
    agent: &str,
    bytes: Vec<u8>,
    manifest: Option<Manifest>,
    origin: &str,
    source: Option<&Snapshot>,
) -> Result<Deployed> {
    check_name(agent)?;
    let encoded = source.map(Snapshot::encode);
    let source_digest = encoded.as_ref().map(|(digest, _)| digest.clone());
    let source = encoded
        .as_ref()
        .map(|(digest, bytes)| (digest.as_str(), bytes.as_slice()));
    let _deploying = host.deploy_lock(agent).await;
    let active = match host.store.agent(agent).await? {
        Some(record) => record.active_version,
        None => None,
    };
    let versions = host.store.versions(agent).await?;
    let manifest = match manifest {
        Some(m) => m,
        None => versions
            .iter()
            .find(|v| Some(v.number) == active)
            .map(|v| v.manifest.clone())
            .unwrap_or_default(),
    };
    manifest.check_capabilities()?;
    let resolved = manifest.resolve(agent, &host.config)?;
    let digest = overseer_sandbox::digest(&bytes);

    if let Some(same) = versions.iter().rev().find(|v| {
        v.digest == digest
            && v.manifest == manifest
            && (source_digest.is_none() || v.source_digest == source_digest)
    }) {
        if Some(same.number) == active {
            return Ok(Deployed {
                agent: agent.to_string(),
                version: same.number,
                digest,
                created: false,
                state: "active",
                checks: same.checks.clone(),
                message: format!(
                    "unchanged: version {} already has this digest and manifest",
                    same.number
                ),
                imports: host
                    .registry
                    .get(agent)
                    .and_then(|slot| slot.active())
                    .map(|v| imports(&v.prepared, &v.manifest))
                    .unwrap_or_default(),
            });
        }
        if same.state == "rejected" {
            return Err(Error::Rejected {
                version: same.number,
                stage: stage_name(same.stage.as_deref()),
                code: code_name(same.code.as_deref()),
                message: format!(
                    "version {} with this digest was already rejected: {}",
                    same.number,
                    same.reason.clone().unwrap_or_default()
                ),
            });
        }
        let mut deployed = activate_existing(host, agent, same.number).await?;
        deployed.message = format!("version {} with this digest is active again", same.number);
        return Ok(deployed);
    }

    let mut checks = Vec::new();
    let started = Instant::now();
    let sandbox = host.sandbox.clone();
    let (prepared, bytes) = tokio::task::spawn_blocking(move || {
        let prepared = sandbox.prepare(&bytes);
        (prepared, bytes)
    })
    .await
    .map_err(|e| Error::Internal(format!("compile task: {e}")))?;
    let prepared = match prepared {
        Ok(p) => {
            checks.push(check(
                "validate",
                true,
                "a component of the overseer:agent world",
                started,
            ));
            p
        }
        Err(overseer_sandbox::Error::Rejected(rejection)) => {
            let message = rejection.to_string();
            checks.push(check("validate", false, &message, started));
            return reject(
                host,
                &NewVersion {
                    agent,
                    digest: &digest,
                    size: bytes.len() as u64,
                    manifest: &manifest,
                    origin,
                    parent: active,
                    checks: &checks,
                    source,
                    rejected: Some(RejectedAt {
                        stage: "validate",
                        code: rejection.code(),
                        reason: &message,
                    }),
                },
                None,
            )
            .await;
        }
        Err(other) => return Err(Error::Internal(other.to_string())),
    };

    let mut failure = run_checks(
        host,
        agent,
        &prepared,
        &manifest,
        &resolved.limits,
        &mut checks,
    )
    .await;
    if failure.is_none() {
        failure = run_canary(host, agent, &prepared, &manifest, &resolved, &mut checks).await;
    }
    if let Some((stage, code, message)) = failure {
        return reject(
            host,
            &NewVersion {
                agent,
                digest: &digest,
                size: bytes.len() as u64,
                manifest: &manifest,
                origin,
                parent: active,
                checks: &checks,
                source,
                rejected: Some(RejectedAt {
                    stage,
                    code,
                    reason: &message,
                }),
            },
            Some(&bytes),
        )
        .await;
    }

    let number = host
        .store
        .insert_version(
            &NewVersion {
                agent,
                digest: &digest,
                size: bytes.len() as u64,
                manifest: &manifest,
                origin,
                parent: active,
                checks: &checks,
                source,
                rejected: None,
            },
            Some(&bytes),
            true,
        )
        .await?;
    let imported = imports(&prepared, &manifest);
    let version = Arc::new(Version::new(
        agent.to_string(),
        number,
        digest.clone(),
        manifest,
        resolved,
        prepared,
        active,
    ));
    go_live(host, &version);
    crate::edit::check_out(host, agent, number).await;
    version.start_watch();
    crate::supervisor::schedule_window_close(host, &version);
    host.release(agent, "a new version was pushed").await?;
    tracing::info!(agent, version = number, digest = %digest, origin, "version live");
    Ok(Deployed {
        agent: agent.to_string(),
        version: number,
        digest,
        created: true,
        state: "active",
        checks,
        message: format!("version {number} is live"),
        imports: imported,
    })
}

/// Run `describe` and `health` in shadow (kv and emits go to memory). Returns the failing
/// stage, its code and the reason, or `None` when both pass.
async fn run_checks(
    host: &Arc<Host>,
    agent: &str,
    prepared: &Prepared,
    manifest: &Manifest,
    limits: &overseer_sandbox::Limits,
    checks: &mut Vec<Check>,
) -> Option<(&'static str, &'static str, String)> {
    let shadow = Arc::new(ShadowServices::new(host.clone(), agent, None, manifest));
    let started = Instant::now();
    match host
        .sandbox
        .describe(prepared, limits, shadow.clone())
        .await
    {
        Ok(outcome) => {
            let info = outcome.value;
            checks.push(check(
                "describe",
                true,
                &format!("{} {}: {}", info.name, info.version, info.description),
                started,
            ));
        }
        Err(e) => {
            let message = format!("describe failed: {e}");
            checks.push(check("describe", false, &message, started));
            return Some(("describe", "check_failed", message));
        }
    }
    let started = Instant::now();
    match host.sandbox.health(prepared, limits, shadow).await {
        Ok(outcome) if outcome.value.ok => {
            checks.push(check("health", true, &outcome.value.detail, started));
            None
        }
        Ok(outcome) => {
            let message = format!("health is not ok: {}", outcome.value.detail);
            checks.push(check("health", false, &message, started));
            Some(("health", "unhealthy", message))
        }
        Err(e) => {
            let message = format!("health failed: {e}");
            checks.push(check("health", false, &message, started));
            Some(("health", "check_failed", message))
        }
    }
}

async fn reject(
    host: &Arc<Host>,
    record: &NewVersion<'_>,
    bytes: Option<&[u8]>,
) -> Result<Deployed> {
    let number = host.store.insert_version(record, bytes, false).await?;
    host.metrics.rejection(record.agent);
    let Some(rejected) = record.rejected else {
        return Err(Error::Internal("reject without a reason".to_string()));
    };
    tracing::warn!(
        agent = record.agent,
        version = number,
        stage = rejected.stage,
        reason = rejected.reason,
        "version rejected"
    );
    Err(Error::Rejected {
        version: number,
        stage: stage_name(Some(rejected.stage)),
        code: code_name(Some(rejected.code)),
        message: rejected.reason.to_string(),
    })
}

fn check(step: &str, ok: bool, detail: &str, started: Instant) -> Check {
    Check {
        step: step.to_string(),
        ok,
        detail: detail.to_string(),
        ms: started.elapsed().as_secs_f64() * 1000.0,
    }
}

/// Map a stored stage back to the static name the error carries.
fn stage_name(stage: Option<&str>) -> &'static str {
    match stage {
        Some("validate") => "validate",
        Some("describe") => "describe",
        Some("health") => "health",
        Some("canary") => "canary",
        _ => "check",
    }
}

/// Map a stored code back to the static code the error carries.
fn code_name(code: Option<&str>) -> &'static str {
    const CODES: &[&str] = &[
        "not_wasm",
        "not_a_component",
        "invalid_component",
        "unknown_import",
        "wrong_world",
        "check_failed",
        "unhealthy",
        "canary_failed",
    ];
    code.and_then(|c| CODES.iter().find(|k| **k == c).copied())
        .unwrap_or("rejected")
}

/// Make `version` serve (the store already says so): swap it in, restart its schedule and its
/// health loop.
fn go_live(host: &Arc<Host>, version: &Arc<Version>) {
    host.registry
        .activate(version.clone(), host.config.keep_compiled);
    host.reschedule(version);
    host.watch_health(version);
    host.metrics.swap(&version.agent);
}

/// Replay the last events the active version handled successfully through the candidate, in
/// shadow. Any of them failing rejects the candidate. A deadline hit ends the replay there: each
/// further event would likely cost the candidate's whole deadline again.
async fn run_canary(
    host: &Arc<Host>,
    agent: &str,
    prepared: &Prepared,
    manifest: &Manifest,
    resolved: &crate::manifest::Resolved,
    checks: &mut Vec<Check>,
) -> Option<(&'static str, &'static str, String)> {
    let events = host
        .registry
        .get(agent)
        .map(|slot| slot.recent(resolved.policy.canary as usize))
        .unwrap_or_default();
    if events.is_empty() {
        return None;
    }
    let started = Instant::now();
    let shadow = Arc::new(ShadowServices::new(host.clone(), agent, None, manifest));
    let mut failed = Vec::new();
    let mut replayed = 0;
    for event in &events {
        replayed += 1;
        let outcome = host
            .sandbox
            .handle(prepared, &resolved.limits, shadow.clone(), event.clone())
            .await;
        if let Err(e) = outcome {
            let code = match &e {
                overseer_sandbox::Error::Guest(g) => g.code(),
                overseer_sandbox::Error::Fault(f) => f.code(),
                _ => "internal",
            };
            failed.push(serde_json::json!({ "event": event.id, "topic": event.topic, "code": code, "error": e.to_string() }));
            if matches!(
                e,
                overseer_sandbox::Error::Fault(overseer_sandbox::Fault::Timeout(_))
            ) {
                break;
            }
        }
    }
    if failed.is_empty() {
        checks.push(check(
            "canary",
            true,
            &format!("{} recent events replayed in shadow", events.len()),
            started,
        ));
        return None;
    }
    let stopped = if replayed < events.len() {
        format!(" (the replay of {} stopped at a timeout)", events.len())
    } else {
        String::new()
    };
    let message = format!(
        "{} of {replayed} replayed events failed where the active version succeeded{stopped}: {}",
        failed.len(),
        serde_json::Value::Array(failed)
    );
    checks.push(check("canary", false, &message, started));
    Some(("canary", "canary_failed", message))
}

/// Go back to the previous good version, or to version `to`.
pub async fn rollback(host: &Arc<Host>, agent: &str, to: Option<u32>) -> Result<Deployed> {
    check_name(agent)?;
    let _deploying = host.deploy_lock(agent).await;
    let record = host
        .store
        .agent(agent)
        .await?
        .ok_or_else(|| Error::AgentNotFound(agent.to_string()))?;
    let versions = host.store.versions(agent).await?;
    let target =
        match to {
            Some(n) => {
                let v = versions.iter().find(|v| v.number == n).ok_or_else(|| {
                    Error::VersionNotFound {
                        agent: agent.to_string(),
                        version: n,
                    }
                })?;
                if v.state == "rejected" {
                    return Err(Error::VersionNotServable {
                        agent: agent.to_string(),
                        version: n,
                    });
                }
                n
            }
            None => {
                let below = record.active_version.unwrap_or(u32::MAX);
                versions
                    .iter()
                    .rev()
                    .find(|v| v.state != "rejected" && v.number < below)
                    .map(|v| v.number)
                    .ok_or_else(|| Error::NoPreviousVersion(agent.to_string()))?
            }
        };
    let mut deployed = activate_existing(host, agent, target).await?;
    if let Some(from) = record.active_version.filter(|from| *from != target) {
        crate::edit::rolled_back(host, agent, from).await;
    }
    host.metrics.rollback(agent);
    host.release(agent, "rolled back").await?;
    deployed.message = format!("rolled back to version {target}");
    tracing::info!(agent, version = target, "rolled back");
    Ok(deployed)
}

/// Make an existing good version active. The caller holds the agent's deploy lock.
async fn activate_existing(host: &Arc<Host>, agent: &str, number: u32) -> Result<Deployed> {
    let record =
        host.store
            .version(agent, number)
            .await?
            .ok_or_else(|| Error::VersionNotFound {
                agent: agent.to_string(),
                version: number,
            })?;
    let version = match host
        .registry
        .get(agent)
        .and_then(|slot| slot.compiled(number))
    {
        Some(version) => version,
        None => Arc::new(load_version(host, agent, number).await?),
    };
    let already = host
        .registry
        .get(agent)
        .and_then(|s| s.active())
        .is_some_and(|v| v.number == number);
    if !already {
        host.store.set_active(agent, Some(number)).await?;
        go_live(host, &version);
        crate::edit::check_out(host, agent, number).await;
    }
    Ok(Deployed {
        agent: agent.to_string(),
        version: number,
        digest: record.digest,
        created: false,
        state: "active",
        checks: record.checks,
        message: format!("version {number} is active"),
        imports: imports(&version.prepared, &version.manifest),
    })
}

/// Compile (normally: load from the cache) a stored version.
async fn load_version(host: &Arc<Host>, agent: &str, number: u32) -> Result<Version> {
    let record =
        host.store
            .version(agent, number)
            .await?
            .ok_or_else(|| Error::VersionNotFound {
                agent: agent.to_string(),
                version: number,
            })?;
    let bytes = host.store.component(&record.digest).await?.ok_or_else(|| {
        Error::Internal(format!(
            "component {} of {agent} v{number} is missing",
            record.digest
        ))
    })?;
    let resolved = record.manifest.resolve(agent, &host.config)?;
    let sandbox = host.sandbox.clone();
    let prepared = tokio::task::spawn_blocking(move || sandbox.prepare(&bytes))
        .await
        .map_err(|e| Error::Internal(format!("compile task: {e}")))?
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Version::new(
        agent.to_string(),
        number,
        record.digest,
        record.manifest,
        resolved,
        prepared,
        record.parent,
    ))
}

/// Take an agent out of service. Its history, kv and logs are kept; a later push revives it.
pub async fn retire(host: &Arc<Host>, agent: &str) -> Result<()> {
    check_name(agent)?;
    let _deploying = host.deploy_lock(agent).await;
    if host.store.agent(agent).await?.is_none() {
        return Err(Error::AgentNotFound(agent.to_string()));
    }
    host.store.set_active(agent, None).await?;
    host.registry.remove(agent);
    tracing::info!(agent, "retired");
    Ok(())
}

/// Load every agent's active version at start, from the compile cache when it has them.
pub async fn load_active(host: &Arc<Host>) -> Result<()> {
    for agent in host.store.agents().await? {
        let Some(number) = agent.active_version else {
            continue;
        };
        match load_version(host, &agent.name, number).await {
            Ok(version) => {
                let version = Arc::new(version);
                let slot = host
                    .registry
                    .activate(version.clone(), host.config.keep_compiled);
                slot.quarantined.store(
                    agent.quarantined_ms.is_some(),
                    std::sync::atomic::Ordering::Release,
                );
                host.reschedule(&version);
                host.watch_health(&version);
                tracing::info!(agent = agent.name, version = number, "loaded");
            }
            Err(e) => {
                tracing::error!(agent = agent.name, version = number, error = %e, "could not load the active version")
            }
        }
    }
    Ok(())
}

/// Roll back from version `from` after a failed watch window: to the version it replaced when
/// that one can serve, else to the previous good one. Returns the version now active, or
/// `None` when there is nothing to go back to. Does nothing if `from` no longer serves.
pub async fn roll_back_from(host: &Arc<Host>, agent: &str, from: u32) -> Result<Option<u32>> {
    let _deploying = host.deploy_lock(agent).await;
    let Some(record) = host.store.agent(agent).await? else {
        return Ok(None);
    };
    if record.active_version != Some(from) {
        return Ok(record.active_version);
    }
    let versions = host.store.versions(agent).await?;
    let parent = versions
        .iter()
        .find(|v| v.number == from)
        .and_then(|v| v.parent);
    let target = versions
        .iter()
        .filter(|v| {
            v.state != "rejected" && v.number != from && v.verdict.as_deref() != Some("rolled-back")
        })
        .filter(|v| Some(v.number) == parent || v.number < from)
        .max_by_key(|v| (Some(v.number) == parent, v.number))
        .map(|v| v.number);
    let Some(target) = target else {
        return Ok(None);
    };
    activate_existing(host, agent, target).await?;
    crate::edit::rolled_back(host, agent, from).await;
    host.metrics.rollback(agent);
    tracing::warn!(agent, from, to = target, "rolled back automatically");
    Ok(Some(target))
}

/// Go back to the newest version whose watch window called it stable, other than the active
/// one. Returns `(from, to)`, or `None` when there is no such version.
pub async fn to_last_stable(host: &Arc<Host>, agent: &str) -> Result<Option<(u32, u32)>> {
    let _deploying = host.deploy_lock(agent).await;
    let Some(record) = host.store.agent(agent).await? else {
        return Ok(None);
    };
    let Some(active) = record.active_version else {
        return Ok(None);
    };
    let target = host
        .store
        .versions(agent)
        .await?
        .into_iter()
        .filter(|v| {
            v.number != active && v.state != "rejected" && v.verdict.as_deref() == Some("stable")
        })
        .map(|v| v.number)
        .max();
    let Some(target) = target else {
        return Ok(None);
    };
    activate_existing(host, agent, target).await?;
    crate::edit::rolled_back(host, agent, active).await;
    host.metrics.rollback(agent);
    tracing::warn!(
        agent,
        from = active,
        to = target,
        "returned to the last stable version"
    );
    Ok(Some((active, target)))
}
