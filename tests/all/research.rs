//! Research tracks: the researcher component under six names, each result's evidence
//! recomputed from the bars it names.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use overseer_tests::{Daemon, eventually, manifest, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

const RESEARCHER: &str = "researcher";
const EXECUTOR: &str = "action-executor";

/// The researcher's manifest as the track `name` with `specialisation`.
fn track(specialisation: &str) -> String {
    manifest(RESEARCHER)
        .lines()
        .filter(|l| !l.trim_start().starts_with("name"))
        .map(|l| {
            if l.starts_with("specialisation = ") {
                format!("specialisation = \"{specialisation}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value of `metric` for `symbol` in a result's evidence.
fn metric(result: &Value, metric: &str, symbol: &str) -> f64 {
    result["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["metric"] == metric && e["symbol"] == symbol)
        .unwrap_or_else(|| panic!("no {metric} for {symbol} in {result}"))["value"]
        .as_f64()
        .unwrap()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// A daemon whose market clock ticks every `speed_ms`.
async fn daemon(speed_ms: u64) -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.trading.market_speed_ms = speed_ms;
    (Daemon::start_with(config).await, dir)
}

/// The closes of `symbol` a result's evidence names (`bars:SYMBOL:FROM..TO`), oldest first.
async fn closes_of(daemon: &Daemon, result: &Value, symbol: &str) -> Vec<f64> {
    let prefix = format!("bars:{symbol}:");
    let source = result["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["source"].as_str())
        .find_map(|s| s.split(' ').find(|part| part.starts_with(&prefix)))
        .unwrap_or_else(|| panic!("no bars of {symbol} in {result}"));
    let (from, to) = source[prefix.len()..].split_once("..").unwrap();
    let (_, bars) = daemon
        .get(&format!("/v1/market/{symbol}/bars?from={from}&to={to}"))
        .await;
    bars["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["close"].as_f64().unwrap())
        .collect()
}

/// The six tracks as `serve` ships them (`agents/researcher/instances/`), on the default
/// market clock: each has a result within two minutes, its numbers recomputed here from the
/// bars it names.
#[tokio::test]
async fn the_shipped_tracks_publish_within_two_minutes_with_evidence_recomputable_from_the_bars() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.trading.market_speed_ms = overseer_trading::TradingConfig::default().market_speed_ms;
    let daemon = Daemon::start_with(config).await;
    daemon.push_ok("rules", "rules", &manifest("rules")).await;
    let shipped =
        overseer_selfedit::bundled_manifests(&overseer_tests::agents_dir().join(RESEARCHER))
            .unwrap();
    assert_eq!(shipped.len(), 6);
    for track in &shipped {
        let name = track.name.clone().unwrap();
        daemon
            .push_ok(&name, RESEARCHER, &toml::to_string(track).unwrap())
            .await;
    }
    let started = std::time::Instant::now();
    let clock = daemon.start_clock();
    let tracks = eventually(
        Duration::from_secs(120),
        "a result from every track",
        || async {
            let (_, listed) = daemon.get("/v1/research/tracks").await;
            let tracks = listed["tracks"].as_array()?.clone();
            (tracks.len() == 6 && tracks.iter().all(|t| t["last_result"].is_object()))
                .then_some(tracks)
        },
    )
    .await;
    clock.abort();
    println!(
        "six tracks with results {:.1} s after the clock started",
        started.elapsed().as_secs_f64()
    );
    let now = overseer_store::now_ms();
    for t in &tracks {
        assert!(t["next_run_ms"].as_u64().unwrap() > now, "{t}");
        assert!(t["market_every_days"].as_u64().unwrap() >= 1, "{t}");
        assert!(t["last_failure"].is_null(), "{t}");
    }
    let every = |agent: &str| {
        tracks
            .iter()
            .find(|t| t["agent"] == agent)
            .map(|t| t["every_ms"].clone())
            .unwrap()
    };
    assert_eq!(every("research-market"), 600_000);
    assert_eq!(every("research-fundamental"), 7_200_000);
    let of = |specialisation: &str| {
        tracks
            .iter()
            .find(|t| t["specialisation"] == specialisation)
            .map(|t| t["last_result"].clone())
            .unwrap()
    };
    for t in &tracks {
        let r = &t["last_result"];
        let expected = if r["specialisation"] == "fundamental_research" {
            "unavailable"
        } else {
            "ok"
        };
        assert_eq!(r["status"], expected, "{r}");
        assert!(r["thesis"].as_str().is_some_and(|t| !t.is_empty()), "{r}");
    }
    assert!(
        of("sentiment_analysis")["thesis"]
            .as_str()
            .unwrap()
            .contains("no news")
    );

    // Risk: recompute AAPL's volatility, drawdown, VaR and CVaR from the bars it names.
    let risk = of("risk_assessment");
    let closes = closes_of(&daemon, &risk, "AAPL").await;
    assert_eq!(closes.len(), 253);
    let returns: Vec<f64> = closes.windows(2).map(|w| w[1] / w[0] - 1.0).collect();
    let n = returns.len() as f64;
    let mean = returns.iter().sum::<f64>() / n;
    let sd = (returns.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(close(
        metric(&risk, "volatility_annualised", "AAPL"),
        sd * 252f64.sqrt()
    ));
    let mut peak = f64::MIN;
    let mut drawdown: f64 = 0.0;
    for c in &closes {
        peak = peak.max(*c);
        drawdown = drawdown.max(1.0 - c / peak);
    }
    assert!(close(metric(&risk, "max_drawdown", "AAPL"), drawdown));
    let mut sorted = returns.clone();
    sorted.sort_by(f64::total_cmp);
    let k = (0.05 * n).floor() as usize;
    assert!(close(metric(&risk, "var_95_1d", "AAPL"), -sorted[k]));
    let tail = &sorted[..=k];
    assert!(close(
        metric(&risk, "cvar_95_1d", "AAPL"),
        -tail.iter().sum::<f64>() / tail.len() as f64
    ));
    let rho = metric(&risk, "correlation", "AAPL/IBM");
    assert!((-1.0..=1.0).contains(&rho) && rho > 0.0, "{rho}");

    // Technical, market and alpha figures, each on the bars its result names.
    let technical = of("technical_analysis");
    let closes = closes_of(&daemon, &technical, "AAPL").await;
    assert!(close(
        metric(&technical, "close", "AAPL"),
        *closes.last().unwrap()
    ));
    let sma20 = closes[closes.len() - 20..].iter().sum::<f64>() / 20.0;
    assert!(close(metric(&technical, "sma_20", "AAPL"), sma20));
    let rsi = metric(&technical, "rsi_14", "MSFT");
    assert!((0.0..=100.0).contains(&rsi));
    let market = of("market_analysis");
    let closes = closes_of(&daemon, &market, "AAPL").await;
    let change = closes[closes.len() - 1] / closes[closes.len() - 21] - 1.0;
    assert!(close(metric(&market, "return_20d", "AAPL"), change));
    let alpha = of("alpha_hunting");
    let closes = closes_of(&daemon, &alpha, "AAPL").await;
    let momentum = closes[closes.len() - 22] / closes[closes.len() - 127] - 1.0;
    assert!(close(metric(&alpha, "momentum_126_21", "AAPL"), momentum));

    // A filter by track.
    let (_, risk_only) = daemon
        .get("/v1/research/results?track=risk&limit=1000")
        .await;
    let risk_only = risk_only["results"].as_array().unwrap();
    assert!(!risk_only.is_empty() && risk_only.iter().all(|r| r["track"] == "risk"));

    // The CLI's table, evidence and JSON.
    use clap::Parser;
    let client = ["--url", &daemon.url, "--token", overseer_tests::TOKEN];
    for args in [
        &["research"][..],
        &["research", "--track", "risk", "--evidence"],
        &["research", "--json"],
    ] {
        let cli = overseer::cli::Cli::try_parse_from(
            ["overseer"].iter().chain(args).chain(client.iter()),
        )
        .unwrap();
        overseer::cli::run(cli).await.unwrap();
    }
    daemon.stop().await;
}

#[tokio::test]
async fn the_tracks_keep_pace_with_the_market_clock() {
    let (daemon, _dir) = daemon(100).await;
    for (name, specialisation) in [
        ("r-risk", "risk_assessment"),
        ("r-tech", "technical_analysis"),
    ] {
        daemon
            .push_ok(name, RESEARCHER, &track(specialisation))
            .await;
    }
    let clock = daemon.start_clock();
    // Daily on the replay: each track studies a later day as the market moves.
    let results = eventually(Duration::from_secs(20), "results on later days", || async {
        let (_, listed) = daemon.get("/v1/research/results?limit=1000").await;
        let results = listed["results"].as_array().cloned().unwrap_or_default();
        let days = |track: &str| {
            let mut days: Vec<String> = results
                .iter()
                .filter(|r| r["track"] == track)
                .filter_map(|r| r["as_of"].as_str().map(str::to_string))
                .collect();
            days.dedup();
            days.len()
        };
        (days("risk_assessment") >= 3 && days("technical_analysis") >= 3).then_some(results)
    })
    .await;
    clock.abort();
    // One result per track per market day.
    let mut seen = std::collections::BTreeSet::new();
    for r in &results {
        let key = (r["track"].to_string(), r["as_of"].to_string());
        assert!(seen.insert(key), "{r}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn bad_research_input_gets_a_clear_error() {
    let daemon = Daemon::start().await;
    daemon
        .push_ok("r-risk", RESEARCHER, &track("risk_assessment"))
        .await;
    let (status, body) = daemon
        .invoke("r-risk", json!({ "symbols": ["NOPE"] }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("NOPE"),
        "{body}"
    );
    // A track that names no specialisation it knows is unhealthy: refused at push.
    let (status, body) = daemon
        .push(
            "r-odd",
            overseer_tests::component(RESEARCHER),
            Some(&track("astrology")),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "unhealthy");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("astrology"),
        "{body}"
    );
    let (status, _) = daemon.get("/v1/research/results?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Tasks: an unknown kind or symbol, no id or an idea without its rule is refused, saying
    // what was wrong.
    let executor = manifest(EXECUTOR)
        .replace("every = \"1m\"", "every = \"1s\"")
        .replace("page_wait_ms = \"120000\"", "page_wait_ms = \"300\"");
    daemon.push_ok("action-executor", EXECUTOR, &executor).await;
    for (task, says) in [
        (
            json!({ "id": "t-1", "kind": "astrology", "symbols": ["AAPL"] }),
            "unknown kind \"astrology\"",
        ),
        (
            json!({ "id": "t-2", "kind": "question", "symbols": ["NOPE"] }),
            "unknown symbol \"NOPE\"",
        ),
        (
            json!({ "kind": "question", "symbols": ["AAPL"] }),
            "id must be",
        ),
        (
            json!({ "id": "t-3", "kind": "idea", "symbols": ["AAPL"] }),
            "names the rule",
        ),
    ] {
        let (status, body) = daemon.invoke("action-executor", task).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_input");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    // A task whose page never comes (no web researcher here) is answered when the wait is
    // over, its web action reported failed; asked again, it is not answered twice.
    let task = json!({ "id": "t-4", "kind": "question", "symbols": ["AAPL"], "urls": ["http://127.0.0.1:9/notes"] });
    let (status, body) = daemon.invoke("action-executor", task.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["state"], "waiting for pages");
    let answered = || async {
        let (_, listed) = daemon.get("/v1/research/results?limit=100").await;
        listed["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["task"] == "t-4")
            .cloned()
            .collect::<Vec<Value>>()
    };
    let result = eventually(Duration::from_secs(20), "the task answered", || async {
        answered().await.first().cloned()
    })
    .await;
    assert_eq!(result["status"], "partial", "{result}");
    let web = &result["actions"][2];
    assert_eq!(web["action"], "web");
    assert_eq!(web["status"], "failed");
    assert!(
        web["message"]
            .as_str()
            .unwrap()
            .contains("no page within 300 ms"),
        "{web}"
    );
    let (_, again) = daemon.invoke("action-executor", task).await;
    assert_eq!(again["output"]["skipped"], "taken already", "{again}");
    assert_eq!(answered().await.len(), 1);
    daemon.stop().await;
}

/// AAPL fell 12.35 % on 2013-01-24 in the bundled data: one task, and one result that cites it.
#[tokio::test]
async fn a_ten_percent_move_makes_one_task_and_one_result_that_cites_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.trading.market_speed_ms = 100;
    config.trading.start = "2013-01-22".parse().unwrap();
    let daemon = Daemon::start_with(config).await;
    // Moves only: no volume spike or drawdown is large enough here.
    let planner = manifest("research-planner")
        .replace("move = \"0.05\"", "move = \"0.10\"")
        .replace("volume_spike = \"3\"", "volume_spike = \"1000\"")
        .replace("drawdown = \"0.2\"", "drawdown = \"0.99\"");
    daemon
        .push_ok("research-planner", "research-planner", &planner)
        .await;
    daemon
        .push_ok("action-executor", EXECUTOR, &manifest(EXECUTOR))
        .await;
    let clock = daemon.start_clock();
    let task_id = "large_move-AAPL-2013-01-24";
    let result = eventually(Duration::from_secs(30), "the task's result", || async {
        let (_, listed) = daemon.get("/v1/research/results?limit=1000").await;
        listed["results"]
            .as_array()?
            .iter()
            .find(|r| r["task"] == task_id)
            .cloned()
    })
    .await;
    // Let the market run a week past the move: it asks nothing more.
    eventually(Duration::from_secs(30), "a week after the move", || async {
        let (_, market) = daemon.get("/v1/market").await;
        (market["as_of"].as_str()? >= "2013-02-01").then_some(())
    })
    .await;
    clock.abort();
    let (_, tasks) = daemon.get("/v1/research/tasks").await;
    let tasks = tasks["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    let task = &tasks[0];
    assert_eq!(task["id"], task_id);
    assert_eq!(task["kind"], "large_move");
    assert_eq!(task["specialisation"], "technical_analysis");
    assert_eq!(task["priority"], "normal", "under twice the threshold");
    let (_, bars) = daemon
        .get("/v1/market/AAPL/bars?from=2013-01-23&to=2013-01-24&as_of=2013-01-24")
        .await;
    let closes: Vec<f64> = bars["bars"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["close"].as_f64().unwrap())
        .collect();
    let change = closes[1] / closes[0] - 1.0;
    assert!((change + 0.1235).abs() < 1e-3, "{change}");
    assert!(close(task["evidence"]["value"].as_f64().unwrap(), change));
    let (_, listed) = daemon.get("/v1/research/results?limit=1000").await;
    let answering: Vec<&Value> = listed["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["task"] == task_id)
        .collect();
    assert_eq!(answering.len(), 1);
    assert_eq!(result["as_of"], "2013-01-24");
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(result["specialisation"], "technical_analysis");
    let actions: Vec<&str> = result["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["market", "compute"], "{result}");
    assert!(
        result["thesis"]
            .as_str()
            .unwrap()
            .contains("AAPL moved -12.4%"),
        "{result}"
    );
    assert!(
        close(metric(&result, "return_1d", "AAPL"), change),
        "{result}"
    );
    assert!(
        result["question"].as_str().unwrap().contains("-12.4%"),
        "{result}"
    );
    daemon.stop().await;
}

/// A track whose new version traps is rolled back, and its results keep coming.
#[tokio::test]
async fn a_track_whose_new_version_traps_is_rolled_back_and_keeps_its_pace() {
    let (daemon, _dir) = daemon(100).await;
    let watched = format!(
        "{}\n[deploy]\ncanary = 0\nmin_calls = 2\nwatch_calls = 4\nwatch = \"20s\"\n",
        track("risk_assessment")
    );
    daemon.push_ok("r-risk", RESEARCHER, &watched).await;
    let clock = daemon.start_clock();
    let results = || async {
        let (_, listed) = daemon
            .get("/v1/research/results?track=risk_assessment&limit=1000")
            .await;
        listed["results"].as_array().map_or(0, Vec::len)
    };
    eventually(Duration::from_secs(20), "a first result", || async {
        (results().await > 0).then_some(())
    })
    .await;
    let (status, body) = daemon
        .push(
            "r-risk",
            overseer_tests::component("fixture-trap"),
            Some(&watched),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    eventually(Duration::from_secs(20), "the rollback", || async {
        let agent = daemon.agent("r-risk").await;
        (agent["active_version"] == 1).then_some(())
    })
    .await;
    let before = results().await;
    eventually(
        Duration::from_secs(20),
        "results after the rollback",
        || async { (results().await > before).then_some(()) },
    )
    .await;
    clock.abort();
    let (_, tracks) = daemon.get("/v1/research/tracks").await;
    let track = &tracks["tracks"][0];
    assert_eq!(track["version"], 1);
    assert_eq!(track["last_failure"]["version"], 2, "{track}");
    assert!(
        track["last_failure"]["message"]
            .as_str()
            .unwrap()
            .contains("trap"),
        "{track}"
    );
    daemon.stop().await;
}

/// An alpha idea carries the walk-forward backtest that checked it.
#[tokio::test]
async fn an_alpha_idea_carries_the_backtest_that_checked_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.trading.market_speed_ms = 3_600_000;
    config.trading.start = "2012-08-06".parse().unwrap();
    let daemon = Daemon::start_with(config).await;
    daemon.push_ok("rules", "rules", &manifest("rules")).await;
    let alpha = track("alpha_hunting").replace(
        "grant = [\"market\", \"llm\", \"prompts\"]",
        "grant = [\"market\", \"llm\", \"prompts\", \"backtest\"]",
    );
    daemon.push_ok("r-alpha", RESEARCHER, &alpha).await;
    let (status, body) = daemon.invoke("r-alpha", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = &body["output"];
    assert!(
        result["thesis"]
            .as_str()
            .unwrap()
            .contains("momentum: long AAPL"),
        "{result}"
    );
    let validation = &result["validation"];
    assert_eq!(validation["rule"], "momentum", "{result}");
    let id = validation["backtest"].as_str().expect("the backtest's id");
    let (status, run) = daemon.get(&format!("/v1/backtests/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert_eq!(run["state"], "done");
    assert_eq!(run["spec"]["agent"], "rules");
    assert_eq!(
        run["spec"]["to"], "2012-08-06",
        "no bar after the research's as-of"
    );
    let report = &run["report"];
    assert_eq!(
        validation["out_of_sample"]["sharpe"],
        report["metrics"]["sharpe"]
    );
    assert_eq!(
        validation["out_of_sample_score"],
        report["walk_forward"]["out_of_sample_score"]
    );
    assert!(report["walk_forward"]["windows"].as_array().unwrap().len() >= 4);
    // Without the grant, an idea says why it was not checked.
    daemon
        .push_ok("r-alpha2", RESEARCHER, &track("alpha_hunting"))
        .await;
    let (_, body) = daemon.invoke("r-alpha2", json!({})).await;
    assert_eq!(body["output"]["validation"]["error"], "denied", "{body}");

    // An idea asked of the action executor is backtested the same way.
    daemon
        .push_ok("action-executor", EXECUTOR, &manifest(EXECUTOR))
        .await;
    let idea = json!({ "id": "idea-aapl", "kind": "idea", "symbols": ["AAPL"], "rule": "momentum", "question": "does momentum pay on AAPL?" });
    let (status, body) = daemon.invoke("action-executor", idea).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = &body["output"];
    assert_eq!(answer["status"], "ok", "{answer}");
    assert_eq!(
        answer["validation"]["out_of_sample"],
        validation["out_of_sample"]
    );
    let id = answer["validation"]["backtest"].as_str().unwrap();
    let (_, run) = daemon.get(&format!("/v1/backtests/{id}")).await;
    assert_eq!(run["spec"]["to"], "2012-08-06");
    assert!(
        answer["thesis"]
            .as_str()
            .unwrap()
            .contains("momentum on AAPL: out-of-sample Sharpe"),
        "{answer}"
    );
    daemon.stop().await;
}

/// MSFT rose 5.65 % on 2012-01-20 on heavy volume: one event, so one task carrying both.
#[tokio::test]
async fn a_move_on_heavy_volume_asks_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.trading.market_speed_ms = 100;
    config.trading.start = "2012-01-18".parse().unwrap();
    let daemon = Daemon::start_with(config).await;
    daemon
        .push_ok(
            "research-planner",
            "research-planner",
            &manifest("research-planner"),
        )
        .await;
    let clock = daemon.start_clock();
    eventually(Duration::from_secs(30), "the week after", || async {
        let (_, market) = daemon.get("/v1/market").await;
        (market["as_of"].as_str()? >= "2012-01-25").then_some(())
    })
    .await;
    clock.abort();
    let (_, tasks) = daemon.get("/v1/research/tasks").await;
    let that_day: Vec<&Value> = tasks["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["id"].as_str().unwrap().ends_with("MSFT-2012-01-20"))
        .collect();
    assert_eq!(that_day.len(), 1, "{tasks}");
    let task = that_day[0];
    assert_eq!(task["kind"], "large_move");
    assert!(
        task["evidence"]["volume_ratio_20d"].as_f64().unwrap() >= 3.0,
        "{task}"
    );
    assert!(
        task["question"].as_str().unwrap().contains("20-day volume"),
        "{task}"
    );
    daemon.stop().await;
}

/// A request's query pairs.
type Query = Vec<(String, String)>;

/// Polygon's financials of AAPL, as the service answers them (FY2012, filed after the
/// replay's first day, among them).
const FINANCIALS: &str =
    include_str!("../../host/providers/tests/fixtures/polygon-financials.json");

/// With a Polygon key, the fundamental track reads the filings known at its as-of: growth,
/// margins and returns recomputed here from the filings the service sent; never a filing made
/// after the as-of day.
#[tokio::test]
async fn the_fundamental_track_reads_the_filings_known_at_its_as_of() {
    let queries: Arc<Mutex<Vec<Query>>> = Arc::default();
    let seen = queries.clone();
    let app = axum::Router::new().route(
        "/vX/reference/financials",
        axum::routing::get(
            move |axum::extract::Query(query): axum::extract::Query<Query>| {
                let seen = seen.clone();
                async move {
                    let aapl = query.contains(&("ticker".to_string(), "AAPL".to_string()));
                    seen.lock().unwrap().push(query);
                    let body = if aapl {
                        FINANCIALS.to_string()
                    } else {
                        json!({ "results": [], "status": "OK", "request_id": "e", "count": 0 })
                            .to_string()
                    };
                    (
                        [(axum::http::header::CONTENT_TYPE, "application/json")],
                        body,
                    )
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.trading.polygon.url = url;
    config.trading.polygon.key = Some(overseer_providers::Secret::new("pk"));
    let daemon = Daemon::start_with(config).await;
    let shipped =
        overseer_selfedit::bundled_manifests(&overseer_tests::agents_dir().join(RESEARCHER))
            .unwrap();
    let fundamental = shipped
        .iter()
        .find(|m| m.name.as_deref() == Some("research-fundamental"))
        .unwrap();
    let manifest = toml::to_string(fundamental).unwrap();
    daemon
        .push_ok("research-fundamental", RESEARCHER, &manifest)
        .await;
    let (status, body) = daemon
        .invoke(
            "research-fundamental",
            json!({ "symbols": ["AAPL", "MSFT"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let result = &body["output"];
    assert_eq!(result["status"], "ok", "{result}");
    let growth = metric(result, "revenue_growth_1y", "AAPL");
    assert!(close(growth, 108_249e6 / 65_225e6 - 1.0), "{growth}");
    assert!(close(
        metric(result, "net_margin", "AAPL"),
        25_922e6 / 108_249e6
    ));
    assert!(close(
        metric(result, "return_on_equity", "AAPL"),
        25_922e6 / 76_615e6
    ));
    assert!(close(
        metric(result, "liabilities_to_equity", "AAPL"),
        39_756e6 / 76_615e6
    ));
    assert!(close(metric(result, "eps_diluted", "AAPL"), 27.68));
    let evidence = &result["evidence"][0];
    assert_eq!(
        evidence["source"], "filing:AAPL:FY2011:2011-10-26",
        "{result}"
    );
    assert_eq!(evidence["as_of"], "2011-10-26");
    assert!(
        result["thesis"]
            .as_str()
            .unwrap()
            .contains("MSFT: no annual filing yet"),
        "{result}"
    );
    let queries = queries.lock().unwrap().clone();
    assert_eq!(queries.len(), 2);
    assert!(
        queries
            .iter()
            .all(|q| q.contains(&("filing_date.lte".to_string(), "2012-01-03".to_string()))),
        "{queries:?}"
    );

    // A track without the grant says why it has nothing.
    let ungranted = manifest.replace(", \"fundamentals\"", "");
    daemon
        .push_ok(
            "research-fundamental-2",
            RESEARCHER,
            &ungranted.replace("research-fundamental", "research-fundamental-2"),
        )
        .await;
    let (_, body) = daemon.invoke("research-fundamental-2", json!({})).await;
    assert_eq!(body["output"]["status"], "unavailable", "{body}");
    assert!(
        body["output"]["thesis"]
            .as_str()
            .unwrap()
            .contains("not granted"),
        "{body}"
    );
    daemon.stop().await;
}
