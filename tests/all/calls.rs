//! What a call leaves behind, and what a swap leaves of the calls under way: a call that
//! faults changes nothing, a scheduled call finishes on its version across a swap, and a call
//! waiting for a slot when its schedule ends gives its place back.

use overseer_tests::{Api, Daemon, WAIT, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_that_faults_changes_nothing() {
    let daemon = Daemon::start().await;
    daemon
        .push_ok(
            "svc",
            "fixture-flaky",
            "[limits]\ntimeout_ms = 300\nfuel = 50_000_000_000\n",
        )
        .await;
    let (status, body) = daemon
        .invoke("svc", json!({ "write": "trapped", "fail": "trap" }))
        .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["code"], "trap");
    let (status, body) = daemon
        .invoke("svc", json!({ "write": "stopped", "fail": "spin" }))
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    // An error the agent chose to return is an answer: what it wrote stays.
    let (status, body) = daemon
        .invoke("svc", json!({ "write": "answered", "fail": "error" }))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "failed");

    for (key, value) in [
        ("trapped", Value::Null),
        ("stopped", Value::Null),
        ("answered", json!("written")),
    ] {
        let (status, body) = daemon.invoke("svc", json!({ "read": key })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["output"]["value"], value, "{key}");
    }
    let (_, events) = daemon.get("/v1/events?topic=flaky.wrote").await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(
        events.len(),
        1,
        "only the answered call's event: {events:?}"
    );
    assert!(events[0]["payload"].as_str().unwrap().contains("answered"));
}

/// The log lines of `agent`.
async fn log_lines(daemon: &Daemon, agent: &str) -> Vec<Value> {
    let (_, body) = daemon
        .get(&format!("/v1/agents/{agent}/logs?limit=1000"))
        .await;
    body["logs"].as_array().cloned().unwrap_or_default()
}

// A spinning guest holds a worker thread for its whole call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_swap_lets_the_scheduled_call_under_way_finish() {
    let daemon = Daemon::start().await;
    // No canary: the push must not wait out the call under way by replaying it.
    let manifest = "[deploy]\ncanary = 0\n[triggers]\nevery = \"200ms\"\n[config]\nspin_ms = \"600\"\n[limits]\ntimeout_ms = 5000\n";
    daemon.push_ok("svc", "fixture-flaky", manifest).await;
    // Scheduled calls follow one another back to back: one is under way at the swap.
    eventually(WAIT, "a scheduled call begun", || async {
        log_lines(&daemon, "svc")
            .await
            .iter()
            .any(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("begin "))
            })
            .then_some(())
    })
    .await;
    daemon
        .push_tagged_ok("svc", "fixture-flaky", "2", manifest)
        .await;
    // Every call v1 began, it ended.
    eventually(WAIT, "every scheduled call of v1 to end", || async {
        let lines = log_lines(&daemon, "svc").await;
        let of_v1 = |prefix: &str| -> Vec<String> {
            lines
                .iter()
                .filter(|l| l["version"] == 1)
                .filter_map(|l| {
                    l["message"]
                        .as_str()?
                        .strip_prefix(prefix)
                        .map(str::to_string)
                })
                .collect()
        };
        let (begun, ended) = (of_v1("begin "), of_v1("end "));
        let v2_began = lines.iter().any(|l| l["version"] == 2);
        (v2_began && begun.iter().all(|id| ended.contains(id))).then_some(())
    })
    .await;
    // What it wrote after the swap was kept: it ran to its end and answered.
    let ticks: Vec<String> = log_lines(&daemon, "svc")
        .await
        .iter()
        .filter_map(|l| {
            l["message"]
                .as_str()?
                .strip_prefix("end ")
                .map(str::to_string)
        })
        .collect();
    let (status, body) = daemon.invoke("svc", json!({ "read": "last_tick" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = body["output"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(ticks.contains(&last), "{last} among {ticks:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_call_waiting_when_its_schedule_ends_gives_its_place_back() {
    let daemon = Daemon::start().await;
    let limits = "[limits]\nconcurrency = 1\nqueue = 1\ntimeout_ms = 5000\n";
    daemon
        .push_ok(
            "svc",
            "fixture-flaky",
            &format!("{limits}[triggers]\nevery = \"100ms\"\n"),
        )
        .await;
    let slow = |ms: u64| {
        let api = Api::new(daemon.url.clone());
        tokio::spawn(async move { api.invoke("svc", json!({ "spin_ms": ms })).await })
    };
    // A slow call holds the one slot; the next scheduled call waits in the queue.
    let holding = slow(1500);
    eventually(WAIT, "a scheduled call waiting", || async {
        (daemon.agent("svc").await["counters"]["waiting"] == 1).then_some(())
    })
    .await;
    // The next version has no schedule: the waiting call is the schedule's last.
    daemon
        .push_tagged_ok("svc", "fixture-flaky", "2", limits)
        .await;
    assert_eq!(holding.await.unwrap().0, StatusCode::OK);
    // The waiting scheduled call is admitted and runs to its end; none comes after it.
    eventually(
        WAIT,
        "the queue empty and the last scheduled call ended",
        || async {
            let counters = daemon.agent("svc").await["counters"].clone();
            let lines = log_lines(&daemon, "svc").await;
            let count = |prefix: &str| {
                lines
                    .iter()
                    .filter(|l| l["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
                    .count()
            };
            (counters["waiting"] == 0
                && counters["running"] == 0
                && count("begin ") == count("end "))
            .then_some(())
        },
    )
    .await;

    // The queue has its one place: a call behind a slow one waits, then runs.
    let holding = slow(800);
    eventually(WAIT, "the slow call running", || async {
        (daemon.agent("svc").await["counters"]["running"] == 1).then_some(())
    })
    .await;
    let (status, body) = daemon.invoke("svc", json!("queued")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(holding.await.unwrap().0, StatusCode::OK);
}
