//! Going back, by one policy for every path — the watch window, supervision, failed health
//! checks and a person's rollback:
//!
//! - the target is a version older than the failing (or active) one, that passed its checks
//!   and can be loaded, and that no verdict condemned (`rolled-back`, `failed`);
//! - among those, the newest one judged `stable`, else the newest of them;
//! - a version the host remediated away from within the failing version's supervision period
//!   is not chosen again, so two failing versions cannot take turns;
//! - when no target remains, an automatic rollback quarantines the agent (it stays on its
//!   version, out of routing) and a person's is refused with `no_previous_version`.
//!
//! A person may still name any servable version (`rollback --to N`), a condemned one included.

use overseer_store::{Activation, ActivationCause, Judgement, Verdict, VersionRecord, now_ms};

use super::activation::Before;
use super::{Deployed, Deployer, imports};
use crate::error::{Error, Result};
use crate::lifecycle::{Cause, Lifecycle};
use crate::name::check_name;

/// What an automatic rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackOutcome {
    /// The agent went back from `from` to `to`.
    RolledBack { from: u32, to: u32 },
    /// `from` no longer serves (a push or a person got there first): nothing was done.
    NotActive,
    /// No version qualifies: the agent stays on `from`, quarantined.
    NoTarget,
}

/// The version to go back to from `failing`, avoiding the versions in `avoid`.
pub fn rollback_target(versions: &[VersionRecord], failing: u32, avoid: &[u32]) -> Option<u32> {
    let candidates: Vec<&VersionRecord> = versions
        .iter()
        .filter(|v| {
            v.number < failing && v.servable() && !v.condemned() && !avoid.contains(&v.number)
        })
        .collect();
    let newest = |stable_only: bool| {
        candidates
            .iter()
            .filter(|v| !stable_only || v.verdict == Some(overseer_store::Verdict::Stable))
            .map(|v| v.number)
            .max()
    };
    newest(true).or_else(|| newest(false))
}

impl Deployer {
    /// Versions the host remediated away from within `period`.
    async fn remediated_recently(
        &self,
        agent: &str,
        period: std::time::Duration,
    ) -> Result<Vec<u32>> {
        let since = now_ms().saturating_sub(period.as_millis() as u64);
        Ok(self
            .store
            .activations(agent, 100)
            .await?
            .into_iter()
            .filter(|a| a.cause == ActivationCause::Remediation && a.at_ms >= since)
            .filter_map(|a| a.previous)
            .collect())
    }

