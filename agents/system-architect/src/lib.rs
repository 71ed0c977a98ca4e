//! `system-architect`: writes a new agent's logic for the host's architect.
//!
//! The host asks it with `architect.design`: `{spec, files, attempt, error}`. With a model it
//! answers `{"files": {"src/lib.rs": …}}`, the source the model wrote from its `[prompts.design]`
//! (the spec, the template's `src/lib.rs`, and on a retry the compiler's errors). The host
//! takes only files under `src/`, builds them through the edit pipeline, and asks again with
//! the errors when they do not build. Without a model, or without a usable answer, it answers
//! no files and says why: the template is built as it is.

use overseer_guest::{Agent, Error, Event, Info, llm, prompts};
use serde_json::{Value, json};

struct SystemArchitect;

impl Agent for SystemArchitect {
    fn describe() -> Info {
        Info {
            name: "system-architect".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: "A new agent's logic from its spec".to_string(),
            subscriptions: vec![],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        let request: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("the request is not JSON: {e}")))?;
        let Some(template) = request["files"]["src/lib.rs"].as_str() else {
            return Err(Error::invalid_input(
                "the request has no files.\"src/lib.rs\"",
            ));
        };
        if llm::model().is_none() {
            return Ok(
                json!({ "files": {}, "note": "no model: the template as it is" }).to_string(),
            );
        }
        let error = match request["error"].as_str() {
            Some(e) if !e.is_empty() => format!(
                "Attempt {} of this spec did not build or pass its checks:\n{e}\nFix that.",
                request["attempt"].as_u64().unwrap_or(1).saturating_sub(1)
            ),
            _ => String::new(),
        };
        let name = request["spec"]["name"].as_str().unwrap_or("agent");
        let variables = json!({ "spec": request["spec"], "template": template, "error": error });
        let served = prompts::get("design", name, &variables.to_string())?;
        let answer = llm::complete(&prompts::request(&served, 4000, 0.2))?;
        let code = overseer_guest::answer::fenced(&answer.text)
            .into_iter()
            .find(|f| f.lang == "rust" && f.text.contains("export!"))
            .map(|f| f.text);
        // A use succeeds when it gives source; whether that builds is the next attempt's error.
        let _ = prompts::report(served.use_id, None, Some(code.is_some()));
        Ok(match code {
            Some(code) => json!({ "files": { "src/lib.rs": code } }),
            None => json!({ "files": {}, "note": "the model's answer held no ```rust block with export!" }),
        }
        .to_string())
    }
}

overseer_guest::export!(SystemArchitect);
