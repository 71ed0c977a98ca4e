//! The Overseer: its loops run at their scaled intervals and keep their runs; the health
//! loop opens a performance alert for a slow agent and resolves it with the figures once it
//! is fast again; healing resolves a rollback alert once the agent serves without failing;
//! the daily report holds the numbers of what happened, as JSON, Markdown and HTML.

use std::time::Duration;

use overseer_tests::{Daemon, FakeLlm, WAIT, component, eventually, test_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn run(daemon: &Daemon, name: &str) -> Value {
    let (status, run) = daemon
        .post(&format!("/v1/overseer/loops/{name}/run"), String::new())
        .await;
    assert_eq!(status, StatusCode::OK, "{run}");
    assert!(run["error"].is_null(), "{run}");
    run
}

#[tokio::test]
async fn the_loops_run_at_their_scaled_intervals_and_keep_their_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    // A day in two seconds: every other loop at the 50 ms floor.
    config.overseer.clock_factor = 43_200.0;
    let daemon = Daemon::start_with(config).await;
    let overseer = daemon
        .daemon
        .state
        .overseer
        .clone()
        .expect("the Overseer is on");
    let handles = overseer.start();
    let runs = |name: &'static str| {
        let daemon = &daemon;
        async move {
            let (_, body) = daemon
                .get(&format!("/v1/overseer/runs?loop={name}&limit=100"))
                .await;
            body["runs"].as_array().cloned().unwrap_or_default()
        }
    };
    eventually(
        Duration::from_secs(20),
        "every loop has run, governance once",
        || async {
            let mut all = true;
            for name in ["health", "healing", "performance", "optimisation"] {
                all &= runs(name).await.len() >= 3;
            }
            (all && !runs("governance").await.is_empty()).then_some(())
        },
    )
    .await;
    for handle in handles {
        handle.abort();
    }
    let (_, loops) = daemon.get("/v1/overseer").await;
    assert_eq!(loops["clock_factor"], 43_200.0);
    let listed = loops["loops"].as_array().unwrap();
    assert_eq!(listed.len(), 5);
    for l in listed {
        assert!(l["last_run"]["ended_ms"].as_u64().is_some(), "{l}");
        assert!(l["next_run_ms"].as_u64().is_some(), "{l}");
    }
    let every = |name: &str| {
        listed.iter().find(|l| l["name"] == name).unwrap()["every_ms"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(every("governance"), 2000);
    assert_eq!(every("health"), 50);
    // Health runs come at their interval, not faster: ended times at least 50 ms apart.
    let health = runs("health").await;
    for pair in health.windows(2) {
        let gap = pair[0]["started_ms"].as_u64().unwrap() - pair[1]["started_ms"].as_u64().unwrap();
        assert!(gap >= 45, "{gap} ms between two health runs");
    }
    let governance = &runs("governance").await[0];
    let date = governance["did"]["report"].as_str().unwrap();
    let (status, report) = daemon.get(&format!("/v1/reports/{date}.json")).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let (status, _) = daemon.get("/v1/overseer/runs?loop=astrology").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = daemon
        .post("/v1/overseer/loops/astrology/run", String::new())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "unknown_loop");
    daemon.stop().await;
}

