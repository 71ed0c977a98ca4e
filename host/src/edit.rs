//! Edits of an agent's source: a unified diff or whole files against a base version, applied
//! to a scratch copy, built by the host's builder and sent through the deploy pipeline of a
//! push. Only a version that goes live changes the working copy; a rollback puts back the
//! source of the version it returns to.
//!
//! Submitting checks what is cheap at once (paths, the patch, a stale base) and answers with
//! the edit's record; building and checking run in the background, one edit of an agent at a
//! time, and are announced on the bus as `edit.<state>`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::json;

use crate::deploy;
use crate::error::{Error, Result, check_name};
use crate::manifest::Manifest;
use crate::source::{self, PatchError, Snapshot};
use crate::state::Host;
use crate::store::{EditRecord, EditUpdate, NewEdit, now_ms};

/// Longest compiler message kept in an edit's `message` (the whole log is in `build_log`).
const MAX_MESSAGE: usize = 8 << 10;

/// A proposed change to an agent's source.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditRequest {
    /// The version the change was written against. Absent only to create an agent from source.
    pub base_version: Option<u32>,
    /// A unified diff against the base's source.
    pub diff: Option<String>,
    /// Whole files (relative path → new content) replacing or adding to the base's source.
    pub files: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub reason: String,
    /// Who proposes it (`api` when absent).
    pub proposer: Option<String>,
}

/// The source of `version` of `agent`, if it was built from source.
pub async fn version_source(host: &Host, agent: &str, version: u32) -> Result<Option<Snapshot>> {
    let record =
        host.store
            .version(agent, version)
            .await?
            .ok_or_else(|| Error::VersionNotFound {
                agent: agent.to_string(),
                version,
            })?;
    match record.source_digest {
        Some(digest) => {
            let bytes = host.store.source(&digest).await?.ok_or_else(|| {
                Error::Internal(format!("source {digest} of {agent} v{version} is missing"))
            })?;
            Ok(Some(Snapshot::decode(&bytes)?))
        }
        None => Ok(None),
    }
}

/// The source of the agent's active version: `(version, source)`, if it has one.
async fn active_source(host: &Host, agent: &str) -> Result<Option<(u32, Snapshot)>> {
    let Some(active) = host
        .store
        .agent(agent)
        .await?
        .and_then(|a| a.active_version)
    else {
        return Ok(None);
    };
    Ok(version_source(host, agent, active)
        .await?
        .map(|source| (active, source)))
}

/// Check a proposed edit, record it and start it. Returns its record (state `applying`).
pub async fn submit(host: &Arc<Host>, agent: &str, request: EditRequest) -> Result<EditRecord> {
    submit_checked(host, agent, request, false).await
}

/// An edit proposed by agent `caller` through the `source` interface, held to
/// [`check_agent_edit`] when it is proposed and again when it runs.
pub async fn submit_by_agent(
    host: &Arc<Host>,
    caller: &str,
    agent: &str,
    mut request: EditRequest,
) -> Result<EditRecord> {
    check_name(agent)?;
    editable_by(host, caller, agent).await?;
    request.proposer = Some(caller.to_string());
    submit_checked(host, agent, request, true).await
}

/// Whether agent `caller` may propose edits of `agent`: not of itself, and not of an agent that
/// holds a privileged grant (only a person edits those).
pub async fn editable_by(host: &Host, caller: &str, agent: &str) -> Result<()> {
    if agent == caller {
        return Err(Error::Denied(format!(
            "{caller} may not edit its own source"
        )));
    }
    if let Some(active) = host
        .store
        .agent(agent)
        .await?
        .and_then(|a| a.active_version)
        && let Some(record) = host.store.version(agent, active).await?
        && record.manifest.privileged()
    {
        return Err(Error::Denied(format!(
            "{agent} holds a privileged grant: only a person edits it"
        )));
    }
    Ok(())
}

