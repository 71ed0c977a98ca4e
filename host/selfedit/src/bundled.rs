//! The agents that ship with overseer: each is read from `agents/<name>` as source, built by
//! the same builder as an edit, and pushed through the same pipeline with its source attached
//! (a push of unchanged source and bytes changes nothing). An agent whose active version came
//! from anywhere else — an edit, a push — keeps it.

use std::path::Path;

use overseer_kernel::{Manifest, Push, SourceBlob};
use overseer_store::Origin;

use crate::SelfEdit;
use crate::builder;
use crate::error::{Error, Result};
use crate::snapshot::Snapshot;

impl SelfEdit {
    /// Build every bundled agent and push the ones that changed. Returns the agents now live.
    pub async fn load_bundled(&self) -> Result<Vec<String>> {
        let Some(dir) = self.config().agents_dir.clone() else {
            return Err(Error::Build(
                "no agents directory: set --agents-dir or OVERSEER_AGENTS_DIR".to_string(),
            ));
        };
        let mut live = Vec::new();
        for source in builder::bundled_dirs(&dir) {
            match self.load_one(&source).await {
                Ok(name) => live.push(name),
                Err(e) => {
                    tracing::error!(source = %source.display(), error = %e, "bundled agent not loaded")
                }
            }
        }
        Ok(live)
    }

    async fn load_one(&self, dir: &Path) -> Result<String> {
        let snapshot = Snapshot::read_dir(dir)?;
        let text = snapshot
            .files
            .get("agent.toml")
            .ok_or_else(|| Error::Build(format!("{}: no agent.toml", dir.display())))?;
        let manifest = Manifest::parse(text)?;
        let name = manifest
            .name
            .clone()
            .or_else(|| snapshot.package_name())
            .ok_or_else(|| Error::Build(format!("{}: no name", dir.display())))?;
        let store = &self.kernel().store;
        if let Some(active) = store.agent(&name).await?.and_then(|a| a.active_version)
            && let Some(record) = store.version(&name, active).await?
            && record.origin != Origin::Bundled
        {
            tracing::info!(
                agent = name,
                version = active,
                origin = %record.origin,
                "keeps its active version over the bundled source"
            );
            return Ok(name);
        }
        let _building = self.kernel().locks.build(&name).await;
        let built = self.build(&name, &snapshot).await?;
        let (digest, bytes) = snapshot.encode();
        let deployed = self
            .kernel()
            .deployer
            .push(Push {
                agent: name.clone(),
                bytes: built.bytes,
                manifest: Some(manifest),
                origin: Origin::Bundled,
                edit: None,
                source: Some(SourceBlob { digest, bytes }),
            })
            .await?;
        tracing::info!(
            agent = name,
            version = deployed.version,
            "{}",
            deployed.message
        );
        Ok(name)
    }
}
