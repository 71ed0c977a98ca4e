//! The sandbox's error type: why a component was refused, and how an invocation failed.

use crate::bindings::GuestError;

/// Why a component cannot become a version of an agent.
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly binary")]
    NotWasm,
    /// A core module: agents must be components.
    #[error(
        "a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    NotComponent,
    /// The component does not parse, validate or compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// The component imports something the host does not provide.
    #[error("imports an interface the host does not provide: {0}")]
    UnknownImport(String),
    /// The component does not export the `agent` world with the right types.
    #[error("does not export the overseer:agent world: {0}")]
    WrongWorld(String),
}

impl Rejection {
    /// The stable code the API reports.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotWasm => "not_wasm",
            Rejection::NotComponent => "not_a_component",
            Rejection::Invalid(_) => "invalid_component",
            Rejection::UnknownImport(_) => "unknown_import",
            Rejection::WrongWorld(_) => "wrong_world",
        }
    }
}

/// How one invocation of a guest ended when it did not return normally.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Fault {
    /// The wall-clock deadline passed.
    #[error("timed out after {0} ms")]
    Timeout(u64),
    /// The invocation burned all of its fuel.
    #[error("fuel exhausted ({0} units)")]
    FuelExhausted(u64),
    /// The guest tried to grow its memory past its limit.
    #[error("memory limit of {0} bytes exceeded")]
    MemoryExceeded(usize),
    /// The guest trapped: a panic, an `unreachable`, an out-of-bounds access.
    #[error("trap: {0}")]
    Trap(String),
    /// The answer of `handle` was larger than the host hands back.
    #[error("answer of {bytes} bytes is over the limit of {limit}")]
    AnswerTooLarge { bytes: usize, limit: usize },
    /// The host's instance pool or its guest call slots are full; the call was not started.
    #[error("no instance slot free: {0}")]
    Capacity(String),
}

impl Fault {
    /// The stable code the API reports.
    pub fn code(&self) -> &'static str {
        match self {
            Fault::Timeout(_) => "timeout",
            Fault::FuelExhausted(_) => "fuel_exhausted",
            Fault::MemoryExceeded(_) => "memory_exceeded",
            Fault::Trap(_) => "trap",
            Fault::AnswerTooLarge { .. } => "answer_too_large",
            Fault::Capacity(_) => "overloaded",
        }
    }
}

/// Everything that can go wrong in the sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The component was refused.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The guest faulted.
    #[error(transparent)]
    Fault(#[from] Fault),
    /// The guest returned an error from an export that can return one.
    #[error("agent error: {0}")]
    Guest(GuestError),
    /// The engine could not be configured or the cache could not be written.
    #[error("sandbox: {0}")]
    Internal(String),
}

/// The sandbox's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn internal(e: impl std::fmt::Display) -> Error {
    Error::Internal(e.to_string())
}
