//! The audit trail of a running daemon: what changed the system is on it, in order, and a
//! row changed behind the store's back fails `overseer audit verify`.

use clap::Parser;
use overseer::bench::tagged;
use overseer_tests::{Daemon, TOKEN, component};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn verify(daemon: &Daemon, head: Option<&str>) -> anyhow::Result<()> {
    let mut args = vec![
        "overseer",
        "audit",
        "verify",
        "--url",
        &daemon.url,
        "--token",
        TOKEN,
    ];
    if let Some(head) = head {
        args.extend(["--head", head]);
    }
    overseer::cli::run(overseer::cli::Cli::try_parse_from(args).unwrap()).await
}

#[tokio::test]
async fn pushes_rollbacks_retirement_and_the_kill_switch_are_on_the_trail() {
    let daemon = Daemon::start().await;
    for n in 1..=2 {
        let (status, body) = daemon
            .push("echo", tagged(&component("echo"), &n.to_string()), None)
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, body) = daemon.post("/v1/agents/echo/rollback", String::new()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for action in ["kill", "resume"] {
        let (status, body) = daemon
            .post("/v1/risk", json!({ "action": action }).to_string())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = daemon.delete("/v1/agents/echo").await;
    assert!(status.is_success(), "{body}");

    let (status, listed) = daemon.get("/v1/audit?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let entries = listed["entries"].as_array().unwrap();
    let seen: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["subject"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("push", "activate", "echo"),
            ("push", "activate", "echo"),
            ("request", "activate", "echo"),
            ("request", "rollback", "echo"),
            ("person", "risk.halted", "trading"),
            ("person", "risk.resumed", "trading"),
            ("person", "retire", "echo"),
        ],
        "{listed}"
    );
    let rollback: Value = serde_json::from_str(entries[3]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(
        (rollback["from"].as_u64(), rollback["to"].as_u64()),
        (Some(2), Some(1))
    );
    // Without the token, nothing.
    let (status, _) = daemon.get_anonymous("/v1/audit").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, walked) = daemon.get("/v1/audit/verify").await;
    assert_eq!(walked["ok"], true, "{walked}");
    let head = walked["head"].as_str().unwrap().to_string();
    verify(&daemon, Some(&head)).await.unwrap();

    // An intruder with the database: the kill switch's entry says someone else threw it.
    let store = &daemon.daemon.state.kernel.store;
    store
        .execute_raw("UPDATE audit SET actor = 'host' WHERE action = 'risk.halted'")
        .await
        .unwrap();
    let (_, walked) = daemon.get("/v1/audit/verify").await;
    assert_eq!(walked["problems"][0]["problem"], "modified", "{walked}");
    let failed = verify(&daemon, None).await.unwrap_err();
    assert!(failed.to_string().contains("changed"), "{failed}");
    // The last entry cut off, and the trail put back as it was otherwise: only the kept
    // head tells.
    store
        .execute_raw("UPDATE audit SET actor = 'person' WHERE action = 'risk.halted'")
        .await
        .unwrap();
    store
        .execute_raw("DELETE FROM audit WHERE action = 'retire'")
        .await
        .unwrap();
    verify(&daemon, None).await.unwrap();
    let cut = verify(&daemon, Some(&head)).await.unwrap_err();
    assert!(cut.to_string().contains("removed from the end"), "{cut}");
    daemon.stop().await;
}
