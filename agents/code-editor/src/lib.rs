//! The code editor: repairs agents by editing their source.
//!
//! An alert about an agent (`alert.*`) starts a repair: the editor reads the agent's source, the
//! host's findings and the agent's recent log, asks the LLM for a unified diff, and proposes it.
//! The host builds and checks the edit like any other and announces the outcome (`edit.*`): a
//! patch that does not apply, does not compile or fails a gate is fed back to the LLM with the
//! reason, up to `max_attempts` times. The hourly run picks up repairs whose outcome was missed
//! and, with `review = "findings"`, asks for a fix of one agent's panic sites.
//!
//! Whether an edit is good is the host's call, made out of the editor's reach. Without an LLM
//! the editor stays idle and says so in `health`. Repairs are bounded: `max_attempts` patches
//! each, `max_repairs` repairs of one agent a day, and a time budget per run.

use overseer_guest::llm::{self, Message};
use overseer_guest::source::{self, Change, Proposal};
use std::sync::atomic::{AtomicU64, Ordering};

use overseer_guest::{Agent, Error, Event, Health, Info, kv, log, prompts};
use serde_json::{Value, json};

/// Patches asked of the LLM per repair when the manifest does not say.
const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Repairs of one agent started within a day when the manifest does not say: a fix that goes
/// live and is rolled back raises a new alert, and this keeps that from going round forever.
const DEFAULT_MAX_REPAIRS: usize = 3;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// No new question to the LLM after this long in one run: with the host's LLM deadline (120 s
/// by default) the run stays inside its own 300 s. The hourly run picks up what is left.
const TIME_BUDGET_MS: u64 = 150_000;

/// When this run started (every run is a fresh instance).
static STARTED_MS: AtomicU64 = AtomicU64::new(0);

/// Log lines of the agent read for the evidence: enough to hold the failures of a burst.
const LOG_LINES: u32 = 40;

/// Files larger than this are listed but not put in the prompt (lock files, data).
const MAX_FILE_BYTES: usize = 64 << 10;

/// A repair waiting on the LLM or on an edit's outcome is given up after this long.
const STALE_TASK_MS: u64 = 6 * 60 * 60 * 1000;

/// Finding kinds worth a review on their own: each is a place the agent can trap or lose an
/// error, in Rust, Python or JavaScript. (Indexing is left out: most of it is on maps and JSON
/// values that do not trap.)
const REVIEWED_KINDS: &[&str] = &[
    "unwrap",
    "expect",
    "panic",
    "ignored-result",
    "unhandled-exception",
    "swallowed-exception",
];

struct CodeEditor;

impl Agent for CodeEditor {
    fn describe() -> Info {
        Info {
            name: "code-editor".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description:
                "Repairs agents: asks the LLM for a patch and proposes it through the host's gates"
                    .to_string(),
            subscriptions: vec!["alert.*".to_string(), "edit.*".to_string()],
        }
    }

    fn handle(event: Event) -> Result<String, Error> {
        STARTED_MS.store(overseer_guest::now_ms(), Ordering::Relaxed);
        let payload: Value = serde_json::from_str(&event.payload)
            .map_err(|e| Error::invalid_input(format!("the payload is not JSON: {e}")))?;
        // Alerts and edit outcomes are the host's to announce; the host refuses them from
        // agents, and the editor does not take them from anyone else either.
        let from_host = event.source == "overseer";
        let answer = match event.topic.as_str() {
            topic if (topic.starts_with("alert.") || topic.starts_with("edit.")) && !from_host => {
                json!({ "ignored": format!("{topic} from {}", event.source) })
            }
            "schedule" => on_schedule()?,
            "invoke" => on_request(&payload)?,
            topic if topic.starts_with("alert.") => on_alert(&payload)?,
            topic if topic.starts_with("edit.") => on_edit(&payload)?,
            other => json!({ "ignored": other }),
        };
        Ok(answer.to_string())
    }

    fn health() -> Health {
        match llm::model() {
            Some(model) => Health {
                ok: true,
                detail: format!("ready: repairs with {model}"),
            },
            None => Health {
                ok: true,
                detail: "idle: no LLM endpoint is configured, so no repairs are attempted"
                    .to_string(),
            },
        }
    }
}

overseer_guest::export!(CodeEditor);

/// A repair under way, kept in kv under `task:<agent>`.
struct Task {
    agent: String,
    /// What is wrong: the alert or the findings, in words.
    goal: String,
    /// The edit waiting for its outcome.
    edit: Option<u64>,
    /// Patches asked for so far.
    attempts: u32,
    /// The last patch proposed.
    diff: Option<String>,
    /// Earlier patches and why each failed, oldest first.
    history: Vec<Value>,
    started_ms: u64,
}

