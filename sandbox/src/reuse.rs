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
//! - when its version stops serving ([`Instances::clear`], on every swap and rollback), and
//!   when the [`Instances`] holding it is dropped.
//!
//! Idle instances hold slots of the pooling allocator (`max_instances`), not guest call slots:
//! each call still waits for one of those like a fresh call.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The [`Instances::generation`] it was made in.
    generation: u64,
}

/// The idle instances of one version of one agent.
pub struct Instances {
    policy: ReusePolicy,
    /// Most instances kept idle at once (the agent's concurrency): more are dropped after
    /// their call.
    max_idle: usize,
    idle: Mutex<Vec<Warm>>,
    /// Bumped by [`Instances::clear`]: an instance of an older generation that comes back
    /// from its call is dropped instead of kept.
    generation: AtomicU64,
    /// Instances made, for tests and benchmarks.
    made: AtomicU64,
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
            idle: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            made: AtomicU64::new(0),
        }
    }

    /// The policy instances are kept under.
    pub fn policy(&self) -> ReusePolicy {
        self.policy
    }

    /// Drop every idle instance, and every one in a call when it comes back: the version
    /// stopped serving, and what its instances hold must not reach its next activation.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let dropped = std::mem::take(&mut *self.lock());
        drop(dropped);
    }

    /// Instances idle now.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// Instances made so far (one per fresh start: the first call, and each after a drop).
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Warm>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle instance still young enough, dropping those that are not.
    fn take(&self) -> Option<Warm> {
        let mut idle = self.lock();
        while let Some(warm) = idle.pop() {
            if self.young(&warm) {
                return Some(warm);
            }
        }
        None
    }

    fn young(&self, warm: &Warm) -> bool {
        self.policy
            .max_age
            .is_none_or(|age| warm.born.elapsed() < age)
    }

    /// Keep `warm` after a call that answered, unless its calls or age are spent, its
    /// generation is past, or enough are idle already.
    fn give_back(&self, warm: Warm) {
        if warm.calls >= self.policy.calls
            || !self.young(&warm)
            || warm.generation != self.generation.load(Ordering::Acquire)
        {
            return;
        }
        let mut idle = self.lock();
        if idle.len() < self.max_idle {
            idle.push(warm);
        }
    }
}

impl Sandbox {
    /// Call `handle` with `event` in an instance of `instances` when one is idle, else in a
    /// fresh one that is kept afterwards under the instances' policy. Errors as
    /// [`Sandbox::handle`]; after any of them, and after an error the agent returns, the
    /// instance is dropped.
    pub async fn handle_reusing(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
        event: Event,
        instances: &Arc<Instances>,
    ) -> Result<Outcome<String>> {
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

/// A fresh instance of `prepared` with `services`, set up as a session's is.
async fn instantiate(
    inner: &Inner,
    prepared: &Prepared,
    limits: &Limits,
    services: Services,
    instances: &Instances,
) -> std::result::Result<Warm, (Error, Option<Store<HostState>>)> {
    let mut store = match deadline_store(inner, limits, services, None) {
        Ok(store) => store,
        Err(e) => return Err((internal(e), None)),
    };
    store.data_mut().deadline = Instant::now() + limits.timeout;
    match instantiate_handle(&mut store, prepared).await {
        Ok(handle) => {
            instances.made.fetch_add(1, Ordering::AcqRel);
            Ok(Warm {
                store,
                handle,
                calls: 0,
                born: Instant::now(),
                generation: instances.generation.load(Ordering::Acquire),
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
) -> Result<Outcome<String>> {
    let started = Instant::now();
    let deadline = started + limits.timeout;
    let _slot = inner.call_slot(deadline).await?;
    let mut warm = match instances.take() {
        Some(mut warm) => {
            warm.store.data_mut().services = services;
            warm
        }
        None => {
            let made = tokio::time::timeout_at(
                (deadline + HOST_CALL_GRACE).into(),
                instantiate(&inner, &prepared, &limits, services, &instances),
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
    warm.store.data_mut().deadline = deadline;
    warm.store.set_fuel(limits.fuel).map_err(internal)?;
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
    let outcome = |value| Outcome {
        value,
        fuel_used,
        peak_memory,
        elapsed: started.elapsed(),
    };
    match called {
        Err(_elapsed) => Err(Fault::Timeout(limits.timeout.as_millis() as u64).into()),
        Ok(Ok((Ok(text),))) if text.len() > inner.max_answer_bytes => Err(Fault::AnswerTooLarge {
            bytes: text.len(),
            limit: inner.max_answer_bytes,
        }
        .into()),
        Ok(Ok((Ok(text),))) => {
            warm.calls += 1;
            instances.give_back(warm);
            Ok(outcome(text))
        }
        Ok(Ok((Err(e),))) => Err(Error::Guest(e)),
        Ok(Err(e)) => Err(classify(&e, &warm.store, &limits).into()),
    }
}