/// What an agent's edit may change: Rust files under `src/`, and nothing in them that reads
/// the host at build time. The manifest, `Cargo.toml` and build scripts — what the agent may
/// reach, how it is checked and watched, what runs at build time — are a person's to change.
fn check_agent_edit(base: &Snapshot, candidate: &Snapshot) -> Result<()> {
    let changed: Vec<&String> = base
        .files
        .keys()
        .chain(candidate.files.keys())
        .filter(|path| base.files.get(*path) != candidate.files.get(*path))
        .collect();
    if let Some(path) = changed
        .iter()
        .find(|path| !(path.starts_with("src/") && path.ends_with(".rs")))
    {
        return Err(Error::Denied(format!(
            "{path}: an agent's edit may change only Rust files under src/"
        )));
    }
    let mut touched = Snapshot::default();
    for path in changed {
        if let Some(text) = candidate.files.get(path) {
            touched.files.insert(path.clone(), text.clone());
        }
    }
    if let Some(read) = crate::analysis::host_reads(&touched).first() {
        return Err(Error::Denied(format!(
            "{}:{}: {}",
            read.file, read.line, read.message
        )));
    }
    Ok(())
}

async fn submit_checked(
    host: &Arc<Host>,
    agent: &str,
    request: EditRequest,
    by_agent: bool,
) -> Result<EditRecord> {
    check_name(agent)?;
    let proposer = request
        .proposer
        .clone()
        .unwrap_or_else(|| "api".to_string());
    let active = active_source(host, agent).await?;
    let base = match request.base_version {
        Some(number) => {
            let source = version_source(host, agent, number)
                .await?
                .ok_or_else(|| Error::NoSource(agent.to_string()))?;
            Some((number, source))
        }
        None if active.is_none() && request.files.is_some() => None,
        None => {
            return Err(match &active {
                Some((number, _)) => Error::InvalidRequest(format!(
                    "base_version is required: the version the change was written against (active: {number})"
                )),
                None if host.store.agent(agent).await?.is_some() => {
                    Error::NoSource(agent.to_string())
                }
                None => Error::InvalidRequest(
                    "a new agent from source needs `files` (Cargo.toml, agent.toml, src/…)"
                        .to_string(),
                ),
            });
        }
    };
    let base_source = base.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();

    // The change as the new source and as a diff against the base.
    let (candidate, diff) = match (&request.diff, &request.files) {
        (Some(diff), None) => (apply(&base_source, diff)?, diff.clone()),
        (None, Some(files)) => {
            let mut candidate = base_source.clone();
            for (path, text) in files {
                source::check_path(path)?;
                candidate.files.insert(path.clone(), text.clone());
            }
            let diff = source::diff(&base_source, &candidate);
            (candidate, diff)
        }
        _ => {
            return Err(Error::InvalidRequest(
                "give either `diff` (a unified diff) or `files` (path → content)".to_string(),
            ));
        }
    };
    if diff.is_empty() {
        return Err(Error::InvalidRequest(
            "the edit changes nothing".to_string(),
        ));
    }
    if by_agent {
        check_agent_edit(&base_source, &candidate)?;
    }
    let working = source::working_dir(host, agent);
    for path in candidate.files.keys().chain(base_source.files.keys()) {
        source::check_no_link(&working, path)?;
    }

    // A stale base: the change must still apply to what is active now.
    let mut rebased_onto = None;
    if let (Some((base_number, _)), Some((active_number, active_source))) = (&base, &active)
        && base_number != active_number
    {
        if let Err(e) = source::apply_patch(active_source, &diff) {
            return Err(Error::StaleBase {
                base: *base_number,
                active: *active_number,
                detail: patch_detail(&e),
            });
        }
        rebased_onto = Some(*active_number);
    }

    let id = host
        .store
        .insert_edit(&NewEdit {
            agent,
            base_version: base.as_ref().map(|(n, _)| *n),
            proposer: &proposer,
            by_agent,
            reason: &request.reason,
            diff: &diff,
            rebased_onto,
        })
        .await?;
    tracing::info!(agent, edit = id, proposer, base = ?request.base_version, "edit proposed");
    let host_for_task = host.clone();
    let agent_name = agent.to_string();
    tokio::spawn(async move {
        if let Err(e) = run(&host_for_task, &agent_name, id).await {
            tracing::error!(agent = agent_name, edit = id, error = %e, "edit failed");
            let update = rejected("internal", e.code(), e.to_string());
            let _ = host_for_task.store.update_edit(id, &update).await;
            announce(&host_for_task, &agent_name, id).await;
        }
    });
    host.store
        .edit(agent, id)
        .await?
        .ok_or(Error::EditNotFound(id))
}

