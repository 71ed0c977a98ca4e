//! `overseer drill`: push a deliberately faulty build of a live agent, from the fixtures in
//! `agents/fixtures`, call it, and report what the host did about it — rejected it before the
//! swap, or let it go live and rolled it back — with the alerts it raised.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use overseer_selfedit::builder;
use serde_json::{Value, json};

use crate::client::{ClientArgs, send};
use crate::config::Config;

/// The faults a drill can inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fault {
    /// Every call panics (`fixture-trap`).
    Trap,
    /// Every call loops until its deadline (`fixture-spin`, pushed with unlimited fuel so the
    /// deadline is what stops it).
    Timeout,
    /// Every call allocates past the memory limit (`fixture-memory-hog`).
    Memory,
    /// Works, but reports itself unhealthy (`fixture-bad-health`).
    BadHealth,
    /// Healthy, but the drill's calls ask it to fail (`fixture-flaky` with `{"fail":"error"}`).
    ErrorBurst,
}

impl Fault {
    fn package(self) -> &'static str {
        match self {
            Fault::Trap => "fixture-trap",
            Fault::Timeout => "fixture-spin",
            Fault::Memory => "fixture-memory-hog",
            Fault::BadHealth => "fixture-bad-health",
            Fault::ErrorBurst => "fixture-flaky",
        }
    }

    fn payload(self) -> Value {
        match self {
            Fault::ErrorBurst => json!({ "fail": "error" }),
            _ => json!({ "drill": true }),
        }
    }
}

/// Flags of `overseer drill`.
#[derive(Debug, Clone, Args)]
pub struct DrillArgs {
    /// The live agent to drill.
    pub name: String,
    #[arg(long, value_enum)]
    pub fault: Fault,
    /// Calls sent to the faulty version if it goes live.
    #[arg(long, default_value_t = 20)]
    pub calls: u32,
    /// How long to wait for the host to restore the agent.
    #[arg(long, default_value = "60s", value_parser = overseer_kernel::manifest::parse_interval)]
    pub wait: Duration,
    /// Source of the fixtures (the agents workspace).
    #[arg(long, env = "OVERSEER_AGENTS_DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Target directory of the fixture build; by default the daemon's, under its data directory.
    #[arg(long)]
    pub build_dir: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// What happened to the faulty build.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Refused before the swap: the pipeline stage and code.
    Rejected { stage: String, code: String },
    /// Went live as `version`, and the agent was back on `restored` after `after`.
    RolledBack {
        version: u32,
        restored: u32,
        after: Duration,
    },
    /// Went live as `version` and was still serving when the drill stopped waiting.
    StillLive { version: u32 },
}

/// The drill's findings.
#[derive(Debug, Clone)]
pub struct Report {
    pub agent: String,
    pub fault: Fault,
    /// The version serving before the drill.
    pub before: u32,
    pub push: Value,
    pub outcome: Outcome,
    /// How the calls to the faulty version ended, by code (`ok` for success).
    pub calls: BTreeMap<String, u32>,
    /// Alerts about the agent opened during the drill.
    pub alerts: Vec<Value>,
    /// The version serving at the end.
    pub after: Option<u32>,
}

/// Run a drill and print its report.
pub async fn run(args: DrillArgs) -> anyhow::Result<Report> {
    let report = drill(args).await?;
    print(&report);
    Ok(report)
}

