//! Python agents: `overseer new --lang python` → `overseer build` → push → invoke, with state in
//! kv, events to a subscriber and a spin loop stopped by its deadline; and an edit of a Python
//! agent's source rebuilt and put live by the host.

use std::time::Duration;

use clap::Parser;
use overseer_host::cli::{Cli, run};
use overseer_tests::{Daemon, TOKEN, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The line of the scaffold's `handle` the tests put code in front of.
const HANDLE: &str = "        who = json.loads(event.payload)\n";

#[tokio::test]
async fn a_python_agent_goes_from_new_to_live_and_is_edited_by_the_host() {
    let daemon = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("pygreeter");
    let local = |args: &[&str]| Cli::try_parse_from(["overseer"].iter().chain(args)).unwrap();
    run(local(&[
        "new",
        "pygreeter",
        "--lang",
        "python",
        "--dir",
        source.to_str().unwrap(),
    ]))
    .await
    .unwrap();

    // A spin loop written in Python, for the deadline to stop.
    let app = std::fs::read_to_string(source.join("app.py")).unwrap();
    assert!(
        app.contains(HANDLE),
        "the scaffold's handle is as the test expects"
    );
    let app = app.replace(
        HANDLE,
        &format!("        if event.payload == '\"spin\"':\n            while True:\n                pass\n{HANDLE}"),
    );
    std::fs::write(source.join("app.py"), app).unwrap();
    // Fuel to spare, so the wall clock is what stops the loop.
    let manifest = std::fs::read_to_string(source.join("agent.toml"))
        .unwrap()
        .replace(
            "timeout_ms = 2_000",
            "timeout_ms = 500\nfuel = 100_000_000_000",
        );
    std::fs::write(source.join("agent.toml"), &manifest).unwrap();

    let tools = overseer_tests::tools_dir();
    run(local(&[
        "build",
        source.to_str().unwrap(),
        "--tools-dir",
        tools.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    let wasm = source.join("target/pygreeter.wasm");
    let client = ["--url", &daemon.url, "--token", TOKEN];
    run(Cli::try_parse_from(
        [
            "overseer",
            "push",
            "pygreeter",
            wasm.to_str().unwrap(),
            "--manifest",
        ]
        .iter()
        .chain(&[source.join("agent.toml").to_str().unwrap()])
        .chain(client.iter()),
    )
    .unwrap())
    .await
    .unwrap();

    // A subscriber to its events.
    let recorder = overseer_tests::manifest("fixture-recorder")
        .replace("counter.incremented", "pygreeter.greeted");
    let (status, body) = daemon
        .push(
            "recorder",
            overseer_tests::component("fixture-recorder"),
            Some(&recorder),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    for count in 1..=2 {
        let (status, body) = daemon.invoke("pygreeter", json!("world")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["output"],
            json!({ "greeting": "hello, world", "count": count })
        );
    }
    let (status, body) = daemon.invoke("pygreeter", json!(7)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
    eventually(Duration::from_secs(10), "two events recorded", || async {
        let (_, body) = daemon.invoke("recorder", json!(null)).await;
        let events = body["output"].as_array().cloned().unwrap_or_default();
        (events.len() >= 2).then_some(())
    })
    .await;
    let (status, body) = daemon.invoke("pygreeter", json!("spin")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    let (status, _) = daemon.invoke("pygreeter", json!("still here")).await;
    assert_eq!(status, StatusCode::OK);

    // The host builds Python source too: created from its files, then edited by a diff.
    let mut files = serde_json::Map::new();
    for path in ["app.py", "agent.toml"] {
        let text = std::fs::read_to_string(source.join(path)).unwrap();
        files.insert(
            path.to_string(),
            json!(text.replace("name = \"pygreeter\"", "name = \"pyedit\"")),
        );
    }
    let edit = finished(
        &daemon,
        "pyedit",
        json!({ "files": files, "reason": "create" }),
    )
    .await;
    assert_eq!(edit["state"], "live", "{edit}");
    let app = std::fs::read_to_string(source.join("app.py")).unwrap();
    let line = "        greeting = runtime.config(\"greeting\") or \"hello\"\n";
    assert!(
        app.contains(line),
        "the line the edit changes is in the scaffold"
    );
    let mut before = overseer_host::source::Snapshot::default();
    before.files.insert("app.py".to_string(), app.clone());
    let mut after = before.clone();
    after.files.insert(
        "app.py".to_string(),
        app.replace(line, "        greeting = \"hi\"\n"),
    );
    let diff = overseer_host::source::diff(&before, &after);
    let edit = finished(
        &daemon,
        "pyedit",
        json!({ "base_version": 1, "diff": diff, "reason": "shorter" }),
    )
    .await;
    assert_eq!(edit["state"], "live", "{edit}");
    let (status, body) = daemon.invoke("pyedit", json!("there")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(body["output"]["greeting"], "hi, there");
}

async fn finished(daemon: &Daemon, agent: &str, body: Value) -> Value {
    let (status, edit) = daemon
        .post(&format!("/v1/agents/{agent}/edits"), body.to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    daemon.finished_edit(agent, &edit).await
}