fn apply(base: &Snapshot, diff: &str) -> Result<Snapshot> {
    source::apply_patch(base, diff).map_err(|e| match e {
        PatchError::Escape(path) => Error::PathEscape(path),
        other => Error::PatchFailed(patch_detail(&other)),
    })
}

fn patch_detail(e: &PatchError) -> String {
    match e {
        PatchError::Malformed(m) | PatchError::Conflict(m) => m.clone(),
        PatchError::Escape(path) => format!("{path} escapes the source"),
    }
}

/// Apply, build and check an edit, one edit of an agent at a time.
async fn run(host: &Arc<Host>, agent: &str, id: i64) -> Result<()> {
    let _one_at_a_time = host.edit_lock(agent).await;
    let edit = host
        .store
        .edit(agent, id)
        .await?
        .ok_or(Error::EditNotFound(id))?;

    // Re-apply to what is active now: another edit may have gone live while this one waited.
    let current = match active_source(host, agent).await? {
        Some((_, source)) => source,
        None if edit.base_version.is_none() => Snapshot::default(),
        None => {
            return finish(
                host,
                &edit,
                rejected("apply", "no_source", "the agent has no source any more"),
            )
            .await;
        }
    };
    let candidate = match source::apply_patch(&current, &edit.diff) {
        Ok(candidate) => candidate,
        Err(e) => {
            let message = format!(
                "the change no longer applies to the active source: {}",
                patch_detail(&e)
            );
            return finish(host, &edit, rejected("apply", "stale_base", message)).await;
        }
    };
    // An agent's edit is judged again against what is active now: the target may have been
    // granted a privilege, or the diff may land differently on a newer source.
    if edit.by_agent {
        let allowed = match editable_by(host, &edit.proposer, agent).await {
            Ok(()) => check_agent_edit(&current, &candidate),
            Err(e) => Err(e),
        };
        if let Err(e) = allowed {
            return finish(host, &edit, rejected("apply", e.code(), e.to_string())).await;
        }
    }

    host.store
        .update_edit(
            id,
            &EditUpdate {
                state: "building",
                ..EditUpdate::default()
            },
        )
        .await?;
    let built = match source::build(host, agent, &candidate).await {
        Ok(built) => built,
        Err(Error::Build(log)) => {
            let update = EditUpdate {
                build_log: Some(&log),
                ..rejected("build", "build_failed", compiler_errors(&log))
            };
            return finish(host, &edit, update).await;
        }
        Err(e) => return Err(e),
    };

    host.store
        .update_edit(
            id,
            &EditUpdate {
                state: "checking",
                build_log: Some(&built.log),
                ..EditUpdate::default()
            },
        )
        .await?;
    let manifest = match candidate
        .files
        .get("agent.toml")
        .map(|t| Manifest::parse(t))
    {
        Some(Ok(manifest)) => Some(manifest),
        Some(Err(e)) => {
            return finish(host, &edit, rejected("manifest", e.code(), e.to_string())).await;
        }
        None => None,
    };
    let update = match deploy::push_with_source(
        host,
        agent,
        built.bytes,
        manifest,
        "edit",
        Some(&candidate),
    )
    .await
    {
        Ok(deployed) => EditUpdate {
            state: "live",
            message: Some(deployed.message),
            version: Some(deployed.version),
            ..EditUpdate::default()
        },
        Err(Error::Rejected {
            version,
            stage,
            code,
            message,
        }) => EditUpdate {
            version: Some(version),
            ..rejected(stage, code, message)
        },
        Err(e @ Error::InvalidManifest(_)) => rejected("manifest", e.code(), e.to_string()),
        Err(e) => return Err(e),
    };
    finish(host, &edit, update).await
}

