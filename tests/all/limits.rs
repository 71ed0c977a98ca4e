//! Hostile guests are contained: a spin loop, a memory hog, fuel exhaustion and a trap each
//! fail only their own call with a typed error, while `echo` keeps answering.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use overseer_tests::{Daemon, component, percentiles};
use reqwest::StatusCode;
use serde_json::json;

/// Call `echo` in a loop until told to stop; return the latencies.
fn measure_echo(
    daemon: Arc<Daemon>,
    running: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Duration>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        while running.load(Ordering::Acquire) {
            let started = Instant::now();
            let (status, body) = daemon.invoke("echo", json!("ping")).await;
            assert_eq!(status, StatusCode::OK, "echo failed during a fault: {body}");
            samples.push(started.elapsed());
        }
        samples
    })
}

async fn echo_baseline(daemon: &Arc<Daemon>) -> Vec<Duration> {
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let (status, _) = daemon.invoke("echo", json!("ping")).await;
        assert_eq!(status, StatusCode::OK);
        samples.push(started.elapsed());
    }
    samples
}

/// Run `fault` three times while echo is measured; return the fault's responses.
async fn contain(
    daemon: &Arc<Daemon>,
    agent: &str,
    label: &str,
) -> Vec<(StatusCode, serde_json::Value, Duration)> {
    let mut before = echo_baseline(daemon).await;
    let running = Arc::new(AtomicBool::new(true));
    let echo = measure_echo(daemon.clone(), running.clone());
    let mut results = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = daemon.invoke(agent, json!({"go": true})).await;
        results.push((status, body, started.elapsed()));
    }
    running.store(false, Ordering::Release);
    let mut during = echo.await.unwrap();
    let (b50, b99) = percentiles(&mut before);
    let (d50, d99) = percentiles(&mut during);
    println!(
        "{label}: echo p50 {b50:.2} ms, p99 {b99:.2} ms before; p50 {d50:.2} ms, p99 {d99:.2} ms during ({} calls)",
        during.len()
    );
    results
}

async fn daemon_with(agent: &str, package: &str, manifest: &str) -> Arc<Daemon> {
    let daemon = Arc::new(Daemon::start().await);
    daemon.push_agent("echo", "echo").await;
    let (status, body) = daemon.push(agent, component(package), Some(manifest)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    daemon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spin_loop_times_out_within_twice_its_deadline() {
    let daemon = daemon_with(
        "spin",
        "fixture-spin",
        "[limits]\ntimeout_ms = 500\nfuel = 50_000_000_000\n",
    )
    .await;
    for (status, body, elapsed) in contain(&daemon, "spin", "spin loop").await {
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
        assert_eq!(body["error"]["code"], "timeout");
        assert_eq!(body["error"]["version"], 1);
        assert!(
            elapsed < Duration::from_millis(1000),
            "stopped after {elapsed:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_hog_hits_memory_exceeded() {
    let daemon = daemon_with("hog", "fixture-memory-hog", "[limits]\nmemory_mb = 32\n").await;
    for (status, body, _) in contain(&daemon, "hog", "memory hog").await {
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["error"]["code"], "memory_exceeded");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spin_loop_with_little_fuel_hits_fuel_exhausted() {
    let daemon = daemon_with(
        "burner",
        "fixture-spin",
        "[limits]\nfuel = 50000000\ntimeout_ms = 30000\n",
    )
    .await;
    for (status, body, _) in contain(&daemon, "burner", "fuel burner").await {
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["error"]["code"], "fuel_exhausted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trapping_agent_reports_trap_and_logs_it() {
    let daemon = daemon_with("trap", "fixture-trap", "").await;
    for (status, body, _) in contain(&daemon, "trap", "trap").await {
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["error"]["code"], "trap");
    }
    let logs =
        overseer_tests::eventually(Duration::from_secs(10), "the trap in the log", || async {
            let (_, body) = daemon.get("/v1/agents/trap/logs").await;
            let lines = body["logs"].as_array().cloned().unwrap_or_default();
            lines
                .iter()
                .any(|l| l["message"].as_str().unwrap_or_default().contains("trap"))
                .then_some(lines)
        })
        .await;
    assert!(!logs.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overload_beyond_concurrency_and_queue_is_refused() {
    let daemon = daemon_with(
        "slow",
        "fixture-spin",
        "[limits]\ntimeout_ms = 1000\nfuel = 50_000_000_000\nconcurrency = 1\nqueue = 1\n",
    )
    .await;
    let calls: Vec<_> = (0..4)
        .map(|_| {
            let daemon = daemon.clone();
            tokio::spawn(async move { daemon.invoke("slow", json!(null)).await })
        })
        .collect();
    let mut codes = Vec::new();
    for call in calls {
        let (status, body) = call.await.unwrap();
        codes.push((
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        ));
    }
    let overloaded = codes
        .iter()
        .filter(|(status, code)| *status == StatusCode::TOO_MANY_REQUESTS && code == "overloaded")
        .count();
    let timed_out = codes.iter().filter(|(_, code)| code == "timeout").count();
    assert_eq!((timed_out, overloaded), (2, 2), "{codes:?}");
    let (status, _) = daemon.invoke("echo", json!(1)).await;
    assert_eq!(status, StatusCode::OK);
}
