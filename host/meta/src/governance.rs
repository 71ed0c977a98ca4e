//! Governance: typed decisions, one policy for all of them, approval by a person, and the
//! outcome of each measured on its date.
//!
//! A decision is `{kind, title, priority, expected_impact, effort, rationale, actions,
//! metric}` ([`Decision`]); anything else is refused (`invalid_decision`). The policy:
//! rolling an agent back, moving an LLM budget within the caps, and pausing or resuming an
//! agent without privileged grants are low-risk and applied at once (`auto`); halting or
//! resuming trading (capital), asking for a new agent (new code and grants), and pausing or
//! resuming a privileged agent wait for a person (`person`): `approve` applies, `reject` never does, and a
//! decision nobody approves within `approval_timeout_secs` expires unapplied (default deny).
//! On its due date the decision's metric is measured over the agent's calls since it was
//! decided: `met`, `missed`, or `inconclusive` without calls. Every step is on the audit
//! trail.

use std::sync::Arc;

use async_trait::async_trait;
use overseer_store::{DecisionRecord, NewDecision, audit, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::loops::Overseer;
use crate::telemetry;

/// What a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = DecisionKind)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    SystemImprovement,
    NewAgent,
    CodeOptimization,
    ResourceAllocation,
    RiskManagement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effort {
    Low,
    Medium,
    High,
}

/// What applying a decision does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Back to the agent's previous servable version.
    Rollback { agent: String },
    /// The agent's LLM budget per day, within the host's caps.
    SetBudget {
        agent: String,
        tokens_per_day: u64,
        usd_per_day: f64,
    },
    /// Take the agent out of routing: its calls answer `quarantined` until it resumes.
    Pause { agent: String },
    /// Put a paused (or quarantined) agent back into routing.
    Resume { agent: String },
    /// Throw the kill switch: nothing trades.
    HaltTrading,
    /// Release it.
    ResumeTrading,
    /// Ask for a new agent: the spec goes to the architect, which builds it through the
    /// edit pipeline (`spec` is a whole spec; without one, a spec of `name` and `purpose`).
    NewAgent {
        name: String,
        purpose: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        spec: Option<Value>,
    },
    /// Label `version` of `prompt` `production`: what an experiment's winner becomes.
    PromotePrompt {
        prompt: String,
        version: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        experiment: Option<i64>,
    },
}

impl Action {
    /// The agent the action is done to, when it is done to one.
    fn agent(&self) -> Option<&String> {
        match self {
            Action::Rollback { agent }
            | Action::SetBudget { agent, .. }
            | Action::Pause { agent }
            | Action::Resume { agent } => Some(agent),
            Action::HaltTrading
            | Action::ResumeTrading
            | Action::NewAgent { .. }
            | Action::PromotePrompt { .. } => None,
        }
    }
}

/// The figure a decision promises to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MetricName {
    /// Failed calls over calls.
    ErrorRate,
    /// The 95th percentile of call latency, in milliseconds.
    P95Ms,
    /// Calls.
    Calls,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Comparator {
    AtMost,
    AtLeast,
}

/// A decision's acceptance metric: on its due date, `name` of `agent`'s calls since the
/// decision must be `comparator` `target`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metric {
    pub name: MetricName,
    pub agent: String,
    pub comparator: Comparator,
    pub target: f64,
    /// Seconds of loop time from the decision to its measurement (scaled by the clock
    /// factor).
    pub due_in_secs: u64,
}

/// One typed decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Decision {
    pub kind: Kind,
    pub title: String,
    pub priority: Priority,
    pub expected_impact: String,
    pub effort: Effort,
    pub rationale: String,
    pub actions: Vec<Action>,
    pub metric: Metric,
}

/// Why a decision was not taken or could not move.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// Not a decision, or one that names what does not exist.
    #[error("{0}")]
    Invalid(String),
    #[error("no decision {0}")]
    NotFound(i64),
    /// It is not waiting for a person (approved, rejected or expired already).
    #[error("decision {id} is {state}, not awaiting approval")]
    NotAwaiting { id: i64, state: String },
    #[error("{0}")]
    Store(#[from] overseer_store::Error),
}

impl GovernanceError {
    /// The stable code the API reports.
    pub fn code(&self) -> &'static str {
        match self {
            GovernanceError::Invalid(_) => "invalid_decision",
            GovernanceError::NotFound(_) => "decision_not_found",
            GovernanceError::NotAwaiting { .. } => "not_awaiting",
            GovernanceError::Store(_) => "store_error",
        }
    }
}

