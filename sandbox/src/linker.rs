//! What a guest can reach: the per-invocation store state, the WIT interfaces wired to the
//! [`Services`] of the invocation, and WASI p2 locked down.

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{
    Account, Agent, AgentBudget, AgentSource, AgentWindow, AsOfTime, Bar, BudgetCaps, EditOutcome,
    Filing, Finding, FleetAlert, GuestError, HttpRequest, HttpResponse, Level, LlmCompletion,
    LlmRequest, NewsItem, Order, OrderRequest, Position, Proposal, Recalled, ServedPrompt,
    SourceChange, SourceLogLine, Timeframe, backtest, broker, budget, fleet, fundamentals, http,
    kv, llm, market, memory, prompts, runtime, source, types,
};
use crate::limits::MemoryLimiter;
use crate::services::Services;
use crate::stdio::CappedOutput;

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

/// The data of one store: one invocation of one agent.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) services: Services,
    pub(crate) stdout: CappedOutput,
    pub(crate) stderr: CappedOutput,
    /// When the call under way must end (a session's calls each set it).
    pub(crate) deadline: std::time::Instant,
    /// The virtual clock of a replayed session (milliseconds since the Unix epoch).
    clock: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl HostState {
    /// The state of one invocation: its services, its memory limit, `stdio_bytes` of stdout
    /// and of stderr kept, and the guest's clocks and randomness replaced by `replay`'s when
    /// given.
    pub(crate) fn build(
        services: Services,
        memory_bytes: usize,
        stdio_bytes: usize,
        replay: Option<&crate::session::Replay>,
    ) -> Self {
        let stdout = CappedOutput::new(stdio_bytes);
        let stderr = CappedOutput::new(stdio_bytes);
        // No preopened directories, no environment, no arguments, no sockets: a guest sees
        // clocks, random and its own stdio, nothing of the host.
        let mut builder = WasiCtx::builder();
        builder
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }));
        if let Some(replay) = replay {
            replay.install(&mut builder);
        }
        let wasi = builder.build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            services,
            stdout,
            stderr,
            deadline: std::time::Instant::now(),
            clock: replay.map(|r| r.clock.clone()),
        }
    }

    /// Hand what the guest wrote to stdout and stderr to the agent's log, line by line, with
    /// a line saying how much was cut past the cap; the streams are empty afterwards.
    pub(crate) fn flush_stdio(&self) {
        for (pipe, name, level) in [
            (&self.stdout, "stdout", Level::Info),
            (&self.stderr, "stderr", Level::Warn),
        ] {
            let (bytes, dropped) = pipe.take();
            for line in String::from_utf8_lossy(&bytes).lines() {
                if !line.trim().is_empty() {
                    self.services.runtime.log(level, line);
                }
            }
            if dropped > 0 {
                self.services.runtime.log(
                    Level::Warn,
                    &format!(
                        "[{name} cut: {dropped} bytes past the {} kept per call were dropped]",
                        pipe.capacity()
                    ),
                );
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
        self.services.runtime.log(level, message);
        Ok(())
    }

    async fn now_ms(&mut self) -> wasmtime::Result<u64> {
        // A replayed session's clock, like its WASI clocks.
        Ok(match &self.clock {
            Some(clock) => clock.load(std::sync::atomic::Ordering::Relaxed),
            None => now_ms(),
        })
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
        Ok(self.services.runtime.emit(&topic, &payload).await)
    }

    async fn metric(&mut self, name: String, value: f64) -> wasmtime::Result<()> {
        self.services
            .runtime
            .metric(truncate(&name, MAX_KV_KEY_BYTES), value);
        Ok(())
    }

    async fn config(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.services.runtime.config(&key))
    }
}

impl kv::Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, GuestError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(self.services.kv.get(&key).await)
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
        Ok(self.services.kv.set(&key, &value).await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), GuestError>> {
        if let Err(e) = check_key(&key) {
            return Ok(Err(e));
        }
        Ok(self.services.kv.delete(&key).await)
    }

    async fn keys(&mut self, prefix: String) -> wasmtime::Result<Result<Vec<String>, GuestError>> {
        if let Err(e) = check_key(&prefix) {
            return Ok(Err(e));
        }
        Ok(self.services.kv.keys(&prefix).await)
    }
}

