//! The agents that ship with overseer: each is read from `agents/<name>` as source, built by
//! the same builder as an edit, and pushed through the same pipeline with its source attached
//! (a push of unchanged source and bytes changes nothing). An agent whose active version came
//! from anywhere else — an edit, a push — keeps it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

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
        let dirs = builder::bundled_dirs(&dir);
        let mut built = self.build_all(&dir, &dirs).await;
        let mut live = Vec::new();
        for source in dirs {
            let bytes = built.remove(&canonical(&source));
            match self.load_one(&source, bytes).await {
                Ok(name) => live.push(name),
                Err(e) => {
                    tracing::error!(source = %source.display(), error = %e, "bundled agent not loaded")
                }
            }
        }
        Ok(live)
    }

    /// Build every bundled agent in one cargo run over their workspace, sharing the
    /// dependencies' build (`<build_dir>/bundled`): their components by source directory.
    /// Empty when that build fails; each agent is then built on its own, so one broken agent
    /// does not keep the others from loading.
    async fn build_all(&self, workspace: &Path, dirs: &[PathBuf]) -> HashMap<PathBuf, Vec<u8>> {
        let packages: Vec<String> = dirs
            .iter()
            .filter_map(|dir| Snapshot::read_dir(dir).ok()?.package_name())
            .collect();
        let config = self.config();
        let (workspace, target) = (workspace.to_path_buf(), config.build_dir.join("bundled"));
        let (timeout, isolation) = (config.build_timeout, config.isolation);
        let build = tokio::task::spawn_blocking(move || {
            let packages: Vec<&str> = packages.iter().map(String::as_str).collect();
            builder::build_rust(&workspace, &target, &packages, timeout, isolation)
        })
        .await;
        match build {
            Ok(Ok(build)) => {
                tracing::info!(elapsed = ?build.elapsed, agents = build.artifacts.len(), "bundled agents built");
                build
                    .artifacts
                    .into_iter()
                    .map(|artifact| (canonical(&artifact.dir), artifact.bytes))
                    .collect()
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the bundled agents did not build together; building each on its own");
                HashMap::new()
            }
            Err(e) => {
                tracing::warn!(error = %e, "the bundled build stopped");
                HashMap::new()
            }
        }
    }

    async fn load_one(&self, dir: &Path, bytes: Option<Vec<u8>>) -> Result<String> {
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
        let component = match bytes {
            Some(bytes) => bytes,
            None => self.build(&name, &snapshot).await?.bytes,
        };
        let (digest, bytes) = snapshot.encode();
        let deployed = self
            .kernel()
            .deployer
            .push(Push {
                agent: name.clone(),
                bytes: component,
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

/// `path` with `..` and links resolved, to compare directories named two ways.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}