/// The longest wait a decision's metric may name: ten years, in seconds.
pub const MAX_DUE_SECS: u64 = 10 * 365 * 86_400;

/// Decisions read at once when looking for those overdue or due.
const OPEN_DECISIONS: u32 = 10_000;

/// The agent the daily meeting asks first, when it serves.
pub const GOVERNANCE_AGENT: &str = "governance";

/// The trading side's kill switch, as governance reaches it.
#[async_trait]
pub trait Capital: Send + Sync {
    /// Halt trading; answers the risk gate's state.
    async fn halt(&self) -> Result<Value, String>;
    /// Resume trading; answers the risk gate's state.
    async fn resume(&self) -> Result<Value, String>;
}

/// Read a decision from JSON, refusing anything that is not one.
pub fn parse(value: &Value) -> Result<Decision, GovernanceError> {
    let decision: Decision = serde_json::from_value(value.clone())
        .map_err(|e| GovernanceError::Invalid(format!("not a decision: {e}")))?;
    if decision.title.trim().is_empty() {
        return Err(GovernanceError::Invalid("a decision has a title".into()));
    }
    if decision.metric.due_in_secs > MAX_DUE_SECS {
        return Err(GovernanceError::Invalid(format!(
            "the metric's due_in_secs is at most {MAX_DUE_SECS} (ten years)"
        )));
    }
    if !decision.metric.target.is_finite() {
        return Err(GovernanceError::Invalid(
            "the metric's target is a number".into(),
        ));
    }
    Ok(decision)
}

/// The policy a decision gets: `person` when an action touches capital (the kill switch),
/// asks for a new agent, or pauses or resumes an agent holding a privileged grant (a trader,
/// the code editor, a meta-agent); else `auto`.
pub fn policy(decision: &Decision, overseer: &Overseer) -> &'static str {
    let privileged = |agent: &String| {
        overseer
            .kernel()
            .registry
            .get(agent)
            .and_then(|s| s.active())
            .is_some_and(|v| v.manifest.privileged())
    };
    let person = decision.actions.iter().any(|a| match a {
        Action::HaltTrading | Action::ResumeTrading | Action::NewAgent { .. } => true,
        Action::Pause { agent } | Action::Resume { agent } => privileged(agent),
        Action::Rollback { .. } | Action::SetBudget { .. } | Action::PromotePrompt { .. } => false,
    });
    if person { "person" } else { "auto" }
}

impl Overseer {
    /// Whether every agent a decision acts on or measures exists.
    pub fn validate(&self, decision: &Decision) -> Result<(), GovernanceError> {
        for agent in decision
            .actions
            .iter()
            .filter_map(Action::agent)
            .chain(std::iter::once(&decision.metric.agent))
        {
            if self.kernel().registry.get(agent).is_none() {
                return Err(GovernanceError::Invalid(format!(
                    "no agent {agent:?} to act on or measure"
                )));
            }
        }
        Ok(())
    }

    /// Take a decision through the policy: kept, then applied at once (`auto`) or left
    /// waiting for a person (`person`).
    pub async fn propose(
        &self,
        meeting: &str,
        proposer: &str,
        decision: &Decision,
    ) -> Result<DecisionRecord, GovernanceError> {
        self.validate(decision)?;
        let person = policy(decision, self) == "person";
        // Until it is applied, its date is the proposal's plus the wait it names.
        let due_ms = now_ms().saturating_add(self.config().scaled_ms(decision.metric.due_in_secs));
        let body = json!(decision);
        let record = self
            .kernel()
            .store
            .insert_decision(&NewDecision {
                meeting,
                proposer,
                body: &body,
                policy: if person { "person" } else { "auto" },
                state: if person {
                    "awaiting_approval"
                } else {
                    "approved"
                },
                due_ms,
            })
            .await?;
        let subject = format!("decision {}", record.id);
        audit::record(&*self.kernel().store, proposer, "decision", &subject, &body).await;
        if person {
            return Ok(record);
        }
        Ok(self.apply(record, decision).await?)
    }

