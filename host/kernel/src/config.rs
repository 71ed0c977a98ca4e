//! The kernel's settings: the instance pool, the ceilings and defaults of agents' limits, the
//! admission defaults, what an agent may write through the host ([`Budgets`]), how long what
//! it wrote is kept ([`Retention`]), and how many versions stay compiled.

use std::path::PathBuf;
use std::time::Duration;

use overseer_sandbox::{CacheKey, Limits, SandboxConfig};
use serde::{Deserialize, Serialize};

/// How the kernel runs agents. Parsed by the binary from flags and the configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelConfig {
    /// Where the compile cache lives (`<data-dir>/cache`).
    pub data_dir: PathBuf,
    /// Instances alive at once across all agents (the size of the instance pool).
    pub max_instances: u32,
    /// Guest calls running at once across all agents; more wait for a slot within their
    /// deadline.
    pub max_concurrent_calls: u32,
    /// The largest memory limit a manifest may ask for, in MiB.
    pub max_memory_mb: u64,
    /// The longest deadline a manifest may ask for, in milliseconds.
    pub max_timeout_ms: u64,
    /// The most fuel a manifest may ask for per call. Unbounded by default (`i64::MAX`, the
    /// largest number a TOML file holds): the deadline
    /// (at most `max_timeout_ms`) bounds every call's CPU, and fuel is what makes a call's
    /// work reproducible. A tight loop burns about 25 × 10⁹ units a second on one core.
    pub max_fuel: u64,
    /// The longest queue a manifest may ask for.
    pub max_queue: u32,
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
    /// Threads of a runtime of their own for guest code (one per core by default); 0 shares
    /// the API's runtime. With guests on their own threads the operating system's scheduler,
    /// not the async runtime's, shares the cores between guests and the API: four spinning
    /// guests on two cores left `/v1/health` at a p99 of about 4 ms, against about 45 ms on a
    /// shared runtime.
    pub guest_threads: usize,
    /// The key that signs compile-cache files; builds cannot read it.
    pub cache_key: CacheKey,
    /// Largest size of the compile cache on disk, in MiB; least recently used entries go first.
    pub cache_max_mb: u64,
    pub budgets: Budgets,
    pub retention: Retention,
}

impl Default for KernelConfig {
    fn default() -> Self {
        KernelConfig {
            data_dir: PathBuf::from(".overseer"),
            max_instances: 256,
            max_concurrent_calls: overseer_sandbox::DEFAULT_MAX_CONCURRENT_CALLS,
            max_memory_mb: 1024,
            max_timeout_ms: 300_000,
            max_fuel: i64::MAX as u64,
            max_queue: 1024,
            fuel: overseer_sandbox::DEFAULT_FUEL,
            memory_mb: (overseer_sandbox::DEFAULT_MEMORY_BYTES >> 20) as u64,
            timeout_ms: overseer_sandbox::DEFAULT_TIMEOUT.as_millis() as u64,
            concurrency: 16,
            queue: 64,
            keep_compiled: 5,
            guest_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            cache_key: CacheKey::default(),
            cache_max_mb: 2048,
            budgets: Budgets::default(),
            retention: Retention::default(),
        }
    }
}

