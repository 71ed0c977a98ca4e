//! `action-executor`: answers research tasks. A task (a `research.task`, or an invoke) is
//! `{id, kind, specialisation?, symbols, question?, priority?, urls?, rule?}`; each is
//! answered once, with one result on `research.result`:
//!
//! `{track: "tasks", task, kind, specialisation, status, symbols, as_of, question, priority,
//! thesis, evidence: [{metric, symbol, value, source, as_of}], confidence, horizon,
//! suggested_action, actions: [{action, status, attempts, error?, message?}], pages?,
//! validation?, analysis?}`
//!
//! The actions a task gets, in order:
//! - `market`: the last `window` daily bars (253: a year of returns) of each symbol to as-of;
//! - `compute`: from those bars, with the SDK's calculator: the close, the day's return
//!   `c_t / c_{t−1} − 1`, its z-score against the 60 returns before it, the day's volume
//!   over the mean of the 20 before it, annualised volatility `sd(r)·√252`, the fall from
//!   the highest close of the last 252, RSI 14, SMA 20, and one-day historical VaR and CVaR
//!   at 95 %;
//! - `backtest` (kind `idea`): the task's `rule` on its first symbol, walk-forward, by the
//!   `validate_with` strategy (`validation` carries the backtest's id and out-of-sample
//!   figures);
//! - `web`: each of the task's `urls` and of the `web_sources` templates, read by the web
//!   researcher (`research.fetch` → `research.page`); the task is answered when every page
//!   is in, or on the first schedule tick after `page_wait_ms`, with the others reported
//!   failed (at most 5 pages a task);
//! - `llm`, when the host has a model: an analysis written from the evidence and the pages.
//!
//! An action that fails for a reason that may pass (`unavailable`, `failed`; for a page, a
//! site answering 429 or 5xx, or one that cannot be reached) is tried again, up to
//! `attempts` times, waiting `backoff_ms · 2^(n−1)` before try n + 1 (the LLM's retries are
//! the host's). Every action's outcome is in the result: a task whose actions failed is
//! answered `partial` (or `failed` without bars), never dropped. A task with an unknown kind
//! or symbol, or without an id, is `invalid-input` and makes no result.
//!
//! The research tracks run on their schedules; tasks are answered here, so one event makes
//! one answer.

use std::time::Duration;

use overseer_guest::research::{self, Series, TASK_KINDS, evidence, is_specialisation};
use overseer_guest::{Agent, Error, Event, Info, calculator, kv, log, market};
use serde_json::{Map, Value, json};

struct Executor;

/// Most symbols one task may name.
const MAX_SYMBOLS: usize = 20;
/// Most pages one task may ask for.
const MAX_URLS: usize = 5;
/// Characters of a page's text kept in the result.
const EXCERPT: usize = 1_000;
/// The longest wait between two attempts, in milliseconds.
const MAX_BACKOFF_MS: u64 = 10_000;
/// How long an answered task's id is remembered, so a task delivered again is not answered
/// twice: a week, in milliseconds.
const REMEMBER_MS: u64 = 7 * 86_400_000;

fn setting(key: &str, default: u64) -> u64 {
    overseer_guest::config_parsed(key).unwrap_or(default)
}

/// A task, checked.
struct Task {
    id: String,
    kind: &'static str,
    specialisation: String,
    symbols: Vec<String>,
    rule: Option<String>,
    urls: Vec<String>,
}

fn strings(value: &Value, field: &str, id: &str) -> Result<Vec<String>, Error> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                item.as_str().map(str::to_string).ok_or_else(|| {
                    Error::invalid_input(format!("task {id}: {field} must be strings"))
                })
            })
            .collect(),
        _ => Err(Error::invalid_input(format!(
            "task {id}: {field} must be a list"
        ))),
    }
}

