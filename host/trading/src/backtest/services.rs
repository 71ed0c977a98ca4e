//! What a stage of a backtest reaches: the interfaces of the contract served from the run
//! alone. `market` answers at the bar's as-of (asking past it is recorded as look-ahead and
//! ends the run), `broker` is the run's paper [`Account`], `llm` answers from the recording
//! when it has the prompt and records what the model answers when it does not, `kv` is the
//! run's own. `http`, `source`, `budget` and `memory` reach outside the run and are not
//! served: they answer `denied`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::NaiveDate;
use overseer_kernel::capability::LlmBudgetConfig;
use overseer_market::Market;
use overseer_sandbox::{
    Account as WitAccount, AgentBudget, AgentSource, AsOfTime, Bar, BudgetCaps, EditOutcome,
    Finding, GuestError, HttpRequest, HttpResponse, Level, LlmCompletion, LlmRequest, LlmUsage,
    NewsItem, Order, OrderRequest as WitOrder, Position, Proposal, Recalled, SourceLogLine,
    Timeframe,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::book::Account;
use crate::capability::{
    guest_error, known_symbol, latest_bar, order_request, parse_day, wit_bar, wit_order,
    wit_position,
};
use crate::desk::{Placer, as_of_ms};
use crate::paper;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An event a stage emitted, waiting for delivery.
#[derive(Debug, Clone)]
pub struct Emitted {
    pub source: Cow<'static, str>,
    pub topic: Cow<'static, str>,
    pub payload: Arc<str>,
}

/// Most log lines a run keeps (the newest).
const KEPT_LOG_LINES: usize = 200;
/// Most bytes of kv one stage may hold in a run.
const KV_BYTES: usize = 16 << 20;

/// LLM use of a run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LlmUse {
    /// Completions asked of the model.
    pub calls: u64,
    /// Completions answered from the recording.
    pub replayed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Dollars, at the configured prices, of the completions asked and replayed.
    pub usd: f64,
}

impl std::ops::AddAssign for LlmUse {
    fn add_assign(&mut self, other: LlmUse) {
        self.calls += other.calls;
        self.replayed += other.replayed;
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
        self.usd += other.usd;
    }
}

/// The state every stage of a run shares.
pub struct Shared {
    pub data: Arc<dyn Market>,
    /// The run's symbols, sorted: what `market.symbols` answers and orders may name.
    pub symbols: Vec<String>,
    pub day: Mutex<NaiveDate>,
    pub account: Mutex<Account>,
    pub queue: Mutex<Vec<Emitted>>,
    /// The first look-ahead of the run: who asked for what.
    pub look_ahead: Mutex<Option<String>>,
    pub logs: Mutex<std::collections::VecDeque<String>>,
    pub llm: Mutex<LlmUse>,
    pub recorder: Recorder,
    pub prices: LlmBudgetConfig,
}

impl Shared {
    pub fn day(&self) -> NaiveDate {
        *lock(&self.day)
    }

    fn log(&self, line: String) {
        let mut logs = lock(&self.logs);
        if logs.len() == KEPT_LOG_LINES {
            logs.pop_front();
        }
        logs.push_back(line);
    }
}

/// `runtime` of a stage: its configuration (the manifest's, with the run's overrides),
/// emits into the run's queue under the host's per-call event budgets, warnings and errors
/// kept in the run (each cut at the host's line length).
pub struct StageRuntime {
    pub agent: String,
    pub config: BTreeMap<String, String>,
    pub publish: Vec<String>,
    pub budgets: overseer_kernel::config::Budgets,
    pub shared: Arc<Shared>,
}

#[async_trait]
impl overseer_sandbox::Runtime for StageRuntime {
    fn log(&self, level: Level, message: &str) {
        if matches!(level, Level::Warn | Level::Error) {
            let day = self.shared.day();
            let mut end = message.len().min(self.budgets.log_line_bytes);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            self.shared
                .log(format!("{day} {}: {}", self.agent, &message[..end]));
        }
    }

    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError> {
        overseer_kernel::check_topic(topic, &self.publish)?;
        if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err() {
            return Err(GuestError::InvalidInput(
                "payload must be a JSON document".to_string(),
            ));
        }
        // The queue holds what this call emitted: it is drained after every call.
        let mut queue = lock(&self.shared.queue);
        if queue.len() >= self.budgets.events_per_call as usize {
            return Err(GuestError::Denied(format!(
                "event budget: a call may emit {} events",
                self.budgets.events_per_call
            )));
        }
        let bytes: usize = queue.iter().map(|e| e.payload.len()).sum();
        if bytes + payload.len() > self.budgets.event_bytes_per_call {
            return Err(GuestError::Denied(format!(
                "event budget: a call may emit {} bytes of payload",
                self.budgets.event_bytes_per_call
            )));
        }
        queue.push(Emitted {
            source: Cow::Owned(self.agent.clone()),
            topic: Cow::Owned(topic.to_string()),
            payload: payload.into(),
        });
        Ok(())
    }

