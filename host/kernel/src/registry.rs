//! The live side of the registry: for each agent, the active version behind an atomic pointer,
//! the last few versions kept compiled for instant rollback, its admission gate, the events
//! its versions handled successfully (for canary replays) and whether it is out of routing.
//! In-flight invocations keep the `Arc<Version>` they started on.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use arc_swap::{ArcSwap, ArcSwapOption};
use overseer_sandbox::{Event, Instances, Prepared};

use crate::gate::Gate;
use crate::manifest::{Manifest, Resolved};
use crate::window::{Reading, Seen, Window};

/// A component compiled and pre-linked, with the manifest it runs under.
pub struct Loaded {
    pub manifest: Manifest,
    pub resolved: Resolved,
    pub prepared: Prepared,
}

/// Where a version came from, as its record says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    /// The version that was active when this one was pushed.
    pub parent: Option<u32>,
    /// The digest of the source snapshot it was built from, when it was.
    pub source: Option<String>,
    /// The edit that built it, when one did.
    pub edit: Option<i64>,
}

impl Provenance {
    pub fn of(record: &overseer_store::VersionRecord) -> Self {
        Provenance {
            parent: record.parent,
            source: record.source_digest.clone(),
            edit: record.edit,
        }
    }
}

/// One version of an agent, compiled and ready to instantiate.
pub struct Version {
    pub agent: String,
    pub number: u32,
    pub digest: String,
    pub manifest: Arc<Manifest>,
    pub resolved: Resolved,
    pub prepared: Prepared,
    pub provenance: Provenance,
    /// Instances kept between real calls, when the manifest asks for reuse; emptied whenever
    /// the version stops serving.
    pub instances: Option<Arc<Instances>>,
    /// Calls served and failed while this version was active.
    pub calls: AtomicU64,
    pub failures: AtomicU64,
    window: Window,
}

impl Version {
    /// Version `number` of `agent`, compiled; `window` says whether it is watched.
    pub fn new(
        agent: &str,
        number: u32,
        provenance: Provenance,
        loaded: Loaded,
        window: Window,
    ) -> Self {
        Version {
            agent: agent.to_string(),
            number,
            digest: loaded.prepared.digest().to_string(),
            instances: loaded.resolved.reuse.map(|policy| {
                Arc::new(Instances::new(policy, loaded.resolved.concurrency as usize))
            }),
            manifest: Arc::new(loaded.manifest),
            resolved: loaded.resolved,
            prepared: loaded.prepared,
            provenance,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            window,
        }
    }

    /// Count one finished call and account for it in the window.
    pub fn count(&self, failed: bool) -> Seen {
        let calls = self.calls.fetch_add(1, Ordering::AcqRel) + 1;
        let failures = if failed {
            self.failures.fetch_add(1, Ordering::AcqRel) + 1
        } else {
            self.failures.load(Ordering::Acquire)
        };
        self.window
            .see(calls, failures, &self.resolved.policy, None)
    }

    /// When its open window was opened (the name of that window for the timer that closes
    /// it).
    pub fn window_opened(&self) -> Option<Instant> {
        self.window.opened()
    }

    /// The deadline of the window opened at `opened` passed: close it if it is still the
    /// open one.
    pub fn close_window(&self, opened: Instant) -> Seen {
        self.window.see(
            self.calls.load(Ordering::Acquire),
            self.failures.load(Ordering::Acquire),
            &self.resolved.policy,
            Some(opened),
        )
    }

    /// What its window would conclude if it were replaced now; changes nothing.
    pub fn superseded(&self) -> Option<Reading> {
        self.window.superseded(
            self.calls.load(Ordering::Acquire),
            self.failures.load(Ordering::Acquire),
            &self.resolved.policy,
        )
    }

    /// Close its window with `verdict`, once the store holds it.
    pub fn settle(&self, verdict: overseer_store::Verdict) {
        self.window.settle(verdict);
    }

    /// Whether its watch window is open.
    pub fn watching(&self) -> bool {
        self.window.watching()
    }

    /// Open a new watch window (its bytes were pushed again).
    pub fn reopen_window(&self, baseline: Option<f64>) {
        self.window.reopen(
            self.calls.load(Ordering::Acquire),
            self.failures.load(Ordering::Acquire),
            baseline,
        );
    }

