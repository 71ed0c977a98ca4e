//! The wasmtime engine and everything per-invocation: engine configuration (pooling allocator,
//! fuel, epochs), preparing a component into an `InstancePre`, and running one export under
//! limits in a fresh instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
    UpdateDeadline,
};

use crate::bindings::{AgentPre, Event, GuestError, Health, Info};
use crate::cache::{Cache, CacheStats};
use crate::error::{Error, Fault, Rejection, Result, internal};
use crate::limits::Limits;
use crate::linker::{HostState, linker};
use crate::services::Services;
use crate::validate;

/// How often the epoch advances: how often a running guest yields its thread, and the
/// granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Extra time past a deadline before the host abandons a call stuck in a host function, where
/// epoch interruption cannot reach it.
const HOST_CALL_GRACE: Duration = Duration::from_millis(250);

/// How the engine is set up, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Instances that can be alive at once across all agents (the pooling allocator's size).
    pub max_instances: u32,
    /// The largest memory limit any agent may ask for.
    pub max_memory_bytes: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            cache_dir: None,
            max_instances: 256,
            max_memory_bytes: 1 << 30,
        }
    }
}

/// A component that passed validation, compiled and pre-linked: instantiating it is cheap.
#[derive(Clone)]
pub struct Prepared {
    digest: String,
    pre: AgentPre<HostState>,
    imports: Arc<[String]>,
}

impl Prepared {
    /// sha256 of the component bytes, hex-encoded.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The interfaces the component imports, by full name (`overseer:agent/llm@0.1.0`,
    /// `wasi:io/streams@0.2.6`, …).
    pub fn imports(&self) -> &[String] {
        &self.imports
    }
}

/// What a finished invocation reports besides its value.
#[derive(Debug, Clone)]
pub struct Outcome<T> {
    /// What the export returned.
    pub value: T,
    /// Fuel burned.
    pub fuel_used: u64,
    /// Largest linear memory the instance grew to, in bytes.
    pub peak_memory: usize,
    /// Wall-clock time, instantiation included.
    pub elapsed: Duration,
}

/// The WebAssembly runtime of the host. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Cache,
    max_memory_bytes: usize,
}

enum Call {
    Describe,
    Handle(Event),
    Health,
}

enum Reply {
    Info(Info),
    Handled(std::result::Result<String, GuestError>),
    Health(Health),
}