#[tokio::test]
async fn a_slow_agent_is_flagged_and_cleared_and_the_report_counts_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.overseer.window_secs = 5;
    config.overseer.min_calls = 5;
    let daemon = Daemon::start_with(config).await;
    daemon
        .push_ok("slow", "fixture-flaky", "[limits]\ntimeout_ms = 1000\n")
        .await;
    for _ in 0..6 {
        daemon.call_ok("slow", json!({ "spin_ms": 600 })).await;
    }
    let health = run(&daemon, "health").await;
    let opened = &health["did"]["opened"];
    assert_eq!(opened.as_array().unwrap().len(), 1, "{health}");
    let alert = daemon
        .alert_of("state=open", "performance_degradation")
        .await;
    assert_eq!(alert["agent"], "slow");
    let p95 = alert["evidence"]["p95_ms"].as_f64().unwrap();
    assert!(p95 >= 500.0, "{alert}");
    // A second run while it is still slow opens nothing more.
    let again = run(&daemon, "health").await;
    assert!(
        again["did"]["opened"].as_array().unwrap().is_empty(),
        "{again}"
    );

    // Fast again: once the slow calls leave the window, the alert is resolved with figures.
    let resolved = eventually(Duration::from_secs(20), "the alert resolved", || async {
        daemon.call_ok("slow", json!({ "n": 1 })).await;
        let health = run(&daemon, "health").await;
        health["did"]["resolved"].as_array()?.first().cloned()
    })
    .await;
    assert!(
        resolved["resolution"]
            .as_str()
            .unwrap()
            .contains("p95 latency back to"),
        "{resolved}"
    );
    let (_, closed) = daemon.get(&format!("/v1/alerts/{}", alert["id"])).await;
    assert!(closed["resolved_ms"].is_u64(), "{closed}");

    // The day's report holds the numbers of what happened.
    let governance = run(&daemon, "governance").await;
    let date = governance["did"]["report"].as_str().unwrap().to_string();
    let (_, report) = daemon.get(&format!("/v1/reports/{date}.json")).await;
    let slow = report["performance"]["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "slow")
        .unwrap()
        .clone();
    let (_, agent) = daemon.get("/v1/agents/slow").await;
    let counters = &agent["counters"];
    assert_eq!(
        slow["calls"], counters["invocations_ok"],
        "every call of the day: {slow} {agent}"
    );
    assert_eq!(slow["fuel"], counters["fuel_consumed"], "{slow} {agent}");
    assert_eq!(slow["failures"], 0);
    assert_eq!(report["health"]["alerts"]["opened"], 1, "{report}");
    assert_eq!(report["health"]["alerts"]["resolved"], 1, "{report}");
    assert_eq!(report["activities"]["by_action"]["activate"], 1, "{report}");
    let (status, reports) = daemon.get("/v1/reports").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reports["reports"][0]["date"], date.as_str());
    for (format, needle) in [("md", "# Daily report"), ("html", "<canvas id=\"calls\">")] {
        let response = reqwest::Client::new()
            .get(daemon.url(&format!("/v1/reports/latest.{format}")))
            .bearer_auth(overseer_tests::TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        assert!(
            text.contains(needle),
            "{format}: {}",
            &text[..text.len().min(300)]
        );
    }
    let (status, body) = daemon.get("/v1/reports/2001-01-01.json").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = daemon.get("/v1/reports/latest.pdf").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    daemon.stop().await;
}

#[tokio::test]
async fn healing_resolves_a_rollback_alert_once_the_agent_serves_without_failing() {
    let daemon = Daemon::start().await;
    daemon.failing_watch_window("svc").await;
    let alert = daemon.alert_of("state=open", "rollback").await;
    // Not yet: nothing has been served since.
    let healing = run(&daemon, "healing").await;
    assert!(
        healing["did"]["resolved"].as_array().unwrap().is_empty(),
        "{healing}"
    );
    eventually(WAIT, "version 1 answering", || async {
        let (_, body) = daemon.invoke("svc", json!({ "n": 9 })).await;
        (body["version"] == 1).then_some(())
    })
    .await;
    let healing = run(&daemon, "healing").await;
    let resolved = &healing["did"]["resolved"][0];
    assert_eq!(resolved["alert"], alert["id"], "{healing}");
    assert!(
        resolved["resolution"]
            .as_str()
            .unwrap()
            .contains("without a failure"),
        "{resolved}"
    );
    let (_, closed) = daemon.get(&format!("/v1/alerts/{}", alert["id"])).await;
    assert!(closed["resolved_ms"].is_u64(), "{closed}");
    daemon.stop().await;
}

/// Chromium from the machine (`chromium`, or `OVERSEER_TEST_CHROMIUM`); CI installs it.
fn chromium() -> Option<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("OVERSEER_TEST_CHROMIUM") {
        return Some(path.into());
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|candidate| candidate.is_file())
            })
        })
}

