//! The `overseer` program as a binary of this crate, so tests can run the daemon as a separate
//! process and kill it (the crash-safety loop).

fn main() -> anyhow::Result<()> {
    overseer::cli::main()
}
