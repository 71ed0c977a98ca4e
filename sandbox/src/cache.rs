//! On-disk cache of compiled components, keyed by the component's sha256 and the engine's
//! compatibility hash, so a restart or a rollback loads native code instead of recompiling.
//!
//! A cache file is native code the host will map and run, so it is trusted only when it proves
//! itself: each file ends with an HMAC-SHA256 (RFC 2104) of the digest it is filed under and
//! of its contents, keyed by a secret that builds cannot read. A file copied under another
//! component's name, truncated, corrupted or written by anyone without the key fails the check
//! and is recompiled from the component's bytes, never loaded. The cache is bounded in size:
//! least recently used files go first.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Length of the tag at the end of every cache file.
const TAG_BYTES: usize = 32;

/// Domain separation of the tag, versioned with the file layout.
const TAG_CONTEXT: &[u8] = b"overseer compile cache v1\0";

/// The secret that signs compile-cache files: 32 random bytes nothing that runs agent code
/// can read. Never printed.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheKey(pub [u8; 32]);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey([redacted])")
    }
}

/// Counters of how the cache served lookups.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Components loaded from the cache.
    pub hits: u64,
    /// Components compiled because the cache did not have them.
    pub misses: u64,
    /// Cache files that failed their tag and were recompiled instead of loaded.
    pub refused: u64,
    /// Cache files removed to keep the cache within its size.
    pub evicted: u64,
}

pub(crate) struct Cache {
    dir: Option<PathBuf>,
    key: CacheKey,
    max_bytes: u64,
    hits: AtomicU64,
    misses: AtomicU64,
    refused: AtomicU64,
    evicted: AtomicU64,
    /// Evictions run one at a time.
    evicting: Mutex<()>,
}

impl Cache {
    /// A cache under `root` for this engine, its files signed with `key` and kept within
    /// `max_bytes`; `None` keeps nothing on disk.
    pub(crate) fn new(
        engine: &Engine,
        root: Option<&Path>,
        key: CacheKey,
        max_bytes: u64,
    ) -> std::io::Result<Self> {
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
            key,
            max_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            evicting: Mutex::new(()),
        })
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            evicted: self.evicted.load(Ordering::Relaxed),
        }
    }

    /// The compiled component for `bytes` (whose sha256 is `digest`), from the cache when it
    /// holds a file that proves to be its compilation.
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
        match std::fs::read(&path) {
            Ok(file) => match self.verified(digest, &file) {
                Some(code) => match deserialize(engine, code) {
                    Ok(component) => {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        touch(&path);
                        tracing::debug!(digest, "compiled component loaded from cache");
                        return Ok(component);
                    }
                    Err(e) => {
                        tracing::warn!(digest, error = %e, "cache entry unusable; recompiling");
                    }
                },
                None => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        digest,
                        path = %path.display(),
                        "cache entry fails its tag (not this component's compilation, or altered); recompiling"
                    );
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(digest, error = %e, "cache entry unreadable; recompiling"),
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let component = Component::new(engine, bytes)?;
        let mut file = component.serialize()?;
        let tag = self.tag(digest, &file);
        file.extend_from_slice(&tag);
        if let Err(e) = write_atomically(&path, &file) {
            tracing::warn!(digest, error = %e, "could not write the compile cache");
        }
        self.evict(dir);
        Ok(component)
    }

    fn mac(&self, digest: &str, code: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
        mac.update(TAG_CONTEXT);
        mac.update(digest.as_bytes());
        mac.update(b"\0");
        mac.update(code);
        mac
    }

    fn tag(&self, digest: &str, code: &[u8]) -> [u8; TAG_BYTES] {
        self.mac(digest, code).finalize().into_bytes().into()
    }

    /// The code of a cache file whose tag proves it was written by this host for `digest`.
    fn verified<'a>(&self, digest: &str, file: &'a [u8]) -> Option<&'a [u8]> {
        let split = file.len().checked_sub(TAG_BYTES)?;
        let (code, tag) = file.split_at(split);
        // `verify_slice` compares in constant time.
        self.mac(digest, code).verify_slice(tag).ok().map(|()| code)
    }

    /// Remove least recently used files until the cache is within its size.
    fn evict(&self, dir: &Path) {
        let Ok(_one) = self.evicting.try_lock() else {
            return;
        };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((meta.modified().ok()?, meta.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total = total.saturating_sub(len);
                self.evicted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(path = %path.display(), "compile cache entry evicted");
            }
        }
    }
}

#[allow(unsafe_code)] // The bytes carry this host's tag over the digest they are filed under, and the engine has the same compatibility hash.
fn deserialize(engine: &Engine, code: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: see the allow above: only bytes this host serialized for this very component,
    // proven by a tag keyed with a secret nothing else can read, reach here; wasmtime's header
    // and compatibility checks come on top.
    unsafe { Component::deserialize(engine, code) }
}

/// Mark a file as just used, for the LRU order.
fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
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
        SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyed(key: u8) -> Cache {
        let engine = Engine::default();
        Cache::new(&engine, None, CacheKey([key; 32]), u64::MAX).unwrap()
    }

    #[test]
    fn a_tag_holds_only_for_its_digest_its_bytes_and_its_key() {
        let cache = keyed(1);
        let mut file = b"native code".to_vec();
        file.extend_from_slice(&cache.tag("aa", b"native code"));
        assert_eq!(cache.verified("aa", &file), Some(&b"native code"[..]));
        assert_eq!(
            cache.verified("bb", &file),
            None,
            "filed under another digest"
        );
        let mut flipped = file.clone();
        flipped[0] ^= 1;
        assert_eq!(cache.verified("aa", &flipped), None, "altered code");
        assert_eq!(cache.verified("aa", &file[..file.len() - 1]), None);
        assert_eq!(cache.verified("aa", b"short"), None);
        assert_eq!(keyed(2).verified("aa", &file), None, "another key");
    }
}
