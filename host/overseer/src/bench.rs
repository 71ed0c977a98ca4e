//! `overseer bench`: measures the host on this machine and prints the figures — compile time
//! against a cached load, invoke latency in process and over HTTP, push-to-live and swaps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;

use overseer_kernel::{Manifest, Push};
use overseer_selfedit::{EditRequest, Snapshot, builder};
use overseer_store::EditState;

use crate::config::Config;
use crate::daemon::{self, Daemon};

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Source of the agents to measure.
    #[arg(long, env = "OVERSEER_AGENTS_DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Where to build them (a warm directory makes the run quick).
    #[arg(long, default_value = ".overseer/build")]
    pub build_dir: PathBuf,
    /// Invocations per latency measurement.
    #[arg(long, default_value_t = 2000)]
    pub calls: usize,
    /// Versions pushed for the swap measurement.
    #[arg(long, default_value_t = 20)]
    pub swaps: usize,
    /// Also build a Python and a JavaScript agent and measure their compile, cached load and
    /// invoke (installs the componentizers into --tools-dir on first use).
    #[arg(long)]
    pub languages: bool,
    /// Where the componentizers are installed.
    #[arg(long, default_value = ".overseer/tools")]
    pub tools_dir: PathBuf,
    /// Trading days stepped through the trading pipeline (0: skip it).
    #[arg(long, default_value_t = 250)]
    pub trading_days: usize,
    /// Measure only the trading pipeline.
    #[arg(long)]
    pub trading_only: bool,
    /// Runs of the whole bundled range in the backtest measurement (0: skip it).
    #[arg(long, default_value_t = 5)]
    pub backtest_runs: usize,
    /// Measure only backtest speed.
    #[arg(long)]
    pub backtest_only: bool,
}

