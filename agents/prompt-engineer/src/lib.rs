//! `prompt-engineer`: improves the prompts of the fleet through experiments, never by decree.
//!
//! Each run reads the registry's catalog and the open alerts. A prompt is poor when its
//! production version has at least `min_outcomes` outcomes and a success rate below
//! `min_success`, or an open alert names it; one under an experiment already is left to it.
//! With a model, the engineer shows it the prompt's versions with their scores and the failing
//! uses (the history of (prompt, score) pairs OPRO optimises from) through its own
//! `[prompts.improve]`, writes the answer as a candidate version, and starts an A/B experiment
//! of production against it. The host's registry decides the winner with its stopping rule and
//! promotes it through governance. Without a model it reports the poor prompts and says it
//! wrote nothing.

use overseer_guest::{Agent, Error, Event, Info, fleet, llm, log, prompts};
use serde_json::{Value, json};

struct PromptEngineer;

fn setting(key: &str, default: f64) -> f64 {
    overseer_guest::config_parsed(key).unwrap_or(default)
}

/// Why a prompt needs work, or `None` when it does not.
fn poor(prompt: &Value, alerts: &[Value]) -> Option<String> {
    let name = prompt["name"].as_str()?;
    let running = prompt["experiments"]
        .as_array()
        .is_some_and(|e| e.iter().any(|x| x["state"] == "running"));
    if running {
        return None;
    }
    if let Some(alert) = alerts
        .iter()
        .find(|a| a["message"].as_str().is_some_and(|m| m.contains(name)))
    {
        return Some(format!(
            "alert #{}: {}",
            alert["id"],
            alert["message"].as_str().unwrap_or("")
        ));
    }
    let production = prompt["labels"]["production"].as_u64()?;
    let version = prompt["versions"]
        .as_array()?
        .iter()
        .find(|v| v["version"].as_u64() == Some(production))?;
    let outcomes = version["outcomes"].as_f64().unwrap_or(0.0);
    let rate = version["success_rate"].as_f64()?;
    (outcomes >= setting("min_outcomes", 20.0) && rate < setting("min_success", 0.8))
        .then(|| format!("version {production}: {rate:.2} success over {outcomes} outcomes"))
}

/// A candidate from the model: `{system, template, note}`, or why there is none.
fn candidate(prompt: &Value, alerts: &[Value]) -> Result<Value, String> {
    let name = prompt["name"].as_str().unwrap_or_default();
    let versions: Vec<Value> = prompt["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            json!({
                "version": v["version"], "system": v["system"], "template": v["template"],
                "outcomes": v["outcomes"], "success_rate": v["success_rate"], "mean_score": v["mean_score"],
            })
        })
        .collect();
    let naming: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["message"].as_str().is_some_and(|m| m.contains(name)))
        .collect();
    let variables = json!({
        "name": name,
        "variables": prompt["variables"],
        "versions": versions,
        "failures": prompt["failures"],
        "alerts": naming,
    });
    let served = prompts::get("improve", name, &variables.to_string())
        .map_err(|e| e.message().to_string())?;
    let answer = llm::complete(&prompts::request(&served, 1200, 0.7))
        .map_err(|e| e.message().to_string())?;
    let written = overseer_guest::answer::json(&answer.text)
        .filter(|v| v["template"].as_str().is_some_and(|t| !t.trim().is_empty()));
    let _ = prompts::report(served.use_id, None, Some(written.is_some()));
    written.ok_or_else(|| "the model's answer held no {system, template, note}".to_string())
}

impl Agent for PromptEngineer {
    fn describe() -> Info {
        Info {
            name: "prompt-engineer".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Candidate prompts for poor ones, tested against production".to_string(),
            subscriptions: vec![],
        }
    }

    fn handle(_event: Event) -> Result<String, Error> {
        let catalog: Value = serde_json::from_str(&prompts::catalog()?)
            .map_err(|e| Error::failed(format!("the catalog: {e}")))?;
        let alerts: Vec<Value> = fleet::alerts(true, 200)?
            .into_iter()
            .map(|a| json!({ "id": a.id, "agent": a.agent, "kind": a.kind, "message": a.message }))
            .collect();
        let mut found = Vec::new();
        let mut written = Vec::new();
        let model = llm::model();
        for prompt in catalog["prompts"].as_array().into_iter().flatten() {
            let Some(why) = poor(prompt, &alerts) else {
                continue;
            };
            let name = prompt["name"].as_str().unwrap_or_default().to_string();
            found.push(json!({ "prompt": name, "why": why }));
            if model.is_none() {
                continue;
            }
            let outcome = candidate(prompt, &alerts).and_then(|c| {
                let version = prompts::write(
                    &name,
                    c["system"].as_str().unwrap_or_default(),
                    c["template"].as_str().unwrap_or_default(),
                    c["note"]
                        .as_str()
                        .unwrap_or("written by the prompt engineer"),
                )
                .map_err(|e| e.message().to_string())?;
                let production = prompt["labels"]["production"].as_u64().unwrap_or(1);
                let spec = json!({
                    "prompt": name,
                    "variants": [production, version],
                    "metric": "success",
                    "min_samples": setting("min_samples", 50.0) as u64,
                    "max_looks": setting("max_looks", 5.0) as u32,
                    "alpha": setting("alpha", 0.05),
                    "seed": overseer_guest::now_ms(),
                });
                let experiment = prompts::start_experiment(&spec.to_string())
                    .map_err(|e| e.message().to_string())?;
                Ok(json!({ "prompt": name, "version": version, "experiment": experiment }))
            });
            match outcome {
                Ok(done) => {
                    log::info(&format!("candidate for {name}: {done}"));
                    written.push(done);
                }
                Err(e) => written.push(json!({ "prompt": name, "error": e })),
            }
        }
        let note = match model {
            Some(_) => Value::Null,
            None => json!("no model: no candidate written; the poor prompts are listed"),
        };
        Ok(json!({ "poor": found, "candidates": written, "note": note }).to_string())
    }
}

overseer_guest::export!(PromptEngineer);
