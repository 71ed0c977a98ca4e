//! Making a version active: loading a stored version (and marking one that cannot load), the
//! swap once the store says so, quarantine and its release, and retirement.

use std::sync::Arc;

use overseer_store::{Activation, VersionRecord};
use serde_json::json;

use super::Deployer;
use crate::alerts::SYSTEM_FAILURE;
use crate::error::{Error, Result, internal};
use crate::lifecycle::{Cause, Lifecycle};
use crate::manifest::Manifest;
use crate::name::check_name;
use crate::registry::{Loaded, Provenance, Version};
use crate::window::Window;

/// An agent as it stood before an activation: its active version and whether it was out of
/// routing.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Before {
    pub active: Option<u32>,
    pub quarantined: bool,
}

impl Before {
    pub fn of(record: &overseer_store::AgentRecord) -> Self {
        Before {
            active: record.active_version,
            quarantined: record.quarantined_ms.is_some(),
        }
    }
}

/// The error rate of the newest version older than `number` that its window judged stable:
/// the baseline a new window is judged against.
pub(super) fn baseline(versions: &[VersionRecord], number: u32) -> Option<f64> {
    versions
        .iter()
        .rev()
        .filter(|v| v.number < number && v.verdict == Some(overseer_store::Verdict::Stable))
        .find(|v| v.calls > 0)
        .map(|v| v.failures as f64 / v.calls as f64)
}

/// A stored manifest as the kernel reads it.
pub(super) fn manifest_of(record: &VersionRecord) -> Result<Manifest> {
    serde_json::from_value(record.manifest.clone()).map_err(|e| {
        Error::Internal(format!(
            "the stored manifest of {} v{} does not read back: {e}",
            record.agent, record.number
        ))
    })
}

impl Deployer {
    /// Compile (normally: load from the cache) a stored version. `Err` says why it cannot
    /// serve: its component is missing or damaged, or no longer compiles.
    pub(super) async fn load(&self, record: &VersionRecord) -> Result<Result<Loaded, String>> {
        let Some(bytes) = self.store.component(&record.digest).await? else {
            return Ok(Err(format!("its component {} is missing", record.digest)));
        };
        let manifest = manifest_of(record)?;
        let resolved = match manifest.resolve(&record.agent, &self.config) {
            Ok(resolved) => resolved,
            Err(e) => return Ok(Err(format!("its manifest no longer resolves: {e}"))),
        };
        let sandbox = self.sandbox.clone();
        let digest = record.digest.clone();
        let prepared = tokio::task::spawn_blocking(move || {
            // The bytes must be the ones the digest names: a compile cache keyed by digest
            // would otherwise serve damaged bytes' old translation.
            let actual = overseer_sandbox::digest(&bytes);
            if actual != digest {
                return Err(format!(
                    "its stored bytes are damaged (their sha256 is {actual})"
                ));
            }
            sandbox
                .prepare(&bytes)
                .map_err(|e| format!("it no longer compiles: {e}"))
        })
        .await
        .map_err(|e| internal("compile task", e))?;
        Ok(prepared.map(|prepared| Loaded {
            manifest,
            resolved,
            prepared,
        }))
    }

    /// [`Deployer::load`], marking a version that cannot load not servable, with its cause
    /// and a critical alert.
    pub(super) async fn load_or_mark(&self, record: &VersionRecord) -> Result<Loaded> {
        match self.load(record).await? {
            Ok(loaded) => {
                if record.fault.is_some() {
                    self.store
                        .set_fault(&record.agent, record.number, None)
                        .await?;
                }
                Ok(loaded)
            }
            Err(fault) => {
                self.mark_unservable(record, &fault).await?;
                Err(Error::VersionNotServable {
                    agent: record.agent.clone(),
                    version: record.number,
                    reason: fault,
                })
            }
        }
    }

    async fn mark_unservable(&self, record: &VersionRecord, fault: &str) -> Result<()> {
        tracing::error!(
            agent = record.agent,
            version = record.number,
            fault,
            "a stored version cannot serve"
        );
        self.store
            .set_fault(&record.agent, record.number, Some(fault))
            .await?;
        self.alerts
            .raise(
                &record.agent,
                SYSTEM_FAILURE,
                "critical",
                &format!(
                    "version {} cannot serve: {fault}; push its component again to repair it",
                    record.number
                ),
                json!({ "version": record.number, "digest": record.digest, "fault": fault }),
            )
            .await?;
        Ok(())
    }