    fn metric(&self, _name: &str, _value: f64) {}

    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
}

/// `kv` of a stage for one run: starts empty, at most [`KV_BYTES`] (keys and values).
#[derive(Default)]
pub struct RunKv {
    /// The entries, and the bytes they hold.
    map: Mutex<(BTreeMap<String, String>, usize)>,
}

#[async_trait]
impl overseer_sandbox::Kv for RunKv {
    async fn get(&self, key: &str) -> Result<Option<String>, GuestError> {
        Ok(lock(&self.map).0.get(key).cloned())
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        let mut guard = lock(&self.map);
        let (map, held) = &mut *guard;
        let replaced = map.get(key).map_or(0, |old| key.len() + old.len());
        let after = *held - replaced + key.len() + value.len();
        if after > KV_BYTES {
            return Err(GuestError::Denied(format!(
                "kv in a backtest holds at most {KV_BYTES} bytes"
            )));
        }
        map.insert(key.to_string(), value.to_string());
        *held = after;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), GuestError> {
        let mut guard = lock(&self.map);
        let (map, held) = &mut *guard;
        if let Some(old) = map.remove(key) {
            *held -= key.len() + old.len();
        }
        Ok(())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        Ok(lock(&self.map)
            .0
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }
}

/// `market` at the bar's as-of.
pub struct RunMarket {
    pub agent: String,
    pub shared: Arc<Shared>,
}

#[async_trait]
impl overseer_sandbox::Market for RunMarket {
    fn as_of(&self) -> AsOfTime {
        let day = self.shared.day();
        AsOfTime {
            at_ms: as_of_ms(day),
            date: day.to_string(),
        }
    }

    fn symbols(&self) -> Vec<String> {
        self.shared.symbols.clone()
    }

    async fn bars(
        &self,
        symbol: &str,
        timeframe: Timeframe,
        from: &str,
        to: &str,
    ) -> Result<Vec<Bar>, GuestError> {
        let overseer_sandbox::Timeframe::Day = timeframe;
        let from = parse_day("from", from)?;
        let to = parse_day("to", to)?;
        let day = self.shared.day();
        if to > day {
            let mut first = lock(&self.shared.look_ahead);
            if first.is_none() {
                *first = Some(format!(
                    "{} asked for the bars of {symbol} through {to} at the bar of {day}",
                    self.agent
                ));
            }
        }
        let bars = self
            .shared
            .data
            .bars(symbol, overseer_market::Timeframe::Day, from, to, day)
            .map_err(|e| guest_error(e.into()))?;
        Ok(bars.iter().map(wit_bar).collect())
    }

    async fn latest(&self, symbol: &str) -> Result<Option<Bar>, GuestError> {
        latest_bar(self.shared.data.as_ref(), symbol, self.shared.day())
    }

    async fn news(
        &self,
        symbol: &str,
        _since_ms: u64,
        _limit: u32,
    ) -> Result<Vec<NewsItem>, GuestError> {
        known_symbol(self.shared.data.as_ref(), symbol)?;
        // Bars only: a backtest has no archive of articles to replay.
        Ok(Vec::new())
    }
}

/// `broker`: the run's paper account, for one stage.
pub struct RunBroker {
    pub placer: Placer,
    pub shared: Arc<Shared>,
}

#[async_trait]
impl overseer_sandbox::Broker for RunBroker {
    async fn account(&self) -> Result<WitAccount, GuestError> {
        let account = lock(&self.shared.account);
        let (equity, cash, gross) = account.value();
        Ok(WitAccount {
            currency: "USD".to_string(),
            cash,
            equity,
            gross_exposure: gross,
            realized_pnl: account.ledger().realized_pnl,
            risk_state: account.risk_state().as_str().to_string(),
        })
    }

    async fn positions(&self) -> Result<Vec<Position>, GuestError> {
        let account = lock(&self.shared.account);
        Ok(paper::positions(account.ledger(), account.marks())
            .iter()
            .map(wit_position)
            .collect())
    }

