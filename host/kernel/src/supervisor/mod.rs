//! The supervisor: the health model of every agent. It watches new versions through their
//! watch window, counts the failures of versions past it (OTP's restart intensity: more than
//! `max_failures` within `period`), calls `health` on a schedule, and remediates through the
//! deployer's one rollback policy, raising the alerts that report it.
//!
//! # States and transitions
//!
//! An agent's active version is in one of four states. Events are a finished call, the window's
//! deadline, a failed or passed health check, and what the deployer announces.
//!
//! | state | event | next state | what happens |
//! | --- | --- | --- | --- |
//! | watching | call (ok or failed) | watching | counted in the window |
//! | watching | window judges it failing (enough calls, error rate above the policy and the last stable version's) | rolled back, or quarantined | verdict `rolled-back` and the rollback in one transaction; `rollback` alert; with no target: quarantine, critical `quarantine` alert |
//! | watching | `watch_calls` calls or `watch` time pass | supervised | verdict `stable` (enough calls) or `inconclusive` |
//! | watching | another version activated | (the other one's state) | verdict on what the window saw, in the activation's transaction: `stable`, `failed` or `superseded` |
//! | supervised | failed call, more than `max_failures` within `period` | rolled back, or quarantined | `quarantine` alert: high with a target, critical without |
//! | supervised | `health_failures` failed health checks in a row | rolled back, or quarantined | `agent_failure` alert, then as above |
//! | supervised | health check passes | supervised | `agent_failure` alerts resolved |
//! | quarantined | release, push, rollback | supervised, or watching after a push | `quarantine` alerts resolved |
//! | any | retire | (none) | the health loop stops |
//!
//! A version the window condemned answers for its failures through its rollback; failures of a
//! version no longer serving count for nobody. Remediation never runs inside the task that
//! noticed the failure (a health loop, a call): it runs on a task of its own, one at a time per
//! agent, so an activation it causes can never abort it. The health loop is one per agent, not
//! per version: a swap does not restart it.

mod health;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use overseer_sandbox::Sandbox;
use overseer_store::{Judgement, Store};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::alerts::{AGENT_FAILURE, Alerts, QUARANTINE, ROLLBACK};
use crate::deploy::{Deployer, RollbackOutcome};
use crate::error::Result;
use crate::lifecycle::{Cause, Lifecycle, Listener};
use crate::metrics::Metrics;
use crate::registry::{Registry, Slot, Version};
use crate::window::{Reading, Seen};

/// Supervision of one agent.
struct Watch {
    /// When recent calls of the supervised version failed.
    failures: Mutex<VecDeque<Instant>>,
    /// A remediation is under way.
    remediating: AtomicBool,
    /// Consecutive failed health checks of the active version.
    health_failures: AtomicU32,
    /// The agent's health loop.
    health: Mutex<Option<JoinHandle<()>>>,
    /// Whether a `quarantine` alert of the agent may be open: [`UNKNOWN`], [`OPEN`] or
    /// [`NONE`]. Spares a push the write that resolves alerts when none can be open.
    quarantine_alert: AtomicU8,
}

/// Nothing known of the agent's `quarantine` alerts (as after a start).
const UNKNOWN: u8 = 0;
/// The supervisor opened a `quarantine` alert of the agent.
const OPEN: u8 = 1;
/// The agent's `quarantine` alerts are resolved.
const NONE: u8 = 2;

impl Default for Watch {
    fn default() -> Self {
        Watch {
            failures: Mutex::default(),
            remediating: AtomicBool::default(),
            health_failures: AtomicU32::default(),
            health: Mutex::default(),
            quarantine_alert: AtomicU8::new(UNKNOWN),
        }
    }
}

impl Watch {
    /// Record a failure now; returns how many fall within `period`.
    fn failure(&self, period: Duration) -> usize {
        let now = Instant::now();
        let mut failures = lock(&self.failures);
        failures.push_back(now);
        while failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > period)
        {
            failures.pop_front();
        }
        failures.len()
    }

    fn reset(&self) {
        lock(&self.failures).clear();
        self.health_failures.store(0, Ordering::Release);
    }
}

/// Clears the agent's `remediating` flag however its remediation ends.
struct Remediating(Arc<Watch>);

impl Drop for Remediating {
    fn drop(&mut self) {
        self.0.remediating.store(false, Ordering::Release);
    }
}

/// What the supervisor is built from.
pub(crate) struct Parts {
    pub registry: Arc<Registry>,
    pub store: Store,
    pub sandbox: Sandbox,
    pub deployer: Arc<Deployer>,
    pub alerts: Alerts,
    pub metrics: Arc<Metrics>,
}

/// The health model of every agent.
pub struct Supervisor {
    registry: Arc<Registry>,
    store: Store,
    sandbox: Sandbox,
    deployer: Arc<Deployer>,
    alerts: Alerts,
    metrics: Arc<Metrics>,
    agents: Mutex<HashMap<String, Arc<Watch>>>,
    this: Weak<Supervisor>,
}

