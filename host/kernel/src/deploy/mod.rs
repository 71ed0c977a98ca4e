//! The deploy pipeline and everything that changes which version serves: pushing a new version
//! through its checks ([`pipeline`]), making a version active ([`activation`]), going back
//! ([`rollback`], with the one rollback policy), and loading what the store says is active at
//! start ([`startup`]). Every change is written to the store, in one transaction, before it
//! takes effect in memory, under the agent's deploy lock; then the kernel's listeners hear of
//! it.

mod activation;
mod pipeline;
mod rollback;
mod startup;

use std::sync::Arc;

use overseer_sandbox::{Prepared, Sandbox, Services};
use overseer_store::{Check, Origin, Store};
use serde::Serialize;

pub use rollback::{RollbackOutcome, rollback_target};

use crate::alerts::Alerts;
use crate::call::{Call, CallHost};
use crate::capability::{CallContext, Capabilities, Mode};
use crate::config::KernelConfig;
use crate::lifecycle::Hooks;
use crate::locks::Locks;
use crate::logs::Logs;
use crate::manifest::Manifest;
use crate::metrics::Metrics;
use crate::quota::Quotas;
use crate::registry::Registry;

/// What a push or a rollback did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Deployed {
    pub agent: String,
    pub version: u32,
    pub digest: String,
    /// False when the push matched an existing version and created nothing.
    pub created: bool,
    pub state: &'static str,
    pub checks: Vec<Check>,
    pub message: String,
    /// The interfaces of the contract the component imports, against the manifest's grants.
    pub imports: Vec<Import>,
}

/// An interface of the contract a component imports, and whether its manifest grants it. A
/// call to one that is not granted answers `denied`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Import {
    /// The interface's name: `runtime`, `kv`, `llm`, `http`, `source`, `market`, `broker`, …
    pub interface: String,
    /// The full name: `overseer:agent/llm@0.1.0`.
    pub name: String,
    pub granted: bool,
}

/// The component's imports of this package (its types aside), against `manifest`.
pub fn imports(prepared: &Prepared, manifest: &Manifest) -> Vec<Import> {
    prepared
        .imports()
        .iter()
        .filter_map(|name| {
            let interface = name.strip_prefix("overseer:agent/")?.split('@').next()?;
            (interface != "types").then(|| Import {
                interface: interface.to_string(),
                name: name.clone(),
                granted: manifest.grants(interface),
            })
        })
        .collect()
}

/// A compressed source snapshot a version was built from: its digest and bytes.
#[derive(Debug, Clone)]
pub struct SourceBlob {
    pub digest: String,
    pub bytes: Vec<u8>,
}

/// A component to put live as a new version of `agent`.
#[derive(Debug, Clone)]
pub struct Push {
    pub agent: String,
    pub bytes: Vec<u8>,
    /// `None` keeps the active version's manifest.
    pub manifest: Option<Manifest>,
    pub origin: Origin,
    /// The edit that built it: marked `live` in the same transaction as the activation.
    pub edit: Option<i64>,
    /// The source it was built from.
    pub source: Option<SourceBlob>,
}

impl Push {
    /// A component pushed over the API, with its manifest if it came with one.
    pub fn component(agent: &str, bytes: Vec<u8>, manifest: Option<Manifest>) -> Self {
        Push {
            agent: agent.to_string(),
            bytes,
            manifest,
            origin: Origin::Push,
            edit: None,
            source: None,
        }
    }
}

/// Puts versions live and takes them away.
pub struct Deployer {
    config: KernelConfig,
    store: Store,
    sandbox: Sandbox,
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    logs: Logs,
    capabilities: Arc<Capabilities>,
    hooks: Arc<Hooks>,
    locks: Arc<Locks>,
    alerts: Alerts,
    quotas: Arc<Quotas>,
}

/// What a [`Deployer`] is built from.
pub(crate) struct Parts {
    pub config: KernelConfig,
    pub store: Store,
    pub sandbox: Sandbox,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    pub logs: Logs,
    pub capabilities: Arc<Capabilities>,
    pub hooks: Arc<Hooks>,
    pub locks: Arc<Locks>,
    pub alerts: Alerts,
    pub quotas: Arc<Quotas>,
}

impl Deployer {
    pub(crate) fn new(parts: Parts) -> Self {
        Deployer {
            config: parts.config,
            store: parts.store,
            sandbox: parts.sandbox,
            registry: parts.registry,
            metrics: parts.metrics,
            logs: parts.logs,
            capabilities: parts.capabilities,
            hooks: parts.hooks,
            locks: parts.locks,
            alerts: parts.alerts,
            quotas: parts.quotas,
        }
    }

    /// Services for a shadow run of `agent` (a check, a canary replay, a health check): reads
    /// see its kv, writes and emits go nowhere, and no granted interface has effects.
    pub fn shadow(&self, agent: &str, version: Option<u32>, manifest: Arc<Manifest>) -> Services {
        let context = CallContext {
            agent: agent.to_string(),
            version,
            manifest,
            as_of_ms: None,
            trigger: None,
        };
        let call = Arc::new(Call::new(
            context.clone(),
            Mode::Shadow,
            CallHost {
                store: self.store.clone(),
                logs: self.logs.clone(),
                metrics: self.metrics.clone(),
                quotas: self.quotas.clone(),
            },
        ));
        self.capabilities
            .bind(&context, Mode::Shadow, call.clone(), call)
    }
}
