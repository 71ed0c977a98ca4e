//! `performance-analyst`: each run (hourly, or invoked) reads every serving agent's calls over
//! `window_ms` through the `fleet` interface and publishes `performance.report`:
//!
//! `{window_ms, agents: [{agent, calls, error_rate, p95_ms, deadline_share, fuel_per_call,
//! peak_memory, trend}], bottleneck, hogs: {fuel, memory}, recommendations: [{agent, metric,
//! value, target, message}], tracked: [{agent, metric, target, made_ms, value, status}]}`
//!
//! - `trend` compares the p95 latency and the error rate with the last run's (kept in kv):
//!   `slower`/`faster` past a fifth either way, `more_failures`/`fewer_failures`, else
//!   `steady` (`new` without a last run);
//! - the bottleneck is the stage of the tick-to-order path (`order_path`) with the highest
//!   p95 latency;
//! - recommendations: p95 at half the deadline or more (target: 40 %), more than 5 % of calls
//!   failing (target: 1 %), fuel a call at three times the median agent's or more (target:
//!   twice the median);
//! - each recommendation is tracked until its metric meets its target (`met`), the agent stops
//!   serving (`gone`), or stays `open`.

use overseer_guest::fleet::{self, AgentWindow};
use overseer_guest::{Agent, Error, Event, Info, calculator, kv};
use serde_json::{Value, json};

struct Analyst;

/// A figure of an agent's window.
fn figure(w: &AgentWindow, metric: &str) -> Option<f64> {
    match metric {
        "p95_share" => w
            .p95_ms
            .filter(|_| w.deadline_ms > 0)
            .map(|p| p / w.deadline_ms as f64),
        "error_rate" => (w.calls > 0).then_some(w.error_rate),
        "fuel_per_call" => (w.calls > 0).then(|| w.fuel as f64 / f64::from(w.calls)),
        _ => None,
    }
}

fn trend(w: &AgentWindow, last: &Value) -> &'static str {
    let (Some(then), Some(now)) = (last["p95_ms"].as_f64(), w.p95_ms) else {
        return "new";
    };
    let failed_then = last["error_rate"].as_f64().unwrap_or(0.0);
    if now > then * 1.2 {
        "slower"
    } else if now < then / 1.2 {
        "faster"
    } else if w.error_rate > failed_then + 0.05 {
        "more_failures"
    } else if w.error_rate + 0.05 < failed_then {
        "fewer_failures"
    } else {
        "steady"
    }
}

fn recommendations(windows: &[AgentWindow], now_ms: u64) -> Vec<Value> {
    let mut per_call: Vec<f64> = windows
        .iter()
        .filter_map(|w| figure(w, "fuel_per_call"))
        .collect();
    per_call.sort_by(f64::total_cmp);
    let median = per_call.get(per_call.len() / 2).copied().unwrap_or(0.0);
    let mut out = Vec::new();
    for w in windows.iter().filter(|w| w.calls > 0) {
        let mut push = |metric: &str, value: f64, target: f64, message: String| {
            out.push(json!({ "agent": w.agent, "metric": metric, "value": value, "target": target, "message": message, "made_ms": now_ms }));
        };
        if let Some(share) = figure(w, "p95_share").filter(|s| *s >= 0.5) {
            push(
                "p95_share",
                share,
                0.4,
                format!("{}: p95 {:.0}% of its deadline", w.agent, share * 100.0),
            );
        }
        if w.error_rate > 0.05 {
            push(
                "error_rate",
                w.error_rate,
                0.01,
                format!("{}: {:.1}% of calls fail", w.agent, w.error_rate * 100.0),
            );
        }
        if let Some(fuel) = figure(w, "fuel_per_call")
            .filter(|f| per_call.len() >= 3 && median > 0.0 && *f >= 3.0 * median)
        {
            push(
                "fuel_per_call",
                fuel,
                2.0 * median,
                format!(
                    "{}: {fuel:.0} fuel a call, {:.1}× the median",
                    w.agent,
                    fuel / median
                ),
            );
        }
    }
    out
}

