//! The daemon's shared state ([`Host`]) and the paths every trigger takes through it:
//! invoking an agent, publishing on the bus, firing schedules, writing agent logs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use overseer_sandbox::{Event, Sandbox};
use tokio::sync::mpsc;

use crate::config::HostConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::providers::http::Outbound;
use crate::providers::llm::Llm;
use crate::registry::{Registry, Version};
use crate::services::AgentServices;
use crate::store::{LogLine, Store, now_ms};

/// Log lines that may wait for the writer before new ones are dropped (and counted).
const LOG_BUFFER: usize = 16_384;

/// Log lines written to the store in one transaction.
const LOG_BATCH: usize = 512;

/// Everything the daemon shares between requests and background tasks.
pub struct Host {
    pub config: HostConfig,
    pub store: Store,
    pub sandbox: Sandbox,
    pub registry: Registry,
    pub metrics: Metrics,
    /// The LLM served to agents granted `llm`.
    pub llm: Llm,
    /// Outbound HTTP for agents granted `http`.
    pub http: Outbound,
    /// The bearer token that mutations must present.
    pub token: String,
    logs: mpsc::Sender<LogLine>,
    /// Host resources, refreshed when asked for.
    pub system: Mutex<sysinfo::System>,
    deploy_locks: Locks,
    edit_locks: Locks,
}

/// The answer of a successful invocation.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub version: u32,
    pub output: String,
    pub elapsed: Duration,
    pub fuel_used: u64,
}