impl Task {
    fn new(agent: &str, goal: String) -> Task {
        Task {
            agent: agent.to_string(),
            goal,
            edit: None,
            attempts: 0,
            diff: None,
            history: Vec::new(),
            started_ms: overseer_guest::now_ms(),
        }
    }

    fn load(agent: &str) -> Result<Option<Task>, Error> {
        let Some(text) = kv::get(&format!("task:{agent}"))? else {
            return Ok(None);
        };
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::failed(format!("task of {agent} is damaged: {e}")))?;
        Ok(Some(Task {
            agent: agent.to_string(),
            goal: text_of(&v["goal"]),
            edit: v["edit"].as_u64(),
            attempts: v["attempts"].as_u64().unwrap_or(0) as u32,
            diff: v["diff"].as_str().map(str::to_string),
            history: v["history"].as_array().cloned().unwrap_or_default(),
            started_ms: v["started_ms"].as_u64().unwrap_or(0),
        }))
    }

    fn save(&self) -> Result<(), Error> {
        let v = json!({
            "goal": self.goal,
            "edit": self.edit,
            "attempts": self.attempts,
            "diff": self.diff,
            "history": self.history,
            "started_ms": self.started_ms,
        });
        kv::set(&format!("task:{}", self.agent), &v.to_string())
    }

    fn finish(&self) -> Result<(), Error> {
        if let Some(id) = self.edit {
            kv::delete(&format!("edit:{id}"))?;
        }
        kv::delete(&format!("task:{}", self.agent))
    }
}

fn text_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn max_attempts() -> u32 {
    overseer_guest::config("max_attempts")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_ATTEMPTS)
        .max(1)
}

/// An alert was opened or resolved: an opened one about an agent starts a repair.
fn on_alert(payload: &Value) -> Result<Value, Error> {
    if payload["state"] != "opened" {
        return Ok(json!({ "ignored": "not a new alert" }));
    }
    let alert = &payload["alert"];
    let agent = text_of(&alert["agent"]);
    if agent.is_empty() || alert["type"] == "system_failure" {
        return Ok(json!({ "ignored": "not about an agent's code" }));
    }
    let goal = format!(
        "Alert #{} ({}, {}): {}\nEvidence: {}",
        alert["id"],
        text_of(&alert["type"]),
        text_of(&alert["priority"]),
        text_of(&alert["message"]),
        alert["evidence"]
    );
    start(&agent, goal)
}

/// A person asks for a repair: `{"agent": "...", "goal": "what is wrong"}`; `{}` lists the
/// repairs under way.
fn on_request(payload: &Value) -> Result<Value, Error> {
    let agent = text_of(&payload["agent"]);
    if agent.is_empty() {
        let mut tasks = Vec::new();
        for key in kv::keys("task:")? {
            let name = key.trim_start_matches("task:");
            if let Some(task) = Task::load(name)? {
                tasks.push(json!({ "agent": task.agent, "attempts": task.attempts, "edit": task.edit, "goal": task.goal }));
            }
        }
        return Ok(json!({ "llm": llm::model(), "tasks": tasks }));
    }
    let goal = match payload["goal"].as_str() {
        Some(goal) if !goal.trim().is_empty() => goal.to_string(),
        _ => return Err(Error::invalid_input("say what is wrong in `goal`")),
    };
    start(&agent, goal)
}

/// Start a repair of `agent`, unless one is under way.
fn start(agent: &str, goal: String) -> Result<Value, Error> {
    if llm::model().is_none() {
        log::info(&format!(
            "idle: no LLM endpoint is configured; not repairing {agent}"
        ));
        return Ok(json!({ "idle": "no LLM endpoint is configured" }));
    }
    if let Some(task) = Task::load(agent)?
        && overseer_guest::now_ms().saturating_sub(task.started_ms) < STALE_TASK_MS
    {
        return Ok(json!({ "busy": agent, "edit": task.edit }));
    }
    match source::files(agent) {
        Ok(files) if files.editable => {}
        Ok(_) => return Ok(json!({ "ignored": format!("{agent} is not the editor's to edit") })),
        Err(e) => return Ok(json!({ "ignored": format!("{agent}: {}", e.message()) })),
    }
    if !within_budget(agent)? {
        log::warn(&format!(
            "not repairing {agent}: {} repairs already started today",
            max_repairs()
        ));
        return Ok(json!({ "over_budget": agent }));
    }
    let mut task = Task::new(agent, goal);
    // A fix that went live and was rolled back is a lesson for the next one.
    if let Some(lesson) = kv::get(&format!("lesson:{agent}"))? {
        if let Ok(lesson) = serde_json::from_str::<Value>(&lesson) {
            task.history.push(lesson);
        }
        kv::delete(&format!("lesson:{agent}"))?;
    }
    task.save()?;
    attempt(&mut task)
}

