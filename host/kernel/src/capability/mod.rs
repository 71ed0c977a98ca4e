//! Capabilities: the interfaces an agent may be granted beyond `runtime` and `kv`, each served
//! by a [`Provider`] registered for it, with a real implementation for calls and a shadow one
//! for deploy checks, canary replays and health checks (which must have no effects). The
//! kernel registers `llm` and `http`; other crates register theirs (`source`). An interface
//! the manifest does not grant answers `denied`; one granted but served by nobody here answers
//! `unavailable`.

pub mod budget;
mod http;
mod llm;
pub mod prompts;

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use overseer_sandbox::{
    Account, AgentBudget, AgentSource, AsOfTime, Bar, BudgetCaps, Capability, EditOutcome, Finding,
    GuestError, HttpRequest, HttpResponse, Kv, LlmCompletion, LlmRequest, NewsItem, Order,
    OrderRequest, Position, Proposal, Recalled, Runtime, Services, SourceLogLine, Timeframe,
};

pub use budget::{BudgetProvider, LlmBudgetConfig, LlmBudgets};
pub use http::HttpProvider;
pub use llm::LlmProvider;

use crate::manifest::Manifest;

/// Who a call is for: what an interface's implementation is given to serve one invocation.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub agent: String,
    /// The version called; `None` for a candidate not yet recorded.
    pub version: Option<u32>,
    pub manifest: Arc<Manifest>,
    /// The market time of the event being handled (milliseconds since the Unix epoch), when
    /// it has one; market answers are bounded by it, or by the market clock without it.
    pub as_of_ms: Option<u64>,
    /// The event being handled, for what the call does to be traced to it (an order to the
    /// signal that caused it).
    pub trigger: Option<Trigger>,
}

/// The event a call handles, as effects of the call record it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Trigger {
    /// The event's id.
    pub event: String,
    pub topic: String,
    /// Who published it: an agent, or a part of the host (`http`, `schedule`, `market`).
    pub source: String,
    /// The version of the agent that published it, when an agent did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_version: Option<u32>,
}

/// Serves one interface: a real implementation per call, and a shadow one that has no effects.
pub trait Provider<T: ?Sized>: Send + Sync {
    fn real(&self, call: &CallContext) -> Arc<T>;
    fn shadow(&self, call: &CallContext) -> Arc<T>;
}

/// Whether a call is real or a shadow run (check, canary, health).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Real,
    Shadow,
}

type Registered<T> = RwLock<Option<Arc<dyn Provider<T>>>>;

/// The providers of the interfaces agents may be granted.
#[derive(Default)]
pub struct Capabilities {
    llm: Registered<dyn overseer_sandbox::Llm>,
    http: Registered<dyn overseer_sandbox::Http>,
    source: Registered<dyn overseer_sandbox::Source>,
    market: Registered<dyn overseer_sandbox::Market>,
    broker: Registered<dyn overseer_sandbox::Broker>,
    memory: Registered<dyn overseer_sandbox::Memory>,
    budget: Registered<dyn overseer_sandbox::Budget>,
    backtest: Registered<dyn overseer_sandbox::Backtest>,
    fundamentals: Registered<dyn overseer_sandbox::Fundamentals>,
    fleet: Registered<dyn overseer_sandbox::Fleet>,
    prompts: Registered<dyn overseer_sandbox::Prompts>,
}

fn set<T: ?Sized>(slot: &Registered<T>, provider: Arc<dyn Provider<T>>) {
    *slot.write().unwrap_or_else(|p| p.into_inner()) = Some(provider);
}

impl Capabilities {
    /// Serve `llm` with `provider`.
    pub fn serve_llm(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Llm>>) {
        set(&self.llm, provider);
    }

    /// Serve `http` with `provider`.
    pub fn serve_http(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Http>>) {
        set(&self.http, provider);
    }

    /// Serve `source` with `provider`.
    pub fn serve_source(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Source>>) {
        set(&self.source, provider);
    }

    /// Serve `market` with `provider`.
    pub fn serve_market(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Market>>) {
        set(&self.market, provider);
    }

