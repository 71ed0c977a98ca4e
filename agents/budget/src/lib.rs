//! `budget`: the LLM budget allocator. It adds up the realised P&L of every `trade.closed`
//! since its last review; each hour it sets that against the dollars the trading agents spent
//! on the LLM over the same time (realised P&L per LLM dollar). When the ratio is positive it
//! moves `step` of each other agent's budget to the trading agents, when negative it moves
//! `step` of the trading agents' budgets to the others; every setting goes through the host,
//! which refuses anything past its caps. With no LLM spend there is nothing to judge.

use overseer_guest::budget::{self, AgentBudget};
use overseer_guest::{Agent, Error, Event, Info, kv, log};
use serde_json::{Value, json};

struct Budget;

fn config(key: &str, default: f64) -> f64 {
    overseer_guest::config(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn stored(key: &str) -> Result<f64, Error> {
    Ok(kv::get(key)?.and_then(|v| v.parse().ok()).unwrap_or(0.0))
}

fn trading_agents() -> Vec<String> {
    overseer_guest::config("trading_agents")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Set `agent`'s dollar budget to `usd` (tokens in proportion), logging what the host refuses.
fn set(agent: &AgentBudget, usd: f64) -> Option<Value> {
    let ratio = if agent.usd_per_day > 0.0 {
        usd / agent.usd_per_day
    } else {
        1.0
    };
    let tokens = (agent.tokens_per_day as f64 * ratio).round() as u64;
    match budget::set(&agent.agent, tokens, usd) {
        Ok(b) => Some(
            json!({ "agent": b.agent, "usd_per_day": b.usd_per_day, "tokens_per_day": b.tokens_per_day }),
        ),
        Err(e) => {
            log::warn(&format!(
                "{}: budget not moved: {}",
                agent.agent,
                e.message()
            ));
            None
        }
    }
}

fn review() -> Result<Value, Error> {
    let budgets = budget::budgets()?;
    let trading = trading_agents();
    // Dollars spent today by the trading agents; the day's usage restarts at midnight UTC.
    let spent_now: f64 = budgets
        .iter()
        .filter(|b| trading.contains(&b.agent))
        .map(|b| b.usd_used)
        .sum();
    let spent_before = stored("spent_at_review")?;
    let spent = if spent_now >= spent_before {
        spent_now - spent_before
    } else {
        spent_now
    };
    let pnl = stored("pnl_since_review")?;
    kv::set("spent_at_review", &spent_now.to_string())?;
    kv::set("pnl_since_review", "0")?;
    if spent < config("min_spend_usd", 0.01) {
        return Ok(json!({ "review": "no LLM spend to judge", "pnl": pnl, "spent_usd": spent }));
    }
    let per_dollar = pnl / spent;
    let step = config("step", 0.2).clamp(0.0, 1.0);
    let (gainers, givers): (Vec<&AgentBudget>, Vec<&AgentBudget>) = budgets
        .iter()
        .partition(|b| (per_dollar > 0.0) == trading.contains(&b.agent));
    let freed: f64 = givers.iter().map(|b| b.usd_per_day * step).sum();
    let mut moved = Vec::new();
    for giver in &givers {
        moved.extend(set(giver, giver.usd_per_day * (1.0 - step)));
    }
    if !gainers.is_empty() {
        let share = freed / gainers.len() as f64;
        for gainer in &gainers {
            moved.extend(set(gainer, gainer.usd_per_day + share));
        }
    }
    overseer_guest::metric("pnl_per_llm_dollar", per_dollar);
    Ok(json!({ "pnl": pnl, "spent_usd": spent, "pnl_per_llm_dollar": per_dollar, "moved": moved }))
}

impl Agent for Budget {
    fn describe() -> Info {
        Info {
            name: "budget".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "LLM budget moved by realised P&L per LLM dollar".to_string(),
            subscriptions: vec!["trade.closed".to_string()],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        if event.topic == "trade.closed" {
            let payload: Value = serde_json::from_str(&event.payload)
                .map_err(|e| Error::invalid_input(format!("payload: {e}")))?;
            let pnl = payload["closed"]["pnl"].as_f64().unwrap_or(0.0);
            let total = stored("pnl_since_review")? + pnl;
            kv::set("pnl_since_review", &total.to_string())?;
            return Ok(json!({ "pnl_since_review": total }).to_string());
        }
        Ok(review()?.to_string())
    }
}

overseer_guest::export!(Budget);
