//! `overseer backtest`: start a backtest on the daemon, follow it with a progress bar, and
//! print its figures next to buy and hold (or, with `--json`, its whole report).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};

use crate::client::{ClientArgs, send};

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// The agent to test.
    pub agent: String,
    /// Its version; the active one when absent.
    #[arg(long)]
    pub version: Option<u32>,
    /// Symbols, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub symbols: Vec<String>,
    /// First trading day (YYYY-MM-DD).
    #[arg(long)]
    pub from: String,
    /// Last trading day (YYYY-MM-DD).
    #[arg(long)]
    pub to: String,
    /// Run without commission and slippage.
    #[arg(long)]
    pub no_costs: bool,
    /// Starting cash in dollars (the daemon's `[trading] initial_cash` by default).
    #[arg(long)]
    pub cash: Option<f64>,
    /// A setting of the agent over its manifest's, `KEY=VALUE` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// Seeds the agent's random numbers and a random search.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Annual risk-free rate for Sharpe and Sortino (0.02 = 2 %).
    #[arg(long, default_value_t = 0.0)]
    pub risk_free: f64,
    /// Walk-forward windows, `rolling:IN:OUT` or `anchored:IN:OUT` (lengths in bars).
    #[arg(long, value_name = "KIND:IN:OUT")]
    pub walk_forward: Option<String>,
    /// A tunable's range for the walk-forward, `NAME=A..B` or `NAME=A..B:STEP`
    /// (repeatable; the agent's marked tunables when absent).
    #[arg(long = "param", value_name = "NAME=A..B[:STEP]")]
    pub params: Vec<String>,
    /// `grid` or `random`.
    #[arg(long, default_value = "grid")]
    pub search: String,
    /// Candidates of a random search.
    #[arg(long, default_value_t = 20)]
    pub samples: usize,
    /// `sharpe` or `total_return`.
    #[arg(long, default_value = "sharpe")]
    pub objective: String,
    /// Your own bars: `FILE.csv` (the symbol is the file's name) or `SYMBOL=FILE.csv`, with
    /// the bundled data's columns `date,open,high,low,close,volume,adj_close` (repeatable).
    #[arg(long = "data", value_name = "[SYMBOL=]FILE.csv")]
    pub data: Vec<String>,
    /// Print the whole result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

fn key_value(text: &str, what: &str) -> anyhow::Result<(String, String)> {
    let (key, value) = text
        .split_once('=')
        .with_context(|| format!("{what} {text:?}: expected NAME=VALUE"))?;
    Ok((key.trim().to_string(), value.trim().to_string()))
}