    /// Serve `broker` with `provider`.
    pub fn serve_broker(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Broker>>) {
        set(&self.broker, provider);
    }

    /// Serve `memory` with `provider`.
    pub fn serve_memory(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Memory>>) {
        set(&self.memory, provider);
    }

    /// Serve `budget` with `provider`.
    pub fn serve_budget(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Budget>>) {
        set(&self.budget, provider);
    }

    /// Serve `backtest` with `provider`.
    pub fn serve_backtest(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Backtest>>) {
        set(&self.backtest, provider);
    }

    /// Serve `fundamentals` with `provider`.
    pub fn serve_fundamentals(
        &self,
        provider: Arc<dyn Provider<dyn overseer_sandbox::Fundamentals>>,
    ) {
        set(&self.fundamentals, provider);
    }

    /// Serve `fleet` with `provider`.
    pub fn serve_fleet(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Fleet>>) {
        set(&self.fleet, provider);
    }

    /// Serve `prompts` with `provider`.
    pub fn serve_prompts(&self, provider: Arc<dyn Provider<dyn overseer_sandbox::Prompts>>) {
        set(&self.prompts, provider);
    }

    /// The real `llm` service for `call`, when a provider serves it: for runs outside the
    /// bus (backtests) that wrap it, still under the provider's budgets.
    pub fn llm(&self, call: &CallContext) -> Option<Arc<dyn overseer_sandbox::Llm>> {
        let provider = self.llm.read().unwrap_or_else(|p| p.into_inner()).clone();
        provider.map(|p| p.real(call))
    }

    /// The services of one invocation: `runtime` and `kv` as given, and every other interface
    /// as the manifest grants it.
    pub(crate) fn bind(
        &self,
        call: &CallContext,
        mode: Mode,
        runtime: Arc<dyn Runtime>,
        kv: Arc<dyn Kv>,
    ) -> Services {
        Services {
            runtime,
            kv,
            llm: grant(&self.llm, "llm", call, mode),
            http: grant(&self.http, "http", call, mode),
            source: grant(&self.source, "source", call, mode),
            market: grant(&self.market, "market", call, mode),
            broker: grant(&self.broker, "broker", call, mode),
            memory: grant(&self.memory, "memory", call, mode),
            budget: grant(&self.budget, "budget", call, mode),
            backtest: grant(&self.backtest, "backtest", call, mode),
            fundamentals: grant(&self.fundamentals, "fundamentals", call, mode),
            fleet: grant(&self.fleet, "fleet", call, mode),
            prompts: grant(&self.prompts, "prompts", call, mode),
        }
    }
}

fn grant<T: ?Sized>(
    slot: &Registered<T>,
    interface: &'static str,
    call: &CallContext,
    mode: Mode,
) -> Capability<T>
where
    Unserved: IntoInterface<T>,
{
    if !call.manifest.grants(interface) {
        return Capability::Denied;
    }
    let provider = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
    Capability::Served(match (provider, mode) {
        (Some(p), Mode::Real) => p.real(call),
        (Some(p), Mode::Shadow) => p.shadow(call),
        (None, _) => Unserved(interface).into_interface(),
    })
}

/// A granted interface nobody serves on this host: every call answers `unavailable`.
pub struct Unserved(&'static str);

/// `Unserved` as the trait object of each interface.
pub trait IntoInterface<T: ?Sized> {
    fn into_interface(self) -> Arc<T>;
}

impl IntoInterface<dyn overseer_sandbox::Llm> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Llm> {
        Arc::new(self)
    }
}

impl IntoInterface<dyn overseer_sandbox::Http> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Http> {
        Arc::new(self)
    }
}

impl IntoInterface<dyn overseer_sandbox::Source> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Source> {
        Arc::new(self)
    }
}

impl IntoInterface<dyn overseer_sandbox::Market> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Market> {
        Arc::new(self)
    }
}

impl IntoInterface<dyn overseer_sandbox::Broker> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Broker> {
        Arc::new(self)
    }
}

