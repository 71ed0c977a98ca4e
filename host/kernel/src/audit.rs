//! The kernel's entries in the audit trail: every activation (push, edit, rollback,
//! remediation), rollback, quarantine, release and retirement, as the lifecycle announces
//! them. Loading the active versions at start changes nothing and is not recorded.

use async_trait::async_trait;
use overseer_store::{Store, audit};
use serde_json::json;

use crate::lifecycle::{Cause, Lifecycle, Listener};

/// Writes lifecycle events to the audit trail.
pub struct AuditTrail {
    store: Store,
}

impl AuditTrail {
    pub fn new(store: Store) -> Self {
        AuditTrail { store }
    }
}

/// Who brought a change about: a push, a rollback asked for (by a person or a decision), or
/// the host's remediation.
fn actor(cause: Cause) -> &'static str {
    match cause {
        Cause::Push => "push",
        Cause::Rollback => "request",
        Cause::Remediation | Cause::Start => "host",
    }
}

#[async_trait]
impl Listener for AuditTrail {
    async fn on(&self, event: &Lifecycle) {
        let (actor, action, detail) = match event {
            Lifecycle::Activated {
                cause: Cause::Start,
                ..
            } => return,
            Lifecycle::Activated {
                version,
                previous,
                cause,
                watching,
                source,
                ..
            } => (
                actor(*cause),
                "activate",
                json!({ "version": version, "previous": previous, "watching": watching, "source": source }),
            ),
            Lifecycle::RolledBack {
                from,
                to,
                cause,
                edit,
                ..
            } => (
                actor(*cause),
                "rollback",
                json!({ "from": from, "to": to, "edit": edit }),
            ),
            Lifecycle::Quarantined { version, .. } => {
                ("host", "quarantine", json!({ "version": version }))
            }
            Lifecycle::Released { how, .. } => ("host", "release", json!({ "how": how })),
            Lifecycle::Retired { .. } => ("person", "retire", json!({})),
        };
        audit::record(&*self.store, actor, action, event.agent(), &detail).await;
    }
}