fn max_repairs() -> usize {
    overseer_guest::config("max_repairs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_MAX_REPAIRS)
}

/// Count a new repair of `agent` against its daily budget; false when the budget is spent.
fn within_budget(agent: &str) -> Result<bool, Error> {
    let key = format!("repairs:{agent}");
    let now = overseer_guest::now_ms();
    let mut started: Vec<u64> = kv::get(&key)?
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    started.retain(|at| now.saturating_sub(*at) < DAY_MS);
    if started.len() >= max_repairs() {
        return Ok(false);
    }
    started.push(now);
    kv::set(&key, &json!(started).to_string())?;
    Ok(true)
}

/// Ask for patches until one is accepted for building, the attempts run out, or the LLM is
/// unavailable (the hourly run tries again).
fn attempt(task: &mut Task) -> Result<Value, Error> {
    let max = max_attempts();
    while task.attempts < max {
        let elapsed = overseer_guest::now_ms().saturating_sub(STARTED_MS.load(Ordering::Relaxed));
        if elapsed > TIME_BUDGET_MS {
            task.save()?;
            return Ok(json!({ "waiting": task.agent, "reason": "out of time for this run" }));
        }
        let (version, prompt) = match evidence(task) {
            Ok(found) => found,
            Err(e) => return give_up(task, &format!("cannot read its source: {}", e.message())),
        };
        // The repair prompt (`[prompts.repair]`), from the registry; a use succeeds when its
        // patch is taken for building.
        let served = prompts::get(
            "repair",
            &task.agent,
            &json!({ "evidence": prompt }).to_string(),
        )?;
        let answer = match llm::chat(vec![
            Message::system(&served.system),
            Message::user(&served.text),
        ]) {
            Ok(answer) => answer,
            Err(Error::Unavailable(m)) => {
                log::warn(&format!(
                    "LLM unavailable while repairing {}: {m}; the hourly run retries",
                    task.agent
                ));
                task.save()?;
                return Ok(json!({ "waiting": task.agent, "reason": m }));
            }
            Err(e) => return give_up(task, &format!("the LLM failed: {}", e.message())),
        };
        task.attempts += 1;
        let Some(diff) = overseer_guest::answer::diff(&answer.text) else {
            let _ = prompts::report(served.use_id, None, Some(false));
            task.history.push(json!({
                "diff": answer.text,
                "error": "the answer held no unified diff",
            }));
            continue;
        };
        task.diff = Some(diff.clone());
        let proposal = Proposal {
            agent: task.agent.clone(),
            base_version: version,
            change: Change::Diff(diff.clone()),
            reason: format!(
                "code-editor, attempt {}: {}",
                task.attempts,
                first_line(&task.goal)
            ),
        };
        let proposed = source::propose(&proposal);
        let _ = prompts::report(served.use_id, None, Some(proposed.is_ok()));
        match proposed {
            Ok(id) => {
                task.edit = Some(id);
                task.save()?;
                kv::set(&format!("edit:{id}"), &task.agent)?;
                log::info(&format!(
                    "proposed edit {id} of {} (attempt {})",
                    task.agent, task.attempts
                ));
                return Ok(
                    json!({ "proposed": id, "agent": task.agent, "attempt": task.attempts }),
                );
            }
            Err(Error::Denied(m)) | Err(Error::InvalidInput(m)) => return give_up(task, &m),
            Err(e) => {
                // The patch did not apply or the base moved: the host's reason goes back to the LLM.
                task.history
                    .push(json!({ "diff": diff, "error": e.message() }));
            }
        }
    }
    give_up(task, &format!("{max} patches failed"))
}

/// The prompt for the next patch: the goal, the agent's log, findings and source, and every
/// earlier patch with the reason it failed. Returns the version the source belongs to.
fn evidence(task: &Task) -> Result<(u32, String), Error> {
    let files = source::files(&task.agent)?;
    let mut prompt = format!(
        "Agent: {} (version {})\n\nWhat is wrong:\n{}\n",
        task.agent, files.version, task.goal
    );

    let lines = source::logs(&task.agent, LOG_LINES)?;
    let notable: Vec<String> = lines
        .iter()
        .filter(|l| l.level == "warn" || l.level == "error")
        .map(|l| format!("[{} v{}] {}", l.level, l.version.unwrap_or(0), l.message))
        .collect();
    if !notable.is_empty() {
        prompt.push_str("\nRecent warnings and errors in its log:\n");
        for line in notable {
            prompt.push_str(&line);
            prompt.push('\n');
        }
    }

    let findings = source::findings(&task.agent)?;
    if !findings.is_empty() {
        prompt.push_str("\nFindings of the host's analysis:\n");
        for f in &findings {
            prompt.push_str(&format!(
                "{}:{}:{}: {}: {}\n",
                f.file, f.line, f.column, f.kind, f.message
            ));
        }
    }

    prompt.push_str("\nSource:\n");
    for path in &files.files {
        let text = source::read(&task.agent, path)?;
        if text.len() > MAX_FILE_BYTES || path.ends_with(".lock") {
            prompt.push_str(&format!("\n{path}: ({} bytes, not shown)\n", text.len()));
            continue;
        }
        prompt.push_str(&format!("\n--- {path}\n```\n{text}"));
        if !text.ends_with('\n') {
            prompt.push('\n');
        }
        prompt.push_str("```\n");
    }

    for (n, earlier) in task.history.iter().enumerate() {
        prompt.push_str(&format!(
            "\nAttempt {} was refused.\nPatch:\n```diff\n{}\n```\nWhy: {}\n",
            n + 1,
            text_of(&earlier["diff"]).trim_end(),
            text_of(&earlier["error"])
        ));
    }
    if !task.history.is_empty() {
        prompt
            .push_str("\nWrite a new patch against the source above that avoids these failures.\n");
    }
    Ok((files.version, prompt))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The outcome of an edit: live ends the repair, a rejection or a rollback asks again.
fn on_edit(payload: &Value) -> Result<Value, Error> {
    let Some(id) = payload["edit"].as_u64() else {
        return Ok(json!({ "ignored": "no edit id" }));
    };
    if let Some(live) = kv::get(&format!("live:{id}"))? {
        return rolled_back(id, &live, payload);
    }
    let Some(agent) = kv::get(&format!("edit:{id}"))? else {
        return Ok(json!({ "ignored": "not an edit of the code editor" }));
    };
    let Some(mut task) = Task::load(&agent)? else {
        kv::delete(&format!("edit:{id}"))?;
        return Ok(json!({ "ignored": "the repair is over" }));
    };
    let state = text_of(&payload["state"]);
    let reason = format!(
        "{} at {} ({}): {}",
        state,
        text_of(&payload["stage"]),
        text_of(&payload["code"]),
        text_of(&payload["message"])
    );
    settle(&mut task, id, &state, &reason, payload["version"].as_u64())
}

/// A fix that went live was rolled back (by the watch window, supervision or a person): its
/// patch and the fact become a lesson for the next repair of the agent, which the alert about
/// the rollback starts.
fn rolled_back(id: u64, live: &str, payload: &Value) -> Result<Value, Error> {
    if payload["state"] != "rolled-back" {
        return Ok(json!({ "ignored": "a repair already live" }));
    }
    kv::delete(&format!("live:{id}"))?;
    let live: Value = serde_json::from_str(live).unwrap_or_default();
    let agent = text_of(&live["agent"]);
    kv::set(
        &format!("lesson:{agent}"),
        &json!({
            "diff": live["diff"],
            "error": format!(
                "this patch went live as edit {id} and was rolled back by the host: it failed once it served real calls"
            ),
        })
        .to_string(),
    )?;
    log::info(&format!("repair {id} of {agent} was rolled back"));
    Ok(json!({ "rolled_back": id, "agent": agent }))
}

/// Act on the final state of the task's edit.
fn settle(
    task: &mut Task,
    id: u64,
    state: &str,
    reason: &str,
    version: Option<u64>,
) -> Result<Value, Error> {
    match state {
        "live" => {
            task.finish()?;
            // Kept a day, so a rollback of this fix teaches the next repair.
            kv::set(
                &format!("live:{id}"),
                &json!({
                    "agent": task.agent,
                    "diff": task.diff,
                    "at": overseer_guest::now_ms(),
                })
                .to_string(),
            )?;
            if let Some(version) = version {
                kv::set(&format!("reviewed:{}", task.agent), &version.to_string())?;
            }
            log::info(&format!(
                "repaired {} with edit {id}, now version {}",
                task.agent,
                version.unwrap_or(0)
            ));
            overseer_guest::emit(
                "code-editor.repaired",
                &json!({ "agent": task.agent, "edit": id, "version": version, "attempts": task.attempts })
                    .to_string(),
            )?;
            Ok(json!({ "repaired": task.agent, "edit": id }))
        }
        "rejected" | "rolled-back" => {
            kv::delete(&format!("edit:{id}"))?;
            task.edit = None;
            task.history.push(json!({
                "diff": task.diff.clone().unwrap_or_default(),
                "error": reason,
            }));
            log::info(&format!(
                "edit {id} of {} {state}; asking again with the reason",
                task.agent
            ));
            attempt(task)
        }
        _ => Ok(json!({ "waiting": id, "state": state })),
    }
}

fn give_up(task: &Task, why: &str) -> Result<Value, Error> {
    task.finish()?;
    log::warn(&format!("gave up repairing {}: {why}", task.agent));
    overseer_guest::emit(
        "code-editor.gave-up",
        &json!({ "agent": task.agent, "attempts": task.attempts, "reason": why }).to_string(),
    )?;
    Ok(json!({ "gave_up": task.agent, "reason": why }))
}

/// The hourly run: settle repairs whose outcome was missed, retry ones that waited on the
/// LLM, and review the findings of one agent whose source changed since its last review.
fn on_schedule() -> Result<Value, Error> {
    if llm::model().is_none() {
        return Ok(json!({ "idle": "no LLM endpoint is configured" }));
    }
    forget_old_repairs()?;
    let mut resumed = Vec::new();
    for key in kv::keys("task:")? {
        let agent = key.trim_start_matches("task:").to_string();
        // One repair that cannot go on does not hold up the others.
        match resume(&agent) {
            Ok(outcome) => resumed.push(outcome),
            Err(e) => {
                log::warn(&format!(
                    "could not resume the repair of {agent}: {}",
                    e.message()
                ));
                resumed.push(json!({ "agent": agent, "error": e.message() }));
            }
        }
    }
    let reviewed = if overseer_guest::config("review").as_deref() == Some("off") {
        Value::Null
    } else {
        review()?
    };
    Ok(json!({ "resumed": resumed, "reviewed": reviewed }))
}

/// Repairs that went live more than a day ago can no longer teach anything.
fn forget_old_repairs() -> Result<(), Error> {
    let now = overseer_guest::now_ms();
    for key in kv::keys("live:")? {
        let at = kv::get(&key)?
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|live| live["at"].as_u64())
            .unwrap_or(0);
        if now.saturating_sub(at) > DAY_MS {
            kv::delete(&key)?;
        }
    }
    Ok(())
}

/// Move one repair on: settle an edit whose outcome was missed, or ask again.
fn resume(agent: &str) -> Result<Value, Error> {
    let Some(mut task) = Task::load(agent)? else {
        return Ok(Value::Null);
    };
    if overseer_guest::now_ms().saturating_sub(task.started_ms) > STALE_TASK_MS {
        return give_up(&task, "no outcome within six hours");
    }
    match task.edit {
        None => attempt(&mut task),
        Some(id) => {
            let edit = source::outcome(agent, id)?;
            let reason = format!(
                "{} at {} ({}): {}",
                edit.state,
                edit.stage.unwrap_or_default(),
                edit.code.unwrap_or_default(),
                edit.message.unwrap_or_default()
            );
            settle(
                &mut task,
                id,
                &edit.state,
                &reason,
                edit.version.map(u64::from),
            )
        }
    }
}

/// Ask for a fix of the panic sites of the first agent whose source changed since it was last
/// reviewed.
fn review() -> Result<Value, Error> {
    for agent in source::agents()? {
        if !agent.editable {
            continue;
        }
        let key = format!("reviewed:{}", agent.agent);
        if kv::get(&key)?.as_deref() == Some(agent.version.to_string().as_str())
            || Task::load(&agent.agent)?.is_some()
        {
            continue;
        }
        kv::set(&key, &agent.version.to_string())?;
        let findings: Vec<String> = source::findings(&agent.agent)?
            .into_iter()
            .filter(|f| REVIEWED_KINDS.contains(&f.kind.as_str()))
            .map(|f| format!("{}:{}: {}", f.file, f.line, f.message))
            .collect();
        if findings.is_empty() {
            continue;
        }
        let goal = format!(
            "Review: {} places where {} can trap or drop an error. Make them return errors \
             instead, without changing what it does for good input.\n{}",
            findings.len(),
            agent.agent,
            findings.join("\n")
        );
        return start(&agent.agent, goal);
    }
    Ok(Value::Null)
}
