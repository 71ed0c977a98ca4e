//! Agent source: snapshots of an agent's files, its working copy in the data directory, patches
//! applied to it, diffs between versions, and builds of it into a component.
//!
//! A snapshot is every text file of an agent's source directory, by relative path. Versions
//! built from source store theirs, compressed, so any two can be compared and a rollback can
//! put the source back. The working copy (`<data-dir>/sources/<agent>`) always holds the
//! source of the active version.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::builder;
use crate::error::{Error, Result};
use crate::state::Host;

/// Largest source tree accepted, all files together.
pub const MAX_SOURCE_BYTES: usize = 4 << 20;

/// Directories never part of a snapshot.
const SKIPPED_DIRS: &[&str] = &["target", ".git", "__pycache__", "node_modules"];

/// The files of an agent's source, by relative path with `/` separators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub files: BTreeMap<String, String>,
}

impl Snapshot {
    /// Read a source directory. Symbolic links and non-UTF-8 files are refused.
    pub fn read_dir(dir: &Path) -> Result<Snapshot> {
        let mut files = BTreeMap::new();
        let mut total = 0;
        read_into(dir, dir, &mut files, &mut total)?;
        Ok(Snapshot { files })
    }

    /// Make `dir` hold exactly these files: write each one, remove any other.
    pub fn write_dir(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let existing = Snapshot::read_dir(dir).unwrap_or_default();
        for path in existing.files.keys() {
            if !self.files.contains_key(path) {
                let file = dir.join(path);
                std::fs::remove_file(&file).map_err(|e| io_error(&file, e))?;
            }
        }
        for (path, text) in &self.files {
            check_path(path)?;
            let file = dir.join(path);
            if existing.files.get(path) == Some(text) {
                continue;
            }
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|e| io_error(parent, e))?;
            }
            std::fs::write(&file, text).map_err(|e| io_error(&file, e))?;
        }
        Ok(())
    }

    /// Compress the snapshot: its digest (sha256 of the canonical form) and the gzip bytes.
    pub fn encode(&self) -> (String, Vec<u8>) {
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        let digest = hex::encode(Sha256::digest(&canonical));
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let _ = encoder.write_all(&canonical);
        (digest, encoder.finish().unwrap_or_default())
    }

    pub fn decode(bytes: &[u8]) -> Result<Snapshot> {
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_SOURCE_BYTES as u64 * 2)
            .read_to_end(&mut text)
            .map_err(|e| Error::Internal(format!("a stored source snapshot is damaged: {e}")))?;
        serde_json::from_slice(&text)
            .map_err(|e| Error::Internal(format!("a stored source snapshot is damaged: {e}")))
    }

    pub fn size(&self) -> usize {
        self.files.values().map(String::len).sum()
    }

    /// The cargo package name in `Cargo.toml`, if any.
    pub fn package_name(&self) -> Option<String> {
        let manifest: toml::Table = self.files.get("Cargo.toml")?.parse().ok()?;
        manifest
            .get("package")?
            .get("name")?
            .as_str()
            .map(str::to_string)
    }
}

fn read_into(
    root: &Path,
    dir: &Path,
    files: &mut BTreeMap<String, String>,
    total: &mut usize,
) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| io_error(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if kind.is_symlink() {
            return Err(Error::InvalidRequest(format!(
                "{} is a symbolic link; agent source may not contain links",
                path.display()
            )));
        }
        if kind.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_str()) {
                read_into(root, &path, files, total)?;
            }
            continue;
        }
        let relative = path
            .strip_prefix(root)
            .map_err(|_| Error::Internal(format!("{} escapes its root", path.display())))?
            .components()
            .map(|c| c.as_os_str().to_string_lossy().to_string())
            .collect::<Vec<_>>()
            .join("/");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Error::InvalidRequest(format!("{relative}: agent source must be UTF-8 text ({e})"))
        })?;
        *total += text.len();
        if *total > MAX_SOURCE_BYTES {
            return Err(Error::InvalidRequest(format!(
                "the source is larger than {MAX_SOURCE_BYTES} bytes"
            )));
        }
        files.insert(relative, text);
    }
    Ok(())
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!("{}: {e}", path.display()))
}

/// A path inside an agent's source: relative, with no `..`, no root, no drive, nothing empty.
pub fn check_path(path: &str) -> Result<()> {
    let escapes = || Error::PathEscape(path.to_string());
    if path.is_empty() || path.contains('\\') || path.contains('\0') {
        return Err(escapes());
    }
    let p = Path::new(path);
    if p.is_absolute() {
        return Err(escapes());
    }
    for component in p.components() {
        match component {
            Component::Normal(part) if !part.is_empty() => {}
            _ => return Err(escapes()),
        }
    }
    if path
        .split('/')
        .any(|part| SKIPPED_DIRS.contains(&part) || part.is_empty())
    {
        return Err(escapes());
    }
    Ok(())
}

