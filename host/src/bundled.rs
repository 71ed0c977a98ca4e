//! The agents that ship with overseer: each is read from `agents/<name>` as source, built by
//! the same builder as an edit, and pushed through the same pipeline with its source attached
//! (a push of unchanged source and bytes changes nothing). An agent whose active version came
//! from anywhere else — an edit, a push — keeps it.

use std::sync::Arc;

use crate::builder;
use crate::deploy;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::source::{self, Snapshot};
use crate::state::Host;

/// Build every bundled agent and push the ones that changed. Returns the agents now live.
pub async fn load(host: &Arc<Host>) -> Result<Vec<String>> {
    let Some(dir) = host.config.agents_dir() else {
        return Err(Error::Build(
            "no agents directory: set --agents-dir or OVERSEER_AGENTS_DIR".to_string(),
        ));
    };
    let mut live = Vec::new();
    for source in builder::bundled_dirs(&dir) {
        match load_one(host, &source).await {
            Ok(name) => live.push(name),
            Err(e) => {
                tracing::error!(source = %source.display(), error = %e, "bundled agent not loaded")
            }
        }
    }
    Ok(live)
}

async fn load_one(host: &Arc<Host>, dir: &std::path::Path) -> Result<String> {
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
    if let Some(active) = host
        .store
        .agent(&name)
        .await?
        .and_then(|a| a.active_version)
        && let Some(record) = host.store.version(&name, active).await?
        && record.origin != "bundled"
    {
        tracing::info!(
            agent = name,
            version = active,
            origin = record.origin,
            "keeps its active version over the bundled source"
        );
        return Ok(name);
    }
    let _one_at_a_time = host.edit_lock(&name).await;
    let built = source::build(host, &name, &snapshot).await?;
    let deployed = deploy::push_with_source(
        host,
        &name,
        built.bytes,
        Some(manifest),
        "bundled",
        Some(&snapshot),
    )
    .await?;
    tracing::info!(
        agent = name,
        version = deployed.version,
        "{}",
        deployed.message
    );
    Ok(name)
}