    /// A person's approval: the decision is applied. One whose approval time has passed
    /// expires instead, unapplied, even before the healing loop gets to it.
    pub async fn approve(
        &self,
        id: i64,
        by: &str,
        reason: &str,
    ) -> Result<DecisionRecord, GovernanceError> {
        let store = &self.kernel().store;
        let waiting = store
            .decision(id)
            .await?
            .ok_or(GovernanceError::NotFound(id))?;
        // Read before it moves: a decision that cannot be read is never left approved.
        let decision = parse(&waiting.body)?;
        if waiting.state == "awaiting_approval"
            && waiting.made_ms.saturating_add(self.approval_timeout_ms()) <= now_ms()
        {
            self.expire(id).await?;
        }
        let record = self.decide(id, "approved", by, reason, "approval").await?;
        Ok(self.apply(record, &decision).await?)
    }

    /// A person's rejection: the decision is never applied.
    pub async fn reject(
        &self,
        id: i64,
        by: &str,
        reason: &str,
    ) -> Result<DecisionRecord, GovernanceError> {
        self.decide(id, "rejected", by, reason, "rejection").await
    }

    fn approval_timeout_ms(&self) -> u64 {
        self.config().scaled_ms(self.config().approval_timeout_secs)
    }

    /// Move a waiting decision to `to` and put `action` on the trail, or say why it cannot
    /// move.
    async fn decide(
        &self,
        id: i64,
        to: &str,
        by: &str,
        reason: &str,
        action: &str,
    ) -> Result<DecisionRecord, GovernanceError> {
        let store = &self.kernel().store;
        let Some(record) = store
            .transition_decision(id, "awaiting_approval", to, by, reason)
            .await?
        else {
            return Err(match store.decision(id).await? {
                Some(d) => GovernanceError::NotAwaiting { id, state: d.state },
                None => GovernanceError::NotFound(id),
            });
        };
        audit::record(
            &**store,
            by,
            action,
            &format!("decision {id}"),
            &json!({ "reason": reason }),
        )
        .await;
        Ok(record)
    }

