//! Rollback to the previous version and to a chosen one.

use overseer::bench::tagged;
use overseer_tests::{Backend, Daemon, component};
use reqwest::StatusCode;
use serde_json::json;

async fn rollback_returns_to_the_previous_version_and_to_a_chosen_one(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    for n in 1..=3 {
        let (status, body) = daemon
            .push("echo", tagged(&component("echo"), &n.to_string()), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["version"], n);
    }

    let (status, body) = daemon.post("/v1/agents/echo/rollback", String::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    let (_, body) = daemon.invoke("echo", json!("x")).await;
    assert_eq!(body["version"], 2);

    let (status, body) = daemon
        .post(
            "/v1/agents/echo/rollback",
            json!({"version": 3}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = daemon.invoke("echo", json!("x")).await;
    assert_eq!(body["version"], 3);

    let (status, body) = daemon
        .post(
            "/v1/agents/echo/rollback",
            json!({"version": 1}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = daemon.invoke("echo", json!("x")).await;
    assert_eq!(body["version"], 1);

    let (status, body) = daemon.post("/v1/agents/echo/rollback", String::new()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "no_previous_version");

    // A body that is not exactly `{"version": N}` is refused, never read as "the previous".
    for bad in [
        json!({ "versoin": 2 }),
        json!({ "version": null }),
        json!({ "version": "2" }),
        json!({ "version": -1 }),
        json!({}),
        json!([2]),
    ] {
        let (status, body) = daemon
            .post("/v1/agents/echo/rollback", bad.to_string())
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_request")),
            "{bad}: {body}"
        );
    }
    let (_, agent) = daemon.get("/v1/agents/echo").await;
    assert_eq!(agent["active_version"], 1, "nothing was rolled back");

    let (status, body) = daemon
        .post(
            "/v1/agents/echo/rollback",
            json!({"version": 9}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "version_not_found");
}

async fn rollback_to_a_rejected_version_is_refused(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    daemon.push("echo", component("echo"), None).await;
    let (status, _) = daemon
        .push("echo", component("fixture-bad-health"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = daemon
        .post(
            "/v1/agents/echo/rollback",
            json!({"version": 2}).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "version_not_servable");
    let (_, body) = daemon.invoke("echo", json!("x")).await;
    assert_eq!(body["version"], 1);
}

overseer_tests::on_both_backends!(
    rollback_returns_to_the_previous_version_and_to_a_chosen_one,
    rollback_to_a_rejected_version_is_refused,
);
