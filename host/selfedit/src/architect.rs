//! The architect: a spec of a new agent (name, purpose, the topics it hears and publishes, its
//! schedule, the interfaces it needs) becomes a live agent through the same gates as any push.
//!
//! The host writes the parts that decide what the agent may do — `agent.toml` from the spec,
//! `Cargo.toml` — and a working `src/lib.rs` from the Rust template: it counts what it hears and
//! publishes a summary of each event on its outputs. When the `system-architect` agent serves
//! (and has a model), it is asked for `src/lib.rs` with the logic the purpose needs, shown the
//! template and, on a retry, the compiler's errors; only files under `src/` are taken from it.
//! The source goes through the edit pipeline as a new agent from source: built, checked,
//! swapped live, watched. A build or check that fails is retried with its errors, up to
//! [`ATTEMPTS`] times; a spec is never served broken. A spec asking for a privileged interface
//! waits in `awaiting_approval` until a person approves it.
//!
//! States: `awaiting_approval` → `designing` → `building` → `live` | `failed`, or `rejected`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use overseer_kernel::manifest::{INTERFACES, PRIVILEGED, topic_matches};
use overseer_kernel::{HOST_TOPICS, Manifest, check_name, check_topic};
use overseer_store::{EditState, SpecRecord, audit};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::edit::{EditRequest, compiler_errors};
use crate::{Error, Result, SelfEdit};

/// Builds tried per spec before it fails.
pub const ATTEMPTS: u32 = 3;

/// The agent asked for each spec's logic, when it serves.
pub const ARCHITECT_AGENT: &str = "system-architect";

/// Specs read at start to fail those a stop interrupted.
pub const OPEN_SPECS: u32 = 1000;

/// Events of the bus read for the workflow's observed topics.
pub const WORKFLOW_EVENTS: u32 = 2000;

/// Longest purpose, in bytes.
const MAX_PURPOSE_BYTES: usize = 2000;

/// A new agent as asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    pub name: String,
    /// What it is for, in a sentence or a paragraph.
    pub purpose: String,
    /// Topics it subscribes to (`market.tick`, `research.*`).
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Topics it publishes.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// How often it runs besides its inputs: `30s`, `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Interfaces it needs beyond `runtime` and `kv` (`llm`, `market`, …).
    #[serde(default)]
    pub capabilities: Vec<String>,
}

impl AgentSpec {
    /// The interfaces asked for that only a person grants.
    pub fn privileged(&self) -> Vec<&str> {
        self.capabilities
            .iter()
            .map(String::as_str)
            .filter(|c| PRIVILEGED.contains(c))
            .collect()
    }

    /// `agent.toml` of the spec.
    pub fn manifest(&self) -> String {
        let list = |items: &[String]| {
            items
                .iter()
                .map(|i| toml::Value::from(i.as_str()).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let description = toml::Value::from(self.purpose.lines().next().unwrap_or("")).to_string();
        let every = self
            .schedule
            .as_ref()
            .map(|s| format!("every = {}\n", toml::Value::from(s.as_str())))
            .unwrap_or_default();
        format!(
            "name = \"{name}\"\ndescription = {description}\n\n[agent]\ntype = \"tool\"\n\n[capabilities]\ngrant = [{grants}]\n\n[triggers]\nsubscribe = [{inputs}]\n{every}\n[config]\n# Topics the agent publishes on, comma-separated.\noutputs = {outputs}\n",
            name = self.name,
            grants = list(&self.capabilities),
            inputs = list(&self.inputs),
            outputs = toml::Value::from(self.outputs.join(",")),
        )
    }

    /// Check the spec as the pipeline would check its manifest, and its topics as the bus
    /// would.
    pub fn check(&self, selfedit: &SelfEdit) -> Result<()> {
        check_name(&self.name)?;
        if !self.name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Error::InvalidRequest(format!(
                "{:?}: a new agent's name starts with a letter (it names the crate too)",
                self.name
            )));
        }
        if self.purpose.trim().is_empty() || self.purpose.len() > MAX_PURPOSE_BYTES {
            return Err(Error::InvalidRequest(format!(
                "purpose: 1 to {MAX_PURPOSE_BYTES} bytes saying what the agent is for"
            )));
        }
        if let Some(c) = self
            .capabilities
            .iter()
            .find(|c| !INTERFACES.contains(&c.as_str()))
        {
            return Err(Error::InvalidRequest(format!(
                "capability {c:?}: one of {}",
                INTERFACES.join(", ")
            )));
        }
        for topic in &self.outputs {
            check_topic(topic, &[])
                .map_err(|e| Error::InvalidRequest(format!("output {topic:?}: {}", e.message())))?;
        }
        let manifest = Manifest::parse(&self.manifest())?;
        manifest
            .resolve(&self.name, &selfedit.kernel().config)
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
        Ok(())
    }
}