    /// Version `number` of `agent` (the active one without a number), compiled: the active
    /// or a recently active version from memory, any other servable version loaded from the
    /// store and the compile cache. For runs outside routing, such as backtests.
    ///
    /// # Errors
    /// `agent_not_found`, `version_not_found`; `version_not_servable` for a version that
    /// cannot load.
    pub async fn version(&self, agent: &str, number: Option<u32>) -> Result<Arc<Version>> {
        check_name(agent)?;
        let record = self
            .store
            .agent(agent)
            .await?
            .ok_or_else(|| Error::AgentNotFound(agent.to_string()))?;
        let number = number
            .or(record.active_version)
            .ok_or_else(|| Error::NoActiveVersion(agent.to_string()))?;
        if let Some(active) = self
            .registry
            .get(agent)
            .and_then(|slot| slot.active())
            .filter(|active| active.number == number)
        {
            return Ok(active);
        }
        let record =
            self.store
                .version(agent, number)
                .await?
                .ok_or_else(|| Error::VersionNotFound {
                    agent: agent.to_string(),
                    version: number,
                })?;
        self.compiled(&record).await
    }

    /// A version object for `record`: the one still compiled in memory, or loaded.
    pub(super) async fn compiled(&self, record: &VersionRecord) -> Result<Arc<Version>> {
        if let Some(version) = self
            .registry
            .get(&record.agent)
            .and_then(|slot| slot.compiled(record.number))
        {
            return Ok(version);
        }
        let loaded = self.load_or_mark(record).await?;
        Ok(Arc::new(Version::new(
            &record.agent,
            record.number,
            Provenance::of(record),
            loaded,
            Window::supervised(),
        )))
    }

    /// Make an existing, servable version active: the store first, then the swap. The
    /// caller holds the agent's deploy lock. A watched activation opens a new window on it;
    /// otherwise supervision watches it from now on.
    pub(super) async fn activate_existing(
        &self,
        record: &VersionRecord,
        versions: &[VersionRecord],
        before: Before,
        activation: Activation,
        cause: Cause,
    ) -> Result<Arc<Version>> {
        let version = self.compiled(record).await?;
        self.store
            .activate(&record.agent, record.number, &activation)
            .await?;
        self.settle(&record.agent, activation.judged.as_ref());
        if activation.watch {
            version.reopen_window(baseline(versions, record.number));
        } else {
            version.supervise();
        }
        self.go_live(version.clone(), before, cause).await;
        Ok(version)
    }

    /// What the store now holds of the version being replaced, its window holds too.
    pub(super) fn settle(&self, agent: &str, judged: Option<&overseer_store::Judgement>) {
        if let Some(judged) = judged
            && let Some(leaving) = self
                .registry
                .get(agent)
                .and_then(|slot| slot.active())
                .filter(|v| v.number == judged.version)
        {
            leaving.settle(judged.verdict);
        }
    }

    /// What the window of the version serving `agent` would conclude were it replaced now
    /// (unless it is `except`), as the store records it.
    pub(super) fn replacing(
        &self,
        agent: &str,
        except: Option<u32>,
    ) -> Option<overseer_store::Judgement> {
        let serving = self.registry.get(agent).and_then(|slot| slot.active())?;
        if Some(serving.number) == except {
            return None;
        }
        let reading = serving.superseded()?;
        Some(super::pipeline::judgement(&serving, reading))
    }

    /// A person takes responsibility for `version`: supervision watches it from now on, and,
    /// when its window was still open, the store says so, so that a restart does not open it
    /// again.
    pub(super) async fn take_over(&self, version: &Version) -> Result<()> {
        if let Some(reading) = version.superseded() {
            let judgement = overseer_store::Judgement {
                version: version.number,
                verdict: overseer_store::Verdict::Inconclusive,
                detail: format!(
                    "taken over by a person inside its watch window ({})",
                    reading.detail(&version.resolved.policy)
                ),
                calls: reading.calls,
                failures: reading.failures,
            };
            self.store.judge(&version.agent, &judgement).await?;
        }
        version.supervise();
        Ok(())
    }

    /// The agent as it stands in the store, before an activation.
    pub(super) async fn before(&self, agent: &str) -> Result<Before> {
        Ok(self
            .store
            .agent(agent)
            .await?
            .map(|record| Before::of(&record))
            .unwrap_or_default())
    }