/// Answer a guest call: the host's error for the guest, never a trap.
macro_rules! guarded {
    ($check:expr, $served:ident => $call:expr) => {
        match $check {
            Err(e) => Ok(Err(e)),
            Ok($served) => Ok($call.await),
        }
    };
}

impl llm::Host for HostState {
    async fn model(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self
            .services
            .llm
            .get("llm")
            .ok()
            .and_then(|llm| llm.model()))
    }

    async fn complete(
        &mut self,
        request: LlmRequest,
    ) -> wasmtime::Result<Result<LlmCompletion, GuestError>> {
        let size: usize = request.messages.iter().map(|m| m.content.len()).sum();
        let check = self.services.llm.get("llm").and_then(|llm| {
            if request.messages.is_empty() {
                return Err(GuestError::InvalidInput(
                    "a completion needs at least one message".to_string(),
                ));
            }
            if size > MAX_PROMPT_BYTES {
                return Err(too_large("prompt", size, MAX_PROMPT_BYTES));
            }
            Ok(llm)
        });
        guarded!(check, llm => llm.complete(request))
    }
}

impl http::Host for HostState {
    async fn fetch(
        &mut self,
        request: HttpRequest,
    ) -> wasmtime::Result<Result<HttpResponse, GuestError>> {
        let check = self.services.http.get("http").and_then(|http| {
            if request.body.len() > MAX_VALUE_BYTES {
                Err(too_large(
                    "request body",
                    request.body.len(),
                    MAX_VALUE_BYTES,
                ))
            } else {
                Ok(http)
            }
        });
        guarded!(check, http => http.fetch(request))
    }
}

impl source::Host for HostState {
    async fn agents(&mut self) -> wasmtime::Result<Result<Vec<AgentSource>, GuestError>> {
        guarded!(
            self.services.source.get("source"),
            source => source.agents()
        )
    }

    async fn files(&mut self, agent: String) -> wasmtime::Result<Result<AgentSource, GuestError>> {
        guarded!(
            self.services.source.get("source"),
            source => source.files(&agent)
        )
    }

    async fn read(
        &mut self,
        agent: String,
        path: String,
    ) -> wasmtime::Result<Result<String, GuestError>> {
        guarded!(
            self.services.source.get("source"),
            source => source.read(&agent, &path)
        )
    }

    async fn findings(
        &mut self,
        agent: String,
    ) -> wasmtime::Result<Result<Vec<Finding>, GuestError>> {
        guarded!(
            self.services.source.get("source"),
            source => source.findings(&agent)
        )
    }

    async fn logs(
        &mut self,
        agent: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<SourceLogLine>, GuestError>> {
        guarded!(
            self.services.source.get("source"),
            source => source.logs(&agent, limit.min(MAX_LOG_LINES))
        )
    }

    async fn propose(&mut self, proposal: Proposal) -> wasmtime::Result<Result<u64, GuestError>> {
        let size = match &proposal.change {
            SourceChange::Diff(diff) => diff.len(),
            SourceChange::Files(files) => {
                files.iter().map(|f| f.path.len() + f.content.len()).sum()
            }
        } + proposal.reason.len();
        let check = self.services.source.get("source").and_then(|source| {
            if size > MAX_PROMPT_BYTES {
                Err(too_large("proposal", size, MAX_PROMPT_BYTES))
            } else {
                Ok(source)
            }
        });
        guarded!(check, source => source
            .propose(proposal))
    }

    async fn outcome(
        &mut self,
        agent: String,
        id: u64,
    ) -> wasmtime::Result<Result<EditOutcome, GuestError>> {
        guarded!(
            self.services.source.get("source"),
            source => source.outcome(&agent, id)
        )
    }
}

/// Longest symbol, collection name, order id or date an agent may pass.
const MAX_NAME_BYTES: usize = 256;

fn check_name(what: &str, value: &str) -> Result<(), GuestError> {
    if value.len() > MAX_NAME_BYTES {
        return Err(too_large(what, value.len(), MAX_NAME_BYTES));
    }
    Ok(())
}

impl market::Host for HostState {
    async fn as_of(&mut self) -> wasmtime::Result<AsOfTime> {
        Ok(match self.services.market.get("market") {
            Ok(market) => market.as_of(),
            Err(_) => AsOfTime {
                at_ms: now_ms(),
                date: String::new(),
            },
        })
    }

