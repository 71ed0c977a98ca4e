//! Where and how agents are built from source.

use std::path::PathBuf;
use std::time::Duration;

/// The builder's settings. Parsed by the binary from flags and the configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildConfig {
    /// The daemon's data directory: working copies in `sources/`, scratch builds in `scratch/`.
    pub data_dir: PathBuf,
    /// The bundled agents' workspace: Rust agents are built with its package settings,
    /// dependencies, release profile and lock file. `None`: Rust agents cannot be built.
    pub agents_dir: Option<PathBuf>,
    /// Where builds of agent source put their output: one target directory per agent
    /// (`<build_dir>/agents/<agent>`), so that one agent's build cannot touch another's.
    pub build_dir: PathBuf,
    /// Where componentize-py and componentize-js are installed on first use.
    pub tools_dir: PathBuf,
    /// How long one build may take before it is stopped.
    pub build_timeout: Duration,
    /// Whether builds must run in the sandbox ([`crate::isolation`]).
    pub isolation: crate::Isolation,
}