    async fn orders(&self, open_only: bool, limit: u32) -> Result<Vec<Order>, GuestError> {
        let account = lock(&self.shared.account);
        Ok(account
            .orders()
            .iter()
            .rev()
            .filter(|o| !open_only || o.status == "new")
            .take(limit as usize)
            .map(wit_order)
            .collect())
    }

    async fn submit(&self, request: WitOrder) -> Result<Order, GuestError> {
        let request = order_request(&request);
        let order = lock(&self.shared.account)
            .submit(&self.placer, &request)
            .map_err(guest_error)?;
        Ok(wit_order(&order))
    }

    async fn cancel(&self, order_id: &str) -> Result<Order, GuestError> {
        let order = lock(&self.shared.account)
            .cancel(order_id)
            .map_err(guest_error)?;
        Ok(wit_order(&order))
    }
}

/// A completion as the recording keeps it.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
struct Recorded {
    text: String,
    model: String,
    prompt_tokens: u32,
    completion_tokens: u32,
}

/// Completions recorded by prompt: one file per prompt under a directory, named by the
/// SHA-256 of the model and the request, written whole (a temporary file renamed).
#[derive(Debug, Clone)]
pub struct Recorder {
    dir: PathBuf,
}

impl Recorder {
    pub fn new(dir: PathBuf) -> Self {
        Recorder { dir }
    }

    /// The key of `request` to `model`: the SHA-256 of both, hex.
    pub fn key(model: &str, request: &LlmRequest) -> String {
        let mut hash = Sha256::new();
        hash.update(model.as_bytes());
        hash.update([0]);
        for message in &request.messages {
            hash.update(format!("{:?}", message.role).as_bytes());
            hash.update([0]);
            hash.update(message.content.as_bytes());
            hash.update([0]);
        }
        hash.update(format!("{:?}/{:?}", request.max_tokens, request.temperature).as_bytes());
        hex::encode(hash.finalize())
    }

    fn get(&self, key: &str) -> Option<LlmCompletion> {
        let text = std::fs::read_to_string(self.dir.join(format!("{key}.json"))).ok()?;
        let r: Recorded = serde_json::from_str(&text).ok()?;
        Some(LlmCompletion {
            text: r.text,
            model: r.model,
            usage: LlmUsage {
                prompt_tokens: r.prompt_tokens,
                completion_tokens: r.completion_tokens,
            },
        })
    }

    fn put(&self, key: &str, completion: &LlmCompletion) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let recorded = Recorded {
            text: completion.text.clone(),
            model: completion.model.clone(),
            prompt_tokens: completion.usage.prompt_tokens,
            completion_tokens: completion.usage.completion_tokens,
        };
        let path = self.dir.join(format!("{key}.json"));
        let temporary = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
        std::fs::write(
            &temporary,
            serde_json::to_vec(&recorded).unwrap_or_default(),
        )?;
        std::fs::rename(&temporary, path)
    }
}

/// `llm`: the recording first, then the model (under the agent's budget), recorded.
pub struct RunLlm {
    pub agent: String,
    pub model: Arc<dyn overseer_sandbox::Llm>,
    pub shared: Arc<Shared>,
}

impl RunLlm {
    fn count(&self, completion: &LlmCompletion, replayed: bool) {
        let mut used = lock(&self.shared.llm);
        if replayed {
            used.replayed += 1;
        } else {
            used.calls += 1;
        }
        let (prompt, done) = (
            u64::from(completion.usage.prompt_tokens),
            u64::from(completion.usage.completion_tokens),
        );
        used.prompt_tokens += prompt;
        used.completion_tokens += done;
        used.usd += self.shared.prices.cost(&completion.model, prompt, done);
    }
}

#[async_trait]
impl overseer_sandbox::Llm for RunLlm {
    fn model(&self) -> Option<String> {
        self.model.model()
    }

    async fn complete(&self, request: LlmRequest) -> Result<LlmCompletion, GuestError> {
        let model = &self.model;
        let name = model.model().unwrap_or_default();
        let key = Recorder::key(&name, &request);
        if let Some(recorded) = self.shared.recorder.get(&key) {
            self.count(&recorded, true);
            return Ok(recorded);
        }
        let completion = model.complete(request).await?;
        if let Err(e) = self.shared.recorder.put(&key, &completion) {
            tracing::warn!(agent = self.agent, error = %e, "a completion was not recorded");
        }
        self.count(&completion, false);
        Ok(completion)
    }
}

/// `llm` on a host without a model.
pub struct Unconfigured;