fn rejected<'a>(stage: &'a str, code: &'a str, message: impl Into<String>) -> EditUpdate<'a> {
    EditUpdate {
        state: "rejected",
        stage: Some(stage),
        code: Some(code),
        message: Some(message.into()),
        ..EditUpdate::default()
    }
}

/// Record the edit's outcome and announce it as `edit.<state>`.
async fn finish(host: &Arc<Host>, edit: &EditRecord, update: EditUpdate<'_>) -> Result<()> {
    host.store.update_edit(edit.id, &update).await?;
    tracing::info!(
        agent = edit.agent,
        edit = edit.id,
        state = update.state,
        stage = update.stage,
        "edit finished"
    );
    announce(host, &edit.agent, edit.id).await;
    Ok(())
}

/// Publish the edit's current record as `edit.<state>`.
pub async fn announce(host: &Arc<Host>, agent: &str, id: i64) {
    let Ok(Some(edit)) = host.store.edit(agent, id).await else {
        return;
    };
    let event = overseer_sandbox::Event {
        id: uuid::Uuid::new_v4().to_string(),
        topic: format!("edit.{}", edit.state),
        payload: json!({
            "agent": edit.agent,
            "edit": edit.id,
            "state": edit.state,
            "stage": edit.stage,
            "code": edit.code,
            "message": edit.message,
            "version": edit.version,
            "proposer": edit.proposer,
        })
        .to_string(),
        source: "overseer".to_string(),
        at_ms: now_ms(),
    };
    if let Err(e) = host.publish(event).await {
        tracing::warn!(error = %e, "could not publish an edit event");
    }
}

/// The error diagnostics of a cargo log, or its tail when it has none.
pub fn compiler_errors(log: &str) -> String {
    let mut out = String::new();
    let mut in_error = false;
    for line in log.lines() {
        if line.starts_with("error") {
            in_error = !line.starts_with("error: could not compile");
        } else if line.starts_with("warning") {
            in_error = false;
        }
        if in_error {
            out.push_str(line);
            out.push('\n');
        }
    }
    if out.is_empty() {
        out = log.to_string();
    }
    if out.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

/// Make the agent's working copy hold the source of `version`, when it was built from source.
/// The database is the truth: a failure here is logged, and the next start repairs it.
pub async fn check_out(host: &Arc<Host>, agent: &str, version: u32) {
    match version_source(host, agent, version).await {
        Ok(Some(source)) => {
            let dir = source::working_dir(host, agent);
            let written = tokio::task::spawn_blocking(move || source.write_dir(&dir))
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("working copy task: {e}"))));
            if let Err(e) = written {
                tracing::error!(agent, version, error = %e, "could not update the working copy");
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(agent, version, error = %e, "could not read the version's source")
        }
    }
}

/// At start: every working copy matches its active version, and unfinished edits are closed.
pub async fn recover(host: &Arc<Host>) -> Result<()> {
    let interrupted = host.store.interrupt_edits().await?;
    if interrupted > 0 {
        tracing::warn!(
            interrupted,
            "edits left unfinished by the last run were rejected"
        );
    }
    for agent in host.store.agents().await? {
        if let Some(version) = agent.active_version {
            check_out(host, &agent.name, version).await;
        }
    }
    Ok(())
}

/// After a rollback away from `version`: the edit that produced it is `rolled-back`.
pub async fn rolled_back(host: &Arc<Host>, agent: &str, version: u32) {
    match host.store.edit_rolled_back(agent, version).await {
        Ok(Some(id)) => announce(host, agent, id).await,
        Ok(None) => {}
        Err(e) => tracing::warn!(agent, version, error = %e, "could not mark the edit rolled back"),
    }
}