impl Supervisor {
    pub(crate) fn new(parts: Parts) -> Arc<Self> {
        Arc::new_cyclic(|this| Supervisor {
            registry: parts.registry,
            store: parts.store,
            sandbox: parts.sandbox,
            deployer: parts.deployer,
            alerts: parts.alerts,
            metrics: parts.metrics,
            agents: Mutex::new(HashMap::new()),
            this: this.clone(),
        })
    }

    fn watch(&self, agent: &str) -> Arc<Watch> {
        lock(&self.agents)
            .entry(agent.to_string())
            .or_default()
            .clone()
    }

    /// Consecutive failed health checks of the agent's active version.
    pub fn health_failures(&self, agent: &str) -> u32 {
        lock(&self.agents)
            .get(agent)
            .map(|w| w.health_failures.load(Ordering::Acquire))
            .unwrap_or(0)
    }

    /// Whether a remediation of the agent is under way.
    pub fn remediating(&self, agent: &str) -> bool {
        lock(&self.agents)
            .get(agent)
            .is_some_and(|w| w.remediating.load(Ordering::Acquire))
    }

    /// Account for one finished call of `version` of the agent in `slot`. `failed` says
    /// whether it counts against the version.
    pub fn observe(&self, slot: &Slot, version: &Arc<Version>, failed: bool) {
        match version.count(failed) {
            Seen::Closed(reading) => self.conclude(version.clone(), reading),
            Seen::Supervised if failed => {
                let serving = slot.active().is_some_and(|a| Arc::ptr_eq(&a, version));
                if !serving {
                    return;
                }
                let policy = &version.resolved.policy;
                let recent = self.watch(&slot.name).failure(policy.period);
                if recent > policy.max_failures as usize {
                    let evidence = json!({
                        "failures": recent,
                        "period_ms": policy.period.as_millis() as u64,
                        "max_failures": policy.max_failures,
                        "version": version.number,
                    });
                    let reason =
                        format!("{recent} failures within {} ms", policy.period.as_millis());
                    self.remediate(&slot.name, version.number, reason, evidence, None);
                }
            }
            Seen::Watching | Seen::Supervised | Seen::Condemned => {}
        }
    }

