//! A session: one instance of a component kept for many calls of `handle`, for runs that
//! drive one component over thousands of events (a backtest). Each call still gets its own
//! fuel and its own deadline; memory carries over, as it does in the guest. A session holds
//! one guest call slot for its whole life. After a fault (a trap, fuel, memory, deadline) the
//! instance may be in any state: the session is closed and every later call fails with
//! that fault.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::TypedFunc;
use wasmtime::{Store, UpdateDeadline};

use crate::Prepared;
use crate::bindings::{Event, GuestError};
use crate::engine::{Inner, Outcome, Sandbox, classify};
use crate::error::{Error, Fault, Result, internal};
use crate::limits::Limits;
use crate::linker::HostState;
use crate::services::Services;

/// The `handle` export, typed once per instance.
pub(crate) type Handle = TypedFunc<(&'static Event,), (std::result::Result<String, GuestError>,)>;

/// A store for calls that each set their own deadline in its data (a session's calls, a kept
/// instance's): the memory limit, fuel with its yields, and the epoch callback that yields at
/// every tick and stops the guest past the deadline of the call under way.
pub(crate) fn deadline_store(
    inner: &Inner,
    limits: &Limits,
    services: Services,
    replay: Option<&Replay>,
) -> wasmtime::Result<Store<HostState>> {
    let memory = limits.memory_bytes.min(inner.max_memory_bytes);
    let state = HostState::build(services, memory, inner.stdio_bytes, replay);
    let mut store = Store::new(&inner.engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_fuel(limits.fuel)?;
    store.fuel_async_yield_interval(Some(crate::engine::FUEL_YIELD_INTERVAL))?;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|context| {
        Ok(if Instant::now() >= context.data().deadline {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Yield(1)
        })
    });
    Ok(store)
}

/// Instantiate `prepared` in `store` and look up its `handle` export.
pub(crate) async fn instantiate_handle(
    store: &mut Store<HostState>,
    prepared: &Prepared,
) -> wasmtime::Result<Handle> {
    let instance = prepared
        .pre
        .instance_pre()
        .instantiate_async(&mut *store)
        .await?;
    instance.get_typed_func(&mut *store, prepared.handle)
}

/// What makes a session reproducible: the guest's clocks read a virtual time the host sets
/// (milliseconds since the Unix epoch, shared through [`Replay::clock`]), and its random
/// numbers come from a generator seeded with `seed` (`StdRng`, ChaCha12). Two sessions
/// with the same seed, fed the same calls at the same virtual times, see the same values.
#[derive(Debug, Clone)]
pub struct Replay {
    pub seed: u64,
    pub clock: Arc<AtomicU64>,
}

impl Replay {
    pub(crate) fn install(&self, builder: &mut wasmtime_wasi::WasiCtxBuilder) {
        use rand::SeedableRng;
        let rng = rand::rngs::StdRng::seed_from_u64(self.seed);
        let insecure = rand::rngs::StdRng::seed_from_u64(self.seed.wrapping_add(1));
        builder
            .secure_random(rng)
            .insecure_random(insecure)
            .insecure_random_seed(u128::from(self.seed))
            .wall_clock(VirtualClock(self.clock.clone()))
            .monotonic_clock(VirtualClock(self.clock.clone()));
    }
}

/// The virtual time of a [`Replay`], as both WASI clocks.
struct VirtualClock(Arc<AtomicU64>);

impl wasmtime_wasi::HostWallClock for VirtualClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

impl wasmtime_wasi::HostMonotonicClock for VirtualClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed).saturating_mul(1_000_000)
    }
}

/// One instance of a component, called again and again.
pub struct Session {
    store: Store<HostState>,
    handle: Handle,
    limits: Limits,
    max_answer: usize,
    /// The fault that closed the session.
    closed: Option<Fault>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Sandbox {
    /// Instantiate `prepared` once for a session of calls under `limits`, with `services`.
    ///
    /// # Errors
    /// `Fault::Capacity` when no guest call slot frees up within the deadline; a fault of the
    /// instantiation.
    pub async fn session(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
    ) -> Result<Session> {
        self.open_session(prepared, limits, services, None).await
    }

    /// [`Sandbox::session`] whose guest sees `replay`'s clocks and seeded randomness.
    ///
    /// # Errors
    /// As [`Sandbox::session`].
    pub async fn replay_session(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
        replay: &Replay,
    ) -> Result<Session> {
        self.open_session(prepared, limits, services, Some(replay))
            .await
    }

    async fn open_session(
        &self,
        prepared: &Prepared,
        limits: &Limits,
        services: Services,
        replay: Option<&Replay>,
    ) -> Result<Session> {
        let inner = self.inner();
        let deadline = Instant::now() + limits.timeout;
        let slot =
            match tokio::time::timeout_at(deadline.into(), inner.calls.clone().acquire_owned())
                .await
            {
                Ok(Ok(permit)) => permit,
                Ok(Err(closed)) => return Err(internal(closed)),
                Err(_) => {
                    return Err(
                        Fault::Capacity("no guest call slot for a session".to_string()).into(),
                    );
                }
            };
        let mut store = deadline_store(inner, limits, services, replay).map_err(internal)?;
        store.data_mut().deadline = deadline;
        let instantiated = instantiate_handle(&mut store, prepared);
        let handle = match instantiated.await {
            Ok(handle) => handle,
            Err(e) => return Err(classify(&e, &store, limits).into()),
        };
        Ok(Session {
            store,
            handle,
            limits: *limits,
            max_answer: inner.max_answer_bytes,
            closed: None,
            _slot: slot,
        })
    }
}

impl Session {
    /// Call `handle` with `event` in the session's instance, with fresh fuel and deadline.
    ///
    /// # Errors
    /// `Error::Guest` for an error the agent returns; `Error::Fault` for a limit or a trap,
    /// which closes the session.
    pub async fn handle(&mut self, event: &Event) -> Result<Outcome<String>> {
        if let Some(fault) = &self.closed {
            return Err(fault.clone().into());
        }
        let started = Instant::now();
        self.store.data_mut().deadline = started + self.limits.timeout;
        // A refused `memory.grow` an earlier call survived says nothing about this one.
        self.store.data_mut().limiter.exceeded = false;
        self.store.set_fuel(self.limits.fuel).map_err(internal)?;
        let result = self.handle.call_async(&mut self.store, (event,)).await;
        let fuel_used = self
            .limits
            .fuel
            .saturating_sub(self.store.get_fuel().unwrap_or(0));
        let outcome = |value| Outcome {
            value,
            fuel_used,
            peak_memory: self.store.data().limiter.peak_bytes,
            elapsed: started.elapsed(),
        };
        match result {
            Ok((Ok(text),)) if text.len() > self.max_answer => {
                let fault = Fault::AnswerTooLarge {
                    bytes: text.len(),
                    limit: self.max_answer,
                };
                self.closed = Some(fault.clone());
                Err(fault.into())
            }
            Ok((Ok(text),)) => Ok(outcome(text)),
            Ok((Err(e),)) => Err(Error::Guest(e)),
            Err(e) => {
                let fault = classify(&e, &self.store, &self.limits);
                self.closed = Some(fault.clone());
                Err(fault.into())
            }
        }
    }

    /// The services the session's calls reach.
    pub fn services(&self) -> &Services {
        &self.store.data().services
    }
}
