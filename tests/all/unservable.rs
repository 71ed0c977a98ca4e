//! A stored version the engine can no longer load (its bytes damaged on disk, or a compile
//! that fails after an engine upgrade) is named for what it is, everywhere a user looks, and a
//! push of the right bytes repairs it.

use overseer_store::Store;
use overseer_tests::{Backend, Daemon, config_on};
use reqwest::StatusCode;
use serde_json::json;

async fn a_stored_version_that_cannot_load_is_named_and_repaired_by_a_push(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_on(dir.path(), backend).await;
    let first = Daemon::start_with(config.clone()).await;
    first.push_ok("svc", "echo", "").await;
    first.call_ok("svc", json!("before")).await;
    let digest = first.version("svc", 1).await["digest"]
        .as_str()
        .unwrap()
        .to_string();
    first.stop().await;

    let store = Store::open(&config.database_url()).await.unwrap();
    store
        .replace_component(&digest, b"\0asm, but not the bytes it was")
        .await
        .unwrap();
    drop(store);

    let second = Daemon::start_with(config.clone()).await;
    let (_, agents) = second.get("/v1/agents").await;
    assert_eq!(agents["agents"][0]["state"], "unservable", "{agents}");
    let (_, system) = second.get("/v1/system").await;
    assert_eq!(system["agents"]["unservable"], 1, "{system}");
    let alert = second
        .alert_of("state=open&agent=svc", "system_failure")
        .await;
    assert_eq!(alert["priority"], "critical", "{alert}");
    assert!(
        alert["message"].as_str().unwrap().contains("version 1"),
        "{alert}"
    );

    let (status, body) = second.invoke("svc", json!("now")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "version_not_servable");
    assert_eq!(body["error"]["version"], 1);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("damaged"),
        "{body}"
    );
    let (status, body) = second
        .post(
            "/v1/agents/svc/rollback",
            json!({ "version": 1 }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "version_not_servable");
    let v1 = second.version("svc", 1).await;
    assert_eq!(v1["state"], "unservable", "{v1}");

    // The right bytes, pushed again, repair the stored version and put it back in service.
    let (status, body) = second
        .push("svc", overseer_tests::component("echo"), Some(""))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 1);
    assert_eq!(second.call_ok("svc", json!("repaired")).await, 1);
    assert!(second.version("svc", 1).await["fault"].is_null());
    second.stop().await;

    let third = Daemon::start_with(config).await;
    assert_eq!(third.call_ok("svc", json!("after")).await, 1);
    third.stop().await;
}

overseer_tests::on_both_backends!(
    a_stored_version_that_cannot_load_is_named_and_repaired_by_a_push
);
