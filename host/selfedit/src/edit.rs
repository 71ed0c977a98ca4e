//! Edits of an agent's source: a unified diff or whole files against a base version, applied
//! to a scratch copy, built by the host's builder and sent through the kernel's pipeline like a
//! push. The edit goes `live` in the same transaction as its version's activation, so a crash
//! can never leave a live version whose edit says otherwise.
//!
//! Submitting checks what is cheap at once (paths, the patch, a stale base) and answers with
//! the edit's record; building and checking run in the background, one build of an agent at a
//! time (the kernel's build lock, which retirement also takes), and are announced on the bus as
//! `edit.<state>`.

use std::collections::BTreeMap;

use overseer_kernel::{Manifest, Push, SourceBlob, bus::host_event, check_name};
use overseer_store::{EditRecord, EditState, EditUpdate, NewEdit, Origin};
use serde::Deserialize;
use serde_json::json;

use crate::SelfEdit;
use crate::builder::Language;
use crate::error::{Error, Result};
use crate::patch::{self, PatchError};
use crate::snapshot::{self, Snapshot};

/// Longest compiler message kept in an edit's `message` (the whole log is in `build_log`).
const MAX_MESSAGE: usize = 8 << 10;

/// A proposed change to an agent's source.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
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
    /// Who proposes it: the authenticated caller (`api` for the token, the agent for
    /// `source.propose`, the architect), never a field of a request's body.
    #[serde(skip)]
    pub proposer: Option<String>,
}

