//! The `fleet` interface as the meta-agents reach it: the Overseer's windows of every agent,
//! the alerts, and decisions proposed through the governance policy, never applied by the
//! agent itself. Shadow runs read and change nothing.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use overseer_kernel::capability::{CallContext, Provider};
use overseer_sandbox::{AgentWindow, FleetAlert, GuestError};
use overseer_store::AlertFilter;
use serde_json::json;

use crate::governance::{self, GovernanceError};
use crate::loops::Overseer;

/// Serves `fleet` from the Overseer (held weakly: the kernel holds this provider).
pub struct FleetProvider {
    overseer: Weak<Overseer>,
}

impl FleetProvider {
    pub fn new(overseer: &Arc<Overseer>) -> Self {
        FleetProvider {
            overseer: Arc::downgrade(overseer),
        }
    }
}

impl Provider<dyn overseer_sandbox::Fleet> for FleetProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Fleet> {
        Arc::new(CallFleet {
            overseer: self.overseer.clone(),
            agent: call.agent.clone(),
            shadow: false,
        })
    }

    fn shadow(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Fleet> {
        Arc::new(CallFleet {
            overseer: self.overseer.clone(),
            agent: call.agent.clone(),
            shadow: true,
        })
    }
}

struct CallFleet {
    overseer: Weak<Overseer>,
    /// Who is asking: the proposer of its decisions.
    agent: String,
    shadow: bool,
}

/// `decision` read and checked as the policy would take it: `invalid-input` naming what is
/// wrong.
fn checked(decision: &str, overseer: &Overseer) -> Result<governance::Decision, GuestError> {
    let value: serde_json::Value = serde_json::from_str(decision)
        .map_err(|e| GuestError::InvalidInput(format!("not JSON: {e}")))?;
    let decision =
        governance::parse(&value).map_err(|e| GuestError::InvalidInput(e.to_string()))?;
    overseer
        .validate(&decision)
        .map_err(|e| GuestError::InvalidInput(e.to_string()))?;
    Ok(decision)
}

impl CallFleet {
    fn overseer(&self) -> Result<Arc<Overseer>, GuestError> {
        self.overseer
            .upgrade()
            .ok_or_else(|| GuestError::Unavailable("the Overseer has stopped".to_string()))
    }
}

fn unavailable(e: impl std::fmt::Display) -> GuestError {
    GuestError::Unavailable(e.to_string())
}

#[async_trait]
impl overseer_sandbox::Fleet for CallFleet {
    async fn telemetry(&self, window_ms: u64) -> Result<Vec<AgentWindow>, GuestError> {
        let overseer = self.overseer()?;
        let mut tokens: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        for spend in overseer
            .kernel()
            .store
            .llm_spend_since(overseer_store::now_ms().saturating_sub(window_ms))
            .await
            .map_err(unavailable)?
        {
            *tokens.entry(spend.agent).or_default() +=
                spend.prompt_tokens + spend.completion_tokens;
        }
        Ok(overseer
            .windows(window_ms)
            .into_iter()
            .map(|(w, deadline_ms)| {
                let slot = overseer.kernel().registry.get(&w.agent);
                AgentWindow {
                    version: slot.as_ref().and_then(|s| s.active()).map(|v| v.number),
                    quarantined: slot.is_some_and(|s| s.quarantined()),
                    calls: u32::try_from(w.calls).unwrap_or(u32::MAX),
                    failures: u32::try_from(w.failures).unwrap_or(u32::MAX),
                    error_rate: w.error_rate,
                    p50_ms: w.p50_ms,
                    p95_ms: w.p95_ms,
                    deadline_ms: deadline_ms.map_or(0, |d| d as u64),
                    fuel: w.fuel,
                    peak_memory: w.peak_memory,
                    llm_tokens: tokens.get(&w.agent).copied().unwrap_or(0),
                    agent: w.agent,
                }
            })
            .collect())
    }

    async fn alerts(&self, open_only: bool, limit: u32) -> Result<Vec<FleetAlert>, GuestError> {
        let overseer = self.overseer()?;
        let alerts = overseer
            .kernel()
            .store
            .alerts(&AlertFilter {
                open: open_only.then_some(true),
                agent: None,
                before: None,
                limit,
            })
            .await
            .map_err(unavailable)?;
        Ok(alerts
            .into_iter()
            .map(|a| FleetAlert {
                id: a.id,
                agent: a.agent,
                kind: a.kind,
                priority: a.priority,
                message: a.message,
                opened_ms: a.opened_ms,
                resolved_ms: a.resolved_ms,
            })
            .collect())
    }

    async fn propose(&self, decision: &str) -> Result<String, GuestError> {
        let overseer = self.overseer()?;
        let decision = checked(decision, &overseer)?;
        if self.shadow {
            return Ok(json!({ "state": "shadow", "body": decision }).to_string());
        }
        match overseer.propose("request", &self.agent, &decision).await {
            Ok(record) => Ok(json!(record).to_string()),
            Err(GovernanceError::Invalid(message)) => Err(GuestError::InvalidInput(message)),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn raise_alert(
        &self,
        agent: &str,
        kind: &str,
        priority: &str,
        message: &str,
    ) -> Result<i64, GuestError> {
        let overseer = self.overseer()?;
        if overseer.kernel().registry.get(agent).is_none() {
            return Err(GuestError::InvalidInput(format!("no agent {agent:?}")));
        }
        if self.shadow {
            return Ok(0);
        }
        let evidence = json!({ "raised_by": self.agent });
        let alert = overseer
            .kernel()
            .alerts
            .raise(agent, kind, priority, message, evidence)
            .await
            .map_err(unavailable)?;
        Ok(alert.id)
    }

    async fn check(&self, decision: &str) -> Result<String, GuestError> {
        let overseer = self.overseer()?;
        let decision = checked(decision, &overseer)?;
        Ok(json!({ "policy": governance::policy(&decision, &overseer) }).to_string())
    }
}