    /// Drop its kept instances, and those in a call when they come back: it no longer
    /// serves, and what they hold must not reach a later activation.
    pub fn drop_instances(&self) {
        if let Some(instances) = &self.instances {
            instances.clear();
        }
    }

    /// It serves (again): instances of calls that begin from now on may be kept.
    fn resume_instances(&self) {
        if let Some(instances) = &self.instances {
            instances.resume();
        }
    }

    /// Supervision watches it from now on, whatever its verdict.
    pub fn supervise(&self) {
        self.window.supervise();
    }
}

/// Events kept per agent for canary replays: more than any manifest may ask to replay.
const RECENT_EVENTS: usize = 1000;

/// What an event takes in memory, near enough.
fn event_size(event: &Event) -> usize {
    event.id.len() + event.topic.len() + event.payload.len() + event.source.len()
}

/// Everything live about one agent.
pub struct Slot {
    pub name: String,
    active: ArcSwapOption<Version>,
    gate: ArcSwap<Gate>,
    compiled: Mutex<Vec<Arc<Version>>>,
    /// Events the active versions answered `ok`, newest last, with their bytes in all.
    recent: Mutex<(VecDeque<Event>, usize)>,
    /// Taken out of routing: calls are refused until a push, a rollback or a release.
    quarantined: AtomicBool,
}

impl Slot {
    fn new(name: String, gate: Gate) -> Self {
        Slot {
            name,
            active: ArcSwapOption::empty(),
            gate: ArcSwap::from_pointee(gate),
            compiled: Mutex::new(Vec::new()),
            recent: Mutex::new((VecDeque::new(), 0)),
            quarantined: AtomicBool::new(false),
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

    /// Remember an event the active version answered `ok`, keeping at most `max_bytes` of
    /// events (an event larger than that is not kept).
    pub fn remember(&self, event: Event, max_bytes: usize) {
        let size = event_size(&event);
        if size > max_bytes {
            return;
        }
        let mut recent = lock(&self.recent);
        let (events, bytes) = &mut *recent;
        while events.len() >= RECENT_EVENTS || *bytes + size > max_bytes {
            match events.pop_front() {
                Some(old) => *bytes -= event_size(&old),
                None => break,
            }
        }
        *bytes += size;
        events.push_back(event);
    }

    /// The last `n` events answered `ok`, oldest first.
    pub fn recent(&self, n: usize) -> Vec<Event> {
        let recent = lock(&self.recent);
        let events = &recent.0;
        events
            .iter()
            .skip(events.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Whether calls are refused.
    pub fn quarantined(&self) -> bool {
        self.quarantined.load(Ordering::Acquire)
    }

    /// Refuse calls, or admit them again. Set by the deployer, under the agent's deploy lock,
    /// after the store says so.
    pub(crate) fn set_quarantined(&self, quarantined: bool) {
        self.quarantined.store(quarantined, Ordering::Release);
    }
}

/// The live slots of all agents.
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
    /// Returns the agent's slot and the version it replaced.
    pub(crate) fn activate(
        &self,
        version: Arc<Version>,
        keep: usize,
    ) -> (Arc<Slot>, Option<Arc<Version>>) {
        let resolved = &version.resolved;
        let slot = write(&self.slots)
            .entry(version.agent.clone())
            .or_insert_with(|| {
                Arc::new(Slot::new(
                    version.agent.clone(),
                    Gate::new(resolved.concurrency, resolved.queue),
                ))
            })
            .clone();
        if !slot.gate().admits(resolved.concurrency, resolved.queue) {
            slot.gate
                .store(Arc::new(Gate::new(resolved.concurrency, resolved.queue)));
        }
        {
            let mut compiled = lock(&slot.compiled);
            compiled.retain(|v| v.number != version.number);
            compiled.push(version.clone());
            let excess = compiled.len().saturating_sub(keep.max(1));
            compiled.drain(..excess);
        }
        version.resume_instances();
        let previous = slot.active.swap(Some(version.clone()));
        if let Some(previous) = &previous
            && !Arc::ptr_eq(previous, &version)
        {
            previous.drop_instances();
        }
        (slot, previous)
    }

    /// Take an agent out of routing.
    pub(crate) fn remove(&self, name: &str) -> Option<Arc<Slot>> {
        let slot = write(&self.slots).remove(name)?;
        if let Some(previous) = slot.active.swap(None) {
            previous.drop_instances();
        }
        Some(slot)
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
