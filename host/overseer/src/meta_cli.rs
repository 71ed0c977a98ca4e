//! The Overseer's commands, against a running daemon: `overseer audit`, the audit trail
//! oldest first, and `overseer audit verify`, a walk of its hash chain that exits with 1 on
//! an entry modified, removed or moved, or, given the head hash kept from an earlier walk,
//! on entries cut off its end; `overseer loops`, the loops and their last runs; and
//! `overseer report`, a daily report.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::{ClientArgs, send};

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    command: Option<AuditCommand>,
    /// Entries numbered after this one.
    #[arg(long, default_value_t = 0)]
    after: i64,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the hash chain; exit 1 when an entry was modified, removed or moved.
    Verify {
        /// The head hash an earlier walk printed: fail unless it is still in the trail.
        #[arg(long)]
        head: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Entries read per page when looking for a head.
const PAGE: u32 = 10_000;

pub async fn run(args: AuditArgs) -> anyhow::Result<()> {
    match args.command {
        None => {
            let c = args.client;
            let mut url = reqwest::Url::parse(&c.url("/v1/audit"))?;
            url.query_pairs_mut()
                .append_pair("after", &args.after.to_string())
                .append_pair("limit", &args.limit.to_string());
            let value = send(c.client()?.get(url)).await?;
            for e in value["entries"].as_array().into_iter().flatten() {
                let hash = e["hash"].as_str().unwrap_or_default();
                println!(
                    "{:>6} {} {:<12} {:<18} {:<22} {}",
                    e["seq"],
                    hash.get(..12).unwrap_or(hash),
                    e["actor"].as_str().unwrap_or_default(),
                    e["action"].as_str().unwrap_or_default(),
                    e["subject"].as_str().unwrap_or_default(),
                    e["detail"].as_str().unwrap_or_default(),
                );
            }
            Ok(())
        }
        Some(AuditCommand::Verify { head, client: c }) => {
            let value = send(c.client()?.get(c.url("/v1/audit/verify"))).await?;
            for p in value["problems"].as_array().into_iter().flatten() {
                println!(
                    "entry {}: {} — {}",
                    p["seq"],
                    p["problem"].as_str().unwrap_or_default(),
                    p["message"].as_str().unwrap_or_default()
                );
            }
            let entries = value["entries"].as_u64().unwrap_or(0);
            let now = value["head"].as_str().unwrap_or_default();
            if value["ok"] != Value::Bool(true) {
                anyhow::bail!(
                    "the audit trail was changed behind the store's back ({entries} entries)"
                );
            }
            if let Some(head) = head.filter(|h| h != now)
                && !holds(&c, &head).await?
            {
                anyhow::bail!(
                    "no entry has the head hash {head}: entries were removed from the end, or changed with their hashes made again"
                );
            }
            println!("ok: {entries} entries, head {now}");
            Ok(())
        }
    }
}

/// Whether an entry of the trail has `hash`.
async fn holds(c: &ClientArgs, hash: &str) -> anyhow::Result<bool> {
    let mut after = 0;
    loop {
        let mut url = reqwest::Url::parse(&c.url("/v1/audit"))?;
        url.query_pairs_mut()
            .append_pair("after", &after.to_string())
            .append_pair("limit", &PAGE.to_string());
        let value = send(c.client()?.get(url)).await?;
        let page = value["entries"].as_array().cloned().unwrap_or_default();
        if page.iter().any(|e| e["hash"] == hash) {
            return Ok(true);
        }
        match page.last().and_then(|e| e["seq"].as_i64()) {
            Some(seq) if page.len() == PAGE as usize => after = seq,
            _ => return Ok(false),
        }
    }
}

/// `overseer loops`: the Overseer's loops, when each runs next and what its last run did;
/// `overseer loops run NAME` runs one now.
#[derive(Debug, Args)]
pub struct LoopsArgs {
    #[command(subcommand)]
    command: Option<LoopsCommand>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Debug, Subcommand)]
enum LoopsCommand {
    /// Run a loop now and print its run.
    Run {
        /// `health`, `healing`, `performance`, `optimisation` or `governance`.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

pub async fn loops(args: LoopsArgs) -> anyhow::Result<()> {
    match args.command {
        Some(LoopsCommand::Run { name, client: c }) => {
            let run = send(c.post(&c.client()?, &format!("/v1/overseer/loops/{name}/run"))).await?;
            println!("{}", serde_json::to_string_pretty(&run)?);
        }
        None => {
            let c = args.client;
            let value = send(c.client()?.get(c.url("/v1/overseer"))).await?;
            println!("clock factor {}", value["clock_factor"]);
            for l in value["loops"].as_array().into_iter().flatten() {
                let last = &l["last_run"];
                println!(
                    "{:<13} every {:>9} ms  last {:<13}  did {}",
                    l["name"].as_str().unwrap_or_default(),
                    l["every_ms"],
                    last["ended_ms"]
                        .as_u64()
                        .map_or("never".to_string(), |ms| ms.to_string()),
                    if last.is_null() {
                        Value::Null
                    } else {
                        last["did"].clone()
                    },
                );
            }
        }
    }
    Ok(())
}

/// `overseer report`: a daily report, as Markdown (or JSON, or the HTML page).
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// `YYYY-MM-DD`, or `latest`.
    #[arg(long, default_value = "latest")]
    date: String,
    /// `md`, `json` or `html`.
    #[arg(long, default_value = "md")]
    format: String,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn report(args: ReportArgs) -> anyhow::Result<()> {
    let c = args.client;
    let path = format!("/v1/reports/{}.{}", args.date, args.format);
    let response = c.client()?.get(c.url(&path)).send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        anyhow::bail!("{status}: {text}");
    }
    println!("{text}");
    Ok(())
}
