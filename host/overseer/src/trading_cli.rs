//! The trading commands: the portfolio, orders, fills, the risk gate and its kill switch,
//! and trade memory, read from (or sent to) a running daemon.

use clap::Subcommand;
use serde_json::{Value, json};

use crate::client::{ClientArgs, send};

#[derive(Debug, Subcommand)]
pub enum TradingCommand {
    /// The account: cash, equity, exposure, P&L and positions.
    Portfolio {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Orders, newest first.
    Orders {
        /// Only those still waiting to fill.
        #[arg(long)]
        open: bool,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Fills, newest first.
    Trades {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The risk gate: its state and limits, and the latest refusals.
    Risk {
        #[arg(long, default_value_t = 10)]
        limit: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Halt trading at once: nothing passes the gate and open orders are cancelled.
    Kill {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Resume trading after a halt.
    Resume {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Backtest an agent (any version) over past bars, with costs, the risk gate and
    /// optionally walk-forward; a progress bar, then its figures next to buy and hold.
    Backtest(Box<crate::backtest_cli::BacktestArgs>),
    /// The latest research results, newest first, as a table (with `--evidence`, each one's
    /// numbers too).
    Research {
        #[arg(long)]
        track: Option<String>,
        #[arg(long)]
        symbol: Option<String>,
        #[arg(long, default_value_t = 12)]
        limit: u32,
        #[arg(long)]
        evidence: bool,
        /// Print the results as JSON (for a front end or a file).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Recall from trade memory, most relevant first (the newest without a query).
    Memory {
        query: Option<String>,
        /// `shared/<name>` or `<agent>/<name>`.
        #[arg(long, default_value = "shared/trades")]
        collection: String,
        #[arg(long, default_value_t = 10)]
        k: u32,
        #[command(flatten)]
        client: ClientArgs,
    },
}

fn money(v: &Value) -> String {
    v.as_f64().map_or("-".to_string(), |n| format!("{n:.2}"))
}

/// Throw the kill switch, or resume.
async fn set_risk(c: &ClientArgs, action: &str) -> anyhow::Result<()> {
    let request = c
        .post(&c.client()?, "/v1/risk")
        .header("content-type", "application/json")
        .body(json!({ "action": action }).to_string());
    let value = send(request).await?;
    println!(
        "trading {}",
        value["risk"]["state"].as_str().unwrap_or_default()
    );
    Ok(())
}

/// Run one trading command against the daemon.
pub async fn run(command: TradingCommand) -> anyhow::Result<()> {
    match command {
        TradingCommand::Portfolio { client: c } => {
            let p = send(c.client()?.get(c.url("/v1/portfolio"))).await?;
            println!(
                "as of {}  equity {}  cash {}  gross exposure {}  realised {}  unrealised {}  commissions {}  risk {}",
                p["as_of"].as_str().unwrap_or_default(),
                money(&p["equity"]),
                money(&p["cash"]),
                money(&p["gross_exposure"]),
                money(&p["realized_pnl"]),
                money(&p["unrealized_pnl"]),
                money(&p["commissions"]),
                p["risk_state"].as_str().unwrap_or_default(),
            );
            for position in p["positions"].as_array().into_iter().flatten() {
                println!(
                    "  {:<8} {:>12.4} shares  avg {:>10}  price {:>10}  value {:>12}  unrealised {:>10}",
                    position["symbol"].as_str().unwrap_or_default(),
                    position["quantity"].as_f64().unwrap_or_default(),
                    money(&position["average_price"]),
                    money(&position["price"]),
                    money(&position["market_value"]),
                    money(&position["unrealized_pnl"]),
                );
            }
        }
        TradingCommand::Orders {
            open,
            limit,
            client: c,
        } => {
            let path = format!("/v1/orders?open={open}&limit={limit}");
            let value = send(c.client()?.get(c.url(&path))).await?;
            for o in value["orders"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:<10} {:<5} {:<8} {:>12.4} {:<8} {:>10} {}",
                    o["id"].as_str().unwrap_or_default(),
                    o["submitted"].as_str().unwrap_or_default(),
                    o["side"].as_str().unwrap_or_default(),
                    o["symbol"].as_str().unwrap_or_default(),
                    o["quantity"].as_f64().unwrap_or_default(),
                    o["status"].as_str().unwrap_or_default(),
                    money(&o["fill_price"]),
                    o["reason"].as_str().unwrap_or_default(),
                );
            }
        }
        TradingCommand::Trades { limit, client: c } => {
            let value = send(c.client()?.get(c.url(&format!("/v1/trades?limit={limit}")))).await?;
            for t in value["trades"].as_array().into_iter().flatten() {
                println!(
                    "{:<10} {:<5} {:<8} {:>12.4} @ {:>10}  commission {:>8}  slippage {:>8}  {}",
                    t["date"].as_str().unwrap_or_default(),
                    t["side"].as_str().unwrap_or_default(),
                    t["symbol"].as_str().unwrap_or_default(),
                    t["quantity"].as_f64().unwrap_or_default(),
                    money(&t["price"]),
                    money(&t["commission"]),
                    money(&t["slippage"]),
                    t["order_id"].as_str().unwrap_or_default(),
                );
            }
        }
        TradingCommand::Risk { limit, client: c } => {
            let value = send(c.client()?.get(c.url(&format!("/v1/risk?limit={limit}")))).await?;
            let risk = &value["risk"];
            println!(
                "{}{}  (kill switch {})",
                risk["state"].as_str().unwrap_or_default(),
                risk["reason"]
                    .as_str()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default(),
                if risk["kill_switch"] == json!(true) {
                    "on"
                } else {
                    "off"
                },
            );
            println!("limits: {}", risk["limits"]);
            for r in value["refusals"].as_array().into_iter().flatten() {
                println!(
                    "  {:<10} {:<20} {:<5} {:<8} {} — {}",
                    r["as_of"].as_str().unwrap_or_default(),
                    r["code"].as_str().unwrap_or_default(),
                    r["side"].as_str().unwrap_or_default(),
                    r["symbol"].as_str().unwrap_or_default(),
                    r["agent"].as_str().unwrap_or_default(),
                    r["message"].as_str().unwrap_or_default(),
                );
            }
        }
        TradingCommand::Backtest(args) => crate::backtest_cli::run(*args).await?,
        TradingCommand::Research {
            track,
            symbol,
            limit,
            evidence,
            json,
            client: c,
        } => {
            let mut url = reqwest::Url::parse(&c.url("/v1/research/results"))?;
            url.query_pairs_mut()
                .append_pair("limit", &limit.to_string());
            if let Some(track) = &track {
                url.query_pairs_mut().append_pair("track", track);
            }
            if let Some(symbol) = &symbol {
                url.query_pairs_mut().append_pair("symbol", symbol);
            }
            let value = send(c.client()?.get(url)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&value["results"])?);
                return Ok(());
            }
            println!(
                "{:<12} {:<10} {:<11} {:>5} {:>4}  thesis",
                "track", "as of", "status", "conf", "n"
            );
            for r in value["results"].as_array().into_iter().flatten() {
                println!(
                    "{:<12} {:<10} {:<11} {:>5.2} {:>4}  {}",
                    r["track"].as_str().unwrap_or_default(),
                    r["as_of"].as_str().unwrap_or_default(),
                    r["status"].as_str().unwrap_or_default(),
                    r["confidence"].as_f64().unwrap_or_default(),
                    r["evidence"].as_array().map_or(0, Vec::len),
                    r["thesis"].as_str().unwrap_or_default(),
                );
                if evidence {
                    for e in r["evidence"].as_array().into_iter().flatten() {
                        println!(
                            "    {:<24} {:<10} {:>14.6}  {}",
                            e["metric"].as_str().unwrap_or_default(),
                            e["symbol"].as_str().unwrap_or_default(),
                            e["value"].as_f64().unwrap_or_default(),
                            e["source"].as_str().unwrap_or_default(),
                        );
                    }
                }
            }
        }
        TradingCommand::Kill { client: c } => set_risk(&c, "kill").await?,
        TradingCommand::Resume { client: c } => set_risk(&c, "resume").await?,
        TradingCommand::Memory {
            query,
            collection,
            k,
            client: c,
        } => {
            let mut url = reqwest::Url::parse(&c.url("/v1/memory"))?;
            url.query_pairs_mut()
                .append_pair("collection", &collection)
                .append_pair("q", query.as_deref().unwrap_or(""))
                .append_pair("k", &k.to_string());
            let value = send(c.client()?.get(url)).await?;
            for m in value["memories"].as_array().into_iter().flatten() {
                println!(
                    "#{:<6} {:>8.3}  {}  {}",
                    m["id"],
                    m["score"].as_f64().unwrap_or_default(),
                    m["text"].as_str().unwrap_or_default(),
                    m["metadata"],
                );
            }
        }
    }
    Ok(())
}
