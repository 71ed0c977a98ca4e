//! The host side of the WIT contract: the one `bindgen!` of the sandbox, kept private, with only
//! what callers need re-exported.

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "agent",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

pub use generated::overseer::agent::broker::{
    AccountInfo as Account, Amount, Order, OrderRequest, OrderType, Position, Side, TimeInForce,
};
pub use generated::overseer::agent::budget::{AgentBudget, BudgetCaps};
pub use generated::overseer::agent::fleet::{AgentWindow, Alert as FleetAlert};
pub use generated::overseer::agent::fundamentals::{Filing, LineItem};
pub use generated::overseer::agent::http::{Request as HttpRequest, Response as HttpResponse};
pub use generated::overseer::agent::llm::{
    Completion as LlmCompletion, Message as LlmMessage, Request as LlmRequest, Role as LlmRole,
    Usage as LlmUsage,
};
pub use generated::overseer::agent::market::{AsOfTime, Bar, NewsItem, Timeframe};
pub use generated::overseer::agent::memory::Recalled;
pub use generated::overseer::agent::prompts::Served as ServedPrompt;
pub use generated::overseer::agent::source::{
    AgentSource, Change as SourceChange, EditOutcome, File as SourceFile, Finding,
    LogLine as SourceLogLine, Proposal,
};
pub use generated::overseer::agent::types::{Error as GuestError, Event, Health, Info, Level};
pub(crate) use generated::overseer::agent::{
    backtest, broker, budget, fleet, fundamentals, http, kv, llm, market, memory, prompts, runtime,
    source, types,
};
pub(crate) use generated::{Agent, AgentPre};

impl GuestError {
    /// The stable code of this error, as the API reports it.
    pub fn code(&self) -> &'static str {
        match self {
            GuestError::InvalidInput(_) => "invalid_input",
            GuestError::Denied(_) => "denied",
            GuestError::Unavailable(_) => "unavailable",
            GuestError::Failed(_) => "failed",
        }
    }

    /// The message the agent or the host attached.
    pub fn message(&self) -> &str {
        match self {
            GuestError::InvalidInput(m)
            | GuestError::Denied(m)
            | GuestError::Unavailable(m)
            | GuestError::Failed(m) => m,
        }
    }
}

impl Level {
    /// The lower-case name of the level, as stored and shown.
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl LlmRole {
    /// The role's name in the OpenAI chat format.
    pub fn as_str(&self) -> &'static str {
        match self {
            LlmRole::System => "system",
            LlmRole::User => "user",
            LlmRole::Assistant => "assistant",
        }
    }
}
