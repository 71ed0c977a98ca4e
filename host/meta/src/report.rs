//! The daily report: system health, performance, activities, trading and research, and
//! recommendations, as JSON (kept in the store), Markdown, and a self-contained HTML page
//! whose charts are drawn by Chart.js (MIT, bundled: no network needed to read it).
//!
//! ```json
//! {date, from_ms, to_ms, generated_ms,
//!  health: {agents, serving, quarantined, healthy, health_pct, alerts: {opened, resolved, open, by_type}},
//!  performance: {calls, failures, success_rate, per_minute, agents: [Window]},
//!  activities: {total, by_action: {activate: n, …}, entries: [{seq, at_ms, actor, action, subject}]},
//!  trading: {equity, cash, realized_pnl, days, equity_curve: [{day, equity}]} | null,
//!  research: {results, by_track: {track: n}},
//!  recommendations: [{agent, kind, message, metric, value, target}]}
//! ```

use std::collections::BTreeMap;

use overseer_kernel::Kernel;
use overseer_store::{AlertFilter, EventFilter};
use serde_json::{Value, json};

use crate::config::OverseerConfig;
use crate::loops::Failure;
use crate::telemetry::Window;

/// Chart.js 4.6.1, as published on npm (`dist/chart.umd.min.js`); its license is
/// `assets/chart.js-LICENSE.md`.
const CHART_JS: &str = include_str!("../assets/chart.umd.min.js");

/// Recommendations from agents' windows: slow ones (p95 at `slow_share` of the deadline or
/// more), failing ones (above 5 % of calls) and the fuel-hungriest (three times the median
/// fuel per call of the agents with calls). Each names the metric to watch and its target.
pub fn recommendations(windows: &[(Window, Option<f64>)], config: &OverseerConfig) -> Vec<Value> {
    let mut out = Vec::new();
    let mut per_call: Vec<f64> = windows
        .iter()
        .filter(|(w, _)| w.calls > 0)
        .map(|(w, _)| w.fuel as f64 / w.calls as f64)
        .collect();
    per_call.sort_by(f64::total_cmp);
    let median = per_call.get(per_call.len() / 2).copied().unwrap_or(0.0);
    for (w, deadline_ms) in windows {
        if w.calls == 0 {
            continue;
        }
        if let (Some(p95), Some(deadline)) = (w.p95_ms, deadline_ms)
            && p95 >= config.slow_share * deadline
        {
            out.push(json!({
                "agent": w.agent, "kind": "code_optimization",
                "message": format!("{} is slow: p95 {p95:.0} ms of a {deadline:.0} ms deadline; profile its hot path or raise its deadline", w.agent),
                "metric": "p95_ms", "value": p95, "target": config.recovered_share * deadline,
            }));
        }
        if w.error_rate > 0.05 {
            out.push(json!({
                "agent": w.agent, "kind": "system_improvement",
                "message": format!("{} fails {:.1}% of its calls: read its log and the findings of its source", w.agent, w.error_rate * 100.0),
                "metric": "error_rate", "value": w.error_rate, "target": 0.01,
            }));
        }
        let fuel = w.fuel as f64 / w.calls as f64;
        if per_call.len() >= 3 && median > 0.0 && fuel >= 3.0 * median {
            out.push(json!({
                "agent": w.agent, "kind": "resource_allocation",
                "message": format!("{} burns {fuel:.0} fuel a call, {:.1}× the median agent's", w.agent, fuel / median),
                "metric": "fuel_per_call", "value": fuel, "target": median * 2.0,
            }));
        }
    }
    out
}