/// Check a task: an id of 1 to 128 of `A-Z a-z 0-9 . _ : -`, a known kind and
/// specialisation, 1 to 20 symbols the market serves, at most 5 `http(s)` URLs, and a `rule`
/// for an idea.
fn parse(payload: &Value) -> Result<Task, Error> {
    let id = payload["id"].as_str().unwrap_or_default();
    let well_formed = (1..=128).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:_-".contains(c));
    if !well_formed {
        return Err(Error::invalid_input(
            "task: id must be 1 to 128 characters of A-Z a-z 0-9 . _ : -",
        ));
    }
    let asked = payload["kind"].as_str().unwrap_or_default();
    let Some((kind, default)) = TASK_KINDS.iter().find(|(k, _)| *k == asked) else {
        let known: Vec<&str> = TASK_KINDS.iter().map(|(k, _)| *k).collect();
        return Err(Error::invalid_input(format!(
            "task {id}: unknown kind {asked:?}; one of {}",
            known.join(", ")
        )));
    };
    let specialisation = payload["specialisation"]
        .as_str()
        .unwrap_or(default)
        .to_string();
    if !is_specialisation(&specialisation) {
        return Err(Error::invalid_input(format!(
            "task {id}: unknown specialisation {specialisation:?}"
        )));
    }
    let symbols = strings(&payload["symbols"], "symbols", id)?;
    if symbols.is_empty() || symbols.len() > MAX_SYMBOLS {
        return Err(Error::invalid_input(format!(
            "task {id}: 1 to {MAX_SYMBOLS} symbols"
        )));
    }
    let served = market::symbols();
    if let Some(unknown) = symbols.iter().find(|s| !served.contains(s)) {
        return Err(Error::invalid_input(format!(
            "task {id}: unknown symbol {unknown:?}; the market serves {}",
            served.join(", ")
        )));
    }
    let urls = strings(&payload["urls"], "urls", id)?;
    if urls.len() > MAX_URLS
        || urls
            .iter()
            .any(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(Error::invalid_input(format!(
            "task {id}: at most {MAX_URLS} http(s) urls"
        )));
    }
    let rule = payload["rule"].as_str().map(str::to_string);
    if *kind == "idea" && rule.is_none() {
        return Err(Error::invalid_input(format!(
            "task {id}: an idea names the rule to backtest"
        )));
    }
    Ok(Task {
        id: id.to_string(),
        kind,
        specialisation,
        symbols,
        rule,
        urls,
    })
}

/// Whether an error may pass if the action is tried again.
fn retryable(code: &str) -> bool {
    matches!(code, "unavailable" | "failed")
}

/// The wait before try `tried + 1`: `backoff_ms · 2^(tried−1)`, at most 10 s.
fn backoff(tried: u32) -> Duration {
    let first = setting("backoff_ms", 250);
    let factor = 1u64 << tried.saturating_sub(1).min(16);
    Duration::from_millis(first.saturating_mul(factor).min(MAX_BACKOFF_MS))
}

fn max_attempts() -> u32 {
    setting("attempts", 3).clamp(1, 10) as u32
}

/// Run `action` until it succeeds, fails for good, or has had its attempts, waiting the
/// backoff between tries. Answers the outcome and its report.
fn retried<T>(name: &str, mut action: impl FnMut() -> Result<T, Error>) -> (Option<T>, Value) {
    let attempts = max_attempts();
    let mut tried = 0;
    loop {
        tried += 1;
        match action() {
            Ok(value) => {
                return (
                    Some(value),
                    json!({ "action": name, "status": "ok", "attempts": tried }),
                );
            }
            Err(e) if tried < attempts && retryable(e.code()) => {
                log::warn(&format!(
                    "{name}: {} (try {tried} of {attempts})",
                    e.message()
                ));
                std::thread::sleep(backoff(tried));
            }
            Err(e) => {
                log::warn(&format!("{name}: {} after {tried} tries", e.message()));
                return (
                    None,
                    json!({ "action": name, "status": "failed", "attempts": tried, "error": e.code(), "message": e.message() }),
                );
            }
        }
    }
}

