//! The live side of the registry: for each agent, the active version behind an atomic pointer,
//! the last few versions kept compiled for instant rollback, its admission gate and its
//! schedule. In-flight invocations keep the `Arc<Version>` they started on.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use overseer_sandbox::{Event, Prepared};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use crate::manifest::{Manifest, Resolved};

/// One version of an agent, compiled and ready to instantiate.
pub struct Version {
    pub agent: String,
    pub number: u32,
    pub digest: String,
    pub manifest: Manifest,
    pub resolved: Resolved,
    pub prepared: Prepared,
    /// The version that was active when this one was pushed.
    pub parent: Option<u32>,
    /// Calls served and failed while this version was active.
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    /// Set while the version is in its watch window.
    pub watch: Mutex<Option<Watch>>,
    /// Set once its watch window decided to roll it back: its further failures are answered
    /// for by that rollback, not by supervision.
    pub condemned: AtomicBool,
}

/// A watch window in progress.
#[derive(Debug, Clone)]
pub struct Watch {
    pub started: Instant,
    /// Calls and failures of the version when the window opened.
    pub calls_before: u64,
    pub failures_before: u64,
}

impl Version {
    pub fn new(
        agent: String,
        number: u32,
        digest: String,
        manifest: Manifest,
        resolved: Resolved,
        prepared: Prepared,
        parent: Option<u32>,
    ) -> Self {
        Version {
            agent,
            number,
            digest,
            manifest,
            resolved,
            prepared,
            parent,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            watch: Mutex::new(None),
            condemned: AtomicBool::new(false),
        }
    }

    /// Failed calls over all calls while active, if it served any.
    pub fn error_rate(&self) -> Option<f64> {
        let calls = self.calls.load(Ordering::Relaxed);
        (calls > 0).then(|| self.failures.load(Ordering::Relaxed) as f64 / calls as f64)
    }

    /// Open a watch window.
    pub fn start_watch(&self) {
        *lock(&self.watch) = Some(Watch {
            started: Instant::now(),
            calls_before: self.calls.load(Ordering::Relaxed),
            failures_before: self.failures.load(Ordering::Relaxed),
        });
    }

    /// Calls and failures since the window opened, if one is open.
    pub fn window(&self) -> Option<(Watch, u64, u64)> {
        let watch = lock(&self.watch).clone()?;
        let calls = self.calls.load(Ordering::Relaxed) - watch.calls_before;
        let failures = self.failures.load(Ordering::Relaxed) - watch.failures_before;
        Some((watch, calls, failures))
    }

    /// Close the window; true for the one caller that closed it.
    pub fn end_watch(&self) -> bool {
        lock(&self.watch).take().is_some()
    }
}

/// Events kept per agent for canary replays: more than any manifest may ask to replay.
const RECENT_EVENTS: usize = 1000;

/// Bounds how many invocations of one agent run at once and how many may wait.
pub struct Gate {
    permits: Arc<Semaphore>,
    waiting: AtomicU32,
    concurrency: u32,
    queue: u32,
}

impl Gate {
    fn new(concurrency: u32, queue: u32) -> Self {
        Gate {
            permits: Arc::new(Semaphore::new(concurrency as usize)),
            waiting: AtomicU32::new(0),
            concurrency,
            queue,
        }
    }

