//! Invocation: admission through the agent's gate, one run of the active version in a fresh
//! instance (or a kept one, for a manifest that asks for reuse), the call's kv writes and
//! events committed when it ends with an answer, the outcome handed to the supervisor; and
//! delivery of bus events to their subscribers.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use overseer_sandbox::{Event, Fault, GuestError, Sandbox};
use overseer_store::{LogLine, Store, now_ms};
use tokio::sync::mpsc;

use crate::bus::{Bus, Delivery, delivery};
use crate::call::{Call, CallHost};
use crate::capability::{CallContext, Capabilities, Mode, Trigger};
use crate::error::{Error, Result};
use crate::logs::Logs;
use crate::telemetry::CallSample;

/// How the host's log line of a failed call begins: `invocation failed: CODE (MESSAGE)`.
pub const INVOCATION_FAILED: &str = "invocation failed";
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::registry::{Registry, Version};
use crate::supervisor::Supervisor;

/// The answer of a successful invocation.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub version: u32,
    pub output: String,
    pub elapsed: Duration,
    pub fuel_used: u64,
}

/// What an invoker is built from.
pub(crate) struct Parts {
    pub registry: Arc<Registry>,
    pub sandbox: Sandbox,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub logs: Logs,
    pub capabilities: Arc<Capabilities>,
    pub bus: Bus,
    pub supervisor: Arc<Supervisor>,
    pub quotas: Arc<Quotas>,
}

/// Runs agents.
pub struct Invoker {
    registry: Arc<Registry>,
    sandbox: Sandbox,
    store: Store,
    metrics: Arc<Metrics>,
    logs: Logs,
    capabilities: Arc<Capabilities>,
    bus: Bus,
    supervisor: Arc<Supervisor>,
    quotas: Arc<Quotas>,
}

impl Invoker {
    pub(crate) fn new(parts: Parts) -> Self {
        Invoker {
            registry: parts.registry,
            sandbox: parts.sandbox,
            store: parts.store,
            metrics: parts.metrics,
            logs: parts.logs,
            capabilities: parts.capabilities,
            bus: parts.bus,
            supervisor: parts.supervisor,
            quotas: parts.quotas,
        }
    }

    /// Run the active version of `agent` on `event`, as of the market clock.
    pub async fn invoke(&self, agent: &str, event: Event) -> Result<Invoked> {
        self.invoke_as_of(agent, event, None).await
    }

    /// Run the active version of `agent` on `event`, whose market time is `as_of_ms` (see
    /// [`CallContext::as_of_ms`]).
    pub async fn invoke_as_of(
        &self,
        agent: &str,
        event: Event,
        as_of_ms: Option<u64>,
    ) -> Result<Invoked> {
        self.invoke_delivered(agent, event, as_of_ms, None).await
    }

    /// [`Invoker::invoke_as_of`] for an event emitted by `source_version` of its source.
    async fn invoke_delivered(
        &self,
        agent: &str,
        event: Event,
        as_of_ms: Option<u64>,
        source_version: Option<u32>,
    ) -> Result<Invoked> {
        let Some(slot) = self.registry.get(agent) else {
            return Err(self.not_serving(agent).await);
        };
        if slot.quarantined() {
            return Err(Error::Quarantined(agent.to_string()));
        }
        let gate = slot.gate();
        let Some(_permit) = gate.enter().await else {
            self.metrics.invocation(agent, "overloaded", 0.0, 0);
            return Err(Error::Overloaded(agent.to_string()));
        };
        // Taken after admission: the call starts, and finishes, on this version.
        let version = slot
            .active()
            .ok_or_else(|| Error::NoActiveVersion(agent.to_string()))?;
        let result = self
            .run(version.clone(), event.clone(), as_of_ms, source_version)
            .await;
        let failed = match &result {
            Ok(_) => false,
            // The caller's mistake or a missing grant says nothing about the version.
            Err(Error::Guest { error, .. }) => {
                !matches!(error, GuestError::InvalidInput(_) | GuestError::Denied(_))
            }
            // A full instance pool is the host's, not the version's.
            Err(Error::Fault { fault, .. }) => !matches!(fault, Fault::Capacity(_)),
            Err(_) => false,
        };
        // Only events answered with a value are replayed through a candidate.
        if result.is_ok() {
            slot.remember(event, self.quotas.budgets().canary_bytes);
        }
        self.supervisor.observe(&slot, &version, failed);
        result
    }

    /// Why an agent with no slot does not serve.
    async fn not_serving(&self, agent: &str) -> Error {
        let record = match self.store.agent(agent).await {
            Ok(Some(record)) => record,
            Ok(None) => return Error::AgentNotFound(agent.to_string()),
            Err(e) => return e.into(),
        };
        let Some(number) = record.active_version else {
            return Error::NoActiveVersion(agent.to_string());
        };
        match self.store.version(agent, number).await {
            Ok(Some(version)) if version.fault.is_some() => Error::VersionNotServable {
                agent: agent.to_string(),
                version: number,
                reason: version.fault.unwrap_or_default(),
            },
            Ok(_) => Error::NoActiveVersion(agent.to_string()),
            Err(e) => e.into(),
        }
    }