    async fn symbols(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(self
            .services
            .market
            .get("market")
            .map(|m| m.symbols())
            .unwrap_or_default())
    }

    async fn bars(
        &mut self,
        symbol: String,
        timeframe: Timeframe,
        from: String,
        to: String,
    ) -> wasmtime::Result<Result<Vec<Bar>, GuestError>> {
        let check = self.services.market.get("market").and_then(|m| {
            check_name("symbol", &symbol)?;
            check_name("from", &from)?;
            check_name("to", &to)?;
            Ok(m)
        });
        guarded!(check, market => market.bars(&symbol, timeframe, &from, &to))
    }

    async fn latest(
        &mut self,
        symbol: String,
    ) -> wasmtime::Result<Result<Option<Bar>, GuestError>> {
        let check = self
            .services
            .market
            .get("market")
            .and_then(|m| check_name("symbol", &symbol).map(|()| m));
        guarded!(check, market => market.latest(&symbol))
    }

    async fn news(
        &mut self,
        symbol: String,
        since_ms: u64,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<NewsItem>, GuestError>> {
        let check = self
            .services
            .market
            .get("market")
            .and_then(|m| check_name("symbol", &symbol).map(|()| m));
        guarded!(check, market => market.news(&symbol, since_ms, limit.min(MAX_LOG_LINES)))
    }
}

impl broker::Host for HostState {
    async fn account(&mut self) -> wasmtime::Result<Result<Account, GuestError>> {
        guarded!(self.services.broker.get("broker"), broker => broker.account())
    }

    async fn positions(&mut self) -> wasmtime::Result<Result<Vec<Position>, GuestError>> {
        guarded!(self.services.broker.get("broker"), broker => broker.positions())
    }

    async fn orders(
        &mut self,
        open_only: bool,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Order>, GuestError>> {
        guarded!(
            self.services.broker.get("broker"),
            broker => broker.orders(open_only, limit.min(MAX_LOG_LINES))
        )
    }

    async fn submit(
        &mut self,
        request: OrderRequest,
    ) -> wasmtime::Result<Result<Order, GuestError>> {
        let check = self.services.broker.get("broker").and_then(|b| {
            check_name("symbol", &request.symbol)?;
            check_name("client order id", &request.client_order_id)?;
            Ok(b)
        });
        guarded!(check, broker => broker.submit(request))
    }

    async fn cancel(&mut self, order_id: String) -> wasmtime::Result<Result<Order, GuestError>> {
        let check = self
            .services
            .broker
            .get("broker")
            .and_then(|b| check_name("order id", &order_id).map(|()| b));
        guarded!(check, broker => broker.cancel(&order_id))
    }
}

impl memory::Host for HostState {
    async fn remember(
        &mut self,
        collection: String,
        text: String,
        metadata: String,
    ) -> wasmtime::Result<Result<u64, GuestError>> {
        let check = self.services.memory.get("memory").and_then(|m| {
            check_name("collection", &collection)?;
            if text.len() + metadata.len() > MAX_VALUE_BYTES {
                return Err(too_large(
                    "memory",
                    text.len() + metadata.len(),
                    MAX_VALUE_BYTES,
                ));
            }
            Ok(m)
        });
        guarded!(check, memory => memory.remember(&collection, &text, &metadata))
    }

    async fn recall(
        &mut self,
        collection: String,
        query: String,
        k: u32,
        filter: String,
    ) -> wasmtime::Result<Result<Vec<Recalled>, GuestError>> {
        let check = self.services.memory.get("memory").and_then(|m| {
            check_name("collection", &collection)?;
            if query.len() + filter.len() > MAX_VALUE_BYTES {
                return Err(too_large(
                    "query",
                    query.len() + filter.len(),
                    MAX_VALUE_BYTES,
                ));
            }
            Ok(m)
        });
        guarded!(check, memory => memory.recall(&collection, &query, k.min(MAX_LOG_LINES), &filter))
    }

