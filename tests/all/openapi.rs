//! The OpenAPI document: served without a token, in step with the README's table of routes
//! and of error codes, and fuzzed by schemathesis against a daemon with agents, trading and
//! its loops (`.ci/run` runs that one: `cargo test --workspace --test all openapi -- --ignored`).

use std::collections::BTreeSet;
use std::process::Command;

use overseer_tests::{Daemon, TOKEN, package_file, tools_dir};
use reqwest::StatusCode;

/// The schemathesis release the fuzz run installs (PyPI).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

/// The validator of OpenAPI documents against the specification's own schema (PyPI),
/// installed beside it.
const SPEC_VALIDATOR: &str = "openapi-spec-validator==0.9.0";

const README: &str = include_str!("../../README.md");

/// `(METHOD, path)` of every row of the README's API table, its query strings cut.
fn readme_routes() -> BTreeSet<(String, String)> {
    let mut routes = BTreeSet::new();
    for line in README.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, method, path, ..] = cells.as_slice() else {
            continue;
        };
        if !matches!(*method, "GET" | "POST" | "PUT" | "DELETE") {
            continue;
        }
        let Some(path) = path.strip_prefix('`').and_then(|p| p.split('`').next()) else {
            continue;
        };
        let path = path.split('?').next().unwrap_or(path);
        routes.insert((method.to_string(), path.to_string()));
    }
    routes
}

/// The codes of the README's table of error codes.
fn readme_codes() -> BTreeSet<String> {
    let table = README
        .split("| status | codes |")
        .nth(1)
        .expect("the README has a table of error codes");
    let mut codes = BTreeSet::new();
    for line in table.lines().skip(2) {
        if !line.starts_with('|') {
            break;
        }
        let cell = line.split('|').nth(2).unwrap_or("");
        for (i, part) in cell.split('`').enumerate() {
            // Backticked words are codes; a setting's name (`body_timeout_ms`) is not.
            // Nor is a header's name (`Allow`).
            if i % 2 == 1
                && !part.ends_with("_ms")
                && part.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            {
                codes.insert(part.to_string());
            }
        }
    }
    codes
}

#[tokio::test]
async fn the_document_describes_every_route_and_error_code_of_the_readme() {
    let daemon = Daemon::start().await;
    let (status, doc) = daemon.get_anonymous("/v1/openapi.json").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );

    let mut documented = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            documented.insert((method.to_uppercase(), path.clone()));
            let id = operation["operationId"].as_str().expect("an operation id");
            assert!(ids.insert(id.to_string()), "operation id {id} twice");
            let responses = operation["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} documents no success"
            );
            let open = ["/v1/health", "/v1/openapi.json"].contains(&path.as_str());
            for refusal in ["400", "404", "500", "503"] {
                assert_eq!(
                    responses[refusal]["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {refusal}"
                );
            }
            // Only liveness and the document are open: they ask for no token.
            assert_eq!(
                operation["security"] == serde_json::json!([{}]),
                open,
                "{method} {path}"
            );
            assert_eq!(responses.contains_key("401"), !open, "{method} {path}");
        }
    }
    let mut readme = readme_routes();
    // The dashboard's page is served, not described: it is not API.
    readme.remove(&("GET".to_string(), "/".to_string()));
    assert_eq!(
        documented.difference(&readme).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented, missing from the README's table"
    );
    assert_eq!(
        readme.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in the README's table, not documented"
    );
    assert!(documented.len() >= 70, "{} operations", documented.len());

    let codes: BTreeSet<String> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("the error codes")
        .iter()
        .map(|c| c.as_str().expect("a code").to_string())
        .collect();
    assert_eq!(
        codes,
        readme_codes(),
        "the document's codes and the README's"
    );

    // Every request body and answer is typed: a schema of its own or a reference to one.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "AgentDetail",
        "Deployed",
        "ErrorBody",
        "VersionList",
        "Invoked",
    ] {
        assert!(schemas.contains_key(name), "{name}");
    }
    daemon.stop().await;
}

