//! The host's implementation of the services an agent imports: kv in the store, emit on the
//! bus, logs through the log writer, metrics, configuration from the manifest, and, for agents
//! whose manifest grants them, the LLM and the source of other agents.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use overseer_sandbox::{
    AgentSource, EditOutcome, Event, Finding, GuestError, HostServices, HttpRequest, HttpResponse,
    Level, LlmCompletion, LlmRequest, LlmUsage, Proposal, SourceChange, SourceLogLine,
};

use crate::edit::{self, EditRequest};
use crate::error::Error;
use crate::manifest::Manifest;
use crate::providers::llm::{self, LlmError};
use crate::registry::Version;
use crate::source::{self, Snapshot};
use crate::state::Host;
use crate::store::{LlmCall, LogLine, now_ms};

/// Topics only the host publishes on: agents act on them (the code editor on alerts and on
/// the outcomes of its edits), so an agent may not forge them.
pub const HOST_TOPICS: &[&str] = &["alert.", "edit."];

/// The services of one invocation of one version of an agent.
pub struct AgentServices {
    host: Arc<Host>,
    version: Arc<Version>,
}

impl AgentServices {
    pub fn new(host: Arc<Host>, version: Arc<Version>) -> Self {
        AgentServices { host, version }
    }

    fn agent(&self) -> &str {
        &self.version.agent
    }
}

fn unavailable(e: impl std::fmt::Display) -> GuestError {
    GuestError::Unavailable(format!("store: {e}"))
}

#[async_trait]
impl HostServices for AgentServices {
    fn log(&self, level: Level, message: &str) {
        self.host.log(LogLine {
            agent: self.agent().to_string(),
            version: Some(self.version.number),
            level: level.as_str(),
            message: message.to_string(),
            at_ms: now_ms(),
        });
    }

    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError> {
        if let Some(prefix) = HOST_TOPICS.iter().find(|p| topic.starts_with(**p)) {
            return Err(GuestError::Denied(format!(
                "topics {prefix}* are the host's: an agent cannot publish {topic}"
            )));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err() {
            return Err(GuestError::InvalidInput(
                "payload must be a JSON document".to_string(),
            ));
        }
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            topic: topic.to_string(),
            payload: payload.to_string(),
            source: self.agent().to_string(),
            at_ms: now_ms(),
        };
        self.host.publish(event).await.map_err(unavailable)
    }

    fn metric(&self, name: &str, value: f64) {
        self.host.metrics.agent_metric(self.agent(), name, value);
    }

    fn config(&self, key: &str) -> Option<String> {
        self.version.manifest.config.get(key).cloned()
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, GuestError> {
        self.host
            .store
            .kv_get(self.agent(), key)
            .await
            .map_err(unavailable)
    }

    async fn kv_set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        self.host
            .store
            .kv_set(self.agent(), key, value)
            .await
            .map_err(unavailable)
    }

    async fn kv_delete(&self, key: &str) -> Result<(), GuestError> {
        self.host
            .store
            .kv_delete(self.agent(), key)
            .await
            .map_err(unavailable)
    }

    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        self.host
            .store
            .kv_keys(self.agent(), prefix)
            .await
            .map_err(unavailable)
    }

    fn granted(&self, capability: &str) -> bool {
        self.version.manifest.grants(capability)
    }

    fn llm_model(&self) -> Option<String> {
        self.host.llm.model().map(str::to_string)
    }

    async fn llm_complete(&self, request: LlmRequest) -> Result<LlmCompletion, GuestError> {
        complete(&self.host, self.agent(), request).await
    }

    async fn http_fetch(&self, request: HttpRequest) -> Result<HttpResponse, GuestError> {
        self.host
            .http
            .fetch(&self.version.manifest.capabilities.http_allow, request)
            .await
    }

    async fn source_agents(&self) -> Result<Vec<AgentSource>, GuestError> {
        source_agents(&self.host, self.agent()).await
    }

    async fn source_files(&self, agent: &str) -> Result<AgentSource, GuestError> {
        source_files(&self.host, self.agent(), agent).await
    }

    async fn source_read(&self, agent: &str, path: &str) -> Result<String, GuestError> {
        source_read(&self.host, agent, path).await
    }

    async fn source_findings(&self, agent: &str) -> Result<Vec<Finding>, GuestError> {
        source_findings(&self.host, agent).await
    }

    async fn source_logs(&self, agent: &str, limit: u32) -> Result<Vec<SourceLogLine>, GuestError> {
        source_logs(&self.host, agent, limit).await
    }

    async fn source_propose(&self, proposal: Proposal) -> Result<u64, GuestError> {
        let request = EditRequest {
            base_version: Some(proposal.base_version),
            reason: proposal.reason,
            ..match proposal.change {
                SourceChange::Diff(diff) => EditRequest {
                    diff: Some(diff),
                    ..EditRequest::default()
                },
                SourceChange::Files(files) => EditRequest {
                    files: Some(files.into_iter().map(|f| (f.path, f.content)).collect()),
                    ..EditRequest::default()
                },
            }
        };
        let record = edit::submit_by_agent(&self.host, self.agent(), &proposal.agent, request)
            .await
            .map_err(to_guest)?;
        Ok(record.id as u64)
    }

    async fn source_outcome(&self, agent: &str, id: u64) -> Result<EditOutcome, GuestError> {
        source_outcome(&self.host, agent, id).await
    }
}

