//! The agents that ship with overseer: each is read from `agents/<name>` as source, built by
//! the same builder as an edit, and pushed through the same pipeline with its source attached
//! (a push of unchanged source and bytes changes nothing). An agent whose active version came
//! from anywhere else — an edit, a push — keeps it.
//!
//! A directory with `instances/*.toml` ships one component as several agents: each file is
//! laid over `agent.toml` (its tables merged key by key, the instance's winning) and names
//! an agent of its own, such as the research tracks built from `agents/researcher`.

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
            let manifests = match manifests(&source) {
                Ok(manifests) => manifests,
                Err(e) => {
                    tracing::error!(source = %source.display(), error = %e, "bundled agent not loaded");
                    continue;
                }
            };
            let mut bytes = bytes;
            for manifest in manifests {
                match self.load_one(&source, manifest, &mut bytes).await {
                    Ok(name) => live.push(name),
                    Err(e) => {
                        tracing::error!(source = %source.display(), error = %e, "bundled agent not loaded")
                    }
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

    /// Push the component built from `dir` as the agent `manifest` names (built here when
    /// `bytes` is empty; built once for every instance of `dir`).
    async fn load_one(
        &self,
        dir: &Path,
        manifest: Manifest,
        bytes: &mut Option<Vec<u8>>,
    ) -> Result<String> {
        let mut snapshot = Snapshot::read_dir(dir)?;
        if dir.join("instances").is_dir() {
            // The instance's own manifest is its source's agent.toml: an edit rebuilds it.
            let text = toml::to_string(&manifest).map_err(|e| Error::Build(e.to_string()))?;
            snapshot.files.insert("agent.toml".to_string(), text);
        }
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
            Some(bytes) => bytes.clone(),
            None => {
                let built = self.build(&name, &snapshot).await?.bytes;
                *bytes = Some(built.clone());
                built
            }
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

/// The manifests `dir` ships: `agent.toml`, or each of `instances/*.toml` laid over it.
/// Errors: a file that cannot be read or parsed, or two instances with one name.
pub fn manifests(dir: &Path) -> Result<Vec<Manifest>> {
    let read = |path: &Path| -> Result<toml::Table> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Build(format!("{}: {e}", path.display())))?;
        text.parse()
            .map_err(|e| Error::Build(format!("{}: {e}", path.display())))
    };
    let base = read(&dir.join("agent.toml"))?;
    let mut instances: Vec<PathBuf> = std::fs::read_dir(dir.join("instances"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    instances.sort();
    let tables = if instances.is_empty() {
        vec![base]
    } else {
        let mut names = Vec::new();
        instances
            .iter()
            .map(|path| {
                let mut merged = base.clone();
                merge(&mut merged, read(path)?);
                // An instance is named by its file unless it names itself.
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default();
                let name = match read(path)?.get("name") {
                    Some(toml::Value::String(name)) => name.clone(),
                    _ => stem.to_string(),
                };
                if names.contains(&name) {
                    return Err(Error::Build(format!(
                        "{}: a second instance named {name:?}",
                        path.display()
                    )));
                }
                merged.insert("name".to_string(), toml::Value::String(name.clone()));
                names.push(name);
                Ok(merged)
            })
            .collect::<Result<Vec<_>>>()?
    };
    tables
        .into_iter()
        .map(|table| {
            let text = toml::to_string(&table).map_err(|e| Error::Build(e.to_string()))?;
            Ok(Manifest::parse(&text)?)
        })
        .collect()
}

/// Lay `over` on `base`: tables merged key by key, any other value replaced.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(over)) => merge(inner, over),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// `path` with `..` and links resolved, to compare directories named two ways.
fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_researcher_ships_as_six_tracks_each_over_its_base_manifest() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/researcher");
        let tracks = manifests(&dir).unwrap();
        let names: Vec<&str> = tracks.iter().filter_map(|m| m.name.as_deref()).collect();
        assert_eq!(
            names,
            [
                "research-alpha",
                "research-fundamental",
                "research-market",
                "research-risk",
                "research-sentiment",
                "research-technical"
            ]
        );
        let risk = &tracks[3];
        assert_eq!(risk.config["specialisation"], "risk_assessment");
        assert_eq!(risk.config["window"], "253", "the base's settings stay");
        assert_eq!(risk.triggers.every.as_deref(), Some("1h"));
        assert_eq!(risk.triggers.subscribe, ["market.tick"]);
        assert_eq!(risk.config["market_every_days"], "5");
        assert_eq!(risk.capabilities.grant, ["market", "llm", "prompts"]);
        assert!(
            risk.prompts.contains_key("analysis"),
            "the base's prompts stay"
        );
        assert_eq!(
            risk.agent.kind,
            Some(overseer_kernel::manifest::Kind::Research)
        );
        // Without instances, the one manifest.
        let echo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents/echo");
        assert_eq!(manifests(&echo).unwrap().len(), 1);
    }
}
