//! The deploy pipeline: validate → compile → check (`describe`, `health` under limits) →
//! persist → swap. Also rollback, retirement, and loading the active versions at start.
//! Every state change is written to the store before it takes effect in memory.

use std::sync::Arc;
use std::time::Instant;

use overseer_sandbox::{MemoryServices, Prepared};
use serde::Serialize;

use crate::error::{Error, Result, check_name};
use crate::manifest::Manifest;
use crate::registry::Version;
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
    check_name(agent)?;
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
    let resolved = manifest.resolve(agent, &host.config)?;
    let digest = overseer_sandbox::digest(&bytes);

    if let Some(same) = versions
        .iter()
        .rev()
        .find(|v| v.digest == digest && v.manifest == manifest)
    {
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

    let failure = run_checks(host, &prepared, &manifest, &resolved.limits, &mut checks).await;
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
                rejected: None,
            },
            Some(&bytes),
            true,
        )
        .await?;
    go_live(
        host,
        Version {
            agent: agent.to_string(),
            number,
            digest: digest.clone(),
            manifest,
            resolved,
            prepared,
        },
    );
    tracing::info!(agent, version = number, digest = %digest, origin, "version live");
    Ok(Deployed {
        agent: agent.to_string(),
        version: number,
        digest,
        created: true,
        state: "active",
        checks,
        message: format!("version {number} is live"),
    })
}

/// Run `describe` and `health` in shadow (kv and emits go to memory). Returns the failing
/// stage, its code and the reason, or `None` when both pass.
async fn run_checks(
    host: &Arc<Host>,
    prepared: &Prepared,
    manifest: &Manifest,
    limits: &overseer_sandbox::Limits,
    checks: &mut Vec<Check>,
) -> Option<(&'static str, &'static str, String)> {
    let shadow = Arc::new(MemoryServices::with_config(manifest.config.clone()));
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
    ];
    code.and_then(|c| CODES.iter().find(|k| **k == c).copied())
        .unwrap_or("rejected")
}

fn go_live(host: &Arc<Host>, version: Version) {
    let version = Arc::new(version);
    host.registry
        .activate(version.clone(), host.config.keep_compiled);
    host.reschedule(&version);
    host.metrics.swap(&version.agent);
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
    host.metrics.rollback(agent);
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
        host.registry
            .activate(version.clone(), host.config.keep_compiled);
        host.reschedule(&version);
        host.metrics.swap(agent);
    }
    Ok(Deployed {
        agent: agent.to_string(),
        version: number,
        digest: record.digest,
        created: false,
        state: "active",
        checks: record.checks,
        message: format!("version {number} is active"),
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
    Ok(Version {
        agent: agent.to_string(),
        number,
        digest: record.digest,
        manifest: record.manifest,
        resolved,
        prepared,
    })
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
                host.registry
                    .activate(version.clone(), host.config.keep_compiled);
                host.reschedule(&version);
                tracing::info!(agent = agent.name, version = number, "loaded");
            }
            Err(e) => {
                tracing::error!(agent = agent.name, version = number, error = %e, "could not load the active version")
            }
        }
    }
    Ok(())
}
