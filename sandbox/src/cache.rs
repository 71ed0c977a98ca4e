//! On-disk cache of compiled components, keyed by the component's sha256 and the engine's
//! compatibility hash, so a restart or a rollback loads native code instead of recompiling.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Counters of how the cache served lookups.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Components loaded from the cache.
    pub hits: u64,
    /// Components compiled because the cache did not have them.
    pub misses: u64,
}

pub(crate) struct Cache {
    dir: Option<PathBuf>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Cache {
    /// A cache under `root` for this engine; `None` keeps nothing on disk.
    pub(crate) fn new(engine: &Engine, root: Option<&Path>) -> std::io::Result<Self> {
        let dir = match root {
            Some(root) => {
                let mut hasher = DefaultHasher::new();
                engine.precompile_compatibility_hash().hash(&mut hasher);
                let dir = root.join(format!("{:016x}", hasher.finish()));
                std::fs::create_dir_all(&dir)?;
                Some(dir)
            }
            None => None,
        };
        Ok(Cache {
            dir,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// The compiled component for `bytes`, from the cache when it holds it.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Component> {
        let Some(dir) = &self.dir else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return Component::new(engine, bytes);
        };
        let path = dir.join(format!("{digest}.cwasm"));
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(digest, "compiled component loaded from cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(digest, error = %e, "cache entry unusable; recompiling");
                }
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let component = Component::new(engine, bytes)?;
        if let Err(e) = write_atomically(&path, &component.serialize()?) {
            tracing::warn!(digest, error = %e, "could not write the compile cache");
        }
        Ok(component)
    }
}

#[allow(unsafe_code)] // The file was written by `Component::serialize` of an engine with the same compatibility hash, into a directory only this host writes.
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    // SAFETY: see the allow above; a truncated or foreign file is rejected by wasmtime's header
    // and compatibility checks before any code is mapped.
    unsafe { Component::deserialize_file(engine, path) }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    std::io::Write::write_all(&mut tmp.1, bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let path = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}
