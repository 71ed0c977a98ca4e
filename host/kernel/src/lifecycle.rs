//! What the kernel announces about an agent's life, to the work that hangs on it: the
//! supervisor opens watch windows and health loops, schedules follow the active version, and
//! code outside the kernel (working copies, edit marks) listens without the kernel naming it.
//!
//! Listeners run in order, inside the deploy step that caused the event, under the agent's
//! deploy lock: an event for an agent is never seen out of order. A listener must not deploy,
//! roll back or retire that agent itself; it spawns such work.

use std::sync::{Arc, RwLock, Weak};

use async_trait::async_trait;

/// Why a version became the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// A push, an edit's build, or the bytes of an earlier version pushed again.
    Push,
    /// A person asked for a rollback.
    Rollback,
    /// The host took the agent off a failing version.
    Remediation,
    /// Loaded at start as the active version of the store.
    Start,
}

/// One thing that happened to an agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Lifecycle {
    /// `version` serves new calls. `watching` says whether a watch window is open on it;
    /// `source` is the digest of the source snapshot it was built from, when it was.
    Activated {
        agent: String,
        version: u32,
        previous: Option<u32>,
        cause: Cause,
        watching: bool,
        source: Option<String>,
    },
    /// The agent went back from `from` to `to` (after `Activated` of `to`). `edit` is the edit
    /// that built `from`, when one did.
    RolledBack {
        agent: String,
        from: u32,
        to: u32,
        cause: Cause,
        edit: Option<i64>,
    },
    /// The agent was taken out of routing.
    Quarantined { agent: String, version: Option<u32> },
    /// The agent was put back into routing: released by a person, or by an activation.
    Released { agent: String, how: String },
    /// The agent was taken out of service.
    Retired { agent: String },
}

impl Lifecycle {
    /// The agent the event is about.
    pub fn agent(&self) -> &str {
        match self {
            Lifecycle::Activated { agent, .. }
            | Lifecycle::RolledBack { agent, .. }
            | Lifecycle::Quarantined { agent, .. }
            | Lifecycle::Released { agent, .. }
            | Lifecycle::Retired { agent } => agent,
        }
    }
}

/// Something that acts on lifecycle events.
#[async_trait]
pub trait Listener: Send + Sync {
    async fn on(&self, event: &Lifecycle);
}

/// The listeners of one kernel. They are held weakly: whoever registers one keeps it alive,
/// so a listener that holds the kernel makes no cycle.
#[derive(Default)]
pub struct Hooks {
    listeners: RwLock<Vec<Weak<dyn Listener>>>,
}

impl Hooks {
    /// Add a listener; it hears every event from now on, after those registered before it.
    pub fn listen(&self, listener: &Arc<dyn Listener>) {
        self.listeners
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::downgrade(listener));
    }

    /// Tell every live listener, in the order they were added.
    pub async fn publish(&self, event: Lifecycle) {
        let listeners: Vec<Arc<dyn Listener>> = self
            .listeners
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(Weak::upgrade)
            .collect();
        tracing::debug!(?event, "lifecycle");
        for listener in listeners {
            listener.on(&event).await;
        }
    }
}