    /// Act on a window's verdict, on a task of its own.
    fn conclude(&self, version: Arc<Version>, reading: Reading) {
        let Some(this) = self.this.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            if let Err(e) = this.act_on_verdict(&version, reading).await {
                // Nothing was done: supervision watches the version rather than no one.
                tracing::error!(agent = version.agent, error = %e, "acting on the watch verdict failed");
                version.supervise();
            }
        });
    }

    async fn act_on_verdict(&self, version: &Version, reading: Reading) -> Result<()> {
        let policy = &version.resolved.policy;
        let detail = reading.detail(policy);
        let judgement = Judgement {
            version: version.number,
            verdict: reading.verdict,
            detail: detail.clone(),
            calls: reading.calls,
            failures: reading.failures,
        };
        tracing::info!(
            agent = version.agent,
            version = version.number,
            verdict = reading.verdict.as_str(),
            detail,
            "watch window closed"
        );
        if !reading.verdict.condemns() {
            return Ok(self.store.judge(&version.agent, &judgement).await?);
        }
        let evidence = json!({
            "version": version.number,
            "calls": reading.calls,
            "failures": reading.failures,
            "error_rate": reading.rate(),
            "baseline_error_rate": reading.baseline,
            "max_error_rate": policy.max_error_rate,
        });
        let agent = version.agent.as_str();
        let watch = self.watch(agent);
        let _one_at_a_time = self.begin_remediation(&watch).await;
        match self
            .deployer
            .remediate(agent, version.number, Some(judgement.clone()))
            .await?
        {
            RollbackOutcome::RolledBack { from, to } => {
                self.alerts
                    .raise(
                        agent,
                        ROLLBACK,
                        "high",
                        &format!("version {from} rolled back to {to}: {detail}"),
                        json!({ "to": to, "window": evidence }),
                    )
                    .await?;
            }
            RollbackOutcome::NoTarget => {
                watch.quarantine_alert.store(OPEN, Ordering::Release);
                self.alerts
                    .raise(
                        agent,
                        QUARANTINE,
                        "critical",
                        &format!(
                            "version {} fails its watch window and there is no version to go back to: {detail}; taken out of routing until a push, a rollback or a release",
                            version.number
                        ),
                        evidence,
                    )
                    .await?;
            }
            RollbackOutcome::NotActive => {
                self.store.judge(agent, &judgement).await?;
            }
        }
        Ok(())
    }

    /// Wait for the agent's remediation under way, if any, and mark one under way.
    async fn begin_remediation(&self, watch: &Arc<Watch>) -> Remediating {
        while watch.remediating.swap(true, Ordering::AcqRel) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Remediating(watch.clone())
    }

    /// Take the agent off `from` after repeated failures, on a task of its own, unless a
    /// remediation of it is under way.
    fn remediate(
        &self,
        agent: &str,
        from: u32,
        reason: String,
        evidence: Value,
        alert: Option<(&'static str, String)>,
    ) {
        let watch = self.watch(agent);
        if watch.remediating.swap(true, Ordering::AcqRel) {
            return;
        }
        let guard = Remediating(watch.clone());
        let Some(this) = self.this.upgrade() else {
            return;
        };
        let agent = agent.to_string();
        tokio::spawn(async move {
            let _guard = guard;
            watch.reset();
            if let Err(e) = this
                .remediate_now(&agent, from, &reason, evidence, alert)
                .await
            {
                tracing::error!(agent, error = %e, "remediation failed");
            }
        });
    }

    async fn remediate_now(
        &self,
        agent: &str,
        from: u32,
        reason: &str,
        evidence: Value,
        alert: Option<(&'static str, String)>,
    ) -> Result<()> {
        if let Some((kind, message)) = alert {
            self.alerts
                .raise(agent, kind, "high", &message, evidence.clone())
                .await?;
        }
        let outcome = self.deployer.remediate(agent, from, None).await?;
        if outcome != RollbackOutcome::NotActive {
            self.watch(agent)
                .quarantine_alert
                .store(OPEN, Ordering::Release);
        }
        match outcome {
            RollbackOutcome::RolledBack { from, to } => {
                self.metrics.quarantine(agent);
                self.alerts
                    .raise(
                        agent,
                        QUARANTINE,
                        "high",
                        &format!(
                            "{reason}: version {from} replaced by the last stable version {to}"
                        ),
                        json!({ "from": from, "to": to, "evidence": evidence }),
                    )
                    .await?;
            }
            RollbackOutcome::NoTarget => {
                self.alerts
                    .raise(
                        agent,
                        QUARANTINE,
                        "critical",
                        &format!("{reason}: no stable version to return to; taken out of routing until a push, a rollback or a release"),
                        evidence,
                    )
                    .await?;
            }
            RollbackOutcome::NotActive => {}
        }
        Ok(())
    }

    /// Close `version`'s window when its time is up, unless calls closed it first.
    fn close_window_later(&self, version: Arc<Version>) {
        // The window as opened now: if it is closed and another opened meanwhile (the bytes
        // pushed again), this timer leaves the new one to its own.
        let Some(opened) = version.window_opened() else {
            return;
        };
        let weak = self.this.clone();
        let watch = version.resolved.policy.watch;
        tokio::spawn(async move {
            tokio::time::sleep(watch).await;
            let Some(this) = weak.upgrade() else {
                return;
            };
            if let Seen::Closed(reading) = version.close_window(opened) {
                this.conclude(version, reading);
            }
        });
    }
}

#[async_trait]
impl Listener for Supervisor {
    async fn on(&self, event: &Lifecycle) {
        let result = match event {
            Lifecycle::Activated {
                agent,
                version,
                previous,
                cause,
                watching,
                ..
            } => {
                let watch = self.watch(agent);
                watch.reset();
                // A new agent, or one revived after its retirement resolved its alerts.
                if previous.is_none() && *cause == Cause::Push {
                    watch.quarantine_alert.store(NONE, Ordering::Release);
                }
                if *watching
                    && let Some(active) = self
                        .registry
                        .get(agent)
                        .and_then(|s| s.active())
                        .filter(|v| v.number == *version)
                {
                    self.close_window_later(active);
                }
                self.start_health_loop(agent, &watch);
                let how = match cause {
                    Cause::Push => "a new version was pushed",
                    Cause::Rollback => "rolled back",
                    Cause::Remediation | Cause::Start => return,
                };
                // A write spared when no `quarantine` alert of the agent can be open.
                if watch.quarantine_alert.swap(NONE, Ordering::AcqRel) == NONE {
                    return;
                }
                self.alerts.resolve(agent, &[QUARANTINE], how).await
            }
            Lifecycle::Released { agent, how } => {
                let watch = self.watch(agent);
                watch.reset();
                watch.quarantine_alert.store(NONE, Ordering::Release);
                self.alerts.resolve(agent, &[QUARANTINE], how).await
            }
            Lifecycle::Retired { agent } => {
                if let Some(watch) = lock(&self.agents).remove(agent)
                    && let Some(task) = lock(&watch.health).take()
                {
                    task.abort();
                }
                self.alerts
                    .resolve(agent, &[QUARANTINE, AGENT_FAILURE, ROLLBACK], "retired")
                    .await
            }
            Lifecycle::RolledBack { .. } | Lifecycle::Quarantined { .. } => Ok(()),
        };
        if let Err(e) = result {
            tracing::warn!(agent = event.agent(), error = %e, "supervisor could not act on a lifecycle event");
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for watch in lock(&self.agents).values() {
            if let Some(task) = lock(&watch.health).take() {
                task.abort();
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The alert a health remediation opens before it acts.
fn health_alert(failed: u32, version: u32, problem: &str) -> (&'static str, String) {
    (
        AGENT_FAILURE,
        format!("{failed} consecutive failed health checks of version {version}: {problem}"),
    )
}
