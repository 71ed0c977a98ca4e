//! The health loop: one task per agent calls `health` on whatever version is active, every
//! `health_every` of that version's policy (reads see the real kv, writes stay in shadow).
//! After `health_failures` failures in a row it raises an `agent_failure` alert and hands the
//! agent to a remediation on a task of its own; when health passes again the alert resolves.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::{Supervisor, Watch, health_alert, lock};
use crate::alerts::AGENT_FAILURE;
use crate::error::Result;

/// How long the loop waits when the agent has no active version to check.
const IDLE: Duration = Duration::from_secs(1);

impl Supervisor {
    /// Start the agent's health loop unless it runs.
    pub(super) fn start_health_loop(&self, agent: &str, watch: &Arc<Watch>) {
        let mut task = lock(&watch.health);
        if task.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        let weak = self.this.clone();
        let agent = agent.to_string();
        *task = Some(tokio::spawn(async move {
            loop {
                let every = match weak.upgrade() {
                    Some(this) => this.health_every(&agent),
                    None => return,
                };
                tokio::time::sleep(every).await;
                let Some(this) = weak.upgrade() else {
                    return;
                };
                if let Err(e) = this.check_health(&agent).await {
                    tracing::warn!(agent, error = %e, "health check could not run");
                }
            }
        }));
    }

    fn health_every(&self, agent: &str) -> Duration {
        self.registry
            .get(agent)
            .and_then(|slot| slot.active())
            .map(|v| v.resolved.policy.health_every)
            .unwrap_or(IDLE)
    }

    /// One health check of the agent's active version.
    pub async fn check_health(&self, agent: &str) -> Result<()> {
        let Some(version) = self.registry.get(agent).and_then(|slot| slot.active()) else {
            return Ok(());
        };
        let services = self
            .deployer
            .shadow(agent, Some(version.number), version.manifest.clone());
        let outcome = self
            .sandbox
            .health(&version.prepared, &version.resolved.limits, services)
            .await;
        let problem = match outcome {
            Ok(o) if o.value.ok => None,
            Ok(o) => Some(format!("health is not ok: {}", o.value.detail)),
            Err(e) => Some(format!("health failed: {e}")),
        };
        // The check ran on this version: if another serves now, its result is stale.
        if !self
            .registry
            .get(agent)
            .and_then(|slot| slot.active())
            .is_some_and(|a| Arc::ptr_eq(&a, &version))
        {
            return Ok(());
        }
        let watch = self.watch(agent);
        let threshold = version.resolved.policy.health_failures;
        match problem {
            None => {
                if watch.health_failures.swap(0, Ordering::AcqRel) > 0 {
                    tracing::info!(agent, version = version.number, "health recovered");
                }
                self.alerts
                    .resolve(agent, &[AGENT_FAILURE], "health recovered")
                    .await?;
            }
            Some(problem) => {
                let failed = watch.health_failures.fetch_add(1, Ordering::AcqRel) + 1;
                tracing::warn!(
                    agent,
                    version = version.number,
                    failed,
                    problem,
                    "health check failed"
                );
                // An agent out of routing waits for a person: remediating it again would only
                // quarantine it again.
                let quarantined = self
                    .registry
                    .get(agent)
                    .is_some_and(|slot| slot.quarantined());
                if failed >= threshold && !quarantined {
                    let evidence = json!({
                        "version": version.number,
                        "consecutive_failures": failed,
                        "last": problem,
                    });
                    self.remediate(
                        agent,
                        version.number,
                        "failed health checks".to_string(),
                        evidence,
                        Some(health_alert(failed, version.number, &problem)),
                    );
                }
            }
        }
        Ok(())
    }
}
