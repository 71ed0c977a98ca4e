//! Self-editing: an edit of an agent's source is built and goes through the gates of a push;
//! only a version that goes live changes the working copy, and a rollback restores it.

use std::time::Duration;

use clap::Parser;
use overseer::cli::{Cli, run};
use overseer_tests::{Backend, Daemon, TOKEN, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

const HANDLE: &str = "        Ok(event.payload)\n";

/// A one-line change of echo's `handle`, as a unified diff against echo's source.
fn handle_diff(new_line: &str) -> String {
    let source = std::fs::read_to_string(overseer_tests::agents_dir().join("echo/src/lib.rs"))
        .expect("echo source");
    let new = source.replace(HANDLE, new_line);
    assert_ne!(source, new, "echo's handle is where the tests expect it");
    let mut diff = String::from("--- a/src/lib.rs\n+++ b/src/lib.rs\n");
    diff.push_str(
        &similar_unified(&source, &new)
            .lines()
            .skip(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    diff
}

/// A unified diff written by the host's own renderer.
fn similar_unified(old: &str, new: &str) -> String {
    let mut a = overseer_selfedit::Snapshot::default();
    let mut b = overseer_selfedit::Snapshot::default();
    a.files.insert("x".into(), old.into());
    b.files.insert("x".into(), new.into());
    overseer_selfedit::patch::diff(&a, &b)
}

async fn propose(daemon: &Daemon, name: &str, body: Value) -> (StatusCode, Value) {
    daemon
        .post(&format!("/v1/agents/{name}/edits"), body.to_string())
        .await
}

async fn edit_and_wait(daemon: &Daemon, name: &str, body: Value) -> Value {
    let (status, edit) = propose(daemon, name, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    daemon.finished_edit(name, &edit).await
}

fn working_copy(daemon: &Daemon, name: &str) -> String {
    std::fs::read_to_string(
        daemon
            .data_dir
            .join("sources")
            .join(name)
            .join("src/lib.rs"),
    )
    .expect("working copy")
}

async fn active_version(daemon: &Daemon, name: &str) -> u64 {
    let (_, agent) = daemon.get(&format!("/v1/agents/{name}")).await;
    agent["active_version"].as_u64().expect("active version")
}

async fn edits_go_live_or_leave_the_agent_as_it_was(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    daemon.create_from_source("echo", "echo").await;
    assert!(working_copy(&daemon, "echo").contains(HANDLE));

    // A one-line change goes live; the diff and the working copy show it.
    let edit = edit_and_wait(
        &daemon,
        "echo",
        json!({
            "base_version": 1,
            "diff": handle_diff("        Ok(format!(\"{{\\\"edited\\\": {}}}\", event.payload))\n"),
            "reason": "wrap the payload",
        }),
    )
    .await;
    assert_eq!(edit["state"], "live", "{edit}");
    assert_eq!(edit["version"], 2);
    assert_eq!(edit["reason"], "wrap the payload");
    assert_eq!(edit["proposer"], "api");
    assert!(
        edit["build_log"]
            .as_str()
            .unwrap()
            .contains("Compiling agent-echo")
    );
    let (status, body) = daemon.invoke("echo", json!({ "a": 1 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({ "edited": { "a": 1 } }));
    assert_eq!(body["version"], 2);
    let (_, diff) = daemon.get("/v1/agents/echo/versions/1/diff/2").await;
    let diff = diff["diff"].as_str().unwrap();
    assert!(diff.contains("--- a/src/lib.rs"), "{diff}");
    assert!(diff.contains("-        Ok(event.payload)"), "{diff}");
    assert!(diff.contains("edited"), "{diff}");
    assert!(working_copy(&daemon, "echo").contains("edited"));
    let (_, versions) = daemon.get("/v1/agents/echo/versions").await;
    assert_eq!(versions["versions"][1]["origin"], "edit");

    // The proposer is who asks (the token's `api`), never a field of the body; an edit that
    // changes nothing is refused.
    let (status, error) = propose(
        &daemon,
        "echo",
        json!({ "base_version": 2, "diff": handle_diff("x\n"), "proposer": "code-editor" }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("proposer"),
        "{error}"
    );
    let source = working_copy(&daemon, "echo");
    let (status, error) = propose(
        &daemon,
        "echo",
        json!({ "base_version": 2, "files": { "src/lib.rs": source } }),
    )
    .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("no_change")),
        "{error}"
    );

    // Paths that leave the source: 400, nothing recorded.
    let escape = "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-root\n+owned\n";
    for body in [
        json!({ "base_version": 2, "diff": escape }),
        json!({ "base_version": 2, "files": { "../outside.rs": "x" } }),
        json!({ "base_version": 2, "files": { "/etc/passwd": "x" } }),
    ] {
        let (status, error) = propose(&daemon, "echo", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(error["error"]["code"], "path_escape");
    }
    // A link inside the working copy is not followed.
    #[cfg(unix)]
    {
        let link = daemon.data_dir.join("sources/echo/src/link.rs");
        std::os::unix::fs::symlink("/etc/hostname", &link).unwrap();
        let (status, error) = propose(
            &daemon,
            "echo",
            json!({ "base_version": 2, "files": { "src/link.rs": "x" } }),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
        assert_eq!(error["error"]["code"], "path_escape");
        std::fs::remove_file(link).unwrap();
    }

    // A stale base whose change no longer applies: 409.
    let (status, error) = propose(
        &daemon,
        "echo",
        json!({ "base_version": 1, "diff": handle_diff("        Ok(event.topic)\n") }),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    assert_eq!(error["error"]["code"], "stale_base");

    // An edit that does not compile: rejected at build with the compiler's message.
    let broken = working_copy(&daemon, "echo")
        .replace("event.payload))", "event.payload.no_such_method()))");
    let edit = edit_and_wait(
        &daemon,
        "echo",
        json!({ "base_version": 2, "files": { "src/lib.rs": broken } }),
    )
    .await;
    assert_eq!(edit["state"], "rejected", "{edit}");
    assert_eq!(edit["stage"], "build");
    assert_eq!(edit["code"], "build_failed");
    let message = edit["message"].as_str().unwrap();
    assert!(
        message.contains("no_such_method") && message.contains("error"),
        "{message}"
    );
    assert_eq!(active_version(&daemon, "echo").await, 2);
    assert!(working_copy(&daemon, "echo").contains("edited"));

    // An edit that compiles but reports itself unhealthy: rejected at health.
    let unhealthy = working_copy(&daemon, "echo")
        .replace(
            "use overseer_guest::{Agent, Error, Event, Info};",
            "use overseer_guest::{Agent, Error, Event, Health, Info};",
        )
        .replace(
            "    fn handle(",
            "    fn health() -> Health {\n        Health { ok: false, detail: \"edited to fail\".to_string() }\n    }\n\n    fn handle(",
        );
    let edit = edit_and_wait(
        &daemon,
        "echo",
        json!({ "base_version": 2, "files": { "src/lib.rs": unhealthy } }),
    )
    .await;
    assert_eq!(edit["state"], "rejected", "{edit}");
    assert_eq!(edit["stage"], "health", "{edit}");
    assert!(edit["message"].as_str().unwrap().contains("edited to fail"));
    assert_eq!(active_version(&daemon, "echo").await, 2);
    assert!(!working_copy(&daemon, "echo").contains("edited to fail"));
    let (_, body) = daemon.invoke("echo", json!(1)).await;
    assert_eq!(body["version"], 2);

    let (_, edits) = daemon.get("/v1/agents/echo/edits").await;
    let states: Vec<&str> = edits["edits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["rejected", "rejected", "live", "live"]);

    // The CLI: `edits`, `diff`, and `edit` refusing a diff that no longer applies.
    let cli = |args: &[&str]| {
        let client = ["--url", &daemon.url, "--token", TOKEN];
        Cli::try_parse_from(["overseer"].iter().chain(args).chain(client.iter())).unwrap()
    };
    run(cli(&["edits", "echo"])).await.unwrap();
    run(cli(&["diff", "echo", "1", "2"])).await.unwrap();
    let file = daemon.data_dir.join("stale.diff");
    std::fs::write(&file, handle_diff("        Ok(event.topic)\n")).unwrap();
    let error = run(cli(&["edit", "echo", "--diff", file.to_str().unwrap()]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("patch_failed"), "{error}");
    let error = run(cli(&[
        "edit",
        "echo",
        "--base",
        "1",
        "--diff",
        file.to_str().unwrap(),
    ]))
    .await
    .unwrap_err();
    assert!(error.to_string().contains("stale_base"), "{error}");
}

async fn an_edit_that_fails_its_watch_window_is_rolled_back_with_its_source(backend: Backend) {
    let daemon = Daemon::start_on(backend).await;
    daemon.create_from_source("fragile", "echo").await;
    for i in 0..3 {
        let (status, _) = daemon.invoke("fragile", json!({ "n": i })).await;
        assert_eq!(status, StatusCode::OK);
    }
    let before = working_copy(&daemon, "fragile");

    // Fails only on inputs the canary has not seen, so it passes the checks and goes live.
    let edit = edit_and_wait(
        &daemon,
        "fragile",
        json!({
            "base_version": 1,
            "diff": handle_diff(
                "        if event.payload.contains(\"boom\") {\n            return Err(Error::Failed(\"boom\".to_string()));\n        }\n        Ok(event.payload)\n",
            ),
            "reason": "fail on boom",
        }),
    )
    .await;
    assert_eq!(edit["state"], "live", "{edit}");
    assert!(working_copy(&daemon, "fragile").contains("boom"));
    for _ in 0..6 {
        daemon.invoke("fragile", json!("boom")).await;
    }

    let id = edit["id"].clone();
    let edit = eventually(
        Duration::from_secs(10),
        "the edit to be rolled back",
        || async {
            let (_, edit) = daemon.get(&format!("/v1/agents/fragile/edits/{id}")).await;
            (edit["state"] == "rolled-back").then_some(edit)
        },
    )
    .await;
    assert_eq!(edit["version"], 2);
    assert_eq!(active_version(&daemon, "fragile").await, 1);
    eventually(Duration::from_secs(5), "the old source back", || async {
        (working_copy(&daemon, "fragile") == before).then_some(())
    })
    .await;
    let (_, events) = daemon.get("/v1/events?topic=edit.*").await;
    let topics: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["topic"].as_str().unwrap())
        .collect();
    assert!(topics.contains(&"edit.rolled-back"), "{topics:?}");
}

overseer_tests::on_both_backends!(
    edits_go_live_or_leave_the_agent_as_it_was,
    an_edit_that_fails_its_watch_window_is_rolled_back_with_its_source,
);
