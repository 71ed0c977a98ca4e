//! Agents in Rust, Python and JavaScript: `overseer new --lang L` → `overseer build` → push →
//! invoke, with state in kv, events to a subscriber and a spin loop stopped by its deadline;
//! and an edit of the agent's source rebuilt and put live by the host.

use std::time::Duration;

use clap::Parser;
use overseer::cli::{Cli, run};
use overseer_selfedit::Snapshot;
use overseer_tests::{Daemon, TOKEN, eventually};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// What differs between the languages' scaffolds, for the test.
struct Language {
    /// `--lang`.
    lang: &'static str,
    /// The agent scaffolded and pushed, and the one created from its files by the edit API.
    name: &'static str,
    edited: &'static str,
    /// The file the agent is, and every file the host needs to build it.
    app: &'static str,
    files: &'static [&'static str],
    /// The line of the scaffold's `handle` the test puts a spin loop in front of.
    handle: &'static str,
    spin: &'static str,
    /// A line of the scaffold, and what the test's edit makes of it.
    line: &'static str,
    edit: &'static str,
}

const PYTHON: Language = Language {
    lang: "python",
    name: "pygreeter",
    edited: "pyedit",
    app: "app.py",
    files: &["app.py", "overseer.py", "agent.toml"],
    handle: "        who = json.loads(event.payload)\n",
    spin: "        if event.payload == '\"spin\"':\n            while True:\n                pass\n",
    line: "        greeting = runtime.config(\"greeting\") or \"hello\"\n",
    edit: "        greeting = \"hi\"\n",
};

const JAVASCRIPT: Language = Language {
    lang: "js",
    name: "jsgreeter",
    edited: "jsedit",
    app: "app.js",
    files: &["app.js", "overseer.js", "agent.toml"],
    handle: "  const who = JSON.parse(event.payload);\n",
    spin: "  if (event.payload === '\"spin\"') {\n    while (true) {}\n  }\n",
    line: "  const greeting = runtime.config('greeting') ?? 'hello';\n",
    edit: "  const greeting = 'hi';\n",
};

const RUST: Language = Language {
    lang: "rust",
    name: "rsgreeter",
    edited: "rsedit",
    app: "src/lib.rs",
    files: &["Cargo.toml", "agent.toml", "src/lib.rs"],
    handle: "        let payload = event.payload.trim();\n",
    spin: "        if event.payload == \"\\\"spin\\\"\" {\n            loop {}\n        }\n",
    line: "        let greeting = overseer_guest::config(\"greeting\").unwrap_or_else(|| \"hello\".to_string());\n",
    edit: "        let greeting = \"hi\";\n",
};

#[tokio::test]
async fn a_rust_agent_goes_from_new_to_live_and_is_edited_by_the_host() {
    new_to_live(&RUST).await;
}

#[tokio::test]
async fn a_python_agent_goes_from_new_to_live_and_is_edited_by_the_host() {
    new_to_live(&PYTHON).await;
}

#[tokio::test]
async fn a_javascript_agent_goes_from_new_to_live_and_is_edited_by_the_host() {
    new_to_live(&JAVASCRIPT).await;
}

