//! Interval schedules: one task per agent with `triggers.every`, invoking the active version
//! with a `schedule` event at the interval of that version. A swap changes the interval for the
//! next tick and never stops a scheduled call under way: it finishes on the version it started
//! on. Retirement stops the task between calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::bus::host_event;
use crate::invoke::Invoker;
use crate::lifecycle::{Lifecycle, Listener};
use crate::registry::Registry;

/// The schedules of every agent.
pub struct Schedules {
    registry: Arc<Registry>,
    invoker: Weak<Invoker>,
    /// Each agent's interval, `None` for no schedule; the agent's task follows it.
    intervals: Mutex<HashMap<String, Follow>>,
}

/// One agent's schedule: its interval, and when its next tick is due.
struct Follow {
    interval: watch::Sender<Option<Duration>>,
    /// Milliseconds since the Unix epoch; 0 while no tick is due.
    next_ms: Arc<AtomicU64>,
}

impl Schedules {
    pub(crate) fn new(registry: Arc<Registry>, invoker: Weak<Invoker>) -> Self {
        Schedules {
            registry,
            invoker,
            intervals: Mutex::new(HashMap::new()),
        }
    }

    fn intervals(&self) -> std::sync::MutexGuard<'_, HashMap<String, Follow>> {
        self.intervals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// When `agent`'s next scheduled run is due, in milliseconds since the Unix epoch; `None`
    /// when it has no schedule.
    pub fn next_run_ms(&self, agent: &str) -> Option<u64> {
        let next = self.intervals().get(agent)?.next_ms.load(Ordering::Acquire);
        (next > 0).then_some(next)
    }

    /// Follow `agent`'s active version: its interval from the next tick on.
    fn follow(&self, agent: &str) {
        let every = self
            .registry
            .get(agent)
            .and_then(|slot| slot.active())
            .and_then(|v| v.resolved.every);
        let mut intervals = self.intervals();
        if let Some(follow) = intervals.get(agent)
            && !follow.interval.is_closed()
        {
            follow.interval.send_if_modified(|current| {
                let changed = *current != every;
                *current = every;
                changed
            });
            return;
        }
        let (interval, receiver) = watch::channel(every);
        let next_ms = Arc::new(AtomicU64::new(0));
        intervals.insert(
            agent.to_string(),
            Follow {
                interval,
                next_ms: next_ms.clone(),
            },
        );
        tokio::spawn(run(
            agent.to_string(),
            receiver,
            next_ms,
            self.invoker.clone(),
        ));
    }

    /// Stop every schedule between calls (at shutdown).
    pub fn stop(&self) {
        for follow in self.intervals().values() {
            let _ = follow.interval.send(None);
        }
    }
}

/// One agent's schedule: wait an interval, invoke, again, until the interval is `None` or the
/// kernel is gone. `next_ms` says when the next tick is due.
async fn run(
    agent: String,
    mut interval: watch::Receiver<Option<Duration>>,
    next_ms: Arc<AtomicU64>,
    invoker: Weak<Invoker>,
) {
    loop {
        let every = *interval.borrow_and_update();
        let due = every.map_or(0, |every| {
            overseer_store::now_ms()
                .saturating_add(u64::try_from(every.as_millis()).unwrap_or(u64::MAX))
        });
        next_ms.store(due, Ordering::Release);
        let Some(every) = every else {
            // No schedule for now: wait for one, or for the end.
            if interval.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            changed = interval.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
        }
        let Some(invoker) = invoker.upgrade() else {
            return;
        };
        let event = host_event(
            "schedule".to_string(),
            format!("{{\"every_ms\":{}}}", every.as_millis()),
            "schedule",
        );
        if let Err(e) = invoker.invoke(&agent, event).await {
            tracing::debug!(agent, error = %e, "scheduled run failed");
        }
    }
}

#[async_trait]
impl Listener for Schedules {
    async fn on(&self, event: &Lifecycle) {
        match event {
            Lifecycle::Activated { agent, .. } => self.follow(agent),
            Lifecycle::Retired { agent } => {
                if let Some(follow) = self.intervals().remove(agent) {
                    let _ = follow.interval.send(None);
                }
            }
            Lifecycle::RolledBack { .. }
            | Lifecycle::Quarantined { .. }
            | Lifecycle::Released { .. } => {}
        }
    }
}
