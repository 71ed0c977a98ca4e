//! What a guest can reach: the per-invocation store state, the services the host provides
//! through [`HostServices`], the WIT interfaces wired to them, and WASI p2 locked down.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{
    Agent, AgentSource, EditOutcome, Finding, GuestError, HttpRequest, HttpResponse, Level,
    LlmCompletion, LlmRequest, Proposal, SourceChange, SourceLogLine, http, kv, llm, runtime,
    source, types,
};
use crate::limits::MemoryLimiter;

/// Longest key an agent may store. Keys are identifiers, not data.
pub const MAX_KV_KEY_BYTES: usize = 512;

/// Largest value, event payload or log line an agent may hand the host in one call, so a guest
/// cannot make the host buffer without end.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Largest prompt or proposed change an agent may hand the host in one call: room for an
/// agent's whole source (the host's source limit) with its evidence.
pub const MAX_PROMPT_BYTES: usize = 4 << 20;

/// Most log lines an agent may read of another in one call.
const MAX_LOG_LINES: u32 = 1000;

/// Bytes of stdout and stderr kept per invocation; the rest is dropped. Agents log through
/// `runtime.log`; stdio is for panics and stray prints.
const STDIO_CAPACITY: usize = 64 << 10;

/// The services an agent reaches through its imports, implemented by the host for real agents
/// and by [`MemoryServices`] for tests and shadow runs.
#[async_trait]
pub trait HostServices: Send + Sync {
    /// Record a log line from the agent (its `runtime.log` calls and its stdout/stderr).
    fn log(&self, level: Level, message: &str);
    /// Publish an event on the bus.
    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError>;
    /// Record a measurement.
    fn metric(&self, name: &str, value: f64);
    /// A value from the agent's manifest `[config]` table.
    fn config(&self, key: &str) -> Option<String>;
    /// Read a key of the agent's private store.
    async fn kv_get(&self, key: &str) -> Result<Option<String>, GuestError>;
    /// Write a key of the agent's private store.
    async fn kv_set(&self, key: &str, value: &str) -> Result<(), GuestError>;
    /// Remove a key of the agent's private store.
    async fn kv_delete(&self, key: &str) -> Result<(), GuestError>;
    /// List the keys that start with `prefix`, sorted.
    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, GuestError>;

    /// Whether the agent's manifest grants the interface `capability` (`llm`, `source`).
    /// Calls to an interface that is not granted are `denied` before they reach the services.
    fn granted(&self, _capability: &str) -> bool {
        false
    }

    /// The model `llm.complete` would ask, if an endpoint is configured.
    fn llm_model(&self) -> Option<String> {
        None
    }

    /// Ask the model to continue a conversation.
    async fn llm_complete(&self, _request: LlmRequest) -> Result<LlmCompletion, GuestError> {
        Err(not_served("llm"))
    }

    /// Send an HTTP request for the agent (the manifest's origins are the host's to check).
    async fn http_fetch(&self, _request: HttpRequest) -> Result<HttpResponse, GuestError> {
        Err(not_served("http"))
    }

    /// Agents that have source, with their active versions.
    async fn source_agents(&self) -> Result<Vec<AgentSource>, GuestError> {
        Err(not_served("source"))
    }

    /// The file list of an agent's active source.
    async fn source_files(&self, _agent: &str) -> Result<AgentSource, GuestError> {
        Err(not_served("source"))
    }

    /// One file of an agent's active source.
    async fn source_read(&self, _agent: &str, _path: &str) -> Result<String, GuestError> {
        Err(not_served("source"))
    }

    /// The findings of the analysis of an agent's active source.
    async fn source_findings(&self, _agent: &str) -> Result<Vec<Finding>, GuestError> {
        Err(not_served("source"))
    }

    /// The newest lines of an agent's log.
    async fn source_logs(
        &self,
        _agent: &str,
        _limit: u32,
    ) -> Result<Vec<SourceLogLine>, GuestError> {
        Err(not_served("source"))
    }

    /// Propose an edit; answers its id.
    async fn source_propose(&self, _proposal: Proposal) -> Result<u64, GuestError> {
        Err(not_served("source"))
    }

    /// Where an edit stands.
    async fn source_outcome(&self, _agent: &str, _id: u64) -> Result<EditOutcome, GuestError> {
        Err(not_served("source"))
    }
}

fn not_served(interface: &str) -> GuestError {
    GuestError::Unavailable(format!("the {interface} interface is not served here"))
}

/// The error for a call to an interface the manifest does not grant.
fn denied(interface: &str) -> GuestError {
    GuestError::Denied(format!(
        "the {interface} interface is not granted: add \"{interface}\" to [capabilities] grant in agent.toml"
    ))
}