    /// Run one version on `event`, commit what the call wrote, record metrics and log a
    /// failure.
    pub async fn run(
        &self,
        version: Arc<Version>,
        event: Event,
        as_of_ms: Option<u64>,
        source_version: Option<u32>,
    ) -> Result<Invoked> {
        let context = CallContext {
            agent: version.agent.clone(),
            version: Some(version.number),
            manifest: version.manifest.clone(),
            as_of_ms,
            trigger: Some(Trigger {
                event: event.id.clone(),
                topic: event.topic.clone(),
                source: event.source.clone(),
                source_version,
            }),
        };
        let call = Arc::new(Call::new(
            context.clone(),
            Mode::Real,
            CallHost {
                store: self.store.clone(),
                logs: self.logs.clone(),
                metrics: self.metrics.clone(),
                quotas: self.quotas.clone(),
            },
        ));
        let services = self
            .capabilities
            .bind(&context, Mode::Real, call.clone(), call.clone());
        let started = Instant::now();
        let limits = &version.resolved.limits;
        // A kept instance goes back for the next call only once this call's effects are
        // committed.
        let mut kept = None;
        let result = match &version.instances {
            Some(instances) => self
                .sandbox
                .handle_reusing(&version.prepared, limits, services, event, instances)
                .await
                .map(|(outcome, instance)| {
                    kept = Some(instance);
                    outcome
                }),
            None => {
                self.sandbox
                    .handle(&version.prepared, limits, services, event)
                    .await
            }
        };
        let agent = version.agent.as_str();
        // An answer, or an error the agent chose to return, keeps what the call wrote; a
        // fault discards it.
        let answered = matches!(result, Ok(_) | Err(overseer_sandbox::Error::Guest(_)));
        let result = match (result, answered) {
            (result, true) => match self.commit(agent, &call).await {
                Ok(()) => {
                    if let Some(kept) = kept {
                        kept.keep();
                    }
                    result
                }
                Err(e) => Err(overseer_sandbox::Error::Internal(format!(
                    "the call's writes could not be committed: {e}"
                ))),
            },
            (result, false) => result,
        };
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(outcome) => {
                self.metrics
                    .invocation(agent, "ok", seconds, outcome.fuel_used);
                self.metrics.peak_memory(agent, outcome.peak_memory);
                self.metrics.recent().record(
                    agent,
                    CallSample {
                        at_ms: now_ms(),
                        seconds,
                        outcome: "ok",
                        fuel: outcome.fuel_used,
                        peak_memory: outcome.peak_memory as u64,
                    },
                );
                Ok(Invoked {
                    version: version.number,
                    output: outcome.value,
                    elapsed: outcome.elapsed,
                    fuel_used: outcome.fuel_used,
                })
            }
            Err(e) => {
                let error = match e {
                    overseer_sandbox::Error::Guest(error) => Error::Guest {
                        version: version.number,
                        error,
                    },
                    overseer_sandbox::Error::Fault(fault) => Error::Fault {
                        version: version.number,
                        fault,
                    },
                    other => Error::Internal(other.to_string()),
                };
                self.metrics.invocation(agent, error.code(), seconds, 0);
                self.metrics.recent().record(
                    agent,
                    CallSample {
                        at_ms: now_ms(),
                        seconds,
                        outcome: error.code(),
                        fuel: 0,
                        peak_memory: 0,
                    },
                );
                self.logs.write_host(LogLine {
                    agent: agent.to_string(),
                    version: Some(version.number),
                    level: if matches!(error, Error::Guest { .. }) {
                        "warn"
                    } else {
                        "error"
                    },
                    message: format!("{INVOCATION_FAILED}: {} ({error})", error.code()),
                    at_ms: now_ms(),
                });
                Err(error)
            }
        }
    }

    /// Write a finished call's kv writes and events in one transaction, then deliver the
    /// events.
    async fn commit(&self, agent: &str, call: &Call) -> Result<()> {
        let effects = call.effects();
        if effects.writes.is_empty() && effects.events.is_empty() {
            return Ok(());
        }
        self.store
            .kv_commit(agent, &effects.writes, &effects.events)
            .await?;
        self.quotas.kv_committed(agent, effects.kv);
        let version = call.context().version;
        self.bus.dispatch(
            effects
                .events
                .into_iter()
                .map(|record| delivery(record, version)),
        );
        Ok(())
    }

    /// Deliver every event the bus hands over to each agent whose active manifest subscribes
    /// to its topic (not to its source), each delivery on a task of its own. Runs until the
    /// invoker is gone.
    pub(crate) async fn deliver(
        this: Weak<Invoker>,
        mut deliveries: mpsc::UnboundedReceiver<Delivery>,
    ) {
        while let Some(Delivery {
            event,
            as_of_ms,
            source_version,
        }) = deliveries.recv().await
        {
            let Some(invoker) = this.upgrade() else {
                return;
            };
            for slot in invoker.registry.slots() {
                if slot.name == event.source {
                    continue;
                }
                let Some(version) = slot.active() else {
                    continue;
                };
                if !version.manifest.subscribes_to(&event.topic) {
                    continue;
                }
                let invoker = invoker.clone();
                let event = event.clone();
                let agent = slot.name.clone();
                tokio::spawn(async move {
                    let delivered = invoker
                        .invoke_delivered(&agent, event, as_of_ms, source_version)
                        .await;
                    if let Err(e) = delivered {
                        tracing::debug!(agent, error = %e, "delivery failed");
                    }
                });
            }
        }
    }
}
