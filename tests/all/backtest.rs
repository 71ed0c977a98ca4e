//! Backtests through the API: figures that agree with an independent computation, costs that
//! account for the difference they make, look-ahead that fails the run, byte-identical
//! reruns (LLM answers replayed from the recording), walk-forward, and bad input.

use std::time::Duration;

use overseer_tests::{Api, Daemon, FakeLlm, eventually, manifest};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backtest_reference::{RefBar, sma_cross};

const SMA: &str = "fixture-sma-cross";

/// The `agent.toml` of `package` without its name, to push it under any name.
fn unnamed(package: &str) -> String {
    manifest(package)
        .lines()
        .filter(|line| !line.trim_start().starts_with("name"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Limits that let the SMA strategy trade as the reference does (the reference has no gate).
fn open_limits() -> Value {
    json!({
        "max_position": 1.0,
        "max_order_notional": 1e12,
        "max_gross_exposure": 1.0,
        "daily_loss_limit": 1.0,
        "max_drawdown": 1.0,
    })
}

/// Start a backtest; answers its id.
async fn start(api: &Api, spec: Value) -> String {
    let (status, body) = api.post("/v1/backtests", spec.to_string()).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["id"].as_str().expect("an id").to_string()
}

/// Wait for backtest `id` to end; answers its status.
async fn finished(api: &Api, id: &str) -> Value {
    eventually(Duration::from_secs(300), "the backtest ends", || async {
        let (status, body) = api.get(&format!("/v1/backtests/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (body["state"] != "running").then_some(body)
    })
    .await
}

/// Run `spec` to its end and answer its report, panicking if it failed.
async fn report(api: &Api, spec: Value) -> Value {
    let id = start(api, spec).await;
    let status = finished(api, &id).await;
    assert_eq!(status["state"], "done", "{status}");
    status["report"].clone()
}

/// AAPL's bundled bars, adjusted as the data's README says: every price × adj_close / close.
fn aapl() -> Vec<RefBar> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../host/market/data/AAPL.csv");
    let text = std::fs::read_to_string(path).expect("the bundled AAPL data");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            let number = |i: usize| f[i].parse::<f64>().expect("a number");
            let factor = number(6) / number(4);
            RefBar {
                date: f[0].to_string(),
                open: number(1) * factor,
                close: number(4) * factor,
            }
        })
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

#[tokio::test]
async fn figures_agree_with_an_independent_computation_and_costs_account_for_the_difference() {
    let daemon = Daemon::start().await;
    let api = &daemon.api;
    api.push_ok("sma", SMA, &unnamed(SMA)).await;
    let spec = |costs: bool, config: Value| {
        json!({
            "agent": "sma",
            "symbols": ["AAPL"],
            "from": "2005-01-01",
            "to": "2012-12-31",
            "costs": costs,
            "risk": open_limits(),
            "config": config,
        })
    };
    let run = report(api, spec(true, json!({ "fast": "10", "slow": "30" }))).await;

    let bars = aapl();
    let start = bars
        .iter()
        .position(|b| b.date.as_str() >= "2005-01-01")
        .unwrap();
    let end = bars
        .iter()
        .position(|b| b.date.as_str() > "2012-12-31")
        .unwrap_or(bars.len());
    let reference = sma_cross(&bars[..end], start, 10, 30, 0.5, 100_000.0, 1.0, 5.0);
    let m = &run["metrics"];
    let fills: Vec<&Value> = run["trades"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "fill")
        .collect();
    assert_eq!(fills.len(), reference.fills.len(), "{:?}", reference.fills);
    assert!(
        fills.len() >= 20,
        "a strategy that trades: {} fills",
        fills.len()
    );
    for (fill, (date, side, quantity, price)) in fills.iter().zip(&reference.fills) {
        assert_eq!(fill["day"], *date);
        assert_eq!(fill["side"], *side);
        assert_eq!(fill["quantity"].as_f64().unwrap(), *quantity);
        assert!(close(fill["price"].as_f64().unwrap(), *price), "{fill}");
    }
    assert_eq!(
        run["bars"].as_u64().unwrap() as usize,
        reference.equity.len()
    );
    for (name, ours, theirs) in [
        ("total return", &m["total_return"], reference.total_return),
        ("Sharpe", &m["sharpe"], reference.sharpe),
        ("Sortino", &m["sortino"], reference.sortino),
        ("max drawdown", &m["max_drawdown"], reference.max_drawdown),
        ("fees", &m["fees"], reference.fees),
        ("slippage", &m["slippage"], reference.slippage),
    ] {
        let ours = ours.as_f64().unwrap();
        assert!(close(ours, theirs), "{name}: {ours} against {theirs}");
    }
    assert!(
        run["benchmark"]["total_return"].as_f64().unwrap() > 1.0,
        "AAPL rose"
    );

    // The same trades with and without costs: the end equity differs by what they cost.
    let fixed = json!({ "fast": "10", "slow": "30", "quantity": "200" });
    let with = report(api, spec(true, fixed.clone())).await;
    let without = report(api, spec(false, fixed)).await;
    let last = |r: &Value| {
        r["equity"].as_array().unwrap().last().unwrap()["equity"]
            .as_f64()
            .unwrap()
    };
    let paid =
        with["metrics"]["fees"].as_f64().unwrap() + with["metrics"]["slippage"].as_f64().unwrap();
    assert!(paid > 0.0);
    assert_eq!(without["metrics"]["fees"], 0.0);
    assert_eq!(without["metrics"]["slippage"], 0.0);
    assert!(
        close(last(&without) - last(&with), paid),
        "without {} with {} paid {paid}",
        last(&without),
        last(&with)
    );
    daemon.stop().await;
}

#[tokio::test]
async fn look_ahead_fails_the_run_naming_the_bar_and_reruns_are_byte_identical() {
    let daemon = Daemon::start().await;
    let api = &daemon.api;
    api.push_ok("sma", SMA, &unnamed(SMA)).await;
    let spec = |config: Value| {
        json!({
            "agent": "sma",
            "symbols": ["AAPL", "MSFT"],
            "from": "2006-01-01",
            "to": "2007-12-31",
            "config": config,
        })
    };
    let id = start(api, spec(json!({ "peek_from": "2006-03-01" }))).await;
    let failed = finished(api, &id).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["code"], "look_ahead");
    assert_eq!(failed["error"]["bar"], "2006-03-01");
    let message = failed["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("2006-03-01") && message.contains("2006-03-02"),
        "{message}"
    );

    let a = report(api, spec(json!({ "fast": "5", "slow": "20" }))).await;
    let b = report(api, spec(json!({ "fast": "5", "slow": "20" }))).await;
    assert!(!a["trades"].as_array().unwrap().is_empty());
    assert_eq!(a["trades"].to_string(), b["trades"].to_string());
    assert_eq!(a["metrics"].to_string(), b["metrics"].to_string());
    assert_eq!(a["equity"].to_string(), b["equity"].to_string());
    assert_eq!(a["input_hash"], b["input_hash"]);
    assert_eq!(a["trade_log_hash"], b["trade_log_hash"]);
    // Another setting is another input, and other trades.
    let c = report(api, spec(json!({ "fast": "3", "slow": "20" }))).await;
    assert_ne!(a["input_hash"], c["input_hash"]);
    assert_ne!(a["trade_log_hash"], c["trade_log_hash"]);
    daemon.stop().await;
}

#[tokio::test]
async fn an_llm_strategy_replays_its_recorded_answers_and_asks_nothing_the_second_time() {
    let llm = FakeLlm::start(
        ["BUY", "HOLD", "HOLD", "SELL", "HOLD", "BUY", "HOLD", "SELL"]
            .into_iter()
            .map(str::to_string)
            .collect(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = llm.config(dir.path());
    config.llm_budget.default_price.prompt_per_million = 1.0;
    config.llm_budget.default_price.completion_per_million = 2.0;
    let daemon = Daemon::start_with(config).await;
    let api = &daemon.api;
    api.push_ok("oracle", SMA, &unnamed(SMA)).await;
    let spec = json!({
        "agent": "oracle",
        "symbols": ["AAPL"],
        "from": "2008-01-01",
        "to": "2008-02-15",
        "config": { "llm": "true", "fraction": "0.2" },
    });
    let first = report(api, spec.clone()).await;
    let asked = llm.requests().len();
    assert!(asked >= 25, "one question per bar: {asked}");
    assert_eq!(first["llm"]["calls"].as_u64().unwrap() as usize, asked);
    assert_eq!(first["llm"]["replayed"], 0);
    assert!(first["metrics"]["llm_cost_per_decision"].as_f64().unwrap() > 0.0);
    let fills = first["trades"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "fill")
        .count();
    assert!(fills >= 2, "the answers traded: {}", first["trades"]);

    let second = report(api, spec).await;
    assert_eq!(
        llm.requests().len(),
        asked,
        "the rerun asked the model nothing"
    );
    assert_eq!(second["llm"]["calls"], 0);
    assert_eq!(second["llm"]["replayed"].as_u64().unwrap() as usize, asked);
    assert_eq!(first["trades"].to_string(), second["trades"].to_string());
    assert_eq!(first["trade_log_hash"], second["trade_log_hash"]);
    assert_eq!(first["input_hash"], second["input_hash"]);
    daemon.stop().await;
}

/// Synthetic bars: 260 days of a fast cycle (short averages win), then 260 of a slow swing
/// under a fast wobble (short averages whipsaw, long ones ride it). Pseudo-random noise from
/// a fixed linear congruential generator.
fn regime_change_csv() -> String {
    let mut csv = String::from("date,open,high,low,close,volume,adj_close\n");
    let mut day = chrono::NaiveDate::from_ymd_opt(2001, 1, 1).unwrap();
    let (mut x, mut previous) = (12_345_u64, None::<f64>);
    for t in 0..520 {
        x = (1_103_515_245 * x + 12_345) % (1 << 31);
        let u = x as f64 / (1u64 << 31) as f64 - 0.5;
        let tau = std::f64::consts::TAU;
        let price = if t < 260 {
            100.0 * (1.0 + 0.06 * (tau * t as f64 / 20.0).sin()) + u
        } else {
            100.0 * (1.0 + 0.25 * (tau * (t - 260) as f64 / 240.0).sin())
                + 3.0 * (tau * t as f64 / 5.0).sin()
                + 2.0 * u
        };
        let close = (price * 1e4).round() / 1e4;
        let open = previous.unwrap_or(close);
        csv.push_str(&format!(
            "{day},{open},{},{},{close},1000000,{close}\n",
            open.max(close) + 0.5,
            open.min(close) - 0.5
        ));
        previous = Some(close);
        day = day.succ_opt().unwrap();
        while matches!(day.format("%a").to_string().as_str(), "Sat" | "Sun") {
            day = day.succ_opt().unwrap();
        }
    }
    csv
}

#[tokio::test]
async fn walk_forward_chooses_per_window_and_scores_out_of_sample_below_in_sample() {
    let daemon = Daemon::start().await;
    let api = &daemon.api;
    api.push_ok("sma", SMA, &unnamed(SMA)).await;
    let run = report(
        api,
        json!({
            "agent": "sma",
            "symbols": ["SYN"],
            "from": "2001-01-01",
            "to": "2003-12-31",
            "data": { "SYN": regime_change_csv() },
            "risk": open_limits(),
            "config": { "symbol": "SYN", "fast": "2" },
            "walk_forward": {
                "windows": "rolling",
                "in_sample": 120,
                "out_of_sample": 60,
                "params": { "slow": { "from": 8, "to": 64, "step": 8 } },
            },
        }),
    )
    .await;
    let walk = &run["walk_forward"];
    let windows = walk["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 7, "{walk}");
    let chosen: Vec<&str> = windows
        .iter()
        .map(|w| w["params"]["slow"].as_str().unwrap())
        .collect();
    assert_eq!(
        chosen.first(),
        Some(&"8"),
        "the fast cycle wants a short average: {chosen:?}"
    );
    assert!(
        chosen.last().unwrap().parse::<u32>().unwrap() >= 32,
        "the slow swing wants a long one: {chosen:?}"
    );
    assert!(windows.iter().all(|w| w["candidates"] == 8));
    let (is, oos) = (
        walk["in_sample_score"].as_f64().unwrap(),
        walk["out_of_sample_score"].as_f64().unwrap(),
    );
    assert!(oos < is, "out of sample {oos} against in sample {is}");
    assert_eq!(run["metrics"]["sharpe"].as_f64().unwrap(), oos);
    // The report covers the out-of-sample parts alone.
    assert_eq!(run["bars"].as_u64().unwrap(), 520 - 120);
    daemon.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_the_daemon_keeps_serving() {
    let daemon = Daemon::start().await;
    let api = &daemon.api;
    api.push_ok("sma", SMA, &unnamed(SMA)).await;
    let base =
        json!({ "agent": "sma", "symbols": ["AAPL"], "from": "2006-01-01", "to": "2006-12-31" });
    let with = |patch: Value| {
        let mut spec = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            spec[k] = v.clone();
        }
        spec.to_string()
    };
    for (body, status, code) in [
        (
            with(json!({ "symbols": ["NOPE"] })),
            StatusCode::BAD_REQUEST,
            "unknown_symbol",
        ),
        (
            with(json!({ "from": "2006-01-07", "to": "2006-01-08" })),
            StatusCode::BAD_REQUEST,
            "empty_range",
        ),
        (
            with(json!({ "from": "2007-01-01" })),
            StatusCode::BAD_REQUEST,
            "invalid_range",
        ),
        (
            with(json!({ "symbols": ["X"], "data": { "X": "date,open\n2006-01-03,abc\n" } })),
            StatusCode::BAD_REQUEST,
            "invalid_data",
        ),
        (
            with(json!({ "agent": "nobody" })),
            StatusCode::NOT_FOUND,
            "agent_not_found",
        ),
        (
            with(json!({ "version": 9 })),
            StatusCode::NOT_FOUND,
            "version_not_found",
        ),
        (
            with(json!({ "costs": "yes" })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with(json!({ "frmo": "2006-01-01" })),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("{".to_string(), StatusCode::BAD_REQUEST, "invalid_request"),
    ] {
        let (got, answer) = api.post("/v1/backtests", body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    let (status, answer) = api.get("/v1/backtests/bt-none").await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("backtest_not_found"))
    );

    // Strategies that trap, spin and exhaust their memory end their run with the bar.
    for (name, package) in [
        ("trapper", "fixture-trap"),
        ("spinner", "fixture-spin"),
        ("hog", "fixture-memory-hog"),
    ] {
        let manifest = format!(
            "{}\n[triggers]\nsubscribe = [\"market.tick\"]\n",
            unnamed(package)
        );
        api.push_ok(name, package, &manifest).await;
        let id = start(
            api,
            json!({ "agent": name, "symbols": ["AAPL"], "from": "2006-01-01", "to": "2006-12-31" }),
        )
        .await;
        let failed = finished(api, &id).await;
        assert_eq!(failed["state"], "failed", "{name}: {failed}");
        assert_eq!(failed["error"]["code"], "agent_fault", "{name}: {failed}");
        assert_eq!(failed["error"]["bar"], "2006-01-03", "{name}: {failed}");
    }
    // A run after them works, and so does the rest of the API.
    let run = report(api, base).await;
    assert_eq!(run["bars"], 251);
    let (status, _) = api.get("/v1/agents").await;
    assert_eq!(status, StatusCode::OK);
    daemon.stop().await;
}

#[tokio::test]
async fn the_cli_backtests_a_csv_of_ones_own_and_names_what_is_wrong() {
    use clap::Parser;
    use overseer::cli::{Cli, run};

    let daemon = Daemon::start().await;
    let api = &daemon.api;
    api.push_ok("sma", SMA, &unnamed(SMA)).await;
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("syn.csv");
    std::fs::write(&csv, regime_change_csv()).unwrap();
    let client = ["--url", &api.url, "--token", overseer_tests::TOKEN];
    let cli = |args: &[&str]| {
        Cli::try_parse_from(
            ["overseer", "backtest"]
                .iter()
                .chain(args)
                .chain(client.iter()),
        )
        .unwrap()
    };
    let data = csv.to_str().unwrap();
    run(cli(&[
        "sma",
        "--symbols",
        "SYN",
        "--from",
        "2001-01-01",
        "--to",
        "2002-12-31",
        "--data",
        data,
        "--config",
        "symbol=SYN",
        "--walk-forward",
        "anchored:200:100",
        "--param",
        "slow=10..40:10",
    ]))
    .await
    .unwrap();
    let (_, list) = api.get("/v1/backtests").await;
    let id = list["backtests"][0].as_str().unwrap();
    let (_, done) = api.get(&format!("/v1/backtests/{id}")).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["spec"]["symbols"][0], "SYN");
    assert_eq!(
        done["report"]["walk_forward"]["windows"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    assert_eq!(done["report"]["bars"], 520 - 200);

    let error = run(cli(&[
        "sma",
        "--symbols",
        "AAPL",
        "--from",
        "2007-01-01",
        "--to",
        "2006-01-01",
    ]))
    .await
    .unwrap_err();
    assert!(error.to_string().contains("invalid_range"), "{error}");
    let error = run(cli(&[
        "sma",
        "--symbols",
        "AAPL",
        "--from",
        "2006-01-01",
        "--to",
        "2006-06-30",
        "--config",
        "peek_from=2006-02-01",
        "--json",
    ]))
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("look_ahead") && error.to_string().contains("2006-02-01"),
        "{error}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn the_strategy_is_backtested_behind_the_world_monitor_and_ahead_of_the_executor() {
    let daemon = Daemon::start().await;
    let api = &daemon.api;
    for agent in ["world-monitor", "strategy", "trade-executor"] {
        api.push_ok(agent, agent, &manifest(agent)).await;
    }
    let run = report(
        api,
        json!({
            "agent": "strategy",
            "symbols": ["AAPL", "MSFT", "IBM"],
            "from": "2010-01-01",
            "to": "2010-12-31",
        }),
    )
    .await;
    let stages: Vec<&str> = run["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent"].as_str().unwrap())
        .collect();
    assert_eq!(stages, ["strategy", "world-monitor", "trade-executor"]);
    assert_eq!(run["bars"], 252);
    let fills: Vec<&Value> = run["trades"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "fill")
        .collect();
    assert!(!fills.is_empty(), "{}", run["trades"]);
    // The executor placed the orders; the strategy decided once per snapshot.
    assert!(
        fills
            .iter()
            .all(|f| f["agent"] == "trade-executor" && f["version"] == 1)
    );
    assert_eq!(run["metrics"]["periods"], 251);
    // Trade memory is outside a run: the strategy's recalls are refused, and it goes on.
    assert!(
        run["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("not served in a backtest")),
        "{}",
        run["logs"]
    );

    daemon.stop().await;
}

#[tokio::test]
async fn a_guests_random_numbers_follow_the_seed_and_its_clock_the_bar() {
    use chrono::Datelike;
    let daemon = Daemon::start().await;
    let api = &daemon.api;
    api.push_ok("coin", SMA, &unnamed(SMA)).await;
    let spec = |seed: u64| {
        json!({
            "agent": "coin",
            "symbols": ["AAPL"],
            "from": "2009-01-01",
            "to": "2009-12-31",
            "seed": seed,
            "config": { "coin": "true", "fraction": "0.2" },
        })
    };
    let a = report(api, spec(7)).await;
    let b = report(api, spec(7)).await;
    let c = report(api, spec(8)).await;
    let fills: Vec<&Value> = a["trades"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == "fill")
        .collect();
    assert!(fills.len() >= 10, "{}", a["trades"]);
    assert_eq!(
        a["errors"], 0,
        "both clocks read the bar: {}",
        a["last_error"]
    );
    assert_eq!(
        a["trade_log_hash"], b["trade_log_hash"],
        "the same seed, the same tosses"
    );
    assert_ne!(
        a["trade_log_hash"], c["trade_log_hash"],
        "another seed, other tosses"
    );
    // The guest named each order by its clock: the close of the bar it was placed on.
    for fill in fills {
        let id = fill["order_id"].as_str().unwrap();
        let stamp: u64 = id.split('-').nth(1).unwrap().parse().unwrap();
        assert_eq!(
            stamp % 86_400_000,
            21 * 3_600_000,
            "{id}: a close at 21:00 UTC"
        );
        let placed = chrono::DateTime::from_timestamp_millis(stamp as i64)
            .unwrap()
            .date_naive();
        let filled: chrono::NaiveDate = fill["day"].as_str().unwrap().parse().unwrap();
        assert!(
            placed < filled && placed.year() == 2009,
            "{id} filled {filled}"
        );
    }
    daemon.stop().await;
}

#[tokio::test]
async fn runs_wait_their_turn_up_to_a_limit_and_stop_when_asked() {
    let daemon = Daemon::start().await;
    let api = &daemon.api;
    api.push_ok("slow", SMA, &unnamed(SMA)).await;
    // Thirteen years of a strategy that works hard on every bar: long enough to queue.
    let long = json!({
        "agent": "slow",
        "symbols": ["AAPL"],
        "from": "2000-03-01",
        "to": "2013-03-01",
        "config": { "work": "2000000" },
    });
    let mut ids = Vec::new();
    for _ in 0..overseer_trading::backtest::MAX_QUEUED {
        ids.push(start(api, long.clone()).await);
    }
    let (status, busy) = api.post("/v1/backtests", long.to_string()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{busy}");
    assert_eq!(busy["error"]["code"], "busy");
    for id in &ids {
        let (status, answer) = api.delete(&format!("/v1/backtests/{id}")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["stopping"], true);
    }
    for id in &ids {
        let stopped = finished(api, id).await;
        assert_eq!(stopped["state"], "failed", "{stopped}");
        assert_eq!(stopped["error"]["code"], "cancelled", "{stopped}");
        assert!(stopped["done"].as_u64().unwrap() < stopped["total"].as_u64().unwrap());
    }
    // The queue is free again.
    let id = start(
        api,
        json!({ "agent": "slow", "symbols": ["AAPL"], "from": "2006-01-01", "to": "2006-01-31" }),
    )
    .await;
    assert_eq!(finished(api, &id).await["state"], "done");
    let (status, _) = api.delete("/v1/backtests/bt-none").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    daemon.stop().await;
}
