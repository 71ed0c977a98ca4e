//! Per-agent locks of this host: one serialises deploys, rollbacks, quarantine and retirement
//! of an agent; the other is held across building a new version of an agent from source, so
//! that retirement waits for a build under way. Several hosts sharing a database will take
//! these as leases in the store; nothing outside the kernel holds them directly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

type Table = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// The agent locks of one host.
#[derive(Default)]
pub struct Locks {
    deploy: Table,
    build: Table,
}

impl Locks {
    /// The lock that serialises deploys, rollbacks, quarantine and retirement of `agent`.
    pub(crate) async fn deploy(&self, agent: &str) -> OwnedMutexGuard<()> {
        lock_of(&self.deploy, agent).await
    }

    /// The lock held across one build of `agent` from source, from applying the change to
    /// its push; retirement takes it too.
    pub async fn build(&self, agent: &str) -> OwnedMutexGuard<()> {
        lock_of(&self.build, agent).await
    }
}

async fn lock_of(table: &Table, agent: &str) -> OwnedMutexGuard<()> {
    let lock = table
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(agent.to_string())
        .or_default()
        .clone();
    lock.lock_owned().await
}