/// Records for the document's examples to name, so that generated requests reach real
/// answers too: `echo` built from source (its versions, source, analysis, edit 1 and a diff
/// of versions 1 and 2), prompt `echo.greeting` with versions 1 and 2 and experiment 1
/// between them, decision 1, order `paper-api-1`, and a daily report.
async fn seed(daemon: &Daemon) {
    daemon.create_from_source("echo", "echo").await;
    let source = package_file("echo", "src/lib.rs") + "\n// The second version.\n";
    let files = serde_json::json!({
        "base_version": 1,
        "files": { "src/lib.rs": source },
        "reason": "a second version",
    });
    let (status, edit) = daemon
        .post("/v1/agents/echo/edits", files.to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    daemon.finished_edit("echo", &edit).await;
    for body in [
        serde_json::json!({ "template": "Greet {{who}}.", "variables": { "who": "string" } }),
        serde_json::json!({ "template": "Greet {{who}} warmly.", "note": "warmer" }),
    ] {
        let (status, answer) = daemon
            .post("/v1/prompts/echo.greeting/versions", body.to_string())
            .await;
        assert_eq!(status, StatusCode::CREATED, "{answer}");
    }
    let experiment =
        serde_json::json!({ "prompt": "echo.greeting", "variants": [1, 2], "metric": "success" });
    let (status, answer) = daemon.post("/v1/experiments", experiment.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let decision = serde_json::json!({
        "kind": "resource_allocation", "title": "less for echo", "priority": "low",
        "expected_impact": "spend less", "effort": "low", "rationale": "it asks no model",
        "actions": [{ "type": "set_budget", "agent": "echo", "tokens_per_day": 1000, "usd_per_day": 0.1 }],
        "metric": { "name": "calls", "agent": "echo", "comparator": "at_least", "target": 0.0, "due_in_secs": 3600 },
    });
    let (status, answer) = daemon.post("/v1/decisions", decision.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let order = serde_json::json!({ "symbol": "AAPL", "side": "buy", "quantity": 1, "type": "limit", "limit_price": 1.0, "time_in_force": "gtc" });
    let (status, answer) = daemon.post("/v1/orders", order.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    let (status, answer) = daemon
        .post("/v1/overseer/loops/governance/run", String::new())
        .await;
    assert!(status.is_success(), "{status} {answer}");
}

/// The virtual environment with schemathesis and the document validator, installed once
/// into the tests' tools directory.
fn fuzz_tools() -> std::path::PathBuf {
    let venv = tools_dir().join(format!("{}-{}", SCHEMATHESIS, SPEC_VALIDATOR).replace("==", "-"));
    if venv.join("bin").join("openapi-spec-validator").exists() {
        return venv;
    }
    let ok = |command: &mut Command| {
        let out = command.output().expect("run");
        assert!(
            out.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(Command::new("python3").arg("-m").arg("venv").arg(&venv));
    ok(Command::new(venv.join("bin").join("pip")).args([
        "install",
        "--quiet",
        "--disable-pip-version-check",
        SCHEMATHESIS,
        SPEC_VALIDATOR,
    ]));
    venv
}

/// Run by `.ci/run`: schemathesis walks every operation of the document (but the endless
/// event stream) with generated and boundary inputs, and fails on any 5xx, any answer whose
/// status, content type or body the document does not describe, any request the document
/// rules out that is served all the same, and any request that breaks the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "installs schemathesis from PyPI: run by .ci/run (cargo test --workspace --test all openapi -- --ignored)"]
async fn schemathesis_finds_no_server_error_and_no_answer_off_the_document() {
    let daemon = Daemon::start().await;
    seed(&daemon).await;
    let venv = fuzz_tools();
    let url = daemon.url("/v1/openapi.json");

    // The document itself is valid OpenAPI 3.1 (unique operation ids, resolvable
    // references, well-formed schemas).
    let document = tempfile::NamedTempFile::new().expect("temp file");
    let text = daemon
        .client
        .get(&url)
        .send()
        .await
        .expect("the document")
        .text()
        .await
        .expect("its text");
    std::fs::write(document.path(), text).expect("write the document");
    let checked = Command::new(venv.join("bin").join("openapi-spec-validator"))
        .arg(document.path())
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        checked.status.success(),
        "the document is not valid OpenAPI: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let exe = venv.join("bin").join("schemathesis");
    // schemathesis keeps a cache in its working directory: a temporary one.
    let workdir = tempfile::tempdir().expect("temp dir");
    let cwd = workdir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .current_dir(cwd)
            .arg("run")
            .arg(&url)
            .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,negative_data_rejection",
            ])
            .args(["--exclude-path", "/v1/stream"])
            .args(["--max-examples", "12"])
            .args(["--seed", "7"])
            .args(["--workers", "2"])
            // A retirement waits for a build of the agent under way to finish.
            .args(["--request-timeout", "300"])
            .args(["--generation-database", "none", "--no-color"])
            .output()
    })
    .await
    .expect("join")
    .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    // The daemon is still up and answering after the run.
    let (status, _) = daemon.get("/v1/health").await;
    assert_eq!(status, StatusCode::OK);
    assert!(out.status.success(), "schemathesis found failures (above)");
    // Its summary: the operations it walked and the cases it ran.
    let lines: Vec<&str> = stdout.lines().map(str::trim).collect();
    let tested = lines.iter().find(|l| l.starts_with("Tested:"));
    let cases = lines
        .iter()
        .position(|l| *l == "Test cases:")
        .and_then(|i| lines.get(i + 1));
    println!(
        "schemathesis: operations {}, test cases {}",
        tested.unwrap_or(&"?"),
        cases.unwrap_or(&"?")
    );
    daemon.stop().await;
}
