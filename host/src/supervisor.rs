//! The health model: the watch window after a swap, supervision of failures (OTP-style
//! intensity: more than M failures within P seconds), the periodic health loop, remediation
//! (back to the last stable version, or out of routing) and the alerts that report all of it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use overseer_sandbox::Event;
use serde_json::{Value, json};

use crate::deploy;
use crate::error::Result;
use crate::registry::{Slot, Version};
use crate::services::ShadowServices;
use crate::state::Host;
use crate::store::{AlertRecord, now_ms};

/// Kinds of alert.
pub const AGENT_FAILURE: &str = "agent_failure";
pub const PERFORMANCE_DEGRADATION: &str = "performance_degradation";
pub const ROLLBACK: &str = "rollback";
pub const QUARANTINE: &str = "quarantine";
pub const SYSTEM_FAILURE: &str = "system_failure";

/// What a watch window concluded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Stable,
    Inconclusive,
    RollBack,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Stable => "stable",
            Verdict::Inconclusive => "inconclusive",
            Verdict::RollBack => "rolled-back",
        }
    }
}

/// Judge a window of `calls` with `failures` against the policy and the previous version's
/// rate. `closing` is set when the window ends (by calls or by time); before that only a
/// clear failure gives a verdict.
pub fn judge(
    calls: u64,
    failures: u64,
    min_calls: u32,
    max_error_rate: f64,
    baseline: Option<f64>,
    closing: bool,
) -> Option<Verdict> {
    let enough = calls >= u64::from(min_calls);
    let rate = if calls == 0 {
        0.0
    } else {
        failures as f64 / calls as f64
    };
    if enough && rate > max_error_rate && baseline.is_none_or(|b| rate > b) {
        return Some(Verdict::RollBack);
    }
    if !closing {
        return None;
    }
    Some(if enough {
        Verdict::Stable
    } else {
        Verdict::Inconclusive
    })
}

impl Host {
    /// Open an alert (unless the same one is open) and announce it on the bus as `alert.<kind>`.
    pub async fn raise(
        self: &Arc<Self>,
        agent: &str,
        kind: &str,
        priority: &str,
        message: &str,
        evidence: Value,
    ) -> Result<AlertRecord> {
        let (alert, new) = self
            .store
            .open_alert(agent, kind, priority, message, &evidence)
            .await?;
        if new {
            tracing::warn!(agent, kind, priority, message, "alert");
            self.announce(&alert, "opened").await;
        }
        Ok(alert)
    }

    /// Resolve the open alerts of `agent` of these kinds.
    pub async fn resolve_alerts(
        self: &Arc<Self>,
        agent: &str,
        kinds: &[&str],
        resolution: &str,
    ) -> Result<()> {
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

    async fn announce(self: &Arc<Self>, alert: &AlertRecord, what: &str) {
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            topic: format!("alert.{}", alert.kind),
            payload: json!({ "state": what, "alert": alert }).to_string(),
            source: "overseer".to_string(),
            at_ms: now_ms(),
        };
        if let Err(e) = self.publish(event).await {
            tracing::warn!(error = %e, "could not publish an alert event");
        }
    }

    /// Account for one finished call of `version`: supervision and the watch window.
    pub(crate) fn observe(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        version: &Arc<Version>,
        event: Event,
        failed: bool,
    ) {
        version.calls.fetch_add(1, Ordering::Relaxed);
        if failed {
            version.failures.fetch_add(1, Ordering::Relaxed);
        }
        let policy = &version.resolved.policy;
        // A version in its watch window answers to the window: it goes back to the version it
        // replaced, not through quarantine. So does one the window already condemned, and the
        // failures of a version no longer serving say nothing about the agent.
        let supervised = version.window().is_none()
            && !version.condemned.load(Ordering::Acquire)
            && slot.active().is_some_and(|a| Arc::ptr_eq(&a, version));
        if !failed {
            slot.remember(event);
        } else if supervised {
            let recent = slot.record_failure(policy.period);
            if recent > policy.max_failures as usize
                && !slot.remediating.swap(true, Ordering::AcqRel)
            {
                let host = self.clone();
                let slot = slot.clone();
                let evidence = json!({
                    "failures": recent,
                    "period_ms": policy.period.as_millis() as u64,
                    "max_failures": policy.max_failures,
                    "version": version.number,
                });
                tokio::spawn(async move {
                    let reason = format!("{} failures within {} ms", recent, evidence["period_ms"]);
                    if let Err(e) = host.remediate(&slot, &reason, evidence).await {
                        tracing::error!(agent = slot.name, error = %e, "remediation failed");
                    }
                    slot.remediating.store(false, Ordering::Release);
                });
            }
        }
        if let Some((watch, calls, _)) = version.window() {
            let closing =
                calls >= u64::from(policy.watch_calls) || watch.started.elapsed() >= policy.watch;
            self.check_window(version, closing);
        }
    }