/// What one agent may write through the host, per call and over time. Past a per-call or
/// per-minute budget a log line is dropped (a marker line says how many), an emit or a kv write
/// answers `denied` with the budget it hit; nothing traps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Budgets {
    /// Longest log line kept; a longer one is cut and marked.
    pub log_line_bytes: usize,
    /// Log bytes one call may write.
    pub log_bytes_per_call: usize,
    /// Log bytes one agent may write per minute (a token bucket: a burst of up to this much,
    /// refilled evenly). Each line counts at least 64 bytes.
    pub log_bytes_per_minute: u32,
    /// Log bytes of one agent that may wait for the writer; past them its lines are dropped,
    /// other agents' are not.
    pub log_bytes_queued: usize,
    /// Events one call may emit.
    pub events_per_call: u32,
    /// Payload bytes one call may emit.
    pub event_bytes_per_call: usize,
    /// Events one agent may emit per minute (a token bucket, like the log budget).
    pub events_per_minute: u32,
    /// Payload bytes one agent may emit per minute (a token bucket; each event counts at
    /// least 64 bytes).
    pub event_bytes_per_minute: u32,
    /// Keys one agent may hold in kv.
    pub kv_keys: u64,
    /// Bytes (keys and values) one agent may hold in kv.
    pub kv_bytes: u64,
    /// Names one agent may record with `runtime.metric`; further names are dropped and
    /// counted.
    pub metric_names: u32,
    /// Bytes of recent events kept per agent for the canary.
    pub canary_bytes: usize,
    /// Largest answer of `handle`.
    pub answer_bytes: usize,
    /// Bytes of stdout and of stderr kept per call.
    pub stdio_bytes: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            log_line_bytes: 16 << 10,
            log_bytes_per_call: 256 << 10,
            log_bytes_per_minute: 4 << 20,
            log_bytes_queued: 4 << 20,
            events_per_call: 1000,
            event_bytes_per_call: 4 << 20,
            events_per_minute: 6000,
            event_bytes_per_minute: 16 << 20,
            kv_keys: 100_000,
            kv_bytes: 64 << 20,
            metric_names: 100,
            canary_bytes: 1 << 20,
            answer_bytes: overseer_sandbox::DEFAULT_MAX_ANSWER_BYTES,
            stdio_bytes: overseer_sandbox::DEFAULT_STDIO_BYTES,
        }
    }
}

/// How long what agents and the host wrote is kept. The retention task prunes every
/// `every_secs`, oldest first, by age and by size or count, whichever bites first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Seconds between two prunes.
    pub every_secs: u64,
    /// Events on the bus: days kept, and megabytes of payload kept in all.
    pub events_days: u32,
    pub events_mb: u64,
    /// Agents' log lines: days kept, and megabytes kept per agent.
    pub logs_days: u32,
    pub logs_mb_per_agent: u64,
    /// Records of LLM completions: days kept, and how many.
    pub llm_calls_days: u32,
    pub llm_calls: u64,
    /// Resolved alerts: days kept, and how many.
    pub alerts_days: u32,
    pub alerts: u64,
    /// Build logs of finished edits (the edit's record stays): days kept, and how many.
    pub build_logs_days: u32,
    pub build_logs: u64,
    /// Rejected versions of each agent (record and bytes): days kept, and how many per agent.
    /// The newest version of an agent is always kept, so numbers are never reused.
    pub rejected_days: u32,
    pub rejected_per_agent: u64,
    /// The risk gate's refusals: days kept, and how many. (Orders and fills are the
    /// account's books and are kept.)
    pub refusals_days: u32,
    pub refusals: u64,
    /// Memory texts kept per collection, the newest.
    pub memories_per_collection: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            every_secs: 60,
            events_days: 7,
            events_mb: 256,
            logs_days: 7,
            logs_mb_per_agent: 64,
            llm_calls_days: 30,
            llm_calls: 100_000,
            alerts_days: 30,
            alerts: 10_000,
            build_logs_days: 30,
            build_logs: 1000,
            rejected_days: 7,
            rejected_per_agent: 100,
            refusals_days: 90,
            refusals: 100_000,
            memories_per_collection: 100_000,
        }
    }
}

impl KernelConfig {
    /// The limits an agent gets where its manifest is silent.
    pub fn default_limits(&self) -> Limits {
        Limits {
            fuel: self.fuel,
            memory_bytes: usize::try_from(self.memory_mb.saturating_mul(1 << 20))
                .unwrap_or(usize::MAX),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }

    pub fn max_memory_bytes(&self) -> usize {
        usize::try_from(self.max_memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }

    pub fn max_timeout(&self) -> Duration {
        Duration::from_millis(self.max_timeout_ms)
    }

    /// The engine's settings.
    pub fn sandbox(&self) -> SandboxConfig {
        SandboxConfig {
            cache_dir: Some(self.data_dir.join("cache")),
            cache_key: self.cache_key,
            cache_max_bytes: self.cache_max_mb.saturating_mul(1 << 20),
            max_instances: self.max_instances,
            max_memory_bytes: self.max_memory_bytes(),
            max_concurrent_calls: self.max_concurrent_calls,
            max_answer_bytes: self.budgets.answer_bytes,
            stdio_bytes: self.budgets.stdio_bytes,
            guest_threads: self.guest_threads,
        }
    }
}
