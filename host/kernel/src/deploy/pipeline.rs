//! A push through the pipeline: validate → compile → check (`describe` and `health` under
//! limits, in shadow) → canary (recent events the active version answered `ok`, replayed in
//! shadow) → persist and activate in one transaction → swap. A push of bytes that are already
//! a version goes through the same checks and a new watch window before it serves again.

use std::sync::Arc;
use std::time::Instant;

use overseer_sandbox::{Fault, Limits, Prepared};
use overseer_store::{
    Activation, ActivationCause, Check, NewVersion, RejectedAt, VersionRecord, VersionState,
};

use super::activation::{Before, baseline, manifest_of};
use super::{Deployed, Deployer, Push, imports};
use crate::error::{Error, Result, internal};
use crate::lifecycle::Cause;
use crate::manifest::{Manifest, Resolved};
use crate::name::check_name;
use crate::registry::{Loaded, Provenance, Version};
use crate::window::Window;

/// Where and why a candidate failed: stage, stable code, reason.
type Failure = (&'static str, &'static str, String);

impl Deployer {
    /// Put a new component live for its agent, or record why it cannot be.
    ///
    /// Without a manifest the active version's manifest is kept. Bytes and a manifest that
    /// match an existing version create nothing: the active one is reported unchanged (unless
    /// the agent is quarantined, or its stored bytes were damaged: then they are checked and
    /// watched again); an earlier servable one is checked, made active and watched again; a
    /// rejected one is refused again, and one its watch window condemned is refused with
    /// `version_not_servable` (a rollback to it by number forces it).
    pub async fn push(&self, push: Push) -> Result<Deployed> {
        let agent = push.agent.as_str();
        check_name(agent)?;
        let _deploying = self.locks.deploy(agent).await;
        let before = self.before(agent).await?;
        let active = before.active;
        // What a push reads does not grow with the pushes rejected before it: the versions
        // that passed their checks, and those of this digest.
        let versions = self.store.servable_versions(agent).await?;
        let manifest = match push.manifest.clone() {
            Some(m) => m,
            None => match versions.iter().find(|v| Some(v.number) == active) {
                Some(record) => manifest_of(record)?,
                None => Manifest::default(),
            },
        };
        manifest.check_capabilities()?;
        let resolved = manifest.resolve(agent, &self.config)?;
        let digest = overseer_sandbox::digest(&push.bytes);
        let manifest_json =
            serde_json::to_value(&manifest).map_err(|e| internal("manifest to JSON", e))?;
        let source_digest = push.source.as_ref().map(|s| s.digest.clone());
        let same_digest = self.store.versions_by_digest(agent, &digest).await?;
        let same = same_digest.iter().rev().find(|v| {
            v.manifest == manifest_json
                && (source_digest.is_none() || v.source_digest == source_digest)
        });
        if let Some(same) = same {
            return self.push_again(&push, same, &versions, before).await;
        }

        let mut checks = Vec::new();
        let started = Instant::now();
        let sandbox = self.sandbox.clone();
        let bytes = push.bytes.clone();
        let prepared = tokio::task::spawn_blocking(move || sandbox.prepare(&bytes))
            .await
            .map_err(|e| internal("compile task", e))?;
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
                let failure = ("validate", rejection.code(), message);
                return self
                    .reject(&push, &manifest_json, active, &checks, failure, false)
                    .await;
            }
            Err(other) => return Err(Error::Internal(other.to_string())),
        };
        let shared = Arc::new(manifest.clone());
        if let Some(failure) = self
            .check(agent, &prepared, &shared, &resolved, &mut checks)
            .await
        {
            return self
                .reject(&push, &manifest_json, active, &checks, failure, true)
                .await;
        }

        if !manifest.agent.dependencies.is_empty() {
            checks.push(self.dependencies(&manifest).await?);
        }

        // The version it replaces is judged on what its window saw, in the same transaction.
        let activation = Activation {
            cause: ActivationCause::Push,
            watch: true,
            judged: self.replacing(agent, None),
            edit: None,
        };
        let number = self
            .store
            .insert_version(
                &NewVersion {
                    agent,
                    digest: &digest,
                    size: push.bytes.len() as u64,
                    manifest: &manifest_json,
                    origin: push.origin,
                    edit: push.edit,
                    parent: active,
                    checks: &checks,
                    rejected: None,
                    source: push
                        .source
                        .as_ref()
                        .map(|s| (s.digest.as_str(), s.bytes.as_slice())),
                },
                Some(&push.bytes),
                Some(&activation),
            )
            .await?;
        self.settle(agent, activation.judged.as_ref());
        let imported = imports(&prepared, &manifest);
        let window = Window::open(0, 0, baseline(&versions, number));
        let provenance = Provenance {
            parent: active,
            source: source_digest,
            edit: push.edit,
        };
        let version = Arc::new(Version::new(
            agent,
            number,
            provenance,
            Loaded {
                manifest,
                resolved,
                prepared,
            },
            window,
        ));
        self.go_live(version, before, Cause::Push).await;
        tracing::info!(agent, version = number, digest = %digest, origin = %push.origin, "version live");
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

    /// A push of bytes and a manifest that are already version `same`.
    async fn push_again(
        &self,
        push: &Push,
        same: &VersionRecord,
        versions: &[VersionRecord],
        before: Before,
    ) -> Result<Deployed> {
        let agent = push.agent.as_str();
        let (active, quarantined) = (before.active, before.quarantined);
        if same.state == VersionState::Rejected {
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
        let repaired = same.fault.is_some();
        if repaired {
            // The pushed bytes have the digest the version names: they are the good ones.
            self.store
                .replace_component(&same.digest, &push.bytes)
                .await?;
        }
        if Some(same.number) == active && !quarantined && !repaired {
            return Ok(Deployed {
                agent: agent.to_string(),
                version: same.number,
                digest: same.digest.clone(),
                created: false,
                state: "active",
                checks: same.checks.clone(),
                message: format!(
                    "unchanged: version {} already has this digest and manifest",
                    same.number
                ),
                imports: self
                    .registry
                    .get(agent)
                    .and_then(|slot| slot.active())
                    .map(|v| imports(&v.prepared, &v.manifest))
                    .unwrap_or_default(),
            });
        }
        if same.condemned() && Some(same.number) != active {
            return Err(Error::VersionNotServable {
                agent: agent.to_string(),
                version: same.number,
                reason: format!(
                    "its watch window judged it {}: {}; `rollback --to {}` forces it",
                    same.verdict.map(|v| v.as_str()).unwrap_or_default(),
                    same.verdict_detail.clone().unwrap_or_default(),
                    same.number
                ),
            });
        }
        // Checked again as a candidate: the agent's state may have moved on since it served.
        let loaded = self.load_or_mark(same).await?;
        let mut checks = Vec::new();
        let shared = Arc::new(loaded.manifest.clone());
        if let Some((stage, code, message)) = self
            .check(
                agent,
                &loaded.prepared,
                &shared,
                &loaded.resolved,
                &mut checks,
            )
            .await
        {
            return Err(Error::Rejected {
                version: same.number,
                stage,
                code,
                message,
            });
        }
        let judged = self.replacing(agent, Some(same.number));
        let imported = imports(&loaded.prepared, &loaded.manifest);
        self.activate_existing(
            same,
            versions,
            before,
            Activation {
                cause: ActivationCause::Push,
                watch: true,
                judged,
                edit: push.edit,
            },
            Cause::Push,
        )
        .await?;
        tracing::info!(
            agent,
            version = same.number,
            "version with this digest is active again"
        );
        Ok(Deployed {
            agent: agent.to_string(),
            version: same.number,
            digest: same.digest.clone(),
            created: false,
            state: "active",
            checks,
            message: format!(
                "version {} with this digest is active again{}",
                same.number,
                if repaired {
                    ", its stored component repaired"
                } else {
                    ""
                }
            ),
            imports: imported,
        })
    }

    /// `describe`, `health` and the canary of a candidate, in shadow. The failing stage, its
    /// code and the reason, or `None` when all pass.
    async fn check(
        &self,
        agent: &str,
        prepared: &Prepared,
        manifest: &Arc<Manifest>,
        resolved: &Resolved,
        checks: &mut Vec<Check>,
    ) -> Option<Failure> {
        let limits = &resolved.limits;
        let started = Instant::now();
        let services = self.shadow(agent, None, manifest.clone());
        match self
            .sandbox
            .describe(prepared, limits, services.clone())
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
        match self.sandbox.health(prepared, limits, services).await {
            Ok(outcome) if outcome.value.ok => {
                checks.push(check("health", true, &outcome.value.detail, started));
            }
            Ok(outcome) => {
                let message = format!("health is not ok: {}", outcome.value.detail);
                checks.push(check("health", false, &message, started));
                return Some(("health", "unhealthy", message));
            }
            Err(e) => {
                let message = format!("health failed: {e}");
                checks.push(check("health", false, &message, started));
                return Some(("health", "check_failed", message));
            }
        }
        self.canary(agent, prepared, manifest, resolved, checks)
            .await
    }

    /// Replay the last events the active version answered `ok` through the candidate, in
    /// shadow. Any of them failing rejects the candidate. A deadline hit ends the replay
    /// there: each further event would likely cost the candidate's whole deadline again.
    async fn canary(
        &self,
        agent: &str,
        prepared: &Prepared,
        manifest: &Arc<Manifest>,
        resolved: &Resolved,
        checks: &mut Vec<Check>,
    ) -> Option<Failure> {
        let events = self
            .registry
            .get(agent)
            .map(|slot| slot.recent(resolved.policy.canary as usize))
            .unwrap_or_default();
        if events.is_empty() {
            return None;
        }
        let started = Instant::now();
        let limits: &Limits = &resolved.limits;
        let mut failed = Vec::new();
        let mut replayed = 0;
        for event in &events {
            replayed += 1;
            let services = self.shadow(agent, None, manifest.clone());
            let outcome = self
                .sandbox
                .handle(prepared, limits, services, event.clone())
                .await;
            if let Err(e) = outcome {
                let code = match &e {
                    overseer_sandbox::Error::Guest(g) => g.code(),
                    overseer_sandbox::Error::Fault(f) => f.code(),
                    _ => "internal",
                };
                failed.push(serde_json::json!({ "event": event.id, "topic": event.topic, "code": code, "error": e.to_string() }));
                if matches!(e, overseer_sandbox::Error::Fault(Fault::Timeout(_))) {
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

    /// Record a rejected candidate (with its bytes when it compiled) and answer why.
    async fn reject(
        &self,
        push: &Push,
        manifest: &serde_json::Value,
        active: Option<u32>,
        checks: &[Check],
        (stage, code, reason): Failure,
        keep_bytes: bool,
    ) -> Result<Deployed> {
        let agent = push.agent.as_str();
        let digest = overseer_sandbox::digest(&push.bytes);
        let number = self
            .store
            .insert_version(
                &NewVersion {
                    agent,
                    digest: &digest,
                    size: push.bytes.len() as u64,
                    manifest,
                    origin: push.origin,
                    edit: push.edit,
                    parent: active,
                    checks,
                    rejected: Some(RejectedAt {
                        stage,
                        code,
                        reason: &reason,
                    }),
                    source: push
                        .source
                        .as_ref()
                        .map(|s| (s.digest.as_str(), s.bytes.as_slice())),
                },
                keep_bytes.then_some(push.bytes.as_slice()),
                None,
            )
            .await?;
        self.metrics.rejection(agent);
        tracing::warn!(agent, version = number, stage, reason, "version rejected");
        Err(Error::Rejected {
            version: number,
            stage,
            code,
            message: reason,
        })
    }
}

/// A verdict on `version` from its window reading, as the store writes it.
pub(super) fn judgement(
    version: &Version,
    reading: crate::window::Reading,
) -> overseer_store::Judgement {
    overseer_store::Judgement {
        version: version.number,
        verdict: reading.verdict,
        detail: reading.detail(&version.resolved.policy),
        calls: reading.calls,
        failures: reading.failures,
    }
}

impl Deployer {
    /// The `dependencies` check: which agents the manifest's `[agent] dependencies` names
    /// are not serving. Missing ones are a warning, not a refusal: an agent may be pushed
    /// before what it needs.
    async fn dependencies(&self, manifest: &Manifest) -> Result<Check> {
        let started = Instant::now();
        let serving: Vec<String> = self
            .store
            .agents()
            .await?
            .into_iter()
            .filter(|a| a.active_version.is_some() && a.retired_ms.is_none())
            .map(|a| a.name)
            .collect();
        let missing: Vec<&str> = manifest
            .agent
            .dependencies
            .iter()
            .filter(|d| !serving.contains(d))
            .map(String::as_str)
            .collect();
        let detail = if missing.is_empty() {
            "every agent it needs is serving".to_string()
        } else {
            format!(
                "warning: {} not serving; the agent may not work until they are pushed",
                missing.join(", ")
            )
        };
        Ok(check("dependencies", true, &detail, started))
    }
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
