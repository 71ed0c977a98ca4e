//! overseer-kernel: runs agents and keeps them healthy. It owns the registry of live versions
//! and the gates in front of them, the deploy pipeline (validate, compile, check, canary,
//! persist, swap) with the one rollback policy, invocation and the bus, schedules, and the
//! supervisor (watch windows, failure intensity, health loops, remediation, alerts).
//!
//! The kernel names no edit, trading or meta code. Work that follows a swap hangs on the
//! [`lifecycle`] events it publishes; the interfaces agents may be granted are registered per
//! interface with a real and a shadow implementation ([`capability`]); everything persistent
//! goes through the store's traits.
//!
//! Modules depend one way: `name`, `config`, `manifest`, `metrics`, `gate`, `window`, `locks`,
//! `logs`, `lifecycle` → `quota`, `retention`, `registry` → `capability`, `call`, `bus` →
//! `alerts` → `deploy` → `supervisor` → `invoke` → `schedule` → `kernel`.

pub mod alerts;
pub mod audit;
pub mod bus;
mod call;
pub mod capability;
pub mod config;
pub mod deploy;
mod error;
pub mod gate;
pub mod invoke;
mod kernel;
pub mod lifecycle;
pub mod locks;
pub mod logs;
pub mod manifest;
pub mod metrics;
mod name;
pub mod prompt;
pub mod quota;
pub mod registry;
pub mod retention;
pub mod schedule;
pub mod supervisor;
pub mod telemetry;
pub mod window;

pub use call::{HOST_TOPICS, check_topic};
pub use config::KernelConfig;
pub use deploy::{Deployed, Import, Push, RollbackOutcome, SourceBlob};
pub use error::{Error, Result};
pub use invoke::{INVOCATION_FAILED, Invoked};
pub use kernel::{Kernel, Parts};
pub use lifecycle::{Cause, Lifecycle, Listener};
pub use manifest::Manifest;
pub use name::{RESERVED_NAMES, check_name};
