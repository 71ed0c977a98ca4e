//! Builds of an agent's source into a component: a Rust agent in a scratch directory beside a
//! generated workspace root (package settings, dependencies and release profile of the bundled
//! agents' workspace) against the shared target directory; a Python or JavaScript agent by its
//! componentizer.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::builder;
use crate::config::BuildConfig;
use crate::error::{Error, Result};
use crate::snapshot::{Snapshot, io_error};

/// A component built from source, with what cargo printed.
#[derive(Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    pub log: String,
}

/// Build a snapshot of an agent into a component; the caller holds the agent's build lock. A
/// source with a `Cargo.toml` is Rust, one with an `app.py` Python, one with an `app.js`
/// JavaScript.
pub async fn build(config: &BuildConfig, agent: &str, snapshot: &Snapshot) -> Result<Built> {
    match builder::Language::of(|file| snapshot.files.contains_key(file)) {
        Some(language) => componentize(config, agent, snapshot, language).await,
        None => build_rust(config, agent, snapshot).await,
    }
}

/// A Python or JavaScript agent: its files written to a scratch directory and componentized
/// there.
async fn componentize(
    config: &BuildConfig,
    agent: &str,
    snapshot: &Snapshot,
    language: builder::Language,
) -> Result<Built> {
    // The source in `app/`, the component and the componentizer's temporary files in `out/`:
    // the only places the build may write.
    let scratch = config.data_dir.join("scratch").join(agent).join("app");
    let out = config
        .data_dir
        .join("scratch")
        .join(agent)
        .join("out")
        .join(format!("{agent}.wasm"));
    let tools = config.tools_dir.clone();
    let timeout = config.build_timeout;
    let isolation = config.isolation;
    let tree = snapshot.clone();
    let root = config.data_dir.join("scratch").join(agent);
    tokio::task::spawn_blocking(move || -> Result<Built> {
        // What the componentizer will freeze into the snapshot, said first in the build log.
        let warnings = crate::analysis::warning_lines(&crate::analysis::build_time_state(&tree));
        empty_dir(&root)?;
        tree.write_dir(&scratch)?;
        let build = builder::componentize(language, &scratch, &out, &tools, timeout, isolation)?;
        let artifact = build
            .artifacts
            .into_iter()
            .next()
            .ok_or_else(|| Error::Build("the build produced no component".to_string()))?;
        Ok(Built {
            bytes: artifact.bytes,
            log: format!("{warnings}{}", build.log),
        })
    })
    .await
    .map_err(|e| Error::Internal(format!("build task: {e}")))?
}

/// A Rust agent: the source is written to a scratch directory beside a generated workspace root
/// that takes its package settings, dependencies and release profile from the bundled agents'
/// workspace, and built into the shared target directory.
async fn build_rust(config: &BuildConfig, agent: &str, snapshot: &Snapshot) -> Result<Built> {
    let Some(agents_dir) = config.agents_dir.clone() else {
        return Err(Error::Build(
            "no agents directory to take the build settings from: set --agents-dir".to_string(),
        ));
    };
    // One scratch directory per agent, made anew for every build: the last build could write
    // there, and what it left (a symbolic link the daemon would write through, a cargo
    // configuration) must not reach the next one. Dependencies stay compiled in the target
    // directory, so only the agent's own crate is compiled again. The agent's edit lock makes
    // the directory exclusive.
    let scratch = config.data_dir.join("scratch").join(agent);
    // Built as package `agent-<name>-<hash of the data directory>`: a cdylib's file name
    // carries no hash, so two agents built from the same package — or the same agent of two
    // daemons sharing a build directory — would otherwise overwrite each other's component in
    // the shared target directory, and cargo would call the loser fresh.
    let package = package_name(agent, &config.data_dir);
    refuse_build_settings(snapshot)?;
    let mut tree = snapshot.clone();
    let manifest = snapshot
        .files
        .get("Cargo.toml")
        .ok_or_else(|| Error::Build("the source has no Cargo.toml".to_string()))?;
    tree.files
        .insert("Cargo.toml".to_string(), renamed(manifest, &package)?);
    let target_dir = config.build_dir.join("agents").join(agent);
    let timeout = config.build_timeout;
    let isolation = config.isolation;
    tokio::task::spawn_blocking({
        move || -> Result<Built> {
            empty_dir(&scratch)?;
            write_workspace(&agents_dir, &scratch, &package)?;
            tree.write_dir(&scratch.join(&package))?;
            let build =
                builder::build_rust(&scratch, &target_dir, &[&package], timeout, isolation)?;
            let artifact = build
                .artifacts
                .into_iter()
                .find(|a| a.package == package)
                .ok_or_else(|| {
                    Error::Build(format!("the build produced no component for {package}"))
                })?;
            Ok(Built {
                bytes: artifact.bytes,
                log: build.log,
            })
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("build task: {e}")))?
}

/// Remove `dir` and everything in it (symbolic links themselves, never what they point to),
/// and make it again, empty.
fn empty_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(dir, e)),
    }
    std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))
}

