//! The API's guards: the bearer token, agent names and the body limit; and its error shape.

use overseer_tests::{Daemon, TOKEN, component, test_config};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn mutation_without_the_token_is_unauthorized() {
    let daemon = Daemon::start().await;
    let url = daemon.url("/v1/agents/echo/versions");
    let response = reqwest::Client::new()
        .post(&url)
        .body(component("echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");

    let response = reqwest::Client::new()
        .post(&url)
        .bearer_auth("wrong-token")
        .body(component("echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Liveness is open; every other read needs the token.
    let (status, body) = daemon.get_anonymous("/v1/health").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    for path in [
        "/v1/agents",
        "/v1/events",
        "/v1/limits",
        "/metrics",
        "/v1/alerts",
    ] {
        let (status, body) = daemon.get_anonymous(path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
    }
    let (status, _) = daemon.get("/v1/agents").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_agent_name_is_a_bad_request() {
    let daemon = Daemon::start().await;
    for name in ["Echo", "-echo", "e_cho", "a.b", &"x".repeat(64)] {
        let (status, body) = daemon.push(name, component("echo"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {body}");
        assert_eq!(body["error"]["code"], "invalid_name");
    }
}

#[tokio::test]
async fn body_over_the_limit_is_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.body_limit = 64 << 10;
    let daemon = Daemon::start_with(config).await;
    let (status, body) = daemon.push("echo", vec![0u8; 1 << 20], None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    let (status, body) = daemon
        .post(
            "/v1/agents/echo/invoke",
            format!("\"{}\"", "a".repeat(1 << 20)),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    daemon.stop().await;
}

#[tokio::test]
async fn unknown_agent_and_bad_payload_have_stable_codes() {
    let daemon = Daemon::start().await;
    let (status, body) = daemon.invoke("nobody", serde_json::json!(1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "agent_not_found");
    daemon.push_agent("echo", "echo").await;
    let (status, body) = daemon
        .post("/v1/agents/echo/invoke", "{not json".to_string())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_request");
    let response = daemon
        .client
        .delete(daemon.url("/v1/agents/echo"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = daemon.invoke("echo", serde_json::json!(1)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "no_active_version");
    let (_, body) = daemon.get("/v1/agents").await;
    assert_eq!(body["agents"][0]["state"], "retired");
}

/// The router's and the extractors' own refusals come in the one error shape, with a stable
/// code for their status.
#[tokio::test]
async fn every_refusal_is_the_documented_json_error() {
    let daemon = Daemon::start().await;
    let client = reqwest::Client::new();
    let cases = [
        (
            reqwest::Method::PATCH,
            "/v1/agents",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            reqwest::Method::DELETE,
            "/v1/health",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            reqwest::Method::GET,
            "/v1/decisions/not-a-number",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::GET,
            "/v1/orders?limit=lots",
            None,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::GET,
            "/v1/nowhere",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            reqwest::Method::POST,
            "/v1/decisions",
            Some("{not json"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            reqwest::Method::POST,
            "/v1/experiments",
            Some("{\"prompt\": 5}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let mut request = client
            .request(method.clone(), daemon.url(path))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json");
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{method} {path}");
        let allow = response.headers().get("allow").cloned();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(answer["error"]["code"], code, "{method} {path}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty())
        );
        if status == StatusCode::METHOD_NOT_ALLOWED {
            assert!(
                allow.is_some(),
                "{method} {path} says which methods are right"
            );
        }
    }
}