/// A host error as the agent that caused it sees it: its stable code, then the message.
fn to_guest(error: Error) -> GuestError {
    let message = format!("{}: {error}", error.code());
    match error {
        Error::InvalidName(_)
        | Error::InvalidRequest(_)
        | Error::InvalidManifest(_)
        | Error::AgentNotFound(_)
        | Error::VersionNotFound { .. }
        | Error::NoActiveVersion(_)
        | Error::NoSource(_)
        | Error::PathEscape(_)
        | Error::EditNotFound(_) => GuestError::InvalidInput(message),
        Error::Denied(_) => GuestError::Denied(message),
        Error::PatchFailed(_) | Error::StaleBase { .. } | Error::Rejected { .. } => {
            GuestError::Failed(message)
        }
        _ => GuestError::Unavailable(message),
    }
}

/// Ask the LLM on behalf of `agent`, and record the call and its tokens.
async fn complete(
    host: &Arc<Host>,
    agent: &str,
    request: LlmRequest,
) -> Result<LlmCompletion, GuestError> {
    let request = llm::Request {
        messages: request
            .messages
            .into_iter()
            .map(|m| llm::Message {
                role: m.role.as_str().to_string(),
                content: m.content,
            })
            .collect(),
        max_tokens: request.max_tokens,
        temperature: request.temperature,
    };
    // The request runs on its own task, which records it: an invocation that hits its deadline
    // drops its side of the call, but the tokens were spent and are counted.
    let task_host = host.clone();
    let task_agent = agent.to_string();
    let call = tokio::spawn(async move { record(&task_host, &task_agent, request).await });
    let result = call
        .await
        .map_err(|e| GuestError::Unavailable(format!("LLM task: {e}")))?;
    match result {
        Ok(c) => Ok(LlmCompletion {
            text: c.text,
            model: c.model,
            usage: LlmUsage {
                prompt_tokens: c.prompt_tokens,
                completion_tokens: c.completion_tokens,
            },
        }),
        Err(LlmError::Unavailable(m)) => Err(GuestError::Unavailable(m)),
        Err(LlmError::Failed(m)) => Err(GuestError::Failed(m)),
    }
}

/// Ask the LLM and record the call with its tokens, in the store and the metrics.
async fn record(
    host: &Arc<Host>,
    agent: &str,
    request: llm::Request,
) -> Result<llm::Completion, LlmError> {
    let started = Instant::now();
    let result = host.llm.complete(&request).await;
    let model = host.llm.model().unwrap_or("none").to_string();
    let (outcome, prompt, completion) = match &result {
        Ok(c) => ("ok", c.prompt_tokens, c.completion_tokens),
        Err(LlmError::Unavailable(_)) => ("unavailable", 0, 0),
        Err(LlmError::Failed(_)) => ("failed", 0, 0),
    };
    host.metrics.llm_call(agent, outcome, prompt, completion);
    if host.llm.model().is_some() {
        let call = LlmCall {
            agent,
            model: result.as_ref().map(|c| c.model.as_str()).unwrap_or(&model),
            prompt_tokens: prompt,
            completion_tokens: completion,
            outcome,
            ms: started.elapsed().as_millis() as u64,
        };
        if let Err(e) = host.store.insert_llm_call(&call).await {
            tracing::warn!(agent, error = %e, "could not record an LLM call");
        }
    }
    result
}