impl IntoInterface<dyn overseer_sandbox::Memory> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Memory> {
        Arc::new(self)
    }
}

impl IntoInterface<dyn overseer_sandbox::Budget> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Budget> {
        Arc::new(self)
    }
}

impl IntoInterface<dyn overseer_sandbox::Backtest> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Backtest> {
        Arc::new(self)
    }
}

impl IntoInterface<dyn overseer_sandbox::Fundamentals> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Fundamentals> {
        Arc::new(self)
    }
}

#[async_trait]
impl overseer_sandbox::Fundamentals for Unserved {
    async fn filings(
        &self,
        _symbol: &str,
        _timeframe: &str,
        _limit: u32,
    ) -> Result<Vec<overseer_sandbox::Filing>, GuestError> {
        Err(GuestError::Unavailable(
            "no provider of financial statements on this host: configure a Polygon key (OVERSEER_POLYGON_KEY)".to_string(),
        ))
    }
}

impl IntoInterface<dyn overseer_sandbox::Fleet> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Fleet> {
        Arc::new(self)
    }
}

#[async_trait]
impl overseer_sandbox::Fleet for Unserved {
    async fn telemetry(
        &self,
        _window_ms: u64,
    ) -> Result<Vec<overseer_sandbox::AgentWindow>, GuestError> {
        Err(self.error())
    }

    async fn alerts(
        &self,
        _open_only: bool,
        _limit: u32,
    ) -> Result<Vec<overseer_sandbox::FleetAlert>, GuestError> {
        Err(self.error())
    }

    async fn propose(&self, _decision: &str) -> Result<String, GuestError> {
        Err(self.error())
    }

    async fn check(&self, _decision: &str) -> Result<String, GuestError> {
        Err(self.error())
    }

    async fn raise_alert(
        &self,
        _agent: &str,
        _kind: &str,
        _priority: &str,
        _message: &str,
    ) -> Result<i64, GuestError> {
        Err(self.error())
    }
}

impl IntoInterface<dyn overseer_sandbox::Prompts> for Unserved {
    fn into_interface(self) -> Arc<dyn overseer_sandbox::Prompts> {
        Arc::new(self)
    }
}

#[async_trait]
impl overseer_sandbox::Prompts for Unserved {
    async fn get(
        &self,
        _name: &str,
        _unit: &str,
        _variables: &str,
    ) -> Result<overseer_sandbox::ServedPrompt, GuestError> {
        Err(self.error())
    }

    async fn report(
        &self,
        _use_id: i64,
        _score: Option<f64>,
        _success: Option<bool>,
    ) -> Result<(), GuestError> {
        Err(self.error())
    }

    async fn catalog(&self) -> Result<String, GuestError> {
        Err(self.error())
    }

    async fn write(
        &self,
        _name: &str,
        _system: &str,
        _template: &str,
        _note: &str,
    ) -> Result<u32, GuestError> {
        Err(self.error())
    }

    async fn start_experiment(&self, _spec: &str) -> Result<i64, GuestError> {
        Err(self.error())
    }
}

#[async_trait]
impl overseer_sandbox::Backtest for Unserved {
    async fn run(&self, _spec: &str) -> Result<String, GuestError> {
        Err(self.error())
    }
}

impl Unserved {
    fn error(&self) -> GuestError {
        GuestError::Unavailable(format!("the {} interface is not served here", self.0))
    }
}

#[async_trait]
impl overseer_sandbox::Llm for Unserved {
    fn model(&self) -> Option<String> {
        None
    }

    async fn complete(&self, _request: LlmRequest) -> Result<LlmCompletion, GuestError> {
        Err(self.error())
    }
}

#[async_trait]
impl overseer_sandbox::Http for Unserved {
    async fn fetch(&self, _request: HttpRequest) -> Result<HttpResponse, GuestError> {
        Err(self.error())
    }
}

#[async_trait]
impl overseer_sandbox::Source for Unserved {
    async fn agents(&self) -> Result<Vec<AgentSource>, GuestError> {
        Err(self.error())
    }