    /// Evaluate the watch window of `version`; act on a verdict.
    pub(crate) fn check_window(self: &Arc<Self>, version: &Arc<Version>, closing: bool) {
        let Some((_, calls, failures)) = version.window() else {
            return;
        };
        let policy = &version.resolved.policy;
        let baseline = self.baseline(version);
        let Some(verdict) = judge(
            calls,
            failures,
            policy.min_calls,
            policy.max_error_rate,
            baseline,
            closing,
        ) else {
            return;
        };
        // Condemned before the window closes, so no failure slips through to supervision.
        if matches!(verdict, Verdict::RollBack) {
            version.condemned.store(true, Ordering::Release);
        }
        if !version.end_watch() {
            return;
        }
        let host = self.clone();
        let version = version.clone();
        tokio::spawn(async move {
            if let Err(e) = host
                .conclude(&version, verdict, calls, failures, baseline)
                .await
            {
                tracing::error!(agent = version.agent, error = %e, "acting on the watch verdict failed");
            }
        });
    }

    /// The error rate of the version this one replaced, while it served.
    fn baseline(&self, version: &Version) -> Option<f64> {
        let parent = version.parent?;
        self.registry
            .get(&version.agent)?
            .compiled(parent)?
            .error_rate()
    }

    async fn conclude(
        self: &Arc<Self>,
        version: &Arc<Version>,
        verdict: Verdict,
        calls: u64,
        failures: u64,
        baseline: Option<f64>,
    ) -> Result<()> {
        let rate = if calls == 0 {
            0.0
        } else {
            failures as f64 / calls as f64
        };
        let detail = match verdict {
            Verdict::Stable => format!("{failures} of {calls} calls failed in the watch window"),
            Verdict::Inconclusive => format!(
                "only {calls} calls in the watch window (fewer than {}): kept without a verdict",
                version.resolved.policy.min_calls
            ),
            Verdict::RollBack => format!(
                "{failures} of {calls} calls failed ({:.0}%), above {:.0}% and the previous version's {}",
                rate * 100.0,
                version.resolved.policy.max_error_rate * 100.0,
                baseline
                    .map(|b| format!("{:.0}%", b * 100.0))
                    .unwrap_or_else(|| "unknown rate".to_string())
            ),
        };
        self.store
            .set_verdict(
                &version.agent,
                version.number,
                verdict.as_str(),
                &detail,
                calls,
                failures,
            )
            .await?;
        tracing::info!(
            agent = version.agent,
            version = version.number,
            verdict = verdict.as_str(),
            detail,
            "watch window closed"
        );
        if verdict != Verdict::RollBack {
            return Ok(());
        }
        let evidence = json!({
            "version": version.number,
            "calls": calls,
            "failures": failures,
            "error_rate": rate,
            "baseline_error_rate": baseline,
            "max_error_rate": version.resolved.policy.max_error_rate,
        });
        match deploy::roll_back_from(self, &version.agent, version.number).await? {
            Some(target) => {
                self.release(&version.agent, "rolled back after a failed watch window")
                    .await?;
                self.raise(
                    &version.agent,
                    ROLLBACK,
                    "high",
                    &format!(
                        "version {} rolled back to {target}: {detail}",
                        version.number
                    ),
                    json!({ "to": target, "window": evidence }),
                )
                .await?;
            }
            None => {
                self.raise(
                    &version.agent,
                    AGENT_FAILURE,
                    "critical",
                    &format!("version {} fails its watch window and there is nothing to roll back to: {detail}", version.number),
                    evidence,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Take the agent back to its last stable version, or out of routing when it has none.
    pub async fn remediate(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        reason: &str,
        evidence: Value,
    ) -> Result<()> {
        slot.clear_failures();
        self.metrics.quarantine(&slot.name);
        match deploy::to_last_stable(self, &slot.name).await? {
            Some((from, to)) => {
                self.raise(
                    &slot.name,
                    QUARANTINE,
                    "high",
                    &format!("{reason}: version {from} replaced by the last stable version {to}"),
                    json!({ "from": from, "to": to, "evidence": evidence }),
                )
                .await?;
            }
            None => {
                self.store.set_quarantined(&slot.name, true).await?;
                slot.quarantined.store(true, Ordering::Release);
                self.raise(
                    &slot.name,
                    QUARANTINE,
                    "critical",
                    &format!("{reason}: no stable version to return to; taken out of routing until a push, a rollback or a release"),
                    evidence,
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Put a quarantined agent back into routing.
    pub async fn release(self: &Arc<Self>, agent: &str, how: &str) -> Result<()> {
        self.store.set_quarantined(agent, false).await?;
        if let Some(slot) = self.registry.get(agent) {
            slot.quarantined.store(false, Ordering::Release);
            slot.clear_failures();
        }
        self.resolve_alerts(agent, &[QUARANTINE], how).await
    }

    /// Start (or replace) the health loop of the version now active.
    pub fn watch_health(self: &Arc<Self>, version: &Version) {
        let Some(slot) = self.registry.get(&version.agent) else {
            return;
        };
        slot.health_failures.store(0, Ordering::Release);
        let every = version.resolved.policy.health_every;
        let host: Weak<Host> = Arc::downgrade(self);
        let agent = version.agent.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(host) = host.upgrade() else {
                    return;
                };
                if let Err(e) = host.check_health(&agent).await {
                    tracing::warn!(agent, error = %e, "health check could not run");
                }
            }
        });
        slot.set_health_task(Some(task));
    }

    /// One health check of an agent's active version.
    pub async fn check_health(self: &Arc<Self>, agent: &str) -> Result<()> {
        let Some(slot) = self.registry.get(agent) else {
            return Ok(());
        };
        let Some(version) = slot.active() else {
            return Ok(());
        };
        let services = Arc::new(ShadowServices::new(
            self.clone(),
            agent,
            Some(version.number),
            &version.manifest,
        ));
        let outcome = self
            .sandbox
            .health(&version.prepared, &version.resolved.limits, services)
            .await;
        let problem = match outcome {
            Ok(o) if o.value.ok => None,
            Ok(o) => Some(format!("health is not ok: {}", o.value.detail)),
            Err(e) => Some(format!("health failed: {e}")),
        };
        let threshold = version.resolved.policy.health_failures;
        match problem {
            None => {
                if slot.health_failures.swap(0, Ordering::AcqRel) > 0 {
                    tracing::info!(agent, version = version.number, "health recovered");
                }
                self.resolve_alerts(agent, &[AGENT_FAILURE], "health recovered")
                    .await?;
            }
            Some(problem) => {
                let failed = slot.health_failures.fetch_add(1, Ordering::AcqRel) + 1;
                tracing::warn!(
                    agent,
                    version = version.number,
                    failed,
                    problem,
                    "health check failed"
                );
                if failed == threshold {
                    let evidence = json!({
                        "version": version.number,
                        "consecutive_failures": failed,
                        "last": problem,
                    });
                    self.raise(
                        agent,
                        AGENT_FAILURE,
                        "high",
                        &format!(
                            "{failed} consecutive failed health checks of version {}: {problem}",
                            version.number
                        ),
                        evidence.clone(),
                    )
                    .await?;
                    if !slot.remediating.swap(true, Ordering::AcqRel) {
                        let result = self
                            .remediate(&slot, "failed health checks", evidence)
                            .await;
                        slot.remediating.store(false, Ordering::Release);
                        result?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// How long after the swap the watch window closes by time.
pub fn schedule_window_close(host: &Arc<Host>, version: &Arc<Version>) {
    let weak: Weak<Host> = Arc::downgrade(host);
    let version = version.clone();
    let watch: Duration = version.resolved.policy.watch;
    tokio::spawn(async move {
        tokio::time::sleep(watch).await;
        if let Some(host) = weak.upgrade() {
            host.check_window(&version, true);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_policy() {
        // Too few calls: nothing before the end, inconclusive at the end.
        assert_eq!(judge(2, 2, 5, 0.5, None, false), None);
        assert_eq!(judge(2, 2, 5, 0.5, None, true), Some(Verdict::Inconclusive));
        // Failing clearly: roll back early, without waiting for the end.
        assert_eq!(judge(5, 5, 5, 0.5, None, false), Some(Verdict::RollBack));
        // Failing, but no worse than the version it replaced: kept.
        assert_eq!(judge(10, 6, 5, 0.5, Some(0.7), true), Some(Verdict::Stable));
        assert_eq!(judge(10, 6, 5, 0.5, Some(0.7), false), None);
        // Healthy.
        assert_eq!(judge(10, 1, 5, 0.5, Some(0.0), true), Some(Verdict::Stable));
    }
}