    /// A person's rollback: to version `to`, or by the policy from the active version.
    pub async fn rollback(&self, agent: &str, to: Option<u32>) -> Result<Deployed> {
        check_name(agent)?;
        let _deploying = self.locks.deploy(agent).await;
        let record = self
            .store
            .agent(agent)
            .await?
            .ok_or_else(|| Error::AgentNotFound(agent.to_string()))?;
        let versions = self.store.servable_versions(agent).await?;
        let target = match to {
            Some(n) => {
                let Some(v) = versions.iter().find(|v| v.number == n) else {
                    // Not among the servable ones: rejected, or no such version.
                    let reason = match self.store.version(agent, n).await? {
                        Some(v) => format!(
                            "it was rejected at {}",
                            v.stage.as_deref().unwrap_or("a check")
                        ),
                        None => {
                            return Err(Error::VersionNotFound {
                                agent: agent.to_string(),
                                version: n,
                            });
                        }
                    };
                    return Err(Error::VersionNotServable {
                        agent: agent.to_string(),
                        version: n,
                        reason,
                    });
                };
                if !v.servable() {
                    return Err(Error::VersionNotServable {
                        agent: agent.to_string(),
                        version: n,
                        reason: match &v.fault {
                            Some(fault) => fault.clone(),
                            None => format!(
                                "it was rejected at {}",
                                v.stage.as_deref().unwrap_or("a check")
                            ),
                        },
                    });
                }
                v
            }
            None => {
                let from = record.active_version.unwrap_or(u32::MAX);
                let period = self
                    .registry
                    .get(agent)
                    .and_then(|s| s.active())
                    .map(|v| v.resolved.policy.period)
                    .unwrap_or(crate::manifest::DEFAULT_PERIOD);
                let avoid = self.remediated_recently(agent, period).await?;
                let n = rollback_target(&versions, from, &avoid)
                    .ok_or_else(|| Error::NoPreviousVersion(agent.to_string()))?;
                versions
                    .iter()
                    .find(|v| v.number == n)
                    .ok_or_else(|| Error::NoPreviousVersion(agent.to_string()))?
            }
        };
        let version = if record.active_version == Some(target.number) {
            // Already serving: a rollback to it takes it out of quarantine.
            let version = self.compiled(target).await?;
            if self.store.release(agent).await? {
                if let Some(slot) = self.registry.get(agent) {
                    slot.set_quarantined(false);
                }
                self.hooks
                    .publish(Lifecycle::Released {
                        agent: agent.to_string(),
                        how: "rolled back".to_string(),
                    })
                    .await;
            }
            self.take_over(&version).await?;
            version
        } else {
            self.activate_existing(
                target,
                &versions,
                Before::of(&record),
                Activation {
                    cause: ActivationCause::Rollback,
                    watch: false,
                    judged: self.replacing(agent, None),
                    edit: None,
                },
                Cause::Rollback,
            )
            .await?
        };
        tracing::info!(agent, version = target.number, "rolled back");
        Ok(Deployed {
            agent: agent.to_string(),
            version: target.number,
            digest: target.digest.clone(),
            created: false,
            state: "active",
            checks: target.checks.clone(),
            message: format!("rolled back to version {}", target.number),
            imports: imports(&version.prepared, &version.manifest),
        })
    }

    /// The host's rollback away from a failing version `from`, with the verdict that caused
    /// it (written in the same transaction). Quarantines the agent when no version qualifies.
    pub async fn remediate(
        &self,
        agent: &str,
        from: u32,
        judged: Option<Judgement>,
    ) -> Result<RollbackOutcome> {
        let _deploying = self.locks.deploy(agent).await;
        let Some(record) = self.store.agent(agent).await? else {
            return Ok(RollbackOutcome::NotActive);
        };
        if record.active_version != Some(from) {
            return Ok(RollbackOutcome::NotActive);
        }
        let versions = self.store.servable_versions(agent).await?;
        let serving = self
            .registry
            .get(agent)
            .and_then(|s| s.active())
            .filter(|v| v.number == from);
        let period = serving
            .as_ref()
            .map(|v| v.resolved.policy.period)
            .unwrap_or(crate::manifest::DEFAULT_PERIOD);
        // A version taken off inside its watch window is judged with it: it failed.
        let judged = judged.or_else(|| {
            let serving = serving.as_ref()?;
            let reading = serving.superseded()?;
            Some(Judgement {
                version: from,
                verdict: Verdict::Failed,
                detail: format!(
                    "taken off for failing inside its watch window ({})",
                    reading.detail(&serving.resolved.policy)
                ),
                calls: reading.calls,
                failures: reading.failures,
            })
        });
        let mut avoid = self.remediated_recently(agent, period).await?;
        loop {
            let target = rollback_target(&versions, from, &avoid)
                .and_then(|n| versions.iter().find(|v| v.number == n));
            let Some(target) = target else {
                self.quarantine(agent, from, judged.map(not_rolled_back))
                    .await?;
                return Ok(RollbackOutcome::NoTarget);
            };
            let activation = Activation {
                cause: ActivationCause::Remediation,
                watch: false,
                judged: judged.clone(),
                edit: None,
            };
            match self
                .activate_existing(
                    target,
                    &versions,
                    Before::of(&record),
                    activation,
                    Cause::Remediation,
                )
                .await
            {
                Ok(_) => {
                    tracing::warn!(agent, from, to = target.number, "rolled back automatically");
                    return Ok(RollbackOutcome::RolledBack {
                        from,
                        to: target.number,
                    });
                }
                // The target cannot load (it is marked so now): try the next one.
                Err(Error::VersionNotServable { .. }) => avoid.push(target.number),
                Err(e) => return Err(e),
            }
        }
    }