async fn drill(args: DrillArgs) -> anyhow::Result<Report> {
    let c = &args.client;
    let client = c.client()?;
    let name = &args.name;
    let agent = send(client.get(c.url(&format!("/v1/agents/{name}")))).await?;
    let Some(before) = agent["active_version"].as_u64().map(|v| v as u32) else {
        bail!("agent {name:?} has no active version to drill; push one first");
    };
    let started_ms = overseer_store::now_ms();

    let bytes = build_fixture(&args).await?;
    let path = format!("/v1/agents/{name}/versions");
    let request = match args.fault {
        // Keep the agent's limits, but with the most fuel the host allows, so the deadline
        // stops the loop.
        Fault::Timeout => {
            let limits = send(client.get(c.url("/v1/limits"))).await?;
            let mut manifest = agent["manifest"].clone();
            manifest["limits"]["fuel"] = limits["maxima"]["fuel"].clone();
            let text = toml::to_string(&manifest).context("writing the drill's manifest")?;
            c.post(&client, &path).multipart(
                reqwest::multipart::Form::new()
                    .part(
                        "component",
                        reqwest::multipart::Part::bytes(bytes).file_name("drill.wasm"),
                    )
                    .text("manifest", text),
            )
        }
        _ => c
            .post(&client, &path)
            .header("content-type", "application/wasm")
            .body(bytes),
    };
    let response = request.send().await.context("cannot reach the daemon")?;
    let push: Value = response.json().await.unwrap_or(Value::Null);

    let mut calls = BTreeMap::new();
    let outcome = match push["state"].as_str() {
        Some("active") => {
            let version = push["version"].as_u64().unwrap_or_default() as u32;
            let first_call = Instant::now();
            calls = fire(&client, c, name, args.fault.payload(), args.calls).await;
            wait_for_restore(&client, c, name, version, first_call, args.wait).await?
        }
        _ => {
            let code = push["error"]["code"]
                .as_str()
                .unwrap_or("unknown")
                .to_string();
            let stage = match push["error"]["version"].as_u64() {
                Some(number) => {
                    let versions =
                        send(client.get(c.url(&format!("/v1/agents/{name}/versions")))).await?;
                    versions["versions"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|v| v["number"].as_u64() == Some(number))
                        .and_then(|v| v["stage"].as_str())
                        .unwrap_or("push")
                        .to_string()
                }
                None => "push".to_string(),
            };
            Outcome::Rejected { stage, code }
        }
    };

    // A rollback is announced just after it takes effect: give its alert a moment.
    let expect_alert = matches!(outcome, Outcome::RolledBack { .. });
    let alerts = alerts_since(&client, c, name, started_ms, expect_alert).await?;
    let agent = send(client.get(c.url(&format!("/v1/agents/{name}")))).await?;
    Ok(Report {
        agent: name.clone(),
        fault: args.fault,
        before,
        push,
        outcome,
        calls,
        alerts,
        after: agent["active_version"].as_u64().map(|v| v as u32),
    })
}

/// Build the fixture of the fault with the same builder as every agent.
async fn build_fixture(args: &DrillArgs) -> anyhow::Result<Vec<u8>> {
    let config = Config {
        data_dir: args.client.data_dir.clone(),
        agents_dir: args.agents_dir.clone(),
        build_dir: args.build_dir.clone(),
        ..Config::default()
    };
    let Some(dir) = config.agents_dir() else {
        bail!("no agents directory with the fixtures: set --agents-dir or OVERSEER_AGENTS_DIR");
    };
    // The fixtures are the project's own code: they build in the build directory itself,
    // beside (never inside) the agents' target directories in `<build_dir>/agents/`.
    let target_dir = config.build_dir();
    let package = args.fault.package();
    let timeout = Duration::from_secs(config.build_timeout_secs);
    let isolation = crate::config::isolation_from_env()?;
    let build = tokio::task::spawn_blocking(move || {
        builder::build_rust(&dir, &target_dir, &[package], timeout, isolation)
    })
    .await??;
    build
        .artifacts
        .into_iter()
        .find(|a| a.package == package)
        .map(|a| a.bytes)
        .with_context(|| format!("the build produced no component for {package}"))
}