async fn new_to_live(language: &Language) {
    let name = language.name;
    let daemon = Daemon::start().await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join(name);
    let local = |args: &[&str]| Cli::try_parse_from(["overseer"].iter().chain(args)).unwrap();
    let dir_arg = source.to_str().unwrap();
    run(local(&[
        "new",
        name,
        "--lang",
        language.lang,
        "--dir",
        dir_arg,
    ]))
    .await
    .unwrap();

    // A spin loop written in the agent's language, for the deadline to stop.
    let app = std::fs::read_to_string(source.join(language.app)).unwrap();
    assert!(app.contains(language.handle), "the scaffold is as expected");
    assert!(app.contains(language.line), "the scaffold is as expected");
    let spinning = app.replace(
        language.handle,
        &format!("{}{}", language.spin, language.handle),
    );
    std::fs::write(source.join(language.app), spinning).unwrap();
    // Fuel to spare, so the wall clock is what stops the loop.
    let manifest = std::fs::read_to_string(source.join("agent.toml"))
        .unwrap()
        .replace(
            "timeout_ms = 2_000",
            "timeout_ms = 500\nfuel = 50_000_000_000",
        );
    std::fs::write(source.join("agent.toml"), &manifest).unwrap();

    // Rust builds in the tests' warm target directory, so only the agent itself compiles.
    let tools = overseer_tests::tools_dir();
    let target = match language.lang {
        "rust" => overseer_tests::agents_target_dir(),
        _ => source.join("target"),
    };
    let (tools_arg, target_arg) = (tools.to_str().unwrap(), target.to_str().unwrap());
    run(local(&[
        "build",
        dir_arg,
        "--tools-dir",
        tools_arg,
        "--target-dir",
        target_arg,
    ]))
    .await
    .unwrap();
    let wasm = match language.lang {
        "rust" => target.join(format!("wasm32-wasip2/release/{name}.wasm")),
        _ => target.join(format!("{name}.wasm")),
    };
    let manifest_path = source.join("agent.toml");
    run(local(&[
        "push",
        name,
        wasm.to_str().unwrap(),
        "--manifest",
        manifest_path.to_str().unwrap(),
        "--url",
        &daemon.url,
        "--token",
        TOKEN,
    ]))
    .await
    .unwrap();

    // A subscriber to its events.
    let recorder = overseer_tests::manifest("fixture-recorder")
        .replace("counter.incremented", &format!("{name}.greeted"));
    let (status, body) = daemon
        .push_package("recorder", "fixture-recorder", &recorder)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // State in kv lasts across calls, each in a fresh instance.
    for count in 1..=2 {
        let (status, body) = daemon.invoke(name, json!("world")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["output"],
            json!({ "greeting": "hello, world", "count": count })
        );
    }
    let (status, body) = daemon.invoke(name, json!(7)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "invalid_input");
    eventually(Duration::from_secs(10), "two events recorded", || async {
        let (_, body) = daemon.invoke("recorder", json!(null)).await;
        let events = body["output"].as_array().cloned().unwrap_or_default();
        (events.len() >= 2).then_some(())
    })
    .await;
    let (status, body) = daemon.invoke(name, json!("spin")).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
    let (status, _) = daemon.invoke(name, json!("still here")).await;
    assert_eq!(status, StatusCode::OK);

    // The host builds the same source: created from its files, then edited by a diff.
    let mut files = serde_json::Map::new();
    for path in language.files {
        let text = std::fs::read_to_string(source.join(path)).unwrap();
        let text = text.replace(
            &format!("name = \"{name}\""),
            &format!("name = \"{}\"", language.edited),
        );
        files.insert(path.to_string(), json!(text));
    }
    let created = finished(&daemon, language.edited, json!({ "files": files })).await;
    assert_eq!(created["state"], "live", "{created}");
    let mut before = Snapshot::default();
    before.files.insert(
        language.app.to_string(),
        files[language.app].as_str().unwrap().to_string(),
    );
    let mut after = before.clone();
    after.files.insert(
        language.app.to_string(),
        before.files[language.app].replace(language.line, language.edit),
    );
    let diff = overseer_selfedit::patch::diff(&before, &after);
    let edit = finished(
        &daemon,
        language.edited,
        json!({ "base_version": 1, "diff": diff, "reason": "shorter" }),
    )
    .await;
    assert_eq!(edit["state"], "live", "{edit}");
    let (status, body) = daemon.invoke(language.edited, json!("there")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    assert_eq!(body["output"]["greeting"], "hi, there");
}

async fn finished(daemon: &Daemon, agent: &str, body: Value) -> Value {
    let (status, edit) = daemon
        .post(&format!("/v1/agents/{agent}/edits"), body.to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    daemon.finished_edit(agent, &edit).await
}

/// Create `name` from `files` through the edits API and wait for it to go live; answers the
/// edit.
async fn created(daemon: &Daemon, name: &str, files: Value) -> Value {
    let edit = finished(daemon, name, json!({ "files": files, "reason": "create" })).await;
    assert_eq!(edit["state"], "live", "{edit}");
    edit
}

const RANDOM_PY: &str = r#"import json
import random

import overseer
import wit_world
from wit_world.imports import types

FROZEN = random.random()


class WitWorld(wit_world.WitWorld):
    def describe(self) -> types.Info:
        return types.Info(name="pyrandom", version="0.1.0", description="random", subscriptions=[])

    def handle(self, event: types.Event) -> str:
        return json.dumps({
            "frozen": FROZEN,
            "module": random.random(),
            "fresh": overseer.random(),
            "shuffled": overseer.rng().sample(range(1000), 5),
            "id": overseer.new_id(),
            "now_ms": overseer.now_ms(),
        })

    def health(self) -> types.Health:
        return types.Health(ok=True, detail="ok")
"#;

const RANDOM_JS: &str = r#"import * as overseer from './overseer.js';

const STARTED = Date.now();

export function describe() {
  return { name: 'jsrandom', version: '0.1.0', description: 'random', subscriptions: [] };
}

export function handle(event) {
  return JSON.stringify({
    frozen: STARTED,
    module: Math.random(),
    fresh: overseer.random(),
    shuffled: overseer.shuffle([...Array(1000).keys()]).slice(0, 5),
    id: overseer.newId(),
    now_ms: overseer.nowMs(),
  });
}

export function health() {
  return { ok: true, detail: 'ok' };
}
"#;

/// Three calls of `name`, each in a fresh instance.
async fn three_answers(daemon: &Daemon, name: &str) -> Vec<Value> {
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (status, body) = daemon.invoke(name, json!(null)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        answers.push(body["output"].clone());
    }
    answers
}

fn distinct(answers: &[Value], key: &str) -> usize {
    let mut seen: Vec<String> = answers.iter().map(|a| a[key].to_string()).collect();
    seen.sort();
    seen.dedup();
    seen.len()
}

#[tokio::test]
async fn python_and_javascript_helpers_draw_fresh_randomness_on_every_call() {
    let daemon = Daemon::start().await;
    for (name, app, source, helpers, helper_source, warning) in [
        (
            "pyrandom",
            "app.py",
            RANDOM_PY,
            "overseer.py",
            include_str!("../../guest-sdk/python/overseer.py"),
            "warning: app.py:8:10: random.random() at the top level runs once",
        ),
        (
            "jsrandom",
            "app.js",
            RANDOM_JS,
            "overseer.js",
            include_str!("../../guest-sdk/js/overseer.js"),
            "warning: app.js:3:17: Date.now() at the top level runs once",
        ),
    ] {
        let mut files = serde_json::Map::new();
        files.insert(app.to_string(), json!(source));
        files.insert(helpers.to_string(), json!(helper_source));
        files.insert(
            "agent.toml".to_string(),
            json!(format!("name = \"{name}\"\n")),
        );
        let edit = created(&daemon, name, Value::Object(files)).await;
        let log = edit["build_log"].as_str().unwrap_or_default();
        assert!(
            log.starts_with(warning),
            "the build warns of the frozen value first: {log}"
        );
        let answers = three_answers(&daemon, name).await;
        for key in ["fresh", "shuffled", "id"] {
            assert_eq!(distinct(&answers, key), 3, "{name} {key}: {answers:?}");
        }
        // What the warning says: made at build time, the same on every call. Drawn in the
        // call, the language's own generator (`random.random()`, `Math.random()`) differs too.
        assert_eq!(distinct(&answers, "frozen"), 1, "{name}: {answers:?}");
        assert_eq!(distinct(&answers, "module"), 3, "{name}: {answers:?}");
    }
}
