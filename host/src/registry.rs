//! The live side of the registry: for each agent, the active version behind an atomic pointer,
//! the last few versions kept compiled for instant rollback, its admission gate and its
//! schedule. In-flight invocations keep the `Arc<Version>` they started on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use overseer_sandbox::Prepared;
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
}

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
}

impl Slot {
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
        slot
    }

    /// Take an agent out of routing.
    pub fn remove(&self, name: &str) -> Option<Arc<Slot>> {
        let slot = write(&self.slots).remove(name)?;
        slot.active.store(None);
        slot.set_schedule(None);
        Some(slot)
    }

    /// Stop every schedule (at shutdown).
    pub fn stop_schedules(&self) {
        for slot in self.slots() {
            slot.set_schedule(None);
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