    /// Expire a waiting decision (default deny); false when it was not waiting.
    async fn expire(&self, id: i64) -> Result<bool, overseer_store::Error> {
        let reason = format!(
            "no approval within {} ms: not applied",
            self.approval_timeout_ms()
        );
        match self
            .decide(id, "expired", "host", &reason, "decision.expired")
            .await
        {
            Ok(_) => Ok(true),
            Err(GovernanceError::Store(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// Apply an approved decision's actions, in order, stopping at the first that fails.
    async fn apply(
        &self,
        record: DecisionRecord,
        decision: &Decision,
    ) -> Result<DecisionRecord, overseer_store::Error> {
        let mut done = Vec::new();
        let mut failure = None;
        for action in &decision.actions {
            match self.act(action).await {
                Ok(result) => done.push(json!({ "action": action, "result": result })),
                Err(e) => {
                    failure = Some(json!({ "action": action, "error": e }));
                    break;
                }
            }
        }
        let state = if failure.is_some() {
            "failed"
        } else {
            "applied"
        };
        let applied = json!({ "done": done, "failed": failure });
        let store = &self.kernel().store;
        // Its metric is measured `due_in_secs` after it was applied.
        let due_ms = now_ms().saturating_add(self.config().scaled_ms(decision.metric.due_in_secs));
        store
            .record_applied(record.id, state, &applied, due_ms)
            .await?;
        audit::record(
            &**store,
            "host",
            &format!("decision.{state}"),
            &format!("decision {}", record.id),
            &applied,
        )
        .await;
        Ok(store.decision(record.id).await?.unwrap_or(record))
    }

    async fn act(&self, action: &Action) -> Result<Value, String> {
        match action {
            Action::Rollback { agent } => {
                let deployed = self
                    .kernel()
                    .deployer
                    .rollback(agent, None)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "agent": deployed.agent, "version": deployed.version }))
            }
            Action::SetBudget {
                agent,
                tokens_per_day,
                usd_per_day,
            } => {
                let budgets = self.budgets().ok_or("no LLM budgets on this host")?;
                let view = budgets
                    .set(agent, *tokens_per_day, *usd_per_day)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!(view))
            }
            Action::Pause { agent } => {
                let paused = self
                    .kernel()
                    .deployer
                    .pause(agent)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "agent": agent, "paused": paused }))
            }
            Action::Resume { agent } => {
                let released = self
                    .kernel()
                    .deployer
                    .release(agent, "resumed by a decision")
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!({ "agent": agent, "resumed": released }))
            }
            Action::HaltTrading => {
                self.capital()
                    .ok_or("no trading on this host")?
                    .halt()
                    .await
            }
            Action::ResumeTrading => {
                self.capital()
                    .ok_or("no trading on this host")?
                    .resume()
                    .await
            }
            Action::NewAgent {
                name,
                purpose,
                spec,
            } => {
                let spec = spec
                    .clone()
                    .unwrap_or_else(|| json!({ "name": name, "purpose": purpose }));
                match &self.reach().architect {
                    Some(architect) => architect.submit(spec, "governance").await,
                    None => Ok(json!({
                        "requested": name,
                        "purpose": purpose,
                        "next": "no architect on this host: a person writes and pushes it",
                    })),
                }
            }
            Action::PromotePrompt {
                prompt,
                version,
                experiment,
            } => {
                let registry = self.reach().prompts.as_ref().ok_or("no prompt registry")?;
                let reason = match experiment {
                    Some(id) => format!("won experiment {id}"),
                    None => "promoted by a decision".to_string(),
                };
                let label = registry
                    .label(prompt, "production", *version, "governance", &reason)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(json!(label))
            }
        }
    }

    /// Expire decisions waiting for a person past the approval timeout: never applied.
    pub(crate) async fn expire_overdue(&self) -> Result<Vec<i64>, overseer_store::Error> {
        let deadline = now_ms().saturating_sub(self.approval_timeout_ms());
        let mut expired = Vec::new();
        for d in self
            .kernel()
            .store
            .decisions(
                Some("awaiting_approval"),
                overseer_store::Page::latest(OPEN_DECISIONS),
            )
            .await?
        {
            if d.made_ms <= deadline && self.expire(d.id).await? {
                expired.push(d.id);
            }
        }
        Ok(expired)
    }

    /// Measure every applied decision whose date has come.
    pub(crate) async fn evaluate_due(&self) -> Result<Vec<Value>, overseer_store::Error> {
        let now = now_ms();
        let store = &self.kernel().store;
        let mut evaluated = Vec::new();
        for d in store
            .decisions(
                Some("applied"),
                overseer_store::Page::latest(OPEN_DECISIONS),
            )
            .await?
        {
            if d.outcome.is_some() || d.due_ms > now {
                continue;
            }
            let decision = match parse(&d.body) {
                Ok(decision) => decision,
                Err(e) => {
                    let measured = json!({ "error": e.to_string() });
                    store
                        .record_outcome(d.id, "inconclusive", &measured)
                        .await?;
                    continue;
                }
            };
            let m = &decision.metric;
            let since = d.decided_ms.unwrap_or(d.made_ms);
            let calls = self.kernel().metrics.recent().since(&m.agent, since);
            let w = telemetry::window(&m.agent, &calls, now.saturating_sub(since));
            let value = match m.name {
                MetricName::ErrorRate => (w.calls > 0).then_some(w.error_rate),
                MetricName::P95Ms => w.p95_ms,
                MetricName::Calls => Some(w.calls as f64),
            };
            let outcome = match (value, m.comparator) {
                (None, _) => "inconclusive",
                (Some(v), Comparator::AtMost) if v <= m.target => "met",
                (Some(v), Comparator::AtLeast) if v >= m.target => "met",
                _ => "missed",
            };
            let measured = json!({ "metric": m.name, "agent": m.agent, "value": value, "target": m.target, "comparator": m.comparator, "calls": w.calls, "since_ms": since });
            store.record_outcome(d.id, outcome, &measured).await?;
            audit::record(
                &**store,
                "host",
                "decision.outcome",
                &format!("decision {}", d.id),
                &json!({ "outcome": outcome, "measured": measured }),
            )
            .await;
            evaluated.push(json!({ "decision": d.id, "outcome": outcome, "value": value }));
        }
        Ok(evaluated)
    }

    /// The meeting's rules over the day's report: roll back an agent that fails more than a
    /// fifth of its calls (when it has a version to go back to), and track a slow one's
    /// latency; each only while it still holds over the health window's recent calls (an
    /// agent the host rolled back already is not rolled back again). Conditions a decision
    /// still open covers make none.
    pub(crate) async fn meeting(
        &self,
        report: &Value,
    ) -> Result<(Vec<Value>, Value), overseer_store::Error> {
        let meeting = report["date"].as_str().unwrap_or_default().to_string();
        let (candidates, source) = match self.ask_agent(report).await {
            Ok(decisions) => (decisions, json!("agent")),
            Err(reason) => (self.rules(report).await?, json!({ "rules": reason })),
        };
        Ok((self.take(&meeting, candidates).await?, source))
    }

    /// The titles of the decisions still open: waiting, or applied and not yet measured.
    async fn open_titles(&self) -> Result<Vec<String>, overseer_store::Error> {
        Ok(self
            .kernel()
            .store
            .decisions(None, overseer_store::Page::latest(OPEN_DECISIONS))
            .await?
            .into_iter()
            .filter(|d| {
                d.outcome.is_none()
                    && matches!(
                        d.state.as_str(),
                        "awaiting_approval" | "approved" | "applied"
                    )
            })
            .filter_map(|d| d.body["title"].as_str().map(str::to_string))
            .collect())
    }

    /// Take a meeting's decisions through the policy, but none an open decision covers, nor
    /// a rollback of an agent with nothing to go back to.
    async fn take(
        &self,
        meeting: &str,
        candidates: Vec<Decision>,
    ) -> Result<Vec<Value>, overseer_store::Error> {
        let mut open = self.open_titles().await?;
        let mut rolled_back: Vec<String> = Vec::new();
        let mut made = Vec::new();
        for decision in candidates {
            if open.contains(&decision.title) {
                continue;
            }
            // One rollback of an agent a meeting, and none with nothing to go back to.
            let mut skip = false;
            for action in &decision.actions {
                if let Action::Rollback { agent } = action {
                    skip |= rolled_back.contains(agent)
                        || self.kernel().store.servable_versions(agent).await?.len() < 2;
                    rolled_back.push(agent.clone());
                }
            }
            if skip {
                continue;
            }
            open.push(decision.title.clone());
            match self.propose(meeting, "governance", &decision).await {
                Ok(record) => made.push(json!({ "decision": record.id, "title": decision.title, "state": record.state })),
                Err(e) => made.push(json!({ "title": decision.title, "refused": e.to_string() })),
            }
        }
        Ok(made)
    }

    /// The decisions the serving `governance` agent answers for the report; `Err` with the
    /// reason the rules decide instead (no such agent, no model, no valid answer, a fault).
    async fn ask_agent(&self, report: &Value) -> Result<Vec<Decision>, String> {
        let kernel = self.kernel();
        if kernel
            .registry
            .get(GOVERNANCE_AGENT)
            .and_then(|s| s.active())
            .is_none()
        {
            return Err(format!("no {GOVERNANCE_AGENT} agent serving"));
        }
        let event = overseer_kernel::bus::host_event(
            "governance.meeting".to_string(),
            json!({ "report": report }).to_string(),
            "overseer",
        );
        let invoked = kernel
            .invoker
            .invoke(GOVERNANCE_AGENT, event)
            .await
            .map_err(|e| format!("the {GOVERNANCE_AGENT} agent failed: {e}"))?;
        let answer: Value = serde_json::from_str(&invoked.output)
            .map_err(|e| format!("the {GOVERNANCE_AGENT} agent's answer: {e}"))?;
        let Some(decisions) = answer["decisions"].as_array() else {
            return Err(answer["reason"]
                .as_str()
                .unwrap_or("the agent answered no decisions")
                .to_string());
        };
        decisions
            .iter()
            .map(|d| parse(d).map_err(|e| format!("the {GOVERNANCE_AGENT} agent's answer: {e}")))
            .collect()
    }

    /// The rules' decisions on the report.
    async fn rules(&self, report: &Value) -> Result<Vec<Decision>, overseer_store::Error> {
        let day = self.config().governance_secs;
        // Decide only on what still holds: the day's figures, and the calls of the health
        // window since the active version went live (a version the host rolled back already
        // is not judged again).
        let window_ms = self.config().scaled_ms(self.config().window_secs);
        let since = now_ms().saturating_sub(window_ms);
        let mut now = std::collections::HashMap::new();
        for slot in self.kernel().registry.slots() {
            let live = self
                .kernel()
                .store
                .activations(&slot.name, 1)
                .await?
                .first()
                .map_or(0, |a| a.at_ms);
            let from = since.max(live);
            let calls = self.kernel().metrics.recent().since(&slot.name, from);
            now.insert(
                slot.name.clone(),
                telemetry::window(&slot.name, &calls, now_ms().saturating_sub(from)),
            );
        }
        let mut made = Vec::new();
        for a in report["performance"]["agents"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let agent = a["agent"].as_str().unwrap_or_default().to_string();
            let calls = a["calls"].as_u64().unwrap_or(0) as usize;
            let Some(current) = now
                .get(&agent)
                .filter(|w| w.calls >= self.config().min_calls)
            else {
                continue;
            };
            if calls < self.config().min_calls {
                continue;
            }
            let error_rate = a["error_rate"]
                .as_f64()
                .unwrap_or(0.0)
                .min(current.error_rate);
            let candidates = [
                (error_rate > 0.2).then(|| Decision {
                    kind: Kind::SystemImprovement,
                    title: format!("roll back {agent}"),
                    priority: Priority::High,
                    expected_impact: format!(
                        "{agent}'s error rate from {:.0}% to under 1%",
                        error_rate * 100.0
                    ),
                    effort: Effort::Low,
                    rationale: format!(
                        "{agent} failed {:.0}% of {calls} calls in the day",
                        error_rate * 100.0
                    ),
                    actions: vec![Action::Rollback {
                        agent: agent.clone(),
                    }],
                    metric: Metric {
                        name: MetricName::ErrorRate,
                        agent: agent.clone(),
                        comparator: Comparator::AtMost,
                        target: 0.01,
                        due_in_secs: day,
                    },
                }),
                report["recommendations"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|r| r["agent"] == agent.as_str() && r["metric"] == "p95_ms")
                    .filter(|r| {
                        current.p95_ms.unwrap_or(0.0) > r["target"].as_f64().unwrap_or(f64::MAX)
                    })
                    .map(|r| Decision {
                        kind: Kind::CodeOptimization,
                        title: format!("speed up {agent}"),
                        priority: Priority::Medium,
                        expected_impact: format!(
                            "{agent}'s p95 latency under {:.0} ms",
                            r["target"].as_f64().unwrap_or(0.0)
                        ),
                        effort: Effort::Medium,
                        rationale: r["message"].as_str().unwrap_or_default().to_string(),
                        actions: Vec::new(),
                        metric: Metric {
                            name: MetricName::P95Ms,
                            agent: agent.clone(),
                            comparator: Comparator::AtMost,
                            target: r["target"].as_f64().unwrap_or(0.0),
                            due_in_secs: day,
                        },
                    }),
            ];
            made.extend(candidates.into_iter().flatten());
        }
        Ok(made)
    }
}

