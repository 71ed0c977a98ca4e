//! The CLI talks to a running daemon over HTTP.

use clap::Parser;
use overseer_host::cli::{Cli, run};
use overseer_tests::{Daemon, TOKEN, agents_dir, component};
use serde_json::json;

#[tokio::test]
async fn cli_pushes_invokes_and_rolls_back() {
    let daemon = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("echo.wasm");
    std::fs::write(&wasm, component("echo")).unwrap();
    let manifest = agents_dir().join("echo/agent.toml");
    let client = ["--url", &daemon.url, "--token", TOKEN];
    let cli = |args: &[&str]| {
        Cli::try_parse_from(["overseer"].iter().chain(args).chain(client.iter())).unwrap()
    };

    run(cli(&[
        "push",
        "echo",
        wasm.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    std::fs::write(&wasm, overseer_host::bench::tagged(&component("echo"), "2")).unwrap();
    run(cli(&["push", "echo", wasm.to_str().unwrap()]))
        .await
        .unwrap();
    run(cli(&["invoke", "echo", "{\"a\":1}"])).await.unwrap();
    run(cli(&["agents"])).await.unwrap();
    run(cli(&["versions", "echo"])).await.unwrap();
    run(cli(&["rollback", "echo", "--to", "1"])).await.unwrap();
    run(cli(&["logs", "echo"])).await.unwrap();
    run(cli(&["alerts", "--state", "all"])).await.unwrap();
    run(cli(&["release", "echo"])).await.unwrap();
    let (_, body) = daemon.invoke("echo", json!(1)).await;
    assert_eq!(body["version"], 1);

    let error = run(cli(&["rollback", "echo", "--to", "7"]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("version_not_found"), "{error}");
}

#[tokio::test]
async fn a_new_agent_builds_as_it_is_and_goes_live() {
    let daemon = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("greeter");
    let client = ["--url", &daemon.url, "--token", TOKEN];
    let cli = |args: &[&str]| {
        Cli::try_parse_from(["overseer"].iter().chain(args).chain(client.iter())).unwrap()
    };
    let local = |args: &[&str]| Cli::try_parse_from(["overseer"].iter().chain(args)).unwrap();

    run(local(&[
        "new",
        "greeter",
        "--dir",
        source.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    let error = run(local(&[
        "new",
        "greeter",
        "--dir",
        source.to_str().unwrap(),
    ]))
    .await
    .unwrap_err();
    assert!(error.to_string().contains("already exists"), "{error}");
    let error = run(local(&[
        "new",
        "x",
        "--lang",
        "cobol",
        "--dir",
        "/nonexistent/x",
    ]))
    .await
    .unwrap_err();
    assert!(error.to_string().contains("cobol"), "{error}");

    // Built against the tests' warm target directory, so only the agent itself compiles.
    let target = overseer_tests::agents_target_dir();
    run(local(&[
        "build",
        source.to_str().unwrap(),
        "--target-dir",
        target.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    let wasm = target.join("wasm32-wasip2/release/greeter.wasm");
    run(cli(&[
        "push",
        "greeter",
        wasm.to_str().unwrap(),
        "--manifest",
        source.join("agent.toml").to_str().unwrap(),
    ]))
    .await
    .unwrap();

    // Its state lasts across calls, in kv.
    for count in 1..=2 {
        let (status, body) = daemon.invoke("greeter", json!("world")).await;
        assert_eq!(status.as_u16(), 200, "{body}");
        assert_eq!(
            body["output"],
            json!({ "greeting": "hello, world", "count": count })
        );
    }
    let (_, events) = daemon.get("/v1/events?topic=greeter.greeted").await;
    assert_eq!(
        events["events"].as_array().map(Vec::len),
        Some(2),
        "{events}"
    );

    // The host builds the same source too: created from its files through the edit API.
    let mut files = serde_json::Map::new();
    for path in ["Cargo.toml", "agent.toml", "src/lib.rs"] {
        let text = std::fs::read_to_string(source.join(path)).unwrap();
        let text = text.replace("name = \"greeter\"", "name = \"greeter2\"");
        files.insert(path.to_string(), json!(text));
    }
    let (status, edit) = daemon
        .post(
            "/v1/agents/greeter2/edits",
            json!({ "files": files }).to_string(),
        )
        .await;
    assert_eq!(status.as_u16(), 202, "{edit}");
    let edit = daemon.finished_edit("greeter2", &edit).await;
    assert_eq!(edit["state"], "live", "{edit}");
}
