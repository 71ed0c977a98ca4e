//! The architect: a spec becomes a live agent through the edit pipeline's gates, a spec whose
//! generated code does not build is retried with the compiler's errors and never served
//! broken, a privileged spec waits for a person, and bad specs are refused.

use std::time::Duration;

use clap::Parser;
use overseer::cli::{Cli, run};
use overseer_selfedit::architect::{AgentSpec, template};
use overseer_tests::{Daemon, FakeLlm, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn spec() -> AgentSpec {
    AgentSpec {
        name: "tally".to_string(),
        purpose: "Counts the counter's increments.\nAnnounces each count on its output."
            .to_string(),
        inputs: vec!["counter.incremented".to_string()],
        outputs: vec!["tally.counted".to_string()],
        schedule: None,
        capabilities: vec![],
    }
}

async fn spec_state(daemon: &Daemon, id: i64) -> Value {
    let (status, body) = daemon.get(&format!("/v1/architect/specs/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[tokio::test]
async fn a_spec_becomes_a_live_agent_after_its_compiler_errors_go_back_to_the_model() {
    // The model's first answer does not compile; its second is the template with a note.
    let good = template(&spec())["src/lib.rs"]
        .replace("struct Tally;", "/// Written from the spec.\nstruct Tally;");
    let llm = FakeLlm::start(vec![
        "Here is the agent:\n```rust\nuse overseer_guest::export;\nfn handle( {\nexport!(Nothing);\n```".to_string(),
        format!("Fixed:\n```rust\n{good}```"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(llm.config(dir.path())).await;
    daemon
        .push_agent("system-architect", "system-architect")
        .await;
    daemon.push_agent("counter", "counter").await;

    let (status, submitted) = daemon
        .post("/v1/architect/specs", json!(spec()).to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
    assert_eq!(submitted["state"], "designing");
    let id = submitted["id"].as_i64().unwrap();
    let done = eventually(Duration::from_secs(600), "the spec to be built", || async {
        let now = spec_state(&daemon, id).await;
        matches!(now["state"].as_str(), Some("live" | "failed")).then_some(now)
    })
    .await;
    assert_eq!(done["state"], "live", "{done}");
    let attempts = done["detail"]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{done}");
    assert_eq!(
        attempts[0]["stage"], "build",
        "the broken code was refused at build"
    );
    assert_eq!(attempts[1]["state"], "live");
    assert_eq!(attempts[1]["designer"], "system-architect");
    assert!(
        llm.prompt(1).contains("error"),
        "the compiler's errors went back to the model: {}",
        llm.prompt(1)
    );

    // Live, in the registry with its manifest, subscribed to its input.
    let agent = daemon.agent("tally").await;
    assert_eq!(agent["active_version"], 1, "{agent}");
    assert_eq!(
        agent["manifest"]["triggers"]["subscribe"],
        json!(["counter.incremented"]),
        "{agent}"
    );
    daemon.call_ok("counter", json!({})).await;
    eventually(
        Duration::from_secs(30),
        "tally to announce a count",
        || async {
            let (_, events) = daemon.get("/v1/events?topic=tally.counted").await;
            events["events"]
                .as_array()
                .is_some_and(|e| !e.is_empty())
                .then_some(())
        },
    )
    .await;
    let (_, architect) = daemon.get("/v1/architect").await;
    assert!(
        architect["workflow"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["from"] == "counter" && e["to"] == "tally"),
        "{architect}"
    );

    // A spec asking for the broker waits for a person; rejected, it is never built.
    let mut trader = spec();
    trader.name = "tally-trader".to_string();
    trader.capabilities = vec!["broker".to_string()];
    let (status, waiting) = daemon
        .post("/v1/architect/specs", json!(trader).to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{waiting}");
    assert_eq!(waiting["state"], "awaiting_approval");
    let waiting_id = waiting["id"].as_i64().unwrap();
    let (status, _) = daemon.get("/v1/agents/tally-trader").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, rejected) = daemon
        .post(
            &format!("/v1/architect/specs/{waiting_id}/reject"),
            json!({ "reason": "no capital for it" }).to_string(),
        )
        .await;
    assert_eq!(
        (status, rejected["state"].as_str()),
        (StatusCode::OK, Some("rejected"))
    );
    let (status, again) = daemon
        .post(
            &format!("/v1/architect/specs/{waiting_id}/approve"),
            String::new(),
        )
        .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    assert_eq!(
        llm.requests().len(),
        2,
        "the rejected spec never reached the model"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn bad_specs_are_refused_with_clear_errors() {
    let daemon = Daemon::start().await;
    daemon.push_agent("counter", "counter").await;
    let base = json!(spec());
    let with = |key: &str, value: Value| {
        let mut s = base.clone();
        s[key] = value;
        s
    };
    let cases = [
        (
            with("name", json!("Bad Name")),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            with("name", json!("counter")),
            StatusCode::CONFLICT,
            "conflict",
        ),
        (
            with("inputs", json!(["bad*topic"])),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("outputs", json!(["market.tick"])),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("capabilities", json!(["telepathy"])),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("schedule", json!("soon")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("purpose", json!(" ")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            with("colour", json!("blue")),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let (got, answer) = daemon.post("/v1/architect/specs", body.to_string()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    // Through the CLI: a spec file with a bad name is refused; the specs and workflow list.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spec.toml");
    std::fs::write(&file, "name = \"Bad Name\"\npurpose = \"x\"\n").unwrap();
    let client = [
        "--url",
        daemon.url.as_str(),
        "--token",
        overseer_tests::TOKEN,
    ];
    let cli = |args: &[&str]| {
        Cli::try_parse_from(["overseer"].iter().chain(args).chain(client.iter())).unwrap()
    };
    let error = run(cli(&["architect", file.to_str().unwrap()]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid_name"), "{error}");
    run(cli(&["architect"])).await.unwrap();

    // A governance `new_agent` decision, once a person approves it, is a spec the architect
    // builds (here from the template: no system-architect serves).
    let decision = json!({
        "kind": "new_agent",
        "title": "Count the counter",
        "priority": "low",
        "expected_impact": "a count of increments",
        "effort": "low",
        "rationale": "nobody counts them",
        "actions": [{ "type": "new_agent", "name": "tally", "purpose": "Counts increments", "spec": spec() }],
        "metric": { "name": "calls", "agent": "counter", "comparator": "at_least", "target": 0.0, "due_in_secs": 60 },
    });
    let (status, proposed) = daemon.post("/v1/decisions", decision.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{proposed}");
    assert_eq!(proposed["state"], "awaiting_approval");
    let id = proposed["id"].as_i64().unwrap();
    let (status, applied) = daemon
        .post(&format!("/v1/decisions/{id}/approve"), String::new())
        .await;
    assert_eq!(
        (status, applied["state"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{applied}"
    );
    let spec_id = applied["applied"]["done"][0]["result"]["spec"]
        .as_i64()
        .unwrap();
    let built = eventually(
        Duration::from_secs(600),
        "the decided agent to be built",
        || async {
            let now = spec_state(&daemon, spec_id).await;
            matches!(now["state"].as_str(), Some("live" | "failed")).then_some(now)
        },
    )
    .await;
    assert_eq!(built["state"], "live", "{built}");
    assert_eq!(built["detail"]["attempts"][0]["designer"], "template");
    assert_eq!(daemon.agent("tally").await["active_version"], 1);

    let (status, missing) = daemon.get("/v1/architect/specs/99").await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("spec_not_found"))
    );
    daemon.stop().await;
}
