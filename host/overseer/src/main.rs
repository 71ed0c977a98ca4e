//! The `overseer` binary: the daemon and the CLI that talks to it.

fn main() -> anyhow::Result<()> {
    overseer::cli::main()
}
