//! The supervisor's state machine, transition by transition, where it used to go wrong: a
//! remediation that outlives the health loop that asked for it, the canary and the checks of a
//! version pushed again, a verdict on a version no longer serving, the one rollback policy, a
//! first version that fails its window, the baseline a window is judged against, and a
//! retirement racing an edit.

use std::time::Duration;

use overseer::bench::tagged;
use overseer_tests::{Daemon, WAIT, component, eventually};
use reqwest::StatusCode;
use serde_json::json;

/// Poll `check` for `window`: it must never hold.
async fn never<F, Fut>(window: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + window;
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    while tokio::time::Instant::now() < deadline {
        poll.tick().await;
        assert!(!check().await, "{what}");
    }
}

/// Wait until calls to `name` are refused as quarantined.
async fn quarantined(daemon: &Daemon, name: &str) {
    eventually(WAIT, "the agent quarantined", || async {
        let (status, body) = daemon.invoke(name, json!("probe")).await;
        (status == StatusCode::SERVICE_UNAVAILABLE && body["error"]["code"] == "quarantined")
            .then_some(())
    })
    .await;
}

/// Wait until `name` answers from `version`.
async fn answers_from(daemon: &Daemon, name: &str, version: u64) {
    eventually(WAIT, &format!("v{version} answering"), || async {
        let (status, body) = daemon.invoke(name, json!("probe")).await;
        (status == StatusCode::OK && body["version"] == version).then_some(())
    })
    .await;
}

/// A stable first version of `fixture-flaky` as `name`, judged on three calls.
async fn stable_flaky(daemon: &Daemon, name: &str, manifest: &str) {
    daemon.push_ok(name, "fixture-flaky", manifest).await;
    for n in 0..3 {
        daemon.call_ok(name, json!({ "n": n })).await;
    }
    daemon.wait_verdict(name, 1, "stable").await;
}

#[tokio::test]
async fn a_health_remediation_finishes_its_work_and_can_happen_again() {
    let daemon = Daemon::start().await;
    let every = "[supervision]\nhealth_every = \"100ms\"\n";
    stable_flaky(
        &daemon,
        "svc",
        &format!("[deploy]\nwatch_calls = 3\nmin_calls = 3\n{every}"),
    )
    .await;
    let sick = format!("[deploy]\nmin_calls = 100\nwatch_calls = 100\n{every}");
    daemon
        .push_tagged_ok("svc", "fixture-flaky", "2", &sick)
        .await;
    assert_eq!(daemon.call_ok("svc", json!({ "sick": true })).await, 2);

    // The health loop's remediation runs to its end: back to v1, and the alert says so.
    let alert = daemon.alert_of("agent=svc", "quarantine").await;
    assert_eq!(alert["evidence"]["to"], 1, "{alert}");
    assert_eq!(alert["priority"], "high");
    // v1 reads the same kv and falls ill too: the loop remediates again, and with nothing
    // older to go back to, the agent leaves routing.
    quarantined(&daemon, "svc").await;
    assert_eq!(daemon.agent("svc").await["active_version"], 1);
}