/// The report of the window from `from_ms` to `to_ms`, dated by its end (UTC).
pub async fn build(
    kernel: &Kernel,
    config: &OverseerConfig,
    windows: &[(Window, Option<f64>)],
    from_ms: u64,
    to_ms: u64,
) -> Result<Value, Failure> {
    let store = &kernel.store;
    let err = |e: overseer_store::Error| e.to_string();
    let date = chrono::DateTime::from_timestamp_millis(i64::try_from(to_ms).unwrap_or(0))
        .map(|t| t.date_naive().to_string())
        .unwrap_or_default();

    // Health: who serves, who is out, and the alerts of the window.
    let slots = kernel.registry.slots();
    let serving = slots.iter().filter(|s| s.active().is_some()).count();
    let quarantined = slots.iter().filter(|s| s.quarantined()).count();
    let healthy = windows
        .iter()
        .filter(|(w, _)| w.failures == 0)
        .filter(|(w, _)| {
            kernel
                .registry
                .get(&w.agent)
                .is_some_and(|s| !s.quarantined())
        })
        .count();
    let alerts = store
        .alerts(&AlertFilter {
            open: None,
            agent: None,
            before: None,
            limit: 10_000,
        })
        .await
        .map_err(err)?;
    let in_window = |ms: u64| (from_ms..to_ms).contains(&ms);
    let opened: Vec<_> = alerts.iter().filter(|a| in_window(a.opened_ms)).collect();
    let resolved = alerts
        .iter()
        .filter(|a| a.resolved_ms.is_some_and(in_window))
        .count();
    let mut by_type: BTreeMap<&str, u64> = BTreeMap::new();
    for a in &opened {
        *by_type.entry(a.kind.as_str()).or_default() += 1;
    }
    let open_now = alerts.iter().filter(|a| a.resolved_ms.is_none()).count();

    // Performance: the window's calls.
    let calls: usize = windows.iter().map(|(w, _)| w.calls).sum();
    let failures: usize = windows.iter().map(|(w, _)| w.failures).sum();
    let minutes = (to_ms.saturating_sub(from_ms)) as f64 / 60_000.0;

    // Activities: the audit trail of the window.
    let entries = store.audit_between(from_ms, to_ms).await.map_err(err)?;
    let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
    for e in &entries {
        *by_action.entry(e.action.clone()).or_default() += 1;
    }
    let listed: Vec<Value> = entries
        .iter()
        .rev()
        .take(50)
        .map(|e| json!({ "seq": e.seq, "at_ms": e.at_ms, "actor": e.actor, "action": e.action, "subject": e.subject }))
        .collect();

    // Trading: the account's curve, when there is one.
    let curve = store.equity_curve().await.map_err(err)?;
    let trading = curve.last().map(|last| {
        let tail: Vec<Value> = curve
            .iter()
            .rev()
            .take(250)
            .rev()
            .map(|p| json!({ "day": p.day, "equity": p.equity }))
            .collect();
        json!({
            "equity": last.equity,
            "cash": last.cash,
            "realized_pnl": last.realized_pnl,
            "days": curve.len(),
            "equity_curve": tail,
        })
    });

    // Research: results published in the window, by track.
    let results = store
        .events(&EventFilter {
            topic: Some("research.result"),
            since_ms: from_ms,
            limit: 10_000,
            newest_first: true,
            ..EventFilter::default()
        })
        .await
        .map_err(err)?;
    let mut by_track: BTreeMap<String, u64> = BTreeMap::new();
    let mut counted = 0;
    for e in results.iter().filter(|e| e.at_ms < to_ms) {
        let track = serde_json::from_str::<Value>(&e.payload)
            .ok()
            .and_then(|p| p["track"].as_str().map(str::to_string))
            .unwrap_or_else(|| e.source.clone());
        *by_track.entry(track).or_default() += 1;
        counted += 1;
    }

    Ok(json!({
        "date": date,
        "from_ms": from_ms,
        "to_ms": to_ms,
        "generated_ms": overseer_store::now_ms(),
        "health": {
            "agents": slots.len(),
            "serving": serving,
            "quarantined": quarantined,
            "healthy": healthy,
            "health_pct": if windows.is_empty() { 100.0 } else { 100.0 * healthy as f64 / windows.len() as f64 },
            "alerts": { "opened": opened.len(), "resolved": resolved, "open": open_now, "by_type": by_type },
        },
        "performance": {
            "calls": calls,
            "failures": failures,
            "success_rate": if calls == 0 { 1.0 } else { 1.0 - failures as f64 / calls as f64 },
            "per_minute": if minutes > 0.0 { calls as f64 / minutes } else { 0.0 },
            "agents": windows.iter().map(|(w, _)| w).collect::<Vec<_>>(),
        },
        "activities": { "total": entries.len(), "by_action": by_action, "entries": listed },
        "trading": trading,
        "research": { "results": counted, "by_track": by_track },
        "recommendations": recommendations(windows, config),
    }))
}

