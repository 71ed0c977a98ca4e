//! What the host serves an agent through the interfaces it imports: one trait per interface of
//! the contract, and [`Services`], the set given to one invocation. `runtime` and `kv` are
//! every agent's; each granted interface is [`Capability::Served`], one its manifest does not
//! grant is [`Capability::Denied`] and answers `denied` before the host is asked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::bindings::{
    Account, AgentBudget, AgentSource, AgentWindow, AsOfTime, Bar, BudgetCaps, EditOutcome, Filing,
    Finding, FleetAlert, GuestError, HttpRequest, HttpResponse, Level, LlmCompletion, LlmRequest,
    NewsItem, Order, OrderRequest, Position, Proposal, Recalled, ServedPrompt, SourceLogLine,
    Timeframe,
};

/// `runtime`: logging, the bus, metrics and the manifest's configuration.
#[async_trait]
pub trait Runtime: Send + Sync {
    /// Record a log line from the agent (its `runtime.log` calls and its stdout/stderr).
    fn log(&self, level: Level, message: &str);
    /// Publish an event on the bus.
    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError>;
    /// Record a measurement.
    fn metric(&self, name: &str, value: f64);
    /// A value from the agent's manifest `[config]` table.
    fn config(&self, key: &str) -> Option<String>;
}

/// `kv`: the agent's private store.
#[async_trait]
pub trait Kv: Send + Sync {
    async fn get(&self, key: &str) -> Result<Option<String>, GuestError>;
    async fn set(&self, key: &str, value: &str) -> Result<(), GuestError>;
    async fn delete(&self, key: &str) -> Result<(), GuestError>;
    /// The keys that start with `prefix`, sorted.
    async fn keys(&self, prefix: &str) -> Result<Vec<String>, GuestError>;
}

/// `llm`: completions from the host's model.
#[async_trait]
pub trait Llm: Send + Sync {
    /// The model `complete` would ask, if an endpoint is configured.
    fn model(&self) -> Option<String>;
    async fn complete(&self, request: LlmRequest) -> Result<LlmCompletion, GuestError>;
}

/// `http`: requests the host makes for the agent (the manifest's origins are the host's to
/// check).
#[async_trait]
pub trait Http: Send + Sync {
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, GuestError>;
}

/// `source`: other agents' source, findings, logs and edits.
#[async_trait]
pub trait Source: Send + Sync {
    /// Agents that have source, with their active versions.
    async fn agents(&self) -> Result<Vec<AgentSource>, GuestError>;
    /// The file list of an agent's active source.
    async fn files(&self, agent: &str) -> Result<AgentSource, GuestError>;
    /// One file of an agent's active source.
    async fn read(&self, agent: &str, path: &str) -> Result<String, GuestError>;
    /// The findings of the analysis of an agent's active source.
    async fn findings(&self, agent: &str) -> Result<Vec<Finding>, GuestError>;
    /// The newest lines of an agent's log.
    async fn logs(&self, agent: &str, limit: u32) -> Result<Vec<SourceLogLine>, GuestError>;
    /// Propose an edit; answers its id.
    async fn propose(&self, proposal: Proposal) -> Result<u64, GuestError>;
    /// Where an edit stands.
    async fn outcome(&self, agent: &str, id: u64) -> Result<EditOutcome, GuestError>;
}