    async fn forget(
        &mut self,
        collection: String,
        id: u64,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        let check = self
            .services
            .memory
            .get("memory")
            .and_then(|m| check_name("collection", &collection).map(|()| m));
        guarded!(check, memory => memory.forget(&collection, id))
    }
}

impl budget::Host for HostState {
    async fn budgets(&mut self) -> wasmtime::Result<Result<Vec<AgentBudget>, GuestError>> {
        guarded!(self.services.budget.get("budget"), budget => budget.budgets())
    }

    async fn caps(&mut self) -> wasmtime::Result<BudgetCaps> {
        Ok(match self.services.budget.get("budget") {
            Ok(budget) => budget.caps(),
            Err(_) => BudgetCaps {
                agent_tokens_per_day: 0,
                agent_usd_per_day: 0.0,
                total_tokens_per_day: 0,
                total_usd_per_day: 0.0,
            },
        })
    }

    async fn set(
        &mut self,
        agent: String,
        tokens_per_day: u64,
        usd_per_day: f64,
    ) -> wasmtime::Result<Result<AgentBudget, GuestError>> {
        let check = self
            .services
            .budget
            .get("budget")
            .and_then(|b| check_name("agent", &agent).map(|()| b));
        guarded!(check, budget => budget.set(&agent, tokens_per_day, usd_per_day))
    }
}

impl backtest::Host for HostState {
    async fn run(&mut self, spec: String) -> wasmtime::Result<Result<String, GuestError>> {
        guarded!(self.services.backtest.get("backtest"), backtest => backtest.run(&spec))
    }
}

/// The longest window `fleet.telemetry` reads: a day, in milliseconds.
pub const MAX_FLEET_WINDOW_MS: u64 = 86_400_000;

impl fleet::Host for HostState {
    async fn telemetry(
        &mut self,
        window_ms: u64,
    ) -> wasmtime::Result<Result<Vec<AgentWindow>, GuestError>> {
        let check = self.services.fleet.get("fleet").and_then(|f| {
            if (1..=MAX_FLEET_WINDOW_MS).contains(&window_ms) {
                Ok(f)
            } else {
                Err(GuestError::InvalidInput(format!(
                    "window {window_ms} ms: 1 ms to a day"
                )))
            }
        });
        guarded!(check, fleet => fleet.telemetry(window_ms))
    }

