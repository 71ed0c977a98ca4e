//! The `source` interface for agents granted it: other agents' source, the analysis's findings,
//! their logs, and edits proposed under the narrower policy of agents' edits. A shadow run
//! (check, canary, health) reads the same but proposes nothing.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use overseer_kernel::capability::{CallContext, Provider};
use overseer_kernel::check_name;
use overseer_sandbox::{
    AgentSource, EditOutcome, Finding, GuestError, Proposal, SourceChange, SourceLogLine,
};

use crate::edit::EditRequest;
use crate::error::Error;
use crate::snapshot::{self, Snapshot};
use crate::{Inner, SelfEdit};

/// Serves `source`.
pub(crate) struct SourceProvider {
    selfedit: Weak<Inner>,
}

impl SourceProvider {
    pub(crate) fn new(selfedit: Weak<Inner>) -> Self {
        SourceProvider { selfedit }
    }
}

impl Provider<dyn overseer_sandbox::Source> for SourceProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Source> {
        Arc::new(AgentSourceAccess {
            caller: call.agent.clone(),
            selfedit: self.selfedit.clone(),
            shadow: false,
        })
    }

    fn shadow(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Source> {
        Arc::new(AgentSourceAccess {
            caller: call.agent.clone(),
            selfedit: self.selfedit.clone(),
            shadow: true,
        })
    }
}

/// One call's access to `source`.
struct AgentSourceAccess {
    caller: String,
    selfedit: Weak<Inner>,
    shadow: bool,
}

/// An error as the agent that caused it sees it: its stable code, then the message.
fn to_guest(error: Error) -> GuestError {
    use overseer_kernel::Error as K;
    let message = format!("{}: {error}", error.code());
    match error {
        Error::InvalidRequest(_)
        | Error::NoSource(_)
        | Error::PathEscape(_)
        | Error::EditNotFound(_)
        | Error::Kernel(
            K::InvalidName(_)
            | K::InvalidRequest(_)
            | K::InvalidManifest(_)
            | K::AgentNotFound(_)
            | K::VersionNotFound { .. }
            | K::NoActiveVersion(_),
        ) => GuestError::InvalidInput(message),
        Error::Denied(_) => GuestError::Denied(message),
        Error::PatchFailed(_) | Error::StaleBase { .. } | Error::Kernel(K::Rejected { .. }) => {
            GuestError::Failed(message)
        }
        _ => GuestError::Unavailable(message),
    }
}

impl AgentSourceAccess {
    fn selfedit(&self) -> Result<SelfEdit, GuestError> {
        self.selfedit
            .upgrade()
            .map(SelfEdit::from_inner)
            .ok_or_else(|| GuestError::Unavailable("the host is stopping".to_string()))
    }

    /// The active version of `agent` and its source as it may be shown.
    async fn active_source(&self, agent: &str) -> Result<(u32, Snapshot), GuestError> {
        check_name(agent).map_err(|e| to_guest(e.into()))?;
        let selfedit = self.selfedit()?;
        let record = selfedit
            .kernel()
            .store
            .agent(agent)
            .await
            .map_err(|e| to_guest(e.into()))?
            .ok_or_else(|| {
                to_guest(overseer_kernel::Error::AgentNotFound(agent.to_string()).into())
            })?;
        let version = record.active_version.ok_or_else(|| {
            to_guest(overseer_kernel::Error::NoActiveVersion(agent.to_string()).into())
        })?;
        let snapshot = selfedit
            .version_source(agent, version)
            .await
            .map_err(to_guest)?
            .ok_or_else(|| to_guest(Error::NoSource(agent.to_string())))?;
        // What an agent reads may go to a model: never a secret.
        Ok((version, snapshot.redacted()))
    }
}

