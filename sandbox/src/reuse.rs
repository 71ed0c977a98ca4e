//! Instances kept warm between calls, for agents whose manifest asks for it
//! (`[limits] reuse`): a Python or JavaScript component pays for instantiating its interpreter
//! on every fresh call, a reused instance only for the call itself.
//!
//! A reused instance keeps its linear memory (the guest's globals, caches, interpreter state)
//! from one call to the next, and nothing else: each call brings its own services (kv, log,
//! events), fuel and deadline, and its stdout and stderr are handed to that call's log. An
//! instance is dropped, never reused:
//! - after [`ReusePolicy::calls`] calls, or once older than [`ReusePolicy::max_age`];
//! - after any call that did not end with an answer: an error the agent returned, a trap, a
//!   limit, an answer too large, a deadline (the call may have stopped anywhere);
//! - after a call whose effects the caller could not commit (it keeps an instance only with
//!   [`Kept::keep`]);
//! - when its version stops serving ([`Instances::clear`], on every swap, rollback and
//!   retirement), including one whose call began before that and ends after; and when the
//!   [`Instances`] holding it is dropped.
//!
//! Idle instances hold slots of the pooling allocator (`max_instances`), not guest call slots:
//! each call still waits for one of those like a fresh call. At most half the pool is kept
//! idle across all agents (an instance past that budget is dropped after its call), so kept
//! instances never starve fresh calls, checks and canaries.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Store;

use crate::Prepared;
use crate::bindings::Event;
use crate::engine::{HOST_CALL_GRACE, Inner, Outcome, Sandbox, classify};
use crate::error::{Error, Fault, Result, internal};
use crate::limits::Limits;
use crate::linker::HostState;
use crate::services::Services;
use crate::session::{Handle, deadline_store, instantiate_handle};

/// When a kept instance is dropped: after `calls` calls, or once older than `max_age`,
/// whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReusePolicy {
    /// Calls one instance serves before it is dropped (at least 1).
    pub calls: u32,
    /// Age past which an instance is not used again; `None`: no limit but `calls`.
    pub max_age: Option<Duration>,
}

/// One instance between calls.
struct Warm {
    store: Store<HostState>,
    handle: Handle,
    calls: u32,
    born: Instant,
    /// Its share of the host's idle budget while it is idle.
    token: Option<IdleToken>,
}

/// How many instances may be idle across all agents: half the pooling allocator's instances,
/// so kept instances never take the slots fresh calls, checks and canaries need.
pub(crate) struct IdleBudget {
    idle: AtomicUsize,
    max: usize,
}

impl IdleBudget {
    pub(crate) fn new(max_instances: u32) -> Arc<IdleBudget> {
        Arc::new(IdleBudget {
            idle: AtomicUsize::new(0),
            max: (max_instances as usize / 2).max(1),
        })
    }

    fn take(self: &Arc<Self>) -> Option<IdleToken> {
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()
            .map(|_| IdleToken(self.clone()))
    }
}

/// One idle instance's place in the [`IdleBudget`], given back when it is dropped.
struct IdleToken(Arc<IdleBudget>);

impl Drop for IdleToken {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The idle instances of one version of one agent.
pub struct Instances {
    policy: ReusePolicy,
    /// Most instances kept idle at once (the agent's concurrency): more are dropped after
    /// their call.
    max_idle: usize,
    pool: Mutex<Pool>,
    /// Instances made, for tests and benchmarks.
    made: AtomicU64,
}

/// What [`Instances`] guards with one lock: the idle instances, the generation a call must
/// have begun in for its instance to be kept, and whether the version serves.
struct Pool {
    idle: Vec<Warm>,
    generation: u64,
    serving: bool,
}

impl Instances {
    /// Nothing kept yet; at most `max_idle` (at least 1) will be.
    pub fn new(policy: ReusePolicy, max_idle: usize) -> Self {
        Instances {
            policy: ReusePolicy {
                calls: policy.calls.max(1),
                max_age: policy.max_age,
            },
            max_idle: max_idle.max(1),
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                generation: 0,
                serving: true,
            }),
            made: AtomicU64::new(0),
        }
    }

    /// The policy instances are kept under.
    pub fn policy(&self) -> ReusePolicy {
        self.policy
    }

    /// Drop every idle instance, and every one in a call when it comes back, until
    /// [`Instances::resume`]: the version stopped serving, and what its instances hold must
    /// not reach a later activation.
    pub fn clear(&self) {
        let dropped = {
            let mut pool = self.lock();
            pool.serving = false;
            pool.generation += 1;
            std::mem::take(&mut pool.idle)
        };
        drop(dropped);
    }

    /// The version serves (again): instances of calls that begin from now on may be kept.
    pub fn resume(&self) {
        let mut pool = self.lock();
        pool.serving = true;
        pool.generation += 1;
    }

    /// Instances idle now.
    pub fn idle(&self) -> usize {
        self.lock().idle.len()
    }

    /// Instances made so far (one per fresh start: the first call, and each after a drop).
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A call begins: an idle instance still young enough (dropping those that are not), and
    /// the generation the call begins in.
    fn begin(&self) -> (Option<Warm>, u64) {
        let mut pool = self.lock();
        while let Some(mut warm) = pool.idle.pop() {
            if self.young(&warm) {
                warm.token = None;
                return (Some(warm), pool.generation);
            }
        }
        (None, pool.generation)
    }

    fn young(&self, warm: &Warm) -> bool {
        self.policy
            .max_age
            .is_none_or(|age| warm.born.elapsed() < age)
    }

    /// Keep `warm` after a call that answered and whose effects were committed, unless its
    /// calls or age are spent, the version stopped serving or was activated again since the
    /// call began, enough of its instances are idle, or the host's idle budget is spent.
    fn keep(&self, mut warm: Warm, generation: u64, budget: &Arc<IdleBudget>) {
        if warm.calls >= self.policy.calls || !self.young(&warm) {
            return;
        }
        let mut pool = self.lock();
        if !pool.serving || pool.generation != generation || pool.idle.len() >= self.max_idle {
            return;
        }
        let Some(token) = budget.take() else {
            return;
        };
        warm.token = Some(token);
        pool.idle.push(warm);
    }
}

