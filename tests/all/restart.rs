//! A restart on the same data directory and database serves the same active versions, loaded
//! from the compile cache instead of recompiled, and a watch window open at the stop opens
//! again.

use overseer::bench::tagged;
use overseer_tests::{Backend, Daemon, component, config_on};
use reqwest::StatusCode;
use serde_json::json;

async fn restart_serves_the_same_versions_without_recompiling(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_on(dir.path(), backend).await;
    let first = Daemon::start_with(config.clone()).await;
    first.push_agent("echo", "echo").await;
    first.push_agent("counter", "counter").await;
    let (status, _) = first
        .push("echo", tagged(&component("echo"), "2"), None)
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = first.post("/v1/agents/echo/rollback", String::new()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = first.invoke("counter", json!({})).await;
    assert_eq!(body["output"]["count"], 1);
    first.stop().await;

    let second = Daemon::start_with(config.clone()).await;
    let (status, body) = second.invoke("echo", json!("again")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    let (_, body) = second.invoke("counter", json!({})).await;
    assert_eq!(body["output"]["count"], 2, "kv survives the restart");

    let stats = second.kernel.sandbox.cache_stats();
    assert_eq!(stats.misses, 0, "nothing was recompiled: {stats:?}");
    assert_eq!(stats.hits, 2);
    let (_, metrics) = second.get("/metrics").await;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics.contains("overseer_compile_cache_hits_total 2"),
        "{metrics}"
    );
    second.stop().await;
}

async fn a_watch_window_open_at_a_stop_opens_again_at_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_on(dir.path(), backend).await;
    let first = Daemon::start_with(config.clone()).await;
    first
        .push_ok("svc", "echo", "[deploy]\nwatch_calls = 3\nmin_calls = 3\n")
        .await;
    for n in 0..3 {
        first.call_ok("svc", json!(n)).await;
    }
    first.wait_verdict("svc", 1, "stable").await;
    first
        .push_ok(
            "svc",
            "fixture-flaky",
            "[deploy]\nwatch = \"60s\"\nwatch_calls = 100\nmin_calls = 3\n",
        )
        .await;
    first.stop().await;

    let second = Daemon::start_with(config).await;
    for _ in 0..3 {
        let (status, body) = second.invoke("svc", json!({ "fail": "error" })).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    }
    second.wait_verdict("svc", 2, "rolled-back").await;
    overseer_tests::eventually(overseer_tests::WAIT, "v1 answering", || async {
        (second.call_ok("svc", json!("back")).await == 1).then_some(())
    })
    .await;
    second.stop().await;
}

overseer_tests::on_both_backends!(
    a_watch_window_open_at_a_stop_opens_again_at_start,
    restart_serves_the_same_versions_without_recompiling,
);
