//! Start-up: every agent's active version, as the store has it, loaded from the compile cache
//! when it has it; a watch window that was open when the daemon stopped opens again; a stored
//! version that can no longer load is marked not servable with its cause and a critical alert.

use std::sync::Arc;

use super::Deployer;
use crate::error::{Error, Result};
use crate::lifecycle::Cause;
use crate::registry::{Provenance, Version};
use crate::window::Window;

impl Deployer {
    /// Load every agent's active version.
    pub async fn load_active(&self) -> Result<()> {
        for agent in self.store.agents().await? {
            let Some(number) = agent.active_version else {
                continue;
            };
            let _deploying = self.locks.deploy(&agent.name).await;
            let Some(record) = self.store.version(&agent.name, number).await? else {
                tracing::error!(
                    agent = agent.name,
                    version = number,
                    "the active version is not in the store"
                );
                continue;
            };
            let loaded = match self.load_or_mark(&record).await {
                Ok(loaded) => loaded,
                Err(Error::VersionNotServable { reason, .. }) => {
                    tracing::error!(agent = agent.name, version = number, reason, "not loaded");
                    continue;
                }
                Err(e) => return Err(e),
            };
            // No verdict on the active version: its window was open when the daemon stopped.
            let window = if record.verdict.is_none() {
                let versions = self.store.servable_versions(&agent.name).await?;
                Window::open(0, 0, super::activation::baseline(&versions, number))
            } else {
                Window::supervised()
            };
            let version = Arc::new(Version::new(
                &agent.name,
                number,
                Provenance::of(&record),
                loaded,
                window,
            ));
            let quarantined = agent.quarantined_ms.is_some();
            let (slot, _) = self
                .registry
                .activate(version.clone(), self.config.keep_compiled);
            slot.set_quarantined(quarantined);
            self.hooks
                .publish(crate::lifecycle::Lifecycle::Activated {
                    agent: agent.name.clone(),
                    version: number,
                    previous: None,
                    cause: Cause::Start,
                    watching: version.watching(),
                    source: record.source_digest.clone(),
                })
                .await;
            tracing::info!(agent = agent.name, version = number, quarantined, "loaded");
        }
        Ok(())
    }
}