/// `market`: data bounded by the call's as-of time.
#[async_trait]
pub trait Market: Send + Sync {
    /// The as-of time of the call.
    fn as_of(&self) -> AsOfTime;
    /// The symbols served, sorted.
    fn symbols(&self) -> Vec<String>;
    /// Bars from `from` to `to` (ISO dates, inclusive), refused past as-of.
    async fn bars(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        from: &str,
        to: &str,
    ) -> Result<Vec<Bar>, GuestError>;
    /// The newest bar known at as-of.
    async fn latest(&self, symbol: &str) -> Result<Option<Bar>, GuestError>;
    /// News about `symbol` from `since_ms` to as-of, newest first.
    async fn news(
        &self,
        symbol: &str,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<NewsItem>, GuestError>;
}

/// `broker`: the account, its positions and orders; submits pass the risk gate.
#[async_trait]
pub trait Broker: Send + Sync {
    async fn account(&self) -> Result<Account, GuestError>;
    async fn positions(&self) -> Result<Vec<Position>, GuestError>;
    async fn orders(&self, open_only: bool, limit: u32) -> Result<Vec<Order>, GuestError>;
    async fn submit(&self, request: OrderRequest) -> Result<Order, GuestError>;
    async fn cancel(&self, order_id: &str) -> Result<Order, GuestError>;
}

/// `memory`: texts recalled by relevance.
#[async_trait]
pub trait Memory: Send + Sync {
    async fn remember(
        &self,
        collection: &str,
        text: &str,
        metadata: &str,
    ) -> Result<u64, GuestError>;
    async fn recall(
        &self,
        collection: &str,
        query: &str,
        k: u32,
        filter: &str,
    ) -> Result<Vec<Recalled>, GuestError>;
    async fn forget(&self, collection: &str, id: u64) -> Result<(), GuestError>;
}

/// `budget`: the agents' LLM budgets within the host's caps.
#[async_trait]
pub trait Budget: Send + Sync {
    async fn budgets(&self) -> Result<Vec<AgentBudget>, GuestError>;
    fn caps(&self) -> BudgetCaps;
    async fn set(
        &self,
        agent: &str,
        tokens_per_day: u64,
        usd_per_day: f64,
    ) -> Result<AgentBudget, GuestError>;
}

/// `backtest`: backtests the host runs for the agent.
#[async_trait]
pub trait Backtest: Send + Sync {
    /// Run the backtest `spec` (JSON) describes to its end; its result as JSON.
    async fn run(&self, spec: &str) -> Result<String, GuestError>;
}

/// `fundamentals`: companies' filings, bounded by the call's as-of day.
#[async_trait]
pub trait Fundamentals: Send + Sync {
    /// Up to `limit` filings of `symbol` with `timeframe` (`annual`, `quarterly`) filed on or
    /// before as-of, newest first.
    async fn filings(
        &self,
        symbol: &str,
        timeframe: &str,
        limit: u32,
    ) -> Result<Vec<Filing>, GuestError>;
}

/// `fleet`: the Overseer's view of every agent, and requests its policy decides.
#[async_trait]
pub trait Fleet: Send + Sync {
    /// Every serving agent's calls over the last `window_ms`.
    async fn telemetry(&self, window_ms: u64) -> Result<Vec<AgentWindow>, GuestError>;
    /// The newest alerts, only open ones when `open_only`.
    async fn alerts(&self, open_only: bool, limit: u32) -> Result<Vec<FleetAlert>, GuestError>;
    /// Propose a decision (JSON); the decision as the policy left it (JSON).
    async fn propose(&self, decision: &str) -> Result<String, GuestError>;
    /// Check a decision (JSON) without taking it; the policy it would get.
    async fn check(&self, decision: &str) -> Result<String, GuestError>;
    /// Open an alert about `agent`; its id.
    async fn raise_alert(
        &self,
        agent: &str,
        kind: &str,
        priority: &str,
        message: &str,
    ) -> Result<i64, GuestError>;
}

/// `prompts`: the host's prompt registry.
#[async_trait]
pub trait Prompts: Send + Sync {
    /// Render prompt `name` for `unit` with `variables` (a JSON object), recording the use.
    async fn get(
        &self,
        name: &str,
        unit: &str,
        variables: &str,
    ) -> Result<ServedPrompt, GuestError>;
    /// Report the outcome of a use.
    async fn report(
        &self,
        use_id: i64,
        score: Option<f64>,
        success: Option<bool>,
    ) -> Result<(), GuestError>;
    /// Every prompt with its versions' outcomes, as JSON.
    async fn catalog(&self) -> Result<String, GuestError>;
    /// Write a candidate version; its number.
    async fn write(
        &self,
        name: &str,
        system: &str,
        template: &str,
        note: &str,
    ) -> Result<u32, GuestError>;
    /// Start an experiment (JSON); its id.
    async fn start_experiment(&self, spec: &str) -> Result<i64, GuestError>;
}

/// How an agent reaches one granted interface.
pub enum Capability<T: ?Sized> {
    /// The manifest does not grant it: every call answers `denied`.
    Denied,
    /// Granted, and served by this implementation.
    Served(Arc<T>),
}

impl<T: ?Sized> Clone for Capability<T> {
    fn clone(&self) -> Self {
        match self {
            Capability::Denied => Capability::Denied,
            Capability::Served(served) => Capability::Served(served.clone()),
        }
    }
}

impl<T: ?Sized> Capability<T> {
    /// The implementation, or the `denied` answer naming `interface`.
    pub(crate) fn get(&self, interface: &str) -> Result<&T, GuestError> {
        match self {
            Capability::Served(served) => Ok(served),
            Capability::Denied => Err(GuestError::Denied(format!(
                "the {interface} interface is not granted: add \"{interface}\" to [capabilities] grant in agent.toml"
            ))),
        }
    }
}

/// Everything one invocation of an agent can reach.
#[derive(Clone)]
pub struct Services {
    pub runtime: Arc<dyn Runtime>,
    pub kv: Arc<dyn Kv>,
    pub llm: Capability<dyn Llm>,
    pub http: Capability<dyn Http>,
    pub source: Capability<dyn Source>,
    pub market: Capability<dyn Market>,
    pub broker: Capability<dyn Broker>,
    pub memory: Capability<dyn Memory>,
    pub budget: Capability<dyn Budget>,
    pub backtest: Capability<dyn Backtest>,
    pub fundamentals: Capability<dyn Fundamentals>,
    pub fleet: Capability<dyn Fleet>,
    pub prompts: Capability<dyn Prompts>,
}

impl Services {
    /// `runtime` and `kv` only; every other interface denied.
    pub fn new(runtime: Arc<dyn Runtime>, kv: Arc<dyn Kv>) -> Self {
        Services {
            runtime,
            kv,
            llm: Capability::Denied,
            http: Capability::Denied,
            source: Capability::Denied,
            market: Capability::Denied,
            broker: Capability::Denied,
            memory: Capability::Denied,
            budget: Capability::Denied,
            backtest: Capability::Denied,
            fundamentals: Capability::Denied,
            fleet: Capability::Denied,
            prompts: Capability::Denied,
        }
    }

