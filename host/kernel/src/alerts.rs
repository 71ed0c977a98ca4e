//! Alerts: opened (at most one of a kind per agent), resolved, and each announced on the bus as
//! `alert.<kind>` so that agents subscribed to `alert.*` can act.

use overseer_store::{AlertRecord, NewAlert, Store};
use serde_json::{Value, json};

use crate::bus::{Bus, host_event};
use crate::error::Result;

/// An agent failed repeatedly, or failed its health checks.
pub const AGENT_FAILURE: &str = "agent_failure";
/// An agent is slower or costlier than it should be.
pub const PERFORMANCE_DEGRADATION: &str = "performance_degradation";
/// A version was rolled back automatically.
pub const ROLLBACK: &str = "rollback";
/// An agent was remediated after repeated failures: back to a stable version, or out of routing.
pub const QUARANTINE: &str = "quarantine";
/// An agent needs another (its manifest's `[agent] dependencies`) that is not serving.
pub const DEPENDENCY_MISSING: &str = "dependency_missing";
/// The host itself cannot do its work (a version it cannot load, a store it cannot write).
pub const SYSTEM_FAILURE: &str = "system_failure";

/// Opens and resolves alerts.
#[derive(Clone)]
pub struct Alerts {
    store: Store,
    bus: Bus,
}

impl Alerts {
    pub(crate) fn new(store: Store, bus: Bus) -> Self {
        Alerts { store, bus }
    }

    /// Open an alert (unless the same one is open) and announce it as `alert.<kind>`.
    pub async fn raise(
        &self,
        agent: &str,
        kind: &str,
        priority: &str,
        message: &str,
        evidence: Value,
    ) -> Result<AlertRecord> {
        let (alert, new) = self
            .store
            .open_alert(&NewAlert {
                agent,
                kind,
                priority,
                message,
                evidence: &evidence,
            })
            .await?;
        if new {
            tracing::warn!(agent, kind, priority, message, "alert");
            self.announce(&alert, "opened").await;
        }
        Ok(alert)
    }

    /// Resolve the open alerts of `agent` of these kinds.
    pub async fn resolve(&self, agent: &str, kinds: &[&str], resolution: &str) -> Result<()> {
        for id in self
            .store
            .resolve_alerts_of(agent, kinds, resolution)
            .await?
        {
            if let Some(alert) = self.store.alert(id).await? {
                self.announce(&alert, "resolved").await;
            }
        }
        Ok(())
    }

    /// Resolve one alert; false when it was not open.
    pub async fn resolve_one(&self, id: i64, resolution: &str) -> Result<bool> {
        let resolved = self.store.resolve_alert(id, resolution).await?;
        if resolved && let Some(alert) = self.store.alert(id).await? {
            self.announce(&alert, "resolved").await;
        }
        Ok(resolved)
    }

    async fn announce(&self, alert: &AlertRecord, what: &str) {
        let event = host_event(
            format!("alert.{}", alert.kind),
            json!({ "state": what, "alert": alert }).to_string(),
            "overseer",
        );
        if let Err(e) = self.bus.publish(event).await {
            tracing::warn!(error = %e, "could not publish an alert event");
        }
    }
}