/// The task's numbers for each symbol, from its bars.
fn compute(series: &[Series], as_of: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for s in series {
        let closes = s.closes();
        let returns = calculator::returns(&closes);
        let source = s.source();
        let day = returns.last().copied();
        // The day's return as a z-score against the 60 returns before it.
        let before = &returns[returns.len().saturating_sub(61)..returns.len().saturating_sub(1)];
        let zscore = day.map(|r| (r - calculator::mean(before)) / calculator::std_dev(before));
        let volumes: Vec<f64> = s.bars.iter().map(|b| b.volume).collect();
        let (var, cvar) = calculator::var_cvar(&returns, 0.95).unzip();
        for (metric, value) in [
            ("close", closes.last().copied()),
            ("return_1d", day),
            ("return_zscore_60d", zscore),
            ("volume_ratio_20d", calculator::volume_ratio(&volumes, 20)),
            (
                "volatility_annualised",
                Some(calculator::std_dev(&returns) * calculator::PERIODS_PER_YEAR.sqrt()),
            ),
            (
                "drawdown_from_252d_high",
                calculator::drawdown_from_high(&closes, 252),
            ),
            ("rsi_14", calculator::rsi(&closes, 14)),
            ("sma_20", calculator::sma(&closes, 20)),
            ("var_95_1d", var),
            ("cvar_95_1d", cvar),
        ] {
            if let Some(value) = value {
                out.push(evidence(metric, &s.symbol, value, &source, as_of));
            }
        }
    }
    out
}

/// The value of `metric` for `symbol` in `evidence`.
fn figure(evidence: &[Value], metric: &str, symbol: &str) -> Option<f64> {
    evidence
        .iter()
        .find(|e| e["metric"] == metric && e["symbol"] == symbol)
        .and_then(|e| e["value"].as_f64())
}

/// The thesis, suggested action, horizon and confidence of a result, from its numbers.
fn conclude(result: &mut Value) {
    let evidence: Vec<Value> = result["evidence"].as_array().cloned().unwrap_or_default();
    let kind = result["kind"].as_str().unwrap_or_default().to_string();
    let as_of = result["as_of"].as_str().unwrap_or_default().to_string();
    let symbols: Vec<String> = result["symbols"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:+.1}%", v * 100.0));
    let num = |v: Option<f64>, d: usize| v.map_or("n/a".to_string(), |v| format!("{v:.d$}"));
    let mut lines = Vec::new();
    let mut unusual = false;
    for symbol in &symbols {
        let get = |metric: &str| figure(&evidence, metric, symbol);
        if get("close").is_none() {
            lines.push(format!("{symbol}: no bars to read"));
            continue;
        }
        unusual |= get("return_zscore_60d").is_some_and(|s| s.abs() >= 3.0);
        lines.push(match kind.as_str() {
            "large_move" | "volume_spike" => format!(
                "{symbol} moved {} on {as_of}, {}σ of its 60 days before, on {}× its 20-day volume; RSI 14 {}, {} from its year's high",
                pct(get("return_1d")),
                num(get("return_zscore_60d"), 1),
                num(get("volume_ratio_20d"), 1),
                num(get("rsi_14"), 0),
                pct(get("drawdown_from_252d_high").map(|d| -d)),
            ),
            "drawdown" | "refusal" => format!(
                "{symbol} is {} from its year's high with {} annualised volatility; one-day VaR 95 % {}, CVaR {}",
                pct(get("drawdown_from_252d_high").map(|d| -d)),
                pct(get("volatility_annualised")),
                pct(get("var_95_1d")),
                pct(get("cvar_95_1d")),
            ),
            _ => format!(
                "{symbol} closed at {} ({} on the day), RSI 14 {}, {} annualised volatility",
                num(get("close"), 2),
                pct(get("return_1d")),
                num(get("rsi_14"), 0),
                pct(get("volatility_annualised")),
            ),
        });
    }
    let validation = &result["validation"];
    if kind == "idea" {
        let oos = &validation["out_of_sample"];
        lines.push(if validation["backtest"].is_string() {
            format!(
                "{} on {}: out-of-sample Sharpe {}, return {} against buy and hold {}",
                validation["rule"].as_str().unwrap_or_default(),
                validation["symbol"].as_str().unwrap_or_default(),
                num(oos["sharpe"].as_f64(), 2),
                pct(oos["total_return"].as_f64()),
                pct(validation["buy_and_hold_return"].as_f64()),
            )
        } else {
            "the idea could not be backtested".to_string()
        });
    }
    let oos = &validation["out_of_sample"];
    let beats = match (
        oos["sharpe"].as_f64(),
        oos["total_return"].as_f64(),
        validation["buy_and_hold_return"].as_f64(),
    ) {
        (Some(sharpe), Some(total), Some(hold)) => sharpe > 0.5 && total > hold,
        _ => false,
    };
    let suggested = match kind.as_str() {
        "idea" if beats => "trade it on paper behind the risk gate and watch it",
        "idea" => "do not trade it: it does not beat buy and hold out of sample",
        "large_move" | "volume_spike" if unusual => {
            "review positions in it; let a day pass before acting on the move"
        }
        "drawdown" | "refusal" => "keep its positions within their volatility budget",
        _ => "none",
    };
    let actions = result["actions"].as_array().cloned().unwrap_or_default();
    let ok = actions.iter().filter(|a| a["status"] == "ok").count();
    let failed = actions.iter().any(|a| a["status"] == "failed");
    // Without bars there are no numbers: nothing to conclude from.
    result["status"] = json!(match (evidence.is_empty(), failed) {
        (true, _) => "failed",
        (false, false) => "ok",
        (false, true) => "partial",
    });
    result["thesis"] = json!(lines.join("; "));
    result["suggested_action"] = json!(suggested);
    result["horizon"] = json!(match kind.as_str() {
        "idea" => "3m",
        "drawdown" | "refusal" => "1m",
        _ => "1w",
    });
    result["confidence"] = json!(if actions.is_empty() {
        0.0
    } else {
        0.6 * ok as f64 / actions.len() as f64
    });
}

