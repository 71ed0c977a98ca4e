//! Self-repair: the code editor answers an alert about a trapping agent by asking the LLM (a
//! fake one on loopback) for a patch, and the host puts the fix through the gates of any edit.
//! Also the `llm` and `source` interfaces themselves: denied without a grant, unavailable
//! without an endpoint, and guarded against an agent widening another's capabilities.

use std::time::Duration;

use overseer_tests::{Daemon, FakeLlm, WAIT, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The statement of the buggy fixture that traps on a zero divisor.
const BUG: &str = concat!(
    "        let share = 100u32\n",
    "            .checked_div(divisor)\n",
    "            .expect(\"a divisor that is not zero\");\n",
);

/// A unified diff of the buggy fixture's source replacing the trapping line with `line`.
fn patch(line: &str) -> String {
    let path = overseer_tests::agents_dir().join("fixtures/buggy/src/lib.rs");
    let old = std::fs::read_to_string(path).expect("buggy source");
    let new = old.replace(BUG, line);
    assert_ne!(old, new, "the bug is where the tests expect it");
    let mut a = overseer_selfedit::Snapshot::default();
    let mut b = overseer_selfedit::Snapshot::default();
    a.files.insert("src/lib.rs".into(), old);
    b.files.insert("src/lib.rs".into(), new);
    overseer_selfedit::patch::diff(&a, &b)
}

/// The fix, as models answer: prose, the current code quoted in a ```rust block (with a
/// `---` of its own), then the diff in a ```diff block with CRLF line endings that runs to the
/// end of the answer without its closing fence or a final newline.
fn fix_answer() -> String {
    let diff = patch(
        "        let share = 100u32\n            .checked_div(divisor)\n            .ok_or_else(|| Error::invalid_input(\"the divisor must not be zero\"))?;\n",
    );
    let crlf = diff.replace('\n', "\r\n");
    format!(
        "The divisor is not checked:\r\n\r\n```rust\r\n// --- the line that traps ---\r\n{}```\r\n\r\nThis fixes it:\r\n\r\n```diff\r\n{}",
        BUG.replace('\n', "\r\n"),
        crlf.trim_end()
    )
}

/// A patch that applies but does not compile.
fn broken_answer() -> String {
    let diff = patch("        let share = 100u32.checked_div(divisor).or_zero_please();\n");
    format!("```diff\n{diff}```")
}

async fn llm_daemon(llm: &FakeLlm) -> (Daemon, tempfile::TempDir) {
    let temp = tempfile::tempdir().expect("temp dir");
    let config = llm.config(temp.path());
    (Daemon::start_with(config).await, temp)
}

/// Create `buggy` from source, let its watch window call it stable, then make it trap until
/// supervision quarantines it. Returns the alert.
async fn make_it_fail(daemon: &Daemon) -> Value {
    daemon.create_from_source("buggy", "fixture-buggy").await;
    stable_then_trapping(daemon, "buggy").await
}

/// Five calls of `agent` sharing 100 by 5, until its watch window calls it stable; then calls
/// with a zero divisor, which trap, until supervision quarantines it. Returns the alert.
async fn stable_then_trapping(daemon: &Daemon, agent: &str) -> Value {
    for _ in 0..5 {
        let (status, body) = daemon.invoke(agent, json!(5)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["output"], json!({ "share": 20 }));
    }
    let versions = format!("/v1/agents/{agent}/versions");
    eventually(Duration::from_secs(10), "a stable verdict", || async {
        let (_, versions) = daemon.get(&versions).await;
        (versions["versions"][0]["verdict"] == "stable").then_some(())
    })
    .await;
    for _ in 0..4 {
        let (status, body) = daemon.invoke(agent, json!(0)).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        assert_eq!(body["error"]["code"], "trap");
    }
    let alerts = format!("/v1/alerts?agent={agent}&state=open");
    eventually(Duration::from_secs(10), "a quarantine alert", || async {
        let (_, alerts) = daemon.get(&alerts).await;
        alerts["alerts"]
            .as_array()
            .and_then(|list| list.iter().find(|a| a["type"] == "quarantine").cloned())
    })
    .await
}

/// Wait for an edit of `agent` by the code editor to go live; returns every edit, newest first.
async fn repaired(daemon: &Daemon, agent: &str) -> Vec<Value> {
    let path = format!("/v1/agents/{agent}/edits");
    eventually(
        Duration::from_secs(600),
        "the repair to go live",
        || async {
            let (_, edits) = daemon.get(&path).await;
            let edits = edits["edits"].as_array().cloned().unwrap_or_default();
            edits
                .iter()
                .any(|e| e["proposer"] == "code-editor" && e["state"] == "live")
                .then_some(edits)
        },
    )
    .await
}

/// The alert resolves once the fix is live (by the activation's listeners, just after the edit
/// reads live).
async fn resolved(daemon: &Daemon, alert: &Value) {
    eventually(WAIT, "the alert to resolve", || async {
        let (_, alert) = daemon.get(&format!("/v1/alerts/{}", alert["id"])).await;
        alert["resolved_ms"].is_u64().then_some(())
    })
    .await;
}

async fn assert_fixed(daemon: &Daemon, alert: &Value) {
    resolved(daemon, alert).await;
    let (status, body) = daemon.invoke("buggy", json!(0)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
    let (status, body) = daemon.invoke("buggy", json!(4)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({ "share": 25 }));
    assert_eq!(body["version"], 2);
    // The code editor learns the outcome from the `edit.live` event, delivered after the swap.
    let events = eventually(Duration::from_secs(10), "code-editor.repaired", || async {
        let (_, events) = daemon.get("/v1/events?topic=code-editor.repaired").await;
        let events = events["events"].as_array().cloned().unwrap_or_default();
        (!events.is_empty()).then_some(events)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    let repaired: Value = serde_json::from_str(events[0]["payload"].as_str().unwrap()).unwrap();
    assert_eq!(repaired["agent"], "buggy");
    assert_eq!(repaired["version"], 2);
}

#[tokio::test]
async fn the_code_editor_repairs_a_trapping_agent_and_its_alert_resolves() {
    let llm = FakeLlm::start(vec![fix_answer()]).await;
    let (daemon, _temp) = llm_daemon(&llm).await;
    daemon.push_agent("code-editor", "code-editor").await;
    let alert = make_it_fail(&daemon).await;
    assert_eq!(alert["priority"], "critical", "{alert}");

    let edits = repaired(&daemon, "buggy").await;
    let fix = &edits[0];
    assert_eq!(fix["version"], 2, "{fix}");
    assert!(
        fix["build_log"]
            .as_str()
            .unwrap_or_default()
            .starts_with("the patch was read leniently: line endings normalised to LF"),
        "what was read leniently is on the record: {fix}"
    );
    assert!(
        fix["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("Alert #{}", alert["id"])),
        "{fix}"
    );
    assert_fixed(&daemon, &alert).await;

    // One question to the model, holding the evidence a person would look at.
    assert_eq!(llm.requests().len(), 1);
    let prompt = llm.prompt(0);
    for evidence in [
        "Alert #",                    // what went wrong
        "panicked at",                // the trap, from the agent's log
        ".expect(\"a divisor",        // the source
        ": expect: `expect()` traps", // the finding at that line
    ] {
        assert!(prompt.contains(evidence), "{evidence:?} in:\n{prompt}");
    }
    let (_, usage) = daemon.get("/v1/llm").await;
    assert_eq!(usage["usage"][0]["agent"], "code-editor", "{usage}");
    assert_eq!(usage["usage"][0]["prompt_tokens"], 120);
}

#[tokio::test]
async fn a_patch_that_does_not_compile_goes_back_to_the_model_and_never_serves() {
    let llm = FakeLlm::start(vec![broken_answer(), fix_answer()]).await;
    let (daemon, _temp) = llm_daemon(&llm).await;
    daemon.push_agent("code-editor", "code-editor").await;
    let alert = make_it_fail(&daemon).await;

    let edits = repaired(&daemon, "buggy").await;
    let (fix, broken) = (&edits[0], &edits[1]);
    assert_eq!(broken["proposer"], "code-editor");
    assert_eq!(broken["state"], "rejected", "{broken}");
    assert_eq!(broken["stage"], "build");
    assert_eq!(fix["state"], "live");
    assert_fixed_without_a_broken_version(&daemon, &alert).await;

    // The second question carries the compiler's answer to the first patch.
    assert_eq!(llm.requests().len(), 2);
    let retry = llm.prompt(1);
    assert!(retry.contains("Attempt 1 was refused"), "{retry}");
    assert!(retry.contains("or_zero_please"), "{retry}");
    assert!(
        retry.contains("error[E0599]"),
        "the compiler's error: {retry}"
    );
}

/// Only the created version and the fix ever existed: the broken patch never became a version.
async fn assert_fixed_without_a_broken_version(daemon: &Daemon, alert: &Value) {
    assert_fixed(daemon, alert).await;
    let (_, versions) = daemon.get("/v1/agents/buggy/versions").await;
    let versions = versions["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert!(versions.iter().all(|v| v["state"] != "rejected"));
}

#[tokio::test]
async fn llm_and_source_are_denied_without_a_grant_and_guarded_with_one() {
    let llm = FakeLlm::start(vec!["pong".to_string()]).await;
    let (daemon, _temp) = llm_daemon(&llm).await;
    let probe = |name: &'static str, call: Value| {
        let daemon = &daemon;
        async move {
            let (status, body) = daemon.invoke(name, call).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["output"].clone()
        }
    };

    // Granted nothing: every call is denied, and the model is not even named.
    let plain = overseer_tests::manifest("fixture-prober")
        .replace("name = \"prober\"", "name = \"plain\"")
        .replace("grant = [\"llm\", \"source\"]", "grant = []");
    let (status, body) = daemon.push_package("plain", "fixture-prober", &plain).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for call in ["complete", "agents"] {
        let answer = probe("plain", json!({ "call": call })).await;
        assert_eq!(answer["error"], "denied", "{call}: {answer}");
        assert!(answer["message"].as_str().unwrap().contains("grant"));
    }
    assert_eq!(
        probe("plain", json!({ "call": "model" })).await["ok"],
        Value::Null
    );
    assert!(llm.requests().is_empty());

    // Granted both, and built from source.
    daemon.create_from_source("prober", "fixture-prober").await;
    daemon.create_from_source("buggy", "fixture-buggy").await;
    let answer = probe("prober", json!({ "call": "complete" })).await;
    assert_eq!(answer["ok"]["text"], "pong", "{answer}");
    assert_eq!(answer["ok"]["model"], "fake-model");
    assert_eq!(answer["ok"]["prompt_tokens"], 120);
    assert_eq!(llm.prompt(0), "ping");
    let answer = probe("prober", json!({ "call": "agents" })).await;
    assert_eq!(
        answer["ok"],
        json!(["buggy", "prober"]),
        "pushed agents have no source"
    );
    let answer = probe("prober", json!({ "call": "read", "agent": "buggy" })).await;
    assert!(
        answer["ok"].as_str().unwrap().contains(BUG.trim()),
        "{answer}"
    );
    let answer = probe("prober", json!({ "call": "findings", "agent": "buggy" })).await;
    assert_eq!(answer["ok"], json!(["expect"]));

    // Token counts are kept per agent, in the store and in /metrics.
    let (_, usage) = daemon.get("/v1/llm").await;
    assert_eq!(usage["model"], "fake-model");
    assert_eq!(usage["usage"][0]["agent"], "prober");
    assert_eq!(usage["usage"][0]["completion_tokens"], 30);
    let metrics = daemon.metrics().await;
    assert!(
        metrics.contains(r#"overseer_llm_tokens_total{agent="prober",kind="prompt"} 120"#),
        "{metrics}"
    );

    // An agent proposes edits of others only, of their Rust source only, and nothing that
    // reads the host's files when it is built.
    let answer = probe("prober", json!({ "call": "propose", "agent": "prober" })).await;
    assert_eq!(answer["error"], "denied", "itself: {answer}");
    let escalate =
        overseer_tests::manifest("fixture-buggy") + "\n[capabilities]\ngrant = [\"source\"]\n";
    let source = probe("prober", json!({ "call": "read", "agent": "buggy" })).await["ok"]
        .as_str()
        .unwrap()
        .to_string();
    let leak = source.replace(
        "Ok(format!(",
        "let _token = include_str!(\"/etc/hostname\");\n        Ok(format!(",
    );
    // A file nested deeper than any walk should go is refused, and the host stays up.
    let deep = format!(
        "fn f() -> u32 {{ {}1{} }}\n",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    for (path, content, why) in [
        ("src/lib.rs", deep.as_str(), "cannot be checked"),
        ("agent.toml", escalate.as_str(), "src/"),
        ("Cargo.toml", "[package]\nname = \"x\"\n", "src/"),
        ("build.rs", "fn main() {}\n", "src/"),
        ("src/lib.rs", leak.as_str(), "include_str"),
    ] {
        let answer = probe(
            "prober",
            json!({ "call": "propose", "agent": "buggy", "path": path, "content": content }),
        )
        .await;
        assert_eq!(answer["error"], "denied", "{path}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(why),
            "{answer}"
        );
    }
    let fine = source.replace("give a whole number", "give a whole number, please");
    let answer = probe(
        "prober",
        json!({ "call": "propose", "agent": "buggy", "path": "src/lib.rs", "content": fine }),
    )
    .await;
    let id = answer["ok"].as_u64().expect("an edit id");
    let edit = daemon.finished_edit("buggy", &json!({ "id": id })).await;
    assert_eq!(edit["state"], "live", "{edit}");
    assert_eq!(edit["proposer"], "prober");
    let answer = probe(
        "prober",
        json!({ "call": "outcome", "agent": "buggy", "edit": id }),
    )
    .await;
    assert_eq!(
        answer["ok"],
        json!({ "state": "live", "proposer": "prober" })
    );
    let (_, edits) = daemon.get("/v1/agents/buggy/edits").await;
    let edits_before = edits["edits"].as_array().unwrap().len();

    // Alerts, edit outcomes and the host's own events are the host's to announce; wildcards
    // only subscribe.
    for topic in [
        "alert.quarantine",
        "edit.live",
        "overseer.agent.quarantined",
        "schedule.tick",
    ] {
        let answer = probe("prober", json!({ "call": "emit", "topic": topic })).await;
        assert_eq!(answer["error"], "denied", "{topic}: {answer}");
    }
    for topic in ["*", "prober.*"] {
        let answer = probe("prober", json!({ "call": "emit", "topic": topic })).await;
        assert_eq!(answer["error"], "invalid_input", "{topic}: {answer}");
    }

    // Shadow runs ask no LLM and propose no edit: a new version's canary replays the calls
    // above (a completion, a proposal) and neither reaches the model or the edits.
    let asked = llm.requests().len();
    let manifest = overseer_tests::manifest("fixture-prober")
        .replace("description = \"", "description = \"Replayed: ");
    let (status, body) = daemon
        .push_package("prober", "fixture-prober", &manifest)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let canary = overseer_tests::check(&body, "canary");
    assert_eq!(canary["ok"], true, "{canary}");
    assert_eq!(llm.requests().len(), asked);
    let (_, edits) = daemon.get("/v1/agents/buggy/edits").await;
    assert_eq!(edits["edits"].as_array().unwrap().len(), edits_before);

    // The analysis, over HTTP, of the version built from source.
    let (status, analysis) = daemon.get("/v1/agents/prober/analysis?version=1").await;
    assert_eq!(status, StatusCode::OK, "{analysis}");
    let findings = analysis["findings"].as_array().unwrap();
    let unwrap = findings
        .iter()
        .find(|f| f["kind"] == "unwrap")
        .expect("the prober's unwrap");
    assert_eq!(unwrap["file"], "src/lib.rs");
    assert_eq!(unwrap["function"], "name");
    let source =
        std::fs::read_to_string(overseer_tests::agents_dir().join("fixtures/prober/src/lib.rs"))
            .unwrap();
    let line = source
        .lines()
        .position(|l| l.contains(".unwrap()"))
        .unwrap()
        + 1;
    assert_eq!(unwrap["line"], line);
}

#[tokio::test]
async fn without_an_endpoint_the_llm_is_unavailable_and_the_code_editor_idle() {
    let daemon = Daemon::start().await;
    let manifest = overseer_tests::manifest("fixture-prober");
    let (status, body) = daemon
        .push_package("prober", "fixture-prober", &manifest)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, body) = daemon.invoke("prober", json!({ "call": "complete" })).await;
    assert_eq!(body["output"]["error"], "unavailable", "{body}");
    let (_, body) = daemon.invoke("prober", json!({ "call": "model" })).await;
    assert_eq!(body["output"]["ok"], Value::Null);

    let pushed = daemon.push_agent("code-editor", "code-editor").await;
    let health = overseer_tests::check(&pushed, "health");
    assert!(
        health["detail"].as_str().unwrap().starts_with("idle"),
        "{health}"
    );
    let (status, body) = daemon
        .invoke(
            "code-editor",
            json!({ "agent": "prober", "goal": "make it better" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["output"]["idle"].is_string(), "{body}");
    let (_, usage) = daemon.get("/v1/llm").await;
    assert_eq!(usage["configured"], false);
}

/// A Python agent that shares 100 out by the number it is given, and traps on zero: the
/// `ZeroDivisionError` escapes `handle`, which componentize-py turns into a trap.
const PY_BUGGY: &str = r#""""Shares 100 out by the divisor it is given."""

import json

import overseer
import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.Info:
        return types.Info(name="pybuggy", version="0.1.0", description="shares", subscriptions=[])

    def handle(self, event: types.Event) -> str:
        try:
            divisor = int(json.loads(event.payload))
        except ValueError:
            raise overseer.invalid_input("give a whole number")
        share = 100 // divisor
        return json.dumps({"share": share})

    def health(self) -> types.Health:
        return types.Health(ok=True, detail="ok")
"#;

const PY_BUG: &str = "        share = 100 // divisor\n";

/// The model's fix of the Python agent, as a unified diff in a fenced block.
fn py_fix_answer() -> String {
    let mut a = overseer_selfedit::Snapshot::default();
    a.files.insert("app.py".into(), PY_BUGGY.to_string());
    let mut b = a.clone();
    b.files.insert(
        "app.py".into(),
        PY_BUGGY.replace(
            PY_BUG,
            "        if divisor == 0:\n            raise overseer.invalid_input(\"the divisor must not be zero\")\n        share = 100 // divisor\n",
        ),
    );
    format!(
        "The divisor is not checked.\n\n```diff\n{}```\n",
        overseer_selfedit::patch::diff(&a, &b)
    )
}

#[tokio::test]
async fn the_code_editor_repairs_a_trapping_python_agent_within_python_bounds() {
    let llm = FakeLlm::start(vec![py_fix_answer()]).await;
    let (daemon, _temp) = llm_daemon(&llm).await;
    daemon.push_agent("code-editor", "code-editor").await;
    let files = json!({
        "app.py": PY_BUGGY,
        "overseer.py": include_str!("../../guest-sdk/python/overseer.py"),
        "agent.toml": "name = \"pybuggy\"\n\n[deploy]\nwatch_calls = 5\nmin_calls = 5\n\n[supervision]\nmax_failures = 3\nperiod = \"30s\"\n",
    });
    let (status, edit) = daemon
        .post(
            "/v1/agents/pybuggy/edits",
            json!({ "files": files, "reason": "create" }).to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let created = daemon.finished_edit("pybuggy", &edit).await;
    assert_eq!(created["state"], "live", "{created}");

    // The analysis reads Python.
    let (status, analysis) = daemon.get("/v1/agents/pybuggy/analysis").await;
    assert_eq!(status, StatusCode::OK, "{analysis}");
    assert_eq!(analysis["files"], 2, "{analysis}");
    assert!(
        analysis["unparsed"].as_array().unwrap().is_empty(),
        "{analysis}"
    );

    // Stable, then trapping until supervision quarantines it; the editor's patch goes live
    // through the gates of any edit.
    let alert = stable_then_trapping(&daemon, "pybuggy").await;
    let edits = repaired(&daemon, "pybuggy").await;
    assert_eq!(edits[0]["version"], 2, "{edits:?}");
    resolved(&daemon, &alert).await;
    let (status, body) = daemon.invoke("pybuggy", json!(0)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
    let (status, body) = daemon.invoke("pybuggy", json!(4)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({ "share": 25 }));

    // The model was shown the Python source and the trap from the agent's log.
    let prompt = llm.prompt(0);
    for evidence in [
        "Alert #",
        "ZeroDivisionError",
        "share = 100 // divisor",
        "--- app.py",
    ] {
        assert!(prompt.contains(evidence), "{evidence:?} in:\n{prompt}");
    }

    // An agent's edit of a Python agent changes its Python files only, and nothing in them
    // that runs on the build machine.
    let prober = overseer_tests::manifest("fixture-prober");
    let (status, body) = daemon
        .push_package("prober", "fixture-prober", &prober)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let fixed = daemon
        .invoke(
            "prober",
            json!({ "call": "read", "agent": "pybuggy", "path": "app.py" }),
        )
        .await
        .1["output"]["ok"]
        .as_str()
        .unwrap()
        .to_string();
    let leak = fixed.replace(
        "import json\n",
        "import json\n\nHOST = open(\"/etc/hostname\").read()\n",
    );
    for (path, content, why) in [
        (
            "agent.toml",
            "name = \"pybuggy\"\n\n[capabilities]\ngrant = [\"source\"]\n",
            "Python files",
        ),
        ("setup.sh", "echo hi\n", "Python files"),
        ("app.py", leak.as_str(), "open() at the top level"),
    ] {
        let (_, body) = daemon
            .invoke(
                "prober",
                json!({ "call": "propose", "agent": "pybuggy", "path": path, "content": content }),
            )
            .await;
        let answer = &body["output"];
        assert_eq!(answer["error"], "denied", "{path}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(why),
            "{answer}"
        );
    }
    let module = "def helper() -> int:\n    return 1\n";
    let (_, body) = daemon
        .invoke(
            "prober",
            json!({ "call": "propose", "agent": "pybuggy", "path": "helpers.py", "content": module }),
        )
        .await;
    let id = body["output"]["ok"]
        .as_u64()
        .unwrap_or_else(|| panic!("{body}"));
    let edit = daemon.finished_edit("pybuggy", &json!({ "id": id })).await;
    assert_eq!(edit["state"], "live", "{edit}");
}
