//! overseer-host: the daemon that runs agents as WebAssembly components. It keeps the registry
//! of versions and the active pointer of each agent, puts new versions live through the deploy
//! pipeline, drives agents from HTTP, the bus and schedules, and serves the HTTP API and CLI.

pub mod analysis;
pub mod api;
pub mod bench;
pub mod builder;
pub mod bundled;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod deploy;
pub mod drill;
pub mod edit;
pub mod error;
pub mod manifest;
pub mod metrics;
pub mod providers;
pub mod registry;
pub mod scaffold;
pub mod services;
pub mod source;
pub mod state;
pub mod store;
pub mod supervisor;

pub use config::HostConfig;
pub use error::{Error, Result};
pub use state::Host;
