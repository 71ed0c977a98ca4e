//! The wasmtime engine and everything per-invocation: engine configuration (pooling allocator,
//! fuel, epochs), preparing a component into an `InstancePre`, and running one export under
//! limits in a fresh instance.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use wasmtime::component::{Component, ComponentExportIndex, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};

use crate::bindings::{Agent, AgentPre, Event, GuestError, Health, Info};
use crate::cache::{Cache, CacheKey, CacheStats};
use crate::error::{Error, Fault, Rejection, Result, internal};
use crate::limits::Limits;
use crate::linker::{HostState, linker};
use crate::services::Services;
use crate::validate;

/// How often the epoch advances: how often a running guest yields its thread, and the
/// granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Extra time past a deadline before the host abandons a call stuck in a host function, where
/// epoch interruption cannot reach it: two ticks, so a call blocked on the LLM, HTTP or a slow
/// disk ends as close to its deadline as one spinning in guest code.
pub(crate) const HOST_CALL_GRACE: Duration = EPOCH_TICK.saturating_mul(2);

/// Fuel burned between yields of a running guest: about 10 ms of a tight loop (measured at
/// about 25 × 10⁹ units a second on one core). With the epoch yields it keeps a busy guest from
/// holding a thread whatever it runs.
pub(crate) const FUEL_YIELD_INTERVAL: u64 = 25_000_000;

/// The nice value of the guest threads: below the API's threads, so that when both want a
/// core the kernel runs the API first (CFS weighs nice 0 against nice 10 about 10 to 1), and a
/// request waits for a guest's slice no longer than it takes the scheduler to preempt it.
const GUEST_NICE: i32 = 10;

/// Lower the calling thread's priority to [`GUEST_NICE`] (Linux keeps a nice value per
/// thread). A failure leaves the thread as it was: guests still yield at every tick.
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(thread), GUEST_NICE) {
        tracing::warn!(error = %e, "guest thread keeps its priority");
    }
}

/// Bytes of stdout and of stderr kept per call by default. Agents log through `runtime.log`;
/// stdio is for panics and stray prints.
pub const DEFAULT_STDIO_BYTES: usize = 64 << 10;

/// Largest answer `handle` may return by default: what the API hands back in one JSON body.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 1 << 20;

/// Guest calls that run at once across all agents by default; more wait for a slot, within
/// their deadline.
pub const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 64;

/// How the engine is set up, fixed for the life of the process.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Where compiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// The secret that signs cache files (see the cache's module docs); nothing that runs
    /// agent code may read it.
    pub cache_key: CacheKey,
    /// Largest size of the cache on disk, in bytes.
    pub cache_max_bytes: u64,
    /// Instances that can be alive at once across all agents (the pooling allocator's size).
    pub max_instances: u32,
    /// The largest memory limit any agent may ask for.
    pub max_memory_bytes: usize,
    /// Guest calls (invocations, checks, health, canary runs) that run at once across all
    /// agents; more wait for a slot, and one that waits past its deadline fails `overloaded`.
    pub max_concurrent_calls: u32,
    /// Largest answer `handle` may return, in bytes; a larger one fails the call with
    /// `answer_too_large` before it is copied out of the guest.
    pub max_answer_bytes: usize,
    /// Bytes of stdout and of stderr kept per call; past them writes still succeed and the
    /// agent's log says how much was cut.
    pub stdio_bytes: usize,
    /// Threads of a runtime of their own that run guest code; 0 runs guests on the caller's
    /// runtime, yielding at every epoch tick.
    pub guest_threads: usize,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            cache_dir: None,
            cache_key: CacheKey::default(),
            cache_max_bytes: 2 << 30,
            max_instances: 256,
            max_memory_bytes: 1 << 30,
            max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            stdio_bytes: DEFAULT_STDIO_BYTES,
            guest_threads: 0,
        }
    }
}

/// A component that passed validation, compiled and pre-linked: instantiating it is cheap.
#[derive(Clone)]
pub struct Prepared {
    digest: String,
    pub(crate) pre: AgentPre<HostState>,
    /// The `handle` export, looked up once.
    pub(crate) handle: ComponentExportIndex,
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

pub(crate) struct Inner {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    cache: Cache,
    pub(crate) max_memory_bytes: usize,
    /// One permit per guest call that may run at once.
    pub(crate) calls: Arc<Semaphore>,
    max_concurrent_calls: u32,
    pub(crate) max_answer_bytes: usize,
    pub(crate) stdio_bytes: usize,
    /// The runtime guest code runs on, when it has one of its own.
    guests: Option<tokio::runtime::Runtime>,
    /// How many instances may be kept idle across all agents (`[limits] reuse`).
    pub(crate) idle_budget: Arc<crate::reuse::IdleBudget>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Dropped from async code at shutdown, where blocking on the runtime's workers panics.
        if let Some(guests) = self.guests.take() {
            guests.shutdown_background();
        }
    }
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

/// Aborts a task when the caller stops waiting for it, as dropping a future would.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Sandbox {
    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    pub(crate) fn inner_arc(&self) -> Arc<Inner> {
        self.inner.clone()
    }

