//! overseer-sandbox runs agents as WebAssembly components: a wasmtime engine with the pooling
//! allocator, per-invocation fuel, memory and wall-clock limits, WASI p2 locked down, component
//! validation, and an on-disk cache of compiled components. It knows nothing of HTTP or
//! databases: each invocation is given the [`Services`] that serve its imports.

mod bindings;
mod cache;
mod engine;
mod error;
mod limits;
mod linker;
mod reuse;
mod services;
mod session;
mod stdio;
mod validate;

pub use bindings::{
    Account, AgentBudget, AgentSource, AgentWindow, Amount, AsOfTime, Bar, BudgetCaps, EditOutcome,
    Event, Filing, Finding, FleetAlert, GuestError, Health, HttpRequest, HttpResponse, Info, Level,
    LineItem, LlmCompletion, LlmMessage, LlmRequest, LlmRole, LlmUsage, NewsItem, Order,
    OrderRequest, OrderType, Position, Proposal, Recalled, ServedPrompt, Side, SourceChange,
    SourceFile, SourceLogLine, TimeInForce, Timeframe,
};
pub use cache::{CacheKey, CacheStats};
pub use engine::{
    DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MAX_CONCURRENT_CALLS, DEFAULT_STDIO_BYTES, EPOCH_TICK,
    Outcome, Prepared, Sandbox, SandboxConfig, digest,
};
pub use error::{Error, Fault, Rejection, Result};
pub use limits::{DEFAULT_FUEL, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, Limits};
pub use linker::{
    MAX_FILINGS, MAX_FLEET_WINDOW_MS, MAX_KV_KEY_BYTES, MAX_PROMPT_BYTES, MAX_VALUE_BYTES, now_ms,
};
pub use reuse::{Instances, Kept, ReusePolicy};
pub use services::{
    Backtest, Broker, Budget, Capability, Fleet, Fundamentals, Http, Kv, Llm, Market, Memory,
    MemoryServices, Prompts, Runtime, Services, Source,
};
pub use session::{Replay, Session};
