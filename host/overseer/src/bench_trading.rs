//! The trading pipeline measured in process: the world monitor, the strategy and the trade
//! executor on the replayed market, the clock stepped as fast as the pipeline takes its
//! ticks. Latencies come from the event log and the orders' times (millisecond stamps).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use overseer_kernel::{Manifest, Push};
use overseer_selfedit::builder;
use overseer_store::{EventFilter, OrderFilter};

use crate::bench::summarize;
use crate::config::Config;
use crate::daemon;

const AGENTS: [&str; 3] = ["world-monitor", "strategy", "trade-executor"];

/// A daemon in process on a temporary data directory (kept while the guard lives), without
/// bundled agents, whose market clock moves only when stepped.
pub(crate) async fn quiet_daemon() -> anyhow::Result<(daemon::Daemon, tempfile::TempDir)> {
    let data = tempfile::tempdir()?;
    let mut config = Config {
        data_dir: data.path().to_path_buf(),
        token: Some(overseer_providers::Secret::new("bench")),
        bundled: false,
        ..Config::default()
    };
    // The clock is stepped by the measurement, never by its timer.
    config.trading.market_speed_ms = u64::MAX / 2;
    Ok((daemon::open(config).await?, data))
}

/// Step the market `days` trading days through the three agents and print the figures.
pub async fn pipeline(agents_dir: &Path, build_dir: &Path, days: usize) -> anyhow::Result<()> {
    println!("building the trading agents …");
    let isolation = crate::config::isolation_from_env()?;
    let (dir, target) = (agents_dir.to_path_buf(), build_dir.to_path_buf());
    let build = tokio::task::spawn_blocking(move || {
        builder::build_rust(&dir, &target, &AGENTS, Duration::from_secs(900), isolation)
    })
    .await??;
    let (daemon, _data) = quiet_daemon().await?;
    let kernel = daemon.kernel.clone();
    for agent in AGENTS {
        let artifact = build
            .artifacts
            .iter()
            .find(|a| a.package == agent)
            .with_context(|| format!("the build produced no {agent}"))?;
        let manifest = Manifest::parse(&std::fs::read_to_string(artifact.dir.join("agent.toml"))?)?;
        kernel
            .deployer
            .push(Push::component(
                agent,
                artifact.bytes.clone(),
                Some(manifest),
            ))
            .await?;
    }
    let trading = daemon.state.trading.clone().context("trading is off")?;
    let store = kernel.store.clone();
    // The newest event of `topic` after sequence number `after`, if one has come.
    let next = |topic: &'static str, after: i64| {
        let store = store.clone();
        async move {
            store
                .events(&EventFilter {
                    topic: Some(topic),
                    after,
                    limit: 1,
                    ..EventFilter::default()
                })
                .await
                .ok()
                .and_then(|events| events.first().map(|e| e.seq))
        }
    };

    // Each tick as soon as the last one's snapshot is out: the clock as fast as it goes.
    let started_ms = overseer_store::now_ms();
    let mut stepped = 0;
    let mut seen = 0;
    for _ in 0..days {
        if trading.step().await?.is_none() {
            break;
        }
        stepped += 1;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(seq) = next("market.snapshot", seen).await {
                seen = seq;
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // Then until the signals of the last ticks have become orders or refusals.
    let quiet = Instant::now() + Duration::from_secs(30);
    let mut last = (0, 0);
    loop {
        let now = (
            store
                .events(&EventFilter {
                    topic: Some("trade.signal"),
                    limit: u32::MAX,
                    ..EventFilter::default()
                })
                .await?
                .len(),
            store
                .orders(&OrderFilter {
                    limit: u32::MAX,
                    ..OrderFilter::default()
                })
                .await?
                .len(),
        );
        if now == last || Instant::now() > quiet {
            break;
        }
        last = now;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let events = store
        .events(&EventFilter {
            limit: u32::MAX,
            ..EventFilter::default()
        })
        .await?;
    let at = |topic: &str, as_of: Option<u64>| {
        events
            .iter()
            .filter(|e| e.topic == topic && e.as_of_ms == as_of)
            .map(|e| e.at_ms)
            .min()
    };
    let orders = store
        .orders(&OrderFilter {
            limit: u32::MAX,
            ..OrderFilter::default()
        })
        .await?;
    // From the first step to the last event or order, without the wait for quiet.
    let last_ms = events
        .iter()
        .map(|e| e.at_ms)
        .chain(orders.iter().map(|o| o.at_ms))
        .max()
        .unwrap_or(started_ms);
    let elapsed = Duration::from_millis(last_ms.saturating_sub(started_ms).max(1));
    let mut to_snapshot = Vec::new();
    let mut to_signal = Vec::new();
    let mut to_order = Vec::new();
    for tick in events.iter().filter(|e| e.topic == "market.tick") {
        let Some(snapshot) = at("market.snapshot", tick.as_of_ms) else {
            continue;
        };
        to_snapshot.push(Duration::from_millis(snapshot.saturating_sub(tick.at_ms)));
        if let Some(signal) = at("trade.signal", tick.as_of_ms) {
            to_signal.push(Duration::from_millis(signal.saturating_sub(tick.at_ms)));
        }
        let day = tick
            .as_of_ms
            .map(overseer_trading::as_of_day)
            .map(|d| d.to_string());
        if let Some(order) = orders
            .iter()
            .filter(|o| Some(&o.submitted) == day.as_ref())
            .map(|o| o.at_ms)
            .min()
        {
            to_order.push(Duration::from_millis(order.saturating_sub(tick.at_ms)));
        }
    }
    let (snapshot, signal, order) = (
        summarize(&mut to_snapshot),
        summarize(&mut to_signal),
        summarize(&mut to_order),
    );
    println!();
    println!("| trading pipeline, {stepped} trading days in process | figure |");
    println!("| --- | --- |");
    println!(
        "| tick → snapshot (world-monitor: a year of bars × 3 symbols, indicators, sentiment): p50 / p99 | {:.0} ms / {:.0} ms |",
        snapshot.p50 / 1000.0,
        snapshot.p99 / 1000.0
    );
    println!(
        "| tick → signal (+ strategy with memory recall), {} ticks with a signal: p50 / p99 | {:.0} ms / {:.0} ms |",
        to_signal.len(),
        signal.p50 / 1000.0,
        signal.p99 / 1000.0
    );
    println!(
        "| tick → order (+ trade-executor through the risk gate), {} ticks with an order: p50 / p99 | {:.0} ms / {:.0} ms |",
        to_order.len(),
        order.p50 / 1000.0,
        order.p99 / 1000.0
    );
    println!(
        "| clock as fast as the pipeline takes it | {:.1} ticks/s, {:.0} events/s ({} events, {} orders in {:.1} s) |",
        stepped as f64 / elapsed.as_secs_f64(),
        events.len() as f64 / elapsed.as_secs_f64(),
        events.len(),
        orders.len(),
        elapsed.as_secs_f64()
    );
    Ok(())
}
