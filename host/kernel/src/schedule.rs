//! Interval schedules: one task per agent with `triggers.every`, invoking the active version
//! with a `schedule` event at the interval of that version. A swap changes the interval for the
//! next tick and never stops a scheduled call under way: it finishes on the version it started
//! on. Retirement stops the task between calls.

use std::collections::HashMap;
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
    intervals: Mutex<HashMap<String, watch::Sender<Option<Duration>>>>,
}

impl Schedules {
    pub(crate) fn new(registry: Arc<Registry>, invoker: Weak<Invoker>) -> Self {
        Schedules {
            registry,
            invoker,
            intervals: Mutex::new(HashMap::new()),
        }
    }

    fn intervals(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Option<Duration>>>> {
        self.intervals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Follow `agent`'s active version: its interval from the next tick on.
    fn follow(&self, agent: &str) {
        let every = self
            .registry
            .get(agent)
            .and_then(|slot| slot.active())
            .and_then(|v| v.resolved.every);
        let mut intervals = self.intervals();
        if let Some(sender) = intervals.get(agent)
            && !sender.is_closed()
        {
            sender.send_if_modified(|current| {
                let changed = *current != every;
                *current = every;
                changed
            });
            return;
        }
        let (sender, receiver) = watch::channel(every);
        intervals.insert(agent.to_string(), sender);
        tokio::spawn(run(agent.to_string(), receiver, self.invoker.clone()));
    }

    /// Stop every schedule between calls (at shutdown).
    pub fn stop(&self) {
        for sender in self.intervals().values() {
            let _ = sender.send(None);
        }
    }
}

/// One agent's schedule: wait an interval, invoke, again, until the interval is `None` or the
/// kernel is gone.
async fn run(
    agent: String,
    mut interval: watch::Receiver<Option<Duration>>,
    invoker: Weak<Invoker>,
) {
    loop {
        let every = *interval.borrow_and_update();
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
                if let Some(sender) = self.intervals().remove(agent) {
                    let _ = sender.send(None);
                }
            }
            Lifecycle::RolledBack { .. }
            | Lifecycle::Quarantined { .. }
            | Lifecycle::Released { .. } => {}
        }
    }
}