/// The data of one store: one invocation of one agent.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) services: Arc<dyn HostServices>,
    pub(crate) stdout: MemoryOutputPipe,
    pub(crate) stderr: MemoryOutputPipe,
}

impl HostState {
    pub(crate) fn new(services: Arc<dyn HostServices>, memory_bytes: usize) -> Self {
        let stdout = MemoryOutputPipe::new(STDIO_CAPACITY);
        let stderr = MemoryOutputPipe::new(STDIO_CAPACITY);
        // No preopened directories, no environment, no arguments, no sockets: a guest sees
        // clocks, random and its own stdio, nothing of the host.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            services,
            stdout,
            stderr,
        }
    }

    /// Hand what the guest wrote to stdout and stderr to the agent's log, line by line.
    pub(crate) fn flush_stdio(&self) {
        for (pipe, level) in [(&self.stdout, Level::Info), (&self.stderr, Level::Warn)] {
            let bytes = pipe.contents();
            if bytes.is_empty() {
                continue;
            }
            for line in String::from_utf8_lossy(&bytes).lines() {
                if !line.trim().is_empty() {
                    self.services.log(level, line);
                }
            }
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Build the linker every agent is instantiated against.
pub(crate) fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    Agent::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
    Ok(linker)
}

fn too_large(what: &str, len: usize, max: usize) -> GuestError {
    GuestError::InvalidInput(format!("{what} is {len} bytes; the limit is {max}"))
}

fn check_key(key: &str) -> Result<(), GuestError> {
    if key.len() > MAX_KV_KEY_BYTES {
        return Err(too_large("key", key.len(), MAX_KV_KEY_BYTES));
    }
    Ok(())
}

impl types::Host for HostState {}

impl runtime::Host for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let message = truncate(&message, MAX_VALUE_BYTES);
        self.services.log(level, message);
        Ok(())
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        Ok(now_ms())
    }

    async fn emit(
        &mut self,
        topic: String,
        payload: String,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        if payload.len() > MAX_VALUE_BYTES {
            return Ok(Err(too_large("payload", payload.len(), MAX_VALUE_BYTES)));
        }
        if topic.is_empty() || topic.len() > MAX_KV_KEY_BYTES {
            return Ok(Err(GuestError::InvalidInput(
                "topic must be 1 to 512 bytes".to_string(),
            )));
        }
        Ok(self.services.emit(&topic, &payload).await)
    }

    async fn metric(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.services
            .metric(truncate(&name, MAX_KV_KEY_BYTES), value);
        Ok(())
    }

    async fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.services.config(&key))
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, GuestError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(self.services.kv_get(&key).await)
    }

    async fn set(
        &mut self,
        key: String,
        value: String,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        if value.len() > MAX_VALUE_BYTES {
            return Ok(Err(too_large("value", value.len(), MAX_VALUE_BYTES)));
        }
        Ok(self.services.kv_set(&key, &value).await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), GuestError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(self.services.kv_delete(&key).await)
    }

    async fn keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, GuestError>> {
        if let Err(e) = check_key(&prefix) {
            return Ok(Err(e));
        }
        Ok(self.services.kv_keys(&prefix).await)
    }
}

impl HostState {
    /// `Err(denied)` unless the manifest grants `interface`.
    fn grant(&self, interface: &str) -> Result<(), GuestError> {
        if self.services.granted(interface) {
            Ok(())
        } else {
            Err(denied(interface))
        }
    }
}

/// Answer a guest call: the host's error for the guest, never a trap.
macro_rules! guarded {
    ($check:expr, $call:expr) => {
        match $check {
            Err(e) => Ok(Err(e)),
            Ok(()) => Ok($call),
        }
    };
}

impl llm::Host for HostState {
    async fn model(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self
            .grant("llm")
            .ok()
            .and_then(|()| self.services.llm_model()))
    }

    async fn complete(
        &mut self,
        request: LlmRequest,
    ) -> wasmtime::Result<Result<LlmCompletion, GuestError>> {
        let size: usize = request.messages.iter().map(|m| m.content.len()).sum();
        let check = self.grant("llm").and_then(|()| {
            if request.messages.is_empty() {
                return Err(GuestError::InvalidInput(
                    "a completion needs at least one message".to_string(),
                ));
            }
            if size > MAX_PROMPT_BYTES {
                return Err(too_large("prompt", size, MAX_PROMPT_BYTES));
            }
            Ok(())
        });
        guarded!(check, self.services.llm_complete(request).await)
    }
}

