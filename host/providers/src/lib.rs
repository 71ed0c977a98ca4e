//! overseer-providers: the outside world behind the host — an OpenAI-compatible LLM client and
//! outbound HTTP for agents, each with its limits (deadlines, retries, sizes, allowed origins).
//! Market data and brokers join them here. Nothing in this crate knows of WebAssembly or the
//! database: the kernel adapts these clients to the interfaces agents import.

mod error;
pub mod http;
pub mod llm;
mod secret;

pub use error::{Error, Result};
pub use http::{HttpRequest, HttpResponse, Outbound};
pub use llm::{Completion, Llm, LlmConfig, Message, Request};
pub use secret::Secret;