/// The active version of `agent` and its source.
async fn active_source(host: &Arc<Host>, agent: &str) -> Result<(u32, Snapshot), GuestError> {
    crate::error::check_name(agent).map_err(to_guest)?;
    let record = host
        .store
        .agent(agent)
        .await
        .map_err(to_guest)?
        .ok_or_else(|| to_guest(Error::AgentNotFound(agent.to_string())))?;
    let version = record
        .active_version
        .ok_or_else(|| to_guest(Error::NoActiveVersion(agent.to_string())))?;
    let snapshot = edit::version_source(host, agent, version)
        .await
        .map_err(to_guest)?
        .ok_or_else(|| to_guest(Error::NoSource(agent.to_string())))?;
    Ok((version, snapshot))
}

async fn source_agents(host: &Arc<Host>, caller: &str) -> Result<Vec<AgentSource>, GuestError> {
    let mut agents = Vec::new();
    for record in host.store.agents().await.map_err(to_guest)? {
        if record.active_version.is_none() {
            continue;
        }
        match source_files(host, caller, &record.name).await {
            Ok(source) => agents.push(source),
            Err(GuestError::InvalidInput(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(agents)
}

async fn source_files(
    host: &Arc<Host>,
    caller: &str,
    agent: &str,
) -> Result<AgentSource, GuestError> {
    let (version, snapshot) = active_source(host, agent).await?;
    let editable = match edit::editable_by(host, caller, agent).await {
        Ok(()) => true,
        Err(Error::Denied(_)) => false,
        Err(e) => return Err(to_guest(e)),
    };
    Ok(AgentSource {
        agent: agent.to_string(),
        version,
        files: snapshot.files.into_keys().collect(),
        editable,
    })
}

async fn source_read(host: &Arc<Host>, agent: &str, path: &str) -> Result<String, GuestError> {
    source::check_path(path).map_err(to_guest)?;
    let (version, mut snapshot) = active_source(host, agent).await?;
    snapshot.files.remove(path).ok_or_else(|| {
        GuestError::InvalidInput(format!("version {version} of {agent} has no file {path:?}"))
    })
}

async fn source_findings(host: &Arc<Host>, agent: &str) -> Result<Vec<Finding>, GuestError> {
    let (_, snapshot) = active_source(host, agent).await?;
    let analysis = tokio::task::spawn_blocking(move || crate::analysis::analyze(&snapshot))
        .await
        .map_err(|e| GuestError::Unavailable(format!("analysis task: {e}")))?;
    Ok(analysis
        .findings
        .into_iter()
        .map(|f| Finding {
            file: f.file,
            line: f.line,
            column: f.column,
            kind: f.kind.to_string(),
            function: f.function,
            message: f.message,
        })
        .collect())
}

async fn source_logs(
    host: &Arc<Host>,
    agent: &str,
    limit: u32,
) -> Result<Vec<SourceLogLine>, GuestError> {
    crate::error::check_name(agent).map_err(to_guest)?;
    let lines = host.store.logs(agent, limit).await.map_err(to_guest)?;
    Ok(lines
        .into_iter()
        .map(|l| SourceLogLine {
            at_ms: l.at_ms,
            version: l.version,
            level: l.level,
            message: l.message,
        })
        .collect())
}

async fn source_outcome(host: &Arc<Host>, agent: &str, id: u64) -> Result<EditOutcome, GuestError> {
    crate::error::check_name(agent).map_err(to_guest)?;
    let id = i64::try_from(id).map_err(|_| to_guest(Error::EditNotFound(-1)))?;
    let edit = host
        .store
        .edit(agent, id)
        .await
        .map_err(to_guest)?
        .ok_or_else(|| to_guest(Error::EditNotFound(id)))?;
    Ok(EditOutcome {
        id: edit.id as u64,
        agent: edit.agent,
        state: edit.state,
        stage: edit.stage,
        code: edit.code,
        message: edit.message,
        version: edit.version,
        proposer: edit.proposer,
    })
}

/// Services for a shadow run (deploy checks, canary replays, health checks): reads see the
/// agent's real kv with the run's own writes on top; writes stay in a scratch overlay; emits
/// are discarded; log lines go to the agent's log marked as shadow.
pub struct ShadowServices {
    host: Arc<Host>,
    agent: String,
    version: Option<u32>,
    manifest: Manifest,
    overlay: std::sync::Mutex<std::collections::BTreeMap<String, Option<String>>>,
    emitted: std::sync::atomic::AtomicU64,
}

impl ShadowServices {
    pub fn new(host: Arc<Host>, agent: &str, version: Option<u32>, manifest: &Manifest) -> Self {
        ShadowServices {
            host,
            agent: agent.to_string(),
            version,
            manifest: manifest.clone(),
            overlay: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            emitted: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn overlay(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Option<String>>> {
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events the shadow run tried to emit (and that were discarded).
    pub fn emitted(&self) -> u64 {
        self.emitted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl HostServices for ShadowServices {
    fn log(&self, level: Level, message: &str) {
        self.host.log(LogLine {
            agent: self.agent.clone(),
            version: self.version,
            level: level.as_str(),
            message: format!("[shadow] {message}"),
            at_ms: now_ms(),
        });
    }

    async fn emit(&self, _topic: &str, _payload: &str) -> Result<(), GuestError> {
        self.emitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn metric(&self, _name: &str, _value: f64) {}

    fn config(&self, key: &str) -> Option<String> {
        self.manifest.config.get(key).cloned()
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, GuestError> {
        if let Some(value) = self.overlay().get(key) {
            return Ok(value.clone());
        }
        self.host
            .store
            .kv_get(&self.agent, key)
            .await
            .map_err(unavailable)
    }

    async fn kv_set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        self.overlay()
            .insert(key.to_string(), Some(value.to_string()));
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), GuestError> {
        self.overlay().insert(key.to_string(), None);
        Ok(())
    }

    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        let stored = self
            .host
            .store
            .kv_keys(&self.agent, prefix)
            .await
            .map_err(unavailable)?;
        let mut keys: std::collections::BTreeSet<String> = stored.into_iter().collect();
        for (key, value) in self.overlay().iter() {
            if key.starts_with(prefix) {
                match value {
                    Some(_) => keys.insert(key.clone()),
                    None => keys.remove(key),
                };
            }
        }
        Ok(keys.into_iter().collect())
    }

    fn granted(&self, capability: &str) -> bool {
        self.manifest.grants(capability)
    }

    fn llm_model(&self) -> Option<String> {
        self.host.llm.model().map(str::to_string)
    }

    async fn llm_complete(&self, _request: LlmRequest) -> Result<LlmCompletion, GuestError> {
        Err(GuestError::Unavailable(
            "a shadow run (check, canary or health) asks no LLM".to_string(),
        ))
    }

    async fn http_fetch(&self, _request: HttpRequest) -> Result<HttpResponse, GuestError> {
        Err(GuestError::Unavailable(
            "a shadow run (check, canary or health) sends no request: it may have effects"
                .to_string(),
        ))
    }

    async fn source_agents(&self) -> Result<Vec<AgentSource>, GuestError> {
        source_agents(&self.host, &self.agent).await
    }

    async fn source_files(&self, agent: &str) -> Result<AgentSource, GuestError> {
        source_files(&self.host, &self.agent, agent).await
    }

    async fn source_read(&self, agent: &str, path: &str) -> Result<String, GuestError> {
        source_read(&self.host, agent, path).await
    }

    async fn source_findings(&self, agent: &str) -> Result<Vec<Finding>, GuestError> {
        source_findings(&self.host, agent).await
    }

    async fn source_logs(&self, agent: &str, limit: u32) -> Result<Vec<SourceLogLine>, GuestError> {
        source_logs(&self.host, agent, limit).await
    }

    async fn source_propose(&self, _proposal: Proposal) -> Result<u64, GuestError> {
        Err(GuestError::Unavailable(
            "a shadow run (check, canary or health) proposes no edit".to_string(),
        ))
    }

    async fn source_outcome(&self, agent: &str, id: u64) -> Result<EditOutcome, GuestError> {
        source_outcome(&self.host, agent, id).await
    }
}