#[tokio::test]
async fn the_canary_replays_only_calls_the_active_version_answered() {
    let daemon = Daemon::start().await;
    daemon.push_ok("svc", "fixture-flaky", "").await;
    for n in 0..3 {
        daemon.call_ok("svc", json!({ "n": n })).await;
        let (status, body) = daemon.invoke("svc", json!({ "fail": "input" })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_input");
    }
    let body = daemon.push_tagged_ok("svc", "fixture-flaky", "2", "").await;
    let canary = overseer_tests::check(&body, "canary");
    assert_eq!(canary["ok"], true, "{canary}");
    assert!(
        canary["detail"].as_str().unwrap().starts_with("3 recent"),
        "{canary}"
    );
}

#[tokio::test]
async fn bytes_of_a_condemned_version_are_refused_unless_a_rollback_forces_them() {
    let daemon = Daemon::start().await;
    stable_flaky(&daemon, "svc", "[deploy]\nwatch_calls = 3\nmin_calls = 3\n").await;
    let watched = "[deploy]\nwatch_calls = 10\nmin_calls = 3\n";
    let v2 = tagged(&component("fixture-flaky"), "2");
    let (status, body) = daemon.push("svc", v2.clone(), Some(watched)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for _ in 0..3 {
        daemon.invoke("svc", json!({ "fail": "error" })).await;
    }
    daemon.wait_verdict("svc", 2, "rolled-back").await;
    answers_from(&daemon, "svc", 1).await;

    let (status, body) = daemon.push("svc", v2, Some(watched)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "version_not_servable");
    assert_eq!(body["error"]["version"], 2);
    assert_eq!(daemon.call_ok("svc", json!("still")).await, 1);

    let (status, body) = daemon
        .post(
            "/v1/agents/svc/rollback",
            json!({ "version": 2 }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(daemon.call_ok("svc", json!("forced")).await, 2);
}

#[tokio::test]
async fn bytes_pushed_again_go_through_the_checks_and_a_new_window() {
    let daemon = Daemon::start().await;
    daemon.push_ok("svc", "fixture-flaky", "").await;
    daemon.call_ok("svc", json!("one")).await;
    daemon.push_tagged_ok("svc", "fixture-flaky", "2", "").await;
    // v2 makes the agent's kv say it is sick: v1's health check, run again, fails on it.
    assert_eq!(daemon.call_ok("svc", json!({ "sick": true })).await, 2);
    let (status, body) = daemon
        .push("svc", component("fixture-flaky"), Some(""))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "unhealthy");
    assert_eq!(daemon.call_ok("svc", json!("still")).await, 2);

    assert_eq!(daemon.call_ok("svc", json!({ "sick": false })).await, 2);
    let (status, body) = daemon
        .push("svc", component("fixture-flaky"), Some(""))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);
    assert_eq!(body["version"], 1);
    assert!(
        body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["step"] == "health" && c["ok"] == true),
        "{body}"
    );
    let agent = daemon.agent("svc").await;
    assert_eq!(agent["watching"], true, "{agent}");
    assert_eq!(daemon.call_ok("svc", json!("again")).await, 1);
}

#[tokio::test]
async fn a_push_of_the_active_bytes_takes_the_agent_out_of_quarantine() {
    let daemon = Daemon::start().await;
    let manifest = "[deploy]\nmin_calls = 100\nwatch = \"100ms\"\n[supervision]\nmax_failures = 3\nperiod = \"30s\"\n";
    daemon.push_ok("svc", "fixture-flaky", manifest).await;
    daemon.wait_verdict("svc", 1, "inconclusive").await;
    for _ in 0..4 {
        daemon.invoke("svc", json!({ "fail": "trap" })).await;
    }
    quarantined(&daemon, "svc").await;

    let (status, body) = daemon
        .push("svc", component("fixture-flaky"), Some(manifest))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);
    assert_eq!(daemon.call_ok("svc", json!("back")).await, 1);
    assert!(
        daemon
            .alerts("state=open&agent=svc")
            .await
            .iter()
            .all(|a| a["type"] != "quarantine")
    );
}

// A spinning guest holds a worker thread for its whole call: enough workers for four.
#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_verdict_on_a_version_no_longer_serving_rolls_nothing_back() {
    let daemon = Daemon::start().await;
    let slow = "[deploy]\nwatch_calls = 100\nmin_calls = 2\n[limits]\ntimeout_ms = 5000\n";
    for name in ["replaced", "gone"] {
        stable_flaky(&daemon, name, "[deploy]\nwatch_calls = 3\nmin_calls = 3\n").await;
        daemon
            .push_tagged_ok(name, "fixture-flaky", "2", slow)
            .await;
    }

    // Two failing calls of v2 are under way when v2 stops serving: a push replaces it in
    // one agent, a retirement takes the other out of service.
    let mut calls = Vec::new();
    for name in ["replaced", "gone"] {
        for _ in 0..2 {
            let api = overseer_tests::Api::new(daemon.url.clone());
            calls.push(tokio::spawn(async move {
                api.invoke(name, json!({ "spin_ms": 800, "fail": "error" }))
                    .await
            }));
        }
    }
    for name in ["replaced", "gone"] {
        eventually(WAIT, "both slow calls running", || async {
            (daemon.agent(name).await["counters"]["running"] == 2).then_some(())
        })
        .await;
    }
    daemon
        .push_tagged_ok("replaced", "fixture-flaky", "3", "")
        .await;
    let (status, body) = daemon.delete("/v1/agents/gone").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for call in calls {
        let (status, body) = call.await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["version"], 2);
    }

    never(
        Duration::from_secs(1),
        "no rollback or failure is reported for versions that no longer serve",
        || async {
            daemon
                .alerts("state=all")
                .await
                .iter()
                .any(|a| a["type"] == "rollback" || a["type"] == "agent_failure")
        },
    )
    .await;
    assert_eq!(daemon.call_ok("replaced", json!("v3")).await, 3);
    assert_eq!(
        daemon.version("replaced", 2).await["verdict"],
        "superseded",
        "v2 was judged on what its window saw before it was replaced"
    );
    let (_, agents) = daemon.get("/v1/agents").await;
    let gone = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "gone")
        .cloned()
        .unwrap();
    assert_eq!(gone["state"], "retired", "{gone}");
}