    /// Make `version` serve, now that the store says it does; tell the listeners.
    pub(super) async fn go_live(&self, version: Arc<Version>, before: Before, cause: Cause) {
        let Before {
            active: previous,
            quarantined: was_quarantined,
        } = before;
        let agent = version.agent.clone();
        let number = version.number;
        let watching = version.watching();
        let source = version.provenance.source.clone();
        let (slot, replaced) = self.registry.activate(version, self.config.keep_compiled);
        slot.set_quarantined(false);
        self.metrics.swap(&agent);
        self.hooks
            .publish(Lifecycle::Activated {
                agent: agent.clone(),
                version: number,
                previous,
                cause,
                watching,
                source,
            })
            .await;
        if matches!(cause, Cause::Rollback | Cause::Remediation)
            && let Some(from) = previous.filter(|from| *from != number)
        {
            self.metrics.rollback(&agent);
            self.hooks
                .publish(Lifecycle::RolledBack {
                    agent: agent.clone(),
                    from,
                    to: number,
                    cause,
                    edit: replaced
                        .filter(|v| v.number == from)
                        .and_then(|v| v.provenance.edit),
                })
                .await;
        }
        if was_quarantined {
            let how = match cause {
                Cause::Push => "a new version was pushed",
                Cause::Rollback => "rolled back",
                Cause::Remediation | Cause::Start => "another version serves",
            };
            self.hooks
                .publish(Lifecycle::Released {
                    agent,
                    how: how.to_string(),
                })
                .await;
        }
    }

    /// Wait until no deploy of `agent` is under way. The store is ahead of memory by at most
    /// the deploy in progress (it writes, then swaps, under the agent's deploy lock): after
    /// this, what the store says of the agent has taken effect. For readers that report a
    /// state another task wrote, such as an edit gone `live`.
    pub async fn settled(&self, agent: &str) {
        drop(self.locks.deploy(agent).await);
    }

    /// Take a serving agent out of routing on request (a decision to pause it): its calls
    /// answer `quarantined` until it is released. False when it was out already.
    ///
    /// # Errors
    /// [`Error::AgentNotFound`]; [`Error::NoActiveVersion`] for an agent with nothing to
    /// pause.
    pub async fn pause(&self, agent: &str) -> Result<bool> {
        check_name(agent)?;
        let _deploying = self.locks.deploy(agent).await;
        let slot = self
            .registry
            .get(agent)
            .ok_or_else(|| Error::AgentNotFound(agent.to_string()))?;
        let active = slot
            .active()
            .ok_or_else(|| Error::NoActiveVersion(agent.to_string()))?;
        if slot.quarantined() {
            return Ok(false);
        }
        self.store.quarantine(agent, None).await?;
        slot.set_quarantined(true);
        self.metrics.quarantine(agent);
        self.hooks
            .publish(Lifecycle::Quarantined {
                agent: agent.to_string(),
                version: Some(active.number),
            })
            .await;
        Ok(true)
    }

    /// Put a quarantined agent back into routing; supervision watches its active version from
    /// now on. False when it was not quarantined.
    pub async fn release(&self, agent: &str, how: &str) -> Result<bool> {
        check_name(agent)?;
        let _deploying = self.locks.deploy(agent).await;
        if self.store.agent(agent).await?.is_none() {
            return Err(Error::AgentNotFound(agent.to_string()));
        }
        let was = self.store.release(agent).await?;
        if let Some(slot) = self.registry.get(agent) {
            slot.set_quarantined(false);
            if let Some(active) = slot.active() {
                self.take_over(&active).await?;
            }
        }
        self.hooks
            .publish(Lifecycle::Released {
                agent: agent.to_string(),
                how: how.to_string(),
            })
            .await;
        Ok(was)
    }

    /// Take an agent out of service. A build of it under way finishes first; its history, kv
    /// and logs are kept, and a later push revives it.
    pub async fn retire(&self, agent: &str) -> Result<()> {
        check_name(agent)?;
        let _building = self.locks.build(agent).await;
        let _deploying = self.locks.deploy(agent).await;
        if self.store.agent(agent).await?.is_none() {
            return Err(Error::AgentNotFound(agent.to_string()));
        }
        self.store.retire(agent).await?;
        self.registry.remove(agent);
        self.metrics.recent().forget(agent);
        self.hooks
            .publish(Lifecycle::Retired {
                agent: agent.to_string(),
            })
            .await;
        tracing::info!(agent, "retired");
        Ok(())
    }
}