/// Refuse a path that passes through a symbolic link in `dir`.
pub fn check_no_link(dir: &Path, path: &str) -> Result<()> {
    let mut current = dir.to_path_buf();
    for part in path.split('/') {
        current.push(part);
        match std::fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Error::PathEscape(path.to_string()));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// Why a patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// The text is not a unified diff.
    Malformed(String),
    /// A file the patch names escapes the source.
    Escape(String),
    /// A hunk does not match the file.
    Conflict(String),
}

/// Apply a unified diff (one or more files; `a/` and `b/` prefixes are accepted) to a snapshot.
pub fn apply_patch(base: &Snapshot, diff: &str) -> std::result::Result<Snapshot, PatchError> {
    use diffy::patch_set::{FileOperation, ParseOptions, PatchSet};

    let mut result = base.clone();
    let mut any = false;
    for file in PatchSet::parse(diff, ParseOptions::unidiff()) {
        let file = file.map_err(|e| PatchError::Malformed(e.to_string()))?;
        any = true;
        let Some(patch) = file.patch().as_text() else {
            return Err(PatchError::Malformed(
                "binary patches are not accepted".to_string(),
            ));
        };
        // (read from, write to, keep the source file)
        let (from, to, keep) = match file.operation() {
            FileOperation::Create(path) => (None, Some(strip(path)), false),
            FileOperation::Delete(path) => (Some(strip(path)), None, false),
            FileOperation::Modify { original, modified } => {
                (Some(strip(original)), Some(strip(modified)), false)
            }
            FileOperation::Rename { from, to } => (Some(strip(from)), Some(strip(to)), false),
            FileOperation::Copy { from, to } => (Some(strip(from)), Some(strip(to)), true),
        };
        for path in from.iter().chain(to.iter()) {
            check_path(path).map_err(|_| PatchError::Escape(path.clone()))?;
        }
        let original = match &from {
            Some(path) => result
                .files
                .get(path)
                .cloned()
                .ok_or_else(|| PatchError::Conflict(format!("{path}: no such file")))?,
            None => String::new(),
        };
        let named = to.as_ref().or(from.as_ref()).cloned().unwrap_or_default();
        let patched = diffy::apply(&original, patch)
            .map_err(|e| PatchError::Conflict(format!("{named}: {e}")))?;
        if let Some(path) = &from
            && !keep
        {
            result.files.remove(path);
        }
        if let Some(path) = to {
            result.files.insert(path, patched);
        }
    }
    if !any {
        return Err(PatchError::Malformed(
            "no file changes found in the diff".to_string(),
        ));
    }
    Ok(result)
}

/// A path from a diff header without its `a/` or `b/` prefix.
fn strip(path: &str) -> String {
    path.strip_prefix("a/")
        .or_else(|| path.strip_prefix("b/"))
        .unwrap_or(path)
        .to_string()
}

/// A unified diff from `old` to `new`, file by file, with `a/` and `b/` prefixes.
pub fn diff(old: &Snapshot, new: &Snapshot) -> String {
    let mut out = String::new();
    let paths: std::collections::BTreeSet<&String> =
        old.files.keys().chain(new.files.keys()).collect();
    for path in paths {
        let before = old.files.get(path);
        let after = new.files.get(path);
        if before == after {
            continue;
        }
        let (from, to) = (
            before.map_or("/dev/null".to_string(), |_| format!("a/{path}")),
            after.map_or("/dev/null".to_string(), |_| format!("b/{path}")),
        );
        let text = similar::TextDiff::from_lines(
            before.map(String::as_str).unwrap_or(""),
            after.map(String::as_str).unwrap_or(""),
        );
        out.push_str(
            &text
                .unified_diff()
                .context_radius(3)
                .header(&from, &to)
                .to_string(),
        );
    }
    out
}

/// The working copy of an agent's source.
pub fn working_dir(host: &Host, agent: &str) -> PathBuf {
    host.config.data_dir.join("sources").join(agent)
}

/// A component built from source, with what cargo printed.
#[derive(Debug)]
pub struct Built {
    pub bytes: Vec<u8>,
    pub log: String,
}

/// Build a snapshot of an agent into a component; the caller holds the agent's edit lock. A
/// source with a `Cargo.toml` is Rust, one with an `app.py` Python, one with an `app.js`
/// JavaScript.
pub async fn build(host: &Arc<Host>, agent: &str, snapshot: &Snapshot) -> Result<Built> {
    match builder::Language::of(|file| snapshot.files.contains_key(file)) {
        Some(language) => componentize(host, agent, snapshot, language).await,
        None => build_rust(host, agent, snapshot).await,
    }
}