    /// Take the agent out of routing on `from`, with the verdict that caused it.
    async fn quarantine(&self, agent: &str, from: u32, judged: Option<Judgement>) -> Result<()> {
        self.store.quarantine(agent, judged.as_ref()).await?;
        self.settle(agent, judged.as_ref());
        if let Some(slot) = self.registry.get(agent) {
            slot.set_quarantined(true);
        }
        self.metrics.quarantine(agent);
        self.hooks
            .publish(Lifecycle::Quarantined {
                agent: agent.to_string(),
                version: Some(from),
            })
            .await;
        tracing::warn!(agent, from, "no version to go back to: quarantined");
        Ok(())
    }
}

/// A version condemned but kept serving (out of routing) was not rolled back: it `failed`.
fn not_rolled_back(mut judged: Judgement) -> Judgement {
    if judged.verdict == Verdict::RolledBack {
        judged.verdict = Verdict::Failed;
    }
    judged
}

#[cfg(test)]
mod tests {
    use overseer_store::{Origin, Verdict, VersionState};
    use serde_json::json;

    use super::*;

    fn version(number: u32, verdict: Option<Verdict>) -> VersionRecord {
        VersionRecord {
            agent: "a".to_string(),
            number,
            digest: format!("d{number}"),
            size: 1,
            manifest: json!({}),
            origin: Origin::Push,
            edit: None,
            parent: None,
            state: VersionState::Ready,
            stage: None,
            code: None,
            reason: None,
            checks: vec![],
            created_ms: 0,
            verdict,
            verdict_detail: None,
            calls: 0,
            failures: 0,
            source_digest: None,
            fault: None,
        }
    }

    #[test]
    fn the_newest_older_stable_version_wins() {
        let versions = vec![
            version(1, Some(Verdict::Stable)),
            version(2, Some(Verdict::Superseded)),
            version(3, None),
        ];
        assert_eq!(rollback_target(&versions, 3, &[]), Some(1));
        assert_eq!(rollback_target(&versions, 1, &[]), None, "only older ones");
    }

    #[test]
    fn without_a_stable_version_the_newest_unjudged_one_is_taken() {
        let versions = vec![version(1, None), version(2, None), version(3, None)];
        assert_eq!(rollback_target(&versions, 3, &[]), Some(2));
    }

    #[test]
    fn condemned_rejected_unservable_and_avoided_versions_are_never_chosen() {
        let mut rejected = version(2, None);
        rejected.state = VersionState::Rejected;
        let mut damaged = version(3, Some(Verdict::Stable));
        damaged.fault = Some("damaged".to_string());
        let versions = vec![
            version(1, Some(Verdict::Stable)),
            rejected,
            damaged,
            version(4, Some(Verdict::RolledBack)),
            version(5, Some(Verdict::Failed)),
            version(6, Some(Verdict::Stable)),
            version(7, None),
        ];
        assert_eq!(rollback_target(&versions, 7, &[]), Some(6));
        assert_eq!(rollback_target(&versions, 7, &[6]), Some(1));
        assert_eq!(rollback_target(&versions, 7, &[6, 1]), None);
        assert_eq!(rollback_target(&versions, 6, &[]), Some(1));
    }

    #[test]
    fn a_failing_version_never_goes_forward() {
        // v2 stable, v3 failing was rolled back to v2; now v2 fails: v3 is newer, never a
        // target, so the two cannot take turns.
        let versions = vec![
            version(1, None),
            version(2, Some(Verdict::Stable)),
            version(3, Some(Verdict::Stable)),
        ];
        assert_eq!(rollback_target(&versions, 2, &[3]), Some(1));
    }
}
