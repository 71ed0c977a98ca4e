//! The agents that ship with overseer: built from `agents/` at start and pushed through the
//! same pipeline as any other version (a push of unchanged bytes changes nothing).

use std::sync::Arc;
use std::time::Duration;

use crate::builder;
use crate::deploy;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::state::Host;

/// Build every bundled agent and push the ones that changed. Returns the agents now live.
pub async fn load(host: &Arc<Host>) -> Result<Vec<String>> {
    let Some(dir) = host.config.agents_dir() else {
        return Err(Error::Build(
            "no agents directory: set --agents-dir or OVERSEER_AGENTS_DIR".to_string(),
        ));
    };
    let packages = builder::bundled_packages(&dir);
    let target_dir = host.config.build_dir();
    let timeout = Duration::from_secs(host.config.build_timeout_secs);
    tracing::info!(dir = %dir.display(), agents = ?packages, "building the bundled agents");
    let build = tokio::task::spawn_blocking(move || {
        let names: Vec<&str> = packages.iter().map(String::as_str).collect();
        builder::build_rust(&dir, &target_dir, &names, timeout)
    })
    .await
    .map_err(|e| Error::Internal(format!("build task: {e}")))??;
    tracing::info!(
        seconds = build.elapsed.as_secs_f64(),
        "bundled agents built"
    );
    let mut live = Vec::new();
    for artifact in build.artifacts {
        let text = std::fs::read_to_string(artifact.dir.join("agent.toml"))
            .map_err(|e| Error::Build(format!("{}: {e}", artifact.dir.display())))?;
        let manifest = Manifest::parse(&text)?;
        let name = manifest
            .name
            .clone()
            .unwrap_or_else(|| artifact.package.clone());
        let bytes = std::fs::read(&artifact.wasm)
            .map_err(|e| Error::Build(format!("{}: {e}", artifact.wasm.display())))?;
        match deploy::push(host, &name, bytes, Some(manifest), "bundled").await {
            Ok(deployed) => {
                tracing::info!(
                    agent = name,
                    version = deployed.version,
                    "{}",
                    deployed.message
                );
                live.push(name);
            }
            Err(e) => tracing::error!(agent = name, error = %e, "bundled agent not loaded"),
        }
    }
    Ok(live)
}
