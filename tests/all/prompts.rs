//! The prompt registry and its experiments end to end: an agent served its prompt per call,
//! scored by what its fake model answered, B promoted through governance only once the
//! stopping rule fires, A/A never, and every change on the trail and undoable.

use clap::Parser;
use overseer::cli::{Cli, run};
use overseer_tests::{Daemon, FakeLlm};
use reqwest::StatusCode;
use serde_json::{Value, json};

const PROMPT: &str = "prompted.ask";

/// Variant B's text: the outcome model favours prompts that carry it.
const B_MARKER: &str = "Think step by step.";

/// A seeded outcome model: the answer is `yes` with probability 0.8 for variant B's prompt
/// and 0.5 otherwise, drawn from a hash of the seed and the request (so one seed gives one
/// sequence of outcomes whatever the order of the calls).
fn outcome_model(seed: u64) -> impl Fn(&Value) -> String + Send + Sync + 'static {
    move |request| {
        let text = request["messages"].to_string();
        let p = if text.contains(B_MARKER) { 0.8 } else { 0.5 };
        // FNV-1a, then splitmix64's finaliser to spread the bits.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        let draw = (h >> 11) as f64 / (1u64 << 53) as f64;
        if draw < p { "yes" } else { "no" }.to_string()
    }
}

/// A daemon whose model answers by `outcome_model(seed)`, serving the `prompted` fixture, its
/// prompt seeded (version 1) and a version 2 carrying B's marker.
async fn setup(seed: u64) -> (Daemon, FakeLlm, tempfile::TempDir) {
    let llm = FakeLlm::answering(outcome_model(seed)).await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(llm.config(dir.path())).await;
    daemon.push_agent("prompted", "fixture-prompted").await;
    let (status, body) = daemon.invoke("prompted", json!({ "unit": "seed" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["version"], 1, "seeded from the manifest");
    let (status, written) = daemon
        .post(
            &format!("/v1/prompts/{PROMPT}/versions"),
            json!({ "system": "Answer yes or no.", "template": format!("{B_MARKER} Is {{{{unit}}}} fine?"), "note": "B" })
                .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{written}");
    assert_eq!(written["version"], 2);
    (daemon, llm, dir)
}

/// What one experiment did: the call after which it stopped (if it did) and its record and
/// findings then.
struct Run {
    stopped_after: Option<usize>,
    experiment: Value,
}

/// Start an experiment of `variants` and call the agent once per unit, up to `calls` times,
/// reading the experiment's state after each call.
async fn experiment(daemon: &Daemon, variants: [u32; 2], seed: u64, calls: usize) -> Run {
    let (status, started) = daemon
        .post(
            "/v1/experiments",
            json!({
                "prompt": PROMPT,
                "variants": variants,
                "metric": "success",
                "min_samples": 40,
                "max_looks": 5,
                "alpha": 0.05,
                "seed": seed,
            })
            .to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{started}");
    let id = started["id"].as_i64().unwrap();
    for call in 1..=calls {
        let (status, body) = daemon
            .invoke("prompted", json!({ "unit": format!("unit-{call}") }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, now) = daemon.get(&format!("/v1/experiments/{id}")).await;
        if now["experiment"]["state"] != "running" {
            return Run {
                stopped_after: Some(call),
                experiment: now,
            };
        }
    }
    let (_, now) = daemon.get(&format!("/v1/experiments/{id}")).await;
    Run {
        stopped_after: None,
        experiment: now,
    }
}

/// The whole audit trail, oldest first, a page at a time.
async fn trail(daemon: &Daemon) -> Vec<Value> {
    let mut entries: Vec<Value> = Vec::new();
    loop {
        let after = entries.last().map_or(0, |e| e["seq"].as_i64().unwrap());
        let (_, page) = daemon
            .get(&format!("/v1/audit?after={after}&limit=100"))
            .await;
        let page = page["entries"].as_array().cloned().unwrap_or_default();
        if page.is_empty() {
            return entries;
        }
        entries.extend(page);
    }
}

async fn production(daemon: &Daemon) -> u64 {
    let (_, prompt) = daemon.get(&format!("/v1/prompts/{PROMPT}")).await;
    prompt["labels"]["production"].as_u64().unwrap()
}

#[tokio::test]
async fn a_better_variant_is_promoted_when_the_stopping_rule_fires_and_an_a_a_test_promotes_nothing()
 {
    let seed = 11;
    let (daemon, _llm, _dir) = setup(seed).await;
    let ab = experiment(&daemon, [1, 2], seed, 600).await;
    let stopped = ab.stopped_after.expect("the A/B experiment stopped");
    let findings = &ab.experiment["findings"];
    assert_eq!(
        ab.experiment["experiment"]["state"], "promoted",
        "{findings}"
    );
    assert_eq!(findings["verdict"], "winner");
    assert_eq!(findings["winner"], 1);
    let arms = findings["arms"].as_array().unwrap();
    // Not before a look: every arm had its minimum sample, and B's p-value cleared the
    // level of one look.
    assert!(
        arms.iter().all(|a| a["n"].as_u64().unwrap() >= 40),
        "{findings}"
    );
    let level = findings["level"].as_f64().unwrap();
    assert!((level - 0.01).abs() < 1e-12, "alpha spent over five looks");
    assert!(arms[1]["p_value"].as_f64().unwrap() < level, "{findings}");
    let (b_low, a_high) = (
        arms[1]["interval"][0].as_f64().unwrap(),
        arms[0]["interval"][1].as_f64().unwrap(),
    );
    println!(
        "A/B: promoted after {stopped} calls at look {}: A {}/{} ({:.2}), B {}/{} ({:.2}), p = {:.2e} < {level}; Wilson B low {b_low:.2} vs A high {a_high:.2}",
        findings["looks"],
        arms[0]["successes"],
        arms[0]["n"],
        arms[0]["rate"].as_f64().unwrap(),
        arms[1]["successes"],
        arms[1]["n"],
        arms[1]["rate"].as_f64().unwrap(),
        arms[1]["p_value"].as_f64().unwrap(),
    );

    // Promoted through governance: a decision applied at once, and on the trail.
    assert_eq!(production(&daemon).await, 2);
    let (_, decisions) = daemon.get("/v1/decisions").await;
    let promotion = decisions["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["body"]["actions"][0]["type"] == "promote_prompt")
        .cloned()
        .expect("a promote_prompt decision");
    assert_eq!(promotion["state"], "applied", "{promotion}");
    assert_eq!(promotion["policy"], "auto");
    let actions: Vec<(String, String)> = trail(&daemon)
        .await
        .iter()
        .filter(|e| e["subject"] == PROMPT)
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_string(),
                e["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for expected in [
        ("manifest", "prompt.version"),
        ("person", "prompt.version"),
        ("person", "experiment.start"),
        ("host", "experiment.promoted"),
        ("governance", "prompt.label"),
    ] {
        assert!(
            actions.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} in {actions:?}"
        );
    }

    // The same seed, the same experiment: deterministic.
    let (again, _llm2, _dir2) = setup(seed).await;
    let repeat = experiment(&again, [1, 2], seed, 600).await;
    assert_eq!(repeat.stopped_after, ab.stopped_after);
    assert_eq!(repeat.experiment["findings"], ab.experiment["findings"]);
    again.stop().await;

    // A/A over the same number of calls: nothing is promoted.
    let aa = experiment(&daemon, [2, 2], seed, stopped).await;
    assert_ne!(aa.experiment["experiment"]["state"], "promoted");
    assert_ne!(aa.experiment["findings"]["verdict"], "winner");
    println!(
        "A/A over {stopped} calls: {} after {} looks",
        aa.experiment["experiment"]["state"], aa.experiment["findings"]["looks"]
    );
    assert_eq!(production(&daemon).await, 2);

    // A promotion can be undone.
    let (status, back) = daemon
        .post(&format!("/v1/prompts/{PROMPT}/rollback"), String::new())
        .await;
    assert_eq!(status, StatusCode::OK, "{back}");
    assert_eq!(production(&daemon).await, 1);
    // Undone once: a second rollback finds nothing earlier, and never brings B back.
    let (status, again) = daemon
        .post(&format!("/v1/prompts/{PROMPT}/rollback"), String::new())
        .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    assert_eq!(production(&daemon).await, 1);

    // A push that changes the manifest's prompt makes it a version, and production.
    let changed = overseer_tests::manifest("fixture-prompted")
        .replace("Is {{unit}} fine?", "Is {{unit}} fine, in one word?")
        // Its calls ask the model, which a canary's shadow run never does.
        + "\n[deploy]\ncanary = 0\n";
    let (status, body) = daemon
        .push(
            "prompted",
            overseer::bench::tagged(&overseer_tests::component("fixture-prompted"), "2"),
            Some(&changed),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, served) = daemon
        .invoke("prompted", json!({ "unit": "after-push" }))
        .await;
    let (_, shown) = daemon.get(&format!("/v1/prompts/{PROMPT}")).await;
    let latest = shown["versions"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(latest["author"], "manifest", "{shown}");
    assert_eq!(served["output"]["version"], latest["version"], "{served}");
    assert_eq!(
        production(&daemon).await,
        latest["version"].as_u64().unwrap()
    );
    assert!(
        trail(&daemon)
            .await
            .iter()
            .any(|e| e["action"] == "prompt.rollback"
                && e["detail"].as_str().is_some_and(|d| d.contains("\"to\":1"))),
        "the rollback is on the trail"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn bad_prompts_and_experiments_get_clear_errors() {
    let (daemon, _llm, _dir) = setup(3).await;
    let cases = [
        (
            format!("/v1/prompts/{PROMPT}/versions"),
            json!({ "template": "Is {{ticker}} fine?" }),
            StatusCode::BAD_REQUEST,
            "invalid_template",
        ),
        (
            format!("/v1/prompts/{PROMPT}/versions"),
            json!({ "template": "Is {{unit fine?" }),
            StatusCode::BAD_REQUEST,
            "invalid_template",
        ),
        (
            format!("/v1/prompts/{PROMPT}/versions"),
            json!({ "template": "x", "variables": { "other": "string" } }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/prompts/no-dot/versions".to_string(),
            json!({ "template": "x" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            format!("/v1/prompts/{PROMPT}/versions"),
            json!({ "template": "x", "temperature": 1 }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/experiments".to_string(),
            json!({ "prompt": "missing.prompt", "variants": [1, 2], "metric": "success" }),
            StatusCode::NOT_FOUND,
            "prompt_not_found",
        ),
        (
            "/v1/experiments".to_string(),
            json!({ "prompt": PROMPT, "variants": [1, 9], "metric": "success" }),
            StatusCode::NOT_FOUND,
            "version_not_found",
        ),
        (
            "/v1/experiments".to_string(),
            json!({ "prompt": PROMPT, "variants": [1], "metric": "success" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/experiments".to_string(),
            json!({ "prompt": PROMPT, "variants": [1, 2], "metric": "success", "alpha": 2.0 }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/v1/experiments".to_string(),
            json!({ "prompt": PROMPT, "variants": [1, 2], "metric": "vibes" }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            format!("/v1/prompts/{PROMPT}/labels"),
            json!({ "label": "staging", "version": 1 }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = daemon.post(&path, body.to_string()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {body}: {answer}"
        );
    }
    // Another agent's prompt is not for an agent without the fleet grant.
    daemon.push_agent("intruder", "fixture-prompted").await;
    let (_, refused) = daemon
        .invoke("intruder", json!({ "unit": "x", "prompt": PROMPT }))
        .await;
    assert_eq!(refused["error"]["code"], "denied", "{refused}");
    // One experiment per prompt at a time.
    let spec = json!({ "prompt": PROMPT, "variants": [1, 2], "metric": "success" }).to_string();
    assert_eq!(
        daemon.post("/v1/experiments", spec.clone()).await.0,
        StatusCode::CREATED
    );
    let (status, body) = daemon.post("/v1/experiments", spec).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    // A prompt without an earlier production version has nothing to roll back to.
    let (status, body) = daemon
        .post(&format!("/v1/prompts/{PROMPT}/rollback"), String::new())
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    // The same through the CLI.
    let client = [
        "--url",
        daemon.url.as_str(),
        "--token",
        overseer_tests::TOKEN,
    ];
    let cli = |args: &[&str]| {
        Cli::try_parse_from(["overseer"].iter().chain(args).chain(client.iter())).unwrap()
    };
    run(cli(&["prompts"])).await.unwrap();
    run(cli(&["prompts", "show", PROMPT])).await.unwrap();
    run(cli(&["prompts", "diff", PROMPT, "1", "2"]))
        .await
        .unwrap();
    run(cli(&[
        "prompts",
        "write",
        PROMPT,
        "--template",
        "Is {{unit}} well?",
        "--note",
        "C",
    ]))
    .await
    .unwrap();
    run(cli(&["prompts", "label", PROMPT, "candidate", "3"]))
        .await
        .unwrap();
    let error = run(cli(&["prompts", "write", PROMPT, "--template", "{{nope}}"]))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("invalid_template"), "{error}");
    run(cli(&["experiments"])).await.unwrap();
    run(cli(&["experiments", "show", "1"])).await.unwrap();
    run(cli(&["experiments", "stop", "1"])).await.unwrap();
    let error = run(cli(&["experiments", "stop", "1"])).await.unwrap_err();
    assert!(error.to_string().contains("conflict"), "{error}");
    run(cli(&[
        "experiments",
        "start",
        PROMPT,
        "--variants",
        "1,3",
        "--seed",
        "5",
    ]))
    .await
    .unwrap();

    let (status, diff) = daemon.get(&format!("/v1/prompts/{PROMPT}/diff/1/2")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        diff["diff"]
            .as_str()
            .unwrap()
            .contains(&format!("+{B_MARKER}")),
        "{diff}"
    );
    daemon.stop().await;
}

/// The prompt engineer finds a prompt whose uses fail, writes a candidate from the history
/// shown to its model, and starts an experiment of production against it.
#[tokio::test]
async fn the_prompt_engineer_writes_a_candidate_for_a_failing_prompt_and_tests_it() {
    let llm = FakeLlm::answering(|request| {
        let text = request["messages"].to_string();
        if text.contains("You improve prompts") {
            "Try this:\n```json\n{\"system\": \"Answer yes or no.\", \"template\": \"Think step by step. Is {{unit}} fine?\", \"note\": \"asks for reasoning\"}\n```".to_string()
        } else {
            "no".to_string()
        }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with(llm.config(dir.path())).await;
    daemon.push_agent("prompted", "fixture-prompted").await;
    for unit in 0..25 {
        daemon
            .call_ok("prompted", json!({ "unit": format!("u{unit}") }))
            .await;
    }
    daemon
        .push_agent("prompt-engineer", "prompt-engineer")
        .await;
    let (status, body) = daemon.invoke("prompt-engineer", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let report = &body["output"];
    assert_eq!(report["poor"][0]["prompt"], PROMPT, "{report}");
    assert!(
        report["poor"][0]["why"]
            .as_str()
            .unwrap()
            .contains("0.00 success over 25"),
        "{report}"
    );
    let candidate = &report["candidates"][0];
    assert_eq!(candidate["version"], 2, "{report}");
    let improve = llm
        .requests()
        .iter()
        .map(|r| r["messages"].to_string())
        .find(|m| m.contains("You improve prompts"))
        .unwrap();
    assert!(
        improve.contains("Is {{unit}} fine?"),
        "the history is shown: {improve}"
    );
    let (_, shown) = daemon.get(&format!("/v1/prompts/{PROMPT}")).await;
    assert_eq!(shown["versions"][1]["author"], "prompt-engineer");
    assert_eq!(
        shown["labels"]["production"], 1,
        "a candidate, not a promotion"
    );
    let (_, experiments) = daemon
        .get(&format!("/v1/experiments?prompt={PROMPT}&state=running"))
        .await;
    let experiment = &experiments["experiments"][0];
    assert_eq!(experiment["id"], candidate["experiment"]);
    assert_eq!(experiment["body"]["variants"], json!([1, 2]));
    // A prompt under an experiment is left to it.
    let (_, again) = daemon.invoke("prompt-engineer", json!({})).await;
    assert_eq!(again["output"]["poor"], json!([]), "{again}");
    daemon.stop().await;
}
