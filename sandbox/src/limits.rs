//! Per-invocation limits: fuel, linear memory and a wall-clock deadline, with the host defaults
//! that apply where an agent's manifest is silent.

use std::time::Duration;

/// Fuel for one invocation. Enough for a few hundred million simple instructions, far more than
/// any handler that does not loop by mistake needs.
pub const DEFAULT_FUEL: u64 = 500_000_000;

/// Linear memory one instance may grow to. Rust agents use a few MiB; this leaves room for data
/// while keeping a runaway allocation cheap for the host.
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

/// Wall-clock cap for one invocation. Long enough for a handler that waits on host services,
/// short enough that a spinning guest frees its slot quickly.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Table elements one instance may grow to (function references; Rust guests use a few hundred).
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

/// What one invocation of an agent may consume before it is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Units of fuel (roughly, WebAssembly instructions) the invocation may burn.
    pub fuel: u64,
    /// Bytes of linear memory an instance may grow to.
    pub memory_bytes: usize,
    /// Wall-clock time the invocation may take, instantiation included.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Enforces the memory limit of one store and remembers whether the guest ran into it, so a
/// trap that follows a refused `memory.grow` is reported as `memory_exceeded`, not as a bug.
pub(crate) struct MemoryLimiter {
    max_bytes: usize,
    pub(crate) exceeded: bool,
    pub(crate) peak_bytes: usize,
}

impl MemoryLimiter {
    pub(crate) fn new(max_bytes: usize) -> Self {
        MemoryLimiter {
            max_bytes,
            exceeded: false,
            peak_bytes: 0,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.exceeded = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