#[tokio::test]
async fn the_html_report_draws_its_charts_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI installs chromium: the report's charts must be checked"
        );
        eprintln!("no chromium on this machine: the report's charts are not checked");
        return;
    };
    let daemon = Daemon::start().await;
    daemon.push_ok("echo", "echo", "").await;
    for n in 0..4 {
        daemon.call_ok("echo", json!({ "n": n })).await;
    }
    run(&daemon, "governance").await;
    let html = reqwest::Client::new()
        .get(daemon.url("/v1/reports/latest.html"))
        .bearer_auth(overseer_tests::TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    daemon.stop().await;
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    std::fs::write(&page, &html).unwrap();
    let shot = dir.path().join("report.png");
    let url = format!("file://{}", page.display());
    let headless = |extra: &[String]| {
        let mut command = std::process::Command::new(&chromium);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,1600",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .args(extra)
            .arg(&url);
        command.output().expect("chromium runs")
    };
    let dom = headless(&["--dump-dom".to_string()]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains("data-charts=\"3\""),
        "three charts drawn: {}",
        &dom[..dom.len().min(400)]
    );
    // Chart.js sizes each canvas it draws on.
    assert_eq!(dom.matches("<canvas").count(), 3);
    let sized = dom
        .split("<canvas")
        .skip(1)
        .filter(|c| {
            c.split('>')
                .next()
                .is_some_and(|tag| tag.contains("style=\"display: block"))
        })
        .count();
    assert_eq!(sized, 3, "{dom}");
    let shot_arg = format!("--screenshot={}", shot.display());
    let out = headless(&[shot_arg]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
}

/// A day in one second: decisions fall due, and approvals time out, within the test.
async fn fast_daemon() -> (Daemon, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.overseer.clock_factor = 86_400.0;
    // The health window stays a minute of wall time: the meeting sees the test's calls.
    config.overseer.window_secs = 60 * 86_400;
    let daemon = Daemon::start_with(config).await;
    (daemon, dir)
}

/// `svc` at version 2, failing 12 of its last 13 calls, with version 1 to go back to: the
/// version passed its watch, so the supervisor lets it be.
async fn failing_svc(daemon: &Daemon) {
    daemon.push_ok("svc", "echo", "").await;
    let manifest = "[deploy]\ncanary = 0\nwatch_calls = 1\nmin_calls = 1\n[supervision]\nmax_failures = 1000\n";
    let (status, body) = daemon
        .push("svc", component("fixture-flaky"), Some(manifest))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    daemon.call_ok("svc", json!({ "n": 0 })).await;
    daemon.wait_verdict("svc", 2, "stable").await;
    for _ in 0..12 {
        daemon.invoke("svc", json!({ "fail": "error" })).await;
    }
}

/// The meeting rolls back an agent failing most of its calls (a low-risk decision, applied
/// at once), and on its date the decision is measured against the calls since.
#[tokio::test]
async fn the_meeting_rolls_back_a_failing_agent_and_the_decision_is_measured_on_its_date() {
    let (daemon, _dir) = fast_daemon().await;
    failing_svc(&daemon).await;
    let governance = run(&daemon, "governance").await;
    let made = governance["did"]["decisions"].as_array().unwrap().clone();
    assert_eq!(made.len(), 1, "{governance}");
    assert_eq!(made[0]["title"], "roll back svc");
    let id = made[0]["decision"].as_i64().unwrap();
    let (_, decision) = daemon.get(&format!("/v1/decisions/{id}")).await;
    assert_eq!(decision["policy"], "auto");
    assert_eq!(decision["state"], "applied", "{decision}");
    assert_eq!(decision["body"]["kind"], "system_improvement");
    assert_eq!(decision["body"]["metric"]["name"], "error_rate");
    assert_eq!(
        daemon.agent("svc").await["active_version"],
        1,
        "the decision changed the system"
    );
    // The next meeting does not decide it again.
    let again = run(&daemon, "governance").await;
    assert!(
        again["did"]["decisions"].as_array().unwrap().is_empty(),
        "{again}"
    );
    // Served without failing since: on its date the decision has met its target.
    for n in 0..3 {
        daemon.call_ok("svc", json!({ "n": n })).await;
    }
    let evaluated = eventually(Duration::from_secs(20), "the decision measured", || async {
        let healing = run(&daemon, "healing").await;
        healing["did"]["decisions_evaluated"]
            .as_array()?
            .first()
            .cloned()
    })
    .await;
    assert_eq!(evaluated["decision"], id);
    assert_eq!(evaluated["outcome"], "met", "{evaluated}");
    let (_, decision) = daemon.get(&format!("/v1/decisions/{id}")).await;
    assert_eq!(decision["outcome"], "met");
    assert_eq!(decision["measured"]["calls"], 3, "{decision}");
    // The next meeting sees that history.
    let governance = run(&daemon, "governance").await;
    let date = governance["did"]["report"].as_str().unwrap();
    let (_, report) = daemon.get(&format!("/v1/reports/{date}.json")).await;
    let history = report["decisions"]["history"].as_array().unwrap();
    assert!(
        history
            .iter()
            .any(|d| d["id"] == id && d["outcome"] == "met"),
        "{report}"
    );
    daemon.stop().await;
}

/// A decision to halt trading, which waits for a person.
pub(crate) fn halt(title: &str) -> Value {
    json!({
        "kind": "risk_management",
        "title": title,
        "priority": "critical",
        "expected_impact": "no new exposure",
        "effort": "low",
        "rationale": "a test",
        "actions": [{ "type": "halt_trading" }],
        "metric": { "name": "calls", "agent": "echo", "comparator": "at_least", "target": 0.0, "due_in_secs": 86400 },
    })
}

/// Touching capital waits for a person: applied only after approval; a rejected decision and
/// one nobody approved in time are never applied.
#[tokio::test]
async fn decisions_on_capital_wait_for_a_person_and_are_applied_only_when_approved() {
    let (daemon, _dir) = fast_daemon().await;
    daemon.push_ok("echo", "echo", "").await;
    let risk = || async { daemon.get("/v1/risk").await.1["risk"]["state"].clone() };
    let propose = |decision: Value| {
        let daemon = &daemon;
        async move { daemon.post("/v1/decisions", decision.to_string()).await }
    };
    // Rejected: never applied.
    let (status, rejected) = propose(halt("halt, then rejected")).await;
    assert_eq!(status, StatusCode::CREATED, "{rejected}");
    assert_eq!(rejected["state"], "awaiting_approval");
    assert_eq!(rejected["policy"], "person");
    let (status, body) = daemon
        .post(
            &format!("/v1/decisions/{}/reject", rejected["id"]),
            json!({ "reason": "not today" }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "rejected");
    assert_eq!(risk().await, "active");
    let (status, body) = daemon
        .post(
            &format!("/v1/decisions/{}/approve", rejected["id"]),
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "not_awaiting");

    // Timed out: a day (a second here) without approval, never applied.
    let (_, lapsed) = propose(halt("halt, then forgotten")).await;
    let expired = eventually(
        Duration::from_secs(20),
        "the approval timed out",
        || async {
            let healing = run(&daemon, "healing").await;
            healing["did"]["decisions_expired"]
                .as_array()?
                .first()
                .cloned()
        },
    )
    .await;
    assert_eq!(expired, lapsed["id"]);
    let (_, lapsed) = daemon.get(&format!("/v1/decisions/{}", lapsed["id"])).await;
    assert_eq!(lapsed["state"], "expired", "{lapsed}");
    assert_eq!(risk().await, "active");

    // Approved too late: the decision has expired, and nothing is applied.
    let (_, late) = propose(halt("halt, approved too late")).await;
    let made_ms = late["made_ms"].as_u64().unwrap();
    eventually(
        Duration::from_secs(10),
        "the approval time passed",
        || async { (overseer_store::now_ms() > made_ms + 1100).then_some(()) },
    )
    .await;
    let (status, body) = daemon
        .post(
            &format!("/v1/decisions/{}/approve", late["id"]),
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
    assert_eq!(risk().await, "active");

    // Approved: applied at once.
    let (_, waiting) = propose(halt("halt, approved")).await;
    assert_eq!(risk().await, "active", "nothing happens before approval");
    let (status, approved) = daemon
        .post(
            &format!("/v1/decisions/{}/approve", waiting["id"]),
            json!({ "reason": "the drawdown is real" }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{approved}");
    assert_eq!(approved["state"], "applied", "{approved}");
    assert_eq!(approved["decided_by"], "person");
    assert_eq!(risk().await, "halted");

    // Bad input: not a decision, an unknown agent, an unknown decision.
    let mut unknown_action = halt("x");
    unknown_action["actions"] = json!([{ "type": "sell_everything" }]);
    let mut unknown_agent = halt("y");
    unknown_agent["metric"]["agent"] = json!("nobody");
    for bad in [json!({ "title": "no kind" }), unknown_action, unknown_agent] {
        let (status, body) = propose(bad).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_decision");
    }
    let (status, _) = daemon
        .post("/v1/decisions/9999/approve", String::new())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Every step is on the audit trail.
    let (_, audit) = daemon.get("/v1/audit?limit=1000").await;
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "decision",
        "rejection",
        "decision.expired",
        "approval",
        "decision.applied",
        "risk.halted",
    ] {
        assert!(actions.contains(&action), "{action}: {actions:?}");
    }
    daemon.stop().await;
}

/// The fleet answers a meta-agent that holds the grant and denies one that does not; what it
/// asks for is decided by the policy, never by the agent: capital waits for a person, a
/// budget within the caps is applied by the host.
#[tokio::test]
async fn the_fleet_answers_meta_agents_and_their_requests_go_through_the_policy() {
    let daemon = Daemon::start().await;
    daemon.push_ok("echo", "echo", "").await;
    for n in 0..3 {
        daemon.call_ok("echo", json!({ "n": n })).await;
    }
    let probe = |agent: &'static str, probe: Value| {
        let daemon = &daemon;
        async move {
            let (status, body) = daemon.invoke(agent, probe).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["output"].clone()
        }
    };
    daemon.push_ok("plain", "fixture-prober", "").await;
    let denied = probe("plain", json!({ "call": "fleet_telemetry" })).await;
    assert_eq!(denied["error"], "denied", "{denied}");

    daemon
        .push_ok(
            "meta",
            "fixture-prober",
            "[capabilities]\ngrant = [\"fleet\"]\n",
        )
        .await;
    let telemetry = probe("meta", json!({ "call": "fleet_telemetry" })).await;
    let echo = telemetry["ok"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["agent"] == "echo")
        .cloned()
        .unwrap();
    assert_eq!(
        (echo["calls"].as_u64(), echo["version"].as_u64()),
        (Some(3), Some(1))
    );
    assert_eq!(echo["llm_tokens"], 0);
    let alerts = probe("meta", json!({ "call": "fleet_alerts" })).await;
    assert!(alerts["ok"].is_array(), "{alerts}");

    // Capital: the agent's request waits for a person, and the gate is untouched.
    let halt = probe(
        "meta",
        json!({ "call": "fleet_propose", "decision": halt("halt from an agent") }),
    )
    .await;
    assert_eq!(halt["ok"]["state"], "awaiting_approval", "{halt}");
    assert_eq!(halt["ok"]["proposer"], "meta");
    let (_, risk) = daemon.get("/v1/risk").await;
    assert_eq!(risk["risk"]["state"], "active");
    // A budget within the caps: applied by the host.
    let budget = json!({
        "kind": "resource_allocation", "title": "less for echo", "priority": "low",
        "expected_impact": "spend less", "effort": "low", "rationale": "it asks no model",
        "actions": [{ "type": "set_budget", "agent": "echo", "tokens_per_day": 1000, "usd_per_day": 0.1 }],
        "metric": { "name": "calls", "agent": "echo", "comparator": "at_least", "target": 0.0, "due_in_secs": 3600 },
    });
    let applied = probe(
        "meta",
        json!({ "call": "fleet_propose", "decision": budget }),
    )
    .await;
    assert_eq!(applied["ok"]["state"], "applied", "{applied}");
    let (_, budgets) = daemon.get("/v1/budgets").await;
    let echo_budget = budgets["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["agent"] == "echo")
        .cloned()
        .unwrap();
    assert_eq!(echo_budget["budget"]["tokens"], 1000, "{echo_budget}");
    let bad = probe(
        "meta",
        json!({ "call": "fleet_propose", "decision": { "title": "no kind" } }),
    )
    .await;
    assert_eq!(bad["error"], "invalid_input", "{bad}");

    // Pausing an unprivileged agent is the host's to do at once; pausing a privileged one
    // waits for a person.
    let pause = |agent: &str, action: &str| {
        json!({
            "kind": "system_improvement", "title": format!("{action} {agent}"), "priority": "medium",
            "expected_impact": "quiet", "effort": "low", "rationale": "a test",
            "actions": [{ "type": action, "agent": agent }],
            "metric": { "name": "calls", "agent": agent, "comparator": "at_least", "target": 0.0, "due_in_secs": 3600 },
        })
    };
    let paused = probe(
        "meta",
        json!({ "call": "fleet_propose", "decision": pause("echo", "pause") }),
    )
    .await;
    assert_eq!(paused["ok"]["state"], "applied", "{paused}");
    let (status, body) = daemon.invoke("echo", json!("hello")).await;
    assert_eq!(body["error"]["code"], "quarantined", "{status} {body}");
    let resumed = probe(
        "meta",
        json!({ "call": "fleet_propose", "decision": pause("echo", "resume") }),
    )
    .await;
    assert_eq!(resumed["ok"]["state"], "applied", "{resumed}");
    daemon.call_ok("echo", json!("back")).await;
    let privileged = probe(
        "meta",
        json!({ "call": "fleet_propose", "decision": pause("meta", "pause") }),
    )
    .await;
    assert_eq!(
        privileged["ok"]["state"], "awaiting_approval",
        "{privileged}"
    );

    // An alert raised by an agent names who raised it.
    let raised = probe("meta", json!({ "call": "fleet_raise", "agent": "echo", "kind": "suspicious_output", "priority": "medium" })).await;
    let id = raised["ok"].as_i64().expect("an alert id");
    let (_, alert) = daemon.get(&format!("/v1/alerts/{id}")).await;
    assert_eq!(alert["type"], "suspicious_output");
    assert_eq!(alert["evidence"]["raised_by"], "meta");
    let bad_kind = probe(
        "meta",
        json!({ "call": "fleet_raise", "agent": "echo", "kind": "Not A Kind" }),
    )
    .await;
    assert_eq!(bad_kind["error"], "invalid_input", "{bad_kind}");
    daemon.stop().await;
}

/// The performance analyst reads the fleet: a slow agent is recommended for work, and the
/// recommendation is tracked until the agent is fast again.
#[tokio::test]
async fn the_performance_analyst_tracks_its_recommendations_to_their_target() {
    let daemon = Daemon::start().await;
    let analyst = overseer_tests::manifest("performance-analyst")
        .replace("window_ms = \"3600000\"", "window_ms = \"1500\"");
    daemon
        .push_ok("performance-analyst", "performance-analyst", &analyst)
        .await;
    daemon
        .push_ok("slow", "fixture-flaky", "[limits]\ntimeout_ms = 200\n")
        .await;
    for _ in 0..4 {
        daemon.call_ok("slow", json!({ "spin_ms": 130 })).await;
    }
    let (status, body) = daemon.invoke("performance-analyst", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["output"];
    let slow = report["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["agent"] == "slow")
        .cloned()
        .unwrap();
    assert_eq!(slow["trend"], "new");
    assert!(slow["deadline_share"].as_f64().unwrap() >= 0.5, "{slow}");
    let recommended = &report["recommendations"][0];
    assert_eq!(
        (
            recommended["agent"].as_str(),
            recommended["metric"].as_str()
        ),
        (Some("slow"), Some("p95_share"))
    );
    assert_eq!(report["tracked"][0]["status"], "open");
    // Fast again: once the slow calls leave the window, the recommendation is met.
    let met = eventually(
        Duration::from_secs(20),
        "the recommendation met",
        || async {
            daemon.call_ok("slow", json!({ "n": 1 })).await;
            let (_, body) = daemon.invoke("performance-analyst", json!({})).await;
            let tracked = body["output"]["tracked"].as_array()?.clone();
            tracked
                .into_iter()
                .find(|t| t["agent"] == "slow" && t["status"] == "met")
        },
    )
    .await;
    assert!(met["value"].as_f64().unwrap() <= 0.4, "{met}");
    let (_, events) = daemon.get("/v1/events?topic=performance.report").await;
    assert!(
        events["events"].as_array().unwrap().len() >= 2,
        "kept in the store"
    );
    daemon.stop().await;
}

/// Faults of every kind in one daemon, handled end to end: trap, timeout, memory and error
/// burst are rolled back and their alerts resolved by healing once the agents serve again; a
/// bad-health build never goes live; a slow agent and a dependency that goes away are
/// flagged by the health loop and cleared when they recover. The day's report then holds
/// exactly what the API and the audit trail say happened.
#[tokio::test]
async fn a_fault_campaign_is_handled_by_the_loops_and_counted_in_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.overseer.window_secs = 2;
    config.overseer.min_calls = 5;
    let daemon = Daemon::start_with(config).await;

    // Builds that go live and fail: each rolled back by its watch window.
    for (name, fault) in [
        ("trapper", "trap"),
        ("spinner", "timeout"),
        ("hog", "memory"),
        ("burst", "error-burst"),
    ] {
        daemon
            .push_ok(name, "echo", "[limits]\ntimeout_ms = 300\n")
            .await;
        let report = overseer_tests::drill(&daemon, name, fault).await;
        assert!(
            matches!(report.outcome, overseer::drill::Outcome::RolledBack { .. }),
            "{fault}: {report:?}"
        );
    }
    // A build that says it is unhealthy never goes live.
    daemon.push_ok("sick", "echo", "").await;
    let report = overseer_tests::drill(&daemon, "sick", "bad-health").await;
    assert!(
        matches!(report.outcome, overseer::drill::Outcome::Rejected { .. }),
        "{report:?}"
    );
    // A slow agent.
    daemon
        .push_ok("slow", "fixture-flaky", "[limits]\ntimeout_ms = 200\n")
        .await;
    for _ in 0..6 {
        daemon.call_ok("slow", json!({ "spin_ms": 130 })).await;
    }
    // A dependency that goes away.
    daemon.push_ok("dep", "echo", "").await;
    daemon
        .push_ok("needs-dep", "echo", "[agent]\ndependencies = [\"dep\"]\n")
        .await;
    let (status, body) = daemon.delete("/v1/agents/dep").await;
    assert!(status.is_success(), "{body}");

    let health = run(&daemon, "health").await;
    let opened: Vec<&str> = health["did"]["opened"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["agent"].as_str().unwrap())
        .collect();
    assert!(
        opened.contains(&"slow") && opened.contains(&"needs-dep"),
        "{health}"
    );

    // Recovery: the dependency is back (its version active again), every agent serves
    // without failing.
    let (status, body) = daemon.push("dep", component("echo"), None).await;
    assert!(status.is_success(), "{body}");
    eventually(Duration::from_secs(30), "every alert resolved", || async {
        for name in ["trapper", "spinner", "hog", "burst", "slow", "needs-dep"] {
            daemon.call_ok(name, json!({ "n": 1 })).await;
        }
        run(&daemon, "health").await;
        run(&daemon, "healing").await;
        daemon.alerts("state=open").await.is_empty().then_some(())
    })
    .await;

    // The day's report, against what the API and the trail say.
    let governance = run(&daemon, "governance").await;
    let date = governance["did"]["report"].as_str().unwrap().to_string();
    let (_, report) = daemon.get(&format!("/v1/reports/{date}.json")).await;
    let alerts = daemon.alerts("limit=1000").await;
    let mut by_type = serde_json::Map::new();
    for a in &alerts {
        let n = by_type
            .entry(a["type"].as_str().unwrap())
            .or_insert(json!(0));
        *n = json!(n.as_u64().unwrap() + 1);
    }
    assert_eq!(
        report["health"]["alerts"]["by_type"],
        Value::Object(by_type),
        "{report}"
    );
    assert_eq!(report["health"]["alerts"]["opened"], alerts.len());
    assert_eq!(report["health"]["alerts"]["resolved"], alerts.len());
    assert_eq!(report["health"]["alerts"]["open"], 0);
    for kind in ["rollback", "performance_degradation", "dependency_missing"] {
        assert!(
            alerts.iter().any(|a| a["type"] == kind),
            "{kind}: {alerts:?}"
        );
    }
    let (_, trail) = daemon.get("/v1/audit?limit=1000").await;
    let mut by_action = serde_json::Map::new();
    let to_ms = report["to_ms"].as_u64().unwrap();
    for e in trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["at_ms"].as_u64().unwrap() < to_ms)
    {
        let n = by_action
            .entry(e["action"].as_str().unwrap())
            .or_insert(json!(0));
        *n = json!(n.as_u64().unwrap() + 1);
    }
    assert_eq!(
        report["activities"]["by_action"],
        Value::Object(by_action),
        "{report}"
    );
    assert_eq!(report["activities"]["by_action"]["rollback"], 4);
    assert_eq!(report["activities"]["by_action"]["retire"], 1);
    // What the host fixed already, the meeting does not decide on again.
    let made = &report["decisions"]["made"];
    assert!(
        made.as_array()
            .unwrap()
            .iter()
            .all(|d| !d["title"].as_str().unwrap().starts_with("roll back")),
        "{made}"
    );
    for a in report["performance"]["agents"].as_array().unwrap() {
        let name = a["agent"].as_str().unwrap();
        let (_, agent) = daemon.get(&format!("/v1/agents/{name}")).await;
        let counters = &agent["counters"];
        // Every call of the day, as the counters have them (failures included).
        let failed: u64 = a["failures"].as_u64().unwrap();
        assert_eq!(
            a["calls"].as_u64().unwrap() - failed,
            counters["invocations_ok"].as_u64().unwrap(),
            "{name}: {a} {agent}"
        );
        assert_eq!(a["fuel"], counters["fuel_consumed"], "{name}");
    }
    daemon.stop().await;
}

/// With a model, the meeting is the `governance` agent's: an answer that is not JSON, or
/// holds a decision the host's check refuses, is asked again with what was wrong; a valid one
/// goes through the policy. When no valid answer comes, the host's rules decide.
#[tokio::test]
async fn the_governance_agent_decides_with_a_model_and_is_asked_again_when_invalid() {
    let rollback = json!({
        "kind": "system_improvement", "title": "roll back svc on the model's advice",
        "priority": "high", "expected_impact": "svc back under 1% errors", "effort": "low",
        "rationale": "svc failed 12 of 13 calls",
        "actions": [{ "type": "rollback", "agent": "svc" }],
        "metric": { "name": "error_rate", "agent": "svc", "comparator": "at_most", "target": 0.01, "due_in_secs": 86400 },
    });
    let mut astrology = rollback.clone();
    astrology["kind"] = json!("astrology");
    let llm = FakeLlm::start(vec![
        "We should roll back svc.".to_string(),
        json!({ "decisions": [astrology] }).to_string(),
        format!(
            "Here it is:\n```json\n{}\n```",
            json!({ "decisions": [rollback] })
        ),
        "No idea.".to_string(),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = llm.config(dir.path());
    config.overseer.clock_factor = 86_400.0;
    config.overseer.window_secs = 60 * 86_400;
    let daemon = Daemon::start_with(config).await;
    daemon
        .push_ok(
            "governance",
            "governance",
            &overseer_tests::manifest("governance"),
        )
        .await;
    failing_svc(&daemon).await;

    let governance = run(&daemon, "governance").await;
    let made = governance["did"]["decisions"].as_array().unwrap().clone();
    assert_eq!(made.len(), 1, "{governance}");
    assert_eq!(made[0]["title"], "roll back svc on the model's advice");
    assert_eq!(made[0]["state"], "applied");
    assert_eq!(daemon.agent("svc").await["active_version"], 1);
    let date = governance["did"]["report"].as_str().unwrap();
    let (_, report) = daemon.get(&format!("/v1/reports/{date}.json")).await;
    assert_eq!(report["decisions"]["source"], "agent", "{report}");
    assert_eq!(llm.requests().len(), 3, "asked again twice");
    assert!(
        llm.prompt(1).contains("no JSON object"),
        "{}",
        llm.prompt(1)
    );
    assert!(
        llm.prompt(2).contains("decision 1: not a decision"),
        "{}",
        llm.prompt(2)
    );
    assert!(
        llm.prompt(0).contains("\"svc\""),
        "the report reaches the model"
    );

    // No valid answer: the rules decide (and find nothing left to do).
    let governance = run(&daemon, "governance").await;
    let date = governance["did"]["report"].as_str().unwrap();
    let (_, report) = daemon.get(&format!("/v1/reports/{date}.json")).await;
    let source = report["decisions"]["source"]["rules"].as_str().unwrap();
    assert!(source.contains("no valid answer in 3 attempts"), "{report}");
    assert_eq!(llm.requests().len(), 6);
    daemon.stop().await;
}