/// The spec `POST /v1/backtests` takes.
fn spec(args: &BacktestArgs) -> anyhow::Result<Value> {
    let config: BTreeMap<String, String> = args
        .config
        .iter()
        .map(|c| key_value(c, "--config"))
        .collect::<anyhow::Result<_>>()?;
    let mut data = BTreeMap::new();
    for item in &args.data {
        let (symbol, path) = match item.split_once('=') {
            Some((symbol, path)) => (symbol.to_string(), PathBuf::from(path)),
            None => {
                let path = PathBuf::from(item);
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .with_context(|| format!("--data {item}: no file name"))?
                    .to_uppercase();
                (stem, path)
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        data.insert(symbol, text);
    }
    let mut spec = json!({
        "agent": args.agent,
        "version": args.version,
        "symbols": args.symbols,
        "from": args.from,
        "to": args.to,
        "costs": !args.no_costs,
        "initial_cash": args.cash,
        "config": config,
        "seed": args.seed,
        "risk_free": args.risk_free,
        "data": data,
    });
    if let Some(walk) = &args.walk_forward {
        let parts: Vec<&str> = walk.split(':').collect();
        let [kind, in_sample, out_of_sample] = parts[..] else {
            bail!("--walk-forward {walk:?}: expected KIND:IN:OUT, e.g. rolling:252:63");
        };
        let mut params = serde_json::Map::new();
        for param in &args.params {
            let (name, range) = key_value(param, "--param")?;
            let (range, step) = match range.split_once(':') {
                Some((range, step)) => (range.to_string(), Some(step.parse::<f64>()?)),
                None => (range, None),
            };
            let (from, to) = range
                .split_once("..")
                .with_context(|| format!("--param {param:?}: expected NAME=A..B"))?;
            params.insert(
                name,
                json!({ "from": from.parse::<f64>()?, "to": to.parse::<f64>()?, "step": step }),
            );
        }
        spec["walk_forward"] = json!({
            "windows": kind,
            "in_sample": in_sample.parse::<usize>().context("--walk-forward: IN is a number of bars")?,
            "out_of_sample": out_of_sample.parse::<usize>().context("--walk-forward: OUT is a number of bars")?,
            "params": params,
            "search": args.search,
            "samples": args.samples,
            "objective": args.objective,
        });
    }
    Ok(spec)
}

/// Run the backtest and print its result.
pub async fn run(args: BacktestArgs) -> anyhow::Result<()> {
    let c = &args.client;
    let client = c.client()?;
    let started = send(
        c.post(&client, "/v1/backtests")
            .header("content-type", "application/json")
            .body(spec(&args)?.to_string()),
    )
    .await?;
    let id = started["id"]
        .as_str()
        .context("the daemon gave no id")?
        .to_string();
    let total = started["status"]["total"].as_u64().unwrap_or(0);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {msg} [{bar:40}] {pos}/{len} bars ({per_sec}, {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("{} {id}", args.agent));
    let status = loop {
        let status = send(client.get(c.url(&format!("/v1/backtests/{id}")))).await?;
        bar.set_position(status["done"].as_u64().unwrap_or(0));
        if status["state"] != "running" {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    bar.finish_and_clear();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    }
    if status["state"] == "failed" {
        let error = &status["error"];
        bail!(
            "backtest {id} failed: {}: {}",
            error["code"].as_str().unwrap_or("error"),
            error["message"].as_str().unwrap_or_default()
        );
    }
    if !args.json {
        print_report(&id, &status["report"]);
    }
    Ok(())
}

fn print_report(id: &str, r: &Value) {
    println!(
        "backtest {id}: {} v{} on {} from {} to {} ({} bars, costs {})",
        r["agent"].as_str().unwrap_or_default(),
        r["version"],
        r["symbols"]
            .as_array()
            .map(|s| s
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","))
            .unwrap_or_default(),
        r["from"].as_str().unwrap_or_default(),
        r["to"].as_str().unwrap_or_default(),
        r["bars"],
        if r["costs"] == json!(true) {
            "on"
        } else {
            "off"
        },
    );
    let stages: Vec<String> = r["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            format!(
                "{} v{}",
                s["agent"].as_str().unwrap_or_default(),
                s["version"]
            )
        })
        .collect();
    println!("stages (the tested one first): {}", stages.join(", "));
    let (m, b) = (&r["metrics"], &r["benchmark"]);
    let pct = |v: &Value| {
        v.as_f64()
            .map_or("-".to_string(), |n| format!("{:.2} %", n * 100.0))
    };
    let num = |v: &Value| v.as_f64().map_or("-".to_string(), |n| format!("{n:.3}"));
    let usd = |v: &Value| v.as_f64().map_or("-".to_string(), |n| format!("{n:.2}"));
    println!("{:<24} {:>14} {:>14}", "", "strategy", "buy & hold");
    for (name, ours, theirs) in [
        (
            "total return",
            pct(&m["total_return"]),
            pct(&b["total_return"]),
        ),
        (
            "annualised return",
            pct(&m["annualized_return"]),
            pct(&b["annualized_return"]),
        ),
        ("volatility", pct(&m["volatility"]), pct(&b["volatility"])),
        ("Sharpe", num(&m["sharpe"]), num(&b["sharpe"])),
        ("Sortino", num(&m["sortino"]), num(&b["sortino"])),
        ("Calmar", num(&m["calmar"]), num(&b["calmar"])),
        (
            "max drawdown",
            pct(&m["max_drawdown"]),
            pct(&b["max_drawdown"]),
        ),
        (
            "drawdown duration (bars)",
            m["max_drawdown_periods"].to_string(),
            b["max_drawdown_periods"].to_string(),
        ),
        ("exposure", pct(&m["exposure"]), pct(&b["exposure"])),
    ] {
        println!("{name:<24} {ours:>14} {theirs:>14}");
    }
    println!(
        "trades {}  win rate {}  profit factor {}  average win {}  average loss {}  turnover {}",
        m["trades"],
        pct(&m["win_rate"]),
        num(&m["profit_factor"]),
        usd(&m["average_win"]),
        usd(&m["average_loss"]),
        num(&m["turnover"]),
    );
    println!(
        "fees {}  slippage {}  LLM calls {} (replayed {})  LLM cost per decision {}",
        usd(&m["fees"]),
        usd(&m["slippage"]),
        r["llm"]["calls"],
        r["llm"]["replayed"],
        usd(&m["llm_cost_per_decision"]),
    );
    if let Some(walk) = r.get("walk_forward").filter(|w| !w.is_null()) {
        println!(
            "walk-forward ({} windows, by {}):",
            walk["windows_kind"].as_str().unwrap_or_default(),
            walk["objective"].as_str().unwrap_or_default()
        );
        for w in walk["windows"].as_array().into_iter().flatten() {
            println!(
                "  in {} … {}  out {} … {}  {}  in-sample {}  out-of-sample {}",
                w["in_sample"][0].as_str().unwrap_or_default(),
                w["in_sample"][1].as_str().unwrap_or_default(),
                w["out_of_sample"][0].as_str().unwrap_or_default(),
                w["out_of_sample"][1].as_str().unwrap_or_default(),
                w["params"],
                num(&w["in_sample_score"]),
                num(&w["out_of_sample_score"]),
            );
        }
        println!(
            "  in-sample mean {}  out-of-sample (chained) {}",
            num(&walk["in_sample_score"]),
            num(&walk["out_of_sample_score"])
        );
    }
    if let Some(error) = r["last_error"].as_str() {
        println!("{} calls answered an error; the last: {error}", r["errors"]);
    }
    println!(
        "input hash {}  trade log hash {}",
        r["input_hash"].as_str().unwrap_or_default(),
        r["trade_log_hash"].as_str().unwrap_or_default()
    );
}
