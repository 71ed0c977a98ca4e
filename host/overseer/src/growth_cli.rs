//! The commands of prompts, experiments and the architect, against a running daemon:
//! `overseer prompts` (list, show, diff, write, label, rollback), `overseer experiments`
//! (list, start, show, stop) and `overseer architect SPEC.toml` (submit a spec of a new agent
//! and follow it until it is live, failed or waiting for a person).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{ClientArgs, send};

#[derive(Debug, Args)]
pub struct PromptsArgs {
    #[command(subcommand)]
    command: Option<PromptsCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum PromptsCommand {
    /// A prompt's versions and the history of its labels.
    Show {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The unified diff of two versions.
    Diff {
        name: String,
        a: u32,
        b: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write a new version (labelled `candidate` unless `--label production`).
    Write {
        name: String,
        /// The user message's template, with `{{variable}}` placeholders.
        #[arg(long)]
        template: String,
        #[arg(long, default_value = "")]
        system: String,
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Point a label (`production` or `candidate`) at a version.
    Label {
        name: String,
        label: String,
        version: u32,
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Put `production` back on the version it labelled before.
    Rollback {
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn pretty(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn prompts(args: PromptsArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            let c = args.client;
            let value = send(c.client()?.get(c.url("/v1/prompts"))).await?;
            for p in value["prompts"].as_array().into_iter().flatten() {
                println!(
                    "{:<36} owner {:<20} versions {:>3}  labels {}",
                    p["name"].as_str().unwrap_or_default(),
                    p["owner"].as_str().unwrap_or_default(),
                    p["versions"],
                    p["labels"],
                );
            }
            Ok(())
        }
        Some(PromptsCommand::Show { name, client: c }) => {
            pretty(&send(c.client()?.get(c.url(&format!("/v1/prompts/{name}")))).await?)
        }
        Some(PromptsCommand::Diff {
            name,
            a,
            b,
            client: c,
        }) => {
            let value = send(
                c.client()?
                    .get(c.url(&format!("/v1/prompts/{name}/diff/{a}/{b}"))),
            )
            .await?;
            print!("{}", value["diff"].as_str().unwrap_or_default());
            Ok(())
        }
        Some(PromptsCommand::Write {
            name,
            template,
            system,
            note,
            label,
            client: c,
        }) => {
            let body =
                json!({ "template": template, "system": system, "note": note, "label": label });
            let request = c.post(&c.client()?, &format!("/v1/prompts/{name}/versions"));
            pretty(&send(request.json(&body)).await?)
        }
        Some(PromptsCommand::Label {
            name,
            label,
            version,
            reason,
            client: c,
        }) => {
            let body = json!({ "label": label, "version": version, "reason": reason });
            let request = c.post(&c.client()?, &format!("/v1/prompts/{name}/labels"));
            pretty(&send(request.json(&body)).await?)
        }
        Some(PromptsCommand::Rollback { name, client: c }) => {
            pretty(&send(c.post(&c.client()?, &format!("/v1/prompts/{name}/rollback"))).await?)
        }
    }
}

#[derive(Debug, Args)]
pub struct ExperimentsArgs {
    #[command(subcommand)]
    command: Option<ExperimentsCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum ExperimentsCommand {
    /// Start an experiment between versions of a prompt; the first is the control.
    Start {
        prompt: String,
        /// The versions compared, comma-separated (`1,2`).
        #[arg(long, value_delimiter = ',', required = true)]
        variants: Vec<u32>,
        /// `success` (a rate: Wilson, two-proportion z) or `score` (a mean: Welch).
        #[arg(long, default_value = "success")]
        metric: String,
        #[arg(long, default_value_t = 100)]
        min_samples: u64,
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        #[arg(long, default_value_t = 5)]
        max_looks: u32,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// An experiment with each arm's outcomes, interval and p-value.
    Show {
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Stop a running experiment: nothing is promoted.
    Stop {
        id: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn experiments(args: ExperimentsArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            let c = args.client;
            let value = send(c.client()?.get(c.url("/v1/experiments"))).await?;
            for e in value["experiments"].as_array().into_iter().flatten() {
                println!(
                    "{:>5} {:<36} {:<14} variants {}",
                    e["id"],
                    e["prompt"].as_str().unwrap_or_default(),
                    e["state"].as_str().unwrap_or_default(),
                    e["body"]["variants"],
                );
            }
            Ok(())
        }
        Some(ExperimentsCommand::Start {
            prompt,
            variants,
            metric,
            min_samples,
            alpha,
            max_looks,
            seed,
            client: c,
        }) => {
            let body = json!({
                "prompt": prompt, "variants": variants, "metric": metric, "min_samples": min_samples,
                "alpha": alpha, "max_looks": max_looks, "seed": seed,
            });
            pretty(&send(c.post(&c.client()?, "/v1/experiments").json(&body)).await?)
        }
        Some(ExperimentsCommand::Show { id, client: c }) => {
            pretty(&send(c.client()?.get(c.url(&format!("/v1/experiments/{id}")))).await?)
        }
        Some(ExperimentsCommand::Stop { id, client: c }) => {
            pretty(&send(c.post(&c.client()?, &format!("/v1/experiments/{id}/stop"))).await?)
        }
    }
}

/// `overseer architect SPEC.toml`: a new agent from a spec (`name`, `purpose`, `inputs`,
/// `outputs`, `schedule`, `capabilities`), followed until it is live, failed, or waiting for
/// a person's approval. Without a file: the specs and the workflow of the agents serving.
#[derive(Debug, Args)]
pub struct ArchitectArgs {
    spec: Option<PathBuf>,
    /// Submit and return at once.
    #[arg(long)]
    no_wait: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn architect(args: ArchitectArgs) -> anyhow::Result<()> {
    let c = args.client;
    let Some(path) = args.spec else {
        return pretty(&send(c.client()?.get(c.url("/v1/architect"))).await?);
    };
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let spec: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not TOML", path.display()))?;
    let client = c.client()?;
    let submitted = send(c.post(&client, "/v1/architect/specs").json(&spec)).await?;
    let id = submitted["id"].as_i64().unwrap_or_default();
    println!(
        "spec {id}: {}",
        submitted["state"].as_str().unwrap_or_default()
    );
    if args.no_wait {
        return Ok(());
    }
    let mut last = String::new();
    loop {
        let now = send(client.get(c.url(&format!("/v1/architect/specs/{id}")))).await?;
        let state = now["state"].as_str().unwrap_or_default().to_string();
        if state != last {
            println!("spec {id}: {state}");
            last = state.clone();
        }
        if matches!(
            state.as_str(),
            "live" | "failed" | "rejected" | "awaiting_approval"
        ) {
            pretty(&now["detail"])?;
            if state == "failed" {
                anyhow::bail!("spec {id} failed");
            }
            return Ok(());
        }
        // Builds take seconds to minutes: poll gently.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
