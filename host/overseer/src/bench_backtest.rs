//! Backtest speed: the SMA-crossover strategy of `agents/fixtures/sma-cross` driven over
//! the bundled AAPL bars in process, first with one instance reused for the whole run, then
//! with a fresh instance for every bar. Each run is sequential (one core busy); bars per
//! second count the bars the strategy handled, each one call of its `handle`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use overseer_kernel::{Manifest, Push};
use overseer_selfedit::builder;
use overseer_trading::backtest::{Control, Spec};

const PACKAGE: &str = "fixture-sma-cross";

/// Measure and print bars per second with instance reuse and with a fresh instance per
/// bar, over `rounds` runs of the whole bundled range.
pub async fn speed(agents_dir: &Path, build_dir: &Path, rounds: usize) -> anyhow::Result<()> {
    println!("building {PACKAGE} …");
    let isolation = crate::config::isolation_from_env()?;
    let (dir, target) = (agents_dir.to_path_buf(), build_dir.to_path_buf());
    let build = tokio::task::spawn_blocking(move || {
        builder::build_rust(
            &dir,
            &target,
            &[PACKAGE],
            Duration::from_secs(900),
            isolation,
        )
    })
    .await??;
    let artifact = build
        .artifacts
        .iter()
        .find(|a| a.package == PACKAGE)
        .context("the build produced no sma-cross")?;
    let (daemon, _data) = crate::bench_trading::quiet_daemon().await?;
    let mut manifest = Manifest::parse(&std::fs::read_to_string(artifact.dir.join("agent.toml"))?)?;
    manifest.name = None;
    daemon
        .kernel
        .deployer
        .push(Push::component(
            "sma",
            artifact.bytes.clone(),
            Some(manifest),
        ))
        .await?;
    let backtests = daemon
        .state
        .backtests
        .clone()
        .context("the daemon runs no backtests")?;
    let spec = |from: &str, to: &str, fresh: bool| -> anyhow::Result<Spec> {
        let mut spec: Spec = serde_json::from_value(serde_json::json!({
            "agent": "sma",
            "symbols": ["AAPL"],
            "from": from,
            "to": to,
            "config": { "fast": "10", "slow": "30" },
        }))?;
        spec.fresh_instance_per_call = fresh;
        Ok(spec)
    };
    // (label, spec, rounds)
    let runs = [
        (
            "one instance per run",
            spec("2000-03-01", "2013-03-01", false)?,
            rounds,
        ),
        (
            "a fresh instance per bar",
            spec("2012-01-01", "2012-12-31", true)?,
            1,
        ),
    ];
    println!("| backtest of the WASM strategy (sma-cross, AAPL) | bars | runs | bars/s | µs/bar |");
    println!("|---|---|---|---|---|");
    let mut rates = Vec::new();
    for (label, spec, rounds) in runs {
        let plan = backtests
            .plan(spec)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut bars = 0u64;
        let mut elapsed = Duration::ZERO;
        let mut hashes = Vec::new();
        for _ in 0..rounds {
            let control = Control::default();
            let started = Instant::now();
            let report = backtests
                .execute(&plan, &control)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            elapsed += started.elapsed();
            bars += report.bars as u64;
            hashes.push(report.trade_log_hash);
        }
        hashes.dedup();
        anyhow::ensure!(hashes.len() == 1, "the runs traded differently");
        let rate = bars as f64 / elapsed.as_secs_f64();
        rates.push(rate);
        println!(
            "| {label} | {bars} | {rounds} | {rate:.0} | {:.2} |",
            1e6 / rate
        );
    }
    if let [reused, fresh] = rates[..] {
        println!(
            "| reuse against a fresh instance per bar | | | {:.1}× | |",
            reused / fresh
        );
    }
    Ok(())
}
