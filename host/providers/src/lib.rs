//! overseer-providers: the outside world behind the host — an OpenAI-compatible LLM client and
//! outbound HTTP for agents, each with its limits (deadlines, retries, sizes, allowed origins).
//! Market data and brokers: Polygon and Alpaca clients over one JSON REST client with
//! retries. Nothing in this crate knows of WebAssembly or the
//! database: the kernel adapts these clients to the interfaces agents import.

pub mod alpaca;
pub mod embeddings;
mod error;
pub mod http;
pub mod llm;
pub mod polygon;
pub mod rest;
mod secret;

pub use embeddings::{Embeddings, EmbeddingsConfig};
pub use error::{Error, Result};
pub use http::{HttpRequest, HttpResponse, Outbound};
pub use llm::{Completion, Llm, LlmConfig, Message, Request};
pub use secret::Secret;

#[cfg(test)]
mod remote_tests;
