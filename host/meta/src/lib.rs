//! overseer-meta: the Overseer. Five loops over the fleet on their own intervals (health,
//! healing, performance review, code optimisation, governance), each run kept with what it
//! looked at and what it did; the telemetry they read from the kernel's recent calls; and the
//! daily report, as JSON, Markdown and an HTML page with charts.

pub mod config;
pub mod loops;
pub mod report;
pub mod telemetry;

pub use config::OverseerConfig;
pub use loops::{LOOPS, Overseer};
