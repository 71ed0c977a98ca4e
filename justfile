# Developer recipes. `just --list` shows them.

# Run the daemon with the bundled agents.
run:
    cargo run --release -- serve

# The whole test suite.
test:
    cargo test --workspace

# Lints as CI runs them.
lint:
    cargo clippy --workspace --all-targets -- -D warnings
    cd agents && cargo clippy --release -- -D warnings

# Format host and agent code.
fmt:
    cargo fmt --all
    cd agents && cargo fmt --all

# Build the bundled agents and fixtures into components.
agents:
    cd agents && cargo build --release

# Measure the host (compile vs cache, invoke latency, swaps) and print the figures.
bench:
    cargo run --release -- bench
