//! `governance`: the daily meeting with a model. The host's governance loop invokes it with
//! the day's report (`{report}`); it asks the model for decisions as JSON, checks each with
//! the host (`fleet.check`: the same parser and policy a proposal meets), and when the answer
//! is not JSON or holds an invalid decision, tells the model what was wrong and asks again, up
//! to `attempts` times. It answers `{decisions: [...], attempts, source: "llm"}`, or
//! `{decisions: null, reason, errors?}` when there is no model or no valid answer, and the
//! host's rules decide instead. It never takes a decision itself: the host proposes what it
//! answers, through the policy.

use overseer_guest::llm::{self, Message};
use overseer_guest::{Agent, Error, Event, Info, fleet, prompts};
use serde_json::{Value, json};

struct Governance;

/// The decisions of an answer, each checked with the host; every problem found.
fn check(answer: &str) -> Result<Vec<Value>, Vec<String>> {
    let value = overseer_guest::answer::json(answer)
        .ok_or_else(|| vec!["no JSON object in the answer".to_string()])?;
    let Some(decisions) = value["decisions"].as_array() else {
        return Err(vec!["no \"decisions\" list".to_string()]);
    };
    let mut problems = Vec::new();
    for (n, decision) in decisions.iter().enumerate() {
        if let Err(e) = fleet::check(&decision.to_string()) {
            problems.push(format!("decision {}: {}", n + 1, e.message()));
        }
    }
    if problems.is_empty() {
        Ok(decisions.clone())
    } else {
        Err(problems)
    }
}

impl Agent for Governance {
    fn describe() -> Info {
        Info {
            name: "governance".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "Typed decisions on the day's report, from a model, checked by the host"
                .to_string(),
            subscriptions: Vec::new(),
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("the meeting's payload: {e}")))?;
        let report = &payload["report"];
        if !report.is_object() {
            return Err(Error::invalid_input(
                "the meeting needs {\"report\": {...}}",
            ));
        }
        if llm::model().is_none() {
            return Ok(
                json!({ "decisions": null, "reason": "no model: the host's rules decide" })
                    .to_string(),
            );
        }
        let summary = json!({
            "date": report["date"],
            "health": report["health"],
            "performance": report["performance"],
            "recommendations": report["recommendations"],
            "history": report["decisions"]["history"],
        });
        // The meeting's prompt (`[prompts.meeting]`), from the registry: one use per meeting.
        let served = prompts::get(
            "meeting",
            report["date"].as_str().unwrap_or("meeting"),
            &json!({ "report": summary }).to_string(),
        )?;
        let mut messages = vec![Message::system(&served.system), Message::user(&served.text)];
        let attempts: u32 = overseer_guest::config_parsed("attempts")
            .unwrap_or(3)
            .clamp(1, 5);
        let mut problems = Vec::new();
        for attempt in 1..=attempts {
            let answer = match llm::chat(messages.clone()) {
                Ok(answer) => answer.text,
                Err(e) => {
                    return Ok(json!({ "decisions": null, "reason": format!("the model failed: {}", e.message()), "attempts": attempt }).to_string());
                }
            };
            match check(&answer) {
                Ok(decisions) => {
                    // Scored by how soon a valid answer came: 1 at once, ½ the second time.
                    let _ =
                        prompts::report(served.use_id, Some(1.0 / f64::from(attempt)), Some(true));
                    return Ok(
                        json!({ "decisions": decisions, "attempts": attempt, "source": "llm" })
                            .to_string(),
                    );
                }
                Err(found) => {
                    messages.push(Message::assistant(answer));
                    messages.push(Message::user(format!(
                        "That answer cannot be taken: {}. Answer again with JSON only, of the shape given.",
                        found.join("; ")
                    )));
                    problems = found;
                }
            }
        }
        let _ = prompts::report(served.use_id, Some(0.0), Some(false));
        Ok(json!({
            "decisions": null,
            "reason": format!("no valid answer in {attempts} attempts: the host's rules decide"),
            "errors": problems,
            "attempts": attempts,
        })
        .to_string())
    }
}

overseer_guest::export!(Governance);
