//! Pushing versions: the happy path, idempotency, and every way a push is refused while the
//! active version keeps answering.

use overseer_tests::{Backend, Daemon, component, core_module, manifest};
use reqwest::StatusCode;
use serde_json::json;

async fn valid_push_goes_live_and_answers_naming_its_version(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    let (status, body) = daemon
        .push("echo", component("echo"), Some(&manifest("echo")))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "active");
    assert_eq!(body["version"], 1);
    let digest = body["digest"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64);

    let (status, body) = daemon.invoke("echo", json!({"hello": "world"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"hello": "world"}));
    assert_eq!(body["version"], 1);

    let (status, body) = daemon.get("/v1/agents/echo/versions").await;
    assert_eq!(status, StatusCode::OK);
    let versions = body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0]["digest"], digest.as_str());
    assert_eq!(versions[0]["state"], "active");
    assert_eq!(versions[0]["origin"], "push");
    let steps: Vec<_> = versions[0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(steps, ["validate", "describe", "health"]);

    let (status, body) = daemon.get("/v1/agents").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["agents"][0]["name"], "echo");
    assert_eq!(body["agents"][0]["active_version"], 1);
}

async fn pushing_the_same_bytes_again_creates_no_version_and_says_so(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    let (status, _) = daemon.push("echo", component("echo"), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = daemon.push("echo", component("echo"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);
    assert_eq!(body["version"], 1);
    assert!(
        body["message"].as_str().unwrap().contains("unchanged"),
        "{body}"
    );
    let (_, body) = daemon.get("/v1/agents/echo/versions").await;
    assert_eq!(body["versions"].as_array().unwrap().len(), 1);
}

async fn garbage_core_module_and_other_world_are_refused_with_distinct_codes(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    daemon.push_agent("echo", "echo").await;

    let mut codes = Vec::new();
    for bytes in [
        b"definitely not wasm".to_vec(),
        core_module(),
        component("fixture-other-world"),
    ] {
        let (status, body) = daemon.push("echo", bytes, None).await;
        assert!(status.is_client_error(), "{status} {body}");
        codes.push(body["error"]["code"].as_str().unwrap().to_string());

        let (status, body) = daemon.invoke("echo", json!("still here")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["version"], 1);
        assert_eq!(body["output"], "still here");
    }
    assert_eq!(codes, ["not_wasm", "not_a_component", "wrong_world"]);

    let (_, body) = daemon.get("/v1/agents/echo/versions").await;
    let versions = body["versions"].as_array().unwrap();
    assert_eq!(body["active_version"], 1);
    assert!(
        versions[1..].iter().all(|v| v["state"] == "rejected"),
        "{body}"
    );
    assert_eq!(versions[3]["code"], "wrong_world");
}

async fn component_importing_an_unknown_interface_is_refused(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    let component = wat::parse_str(
        r#"(component
            (import "acme:secret/vault@1.0.0" (instance))
        )"#,
    )
    .unwrap();
    let (status, body) = daemon.push("vaulty", component, None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "unknown_import");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("acme:secret/vault"),
        "{body}"
    );
}

async fn unhealthy_version_is_rejected_and_the_previous_stays_active(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    daemon.push_agent("echo", "echo").await;
    let (status, body) = daemon
        .push("echo", component("fixture-bad-health"), None)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "unhealthy");
    assert_eq!(body["error"]["version"], 2);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("deliberately unhealthy"),
        "{body}"
    );
    let (status, body) = daemon.invoke("echo", json!(1)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["version"], 1);
    let (_, body) = daemon.get("/v1/agents/echo/versions").await;
    assert_eq!(body["versions"][1]["state"], "rejected");
    assert_eq!(body["versions"][1]["stage"], "health");
}

async fn invalid_manifest_is_refused_before_anything_is_recorded(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    let (status, body) = daemon
        .push(
            "echo",
            component("echo"),
            Some("[limits]\nfuel = \"lots\"\n"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_manifest");
    let (status, _) = daemon.get("/v1/agents/echo").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// `[agent]` says what an agent is; a push whose dependencies are not serving goes live with
/// a warning in its checks.
#[tokio::test]
async fn an_agent_says_what_it_is_and_a_missing_dependency_is_a_warning() {
    let daemon = Daemon::start().await;
    let about = "[agent]\ntype = \"research\"\nspecialisation = \"risk_assessment\"\ncapabilities = [\"risk_report\"]\ndependencies = [\"feed\"]\n";
    let (status, body) = daemon.push("analyst", component("echo"), Some(about)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let dependencies = overseer_tests::check(&body, "dependencies");
    assert_eq!(dependencies["ok"], true);
    let detail = dependencies["detail"].as_str().unwrap();
    assert!(detail.starts_with("warning: feed not serving"), "{detail}");
    let (_, shown) = daemon.get("/v1/agents/analyst").await;
    assert_eq!(shown["manifest"]["agent"]["type"], "research");
    assert_eq!(
        shown["manifest"]["agent"]["specialisation"],
        "risk_assessment"
    );
    assert_eq!(shown["manifest"]["agent"]["dependencies"], json!(["feed"]));

    daemon
        .push_ok(
            "feed",
            "echo",
            &manifest("echo").replace("name = \"echo\"", ""),
        )
        .await;
    let (status, body) = daemon
        .push(
            "analyst",
            overseer::bench::tagged(&component("echo"), "2"),
            Some(about),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        overseer_tests::check(&body, "dependencies")["detail"],
        "every agent it needs is serving"
    );
    let (status, body) = daemon
        .push(
            "odd",
            component("echo"),
            Some("[agent]\ntype = \"oracle\"\n"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_manifest");
}

overseer_tests::on_both_backends!(
    valid_push_goes_live_and_answers_naming_its_version,
    pushing_the_same_bytes_again_creates_no_version_and_says_so,
    garbage_core_module_and_other_world_are_refused_with_distinct_codes,
    component_importing_an_unknown_interface_is_refused,
    unhealthy_version_is_rejected_and_the_previous_stays_active,
    invalid_manifest_is_refused_before_anything_is_recorded,
);
