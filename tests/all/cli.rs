//! The CLI talks to a running daemon over HTTP.

use clap::Parser;
use overseer::cli::{Cli, run};
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
    std::fs::write(&wasm, overseer::bench::tagged(&component("echo"), "2")).unwrap();
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
async fn new_refuses_a_directory_that_exists_and_an_unknown_language() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("greeter");
    let local = |args: &[&str]| Cli::try_parse_from(["overseer"].iter().chain(args)).unwrap();
    run(local(&[
        "new",
        "greeter",
        "--dir",
        source.to_str().unwrap(),
    ]))
    .await
    .unwrap();
    assert!(source.join("src/lib.rs").exists() && source.join("agent.toml").exists());
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
    let error = run(local(&["new", "Bad_Name", "--dir", "/nonexistent/y"]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid agent name"), "{error}");
}

#[tokio::test]
async fn cli_shows_the_portfolio_and_throws_the_kill_switch() {
    let daemon = Daemon::start().await;
    let client = ["--url", &daemon.url, "--token", TOKEN];
    let cli = |args: &[&str]| {
        Cli::try_parse_from(["overseer"].iter().chain(args).chain(client.iter())).unwrap()
    };
    let order =
        json!({ "symbol": "IBM", "side": "buy", "quantity": 3, "client_order_id": "cli-1" });
    let (status, _) = daemon.post("/v1/orders", order.to_string()).await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    for args in [
        &["portfolio"][..],
        &["orders", "--open"],
        &["trades"],
        &["risk"],
        &["memory", "IBM", "--collection", "shared/trades"],
    ] {
        run(cli(args)).await.unwrap();
    }
    run(cli(&["kill"])).await.unwrap();
    let (_, risk) = daemon.get("/v1/risk").await;
    assert_eq!(risk["risk"]["state"], "halted");
    let (_, orders) = daemon.get("/v1/orders").await;
    assert_eq!(orders["orders"][0]["status"], "canceled");
    run(cli(&["resume"])).await.unwrap();
    let (_, risk) = daemon.get("/v1/risk").await;
    assert_eq!(risk["risk"]["state"], "active");
}