    /// A slot to run in, waiting in the queue if it has room; `None` when the queue is full.
    pub async fn enter(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.permits.clone().try_acquire_owned() {
            return Some(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = self.permits.clone().acquire_owned().await.ok();
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit
    }

    /// Invocations running now.
    pub fn running(&self) -> u32 {
        self.concurrency
            .saturating_sub(self.permits.available_permits() as u32)
    }

    /// Invocations waiting for a slot.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }
}

/// Everything live about one agent.
pub struct Slot {
    pub name: String,
    active: ArcSwapOption<Version>,
    gate: ArcSwap<Gate>,
    compiled: Mutex<Vec<Arc<Version>>>,
    schedule: Mutex<Option<JoinHandle<()>>>,
    health: Mutex<Option<JoinHandle<()>>>,
    /// Events the active versions handled successfully, newest last.
    recent: Mutex<VecDeque<Event>>,
    /// When recent calls failed, for supervision.
    failures: Mutex<VecDeque<Instant>>,
    /// Taken out of routing after repeated failures with no stable version to return to.
    pub quarantined: AtomicBool,
    /// A remediation (rollback or quarantine) is under way.
    pub remediating: AtomicBool,
    /// Consecutive failed health checks.
    pub health_failures: AtomicU32,
}

impl Slot {
    /// Remember an event the active version handled successfully.
    pub fn remember(&self, event: Event) {
        let mut recent = lock(&self.recent);
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(event);
    }

    /// The last `n` events handled successfully, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Event> {
        let recent = lock(&self.recent);
        recent
            .iter()
            .skip(recent.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Record a failure now; returns how many failures fall within `period`.
    pub fn record_failure(&self, period: Duration) -> usize {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > period)
        {
            failures.pop_front();
        }
        failures.len()
    }

    /// Forget past failures (after a remediation).
    pub fn clear_failures(&self) {
        lock(&self.failures).clear();
    }

    /// Replace the health-loop task, stopping the old one.
    pub fn set_health_task(&self, task: Option<JoinHandle<()>>) {
        if let Some(old) = std::mem::replace(&mut *lock(&self.health), task) {
            old.abort();
        }
    }

    /// The version serving now.
    pub fn active(&self) -> Option<Arc<Version>> {
        self.active.load_full()
    }

    pub fn gate(&self) -> Arc<Gate> {
        self.gate.load_full()
    }

    /// A recently active version still compiled in memory.
    pub fn compiled(&self, number: u32) -> Option<Arc<Version>> {
        lock(&self.compiled)
            .iter()
            .find(|v| v.number == number)
            .cloned()
    }

    /// Replace the schedule task, stopping the old one.
    pub fn set_schedule(&self, task: Option<JoinHandle<()>>) {
        if let Some(old) = std::mem::replace(&mut *lock(&self.schedule), task) {
            old.abort();
        }
    }
}

/// The active versions of all agents.
#[derive(Default)]
pub struct Registry {
    slots: RwLock<HashMap<String, Arc<Slot>>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<Slot>> {
        read(&self.slots).get(name).cloned()
    }

    /// Every agent with a slot, sorted by name.
    pub fn slots(&self) -> Vec<Arc<Slot>> {
        let mut slots: Vec<_> = read(&self.slots).values().cloned().collect();
        slots.sort_by(|a, b| a.name.cmp(&b.name));
        slots
    }

    /// Make `version` the one that serves new invocations, keeping `keep` versions compiled.
    /// Returns the agent's slot.
    pub fn activate(&self, version: Arc<Version>, keep: usize) -> Arc<Slot> {
        let slot = {
            let mut slots = write(&self.slots);
            slots
                .entry(version.agent.clone())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        name: version.agent.clone(),
                        active: ArcSwapOption::empty(),
                        gate: ArcSwap::from_pointee(Gate::new(
                            version.resolved.concurrency,
                            version.resolved.queue,
                        )),
                        compiled: Mutex::new(Vec::new()),
                        schedule: Mutex::new(None),
                        health: Mutex::new(None),
                        recent: Mutex::new(VecDeque::new()),
                        failures: Mutex::new(VecDeque::new()),
                        quarantined: AtomicBool::new(false),
                        remediating: AtomicBool::new(false),
                        health_failures: AtomicU32::new(0),
                    })
                })
                .clone()
        };
        let gate = slot.gate();
        if gate.concurrency != version.resolved.concurrency || gate.queue != version.resolved.queue
        {
            slot.gate.store(Arc::new(Gate::new(
                version.resolved.concurrency,
                version.resolved.queue,
            )));
        }
        {
            let mut compiled = lock(&slot.compiled);
            compiled.retain(|v| v.number != version.number);
            compiled.push(version.clone());
            let excess = compiled.len().saturating_sub(keep.max(1));
            compiled.drain(..excess);
        }
        slot.active.store(Some(version));
        // Supervision judges the version now serving, not the failures of the one before it.
        slot.clear_failures();
        slot
    }

    /// Take an agent out of routing.
    pub fn remove(&self, name: &str) -> Option<Arc<Slot>> {
        let slot = write(&self.slots).remove(name)?;
        slot.active.store(None);
        slot.set_schedule(None);
        slot.set_health_task(None);
        Some(slot)
    }

    /// Stop every schedule (at shutdown).
    pub fn stop_schedules(&self) {
        for slot in self.slots() {
            slot.set_schedule(None);
            slot.set_health_task(None);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}
