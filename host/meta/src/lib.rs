//! overseer-meta: the Overseer. Five loops over the fleet on their own intervals (health,
//! healing, performance review, code optimisation, governance), each run kept with what it
//! looked at and what it did; the telemetry they read from the kernel's recent calls; the
//! daily report, as JSON, Markdown and an HTML page with charts; and governance, typed
//! decisions taken through one policy and measured on their date; and the prompt registry with
//! its A/B experiments.

pub mod config;
pub mod experiment;
pub mod fleet;
pub mod governance;
pub mod loops;
pub mod prompts;
pub mod report;
pub mod telemetry;

pub use config::OverseerConfig;
pub use governance::{Capital, Reach};
pub use loops::{LOOPS, Overseer, RunError};
