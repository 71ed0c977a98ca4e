//! overseer: the daemon and its command line. `overseer serve` composes the store, the kernel,
//! self-editing and the API into a daemon; every other command talks to a running daemon over
//! HTTP, or builds, scaffolds, drills and measures on this machine.

pub mod backtest_cli;
pub mod bench;
pub mod bench_backtest;
pub mod bench_trading;
pub mod cli;
pub mod client;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod drill;
pub mod growth_cli;
pub mod meta_cli;
pub mod scaffold;
pub mod trading_cli;

pub use config::Config;
pub use daemon::Daemon;