fn pending_key(id: &str) -> String {
    format!("pending:{id}")
}

fn answered_key(id: &str) -> String {
    format!("answered:{id}")
}

/// Answer a task: the analysis when there is a model and numbers to write from, the
/// conclusion, one `research.result`, and the task remembered as answered.
fn finish(mut result: Value, as_of_ms: u64) -> Result<Value, Error> {
    let id = result["task"].as_str().unwrap_or_default().to_string();
    let evidence = result["evidence"].clone();
    if evidence.as_array().is_some_and(|e| !e.is_empty()) {
        let subject = format!(
            "Question: {}. Pages read: {}",
            result["question"].as_str().unwrap_or_default(),
            result["pages"]
        );
        // One call: the host's client retries what may pass, within its own deadline.
        match research::analysis(&subject, &evidence, as_of_ms) {
            Ok(None) => {}
            Ok(Some(fields)) => {
                push_action(
                    &mut result,
                    json!({ "action": "llm", "status": "ok", "attempts": 1 }),
                );
                if let Some(out) = result.as_object_mut() {
                    out.extend(fields);
                }
            }
            Err(e) => push_action(
                &mut result,
                json!({ "action": "llm", "status": "failed", "attempts": 1, "error": e.code(), "message": e.message() }),
            ),
        }
    }
    conclude(&mut result);
    // The call's writes and events are committed together at its end; marked answered
    // first, so a refused write never leaves a result that will be sent again.
    kv::set(&answered_key(&id), &overseer_guest::now_ms().to_string())?;
    kv::delete(&pending_key(&id))?;
    overseer_guest::emit("research.result", &result.to_string())?;
    overseer_guest::metric("tasks_answered", 1.0);
    Ok(result)
}

fn push_action(result: &mut Value, report: Value) {
    if let Some(actions) = result["actions"].as_array_mut() {
        actions.push(report);
    }
}

