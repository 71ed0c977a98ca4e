//! The kernel assembled: the parts built in dependency order, the dispatcher of the bus and the
//! listeners wired, and the active versions loaded by [`Kernel::start`].

use std::sync::Arc;

use overseer_sandbox::Sandbox;
use overseer_store::Store;

use crate::alerts::Alerts;
use crate::audit::AuditTrail;
use crate::bus::Bus;
use crate::capability::Capabilities;
use crate::config::KernelConfig;
use crate::deploy::{self, Deployer};
use crate::error::{Error, Result};
use crate::invoke::{self, Invoker};
use crate::lifecycle::{Hooks, Listener};
use crate::locks::Locks;
use crate::logs::Logs;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::registry::Registry;
use crate::retention::Retainer;
use crate::schedule::Schedules;
use crate::supervisor::{self, Supervisor};

/// Everything the kernel is made of; reached through [`Kernel`]'s `Deref`.
pub struct Parts {
    pub config: KernelConfig,
    pub store: Store,
    pub sandbox: Sandbox,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub logs: Logs,
    /// The interfaces agents may be granted, and who serves them.
    pub capabilities: Arc<Capabilities>,
    /// Who hears of activations, rollbacks, quarantine and retirement.
    pub hooks: Arc<Hooks>,
    pub locks: Arc<Locks>,
    pub bus: Bus,
    pub alerts: Alerts,
    pub deployer: Arc<Deployer>,
    pub supervisor: Arc<Supervisor>,
    pub invoker: Arc<Invoker>,
    pub schedules: Arc<Schedules>,
    /// What each agent may write over time, and holds in kv.
    pub quotas: Arc<Quotas>,
    /// Prunes the store on a timer.
    pub retainer: Arc<Retainer>,
    /// Writes the lifecycle to the audit trail.
    pub audit: Arc<AuditTrail>,
}

/// The kernel of one daemon. Cheap to clone.
#[derive(Clone)]
pub struct Kernel {
    parts: Arc<Parts>,
}

impl std::ops::Deref for Kernel {
    type Target = Parts;

    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl Kernel {
    /// Build the kernel on `store`: the engine, the log writer, the bus and its dispatcher,
    /// the deployer, the supervisor and the schedules. Register capabilities and listeners,
    /// then call [`Kernel::start`].
    pub async fn new(config: KernelConfig, store: Store) -> Result<Kernel> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| Error::Internal(format!("{}: {e}", config.data_dir.display())))?;
        let sandbox =
            Sandbox::new(&config.sandbox()).map_err(|e| Error::Internal(e.to_string()))?;
        let registry = Arc::new(Registry::default());
        let metrics = Arc::new(Metrics::default());
        let logs = Logs::start(
            store.clone(),
            metrics.clone(),
            config.budgets.log_bytes_queued,
        );
        let quotas = Arc::new(Quotas::new(config.budgets.clone(), store.clone()));
        let retainer = Retainer::start(
            config.retention.clone(),
            store.clone(),
            metrics.clone(),
            quotas.clone(),
        );
        let capabilities = Arc::new(Capabilities::default());
        let hooks = Arc::new(Hooks::default());
        let locks = Arc::new(Locks::default());
        let (bus, deliveries) = Bus::new(store.clone());
        let alerts = Alerts::new(store.clone(), bus.clone());
        let deployer = Arc::new(Deployer::new(deploy::Parts {
            config: config.clone(),
            store: store.clone(),
            sandbox: sandbox.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            logs: logs.clone(),
            capabilities: capabilities.clone(),
            hooks: hooks.clone(),
            locks: locks.clone(),
            alerts: alerts.clone(),
            quotas: quotas.clone(),
        }));
        let supervisor = Supervisor::new(supervisor::Parts {
            registry: registry.clone(),
            store: store.clone(),
            sandbox: sandbox.clone(),
            deployer: deployer.clone(),
            alerts: alerts.clone(),
            metrics: metrics.clone(),
        });
        let invoker = Arc::new(Invoker::new(invoke::Parts {
            registry: registry.clone(),
            sandbox: sandbox.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            logs: logs.clone(),
            capabilities: capabilities.clone(),
            bus: bus.clone(),
            supervisor: supervisor.clone(),
            quotas: quotas.clone(),
        }));
        tokio::spawn(Invoker::deliver(Arc::downgrade(&invoker), deliveries));
        let schedules = Arc::new(Schedules::new(registry.clone(), Arc::downgrade(&invoker)));
        hooks.listen(&(supervisor.clone() as Arc<dyn Listener>));
        hooks.listen(&(schedules.clone() as Arc<dyn Listener>));
        let audit = Arc::new(AuditTrail::new(store.clone()));
        hooks.listen(&(audit.clone() as Arc<dyn Listener>));
        Ok(Kernel {
            parts: Arc::new(Parts {
                config,
                store,
                sandbox,
                registry,
                metrics,
                logs,
                capabilities,
                hooks,
                locks,
                bus,
                alerts,
                deployer,
                supervisor,
                invoker,
                schedules,
                quotas,
                retainer,
                audit,
            }),
        })
    }

    /// Load every agent's active version, as the store has it.
    pub async fn start(&self) -> Result<()> {
        self.deployer.load_active().await
    }

    /// Stop the schedules between calls (at shutdown).
    pub fn stop(&self) {
        self.schedules.stop();
    }
}