/// The source of a spec's agent from the Rust template: it builds as it is.
pub fn template(spec: &AgentSpec) -> BTreeMap<String, String> {
    let crate_name = spec.name.replace('-', "_");
    let cargo = format!(
        "[package]\nname = \"{name}\"\nversion.workspace = true\nedition.workspace = true\nrust-version.workspace = true\nlicense.workspace = true\npublish.workspace = true\n\n[lib]\ncrate-type = [\"cdylib\"]\n\n[dependencies]\noverseer-guest.workspace = true\nserde_json.workspace = true\n",
        name = spec.name
    );
    // Every line of the purpose a line of the doc comment: no line of it is ever code.
    let purpose: String = spec.purpose.lines().map(|l| format!("//! {l}\n")).collect();
    let lib = format!(
        r#"//! `{name}`:
{purpose}//!
//! Written by the architect from its spec. It counts the events it hears in kv and publishes
//! a summary of each on its outputs (`[config] outputs`).

use overseer_guest::{{Agent, Error, Event, Info, kv, log}};
use serde_json::json;

struct {type_name};

impl Agent for {type_name} {{
    fn describe() -> Info {{
        Info {{
            name: "{name}".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            description: {description:?}.to_string(),
            subscriptions: vec![{subscriptions}],
        }}
    }}

    fn handle(event: Event) -> Result<String, Error> {{
        let count = kv::get("heard")?
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        kv::set("heard", &count.to_string())?;
        let summary = json!({{
            "topic": event.topic,
            "source": event.source,
            "bytes": event.payload.len(),
            "heard": count,
        }});
        let outputs = overseer_guest::config("outputs").unwrap_or_default();
        for topic in outputs.split(',').map(str::trim).filter(|t| !t.is_empty()) {{
            overseer_guest::emit(topic, &summary.to_string())?;
        }}
        log::info(&format!("heard {{}} ({{count}} so far)", event.topic));
        Ok(summary.to_string())
    }}
}}

overseer_guest::export!({type_name});
"#,
        name = spec.name,
        description = spec.purpose.lines().next().unwrap_or("").trim(),
        type_name = type_name(&crate_name),
        subscriptions = spec
            .inputs
            .iter()
            .map(|t| format!("{t:?}.to_string()"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    BTreeMap::from([
        ("Cargo.toml".to_string(), cargo),
        ("agent.toml".to_string(), spec.manifest()),
        ("src/lib.rs".to_string(), lib),
    ])
}

/// `my_agent` as `MyAgent`.
fn type_name(crate_name: &str) -> String {
    crate_name
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut chars = p.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

impl SelfEdit {
    /// Take a spec from `by`: kept, then built at once, or left for a person's approval when it
    /// asks for a privileged interface and `by` is not a person who approved it already.
    pub async fn submit_spec(
        &self,
        spec: AgentSpec,
        by: &str,
        approved: bool,
    ) -> Result<SpecRecord> {
        spec.check(self)?;
        let store = &self.kernel().store;
        if store.agent(&spec.name).await?.is_some() {
            return Err(Error::Conflict(format!(
                "an agent {:?} exists already",
                spec.name
            )));
        }
        let waits = !spec.privileged().is_empty() && !approved;
        let body = serde_json::to_value(&spec).unwrap_or(Value::Null);
        let state = if waits {
            "awaiting_approval"
        } else {
            "designing"
        };
        let record = store.insert_spec(&spec.name, &body, state).await?;
        audit::record(
            &**store,
            by,
            "architect.spec",
            &spec.name,
            &json!({ "spec": record.id, "state": state, "privileged": spec.privileged() }),
        )
        .await;
        if !waits {
            self.design(record.id);
        }
        Ok(record)
    }

    /// A person's approval of a waiting spec: it is built.
    pub async fn approve_spec(&self, id: i64, by: &str) -> Result<SpecRecord> {
        let store = &self.kernel().store;
        let record = store
            .transition_spec(
                id,
                "awaiting_approval",
                "designing",
                &json!({ "approved_by": by }),
            )
            .await?;
        let Some(record) = record else {
            return Err(self.not_awaiting(id).await);
        };
        audit::record(
            &**store,
            by,
            "architect.approve",
            &record.name,
            &json!({ "spec": id }),
        )
        .await;
        self.design(id);
        Ok(record)
    }

    /// A person's rejection of a waiting spec: never built.
    pub async fn reject_spec(&self, id: i64, by: &str, reason: &str) -> Result<SpecRecord> {
        let store = &self.kernel().store;
        let detail = json!({ "rejected_by": by, "reason": reason });
        match store
            .transition_spec(id, "awaiting_approval", "rejected", &detail)
            .await?
        {
            Some(record) => {
                audit::record(&**store, by, "architect.reject", &record.name, &detail).await;
                Ok(record)
            }
            None => Err(self.not_awaiting(id).await),
        }
    }

    /// Why spec `id` could not move from `awaiting_approval`.
    async fn not_awaiting(&self, id: i64) -> Error {
        match self.kernel().store.spec(id).await {
            Ok(Some(s)) => {
                Error::Conflict(format!("spec {id} is {}, not awaiting approval", s.state))
            }
            Ok(None) => Error::SpecNotFound(id),
            Err(e) => e.into(),
        }
    }

    /// Build spec `id` in the background.
    fn design(&self, id: i64) {
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.build_spec(id).await {
                tracing::warn!(spec = id, error = %e, "the architect failed");
                let detail = json!({ "error": e.to_string() });
                for from in ["designing", "building"] {
                    let _ = this
                        .kernel()
                        .store
                        .transition_spec(id, from, "failed", &detail)
                        .await;
                }
            }
        });
    }

    async fn build_spec(&self, id: i64) -> Result<()> {
        let store = self.kernel().store.clone();
        let record = store
            .spec(id)
            .await?
            .ok_or_else(|| Error::Internal(format!("spec {id} vanished")))?;
        let spec: AgentSpec = serde_json::from_value(record.body.clone())
            .map_err(|e| Error::Internal(format!("spec {id}: {e}")))?;
        let mut attempts: Vec<Value> = Vec::new();
        let mut error: Option<String> = None;
        let mut state = "designing".to_string();
        for attempt in 1..=ATTEMPTS {
            let (files, designer) = self.draft(&spec, attempt, error.as_deref()).await;
            let detail = json!({ "attempts": attempts, "attempt": attempt, "designer": designer });
            store
                .transition_spec(id, &state, "building", &detail)
                .await?;
            state = "building".to_string();
            let request = EditRequest {
                base_version: None,
                diff: None,
                files: Some(files),
                reason: format!(
                    "the architect's spec {id}: {}",
                    spec.purpose.lines().next().unwrap_or("")
                ),
                proposer: Some(ARCHITECT_AGENT.to_string()),
            };
            let edit = match self.submit(&spec.name, request).await {
                Ok(edit) => self.settle(&spec.name, edit.id).await?,
                Err(e) => {
                    attempts.push(
                        json!({ "attempt": attempt, "designer": designer, "error": e.to_string() }),
                    );
                    error = Some(e.to_string());
                    continue;
                }
            };
            let outcome = json!({
                "attempt": attempt,
                "designer": designer,
                "edit": edit.id,
                "state": edit.state.as_str(),
                "stage": edit.stage,
                "message": edit.message,
            });
            attempts.push(outcome);
            if edit.state == EditState::Live {
                let detail = json!({
                    "attempts": attempts,
                    "agent": spec.name,
                    "version": edit.version,
                    "workflow": self.workflow().await,
                });
                store
                    .transition_spec(id, "building", "live", &detail)
                    .await?;
                audit::record(
                    &*store,
                    ARCHITECT_AGENT,
                    "architect.live",
                    &spec.name,
                    &json!({ "spec": id, "version": edit.version }),
                )
                .await;
                return Ok(());
            }
            error = Some(match edit.build_log.as_deref() {
                Some(log) if edit.stage.as_deref() == Some("build") => compiler_errors(log),
                _ => edit
                    .message
                    .clone()
                    .unwrap_or_else(|| "the edit was rejected".to_string()),
            });
        }
        let detail = json!({ "attempts": attempts, "error": error });
        store.transition_spec(id, &state, "failed", &detail).await?;
        Ok(())
    }

    /// The source of one attempt, and who wrote its logic: the `system-architect` agent when
    /// it serves and answers with source, else the template.
    async fn draft(
        &self,
        spec: &AgentSpec,
        attempt: u32,
        error: Option<&str>,
    ) -> (BTreeMap<String, String>, &'static str) {
        let mut files = template(spec);
        let kernel = self.kernel();
        if kernel
            .registry
            .get(ARCHITECT_AGENT)
            .and_then(|s| s.active())
            .is_none()
        {
            return (files, "template");
        }
        let event = overseer_kernel::bus::host_event(
            "architect.design".to_string(),
            json!({ "spec": spec, "files": files, "attempt": attempt, "error": error }).to_string(),
            "architect",
        );
        let Ok(invoked) = kernel.invoker.invoke(ARCHITECT_AGENT, event).await else {
            return (files, "template");
        };
        let answer: Value = serde_json::from_str(&invoked.output).unwrap_or(Value::Null);
        let written: Vec<(String, String)> = answer["files"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(path, _)| {
                        path.starts_with("src/") && path.ends_with(".rs") && !path.contains("..")
                    })
                    .filter_map(|(path, text)| Some((path.clone(), text.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        if written.is_empty() {
            return (files, "template");
        }
        // Held to what any agent's edit is: nothing that reads the host at build time.
        let candidate = crate::Snapshot {
            files: written.iter().cloned().collect(),
        };
        let reads = crate::analysis::host_reads(&candidate);
        if let Some(read) = reads.first() {
            tracing::warn!(agent = %spec.name, file = %read.file, line = read.line, "the model's source reads the host: the template is built instead");
            return (files, "template");
        }
        files.extend(written);
        (files, "system-architect")
    }

    /// Wait for edit `id` of `agent` to finish (the pipeline bounds its build and checks).
    async fn settle(&self, agent: &str, id: i64) -> Result<overseer_store::EditRecord> {
        loop {
            let edit = self.edit(agent, id).await?;
            if !edit.state.running() {
                return Ok(edit);
            }
            // The pipeline has no completion signal to wait on; its stages take seconds.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Which topics connect which agents, topics nobody hears or nobody publishes, and
    /// cycles: from the active manifests (what each declares it publishes and hears) and the
    /// last [`WORKFLOW_EVENTS`] events of the bus (what each was seen to publish).
    pub async fn workflow(&self) -> Workflow {
        let mut publishes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut hears: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let seen = self
            .kernel()
            .store
            .events(&overseer_store::EventFilter {
                limit: WORKFLOW_EVENTS,
                newest_first: true,
                ..Default::default()
            })
            .await
            .unwrap_or_default();
        for slot in self.kernel().registry.slots() {
            let Some(active) = slot.active() else {
                continue;
            };
            let manifest = &active.manifest;
            let mut out: BTreeSet<String> = manifest.capabilities.publish.iter().cloned().collect();
            if let Some(outputs) = manifest.config.get("outputs") {
                out.extend(
                    outputs
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(str::to_string),
                );
            }
            out.extend(
                seen.iter()
                    .filter(|e| e.source == slot.name)
                    .map(|e| e.topic.clone()),
            );
            publishes.insert(slot.name.clone(), out.into_iter().collect());
            hears.insert(slot.name.clone(), manifest.triggers.subscribe.clone());
        }
        workflow_of(&publishes, &hears)
    }
}

/// Which agents hear what others publish, and where the flow stops or loops.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Workflow {
    /// An agent publishing a topic another hears.
    pub edges: Vec<WorkflowEdge>,
    pub dead_ends: DeadEnds,
    /// Agents that reach themselves.
    pub cycles: Vec<String>,
}

/// One agent's topic heard by another.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct WorkflowEdge {
    pub from: String,
    pub topic: String,
    pub to: String,
}

/// Topics nobody hears, and subscriptions nobody publishes to.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadEnds {
    pub published_unheard: Vec<AgentTopic>,
    pub heard_unpublished: Vec<AgentTopic>,
}

/// An agent and a topic (or a subscription's pattern).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentTopic {
    pub agent: String,
    pub topic: String,
}

/// The workflow of agents publishing and hearing topics: edges, dead ends and cycles.
pub fn workflow_of(
    publishes: &BTreeMap<String, Vec<String>>,
    hears: &BTreeMap<String, Vec<String>>,
) -> Workflow {
    let mut edges = Vec::new();
    let mut next: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut unheard = Vec::new();
    for (from, topics) in publishes {
        for topic in topics {
            let to: Vec<&String> = hears
                .iter()
                .filter(|(_, patterns)| patterns.iter().any(|p| topic_matches(p, topic)))
                .map(|(agent, _)| agent)
                .collect();
            if to.is_empty() {
                unheard.push(AgentTopic {
                    agent: from.clone(),
                    topic: topic.clone(),
                });
            }
            for agent in to {
                edges.push(WorkflowEdge {
                    from: from.clone(),
                    topic: topic.clone(),
                    to: agent.clone(),
                });
                next.entry(from.as_str())
                    .or_default()
                    .insert(agent.as_str());
            }
        }
    }
    let unpublished: Vec<AgentTopic> = hears
        .iter()
        .flat_map(|(agent, patterns)| patterns.iter().map(move |p| (agent, p)))
        .filter(|(_, p)| {
            let source = p.split('.').next().unwrap_or(p);
            p.as_str() != "*"
                && !HOST_TOPICS.contains(&source)
                && !publishes.values().flatten().any(|t| topic_matches(p, t))
                && !publishes.contains_key(source)
        })
        .map(|(agent, p)| AgentTopic {
            agent: agent.clone(),
            topic: p.clone(),
        })
        .collect();
    // Cycles: an agent that reaches itself.
    let mut cycles = Vec::new();
    for start in next.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = next[start].iter().copied().collect();
        while let Some(at) = stack.pop() {
            if at == *start {
                cycles.push(start.to_string());
                break;
            }
            if seen.insert(at) {
                stack.extend(next.get(at).into_iter().flatten().copied());
            }
        }
    }
    Workflow {
        edges,
        dead_ends: DeadEnds {
            published_unheard: unheard,
            heard_unpublished: unpublished,
        },
        cycles,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workflow_finds_edges_dead_ends_and_loops() {
        let publishes = BTreeMap::from([
            ("a".to_string(), vec!["a.out".to_string()]),
            (
                "b".to_string(),
                vec!["b.out".to_string(), "b.lost".to_string()],
            ),
        ]);
        let hears = BTreeMap::from([
            ("a".to_string(), vec!["b.out".to_string()]),
            (
                "b".to_string(),
                vec!["a.*".to_string(), "ghost.signal".to_string()],
            ),
        ]);
        let w = serde_json::to_value(workflow_of(&publishes, &hears)).unwrap();
        assert_eq!(w["edges"].as_array().unwrap().len(), 2);
        assert_eq!(
            w["dead_ends"]["published_unheard"],
            json!([{ "agent": "b", "topic": "b.lost" }])
        );
        assert_eq!(
            w["dead_ends"]["heard_unpublished"],
            json!([{ "agent": "b", "topic": "ghost.signal" }])
        );
        assert_eq!(w["cycles"], json!(["a", "b"]));
    }

    #[test]
    fn the_template_names_the_spec() {
        let spec = AgentSpec {
            name: "price-watch".to_string(),
            purpose: "Watches prices".to_string(),
            inputs: vec!["market.tick".to_string()],
            outputs: vec!["price-watch.seen".to_string()],
            schedule: Some("30s".to_string()),
            capabilities: vec!["market".to_string()],
        };
        let files = template(&spec);
        assert!(files["src/lib.rs"].contains("struct PriceWatch;"));
        let manifest = Manifest::parse(&files["agent.toml"]).unwrap();
        assert_eq!(manifest.triggers.subscribe, ["market.tick"]);
        assert_eq!(manifest.triggers.every.as_deref(), Some("30s"));
        assert_eq!(manifest.config["outputs"], "price-watch.seen");
        assert!(spec.privileged().is_empty());
    }
}