/// Alerts about the agent opened since `since_ms`; with `expect`, wait up to two seconds for one.
async fn alerts_since(
    client: &reqwest::Client,
    c: &ClientArgs,
    name: &str,
    since_ms: u64,
    expect: bool,
) -> anyhow::Result<Vec<Value>> {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut poll = tokio::time::interval(Duration::from_millis(25));
    loop {
        poll.tick().await;
        let alerts = send(client.get(c.url(&format!("/v1/alerts?state=all&agent={name}")))).await?;
        let alerts: Vec<Value> = alerts["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["opened_ms"].as_u64().is_some_and(|t| t >= since_ms))
            .cloned()
            .collect();
        if !alerts.is_empty() || !expect || Instant::now() >= deadline {
            return Ok(alerts);
        }
    }
}

/// Send `count` calls at once and count how they ended.
async fn fire(
    client: &reqwest::Client,
    c: &ClientArgs,
    name: &str,
    payload: Value,
    count: u32,
) -> BTreeMap<String, u32> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..count {
        let request = c
            .post(client, &format!("/v1/agents/{name}/invoke"))
            .header("content-type", "application/json")
            .body(payload.to_string());
        set.spawn(async move {
            match request.send().await {
                Ok(response) if response.status().is_success() => "ok".to_string(),
                Ok(response) => {
                    let body: Value = response.json().await.unwrap_or(Value::Null);
                    body["error"]["code"]
                        .as_str()
                        .unwrap_or("error")
                        .to_string()
                }
                Err(_) => "unreachable".to_string(),
            }
        });
    }
    let mut codes = BTreeMap::new();
    while let Some(code) = set.join_next().await {
        *codes
            .entry(code.unwrap_or_else(|_| "cancelled".to_string()))
            .or_insert(0) += 1;
    }
    codes
}

/// Wait until the agent serves a version other than the faulty one.
async fn wait_for_restore(
    client: &reqwest::Client,
    c: &ClientArgs,
    name: &str,
    version: u32,
    since: Instant,
    wait: Duration,
) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + wait;
    let mut poll = tokio::time::interval(Duration::from_millis(25));
    loop {
        poll.tick().await;
        let agent = send(client.get(c.url(&format!("/v1/agents/{name}")))).await?;
        match agent["active_version"].as_u64().map(|v| v as u32) {
            Some(active) if active != version => {
                return Ok(Outcome::RolledBack {
                    version,
                    restored: active,
                    after: since.elapsed(),
                });
            }
            _ if Instant::now() >= deadline => return Ok(Outcome::StillLive { version }),
            _ => {}
        }
    }
}

fn print(report: &Report) {
    let fault = report
        .fault
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default();
    println!(
        "drill {}: fault {fault}, pushed {} over v{}",
        report.agent,
        report.fault.package(),
        report.before
    );
    match &report.outcome {
        Outcome::Rejected { stage, code } => {
            println!("rejected before the swap at {stage} ({code})");
            if let Some(message) = report.push["error"]["message"].as_str() {
                println!("  {message}");
            }
        }
        Outcome::RolledBack {
            version,
            restored,
            after,
        } => println!(
            "went live as v{version}; the host rolled back to v{restored} {:.0} ms after the first call",
            after.as_secs_f64() * 1000.0
        ),
        Outcome::StillLive { version } => {
            println!("went live as v{version} and is still serving (not enough failures?)")
        }
    }
    if !report.calls.is_empty() {
        let calls: Vec<String> = report
            .calls
            .iter()
            .map(|(code, n)| format!("{n} {code}"))
            .collect();
        println!("calls: {}", calls.join(", "));
    }
    for alert in &report.alerts {
        println!(
            "alert #{} {} {}: {}",
            alert["id"],
            alert["priority"].as_str().unwrap_or_default(),
            alert["type"].as_str().unwrap_or_default(),
            alert["message"].as_str().unwrap_or_default()
        );
    }
    match report.after {
        Some(v) => println!("{} now serves v{v}", report.agent),
        None => println!("{} has no active version", report.agent),
    }
    println!(
        "see `overseer versions {0}` and `overseer logs {0}`",
        report.agent
    );
}
