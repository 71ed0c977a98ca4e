//! Instance reuse (`[limits] reuse`): a kept instance carries its memory from call to call,
//! and never past an error, a trap, a swap or a rollback.

use overseer_tests::Daemon;
use reqwest::StatusCode;
use serde_json::{Value, json};

const OVERSEER_PY: &str = include_str!("../../guest-sdk/python/overseer.py");

/// A Python agent that counts its calls in a module global: what it answers is how many calls
/// its instance has served. `"fail"` returns an error, `"trap"` raises past the contract.
fn counter_py(tag: &str) -> String {
    format!(
        r#""""Counts the calls of its instance ({tag})."""

import json

import overseer
import wit_world
from wit_world.imports import types

calls = 0


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.Info:
        return types.Info(name="pycount", version="0.1.0", description="counts", subscriptions=[])

    def handle(self, event: types.Event) -> str:
        global calls
        calls += 1
        asked = json.loads(event.payload)
        if asked == "fail":
            raise overseer.failed("asked to fail")
        if asked == "trap":
            raise RuntimeError("asked to trap")
        return json.dumps({{"calls": calls}})

    def health(self) -> types.Health:
        return types.Health(ok=True, detail="ok")
"#
    )
}

fn manifest(name: &str, reuse: &str) -> String {
    format!(
        "name = \"{name}\"\n\n[limits]\ntimeout_ms = 5_000\n{reuse}\n\n[deploy]\nmax_error_rate = 1.0\n"
    )
}

/// Put `name`'s source in place (a new agent, or a new version over `base`) and wait for it
/// to go live.
async fn create(daemon: &Daemon, name: &str, reuse: &str, tag: &str, base: Option<u64>) -> Value {
    let files = json!({
        "app.py": counter_py(tag),
        "overseer.py": OVERSEER_PY,
        "agent.toml": manifest(name, reuse),
    });
    let (status, edit) = daemon
        .post(
            &format!("/v1/agents/{name}/edits"),
            json!({ "files": files, "reason": "a counter", "base_version": base }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let edit = daemon.finished_edit(name, &edit).await;
    assert_eq!(edit["state"], "live", "{edit}");
    edit
}

/// The count the agent answers to one call.
async fn count(daemon: &Daemon, name: &str) -> u64 {
    let (status, body) = daemon.invoke(name, json!("count")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["output"]["calls"].as_u64().expect("a count")
}

async fn counts(daemon: &Daemon, name: &str, n: usize) -> Vec<u64> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(count(daemon, name).await);
    }
    seen
}

#[tokio::test]
async fn a_reused_instance_keeps_memory_between_calls_and_never_past_an_error_or_a_swap() {
    let daemon = Daemon::start().await;

    // Fresh instances (the default): every call starts from the build's snapshot.
    create(&daemon, "pyfresh", "", "fresh", None).await;
    assert_eq!(counts(&daemon, "pyfresh", 3).await, [1, 1, 1]);

    // Kept for 4 calls: memory carries over, then a fresh instance starts again.
    create(&daemon, "pycount", "reuse = 4", "v1", None).await;
    assert_eq!(counts(&daemon, "pycount", 6).await, [1, 2, 3, 4, 1, 2]);
    let agent = daemon.agent("pycount").await;
    let reuse = &agent["limits"]["reuse"];
    assert_eq!(reuse["calls"], 4, "{agent}");
    assert_eq!(reuse["idle"], 1, "{agent}");
    assert_eq!(reuse["made"], 2, "{agent}");

    // An error the agent returns drops its instance.
    let (status, body) = daemon.invoke("pycount", json!("fail")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "failed", "{body}");
    assert_eq!(counts(&daemon, "pycount", 2).await, [1, 2]);

    // So does a trap.
    let (status, body) = daemon.invoke("pycount", json!("trap")).await;
    assert!(status.is_server_error(), "{status} {body}");
    assert_eq!(body["error"]["code"], "trap", "{body}");
    assert_eq!(count(&daemon, "pycount").await, 1);

    // A swap: the new version starts fresh, and the old one's instance is gone.
    create(&daemon, "pycount", "reuse = 4", "v2", Some(1)).await;
    assert_eq!(counts(&daemon, "pycount", 2).await, [1, 2]);
    // A rollback to version 1 does not find the instance it had kept.
    let (status, body) = daemon
        .post(
            "/v1/agents/pycount/rollback",
            json!({ "version": 1 }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(count(&daemon, "pycount").await, 1);
    let agent = daemon.agent("pycount").await;
    assert_eq!(agent["active_version"], 1, "{agent}");
}

#[tokio::test]
async fn reuse_must_be_a_count_of_calls_or_an_interval() {
    let daemon = Daemon::start().await;
    for (reuse, says) in [
        ("reuse = 0", "limits.reuse"),
        ("reuse = 10_000_000", "limits.reuse"),
        ("reuse = \"forever\"", "limits.reuse"),
        ("reuse = \"18446744073709551615s\"", "limits.reuse"),
    ] {
        let (status, body) = daemon
            .push(
                "echo",
                overseer_tests::component("echo"),
                Some(&manifest("echo", reuse)),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reuse}: {body}");
        assert_eq!(body["error"]["code"], "invalid_manifest", "{reuse}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(says),
            "{reuse}: {body}"
        );
    }
    let (status, body) = daemon
        .push(
            "echo",
            overseer_tests::component("echo"),
            Some(&manifest("echo", "reuse = \"30s\"")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let agent = daemon.agent("echo").await;
    assert_eq!(agent["limits"]["reuse"]["max_age_ms"], 30_000, "{agent}");
}