#[async_trait]
impl overseer_sandbox::Source for AgentSourceAccess {
    async fn agents(&self) -> Result<Vec<AgentSource>, GuestError> {
        let selfedit = self.selfedit()?;
        let mut agents = Vec::new();
        for record in selfedit
            .kernel()
            .store
            .agents()
            .await
            .map_err(|e| to_guest(e.into()))?
        {
            if record.active_version.is_none() {
                continue;
            }
            match self.files(&record.name).await {
                Ok(source) => agents.push(source),
                Err(GuestError::InvalidInput(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(agents)
    }

    async fn files(&self, agent: &str) -> Result<AgentSource, GuestError> {
        let (version, snapshot) = self.active_source(agent).await?;
        let editable = match self.selfedit()?.editable_by(&self.caller, agent).await {
            Ok(()) => true,
            Err(Error::Denied(_)) => false,
            Err(e) => return Err(to_guest(e)),
        };
        Ok(AgentSource {
            agent: agent.to_string(),
            version,
            files: snapshot.files.into_keys().collect(),
            editable,
        })
    }

    async fn read(&self, agent: &str, path: &str) -> Result<String, GuestError> {
        snapshot::check_path(path).map_err(to_guest)?;
        let (version, mut snapshot) = self.active_source(agent).await?;
        snapshot.files.remove(path).ok_or_else(|| {
            GuestError::InvalidInput(format!("version {version} of {agent} has no file {path:?}"))
        })
    }

    async fn findings(&self, agent: &str) -> Result<Vec<Finding>, GuestError> {
        let (_, snapshot) = self.active_source(agent).await?;
        let analysis = tokio::task::spawn_blocking(move || crate::analysis::analyze(&snapshot))
            .await
            .map_err(|e| GuestError::Unavailable(format!("analysis task: {e}")))?;
        Ok(analysis
            .findings
            .into_iter()
            .map(|f| Finding {
                file: f.file,
                line: f.line,
                column: f.column,
                kind: f.kind.to_string(),
                function: f.function,
                message: f.message,
            })
            .collect())
    }

    async fn logs(&self, agent: &str, limit: u32) -> Result<Vec<SourceLogLine>, GuestError> {
        check_name(agent).map_err(|e| to_guest(e.into()))?;
        let lines = self
            .selfedit()?
            .kernel()
            .store
            .logs(agent, overseer_store::Page::latest(limit))
            .await
            .map_err(|e| to_guest(e.into()))?;
        Ok(lines
            .into_iter()
            .map(|l| SourceLogLine {
                at_ms: l.at_ms,
                version: l.version,
                level: l.level,
                message: l.message,
            })
            .collect())
    }

    async fn propose(&self, proposal: Proposal) -> Result<u64, GuestError> {
        if self.shadow {
            return Err(GuestError::Unavailable(
                "a shadow run (check, canary or health) proposes no edit".to_string(),
            ));
        }
        let request = EditRequest {
            base_version: Some(proposal.base_version),
            reason: proposal.reason,
            ..match proposal.change {
                SourceChange::Diff(diff) => EditRequest {
                    diff: Some(diff),
                    ..EditRequest::default()
                },
                SourceChange::Files(files) => EditRequest {
                    files: Some(files.into_iter().map(|f| (f.path, f.content)).collect()),
                    ..EditRequest::default()
                },
            }
        };
        let record = self
            .selfedit()?
            .submit_by_agent(&self.caller, &proposal.agent, request)
            .await
            .map_err(to_guest)?;
        Ok(record.id as u64)
    }

    async fn outcome(&self, agent: &str, id: u64) -> Result<EditOutcome, GuestError> {
        check_name(agent).map_err(|e| to_guest(e.into()))?;
        let id = i64::try_from(id).map_err(|_| to_guest(Error::EditNotFound(-1)))?;
        let selfedit = self.selfedit()?;
        // A shadow run may be part of a deploy holding the deploy lock: it reads the store
        // as it is rather than wait for a deploy to settle.
        let edit = if self.shadow {
            selfedit
                .kernel()
                .store
                .edit(agent, id)
                .await
                .map_err(|e| to_guest(e.into()))?
                .ok_or_else(|| to_guest(Error::EditNotFound(id)))?
        } else {
            selfedit.edit(agent, id).await.map_err(to_guest)?
        };
        Ok(EditOutcome {
            id: edit.id as u64,
            agent: edit.agent,
            state: edit.state.as_str().to_string(),
            stage: edit.stage,
            code: edit.code,
            message: edit.message,
            version: edit.version,
            proposer: edit.proposer,
        })
    }
}
