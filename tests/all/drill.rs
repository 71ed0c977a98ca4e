//! `overseer drill` pushes a faulty build of a live agent; the host rejects it before the swap
//! or rolls it back after, and the drill reports which, with the alerts.

use overseer::drill::{Outcome, Report};
use overseer_tests::{Daemon, component, drill};
use reqwest::StatusCode;
use serde_json::json;

fn rejected_at(report: &Report) -> (&str, &str) {
    match &report.outcome {
        Outcome::Rejected { stage, code } => (stage, code),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn faulty_builds_of_an_agent_with_history_are_rejected_before_the_swap() {
    let daemon = Daemon::start().await;
    let manifest = "name = \"echo\"\n[limits]\ntimeout_ms = 300\n";
    let (status, body) = daemon.push("echo", component("echo"), Some(manifest)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for i in 0..3 {
        let (status, _) = daemon.invoke("echo", json!({ "n": i })).await;
        assert_eq!(status, StatusCode::OK);
    }

    for (fault, stage, code, evidence) in [
        ("trap", "canary", "canary_failed", "trap"),
        ("memory", "canary", "canary_failed", "memory_exceeded"),
        ("timeout", "canary", "canary_failed", "timeout"),
        (
            "bad-health",
            "health",
            "unhealthy",
            "deliberately unhealthy",
        ),
    ] {
        let report = drill(&daemon, "echo", fault).await;
        assert_eq!(rejected_at(&report), (stage, code), "{fault}: {report:?}");
        let message = report.push["error"]["message"].as_str().unwrap();
        assert!(message.contains(evidence), "{fault}: {message}");
        assert_eq!(report.before, 1);
        assert_eq!(report.after, Some(1), "{fault}: echo still serves v1");
        assert!(report.calls.is_empty(), "no call reached a rejected build");
    }
    let (status, body) = daemon.invoke("echo", json!("still here")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], 1);
}

#[tokio::test]
async fn a_faulty_build_that_goes_live_is_rolled_back_with_an_alert() {
    let daemon = Daemon::start().await;
    for (name, fault, failure) in [
        ("burst", "error-burst", "failed"),
        ("trapper", "trap", "trap"),
    ] {
        // No calls yet: nothing for the canary to replay, so the faulty build goes live.
        daemon.push_agent(name, "echo").await;
        let report = drill(&daemon, name, fault).await;
        let Outcome::RolledBack {
            version, restored, ..
        } = report.outcome
        else {
            panic!("{fault}: expected a rollback, got {report:?}");
        };
        assert_eq!((version, restored), (2, 1), "{fault}");
        assert_eq!(report.after, Some(1));
        assert_eq!(report.calls.values().sum::<u32>(), 20, "{fault}");
        assert!(
            report.calls.get(failure).copied().unwrap_or(0) >= 5,
            "{fault}: {:?}",
            report.calls
        );
        assert!(
            report.alerts.iter().any(|a| a["type"] == "rollback"),
            "{fault}: {:?}",
            report.alerts
        );
        assert!(
            !report.alerts.iter().any(|a| a["type"] == "quarantine"),
            "{fault}: the calls that failed before the rollback do not also quarantine the \
             agent: {:?}",
            report.alerts
        );
        let (status, body) = daemon.invoke(name, json!("back")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["version"], 1);
    }
}
