//! The health model, one test per remediation path: canary rejection, rollback inside the
//! watch window, an inconclusive window, quarantine and its release, and the health loop.

use overseer_tests::{Daemon, WAIT, component, eventually};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn canary_rejects_a_version_that_fails_recent_events() {
    let daemon = Daemon::start().await;
    daemon.push_ok("svc", "echo", "").await;
    for n in 0..5 {
        daemon.call_ok("svc", json!({ "n": n })).await;
    }
    let (status, body) = daemon.push("svc", component("fixture-trap"), None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "canary_failed");
    let record = daemon.version("svc", 2).await;
    assert_eq!(record["stage"], "canary");
    let canary = overseer_tests::check(&record, "canary");
    assert_eq!(canary["ok"], false);
    assert!(
        canary["detail"].as_str().unwrap().contains("5 of 5"),
        "{canary}"
    );
    assert_eq!(daemon.call_ok("svc", json!("still")).await, 1);
}

#[tokio::test]
async fn failing_version_is_rolled_back_inside_its_watch_window() {
    let daemon = Daemon::start().await;
    let manifest = "[deploy]\nwatch_calls = 5\nmin_calls = 3\nwatch = \"20s\"\n";
    daemon.push_ok("svc", "echo", manifest).await;
    for n in 0..5 {
        daemon.call_ok("svc", json!({ "n": n })).await;
    }
    daemon.wait_verdict("svc", 1, "stable").await;

    let (status, body) = daemon.push("svc", component("fixture-flaky"), None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for _ in 0..3 {
        let (status, body) = daemon.invoke("svc", json!({ "fail": "error" })).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::OK,
            "{body}"
        );
    }
    eventually(WAIT, "version 1 answering again", || async {
        let (_, body) = daemon.invoke("svc", json!({ "n": 9 })).await;
        (body["version"] == 1).then_some(())
    })
    .await;
    let v2 = daemon.wait_verdict("svc", 2, "rolled-back").await;
    assert_eq!(v2["state"], "rolled-back");
    assert!(
        v2["verdict_detail"].as_str().unwrap().contains("3 of 3"),
        "{v2}"
    );
    let rollback = daemon.alert_of("state=open", "rollback").await;
    assert_eq!(rollback["priority"], "high");
    assert_eq!(rollback["evidence"]["to"], 1);

    let (status, body) = daemon.get(&format!("/v1/alerts/{}", rollback["id"])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["agent"], "svc");
    let (status, body) = daemon
        .post(
            &format!("/v1/alerts/{}/resolve", rollback["id"]),
            String::new(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["resolved_ms"].is_u64());
    assert!(
        daemon
            .alerts("state=open")
            .await
            .iter()
            .all(|a| a["type"] != "rollback")
    );
    assert!(!daemon.alerts("state=resolved").await.is_empty());
}

#[tokio::test]
async fn inconclusive_window_keeps_the_version_and_says_so() {
    let daemon = Daemon::start().await;
    let manifest = "[deploy]\nwatch = \"300ms\"\nmin_calls = 5\n";
    daemon.push_ok("svc", "echo", manifest).await;
    let bytes = overseer::bench::tagged(&component("echo"), "2");
    let (status, body) = daemon.push("svc", bytes, None).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    daemon.call_ok("svc", json!(1)).await;
    let v2 = daemon.wait_verdict("svc", 2, "inconclusive").await;
    assert!(
        v2["verdict_detail"]
            .as_str()
            .unwrap()
            .contains("only 1 calls"),
        "{v2}"
    );
    assert_eq!(v2["state"], "active");
    assert_eq!(daemon.call_ok("svc", json!(2)).await, 2);
}

#[tokio::test]
async fn repeated_failures_quarantine_an_agent_until_it_is_released() {
    let daemon = Daemon::start().await;
    let manifest = "[deploy]\nmin_calls = 100\nwatch = \"100ms\"\n[supervision]\nmax_failures = 3\nperiod = \"30s\"\n";
    let pushed = daemon.push_ok("svc", "fixture-flaky", manifest).await;
    // Supervision starts when the watch window is over.
    let number = pushed["version"].as_u64().unwrap();
    daemon.wait_verdict("svc", number, "inconclusive").await;
    for _ in 0..4 {
        daemon.invoke("svc", json!({ "fail": "trap" })).await;
    }
    let (status, body) = eventually(WAIT, "quarantine", || async {
        let (status, body) = daemon.invoke("svc", json!("hello")).await;
        (status == StatusCode::SERVICE_UNAVAILABLE).then_some((status, body))
    })
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["error"]["code"], "quarantined");
    let alert = daemon.alert_of("state=open&agent=svc", "quarantine").await;
    assert_eq!(alert["priority"], "critical");
    let (_, system) = daemon.get("/v1/system").await;
    assert_eq!(system["agents"]["quarantined"], 1, "{system}");

    let (status, body) = daemon.post("/v1/agents/svc/release", String::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(daemon.call_ok("svc", json!("back")).await, 1);
    assert!(
        daemon
            .alerts("state=open&agent=svc")
            .await
            .iter()
            .all(|a| a["type"] != "quarantine")
    );
}

#[tokio::test]
async fn repeated_failures_return_to_the_last_stable_version() {
    let daemon = Daemon::start().await;
    daemon
        .push_ok("svc", "echo", "[deploy]\nwatch_calls = 3\nmin_calls = 3\n")
        .await;
    for n in 0..3 {
        daemon.call_ok("svc", json!(n)).await;
    }
    daemon.wait_verdict("svc", 1, "stable").await;
    let manifest = "[deploy]\nmin_calls = 100\nwatch = \"100ms\"\n[supervision]\nmax_failures = 3\nperiod = \"30s\"\n";
    let pushed = daemon.push_ok("svc", "fixture-flaky", manifest).await;
    // Supervision starts when the watch window is over.
    let number = pushed["version"].as_u64().unwrap();
    daemon.wait_verdict("svc", number, "inconclusive").await;
    for _ in 0..4 {
        daemon.invoke("svc", json!({ "fail": "trap" })).await;
    }
    eventually(WAIT, "the stable version answering", || async {
        let (_, body) = daemon.invoke("svc", json!("hi")).await;
        (body["version"] == 1).then_some(())
    })
    .await;
    let alert = daemon.alert_of("state=open&agent=svc", "quarantine").await;
    assert_eq!(alert["evidence"]["to"], 1);
    let (_, agent) = daemon.get("/v1/agents/svc").await;
    assert_eq!(agent["counters"]["quarantines"], 1, "{agent}");
}

#[tokio::test]
async fn failed_health_checks_roll_back_and_the_alert_resolves_itself() {
    let daemon = Daemon::start().await;
    let every = "[supervision]\nhealth_every = \"100ms\"\n";
    daemon
        .push_ok(
            "svc",
            "echo",
            &format!("[deploy]\nwatch_calls = 3\nmin_calls = 3\n{every}"),
        )
        .await;
    for n in 0..3 {
        daemon.call_ok("svc", json!(n)).await;
    }
    daemon.wait_verdict("svc", 1, "stable").await;
    daemon
        .push_ok(
            "svc",
            "fixture-flaky",
            &format!("[deploy]\nmin_calls = 100\nwatch_calls = 100\n{every}"),
        )
        .await;
    assert_eq!(daemon.call_ok("svc", json!({ "sick": true })).await, 2);

    let alert = daemon
        .alert_of("state=resolved&agent=svc", "agent_failure")
        .await;
    assert_eq!(alert["evidence"]["consecutive_failures"], 3, "{alert}");
    assert_eq!(alert["resolution"], "health recovered");
    assert_eq!(daemon.call_ok("svc", json!("ok")).await, 1);
}

#[tokio::test]
async fn metrics_parse_and_name_the_series() {
    let daemon = Daemon::start().await;
    daemon.push_agent("echo", "echo").await;
    daemon.call_ok("echo", json!(1)).await;
    let text = daemon.metrics().await;
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("metrics parse");
    let names: std::collections::HashSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for series in [
        "overseer_invocations_total",
        "overseer_invocation_duration_seconds",
        "overseer_fuel_consumed_total",
        "overseer_peak_memory_bytes",
        "overseer_swaps_total",
        "overseer_compile_cache_misses_total",
    ] {
        assert!(names.contains(series), "{series} missing from:\n{text}");
    }
    let ok = scrape
        .samples
        .iter()
        .find(|s| s.metric == "overseer_invocations_total" && s.labels.get("agent") == Some("echo"))
        .expect("echo's invocations");
    assert_eq!(ok.labels.get("outcome"), Some("ok"));
    let latency = scrape
        .samples
        .iter()
        .find(|s| s.metric == "overseer_invocation_duration_seconds")
        .expect("the latency histogram");
    assert!(
        matches!(latency.value, prometheus_parse::Value::Histogram(ref buckets) if !buckets.is_empty()),
        "{latency:?}"
    );
    let (status, system) = daemon.get("/v1/system").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        system["memory"]["total_bytes"].as_u64().unwrap() > 0,
        "{system}"
    );
    assert_eq!(system["agents"]["healthy"], 1, "{system}");
}