/// A copy of a component with a custom section appended: different bytes (and digest), the
/// same behaviour. Used to push many distinct versions of one agent.
pub fn tagged(component: &[u8], tag: &str) -> Vec<u8> {
    let name = b"overseer-tag";
    let mut body = leb128(name.len() as u64);
    body.extend_from_slice(name);
    body.extend_from_slice(tag.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    out.extend(leb128(body.len() as u64));
    out.extend(body);
    out
}

fn leb128(mut n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// Rollbacks timed, back and forth between two compiled versions.
const ROLLBACKS: usize = 20;

/// Bad versions rolled back by their watch window, each in an agent of its own.
const MTTR_ROUNDS: usize = 5;

/// Call a failing version of `agent` until its previous version answers again; the time from
/// the first failure, or `None` when that takes more than 10 s.
async fn recover(kernel: &overseer_kernel::Kernel, agent: &str) -> Option<Duration> {
    let failing = || overseer_sandbox::Event {
        id: uuid::Uuid::new_v4().to_string(),
        topic: "invoke".to_string(),
        payload: "{\"fail\":\"error\"}".to_string(),
        source: "bench".to_string(),
        at_ms: 0,
    };
    let mut first_failure = None;
    let limit = Instant::now() + Duration::from_secs(10);
    loop {
        match kernel.invoker.invoke(agent, failing()).await {
            Ok(answer) if answer.version == 1 => {
                return first_failure.map(|t: Instant| t.elapsed());
            }
            Ok(_) => {}
            Err(_) => {
                first_failure.get_or_insert_with(Instant::now);
            }
        }
        if Instant::now() > limit {
            return None;
        }
    }
}

/// Percentiles of a set of durations, in microseconds.
pub struct Summary {
    pub p50: f64,
    pub p99: f64,
    pub mean: f64,
    pub max: f64,
}

pub fn summarize(samples: &mut [Duration]) -> Summary {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples.get(i).map(|d| d.as_secs_f64() * 1e6).unwrap_or(0.0)
    };
    let mean =
        samples.iter().map(|d| d.as_secs_f64()).sum::<f64>() * 1e6 / samples.len().max(1) as f64;
    Summary {
        p50: at(0.5),
        p99: at(0.99),
        mean,
        max: at(1.0),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let config = Config::default();
    let agents_dir = args
        .agents_dir
        .clone()
        .or_else(|| config.agents_dir())
        .context("no agents directory: pass --agents-dir")?;
    if args.trading_only {
        return crate::bench_trading::pipeline(&agents_dir, &args.build_dir, args.trading_days)
            .await;
    }
    if args.backtest_only {
        return crate::bench_backtest::speed(
            &agents_dir,
            &args.build_dir,
            args.backtest_runs.max(1),
        )
        .await;
    }
    let build_dir = args.build_dir.clone();
    let source_dir = agents_dir.clone();
    let isolation = crate::config::isolation_from_env()?;
    println!("building echo …");
    let build = tokio::task::spawn_blocking(move || {
        builder::build_rust(
            &agents_dir,
            &build_dir,
            &["echo", "fixture-flaky"],
            Duration::from_secs(600),
            isolation,
        )
    })
    .await??;
    let component = |package: &str| {
        build
            .artifacts
            .iter()
            .find(|a| a.package == package)
            .map(|a| a.bytes.clone())
            .with_context(|| format!("the build produced no {package} component"))
    };
    let echo = component("echo")?;
    let flaky = component("fixture-flaky")?;
    println!("echo component: {} KiB", echo.len() / 1024);

    let data = tempfile::tempdir()?;
    let config = Config {
        data_dir: data.path().to_path_buf(),
        token: Some(overseer_providers::Secret::new("bench")),
        bundled: false,
        agents_dir: Some(source_dir.clone()),
        build_dir: Some(args.build_dir.clone()),
        ..Config::default()
    };

    // Compile against a cold cache, then load the same component from the cache, signed with
    // the key the daemon opened below will use.
    let key = daemon::read_or_create_key(&config.cache_key_path())?;
    let cold = overseer_sandbox::Sandbox::new(&config.kernel(key).sandbox())?;
    let started = Instant::now();
    cold.prepare(&echo)?;
    let compile = started.elapsed();
    let warm = overseer_sandbox::Sandbox::new(&config.kernel(key).sandbox())?;
    let started = Instant::now();
    warm.prepare(&echo)?;
    let cached = started.elapsed();
    drop((cold, warm));

    let daemon = daemon::open(config).await?;
    let kernel = daemon.kernel.clone();
    let started = Instant::now();
    kernel
        .deployer
        .push(Push::component("echo", echo.clone(), None))
        .await?;
    let first_push = started.elapsed();

    let event = |n: usize| overseer_sandbox::Event {
        id: n.to_string(),
        topic: "invoke".to_string(),
        payload: format!("{{\"n\":{n}}}"),
        source: "bench".to_string(),
        at_ms: 0,
    };
    for n in 0..100 {
        kernel.invoker.invoke("echo", event(n)).await?;
    }
    let mut samples = Vec::with_capacity(args.calls);
    for n in 0..args.calls {
        let started = Instant::now();
        kernel.invoker.invoke("echo", event(n)).await?;
        samples.push(started.elapsed());
    }
    let in_process = summarize(&mut samples);
    let (reused, fresh) = sessions(&kernel.sandbox, &echo, args.calls * 10).await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(overseer_api::serve(listener, daemon.state.clone(), async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let invoke_url = format!("{url}/v1/agents/echo/invoke");
    let call = |client: reqwest::Client, invoke_url: String, n: usize| async move {
        client
            .post(&invoke_url)
            .bearer_auth("bench")
            .body(format!("{{\"n\":{n}}}"))
            .send()
            .await?
            .error_for_status()
    };
    for n in 0..100 {
        call(client.clone(), invoke_url.clone(), n).await?;
    }
    let mut samples = Vec::with_capacity(args.calls);
    for n in 0..args.calls {
        let started = Instant::now();
        call(client.clone(), invoke_url.clone(), n).await?;
        samples.push(started.elapsed());
    }
    let over_http = summarize(&mut samples);

    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            let invoke_url = invoke_url.clone();
            let calls = args.calls;
            tokio::spawn(async move {
                for n in 0..calls {
                    call(client.clone(), invoke_url.clone(), t * calls + n).await?;
                }
                Ok::<_, reqwest::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let throughput = (4 * args.calls) as f64 / started.elapsed().as_secs_f64();

    let mut swaps = Vec::with_capacity(args.swaps);
    // Versions 1 (the first push) and the swaps after it.
    let swaps_made = args.swaps.max(1) as u32 + 1;
    for n in 0..args.swaps.max(1) {
        let bytes = tagged(&echo, &format!("bench-{n}"));
        let started = Instant::now();
        kernel
            .deployer
            .push(Push::component("echo", bytes, None))
            .await?;
        swaps.push(started.elapsed());
    }
    let swap = summarize(&mut swaps);
    // Back and forth between the last two versions, named: both are still compiled.
    // (Without a version, a rollback goes to the newest version judged stable, here the
    // first one, long swapped out.)
    let (last, before) = (swaps_made, swaps_made - 1);
    let mut rollbacks = Vec::with_capacity(ROLLBACKS);
    for n in 0..ROLLBACKS {
        let to = if n % 2 == 0 { before } else { last };
        let started = Instant::now();
        kernel.deployer.rollback("echo", Some(to)).await?;
        rollbacks.push(started.elapsed());
    }
    let rollback = summarize(&mut rollbacks);

    // MTTR: a version that fails every call goes live behind a 500 ms watch window; measure
    // from its first failing call to the previous version answering again, in fresh agents.
    let manifest =
        Manifest::parse("[deploy]\nwatch = \"500ms\"\nmin_calls = 3\nwatch_calls = 1000\n")?;
    let mut recoveries = Vec::with_capacity(MTTR_ROUNDS);
    for round in 0..MTTR_ROUNDS {
        let agent = format!("mttr-{round}");
        kernel
            .deployer
            .push(Push::component(
                &agent,
                echo.clone(),
                Some(manifest.clone()),
            ))
            .await?;
        for n in 0..20 {
            kernel.invoker.invoke(&agent, event(n)).await?;
        }
        kernel
            .deployer
            .push(Push::component(
                &agent,
                flaky.clone(),
                Some(manifest.clone()),
            ))
            .await?;
        if let Some(mttr) = recover(&kernel, &agent).await {
            recoveries.push(mttr);
        }
    }
    let mttr = (recoveries.len() == MTTR_ROUNDS).then(|| summarize(&mut recoveries));

    let _ = stop.send(());
    server.await??;

    // Self-editing: one-line edits of echo built from source with a warm target directory,
    // from the request to the new version live; then an asked-for rollback with the source.
    println!("editing echo from source …");
    let (edits, restore) = edit_cycle(&daemon, &source_dir).await?;

    println!();
    println!("| measure | figure |");
    println!("| --- | --- |");
    println!(
        "| compile echo ({} KiB), cold cache | {:.1} ms |",
        echo.len() / 1024,
        ms(compile)
    );
    println!(
        "| load echo from the compile cache | {:.2} ms |",
        ms(cached)
    );
    println!(
        "| cache speed-up | {:.0}× |",
        compile.as_secs_f64() / cached.as_secs_f64().max(1e-9)
    );
    println!(
        "| push to live of an already cached component (describe, health, persist, swap) | {:.1} ms |",
        ms(first_push)
    );
    println!(
        "| invoke in process, fresh instance: p50 / p99 | {:.0} µs / {:.0} µs |",
        in_process.p50, in_process.p99
    );
    println!(
        "| invoke over HTTP, one client: p50 / p99 | {:.0} µs / {:.0} µs |",
        over_http.p50, over_http.p99
    );
    println!("| invoke over HTTP, 4 clients | {throughput:.0} calls/s |");
    println!(
        "| echo's handle in the sandbox alone, one task: one instance reused (a session) / a fresh instance per call | {reused:.0} calls/s / {fresh:.0} calls/s |"
    );
    println!(
        "| push of a new version to live: p50 / p99 | {:.1} ms / {:.1} ms |",
        swap.p50 / 1000.0,
        swap.p99 / 1000.0
    );
    println!(
        "| rollback to a version compiled in memory, {ROLLBACKS} rollbacks: p50 / p99 | {:.2} ms / {:.2} ms |",
        rollback.p50 / 1000.0,
        rollback.p99 / 1000.0
    );
    println!(
        "| one-line edit of echo, request to live (warm target directory), 5 edits: p50 / p99 | {:.0} ms / {:.0} ms |",
        edits.p50 / 1000.0,
        edits.p99 / 1000.0
    );
    println!(
        "| asked-for rollback, working copy restored | {:.2} ms |",
        ms(restore)
    );
    match mttr {
        Some(mttr) => println!(
            "| MTTR: first failing call to the previous version answering (500 ms watch window), {MTTR_ROUNDS} rounds: p50 / max | {:.2} ms / {:.2} ms |",
            mttr.p50 / 1000.0,
            mttr.max / 1000.0
        ),
        None => println!("| MTTR | a bad version was not rolled back within 10 s |"),
    }
    if args.languages {
        languages(&args, &echo, compile, cached, in_process).await?;
    }
    if args.trading_days > 0 {
        crate::bench_trading::pipeline(&source_dir, &args.build_dir, args.trading_days).await?;
    }
    if args.backtest_runs > 0 {
        crate::bench_backtest::speed(&source_dir, &args.build_dir, args.backtest_runs).await?;
    }
    Ok(())
}

/// Calls per second of `component`'s `handle` in the sandbox alone, on one task: in one
/// instance kept for all `calls`, and in a fresh instance each.
async fn sessions(
    sandbox: &overseer_sandbox::Sandbox,
    component: &[u8],
    calls: usize,
) -> anyhow::Result<(f64, f64)> {
    let prepared = sandbox.prepare(component)?;
    let limits = overseer_sandbox::Limits {
        fuel: 1 << 40,
        memory_bytes: 64 << 20,
        timeout: Duration::from_secs(5),
    };
    let services = || {
        overseer_sandbox::Services::memory(Arc::new(overseer_sandbox::MemoryServices::default()))
    };
    let event = |n: usize| overseer_sandbox::Event {
        id: n.to_string(),
        topic: "market.tick".to_string(),
        payload: format!("{{\"n\":{n}}}"),
        source: "bench".to_string(),
        at_ms: 0,
    };
    let mut session = sandbox.session(&prepared, &limits, services()).await?;
    let started = Instant::now();
    for n in 0..calls {
        session.handle(&event(n)).await?;
    }
    let reused = calls as f64 / started.elapsed().as_secs_f64();
    drop(session);
    let fresh_calls = calls / 10;
    let started = Instant::now();
    for n in 0..fresh_calls {
        sandbox
            .handle(&prepared, &limits, services(), event(n))
            .await?;
    }
    let fresh = fresh_calls as f64 / started.elapsed().as_secs_f64();
    Ok((reused, fresh))
}

/// Compile against a cold cache, load from the warm cache, and invoke in process a scaffolded
/// agent in each language, in a fresh instance per call and in a kept one (`reuse`); Rust is
/// echo, measured above.
async fn languages(
    args: &BenchArgs,
    echo: &[u8],
    compile: Duration,
    cached: Duration,
    invoke: Summary,
) -> anyhow::Result<()> {
    let isolation = crate::config::isolation_from_env()?;
    let mut rows = vec![(
        "Rust (echo)".to_string(),
        echo.len(),
        compile,
        cached,
        invoke,
        None,
    )];
    for (lang, label) in [("python", "Python"), ("js", "JavaScript")] {
        println!("building a {label} agent …");
        let source = tempfile::tempdir()?;
        let dir = source.path().join(format!("bench-{lang}"));
        crate::scaffold::new_agent(
            &format!("bench-{lang}"),
            lang,
            &dir,
            &crate::scaffold::sdk_dir(),
        )?;
        let tools = args.tools_dir.clone();
        let artifact = tokio::task::spawn_blocking(move || {
            crate::scaffold::build(&dir, None, &tools, Duration::from_secs(900), isolation)
        })
        .await??;
        let bytes = artifact.bytes;
        let cache = tempfile::tempdir()?;
        let config = overseer_sandbox::SandboxConfig {
            cache_dir: Some(cache.path().to_path_buf()),
            ..overseer_sandbox::SandboxConfig::default()
        };
        let cold = overseer_sandbox::Sandbox::new(&config)?;
        let started = Instant::now();
        cold.prepare(&bytes)?;
        let compile = started.elapsed();
        let warm = overseer_sandbox::Sandbox::new(&config)?;
        let started = Instant::now();
        let prepared = warm.prepare(&bytes)?;
        let cached = started.elapsed();
        let limits = overseer_sandbox::Limits {
            fuel: u64::MAX / 2,
            memory_bytes: 256 << 20,
            timeout: Duration::from_secs(10),
        };
        let services = overseer_sandbox::Services::memory(Arc::new(
            overseer_sandbox::MemoryServices::default(),
        ));
        let calls = (args.calls / 10).max(20);
        let event = |n: usize| overseer_sandbox::Event {
            id: n.to_string(),
            topic: "invoke".to_string(),
            payload: "\"bench\"".to_string(),
            source: "bench".to_string(),
            at_ms: 0,
        };
        let mut samples = Vec::with_capacity(calls);
        for n in 0..calls + 5 {
            let started = Instant::now();
            warm.handle(&prepared, &limits, services.clone(), event(n))
                .await?;
            if n >= 5 {
                samples.push(started.elapsed());
            }
        }
        // The same calls in a kept instance (`[limits] reuse`), its first call excluded.
        let instances = Arc::new(overseer_sandbox::Instances::new(
            overseer_sandbox::ReusePolicy {
                calls: u32::MAX,
                max_age: None,
            },
            1,
        ));
        let mut reused = Vec::with_capacity(calls * 10);
        for n in 0..calls * 10 + 5 {
            let started = Instant::now();
            let (_, kept) = warm
                .handle_reusing(&prepared, &limits, services.clone(), event(n), &instances)
                .await?;
            kept.keep();
            if n >= 5 {
                reused.push(started.elapsed());
            }
        }
        rows.push((
            label.to_string(),
            bytes.len(),
            compile,
            cached,
            summarize(&mut samples),
            Some(summarize(&mut reused)),
        ));
    }
    println!();
    println!(
        "| language | component | compile, cold cache | load from the cache | speed-up | invoke in process, fresh instance: p50 / p99 | kept instance (`reuse`): p50 / p99 |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (label, size, compile, cached, invoke, reused) in rows {
        let size = if size >= 1 << 20 {
            format!("{:.1} MiB", size as f64 / f64::from(1 << 20))
        } else {
            format!("{} KiB", size / 1024)
        };
        let reused = reused.map_or_else(
            || "see the sessions row".to_string(),
            |r| format!("{:.0} µs / {:.0} µs", r.p50, r.p99),
        );
        println!(
            "| {label} | {size} | {:.0} ms | {:.1} ms | {:.0}× | {:.0} µs / {:.0} µs | {reused} |",
            ms(compile),
            ms(cached),
            compile.as_secs_f64() / cached.as_secs_f64().max(1e-9),
            invoke.p50,
            invoke.p99
        );
    }
    Ok(())
}

/// Create `bench-edit` from echo's source, time five one-line edits to live, then time a
/// rollback that also restores the working copy.
async fn edit_cycle(
    daemon: &Daemon,
    agents_dir: &std::path::Path,
) -> anyhow::Result<(Summary, Duration)> {
    let store = &daemon.kernel.store;
    let mut source = Snapshot::read_dir(&agents_dir.join("echo"))?;
    let agent = "bench-edit";
    if let Some(manifest) = source.files.get_mut("agent.toml") {
        *manifest = manifest.replace("name = \"echo\"", &format!("name = \"{agent}\""));
    }
    let finish = |id: i64| async move {
        let mut poll = tokio::time::interval(Duration::from_millis(5));
        loop {
            poll.tick().await;
            let edit = store.edit(agent, id).await?.context("the edit vanished")?;
            match edit.state {
                EditState::Live => return anyhow::Ok(()),
                EditState::Rejected | EditState::RolledBack => {
                    anyhow::bail!(
                        "edit {id} {}: {}",
                        edit.state,
                        edit.message.unwrap_or_default()
                    )
                }
                _ => {}
            }
        }
    };
    let created = daemon
        .selfedit
        .submit(
            agent,
            EditRequest {
                files: Some(source.files.clone()),
                reason: "bench".to_string(),
                ..EditRequest::default()
            },
        )
        .await?;
    finish(created.id).await?;
    let mut samples = Vec::new();
    let mut current = source.files.get("src/lib.rs").cloned().unwrap_or_default();
    for round in 1..=5 {
        let base = store.agent(agent).await?.and_then(|a| a.active_version);
        let next = current.replace(
            "Ok(event.payload)",
            &format!("Ok(event.payload) // edit {round}"),
        );
        let next = if next == current {
            format!("{current}// edit {round}\n")
        } else {
            next
        };
        let started = Instant::now();
        let edit = daemon
            .selfedit
            .submit(
                agent,
                EditRequest {
                    base_version: base,
                    files: Some([("src/lib.rs".to_string(), next.clone())].into()),
                    reason: format!("bench edit {round}"),
                    ..EditRequest::default()
                },
            )
            .await?;
        finish(edit.id).await?;
        samples.push(started.elapsed());
        current = next;
    }
    let started = Instant::now();
    daemon.kernel.deployer.rollback(agent, None).await?;
    let restore = started.elapsed();
    Ok((summarize(&mut samples), restore))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
