//! Snapshots of an agent's source: every text file of its source directory, by relative path,
//! checked on the way in (no links, no paths that escape, UTF-8, a size limit) and stored
//! compressed and content-addressed, so that any two versions can be compared and a rollback
//! can put the source back.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Largest source tree accepted, all files together.
pub const MAX_SOURCE_BYTES: usize = 4 << 20;

/// Directories never part of a snapshot.
const SKIPPED_DIRS: &[&str] = &["target", ".git", "__pycache__", "node_modules"];

/// The files of an agent's source, by relative path with `/` separators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Snapshot {
    pub files: BTreeMap<String, String>,
}

impl Snapshot {
    /// The snapshot as it may be shown, to a person or to an agent: the values of each
    /// `agent.toml`'s `[secrets]` table replaced ([`overseer_kernel::manifest::redact_toml`]).
    pub fn redacted(&self) -> Snapshot {
        let files = self
            .files
            .iter()
            .map(|(path, text)| {
                let manifest = path == "agent.toml" || path.ends_with("/agent.toml");
                let shown = if manifest {
                    overseer_kernel::manifest::redact_toml(text)
                } else {
                    text.clone()
                };
                (path.clone(), shown)
            })
            .collect();
        Snapshot { files }
    }

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

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> Error {
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        Snapshot {
            files: files
                .iter()
                .map(|(p, t)| (p.to_string(), t.to_string()))
                .collect(),
        }
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
