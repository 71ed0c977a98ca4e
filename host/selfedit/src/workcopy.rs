//! Working copies: `<data-dir>/sources/<agent>` always holds the source of the agent's active
//! version. It follows every activation (push, edit, rollback, remediation, start); the store
//! is the truth, so a working copy that could not be written is repaired at the next start.
//! A rollback away from a version an edit produced announces that edit `rolled-back` (the
//! store marked it in the rollback's transaction).

use std::path::PathBuf;
use std::sync::Weak;

use async_trait::async_trait;
use overseer_kernel::{Lifecycle, Listener};
use overseer_store::EditState;

use crate::error::{Error, Result};
use crate::snapshot::Snapshot;
use crate::{Inner, SelfEdit};

impl SelfEdit {
    /// The working copy of an agent's source.
    pub fn working_dir(&self, agent: &str) -> PathBuf {
        self.inner.config.data_dir.join("sources").join(agent)
    }

    /// The source of `version` of `agent`, if it was built from source.
    pub async fn version_source(&self, agent: &str, version: u32) -> Result<Option<Snapshot>> {
        let store = &self.kernel().store;
        let record = store.version(agent, version).await?.ok_or_else(|| {
            Error::Kernel(overseer_kernel::Error::VersionNotFound {
                agent: agent.to_string(),
                version,
            })
        })?;
        match record.source_digest {
            Some(digest) => {
                let bytes = store.source(&digest).await?.ok_or_else(|| {
                    Error::Internal(format!("source {digest} of {agent} v{version} is missing"))
                })?;
                Ok(Some(Snapshot::decode(&bytes)?))
            }
            None => Ok(None),
        }
    }

    /// The source of the agent's active version: `(version, source)`, if it has one.
    pub async fn active_source(&self, agent: &str) -> Result<Option<(u32, Snapshot)>> {
        let Some(active) = self
            .kernel()
            .store
            .agent(agent)
            .await?
            .and_then(|a| a.active_version)
        else {
            return Ok(None);
        };
        Ok(self
            .version_source(agent, active)
            .await?
            .map(|source| (active, source)))
    }

    /// Make the agent's working copy hold the source snapshot `digest` of `version`. A failure
    /// is logged; the next start repairs it.
    async fn check_out(&self, agent: &str, version: u32, digest: &str) {
        let snapshot = match self.kernel().store.source(digest).await {
            Ok(Some(bytes)) => Snapshot::decode(&bytes).map(Some),
            Ok(None) => Err(Error::Internal(format!("source {digest} is missing"))),
            Err(e) => Err(e.into()),
        };
        match snapshot {
            Ok(Some(source)) => {
                let dir = self.working_dir(agent);
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

    /// At start: edits left under way by a stop are closed as `interrupted`. (Working copies
    /// follow the activations of the start itself.)
    pub async fn recover(&self) -> Result<()> {
        let interrupted = self.kernel().store.interrupt_edits().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "edits left unfinished by the last run were rejected"
            );
        }
        // Specs the architect was building when the daemon stopped end failed: their edit
        // was interrupted with them.
        for spec in self
            .kernel()
            .store
            .specs(overseer_store::Page::latest(crate::architect::OPEN_SPECS))
            .await?
        {
            if matches!(spec.state.as_str(), "designing" | "building") {
                let mut detail = spec.detail.clone();
                detail["error"] =
                    serde_json::json!("interrupted: the daemon stopped while it was built");
                self.kernel()
                    .store
                    .transition_spec(spec.id, &spec.state, "failed", &detail)
                    .await?;
                tracing::warn!(spec = spec.id, agent = %spec.name, "a spec left unfinished by the last run failed");
            }
        }
        Ok(())
    }
}

/// The lifecycle listener that keeps working copies and edit marks in step.
pub(crate) struct WorkingCopies {
    selfedit: Weak<Inner>,
}

impl WorkingCopies {
    pub(crate) fn new(selfedit: Weak<Inner>) -> Self {
        WorkingCopies { selfedit }
    }
}

#[async_trait]
impl Listener for WorkingCopies {
    async fn on(&self, event: &Lifecycle) {
        let Some(inner) = self.selfedit.upgrade() else {
            return;
        };
        let selfedit = SelfEdit::from_inner(inner);
        match event {
            Lifecycle::Activated {
                agent,
                version,
                source: Some(digest),
                ..
            } => {
                selfedit.check_out(agent, *version, digest).await;
            }
            Lifecycle::RolledBack {
                agent,
                edit: Some(id),
                ..
            } => match selfedit.kernel().store.edit(agent, *id).await {
                Ok(Some(edit)) if edit.state == EditState::RolledBack => {
                    selfedit.announce(agent, edit.id).await;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(agent, edit = id, error = %e, "could not read the edit rolled back")
                }
            },
            Lifecycle::Activated { .. } | Lifecycle::RolledBack { .. } => {}
            Lifecycle::Quarantined { .. }
            | Lifecycle::Released { .. }
            | Lifecycle::Retired { .. } => {}
        }
    }
}