impl Host {
    /// Open the store, start the sandbox and the log writer. Active versions are loaded by
    /// [`crate::deploy::load_active`].
    pub async fn open(config: HostConfig, token: String) -> Result<Arc<Host>> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::Internal(format!("{}: {e}", config.data_dir.display())))?;
        let store = Store::open(&config.database_path()).await?;
        let sandbox =
            Sandbox::new(&config.sandbox()).map_err(|e| Error::Internal(e.to_string()))?;
        let (logs, receiver) = mpsc::channel(LOG_BUFFER);
        tokio::spawn(write_logs(store.clone(), receiver));
        let llm = Llm::new(&config.llm).map_err(|e| Error::Internal(e.to_string()))?;
        let http = Outbound::new().map_err(Error::Internal)?;
        Ok(Arc::new(Host {
            config,
            store,
            sandbox,
            registry: Registry::default(),
            metrics: Metrics::default(),
            llm,
            http,
            token,
            logs,
            system: Mutex::new(sysinfo::System::new()),
            deploy_locks: Mutex::new(HashMap::new()),
            edit_locks: Mutex::new(HashMap::new()),
        }))
    }

    /// The lock that serialises deploys, rollbacks and retirement of one agent.
    pub async fn deploy_lock(&self, agent: &str) -> tokio::sync::OwnedMutexGuard<()> {
        lock_of(&self.deploy_locks, agent).await
    }

    /// The lock that runs one edit (or bundled build) of an agent's source at a time; held
    /// across the build, so it is separate from the deploy lock.
    pub async fn edit_lock(&self, agent: &str) -> tokio::sync::OwnedMutexGuard<()> {
        lock_of(&self.edit_locks, agent).await
    }

    /// Queue a line for the agent's log. Dropped, and counted, if the writer is far behind.
    pub fn log(&self, line: LogLine) {
        if self.logs.try_send(line).is_err() {
            self.metrics.log_dropped();
        }
    }

    /// Run the active version of `agent` on `event`.
    pub async fn invoke(self: &Arc<Self>, agent: &str, event: Event) -> Result<Invoked> {
        let Some(slot) = self.registry.get(agent) else {
            return Err(match self.store.agent(agent).await? {
                Some(_) => Error::NoActiveVersion(agent.to_string()),
                None => Error::AgentNotFound(agent.to_string()),
            });
        };
        if slot.quarantined.load(std::sync::atomic::Ordering::Acquire) {
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
        let result = self.run(version.clone(), event.clone()).await;
        let failed = match &result {
            Ok(_) => false,
            // The caller's mistake or a missing grant says nothing about the version.
            Err(Error::Guest { error, .. }) => !matches!(
                error,
                overseer_sandbox::GuestError::InvalidInput(_)
                    | overseer_sandbox::GuestError::Denied(_)
            ),
            Err(Error::Fault { fault, .. }) => {
                !matches!(fault, overseer_sandbox::Fault::Capacity(_))
            }
            Err(_) => false,
        };
        self.observe(&slot, &version, event, failed);
        result
    }

    /// Run one version on `event`, recording metrics and logging a failure.
    pub async fn run(self: &Arc<Self>, version: Arc<Version>, event: Event) -> Result<Invoked> {
        let services = Arc::new(AgentServices::new(self.clone(), version.clone()));
        let started = Instant::now();
        let result = self
            .sandbox
            .handle(&version.prepared, &version.resolved.limits, services, event)
            .await;
        let seconds = started.elapsed().as_secs_f64();
        let agent = version.agent.as_str();
        match result {
            Ok(outcome) => {
                self.metrics
                    .invocation(agent, "ok", seconds, outcome.fuel_used);
                self.metrics.peak_memory(agent, outcome.peak_memory);
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
                self.log(LogLine {
                    agent: agent.to_string(),
                    version: Some(version.number),
                    level: if matches!(error, Error::Guest { .. }) {
                        "warn"
                    } else {
                        "error"
                    },
                    message: format!("invocation failed: {}", error.code())
                        + &format!(" ({error})"),
                    at_ms: now_ms(),
                });
                Err(error)
            }
        }
    }

    /// Persist `event` in the event log, then deliver it to every agent whose active manifest
    /// subscribes to its topic (except its source). Delivery runs in the background.
    pub async fn publish(self: &Arc<Self>, event: Event) -> Result<()> {
        self.store.insert_event(&event).await?;
        for slot in self.registry.slots() {
            if slot.name == event.source {
                continue;
            }
            let Some(version) = slot.active() else {
                continue;
            };
            if !version.manifest.subscribes_to(&event.topic) {
                continue;
            }
            let host = self.clone();
            let event = event.clone();
            let agent = slot.name.clone();
            tokio::spawn(async move {
                if let Err(e) = host.invoke(&agent, event).await {
                    tracing::debug!(agent, error = %e, "delivery failed");
                }
            });
        }
        Ok(())
    }

    /// Start (or replace) the interval schedule of the version now active.
    pub fn reschedule(self: &Arc<Self>, version: &Version) {
        let Some(slot) = self.registry.get(&version.agent) else {
            return;
        };
        let Some(every) = version.resolved.every else {
            slot.set_schedule(None);
            return;
        };
        let host: Weak<Host> = Arc::downgrade(self);
        let agent = version.agent.clone();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                ticks.tick().await;
                let Some(host) = host.upgrade() else {
                    return;
                };
                let event = Event {
                    id: uuid::Uuid::new_v4().to_string(),
                    topic: "schedule".to_string(),
                    payload: format!("{{\"every_ms\":{}}}", every.as_millis()),
                    source: "schedule".to_string(),
                    at_ms: now_ms(),
                };
                if let Err(e) = host.invoke(&agent, event).await {
                    tracing::debug!(agent, error = %e, "scheduled run failed");
                }
            }
        });
        slot.set_schedule(Some(task));
    }
}

async fn write_logs(store: Store, mut receiver: mpsc::Receiver<LogLine>) {
    let mut batch = Vec::with_capacity(LOG_BATCH);
    while receiver.recv_many(&mut batch, LOG_BATCH).await > 0 {
        if let Err(e) = store.insert_logs(&batch).await {
            tracing::warn!(error = %e, lines = batch.len(), "could not write agent logs");
        }
        batch.clear();
    }
}

type Locks = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

async fn lock_of(locks: &Locks, agent: &str) -> tokio::sync::OwnedMutexGuard<()> {
    let lock = locks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(agent.to_string())
        .or_default()
        .clone();
    lock.lock_owned().await
}