#[tokio::test]
async fn two_failing_versions_never_take_turns() {
    let daemon = Daemon::start().await;
    let manifest = "[deploy]\nwatch_calls = 3\nmin_calls = 3\n[supervision]\nmax_failures = 3\nperiod = \"30s\"\n";
    stable_flaky(&daemon, "svc", manifest).await;
    daemon
        .push_tagged_ok("svc", "fixture-flaky", "2", manifest)
        .await;
    for n in 0..3 {
        daemon.call_ok("svc", json!({ "n": n })).await;
    }
    daemon.wait_verdict("svc", 2, "stable").await;
    let (status, body) = daemon
        .post(
            "/v1/agents/svc/rollback",
            json!({ "version": 1 }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Every call now fails, whatever the version. A failing v1 never goes forward to v2:
    // with nothing older, it is quarantined.
    eventually(WAIT, "the agent quarantined", || async {
        let (status, body) = daemon.invoke("svc", json!({ "fail": "trap" })).await;
        (status == StatusCode::SERVICE_UNAVAILABLE && body["error"]["code"] == "quarantined")
            .then_some(())
    })
    .await;
    assert_eq!(daemon.agent("svc").await["active_version"], 1);
}

#[tokio::test]
async fn a_first_version_that_fails_its_window_is_quarantined_and_supervised_after_release() {
    let daemon = Daemon::start().await;
    let manifest = "[deploy]\nwatch_calls = 10\nmin_calls = 3\n[supervision]\nmax_failures = 3\nperiod = \"30s\"\n";
    daemon.push_ok("svc", "fixture-flaky", manifest).await;
    for _ in 0..3 {
        daemon.invoke("svc", json!({ "fail": "error" })).await;
    }
    quarantined(&daemon, "svc").await;
    let alert = daemon.alert_of("state=open&agent=svc", "quarantine").await;
    assert_eq!(alert["priority"], "critical", "{alert}");
    assert_eq!(daemon.version("svc", 1).await["verdict"], "failed");

    let (status, body) = daemon.post("/v1/agents/svc/release", String::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(daemon.call_ok("svc", json!("back")).await, 1);
    // Released, the version answers to supervision like any other.
    for _ in 0..4 {
        daemon.invoke("svc", json!({ "fail": "error" })).await;
    }
    quarantined(&daemon, "svc").await;
}

#[tokio::test]
async fn a_window_is_judged_against_the_last_stable_version() {
    let daemon = Daemon::start().await;
    let manifest = "[deploy]\nwatch_calls = 50\nmin_calls = 5\n";
    daemon.push_ok("svc", "fixture-flaky", manifest).await;
    for n in 0..6 {
        daemon.call_ok("svc", json!({ "n": n })).await;
    }
    // v2 replaces v1 inside its window: v1 is judged on its six good calls.
    daemon
        .push_tagged_ok("svc", "fixture-flaky", "2", manifest)
        .await;
    assert_eq!(daemon.version("svc", 1).await["verdict"], "stable");
    for _ in 0..3 {
        daemon.invoke("svc", json!({ "fail": "error" })).await;
    }
    // v3 replaces v2 after three failures, too few to judge.
    daemon
        .push_tagged_ok("svc", "fixture-flaky", "3", manifest)
        .await;
    assert_eq!(daemon.version("svc", 2).await["verdict"], "superseded");
    for _ in 0..5 {
        daemon.invoke("svc", json!({ "fail": "error" })).await;
    }
    // Judged against v1's rate, not v2's, v3 is rolled back, to v1.
    daemon.wait_verdict("svc", 3, "rolled-back").await;
    answers_from(&daemon, "svc", 1).await;
    let alert = daemon.alert_of("agent=svc", "rollback").await;
    assert_eq!(alert["evidence"]["to"], 1, "{alert}");
}

#[tokio::test]
async fn retirement_waits_for_an_edit_under_way_and_the_agent_stays_retired() {
    let daemon = Daemon::start().await;
    daemon.create_from_source("svc", "echo").await;
    let lib = overseer_tests::package_file("echo", "src/lib.rs");
    let edited = lib.replace("Ok(event.payload)", "Ok(format!(\"[{}]\", event.payload))");
    assert_ne!(lib, edited, "the edit changes echo");
    let (status, edit) = daemon
        .post(
            "/v1/agents/svc/edits",
            json!({ "base_version": 1, "files": { "src/lib.rs": edited }, "reason": "race" })
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let (status, body) = daemon.delete("/v1/agents/svc").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let edit = daemon.finished_edit("svc", &edit).await;
    assert!(
        ["live", "rejected"].contains(&edit["state"].as_str().unwrap()),
        "{edit}"
    );
    let (status, body) = daemon.invoke("svc", json!("x")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "no_active_version");
    let (_, agents) = daemon.get("/v1/agents").await;
    assert_eq!(agents["agents"][0]["state"], "retired", "{agents}");
}