    /// Services kept in memory (see [`MemoryServices`]), with nothing else granted.
    pub fn memory(memory: Arc<MemoryServices>) -> Self {
        Services::new(memory.clone(), memory)
    }
}

/// `runtime` and `kv` kept in memory: a kv map, the events emitted and the log lines written.
/// For tests and benchmarks of the sandbox alone.
#[derive(Default)]
pub struct MemoryServices {
    kv: Mutex<BTreeMap<String, String>>,
    emitted: Mutex<Vec<(String, String)>>,
    logs: Mutex<Vec<(Level, String)>>,
    config: BTreeMap<String, String>,
}

impl MemoryServices {
    /// Services whose `runtime.config` answers from `config`.
    pub fn with_config(config: BTreeMap<String, String>) -> Self {
        MemoryServices {
            config,
            ..MemoryServices::default()
        }
    }

    /// The events emitted so far, as `(topic, payload)`.
    pub fn emitted(&self) -> Vec<(String, String)> {
        lock(&self.emitted).clone()
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        lock(&self.logs).clone()
    }

    /// The value under `key`, if any.
    pub fn value(&self, key: &str) -> Option<String> {
        lock(&self.kv).get(key).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Runtime for MemoryServices {
    fn log(&self, level: Level, message: &str) {
        lock(&self.logs).push((level, message.to_string()));
    }

    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError> {
        lock(&self.emitted).push((topic.to_string(), payload.to_string()));
        Ok(())
    }

    fn metric(&self, _name: &str, _value: f64) {}

    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
}

#[async_trait]
impl Kv for MemoryServices {
    async fn get(&self, key: &str) -> Result<Option<String>, GuestError> {
        Ok(lock(&self.kv).get(key).cloned())
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        lock(&self.kv).insert(key.to_string(), value.to_string());
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), GuestError> {
        lock(&self.kv).remove(key);
        Ok(())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        Ok(lock(&self.kv)
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}