fn ms(v: &Value) -> String {
    v.as_f64().map_or("–".to_string(), |v| format!("{v:.1}"))
}

/// The report as Markdown.
pub fn markdown(report: &Value) -> String {
    let h = &report["health"];
    let p = &report["performance"];
    let mut out = format!(
        "# Daily report {}\n\n## System health\n\n- agents: {} ({} serving, {} quarantined)\n- healthy: {} ({:.1}%)\n- alerts: {} opened, {} resolved, {} open now\n\n",
        report["date"].as_str().unwrap_or_default(),
        h["agents"],
        h["serving"],
        h["quarantined"],
        h["healthy"],
        h["health_pct"].as_f64().unwrap_or(0.0),
        h["alerts"]["opened"],
        h["alerts"]["resolved"],
        h["alerts"]["open"],
    );
    out.push_str(&format!(
        "## Performance\n\n{} calls, {} failed ({:.2}% success), {:.1} a minute.\n\n| agent | calls | failures | p50 ms | p95 ms | fuel |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
        p["calls"],
        p["failures"],
        p["success_rate"].as_f64().unwrap_or(1.0) * 100.0,
        p["per_minute"].as_f64().unwrap_or(0.0),
    ));
    for a in p["agents"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            a["agent"].as_str().unwrap_or_default(),
            a["calls"],
            a["failures"],
            ms(&a["p50_ms"]),
            ms(&a["p95_ms"]),
            a["fuel"],
        ));
    }
    out.push_str("\n## Activities\n\n");
    for (action, n) in report["activities"]["by_action"]
        .as_object()
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("- {action}: {n}\n"));
    }
    if let Some(t) = report["trading"].as_object() {
        out.push_str(&format!(
            "\n## Trading\n\nequity {:.2}, cash {:.2}, realized P&L {:.2} over {} days\n",
            t["equity"].as_f64().unwrap_or(0.0),
            t["cash"].as_f64().unwrap_or(0.0),
            t["realized_pnl"].as_f64().unwrap_or(0.0),
            t["days"],
        ));
    }
    out.push_str(&format!(
        "\n## Research\n\n{} results\n",
        report["research"]["results"]
    ));
    for (track, n) in report["research"]["by_track"]
        .as_object()
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("- {track}: {n}\n"));
    }
    out.push_str("\n## Recommendations\n\n");
    let recommendations = report["recommendations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if recommendations.is_empty() {
        out.push_str("None.\n");
    }
    for r in recommendations {
        out.push_str(&format!(
            "- {} ({}): {}\n",
            r["agent"].as_str().unwrap_or_default(),
            r["kind"].as_str().unwrap_or_default(),
            r["message"].as_str().unwrap_or_default()
        ));
    }
    out
}