/// Earlier recommendations checked against this window; new ones added.
fn track(earlier: Vec<Value>, new: &[Value], windows: &[AgentWindow]) -> Vec<Value> {
    let mut tracked: Vec<Value> = earlier
        .into_iter()
        .filter(|r| r["status"] == "open")
        .map(|mut r| {
            let agent = r["agent"].as_str().unwrap_or_default();
            let metric = r["metric"].as_str().unwrap_or_default();
            let target = r["target"].as_f64().unwrap_or(0.0);
            let status = match windows.iter().find(|w| w.agent == agent) {
                None => "gone",
                Some(w) => match figure(w, metric) {
                    Some(value) => {
                        r["value"] = json!(value);
                        if value <= target { "met" } else { "open" }
                    }
                    None => "open",
                },
            };
            r["status"] = json!(status);
            r
        })
        .collect();
    for n in new {
        let known = tracked.iter().any(|t| {
            t["agent"] == n["agent"] && t["metric"] == n["metric"] && t["status"] == "open"
        });
        if !known {
            let mut t = n.clone();
            t["status"] = json!("open");
            tracked.push(t);
        }
    }
    tracked
}

impl Agent for Analyst {
    fn describe() -> Info {
        Info {
            name: "performance-analyst".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Trends, bottlenecks, hogs and tracked recommendations of every agent"
                .to_string(),
            subscriptions: Vec::new(),
        }
    }

    fn handle(_event: Event) -> Result<String, Error> {
        let window_ms: u64 = overseer_guest::config_parsed("window_ms").unwrap_or(3_600_000);
        let windows = fleet::telemetry(window_ms.clamp(1, 86_400_000))?;
        let now_ms = overseer_guest::now_ms();
        let last: Value = kv::get("last")?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null);
        let agents: Vec<Value> = windows
            .iter()
            .map(|w| {
                json!({
                    "agent": w.agent,
                    "calls": w.calls,
                    "error_rate": w.error_rate,
                    "p95_ms": w.p95_ms,
                    "deadline_share": figure(w, "p95_share"),
                    "fuel_per_call": figure(w, "fuel_per_call"),
                    "peak_memory": w.peak_memory,
                    "trend": trend(w, &last[&w.agent]),
                })
            })
            .collect();
        let path = overseer_guest::config("order_path").unwrap_or_default();
        let bottleneck = path
            .split(',')
            .filter_map(|stage| windows.iter().find(|w| w.agent == stage.trim()))
            .filter(|w| w.p95_ms.is_some())
            .max_by(|a, b| a.p95_ms.unwrap_or(0.0).total_cmp(&b.p95_ms.unwrap_or(0.0)))
            .map(|w| json!({ "agent": w.agent, "p95_ms": w.p95_ms }));
        let hog = |key: fn(&AgentWindow) -> f64| {
            windows
                .iter()
                .filter(|w| w.calls > 0)
                .max_by(|a, b| key(a).total_cmp(&key(b)))
                .map(|w| w.agent.clone())
        };
        let new = recommendations(&windows, now_ms);
        let earlier: Vec<Value> = kv::get("tracked")?
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        let tracked = track(earlier, &new, &windows);
        let report = json!({
            "window_ms": window_ms,
            "agents": agents,
            "mean_error_rate": calculator::mean(&windows.iter().map(|w| w.error_rate).collect::<Vec<_>>()),
            "bottleneck": bottleneck,
            "hogs": {
                "fuel": hog(|w| w.fuel as f64 / f64::from(w.calls.max(1))),
                "memory": hog(|w| w.peak_memory as f64),
            },
            "recommendations": new,
            "tracked": tracked,
        });
        let keep: serde_json::Map<String, Value> = windows
            .iter()
            .map(|w| {
                (
                    w.agent.clone(),
                    json!({ "p95_ms": w.p95_ms, "error_rate": w.error_rate }),
                )
            })
            .collect();
        kv::set("last", &Value::Object(keep).to_string())?;
        kv::set("tracked", &json!(tracked).to_string())?;
        let text = report.to_string();
        overseer_guest::emit("performance.report", &text)?;
        Ok(text)
    }
}

overseer_guest::export!(Analyst);