impl http::Host for HostState {
    async fn fetch(
        &mut self,
        request: HttpRequest,
    ) -> wasmtime::Result<Result<HttpResponse, GuestError>> {
        let check = self.grant("http").and_then(|()| {
            if request.body.len() > MAX_VALUE_BYTES {
                Err(too_large(
                    "request body",
                    request.body.len(),
                    MAX_VALUE_BYTES,
                ))
            } else {
                Ok(())
            }
        });
        guarded!(check, self.services.http_fetch(request).await)
    }
}

impl source::Host for HostState {
    async fn agents(&mut self) -> wasmtime::Result<Result<Vec<AgentSource>, GuestError>> {
        guarded!(self.grant("source"), self.services.source_agents().await)
    }

    async fn files(&mut self, agent: String) -> wasmtime::Result<Result<AgentSource, GuestError>> {
        guarded!(
            self.grant("source"),
            self.services.source_files(&agent).await
        )
    }

    async fn read(
        &mut self,
        agent: String,
        path: String,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        guarded!(
            self.grant("source"),
            self.services.source_read(&agent, &path).await
        )
    }

    async fn findings(
        &mut self,
        agent: String,
    ) -> wasmtime::Result<Result<Vec<Finding>, GuestError>> {
        guarded!(
            self.grant("source"),
            self.services.source_findings(&agent).await
        )
    }

    async fn logs(
        &mut self,
        agent: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<SourceLogLine>, GuestError>> {
        guarded!(
            self.grant("source"),
            self.services
                .source_logs(&agent, limit.min(MAX_LOG_LINES))
                .await
        )
    }

    async fn propose(&mut self, proposal: Proposal) -> wasmtime::Result<Result<u64, GuestError>> {
        let size = match &proposal.change {
            SourceChange::Diff(diff) => diff.len(),
            SourceChange::Files(files) => {
                files.iter().map(|f| f.path.len() + f.content.len()).sum()
            }
        } + proposal.reason.len();
        let check = self.grant("source").and_then(|()| {
            if size > MAX_PROMPT_BYTES {
                Err(too_large("proposal", size, MAX_PROMPT_BYTES))
            } else {
                Ok(())
            }
        });
        guarded!(check, self.services.source_propose(proposal).await)
    }

    async fn outcome(
        &mut self,
        agent: String,
        id: u64,
    ) -> wasmtime::Result<Result<EditOutcome, GuestError>> {
        guarded!(
            self.grant("source"),
            self.services.source_outcome(&agent, id).await
        )
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Host services kept in memory: a kv map, a list of emitted events and of log lines. Used by
/// tests, benchmarks and shadow runs whose writes must not reach the real store.
#[derive(Default)]
pub struct MemoryServices {
    kv: Mutex<BTreeMap<String, String>>,
    emitted: Mutex<Vec<(String, String)>>,
    logs: Mutex<Vec<(Level, String)>>,
    config: BTreeMap<String, String>,
    grants: Vec<String>,
}

impl MemoryServices {
    /// Services whose `runtime.config` answers from `config`.
    pub fn with_config(config: BTreeMap<String, String>) -> Self {
        MemoryServices {
            config,
            ..MemoryServices::default()
        }
    }

    /// Services that grant these interfaces (they still serve none of them).
    pub fn with_grants(grants: &[&str]) -> Self {
        MemoryServices {
            grants: grants.iter().map(|g| g.to_string()).collect(),
            ..MemoryServices::default()
        }
    }

    /// The events emitted so far, as `(topic, payload)`.
    pub fn emitted(&self) -> Vec<(String, String)> {
        lock(&self.emitted).clone()
    }

    /// The log lines written so far.
    pub fn logs(&self) -> Vec<(Level, String)> {
        lock(&self.logs).clone()
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &str) -> Option<String> {
        lock(&self.kv).get(key).cloned()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl HostServices for MemoryServices {
    fn log(&self, level: Level, message: &str) {
        lock(&self.logs).push((level, message.to_string()));
    }

    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError> {
        lock(&self.emitted).push((topic.to_string(), payload.to_string()));
        Ok(())
    }

    fn metric(&self, _name: &str, _value: f64) {}

    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    fn granted(&self, capability: &str) -> bool {
        self.grants.iter().any(|g| g == capability)
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, GuestError> {
        Ok(lock(&self.kv).get(key).cloned())
    }

    async fn kv_set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        lock(&self.kv).insert(key.to_string(), value.to_string());
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), GuestError> {
        lock(&self.kv).remove(key);
        Ok(())
    }

    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        Ok(lock(&self.kv)
            .range(prefix.to_string()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}