    async fn files(&self, _agent: &str) -> Result<AgentSource, GuestError> {
        Err(self.error())
    }

    async fn read(&self, _agent: &str, _path: &str) -> Result<String, GuestError> {
        Err(self.error())
    }

    async fn findings(&self, _agent: &str) -> Result<Vec<Finding>, GuestError> {
        Err(self.error())
    }

    async fn logs(&self, _agent: &str, _limit: u32) -> Result<Vec<SourceLogLine>, GuestError> {
        Err(self.error())
    }

    async fn propose(&self, _proposal: Proposal) -> Result<u64, GuestError> {
        Err(self.error())
    }

    async fn outcome(&self, _agent: &str, _id: u64) -> Result<EditOutcome, GuestError> {
        Err(self.error())
    }
}

#[async_trait]
impl overseer_sandbox::Market for Unserved {
    fn as_of(&self) -> AsOfTime {
        AsOfTime {
            at_ms: overseer_store::now_ms(),
            date: String::new(),
        }
    }

    fn symbols(&self) -> Vec<String> {
        Vec::new()
    }

    async fn bars(
        &self,
        _symbol: &str,
        _timeframe: Timeframe,
        _from: &str,
        _to: &str,
    ) -> Result<Vec<Bar>, GuestError> {
        Err(self.error())
    }

    async fn latest(&self, _symbol: &str) -> Result<Option<Bar>, GuestError> {
        Err(self.error())
    }

    async fn news(
        &self,
        _symbol: &str,
        _since_ms: u64,
        _limit: u32,
    ) -> Result<Vec<NewsItem>, GuestError> {
        Err(self.error())
    }
}

#[async_trait]
impl overseer_sandbox::Broker for Unserved {
    async fn account(&self) -> Result<Account, GuestError> {
        Err(self.error())
    }

    async fn positions(&self) -> Result<Vec<Position>, GuestError> {
        Err(self.error())
    }

    async fn orders(&self, _open_only: bool, _limit: u32) -> Result<Vec<Order>, GuestError> {
        Err(self.error())
    }

    async fn submit(&self, _request: OrderRequest) -> Result<Order, GuestError> {
        Err(self.error())
    }

    async fn cancel(&self, _order_id: &str) -> Result<Order, GuestError> {
        Err(self.error())
    }
}

#[async_trait]
impl overseer_sandbox::Memory for Unserved {
    async fn remember(
        &self,
        _collection: &str,
        _text: &str,
        _metadata: &str,
    ) -> Result<u64, GuestError> {
        Err(self.error())
    }

    async fn recall(
        &self,
        _collection: &str,
        _query: &str,
        _k: u32,
        _filter: &str,
    ) -> Result<Vec<Recalled>, GuestError> {
        Err(self.error())
    }

    async fn forget(&self, _collection: &str, _id: u64) -> Result<(), GuestError> {
        Err(self.error())
    }
}

#[async_trait]
impl overseer_sandbox::Budget for Unserved {
    async fn budgets(&self) -> Result<Vec<AgentBudget>, GuestError> {
        Err(self.error())
    }

    fn caps(&self) -> BudgetCaps {
        BudgetCaps {
            agent_tokens_per_day: 0,
            agent_usd_per_day: 0.0,
            total_tokens_per_day: 0,
            total_usd_per_day: 0.0,
        }
    }

    async fn set(
        &self,
        _agent: &str,
        _tokens_per_day: u64,
        _usd_per_day: f64,
    ) -> Result<AgentBudget, GuestError> {
        Err(self.error())
    }
}

/// An error of a provider of the outside world, as the agent sees it.
pub(crate) fn guest_error(error: overseer_providers::Error) -> GuestError {
    match error {
        overseer_providers::Error::InvalidInput(m) => GuestError::InvalidInput(m),
        overseer_providers::Error::Denied(m) => GuestError::Denied(m),
        overseer_providers::Error::Unavailable(m) => GuestError::Unavailable(m),
        overseer_providers::Error::Failed(m) => GuestError::Failed(m),
    }
}