    async fn alerts(
        &mut self,
        open_only: bool,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<FleetAlert>, GuestError>> {
        guarded!(self.services.fleet.get("fleet"), fleet => fleet.alerts(open_only, limit.min(1000)))
    }

    async fn propose(&mut self, decision: String) -> wasmtime::Result<Result<String, GuestError>> {
        let check = self.services.fleet.get("fleet").and_then(|f| {
            if decision.len() > MAX_VALUE_BYTES {
                Err(too_large("decision", decision.len(), MAX_VALUE_BYTES))
            } else {
                Ok(f)
            }
        });
        guarded!(check, fleet => fleet.propose(&decision))
    }

    async fn check(&mut self, decision: String) -> wasmtime::Result<Result<String, GuestError>> {
        let check = self.services.fleet.get("fleet").and_then(|f| {
            if decision.len() > MAX_VALUE_BYTES {
                Err(too_large("decision", decision.len(), MAX_VALUE_BYTES))
            } else {
                Ok(f)
            }
        });
        guarded!(check, fleet => fleet.check(&decision))
    }

    async fn raise_alert(
        &mut self,
        agent: String,
        kind: String,
        priority: String,
        message: String,
    ) -> wasmtime::Result<Result<i64, GuestError>> {
        let check = self.services.fleet.get("fleet").and_then(|f| {
            check_name("agent", &agent)?;
            let kind_ok = (1..=64).contains(&kind.len())
                && kind
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !kind_ok {
                return Err(GuestError::InvalidInput(format!(
                    "alert kind {kind:?}: 1 to 64 of a-z 0-9 _"
                )));
            }
            if !matches!(priority.as_str(), "critical" | "high" | "medium" | "low") {
                return Err(GuestError::InvalidInput(format!(
                    "priority {priority:?}: critical, high, medium or low"
                )));
            }
            if message.len() > MAX_KV_KEY_BYTES * 8 {
                return Err(too_large("message", message.len(), MAX_KV_KEY_BYTES * 8));
            }
            Ok(f)
        });
        guarded!(check, fleet => fleet.raise_alert(&agent, &kind, &priority, &message))
    }
}

/// Most filings one `fundamentals.filings` call answers.
pub const MAX_FILINGS: u32 = 20;

impl fundamentals::Host for HostState {
    async fn filings(
        &mut self,
        symbol: String,
        timeframe: String,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<Filing>, GuestError>> {
        let check = self
            .services
            .fundamentals
            .get("fundamentals")
            .and_then(|f| match timeframe.as_str() {
                "annual" | "quarterly" if (1..=MAX_FILINGS).contains(&limit) => Ok(f),
                "annual" | "quarterly" => Err(GuestError::InvalidInput(format!(
                    "limit {limit}: 1 to {MAX_FILINGS} filings"
                ))),
                other => Err(GuestError::InvalidInput(format!(
                    "timeframe {other:?}: annual or quarterly"
                ))),
            });
        guarded!(check, fundamentals => fundamentals.filings(&symbol, &timeframe, limit))
    }
}

/// Longest prompt name or experiment unit a `prompts` call takes.
const MAX_PROMPT_NAME_BYTES: usize = 256;

impl prompts::Host for HostState {
    async fn get(
        &mut self,
        name: String,
        unit: String,
        variables: String,
    ) -> wasmtime::Result<Result<ServedPrompt, GuestError>> {
        let check = self.services.prompts.get("prompts").and_then(|p| {
            if name.is_empty() || name.len() > MAX_PROMPT_NAME_BYTES {
                return Err(GuestError::InvalidInput(format!(
                    "prompt name of {} bytes: 1 to {MAX_PROMPT_NAME_BYTES}",
                    name.len()
                )));
            }
            if unit.len() > MAX_PROMPT_NAME_BYTES {
                return Err(too_large("unit", unit.len(), MAX_PROMPT_NAME_BYTES));
            }
            if variables.len() > MAX_PROMPT_BYTES {
                return Err(too_large("variables", variables.len(), MAX_PROMPT_BYTES));
            }
            Ok(p)
        });
        guarded!(check, prompts => prompts.get(&name, &unit, &variables))
    }

    async fn report(
        &mut self,
        use_id: i64,
        score: Option<f64>,
        success: Option<bool>,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        let check = self.services.prompts.get("prompts").and_then(|p| {
            if score.is_some_and(|s| !s.is_finite()) {
                return Err(GuestError::InvalidInput(
                    "a score is a finite number".to_string(),
                ));
            }
            if score.is_none() && success.is_none() {
                return Err(GuestError::InvalidInput(
                    "an outcome is a score, a success or both".to_string(),
                ));
            }
            Ok(p)
        });
        guarded!(check, prompts => prompts.report(use_id, score, success))
    }

    async fn catalog(&mut self) -> wasmtime::Result<Result<String, GuestError>> {
        guarded!(self.services.prompts.get("prompts"), prompts => prompts.catalog())
    }

    async fn write(
        &mut self,
        name: String,
        system: String,
        template: String,
        note: String,
    ) -> wasmtime::Result<Result<u32, GuestError>> {
        let check = self.services.prompts.get("prompts").and_then(|p| {
            let size = system.len() + template.len() + note.len();
            if size > MAX_PROMPT_BYTES {
                return Err(too_large("prompt", size, MAX_PROMPT_BYTES));
            }
            Ok(p)
        });
        guarded!(check, prompts => prompts.write(&name, &system, &template, &note))
    }

    async fn start_experiment(
        &mut self,
        spec: String,
    ) -> wasmtime::Result<Result<i64, GuestError>> {
        let check = self.services.prompts.get("prompts").and_then(|p| {
            if spec.len() > MAX_VALUE_BYTES {
                Err(too_large("experiment", spec.len(), MAX_VALUE_BYTES))
            } else {
                Ok(p)
            }
        });
        guarded!(check, prompts => prompts.start_experiment(&spec))
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
