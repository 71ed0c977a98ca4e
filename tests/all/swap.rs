//! Swapping versions under load: no call fails, and every answer names a pushed version.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use overseer::bench::tagged;
use overseer_tests::{Backend, Daemon, component};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_swaps_under_load_fail_no_call_on_sqlite() {
    fifty_swaps_under_load_fail_no_call(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_swaps_under_load_fail_no_call_on_postgres() {
    fifty_swaps_under_load_fail_no_call(Backend::Postgres).await;
}

async fn fifty_swaps_under_load_fail_no_call(backend: Backend) {
    let daemon = Arc::new(Daemon::start_on(backend).await);
    let echo = component("echo");
    let (status, _) = daemon.push("echo", tagged(&echo, "0"), None).await;
    assert_eq!(status, StatusCode::CREATED);

    let pushing = Arc::new(AtomicBool::new(true));
    let callers: Vec<_> = (0..4)
        .map(|caller| {
            let daemon = daemon.clone();
            let pushing = pushing.clone();
            tokio::spawn(async move {
                let mut answers = Vec::new();
                let mut failures = Vec::new();
                let mut n = 0u64;
                while pushing.load(Ordering::Acquire) {
                    n += 1;
                    let (status, body) = daemon.invoke("echo", json!([caller, n])).await;
                    if status == StatusCode::OK && body["output"] == json!([caller, n]) {
                        answers.push(body["version"].as_u64().unwrap());
                    } else {
                        failures.push(format!("{status} {body}"));
                    }
                }
                (answers, failures)
            })
        })
        .collect();

    for n in 1..=50 {
        let (status, body) = daemon
            .push("echo", tagged(&echo, &n.to_string()), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["version"], n + 1);
    }
    pushing.store(false, Ordering::Release);

    let pushed: HashSet<u64> = (1..=51).collect();
    let mut total = 0;
    let mut seen = HashSet::new();
    for caller in callers {
        let (answers, failures) = caller.await.unwrap();
        assert!(failures.is_empty(), "failed calls: {failures:?}");
        total += answers.len();
        for version in answers {
            assert!(
                pushed.contains(&version),
                "answer from unknown version {version}"
            );
            seen.insert(version);
        }
    }
    println!(
        "{total} calls during 50 swaps, answered by {} distinct versions",
        seen.len()
    );
    assert!(total > 0);
    assert!(seen.len() > 1, "calls should have seen several versions");
    let (_, body) = daemon.invoke("echo", json!(0)).await;
    assert_eq!(body["version"], 51);
}
