//! A restart on the same data directory serves the same active versions, loaded from the
//! compile cache instead of recompiled.

use overseer::bench::tagged;
use overseer_tests::{Daemon, component, test_config};
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn restart_serves_the_same_versions_without_recompiling() {
    let dir = tempfile::tempdir().unwrap();
    let first = Daemon::start_with(test_config(dir.path())).await;
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

    let second = Daemon::start_with(test_config(dir.path())).await;
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