impl Sandbox {
    /// Build the engine, its linker and its compile cache, and start the epoch ticker.
    pub fn new(config: &SandboxConfig) -> Result<Self> {
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .consume_fuel(true)
            .epoch_interruption(true);
        let mut pool = PoolingAllocationConfig::new();
        let instances = config.max_instances.max(1);
        // A Rust component holds a handful of core instances (program, WASI adapter, shims);
        // Python and JavaScript ones a few more.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .total_stacks(instances)
            .max_memory_size(config.max_memory_bytes)
            .max_component_instance_size(4 << 20)
            .max_core_instance_size(4 << 20)
            // Keeping the first pages of each slot resident saves page faults on every
            // fresh instance, which dominate the cost of a call.
            .linear_memory_keep_resident(128 << 10)
            .table_keep_resident(16 << 10);
        wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm).map_err(internal)?;
        let linker = linker(&engine).map_err(internal)?;
        let cache = Cache::new(&engine, config.cache_dir.as_deref()).map_err(internal)?;
        start_epoch_ticker(&engine);
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                max_memory_bytes: config.max_memory_bytes,
            }),
        })
    }

    /// How the compile cache has served so far.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// The largest memory limit an agent may have.
    pub fn max_memory_bytes(&self) -> usize {
        self.inner.max_memory_bytes
    }

    /// Validate, compile (or load from the cache) and pre-link a component.
    ///
    /// CPU-heavy when the cache misses: call it from a blocking thread.
    pub fn prepare(&self, bytes: &[u8]) -> Result<Prepared> {
        validate::check_header(bytes)?;
        let digest = digest(bytes);
        let engine = &self.inner.engine;
        let component = self
            .inner
            .cache
            .load_or_compile(engine, &digest, bytes)
            .map_err(|e| Rejection::Invalid(format!("{e:#}")))?;
        self.link(digest, &component)
    }

    fn link(&self, digest: String, component: &Component) -> Result<Prepared> {
        let imports = validate::check_imports(&self.inner.engine, component)?;
        let instance_pre = self
            .inner
            .linker
            .instantiate_pre(component)
            .map_err(|e| Rejection::UnknownImport(format!("{e:#}")))?;
        let pre =
            AgentPre::new(instance_pre).map_err(|e| Rejection::WrongWorld(format!("{e:#}")))?;
        Ok(Prepared {
            digest,
            pre,
            imports: imports.into(),
        })
    }

    /// Call `describe` in a fresh instance.
    pub async fn describe(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
    ) -> Result<Outcome<Info>> {
        let outcome = self
            .call(prepared, limits, services, Call::Describe)
            .await?;
        match outcome.value {
            Reply::Info(info) => Ok(with_value(
                outcome.fuel_used,
                outcome.peak_memory,
                outcome.elapsed,
                info,
            )),
            _ => Err(internal("describe returned another export's reply")),
        }
    }

    /// Call `health` in a fresh instance.
    pub async fn health(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
    ) -> Result<Outcome<Health>> {
        let outcome = self.call(prepared, limits, services, Call::Health).await?;
        match outcome.value {
            Reply::Health(health) => Ok(with_value(
                outcome.fuel_used,
                outcome.peak_memory,
                outcome.elapsed,
                health,
            )),
            _ => Err(internal("health returned another export's reply")),
        }
    }

    /// Call `handle` with `event` in a fresh instance. An error the agent returns is
    /// `Error::Guest`; a limit violation or a trap is `Error::Fault`.
    pub async fn handle(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
        event: Event,
    ) -> Result<Outcome<String>> {
        let outcome = self
            .call(prepared, limits, services, Call::Handle(event))
            .await?;
        match outcome.value {
            Reply::Handled(Ok(output)) => Ok(with_value(
                outcome.fuel_used,
                outcome.peak_memory,
                outcome.elapsed,
                output,
            )),
            Reply::Handled(Err(e)) => Err(Error::Guest(e)),
            _ => Err(internal("handle returned another export's reply")),
        }
    }

    async fn call(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
        call: Call,
    ) -> Result<Outcome<Reply>> {
        let memory = limits.memory_bytes.min(self.inner.max_memory_bytes);
        let mut store = Store::new(&self.inner.engine, HostState::new(services, memory));
        store.limiter(|state| &mut state.limiter);
        store.set_fuel(limits.fuel).map_err(internal)?;
        // At every epoch tick the guest gives its thread back to the runtime, so a guest that
        // spins never holds a worker that other agents and the API need; past its deadline it
        // is stopped (`Trap::Interrupt`, reported as `timeout`).
        let deadline = Instant::now() + limits.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });

        let started = Instant::now();
        let run = async {
            let agent = prepared.pre.instantiate_async(&mut store).await?;
            let reply = match call {
                Call::Describe => Reply::Info(agent.call_describe(&mut store).await?),
                Call::Handle(event) => Reply::Handled(agent.call_handle(&mut store, &event).await?),
                Call::Health => Reply::Health(agent.call_health(&mut store).await?),
            };
            wasmtime::Result::<Reply>::Ok(reply)
        };
        let result = tokio::time::timeout(limits.timeout + HOST_CALL_GRACE, run).await;
        let elapsed = started.elapsed();
        store.data().flush_stdio();
        let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let peak_memory = store.data().limiter.peak_bytes;

        let value = match result {
            Err(_elapsed) => return Err(Fault::Timeout(limits.timeout.as_millis() as u64).into()),
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => return Err(classify(&e, &store, limits).into()),
        };
        Ok(Outcome {
            value,
            fuel_used,
            peak_memory,
            elapsed,
        })
    }
}

fn with_value<T>(fuel_used: u64, peak_memory: usize, elapsed: Duration, value: T) -> Outcome<T> {
    Outcome {
        value,
        fuel_used,
        peak_memory,
        elapsed,
    }
}

/// Name the fault behind a failed call: a limit, or a trap with its message.
fn classify(error: &wasmtime::Error, store: &Store<HostState>, limits: &Limits) -> Fault {
    if store.data().limiter.exceeded {
        return Fault::MemoryExceeded(limits.memory_bytes);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Fault::FuelExhausted(limits.fuel),
        Some(Trap::Interrupt) => Fault::Timeout(limits.timeout.as_millis() as u64),
        _ => {
            let message = format!("{error:#}");
            if message.contains("pooling allocator") || message.contains("concurrent") {
                Fault::Capacity(message)
            } else {
                // The cause, without the wasm backtrace wrapped around it: the backtrace is
                // for the host's log, the cause for the caller and the version's record.
                tracing::debug!(error = %message, "guest trapped");
                Fault::Trap(error.root_cause().to_string())
            }
        }
    }
}

/// sha256 of `bytes`, hex-encoded: the identity of a component.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Advance the engine's epoch every tick, until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("overseer-epoch".to_string())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "could not start the epoch ticker; deadlines will not fire");
    }
}