/// Text made safe inside HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The report as one HTML page: the Markdown's figures as tables, and charts of calls and
/// failures per agent, p95 latency per agent and the equity curve, drawn by the bundled
/// Chart.js from the report's JSON embedded in the page.
pub fn html(report: &Value) -> String {
    let date = escape(report["date"].as_str().unwrap_or_default());
    let mut rows = String::new();
    for a in report["performance"]["agents"]
        .as_array()
        .into_iter()
        .flatten()
    {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(a["agent"].as_str().unwrap_or_default()),
            a["calls"],
            a["failures"],
            ms(&a["p50_ms"]),
            ms(&a["p95_ms"]),
        ));
    }
    let mut recommendations = String::new();
    for r in report["recommendations"].as_array().into_iter().flatten() {
        recommendations.push_str(&format!(
            "<li>{}</li>",
            escape(r["message"].as_str().unwrap_or_default())
        ));
    }
    let h = &report["health"];
    // Nothing in the data can end or re-open the script element: `<`, `>` and `&` are
    // written as JSON escapes, which parse back to the same text.
    let data = report
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");

    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>overseer daily report {date}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:right}}td:first-child{{text-align:left}}.charts{{display:grid;grid-template-columns:1fr 1fr;gap:1rem}}canvas{{max-height:18rem}}</style>
</head><body>
<h1>Daily report {date}</h1>
<h2>System health</h2>
<p>{agents} agents, {serving} serving, {quarantined} quarantined; {healthy} healthy ({pct:.1}%). Alerts: {opened} opened, {resolved} resolved, {open} open.</p>
<h2>Performance</h2>
<div class="charts"><canvas id="calls"></canvas><canvas id="latency"></canvas></div>
<table><tr><th>agent</th><th>calls</th><th>failures</th><th>p50 ms</th><th>p95 ms</th></tr>{rows}</table>
<h2>Trading</h2>
<canvas id="equity"></canvas>
<h2>Recommendations</h2>
<ul>{recommendations}</ul>
<script>{CHART_JS}</script>
<script id="report" type="application/json">{data}</script>
<script>
const report = JSON.parse(document.getElementById('report').textContent);
const agents = report.performance.agents;
const labels = agents.map(a => a.agent);
new Chart(document.getElementById('calls'), {{type: 'bar', data: {{labels, datasets: [
  {{label: 'calls', data: agents.map(a => a.calls)}},
  {{label: 'failures', data: agents.map(a => a.failures)}}]}}, options: {{animation: false}}}});
new Chart(document.getElementById('latency'), {{type: 'bar', data: {{labels, datasets: [
  {{label: 'p95 ms', data: agents.map(a => a.p95_ms)}}]}}, options: {{animation: false}}}});
const curve = report.trading ? report.trading.equity_curve : [];
new Chart(document.getElementById('equity'), {{type: 'line', data: {{labels: curve.map(p => p.day), datasets: [
  {{label: 'equity', data: curve.map(p => p.equity), pointRadius: 0}}]}}, options: {{animation: false}}}});
document.body.dataset.charts = Chart.instances ? Object.keys(Chart.instances).length : 0;
</script>
</body></html>
"#,
        agents = h["agents"],
        serving = h["serving"],
        quarantined = h["quarantined"],
        healthy = h["healthy"],
        pct = h["health_pct"].as_f64().unwrap_or(0.0),
        opened = h["alerts"]["opened"],
        resolved = h["alerts"]["resolved"],
        open = h["alerts"]["open"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_in_the_report_cannot_break_out_of_the_page() {
        let hostile = "</script><script>alert(1)</script><!--<script>";
        let report = json!({
            "date": hostile,
            "recommendations": [{ "message": hostile }],
            "performance": { "agents": [{ "agent": hostile }] },
        });
        let page = html(&report);
        assert_eq!(
            page.matches("<script").count(),
            3,
            "the page's own three scripts only"
        );
        assert!(!page.contains("alert(1)</script>"));
        // The embedded JSON reads back to the same text.
        let start = page.find("application/json\">").unwrap() + "application/json\">".len();
        let end = start + page[start..].find("</script>").unwrap();
        let data: Value = serde_json::from_str(&page[start..end]).unwrap();
        assert_eq!(data["date"], hostile);
    }
}