/// A Python or JavaScript agent: its files written to a scratch directory and componentized
/// there.
async fn componentize(
    host: &Arc<Host>,
    agent: &str,
    snapshot: &Snapshot,
    language: builder::Language,
) -> Result<Built> {
    let scratch = host.config.data_dir.join("scratch").join(agent);
    let out = host
        .config
        .data_dir
        .join("scratch")
        .join(format!("{agent}.wasm"));
    let tools = host.config.tools_dir();
    let timeout = Duration::from_secs(host.config.build_timeout_secs);
    let tree = snapshot.clone();
    tokio::task::spawn_blocking(move || -> Result<Built> {
        tree.write_dir(&scratch)?;
        let build = builder::componentize(language, &scratch, &out, &tools, timeout)?;
        let artifact = build
            .artifacts
            .into_iter()
            .next()
            .ok_or_else(|| Error::Build("the build produced no component".to_string()))?;
        Ok(Built {
            bytes: artifact.bytes,
            log: build.log,
        })
    })
    .await
    .map_err(|e| Error::Internal(format!("build task: {e}")))?
}

/// A Rust agent: the source is written to a scratch directory beside a generated workspace root
/// that takes its package settings, dependencies and release profile from the bundled agents'
/// workspace, and built into the shared target directory.
async fn build_rust(host: &Arc<Host>, agent: &str, snapshot: &Snapshot) -> Result<Built> {
    let Some(agents_dir) = host.config.agents_dir() else {
        return Err(Error::Build(
            "no agents directory to take the build settings from: set --agents-dir".to_string(),
        ));
    };
    // One scratch directory per agent, reused: files that did not change keep their times,
    // so cargo rebuilds only what an edit touched. The agent's edit lock makes it exclusive.
    let scratch = host.config.data_dir.join("scratch").join(agent);
    // Built as package `agent-<name>-<hash of the data directory>`: a cdylib's file name
    // carries no hash, so two agents built from the same package — or the same agent of two
    // daemons sharing a build directory — would otherwise overwrite each other's component in
    // the shared target directory, and cargo would call the loser fresh.
    let package = package_name(agent, &host.config.data_dir);
    let mut tree = snapshot.clone();
    let manifest = snapshot
        .files
        .get("Cargo.toml")
        .ok_or_else(|| Error::Build("the source has no Cargo.toml".to_string()))?;
    tree.files
        .insert("Cargo.toml".to_string(), renamed(manifest, &package)?);
    let target_dir = host.config.build_dir();
    let timeout = Duration::from_secs(host.config.build_timeout_secs);
    tokio::task::spawn_blocking({
        move || -> Result<Built> {
            write_workspace(&agents_dir, &scratch, &package)?;
            tree.write_dir(&scratch.join(&package))?;
            let build = builder::build_rust(&scratch, &target_dir, &[&package], timeout)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            files: files
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_diff_applies_back_to_its_source() {
        let old = snapshot(&[("src/lib.rs", "a\nb\nc\n"), ("gone.txt", "x\n")]);
        let new = snapshot(&[("src/lib.rs", "a\nB\nc\n"), ("new.txt", "y\n")]);
        let patch = diff(&old, &new);
        assert!(patch.contains("--- a/src/lib.rs"), "{patch}");
        assert_eq!(apply_patch(&old, &patch), Ok(new));
    }

    #[test]
    fn paths_that_escape_are_refused() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "",
            "a//b",
            "target/x",
            "a\\b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
        assert!(check_path("src/lib.rs").is_ok());
        let base = snapshot(&[("src/lib.rs", "a\n")]);
        let escape = "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-a\n+b\n";
        assert!(matches!(
            apply_patch(&base, escape),
            Err(PatchError::Escape(_))
        ));
    }

    #[test]
    fn a_patch_that_does_not_match_conflicts() {
        let base = snapshot(&[("src/lib.rs", "one\ntwo\n")]);
        let patch = "--- a/src/lib.rs\n+++ b/src/lib.rs\n@@ -1,2 +1,2 @@\n-uno\n+ONE\n two\n";
        assert!(matches!(
            apply_patch(&base, patch),
            Err(PatchError::Conflict(_))
        ));
        assert!(matches!(
            apply_patch(&base, "not a diff"),
            Err(PatchError::Malformed(_))
        ));
    }

    #[test]
    fn snapshots_round_trip_through_encoding() {
        let s = snapshot(&[("Cargo.toml", "[package]\nname = \"x\"\n")]);
        let (digest, bytes) = s.encode();
        assert_eq!(digest.len(), 64);
        assert_eq!(Snapshot::decode(&bytes).unwrap(), s);
        assert_eq!(s.package_name().as_deref(), Some("x"));
    }
}
