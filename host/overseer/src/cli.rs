//! The command line: `overseer serve` runs the daemon; every other command talks to a running
//! daemon over its HTTP API.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::bench::{self, BenchArgs};
use crate::client::{ClientArgs, send};
use crate::config::{Config, ServeArgs};
use crate::daemon;
use crate::drill::{self, DrillArgs};
use crate::scaffold;
use crate::trading_cli::{self, TradingCommand};

/// overseer: a self-healing host for WebAssembly agents.
#[derive(Debug, Parser)]
#[command(name = "overseer", version, about)]
pub struct Cli {
    /// How log lines on stderr are written: `text` (coloured only on a terminal) or `json`
    /// (one object per line).
    #[arg(long, global = true, value_enum, env = "OVERSEER_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// The shape of the daemon's log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines; colour escapes only when stderr is a terminal.
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`, `span`), for log
    /// collectors.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve(ServeArgs),
    #[command(flatten)]
    Trading(TradingCommand),
    /// Push a component as a new version of an agent.
    Push {
        name: String,
        /// The component (`.wasm`).
        file: PathBuf,
        /// The agent's manifest (`agent.toml`).
        #[arg(long)]
        manifest: Option<PathBuf>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The audit trail, oldest first; `audit verify` walks its hash chain.
    Audit(crate::meta_cli::AuditArgs),
    /// The Overseer's loops; `loops run NAME` runs one now.
    Loops(crate::meta_cli::LoopsArgs),
    /// A daily report of the Overseer, as Markdown, JSON or HTML.
    Report(crate::meta_cli::ReportArgs),
    /// The prompt registry: list, show, diff, write, label, rollback.
    Prompts(crate::growth_cli::PromptsArgs),
    /// A/B experiments between versions of a prompt: list, start, show, stop.
    Experiments(crate::growth_cli::ExperimentsArgs),
    /// A new agent from a spec (`overseer architect SPEC.toml`); without one, the specs and the
    /// workflow.
    Architect(crate::growth_cli::ArchitectArgs),
    /// List agents.
    Agents {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Invoke an agent with a JSON payload.
    Invoke {
        name: String,
        json: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an agent's versions.
    Versions {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Go back to the previous version, or to version N.
    Rollback {
        name: String,
        #[arg(long)]
        to: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an agent's recent log lines.
    Logs {
        name: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List alerts: open, resolved or all.
    Alerts {
        #[arg(long, default_value = "open")]
        state: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put a quarantined agent back into routing.
    Release {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Propose an edit of an agent's source (a unified diff); waits for its outcome.
    Edit {
        name: String,
        /// The unified diff.
        #[arg(long)]
        diff: PathBuf,
        /// The version the diff was written against (default: the active one).
        #[arg(long)]
        base: Option<u32>,
        #[arg(long, default_value = "")]
        reason: String,
        /// Return once the edit is accepted, without waiting for its outcome.
        #[arg(long)]
        no_wait: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List an agent's edits.
    Edits {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the source diff between two versions of an agent.
    Diff {
        name: String,
        a: u32,
        b: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show what the analysis finds in an agent's source: panic sites, dropped errors, long
    /// and branchy functions.
    Analysis {
        name: String,
        /// A version other than the active one.
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the LLM endpoint and the tokens each agent has used.
    Llm {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write a new agent's source that builds as it is.
    New {
        name: String,
        /// The language of the agent: rust, python or js.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Where to write it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build an agent's source directory into a component and print its path.
    Build {
        /// The agent's directory (default: the current one).
        dir: Option<PathBuf>,
        /// Where the component is built (default: DIR/target).
        #[arg(long)]
        target_dir: Option<PathBuf>,
        /// Where componentizers are installed on first use (default: DATA_DIR/tools).
        #[arg(long)]
        tools_dir: Option<PathBuf>,
        /// The data directory whose tools are used.
        #[arg(long, env = "OVERSEER_DATA_DIR", default_value = ".overseer")]
        data_dir: PathBuf,
    },
    /// Push a faulty build of a live agent and watch the host reject it or roll it back.
    Drill(DrillArgs),
    /// Measure the host: compile vs cached load, invoke latency, push-to-live and swaps.
    Bench(BenchArgs),
    /// Check what the daemon needs, changing nothing: the toolchain and its wasm target, the
    /// componentizers, build isolation, the database, disk space and the listener; each
    /// problem is named with its fix.
    Doctor(ServeArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (what `GET /v1/openapi.json` serves), to
    /// generate a client without a running daemon.
    Openapi,
}

/// The whole program: parse the command line, set up logging to stderr and run the command on a
/// multi-threaded runtime.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli))
}

/// Log to stderr at the level `OVERSEER_LOG` names (an `EnvFilter`), in `format`.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;

    let filter = tracing_subscriber::EnvFilter::try_from_env("OVERSEER_LOG").unwrap_or_else(|_| {
        "overseer=info,overseer_kernel=info,overseer_selfedit=info,overseer_sandbox=info,warn"
            .into()
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

/// Run one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => daemon::run(Config::load(&args)?).await,
        Command::Trading(command) => trading_cli::run(command).await,
        Command::Audit(args) => crate::meta_cli::run(args).await,
        Command::Loops(args) => crate::meta_cli::loops(args).await,
        Command::Report(args) => crate::meta_cli::report(args).await,
        Command::Prompts(args) => crate::growth_cli::prompts(args).await,
        Command::Experiments(args) => crate::growth_cli::experiments(args).await,
        Command::Architect(args) => crate::growth_cli::architect(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::New { name, lang, dir } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            scaffold::new_agent(&name, &lang, &dir, &scaffold::sdk_dir())?;
            println!("wrote {}: a {lang} agent called {name}", dir.display());
            println!("next: overseer build {}", dir.display());
            Ok(())
        }
        Command::Doctor(args) => crate::doctor::run(&args).await,
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&overseer_api::openapi())?
            );
            Ok(())
        }
        Command::Build {
            dir,
            target_dir,
            tools_dir,
            data_dir,
        } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from("."));
            let tools = tools_dir.unwrap_or_else(|| data_dir.join("tools"));
            let isolation = crate::config::isolation_from_env()?;
            eprint!("{}", scaffold::build_time_warnings(&dir));
            let artifact = tokio::task::spawn_blocking(move || {
                scaffold::build(
                    &dir,
                    target_dir.as_deref(),
                    &tools,
                    std::time::Duration::from_secs(Config::default().build_timeout_secs),
                    isolation,
                )
            })
            .await??;
            println!(
                "{} ({} KiB)",
                artifact.wasm.display(),
                artifact.bytes.len() / 1024
            );
            Ok(())
        }
        Command::Drill(args) => drill::run(args).await.map(|_| ()),
        Command::Push {
            name,
            file,
            manifest,
            client: c,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let path = format!("/v1/agents/{name}/versions");
            let request = match manifest {
                Some(manifest) => {
                    let text = std::fs::read_to_string(&manifest)
                        .with_context(|| format!("reading {}", manifest.display()))?;
                    let form = reqwest::multipart::Form::new()
                        .part(
                            "component",
                            reqwest::multipart::Part::bytes(bytes).file_name("component.wasm"),
                        )
                        .text("manifest", text);
                    c.post(&c.client()?, &path).multipart(form)
                }
                None => c
                    .post(&c.client()?, &path)
                    .header("content-type", "application/wasm")
                    .body(bytes),
            };
            print_json(send(request).await?);
            Ok(())
        }
        Command::Agents { client: c } => {
            let value = send(c.client()?.get(c.url("/v1/agents"))).await?;
            for agent in value["agents"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:<10} {:<8} {}",
                    agent["name"].as_str().unwrap_or_default(),
                    agent["state"].as_str().unwrap_or_default(),
                    agent["active_version"]
                        .as_u64()
                        .map(|v| format!("v{v}"))
                        .unwrap_or_else(|| "-".to_string()),
                    agent["description"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Invoke {
            name,
            json,
            client: c,
        } => {
            let request = c
                .post(&c.client()?, &format!("/v1/agents/{name}/invoke"))
                .header("content-type", "application/json")
                .body(json);
            print_json(send(request).await?);
            Ok(())
        }
        Command::Alerts { state, client: c } => {
            let value = send(c.client()?.get(c.url(&format!("/v1/alerts?state={state}")))).await?;
            for alert in value["alerts"].as_array().into_iter().flatten() {
                let state = if alert["resolved_ms"].is_null() {
                    "open"
                } else {
                    "resolved"
                };
                println!(
                    "#{:<5} {:<9} {:<8} {:<24} {:<16} {}",
                    alert["id"],
                    state,
                    alert["priority"].as_str().unwrap_or_default(),
                    alert["type"].as_str().unwrap_or_default(),
                    alert["agent"].as_str().unwrap_or_default(),
                    alert["message"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Edit {
            name,
            diff,
            base,
            reason,
            no_wait,
            client: c,
        } => {
            let diff = std::fs::read_to_string(&diff)
                .with_context(|| format!("reading {}", diff.display()))?;
            let base = match base {
                Some(base) => base,
                None => {
                    send(c.client()?.get(c.url(&format!("/v1/agents/{name}")))).await?["active_version"]
                        .as_u64()
                        .map(|v| v as u32)
                        .context("the agent has no active version to edit")?
                }
            };
            let body = serde_json::json!({
                "base_version": base,
                "diff": diff,
                "reason": reason,
            });
            let request = c
                .post(&c.client()?, &format!("/v1/agents/{name}/edits"))
                .header("content-type", "application/json")
                .body(body.to_string());
            let mut edit = send(request).await?;
            let path = format!("/v1/agents/{name}/edits/{}", edit["id"]);
            let mut poll = tokio::time::interval(std::time::Duration::from_millis(200));
            while !no_wait
                && matches!(
                    edit["state"].as_str(),
                    Some("applying" | "building" | "checking")
                )
            {
                poll.tick().await;
                edit = send(c.client()?.get(c.url(&path))).await?;
            }
            print_edit(&edit);
            if edit["state"] == "rejected" {
                bail!("edit {} rejected", edit["id"]);
            }
            Ok(())
        }
        Command::Edits { name, client: c } => {
            let value = send(c.client()?.get(c.url(&format!("/v1/agents/{name}/edits")))).await?;
            for edit in value["edits"].as_array().into_iter().flatten() {
                println!(
                    "#{:<5} {:<12} {:<8} base v{:<4} {:<10} {}",
                    edit["id"],
                    edit["state"].as_str().unwrap_or_default(),
                    edit["version"]
                        .as_u64()
                        .map(|v| format!("v{v}"))
                        .unwrap_or_else(|| "-".to_string()),
                    edit["base_version"].as_u64().unwrap_or(0),
                    edit["proposer"].as_str().unwrap_or_default(),
                    edit["reason"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Diff {
            name,
            a,
            b,
            client: c,
        } => {
            let value = send(
                c.client()?
                    .get(c.url(&format!("/v1/agents/{name}/versions/{a}/diff/{b}"))),
            )
            .await?;
            print!("{}", value["diff"].as_str().unwrap_or_default());
            Ok(())
        }
        Command::Analysis {
            name,
            version,
            client: c,
        } => {
            let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
            let value = send(
                c.client()?
                    .get(c.url(&format!("/v1/agents/{name}/analysis{query}"))),
            )
            .await?;
            let findings = value["findings"].as_array().cloned().unwrap_or_default();
            for f in &findings {
                println!(
                    "{}:{}:{}: {} {}",
                    f["file"].as_str().unwrap_or_default(),
                    f["line"],
                    f["column"],
                    f["kind"].as_str().unwrap_or_default(),
                    f["message"].as_str().unwrap_or_default()
                );
            }
            for u in value["unparsed"].as_array().into_iter().flatten() {
                println!(
                    "{}:{}: does not parse: {}",
                    u["file"].as_str().unwrap_or_default(),
                    u["line"],
                    u["error"].as_str().unwrap_or_default()
                );
            }
            println!(
                "{name} v{}: {} findings in {} Rust files",
                value["version"],
                findings.len(),
                value["files"]
            );
            Ok(())
        }
        Command::Llm { client: c } => {
            let value = send(c.client()?.get(c.url("/v1/llm"))).await?;
            match value["model"].as_str() {
                Some(model) => println!(
                    "LLM: {model} at {}",
                    value["url"].as_str().unwrap_or_default()
                ),
                None => println!("LLM: not configured (set OVERSEER_LLM_URL)"),
            }
            for u in value["usage"].as_array().into_iter().flatten() {
                println!(
                    "{:<24} {:>6} calls {:>4} failed {:>9} prompt {:>9} completion tokens",
                    u["agent"].as_str().unwrap_or_default(),
                    u["calls"],
                    u["failed"],
                    u["prompt_tokens"],
                    u["completion_tokens"]
                );
            }
            Ok(())
        }
        Command::Release { name, client: c } => {
            print_json(send(c.post(&c.client()?, &format!("/v1/agents/{name}/release"))).await?);
            Ok(())
        }
        Command::Versions { name, client: c } => {
            print_json(
                send(
                    c.client()?
                        .get(c.url(&format!("/v1/agents/{name}/versions"))),
                )
                .await?,
            );
            Ok(())
        }
        Command::Rollback {
            name,
            to,
            client: c,
        } => {
            let body = match to {
                Some(n) => serde_json::json!({ "version": n }).to_string(),
                None => String::new(),
            };
            let request = c
                .post(&c.client()?, &format!("/v1/agents/{name}/rollback"))
                .header("content-type", "application/json")
                .body(body);
            print_json(send(request).await?);
            Ok(())
        }
        Command::Logs {
            name,
            limit,
            client: c,
        } => {
            let value = send(
                c.client()?
                    .get(c.url(&format!("/v1/agents/{name}/logs?limit={limit}"))),
            )
            .await?;
            for line in value["logs"].as_array().into_iter().flatten() {
                println!(
                    "{} v{} {:<5} {}",
                    line["at_ms"],
                    line["version"].as_u64().unwrap_or(0),
                    line["level"].as_str().unwrap_or_default(),
                    line["message"].as_str().unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}

fn print_edit(edit: &Value) {
    println!(
        "edit {} of {}: {}",
        edit["id"],
        edit["agent"].as_str().unwrap_or_default(),
        edit["state"].as_str().unwrap_or_default()
    );
    if let Some(version) = edit["version"].as_u64() {
        println!("version: v{version}");
    }
    if let Some(stage) = edit["stage"].as_str() {
        println!(
            "stage: {stage} ({})",
            edit["code"].as_str().unwrap_or_default()
        );
    }
    if let Some(message) = edit["message"].as_str() {
        println!("{message}");
    }
}

fn print_json(value: Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(&value).unwrap_or_else(|_| value.to_string())
    );
}
