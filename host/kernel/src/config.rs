//! The kernel's settings: the instance pool, the ceilings and defaults of agents' limits, the
//! admission defaults, and how many versions stay compiled.

use std::path::PathBuf;
use std::time::Duration;

use overseer_sandbox::{Limits, SandboxConfig};

/// How the kernel runs agents. Parsed by the binary from flags and the configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelConfig {
    /// Where the compile cache lives (`<data-dir>/cache`).
    pub data_dir: PathBuf,
    /// Instances alive at once across all agents (the size of the instance pool).
    pub max_instances: u32,
    /// The largest memory limit a manifest may ask for, in MiB.
    pub max_memory_mb: u64,
    /// The longest deadline a manifest may ask for, in milliseconds.
    pub max_timeout_ms: u64,
    /// Fuel, memory (MiB) and deadline (ms) for agents whose manifest is silent.
    pub fuel: u64,
    pub memory_mb: u64,
    pub timeout_ms: u64,
    /// Invocations of one agent that run at once, by default.
    pub concurrency: u32,
    /// Invocations of one agent that may wait for a slot, by default.
    pub queue: u32,
    /// Versions per agent kept compiled in memory for instant rollback.
    pub keep_compiled: usize,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            data_dir: PathBuf::from(".overseer"),
            max_instances: 256,
            max_memory_mb: 1024,
            max_timeout_ms: 300_000,
            fuel: overseer_sandbox::DEFAULT_FUEL,
            memory_mb: (overseer_sandbox::DEFAULT_MEMORY_BYTES >> 20) as u64,
            timeout_ms: overseer_sandbox::DEFAULT_TIMEOUT.as_millis() as u64,
            concurrency: 16,
            queue: 64,
            keep_compiled: 5,
        }
    }
}

impl KernelConfig {
    /// The limits an agent gets where its manifest is silent.
    pub fn default_limits(&self) -> Limits {
        Limits {
            fuel: self.fuel,
            memory_bytes: usize::try_from(self.memory_mb << 20).unwrap_or(usize::MAX),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }

    pub fn max_memory_bytes(&self) -> usize {
        usize::try_from(self.max_memory_mb << 20).unwrap_or(usize::MAX)
    }

    pub fn max_timeout(&self) -> Duration {
        Duration::from_millis(self.max_timeout_ms)
    }

    /// The engine's settings.
    pub fn sandbox(&self) -> SandboxConfig {
        SandboxConfig {
            cache_dir: Some(self.data_dir.join("cache")),
            max_instances: self.max_instances,
            max_memory_bytes: self.max_memory_bytes(),
        }
    }
}
