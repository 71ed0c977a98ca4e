//! The `overseer` binary: the daemon and the CLI that talks to it.

use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = overseer_host::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OVERSEER_LOG")
                .unwrap_or_else(|_| "overseer_host=info,overseer_sandbox=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(overseer_host::cli::run(cli))
}