/// The instance of a call that answered, held until the caller knows what became of the call:
/// [`Kept::keep`] (once the call's writes are committed) makes it available to the next call;
/// dropping it drops the instance.
pub struct Kept {
    warm: Option<Warm>,
    instances: Arc<Instances>,
    generation: u64,
    budget: Arc<IdleBudget>,
}

impl Kept {
    /// Keep the instance for the next call, under the instances' policy.
    pub fn keep(mut self) {
        if let Some(mut warm) = self.warm.take() {
            // Nothing of the finished call (its kv writes, events, context) stays reachable
            // while the instance is idle.
            warm.store.data_mut().services =
                Services::memory(Arc::new(crate::services::MemoryServices::default()));
            self.instances.keep(warm, self.generation, &self.budget);
        }
    }
}

impl Sandbox {
    /// Call `handle` with `event` in an instance of `instances` when one is idle, else in a
    /// fresh one. An answer comes with the instance, which the caller keeps for the next call
    /// with [`Kept::keep`] once it has committed the call's effects. Errors as
    /// [`Sandbox::handle`]; after any of them, and after an error the agent returns, the
    /// instance is dropped.
    pub async fn handle_reusing(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
        event: Event,
        instances: &Arc<Instances>,
    ) -> Result<(Outcome<String>, Kept)> {
        let run = run_reusing(
            self.inner_arc(),
            prepared.clone(),
            *limits,
            services,
            event,
            instances.clone(),
        );
        self.on_guest_threads(run).await
    }
}

/// A fresh instance of `prepared` with `services`, set up as a session's is, with the fuel of
/// its first call (instantiation included) and its deadline.
async fn instantiate(
    inner: &Inner,
    prepared: &Prepared,
    limits: &Limits,
    services: Services,
    deadline: Instant,
    instances: &Instances,
) -> std::result::Result<Warm, (Error, Option<Store<HostState>>)> {
    let mut store = match deadline_store(inner, limits, services, None) {
        Ok(store) => store,
        Err(e) => return Err((internal(e), None)),
    };
    store.data_mut().deadline = deadline;
    match instantiate_handle(&mut store, prepared).await {
        Ok(handle) => {
            instances.made.fetch_add(1, Ordering::AcqRel);
            Ok(Warm {
                store,
                handle,
                calls: 0,
                born: Instant::now(),
                token: None,
            })
        }
        Err(e) => {
            let fault = classify(&e, &store, limits);
            Err((fault.into(), Some(store)))
        }
    }
}

async fn run_reusing(
    inner: Arc<Inner>,
    prepared: Prepared,
    limits: Limits,
    services: Services,
    event: Event,
    instances: Arc<Instances>,
) -> Result<(Outcome<String>, Kept)> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let _slot = inner.call_slot(deadline).await?;
    let (idle, generation) = instances.begin();
    let mut warm = match idle {
        Some(mut warm) => {
            let state = warm.store.data_mut();
            state.services = services;
            state.deadline = deadline;
            // A refused `memory.grow` the last call survived says nothing about this one.
            state.limiter.exceeded = false;
            warm.store.set_fuel(limits.fuel).map_err(internal)?;
            warm
        }
        None => {
            let made = tokio::time::timeout_at(
                (deadline + HOST_CALL_GRACE).into(),
                instantiate(&inner, &prepared, &limits, services, deadline, &instances),
            )
            .await;
            match made {
                Ok(Ok(warm)) => warm,
                Ok(Err((error, store))) => {
                    if let Some(store) = store {
                        store.data().flush_stdio();
                    }
                    return Err(error);
                }
                Err(_) => return Err(Fault::Timeout(limits.timeout.as_millis() as u64).into()),
            }
        }
    };
    let called = tokio::time::timeout_at(
        (deadline + HOST_CALL_GRACE).into(),
        warm.handle.call_async(&mut warm.store, (&event,)),
    )
    .await;
    warm.store.data().flush_stdio();
    let fuel_used = limits
        .fuel
        .saturating_sub(warm.store.get_fuel().unwrap_or(0));
    let peak_memory = warm.store.data().limiter.peak_bytes;
    match called {
        Err(_elapsed) => Err(Fault::Timeout(limits.timeout.as_millis() as u64).into()),
        Ok(Ok((Ok(text),))) if text.len() > inner.max_answer_bytes => Err(Fault::AnswerTooLarge {
            bytes: text.len(),
            limit: inner.max_answer_bytes,
        }
        .into()),
        Ok(Ok((Ok(text),))) => {
            warm.calls += 1;
            let outcome = Outcome {
                value: text,
                fuel_used,
                peak_memory,
                elapsed: started.elapsed(),
            };
            let kept = Kept {
                warm: Some(warm),
                instances,
                generation,
                budget: inner.idle_budget.clone(),
            };
            Ok((outcome, kept))
        }
        Ok(Ok((Err(e),))) => Err(Error::Guest(e)),
        Ok(Err(e)) => Err(classify(&e, &warm.store, &limits).into()),
    }
}