/// The decision history a meeting sees: the latest outcomes.
pub(crate) async fn history(overseer: &Overseer) -> Result<Vec<Value>, overseer_store::Error> {
    Ok(overseer
        .kernel()
        .store
        .decisions(None, overseer_store::Page::latest(50))
        .await?
        .into_iter()
        .map(|d| json!({ "id": d.id, "title": d.body["title"], "state": d.state, "outcome": d.outcome, "measured": d.measured }))
        .collect())
}

/// What the Overseer needs from outside the kernel to apply decisions.
pub struct Reach {
    pub budgets: Option<Arc<overseer_kernel::capability::LlmBudgets>>,
    pub capital: Option<Arc<dyn Capital>>,
    pub prompts: Option<Arc<crate::prompts::PromptRegistry>>,
    pub architect: Option<Arc<dyn Architect>>,
}

/// Where a `new_agent` decision sends its spec.
#[async_trait]
pub trait Architect: Send + Sync {
    /// Take `spec` (the JSON of `POST /v1/architect/specs`) from `by`; answers the spec's
    /// record, or why it was refused.
    async fn submit(&self, spec: Value, by: &str) -> Result<Value, String>;
}

/// The decision that promotes an experiment's winner: applied at once by the policy, and
/// measured a day later by the owner's error rate (a promotion must not make it fail more).
pub fn promotion(
    prompt: &str,
    version: u32,
    experiment: i64,
    owner: &str,
    findings: &crate::prompts::Findings,
) -> Decision {
    Decision {
        kind: Kind::SystemImprovement,
        title: format!("Promote {prompt} version {version}"),
        priority: Priority::Medium,
        expected_impact: format!("the outcomes of experiment {experiment}'s winner for every use"),
        effort: Effort::Low,
        rationale: serde_json::to_string(&findings.arms).unwrap_or_default(),
        actions: vec![Action::PromotePrompt {
            prompt: prompt.to_string(),
            version,
            experiment: Some(experiment),
        }],
        metric: Metric {
            name: MetricName::ErrorRate,
            agent: owner.to_string(),
            comparator: Comparator::AtMost,
            target: 0.1,
            due_in_secs: 86_400,
        },
    }
}