/// What an agent's edit may change: its program's own files — Rust files under `src/`, or a
/// Python agent's `.py` files (`app.py` and its modules), or a JavaScript agent's `.js` and
/// `.mjs` files — and nothing in them that reads the host at build time. The manifest,
/// `Cargo.toml` and build scripts — what the agent may reach, how it is checked and watched,
/// what runs at build time — are a person's to change.
fn check_agent_edit(base: &Snapshot, candidate: &Snapshot) -> Result<()> {
    let changed: Vec<&String> = base
        .files
        .keys()
        .chain(candidate.files.keys())
        .filter(|path| base.files.get(*path) != candidate.files.get(*path))
        .collect();
    // A Rust agent's program is under src/; a Python or JavaScript agent's is every file of
    // its language.
    let language = Language::of(|file| base.files.contains_key(file));
    let editable = |path: &str| match language {
        None => path.starts_with("src/") && path.ends_with(".rs"),
        Some(_) => Language::of_file(path) == language,
    };
    let what = match language {
        None => "Rust files under src/",
        Some(Language::Python) => "the agent's Python files (.py)",
        Some(Language::JavaScript) => "the agent's JavaScript files (.js, .mjs)",
    };
    if let Some(path) = changed.iter().find(|path| !editable(path)) {
        return Err(Error::Denied(format!(
            "{path}: an agent's edit may change only {what}"
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

fn apply(base: &Snapshot, diff: &str) -> Result<Snapshot> {
    patch::apply_patch(base, diff).map_err(|e| match e {
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

fn rejected<'a>(stage: &'a str, code: &'a str, message: impl Into<String>) -> EditUpdate<'a> {
    EditUpdate {
        stage: Some(stage),
        code: Some(code),
        message: Some(message.into()),
        ..EditUpdate::state(EditState::Rejected)
    }
}

impl SelfEdit {
    /// Check a proposed edit, record it and start it. Returns its record (state `applying`).
    pub async fn submit(&self, agent: &str, request: EditRequest) -> Result<EditRecord> {
        self.submit_checked(agent, request, false).await
    }

    /// An edit proposed by agent `caller` through the `source` interface, held to the
    /// narrower policy of agents' edits when it is proposed and again when it runs.
    pub async fn submit_by_agent(
        &self,
        caller: &str,
        agent: &str,
        mut request: EditRequest,
    ) -> Result<EditRecord> {
        check_name(agent)?;
        self.editable_by(caller, agent).await?;
        request.proposer = Some(caller.to_string());
        self.submit_checked(agent, request, true).await
    }

    /// Whether agent `caller` may propose edits of `agent`: not of itself, and not of an
    /// agent that holds a privileged grant (only a person edits those).
    pub async fn editable_by(&self, caller: &str, agent: &str) -> Result<()> {
        if agent == caller {
            return Err(Error::Denied(format!(
                "{caller} may not edit its own source"
            )));
        }
        let store = &self.kernel().store;
        if let Some(active) = store.agent(agent).await?.and_then(|a| a.active_version)
            && let Some(record) = store.version(agent, active).await?
            && serde_json::from_value::<Manifest>(record.manifest)
                .map(|m| m.privileged())
                .unwrap_or(true)
        {
            return Err(Error::Denied(format!(
                "{agent} holds a privileged grant: only a person edits it"
            )));
        }
        Ok(())
    }

    async fn submit_checked(
        &self,
        agent: &str,
        request: EditRequest,
        by_agent: bool,
    ) -> Result<EditRecord> {
        check_name(agent)?;
        let store = &self.kernel().store;
        let proposer = request
            .proposer
            .clone()
            .unwrap_or_else(|| "api".to_string());
        let active = self.active_source(agent).await?;
        let base = match request.base_version {
            Some(number) => {
                let source = self
                    .version_source(agent, number)
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
                    None if store.agent(agent).await?.is_some() => {
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
                    snapshot::check_path(path)?;
                    candidate.files.insert(path.clone(), text.clone());
                }
                let diff = patch::diff(&base_source, &candidate);
                (candidate, diff)
            }
            _ => {
                return Err(Error::InvalidRequest(
                    "give either `diff` (a unified diff) or `files` (path → content)".to_string(),
                ));
            }
        };
        if diff.is_empty() || candidate == base_source {
            return Err(Error::NoChange);
        }
        if by_agent {
            check_agent_edit(&base_source, &candidate)?;
        }
        let working = self.working_dir(agent);
        for path in candidate.files.keys().chain(base_source.files.keys()) {
            snapshot::check_no_link(&working, path)?;
        }

        // A stale base: the change must still apply to what is active now.
        let mut rebased_onto = None;
        if let (Some((base_number, _)), Some((active_number, active_source))) = (&base, &active)
            && base_number != active_number
        {
            if let Err(e) = patch::apply_patch(active_source, &diff) {
                return Err(Error::StaleBase {
                    base: *base_number,
                    active: *active_number,
                    detail: patch_detail(&e),
                });
            }
            rebased_onto = Some(*active_number);
        }

        let id = store
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
        overseer_store::audit::record(
            &**store,
            &proposer,
            "edit.proposed",
            agent,
            &json!({ "edit": id, "base_version": base.as_ref().map(|(n, _)| *n), "reason": request.reason }),
        )
        .await;
        let selfedit = self.clone();
        let agent_name = agent.to_string();
        tokio::spawn(async move {
            if let Err(e) = selfedit.run(&agent_name, id).await {
                tracing::error!(agent = agent_name, edit = id, error = %e, "edit failed");
                let update = rejected("internal", e.code(), e.to_string());
                if let Err(e) = selfedit.kernel().store.update_edit(id, &update).await {
                    tracing::error!(agent = agent_name, edit = id, error = %e, "could not record the edit's failure");
                }
                selfedit.announce(&agent_name, id).await;
            }
        });
        store.edit(agent, id).await?.ok_or(Error::EditNotFound(id))
    }

    /// Apply, build and check an edit, one build of an agent at a time.
    async fn run(&self, agent: &str, id: i64) -> Result<()> {
        let kernel = self.kernel().clone();
        let _building = kernel.locks.build(agent).await;
        let store = &kernel.store;
        let edit = store
            .edit(agent, id)
            .await?
            .ok_or(Error::EditNotFound(id))?;

        // Re-apply to what is active now: another edit may have gone live while this one
        // waited, or the agent may have been retired.
        let current = match self.active_source(agent).await? {
            Some((_, source)) => source,
            None if edit.base_version.is_none() => Snapshot::default(),
            None => {
                return self
                    .finish(
                        &edit,
                        rejected(
                            "apply",
                            "no_source",
                            "the agent has no active source any more",
                        ),
                    )
                    .await;
            }
        };
        let (candidate, leniencies) = match patch::apply_leniently(&current, &edit.diff) {
            Ok(applied) => (applied.snapshot, applied.notes),
            Err(e) => {
                let message = format!(
                    "the change no longer applies to the active source: {}",
                    patch_detail(&e)
                );
                return self
                    .finish(&edit, rejected("apply", "stale_base", message))
                    .await;
            }
        };
        // An agent's edit is judged again against what is active now: the target may have
        // been granted a privilege, or the diff may land differently on a newer source.
        if edit.by_agent {
            let allowed = match self.editable_by(&edit.proposer, agent).await {
                Ok(()) => check_agent_edit(&current, &candidate),
                Err(e) => Err(e),
            };
            if let Err(e) = allowed {
                return self
                    .finish(&edit, rejected("apply", e.code(), e.to_string()))
                    .await;
            }
        }

        store
            .update_edit(id, &EditUpdate::state(EditState::Building))
            .await?;
        let built = match crate::builds::build(self.config(), agent, &candidate).await {
            Ok(built) => built,
            Err(Error::Build(log)) => {
                let update = EditUpdate {
                    build_log: Some(&log),
                    ..rejected("build", "build_failed", compiler_errors(&log))
                };
                return self.finish(&edit, update).await;
            }
            Err(e) => return Err(e),
        };

        // What was read leniently heads the build's log (GNU patch says it too).
        let log = if leniencies.is_empty() {
            built.log.clone()
        } else {
            format!(
                "the patch was read leniently: {}\n{}",
                leniencies.join("; "),
                built.log
            )
        };
        store
            .update_edit(
                id,
                &EditUpdate {
                    build_log: Some(&log),
                    ..EditUpdate::state(EditState::Checking)
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
                return self
                    .finish(&edit, rejected("manifest", e.code(), e.to_string()))
                    .await;
            }
            None => None,
        };
        let (digest, bytes) = candidate.encode();
        let push = Push {
            agent: agent.to_string(),
            bytes: built.bytes,
            manifest,
            origin: Origin::Edit,
            edit: Some(id),
            source: Some(SourceBlob { digest, bytes }),
        };
        let update = match kernel.deployer.push(push).await {
            Ok(deployed) => {
                // An activation marked the edit live in its transaction; a build that matched
                // the version already serving activated nothing.
                let marked = store
                    .edit(agent, id)
                    .await?
                    .is_some_and(|e| !e.state.running());
                (!marked).then(|| EditUpdate {
                    message: Some(deployed.message),
                    version: Some(deployed.version),
                    ..EditUpdate::state(EditState::Live)
                })
            }
            Err(overseer_kernel::Error::Rejected {
                version,
                stage,
                code,
                message,
            }) => Some(EditUpdate {
                version: Some(version),
                ..rejected(stage, code, message)
            }),
            Err(e @ overseer_kernel::Error::InvalidManifest(_)) => {
                Some(rejected("manifest", e.code(), e.to_string()))
            }
            Err(e @ overseer_kernel::Error::VersionNotServable { .. }) => Some(EditUpdate {
                version: e.version(),
                ..rejected("deploy", e.code(), e.to_string())
            }),
            Err(e) => return Err(e.into()),
        };
        match update {
            Some(update) => self.finish(&edit, update).await,
            None => {
                self.announce(agent, id).await;
                Ok(())
            }
        }
    }

    /// Record the edit's outcome and announce it as `edit.<state>`.
    async fn finish(&self, edit: &EditRecord, update: EditUpdate<'_>) -> Result<()> {
        self.kernel().store.update_edit(edit.id, &update).await?;
        tracing::info!(
            agent = edit.agent,
            edit = edit.id,
            state = update.state.as_str(),
            stage = update.stage,
            "edit finished"
        );
        self.announce(&edit.agent, edit.id).await;
        Ok(())
    }

    /// Publish the edit's current record as `edit.<state>`.
    pub(crate) async fn announce(&self, agent: &str, id: i64) {
        let Ok(Some(edit)) = self.kernel().store.edit(agent, id).await else {
            return;
        };
        let outcome = json!({
            "agent": edit.agent,
            "edit": edit.id,
            "state": edit.state,
            "stage": edit.stage,
            "code": edit.code,
            "message": edit.message,
            "version": edit.version,
            "proposer": edit.proposer,
        });
        let action = format!("edit.{}", edit.state);
        overseer_store::audit::record(&*self.kernel().store, "host", &action, agent, &outcome)
            .await;
        let event = host_event(action, outcome.to_string(), "overseer");
        if let Err(e) = self.kernel().bus.publish(event).await {
            tracing::warn!(error = %e, "could not publish an edit event");
        }
    }

    /// An edit as recorded. A finished edit is answered once any deploy of its agent under
    /// way is over: the store is ahead of memory by at most that deploy (it writes, then
    /// swaps and updates the working copy), so an edit seen `live` is also serving, from its
    /// source.
    pub async fn edit(&self, agent: &str, id: i64) -> Result<EditRecord> {
        let edit = self
            .kernel()
            .store
            .edit(agent, id)
            .await?
            .ok_or(Error::EditNotFound(id))?;
        if !edit.state.running() {
            self.kernel().deployer.settled(agent).await;
        }
        Ok(edit)
    }

    /// Build a snapshot of `agent` into a component. The caller holds the agent's build lock.
    pub async fn build(&self, agent: &str, snapshot: &Snapshot) -> Result<crate::Built> {
        crate::builds::build(self.config(), agent, snapshot).await
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