/// The pages to read for a task: its own, then the configured sources for each symbol.
fn urls(task: &Task) -> Vec<String> {
    let mut urls = task.urls.clone();
    let templates = overseer_guest::config("web_sources").unwrap_or_default();
    for template in templates
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        for symbol in &task.symbols {
            urls.push(template.replace("{symbol}", symbol));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    urls.retain(|url| seen.insert(url.clone()));
    urls.truncate(MAX_URLS);
    urls
}

fn fetch(url: &str, task: &str, attempt: u64) -> Result<(), Error> {
    let request = json!({ "url": url, "task": task, "attempt": attempt });
    overseer_guest::emit("research.fetch", &request.to_string())
}

/// Take a task: run its actions, and answer it, or ask for its pages and wait.
fn take(payload: &Value) -> Result<Value, Error> {
    let task = parse(payload)?;
    if kv::get(&answered_key(&task.id))?.is_some() || kv::get(&pending_key(&task.id))?.is_some() {
        return Ok(json!({ "task": task.id, "skipped": "taken already" }));
    }
    let as_of = market::as_of();
    let window = setting("window", 253).clamp(22, 2000) as usize;
    let (series, market_report) = retried("market", || {
        research::load(&task.symbols, &as_of.date, window, 2)
    });
    let series = series.unwrap_or_default();
    let numbers = compute(&series, &as_of.date);
    let mut result = json!({
        "track": "tasks",
        "task": task.id,
        "kind": task.kind,
        "specialisation": task.specialisation,
        "symbols": task.symbols,
        "as_of": as_of.date,
        "question": payload["question"],
        "priority": payload["priority"].as_str().unwrap_or("normal"),
        "evidence": numbers,
        "actions": [
            market_report,
            { "action": "compute", "status": if series.is_empty() { "skipped" } else { "ok" }, "attempts": 1, "numbers": numbers.len() },
        ],
    });
    if let (Some(rule), Some(symbol)) = (&task.rule, task.symbols.first()) {
        let (validation, report) = retried("backtest", || {
            research::validate_rule(rule, symbol, &as_of.date)
        });
        result["validation"] = validation.unwrap_or(Value::Null);
        push_action(&mut result, report);
    }
    let urls = urls(&task);
    if urls.is_empty() {
        return finish(result, as_of.at_ms);
    }
    let pages: Map<String, Value> = urls
        .iter()
        .map(|url| (url.clone(), json!({ "attempts": 1 })))
        .collect();
    let pending = json!({
        "since_ms": overseer_guest::now_ms(),
        "as_of_ms": as_of.at_ms,
        "result": result,
        "pages": pages,
    });
    // Kept before asked: a fetch is never out without the task that waits for it.
    kv::set(&pending_key(&task.id), &pending.to_string())?;
    for url in &urls {
        fetch(url, &task.id, 1)?;
    }
    Ok(json!({ "task": task.id, "state": "waiting for pages", "urls": urls }))
}

/// A page the web researcher read (or could not) for a waiting task.
fn on_page(page: &Value) -> Result<Value, Error> {
    let (Some(id), Some(url)) = (page["task"].as_str(), page["url"].as_str()) else {
        return Ok(json!({ "skipped": "a page no task asked for" }));
    };
    let Some(mut pending) =
        kv::get(&pending_key(id))?.and_then(|t| serde_json::from_str::<Value>(&t).ok())
    else {
        return Ok(json!({ "task": id, "skipped": "no task waiting for it" }));
    };
    let entry = &mut pending["pages"][url];
    if !entry.is_object() || entry.get("page").is_some() {
        return Ok(json!({ "task": id, "skipped": "a page not asked for, or had already" }));
    }
    let attempt = page["attempt"].as_u64().unwrap_or(1);
    let error = page["error"].as_str();
    if let Some(code) = error
        && retryable(code)
        && attempt < u64::from(max_attempts())
    {
        std::thread::sleep(backoff(attempt as u32));
        fetch(url, id, attempt + 1)?;
        entry["attempts"] = json!(attempt + 1);
        kv::set(&pending_key(id), &pending.to_string())?;
        return Ok(json!({ "task": id, "retrying": url, "attempt": attempt + 1 }));
    }
    entry["page"] = match error {
        Some(code) => json!({ "url": url, "error": code, "message": page["message"] }),
        None => json!({
            "url": url,
            "fetched_ms": page["fetched_ms"],
            "status": page["status"],
            "title": page["title"],
            "excerpt": page["text"].as_str().unwrap_or_default().chars().take(EXCERPT).collect::<String>(),
            "links": page["links"].as_array().map_or(0, Vec::len),
        }),
    };
    entry["attempts"] = json!(attempt);
    settle(id, pending, false)
}

/// Answer a waiting task once every page is in, or at once when `timed_out` (the missing
/// pages reported failed); otherwise keep waiting.
fn settle(id: &str, mut pending: Value, timed_out: bool) -> Result<Value, Error> {
    let wait = setting("page_wait_ms", 120_000);
    let pages = pending["pages"].as_object().cloned().unwrap_or_default();
    let missing = pages.values().filter(|p| p.get("page").is_none()).count();
    if missing > 0 && !timed_out {
        kv::set(&pending_key(id), &pending.to_string())?;
        return Ok(json!({ "task": id, "waiting_for": missing }));
    }
    let mut read = Vec::new();
    let mut failed = Vec::new();
    let mut attempts = 0;
    for (url, entry) in &pages {
        attempts += entry["attempts"].as_u64().unwrap_or(1);
        match entry.get("page") {
            Some(page) if page.get("error").is_none() => read.push(page.clone()),
            Some(page) => failed.push(page.clone()),
            None => failed.push(json!({
                "url": url,
                "error": "unavailable",
                "message": format!("no page within {wait} ms: is the web researcher running, and does its manifest allow this origin?"),
            })),
        }
    }
    let mut result = pending["result"].take();
    let report = if failed.is_empty() {
        json!({ "action": "web", "status": "ok", "attempts": attempts, "pages": read.len() })
    } else {
        json!({ "action": "web", "status": "failed", "attempts": attempts, "pages": read.len(), "error": failed[0]["error"], "message": failed[0]["message"], "failed": failed })
    };
    push_action(&mut result, report);
    result["pages"] = json!(read);
    finish(result, pending["as_of_ms"].as_u64().unwrap_or(0))
}

/// On a schedule: answer the task that has waited longest past `page_wait_ms` for its
/// pages (one per call, so one slow answer does not hold up the others), and forget
/// answered tasks older than a week. A task that cannot be answered is logged and left for
/// the next tick.
fn sweep(now: u64) -> Result<Option<String>, Error> {
    let wait = setting("page_wait_ms", 120_000);
    let mut overdue: Option<(u64, String, Value)> = None;
    for key in kv::keys("pending:")? {
        let Some(pending) = kv::get(&key)?.and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            kv::delete(&key)?;
            continue;
        };
        let since = pending["since_ms"].as_u64().unwrap_or(0);
        if now >= since.saturating_add(wait) && overdue.as_ref().is_none_or(|(s, ..)| since < *s) {
            overdue = Some((
                since,
                key.trim_start_matches("pending:").to_string(),
                pending,
            ));
        }
    }
    for key in kv::keys("answered:")? {
        let at: u64 = kv::get(&key)?.and_then(|v| v.parse().ok()).unwrap_or(0);
        if now >= at.saturating_add(REMEMBER_MS) {
            kv::delete(&key)?;
        }
    }
    let Some((_, id, pending)) = overdue else {
        return Ok(None);
    };
    match settle(&id, pending, true) {
        Ok(_) => Ok(Some(id)),
        Err(e) => {
            log::warn(&format!("task {id} not answered yet: {}", e.message()));
            Ok(None)
        }
    }
}

impl Agent for Executor {
    fn describe() -> Info {
        Info {
            name: "action-executor".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description:
                "Answers research tasks with market data, numbers, pages, backtests and the LLM"
                    .to_string(),
            subscriptions: vec!["research.task".to_string(), "research.page".to_string()],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("{}: {e}", event.topic)))?;
        let answer = match event.topic.as_str() {
            "schedule" => json!({ "answered": sweep(overseer_guest::now_ms())? }),
            "research.page" => on_page(&payload)?,
            _ => take(&payload)?,
        };
        Ok(answer.to_string())
    }
}

overseer_guest::export!(Executor);