/// Refuse a source that brings its own cargo settings or toolchain: builds use the host's
/// toolchain, profile and dependency cache, and nothing in the source may change them.
fn refuse_build_settings(snapshot: &Snapshot) -> Result<()> {
    let refused = snapshot.files.keys().find(|path| {
        let file = path.rsplit('/').next().unwrap_or(path);
        path.starts_with(".cargo/")
            || path.contains("/.cargo/")
            || file == "rust-toolchain"
            || file == "rust-toolchain.toml"
    });
    match refused {
        Some(path) => Err(Error::Build(format!(
            "{path}: an agent's source may not carry cargo configuration or a toolchain \
             file; builds use the host's"
        ))),
        None => Ok(()),
    }
}

/// The cargo package an agent of the daemon on `data_dir` is built as.
fn package_name(agent: &str, data_dir: &Path) -> String {
    let root = data_dir
        .canonicalize()
        .unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = hex::encode(Sha256::digest(root.to_string_lossy().as_bytes()));
    format!("agent-{agent}-{}", &hash[..8])
}

/// `Cargo.toml` with the package named `package`, no explicit library name, and no workspace
/// or profile of its own.
fn renamed(manifest: &str, package: &str) -> Result<String> {
    let mut table: toml::Table = manifest
        .parse()
        .map_err(|e| Error::Build(format!("Cargo.toml: {e}")))?;
    let Some(section) = table.get_mut("package").and_then(toml::Value::as_table_mut) else {
        return Err(Error::Build("Cargo.toml has no [package]".to_string()));
    };
    section.insert("name".to_string(), toml::Value::from(package));
    if let Some(lib) = table.get_mut("lib").and_then(toml::Value::as_table_mut) {
        lib.remove("name");
    }
    // An agent made to build on its own (`overseer new`) is its own workspace with its own
    // profile; here it is a member of the generated workspace, whose profile applies.
    table.remove("workspace");
    table.remove("profile");
    toml::to_string(&table).map_err(|e| Error::Internal(format!("writing Cargo.toml: {e}")))
}

/// Write a workspace root at `root` with one member, `member`, taking `[workspace.package]`,
/// `[workspace.dependencies]` (path dependencies made absolute) and `[profile]` from the
/// agents' workspace, and its lock file.
pub fn write_workspace(agents_dir: &Path, root: &Path, member: &str) -> Result<()> {
    let text = std::fs::read_to_string(agents_dir.join("Cargo.toml"))
        .map_err(|e| io_error(&agents_dir.join("Cargo.toml"), e))?;
    let mut manifest: toml::Table = text
        .parse()
        .map_err(|e| Error::Build(format!("the agents' Cargo.toml: {e}")))?;
    let agents_dir = agents_dir
        .canonicalize()
        .map_err(|e| io_error(agents_dir, e))?;
    if let Some(workspace) = manifest
        .get_mut("workspace")
        .and_then(toml::Value::as_table_mut)
    {
        workspace.insert("members".to_string(), toml::Value::from(vec![member]));
        workspace.remove("exclude");
        if let Some(deps) = workspace
            .get_mut("dependencies")
            .and_then(toml::Value::as_table_mut)
        {
            for (_, dep) in deps.iter_mut() {
                if let Some(path) = dep.get_mut("path")
                    && let Some(relative) = path.as_str()
                {
                    *path = toml::Value::from(agents_dir.join(relative).display().to_string());
                }
            }
        }
    }
    std::fs::create_dir_all(root).map_err(|e| io_error(root, e))?;
    let text = toml::to_string(&manifest)
        .map_err(|e| Error::Internal(format!("writing a workspace manifest: {e}")))?;
    std::fs::write(root.join("Cargo.toml"), text).map_err(|e| io_error(root, e))?;
    if let Ok(lock) = std::fs::read(agents_dir.join("Cargo.lock")) {
        std::fs::write(root.join("Cargo.lock"), lock).map_err(|e| io_error(root, e))?;
    }
    Ok(())
}