    /// Run `run` on the guests' own runtime when there is one (aborted if the caller stops
    /// waiting), else here.
    pub(crate) async fn on_guest_threads<T: Send + 'static>(
        &self,
        run: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        match &self.inner.guests {
            None => run.await,
            Some(guests) => {
                let mut task = AbortOnDrop(guests.spawn(run));
                (&mut task.0)
                    .await
                    .map_err(|e| internal(format!("guest task: {e}")))?
            }
        }
    }
}

impl Inner {
    /// A guest call slot, waited for until `deadline`.
    ///
    /// # Errors
    /// `Fault::Capacity` when every slot stays busy until the deadline.
    pub(crate) async fn call_slot(
        &self,
        deadline: Instant,
    ) -> Result<tokio::sync::OwnedSemaphorePermit> {
        let waited = tokio::time::timeout_at(deadline.into(), self.calls.clone().acquire_owned());
        match waited.await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(closed)) => Err(internal(closed)),
            Err(_) => Err(Fault::Capacity(format!(
                "all {} guest call slots stayed busy until the call's deadline",
                self.max_concurrent_calls
            ))
            .into()),
        }
    }
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
        let cache = Cache::new(
            &engine,
            config.cache_dir.as_deref(),
            config.cache_key,
            config.cache_max_bytes,
        )
        .map_err(internal)?;
        start_epoch_ticker(&engine);
        let guests = match config.guest_threads {
            0 => None,
            threads => Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("overseer-guest")
                    .on_thread_start(lower_priority)
                    .enable_all()
                    .build()
                    .map_err(internal)?,
            ),
        };
        let max_concurrent_calls = config.max_concurrent_calls.max(1);
        Ok(Sandbox {
            inner: Arc::new(Inner {
                engine,
                linker,
                cache,
                max_memory_bytes: config.max_memory_bytes,
                calls: Arc::new(Semaphore::new(max_concurrent_calls as usize)),
                max_concurrent_calls,
                max_answer_bytes: config.max_answer_bytes,
                stdio_bytes: config.stdio_bytes,
                guests,
                idle_budget: crate::reuse::IdleBudget::new(instances),
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
        let handle = component
            .get_export_index(None, "handle")
            .ok_or_else(|| Rejection::WrongWorld("no `handle` export".to_string()))?;
        Ok(Prepared {
            digest,
            pre,
            handle,
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
        let run = run(
            self.inner.clone(),
            prepared.clone(),
            *limits,
            services,
            call,
        );
        self.on_guest_threads(run).await
    }
}

/// Run one export of `prepared` in a fresh instance under `limits`: wait for a call slot,
/// instantiate, call, and lift the answer, all before the deadline.
async fn run(
    inner: Arc<Inner>,
    prepared: Prepared,
    limits: Limits,
    services: Services,
    call: Call,
) -> Result<Outcome<Reply>> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let _slot = inner.call_slot(deadline).await?;
    // At every epoch tick the guest gives its thread back to the runtime, so a guest that
    // spins never holds a worker that other agents and the API need; past its deadline it is
    // stopped (`Trap::Interrupt`, reported as `timeout`).
    let mut store =
        crate::session::deadline_store(&inner, &limits, services, None).map_err(internal)?;
    store.data_mut().deadline = deadline;

    let max_answer = inner.max_answer_bytes;
    let exports = async {
        let instance = prepared
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await?;
        let reply = match call {
            Call::Describe => {
                let agent = Agent::new(&mut store, &instance)?;
                Reply::Info(agent.call_describe(&mut store).await?)
            }
            Call::Health => {
                let agent = Agent::new(&mut store, &instance)?;
                Reply::Health(agent.call_health(&mut store).await?)
            }
            Call::Handle(event) => {
                let handle = instance
                    .get_typed_func::<(&Event,), (std::result::Result<String, GuestError>,)>(
                        &mut store,
                        &prepared.handle,
                    )?;
                let (answer,) = handle.call_async(&mut store, (&event,)).await?;
                match answer {
                    // Wasmtime runs the guest's post-return (which frees the string) as
                    // part of the call, so the answer is measured on the host's copy. That
                    // copy is never larger than the guest's memory limit and is dropped
                    // here, before it reaches a caller, a log or the event log.
                    Ok(text) if text.len() > max_answer => {
                        return Ok(Err(Fault::AnswerTooLarge {
                            bytes: text.len(),
                            limit: max_answer,
                        }));
                    }
                    Ok(text) => Reply::Handled(Ok(text)),
                    Err(e) => Reply::Handled(Err(e)),
                }
            }
        };
        wasmtime::Result::<std::result::Result<Reply, Fault>>::Ok(Ok(reply))
    };
    let result = tokio::time::timeout_at((deadline + HOST_CALL_GRACE).into(), exports).await;
    let elapsed = started.elapsed();
    store.data().flush_stdio();
    let fuel_used = limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
    let peak_memory = store.data().limiter.peak_bytes;

    let value = match result {
        Err(_elapsed) => return Err(Fault::Timeout(limits.timeout.as_millis() as u64).into()),
        Ok(Ok(Ok(reply))) => reply,
        Ok(Ok(Err(fault))) => return Err(fault.into()),
        Ok(Err(e)) => return Err(classify(&e, &store, &limits).into()),
    };
    Ok(Outcome {
        value,
        fuel_used,
        peak_memory,
        elapsed,
    })
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
pub(crate) fn classify(
    error: &wasmtime::Error,
    store: &Store<HostState>,
    limits: &Limits,
) -> Fault {
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