#[async_trait]
impl overseer_sandbox::Llm for Unconfigured {
    fn model(&self) -> Option<String> {
        None
    }

    async fn complete(&self, _request: LlmRequest) -> Result<LlmCompletion, GuestError> {
        Err(GuestError::Unavailable(
            "no LLM endpoint is configured".to_string(),
        ))
    }
}

/// The interfaces that reach outside a run: granted, but not served in a backtest.
pub struct Outside;

impl Outside {
    fn denied(interface: &str) -> GuestError {
        GuestError::Denied(format!(
            "{interface} is not served in a backtest: a run reaches nothing outside it"
        ))
    }
}

#[async_trait]
impl overseer_sandbox::Fleet for Outside {
    async fn telemetry(
        &self,
        _window_ms: u64,
    ) -> Result<Vec<overseer_sandbox::AgentWindow>, GuestError> {
        Err(Outside::denied("fleet"))
    }

    async fn alerts(
        &self,
        _open_only: bool,
        _limit: u32,
    ) -> Result<Vec<overseer_sandbox::FleetAlert>, GuestError> {
        Err(Outside::denied("fleet"))
    }

    async fn propose(&self, _decision: &str) -> Result<String, GuestError> {
        Err(Outside::denied("fleet"))
    }

    async fn check(&self, _decision: &str) -> Result<String, GuestError> {
        Err(Outside::denied("fleet"))
    }

    async fn raise_alert(
        &self,
        _agent: &str,
        _kind: &str,
        _priority: &str,
        _message: &str,
    ) -> Result<i64, GuestError> {
        Err(Outside::denied("fleet"))
    }
}

#[async_trait]
impl overseer_sandbox::Fundamentals for Outside {
    async fn filings(
        &self,
        _symbol: &str,
        _timeframe: &str,
        _limit: u32,
    ) -> Result<Vec<overseer_sandbox::Filing>, GuestError> {
        Err(Outside::denied("fundamentals"))
    }
}

#[async_trait]
impl overseer_sandbox::Http for Outside {
    async fn fetch(&self, _request: HttpRequest) -> Result<HttpResponse, GuestError> {
        Err(Outside::denied("http"))
    }
}

#[async_trait]
impl overseer_sandbox::Memory for Outside {
    async fn remember(&self, _c: &str, _t: &str, _m: &str) -> Result<u64, GuestError> {
        Err(Outside::denied("memory"))
    }

    async fn recall(
        &self,
        _c: &str,
        _q: &str,
        _k: u32,
        _f: &str,
    ) -> Result<Vec<Recalled>, GuestError> {
        Err(Outside::denied("memory"))
    }

    async fn forget(&self, _c: &str, _id: u64) -> Result<(), GuestError> {
        Err(Outside::denied("memory"))
    }
}

#[async_trait]
impl overseer_sandbox::Source for Outside {
    async fn agents(&self) -> Result<Vec<AgentSource>, GuestError> {
        Err(Outside::denied("source"))
    }
    async fn files(&self, _agent: &str) -> Result<AgentSource, GuestError> {
        Err(Outside::denied("source"))
    }
    async fn read(&self, _agent: &str, _path: &str) -> Result<String, GuestError> {
        Err(Outside::denied("source"))
    }
    async fn findings(&self, _agent: &str) -> Result<Vec<Finding>, GuestError> {
        Err(Outside::denied("source"))
    }
    async fn logs(&self, _agent: &str, _limit: u32) -> Result<Vec<SourceLogLine>, GuestError> {
        Err(Outside::denied("source"))
    }
    async fn propose(&self, _proposal: Proposal) -> Result<u64, GuestError> {
        Err(Outside::denied("source"))
    }
    async fn outcome(&self, _agent: &str, _id: u64) -> Result<EditOutcome, GuestError> {
        Err(Outside::denied("source"))
    }
}

#[async_trait]
impl overseer_sandbox::Budget for Outside {
    async fn budgets(&self) -> Result<Vec<AgentBudget>, GuestError> {
        Err(Outside::denied("budget"))
    }
    fn caps(&self) -> BudgetCaps {
        BudgetCaps {
            agent_tokens_per_day: 0,
            agent_usd_per_day: 0.0,
            total_tokens_per_day: 0,
            total_usd_per_day: 0.0,
        }
    }
    async fn set(&self, _agent: &str, _t: u64, _u: f64) -> Result<AgentBudget, GuestError> {
        Err(Outside::denied("budget"))
    }
}
