//! Backtests of the components that trade: any version of an agent, driven over past bars
//! of one or more symbols by a virtual clock, with the live paper broker's rules, costs and
//! risk gate.
//!
//! For each trading day of the range the run does what the live desk does at a tick: fill
//! the orders placed the day before at the day's bars (commission and slippage on unless
//! `costs` is false), value the close, let the risk gate see it, and publish `market.tick`
//! with the day's bars. The subject hears it, or what the pipeline makes of it: a subject
//! that subscribes to `market.snapshot` runs behind the active agents that publish
//! snapshots (the world monitor), and one that publishes `trade.signal` runs ahead of the
//! active agents that turn signals into orders (the trade executor), each at its active
//! version. Every market call is bounded by the bar's as-of; asking past it ends the run
//! with `look_ahead` and the bar. One instance per stage serves a whole pass over the days,
//! with fuel, a deadline and the host's event budgets per call; a trap, fuel, memory or time
//! fault ends the run with `agent_fault` and the bar. Guests see the bar's close as the time and random numbers
//! from the run's seed, so a run is reproducible: the same component digests, data,
//! configuration, seed and recorded LLM answers give a byte-identical trade log and metrics,
//! and each report carries the hash of its inputs and of its trade log. LLM completions are
//! recorded by the SHA-256 of their prompt and replayed on a rerun, which asks the model
//! nothing.
//!
//! Walk-forward ([`walk`]) chooses the subject's tunable settings on each in-sample window
//! and scores them on the out-of-sample window after it.

mod book;
mod provider;
mod run;
mod services;
pub mod walk;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use chrono::NaiveDate;
use overseer_kernel::Kernel;
use overseer_kernel::capability::{CallContext, LlmBudgetConfig};
use overseer_kernel::registry::Version;
use overseer_market::{Market, Replay, Timeframe};
use overseer_sandbox::Sandbox;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use book::Entry;
pub use provider::BacktestProvider;
pub use run::{Control, Day, MAX_EVENTS_PER_BAR, Stage};
pub use services::{LlmUse, Recorder};
pub use walk::WalkForward;

use crate::config::{Costs, RiskLimits, TradingConfig};
use crate::performance::{self, Metrics, Point};

/// Most symbols one run may trade.
pub const MAX_SYMBOLS: usize = 50;
/// Most bytes of CSV a run may bring.
pub const MAX_DATA_BYTES: usize = 32 << 20;
/// Most stages a pipeline may have.
const MAX_STAGES: usize = 8;
/// Most bars one run may go through, every pass of a walk-forward counted: at a few
/// microseconds a bar for a small strategy, minutes; far longer for a pipeline with an LLM.
pub const MAX_TOTAL_BARS: u64 = 20_000_000;
/// Most runs waiting or running at once; past it a start answers `busy`.
pub const MAX_QUEUED: usize = 4;

/// What to run. JSON, as `POST /v1/backtests` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The agent under test.
    pub agent: String,
    /// Its version; the active one when absent.
    #[serde(default)]
    pub version: Option<u32>,
    pub symbols: Vec<String>,
    /// First and last trading day, inclusive.
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Commission and slippage as configured (`[trading.costs]`); `false` runs without.
    #[serde(default = "yes")]
    pub costs: bool,
    /// Starting cash in dollars; `[trading] initial_cash` when absent.
    #[serde(default)]
    pub initial_cash: Option<f64>,
    /// Risk limits over `[trading.risk]`: the ones given replace the configured ones.
    #[serde(default)]
    pub risk: serde_json::Map<String, serde_json::Value>,
    /// Settings of the subject over its manifest's `[config]`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Seeds the guests' random numbers and a random search.
    #[serde(default)]
    pub seed: u64,
    /// Annual risk-free rate for Sharpe and Sortino (0.02 = 2 %).
    #[serde(default)]
    pub risk_free: f64,
    #[serde(default)]
    pub walk_forward: Option<WalkForward>,
    /// The user's own bars: CSV text per symbol, with the bundled data's columns
    /// (`date,open,high,low,close,volume,adj_close`). When given, the run uses these alone.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
    /// A fresh instance for every call instead of one per run: to measure what reuse saves.
    /// Not part of the API: such a run's guests see the real clock.
    #[serde(skip)]
    pub fresh_instance_per_call: bool,
}

fn yes() -> bool {
    true
}

/// Why a backtest did not run or did not finish: a stable code, a sentence, and the bar
/// where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, thiserror::Error, utoipa::ToSchema)]
#[error("{message}")]
pub struct Failure {
    /// Refused at the start: `invalid_request`, `invalid_range`, `empty_range`,
    /// `unknown_symbol`, `invalid_data`, `no_feed`, `agent_not_found`, `version_not_found`,
    /// `no_active_version`, `version_not_servable`, `busy` (too many runs queued). Ended a
    /// run: `look_ahead`, `agent_fault`, `event_storm`, `busy` (no sandbox slot for a
    /// stage), `cancelled`, `internal`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bar: Option<NaiveDate>,
}

impl Failure {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            bar: None,
        }
    }

    pub(crate) fn at(code: &'static str, bar: NaiveDate, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            bar: Some(bar),
        }
    }

    /// What a sandbox error ends a run with: `busy` when no call slot freed up, else
    /// `agent_fault` (a trap, fuel, memory or time).
    pub(crate) fn sandbox(
        version: &Version,
        bar: NaiveDate,
        error: &overseer_sandbox::Error,
    ) -> Self {
        if let overseer_sandbox::Error::Fault(overseer_sandbox::Fault::Capacity(why)) = error {
            return Failure::at(
                "busy",
                bar,
                format!(
                    "no sandbox call slot for {} at the bar of {bar}: {why}",
                    version.agent
                ),
            );
        }
        Failure::fault(version, bar, &error.to_string())
    }

    pub(crate) fn fault(version: &Version, bar: NaiveDate, fault: &str) -> Self {
        Failure::at(
            "agent_fault",
            bar,
            format!(
                "{} v{} failed at the bar of {bar}: {fault}",
                version.agent, version.number
            ),
        )
    }

    fn kernel(error: &overseer_kernel::Error) -> Self {
        Failure::new(error.code(), error.to_string())
    }
}

/// The model of a stage's `llm`, under that agent's budget.
pub(crate) type LlmOf = Arc<dyn Fn(&Version) -> Arc<dyn overseer_sandbox::Llm> + Send + Sync>;

/// What every pass of one backtest shares.
pub(crate) struct Setup {
    pub sandbox: Sandbox,
    pub data: Arc<dyn Market>,
    pub symbols: Vec<String>,
    pub initial_cash: f64,
    pub risk: RiskLimits,
    pub costs: Costs,
    pub seed: u64,
    pub recorder: Recorder,
    pub prices: LlmBudgetConfig,
    pub llm: Option<LlmOf>,
    pub fresh_instance_per_call: bool,
    /// The host's per-call budgets (events, log lines), as live.
    pub budgets: overseer_kernel::config::Budgets,
}

/// A stage as the report names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StageInfo {
    pub agent: String,
    pub version: u32,
    pub digest: String,
}

/// One day of the equity curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CurvePoint {
    pub day: NaiveDate,
    pub equity: f64,
    pub cash: f64,
    pub gross_exposure: f64,
    /// `1 − equity / peak so far`.
    pub drawdown: f64,
}

/// The result of a backtest.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    pub agent: String,
    pub version: u32,
    /// The pipeline, the subject first.
    pub stages: Vec<StageInfo>,
    pub symbols: Vec<String>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub costs: bool,
    /// Trading days run.
    pub bars: usize,
    pub metrics: Metrics,
    /// Buy and hold of the symbols in equal parts on the same days, without costs.
    pub benchmark: Metrics,
    pub equity: Vec<CurvePoint>,
    /// Fills, refusals, expiries and cancellations, in order.
    pub trades: Vec<Entry>,
    pub llm: LlmUse,
    /// Calls that answered an error (the run went on), and the last of them.
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The newest warnings and errors the stages logged.
    pub logs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub walk_forward: Option<walk::WalkReport>,
    /// SHA-256 of the inputs: component digests, settings, data, costs, limits, cash, seed.
    pub input_hash: String,
    /// SHA-256 of the trade log's JSON.
    pub trade_log_hash: String,
    /// Wall time of the run, in milliseconds (not part of either hash).
    pub elapsed_ms: u64,
}

/// Where a backtest stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Running,
    Done,
    Failed,
}

/// A backtest as `GET /v1/backtests/{id}` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub id: String,
    pub state: State,
    pub spec: Spec,
    /// Bars run so far and in all (a walk-forward runs each in-sample bar once per
    /// candidate).
    pub done: u64,
    pub total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Failure>,
}

struct Slot {
    /// The spec, its data replaced by their hashes.
    spec: Spec,
    total: u64,
    control: Control,
    finished: Mutex<Option<Result<Report, Failure>>>,
    /// Turns true when `finished` is set.
    ended: tokio::sync::watch::Sender<bool>,
}

/// The tunables an agent version's source marks (`overseer:tune NAME A..B`): the daemon
/// reads them from the stored source, which this crate does not decode.
#[async_trait::async_trait]
pub trait SourceMarks: Send + Sync {
    async fn marks(&self, agent: &str, version: u32) -> BTreeMap<String, walk::Range>;
}

/// Runs backtests for the daemon and keeps their results (in memory, and under
/// `<data-dir>/backtests/` as JSON when they end).
pub struct Backtester {
    kernel: Kernel,
    market: Arc<dyn Market>,
    config: TradingConfig,
    dir: PathBuf,
    prices: LlmBudgetConfig,
    runs: Mutex<HashMap<String, Arc<Slot>>>,
    /// One run at a time; the others wait their turn.
    turn: tokio::sync::Semaphore,
    sources: Option<Arc<dyn SourceMarks>>,
}

/// A prepared run: validated, its days and stages resolved.
pub struct Plan {
    spec: Spec,
    setup: Setup,
    stages: Vec<Stage>,
    days: Vec<Day>,
    /// Bars the run will go through (progress' total).
    pub total: u64,
    /// SHA-256 of the days' bars.
    data_hash: String,
}

impl Backtester {
    /// Backtests of `kernel`'s agents over `market` (the daemon's), with `config`'s costs,
    /// limits and cash, keeping results and LLM recordings under `data_dir`.
    pub fn new(
        kernel: Kernel,
        market: Arc<dyn Market>,
        config: TradingConfig,
        data_dir: PathBuf,
        prices: LlmBudgetConfig,
    ) -> Self {
        Backtester {
            kernel,
            market,
            config,
            dir: data_dir.join("backtests"),
            prices,
            runs: Mutex::new(HashMap::new()),
            turn: tokio::sync::Semaphore::new(1),
            sources: None,
        }
    }

    /// Read the tunables the agents' sources mark with `sources`.
    #[must_use]
    pub fn with_sources(mut self, sources: Arc<dyn SourceMarks>) -> Self {
        self.sources = Some(sources);
        self
    }

    /// Check `spec` and resolve what it runs: its data and days, the versions of its
    /// stages.
    ///
    /// # Errors
    /// A [`Failure`] with the code of what is wrong.
    pub async fn plan(&self, mut spec: Spec) -> Result<Plan, Failure> {
        if spec.from > spec.to {
            return Err(Failure::new(
                "invalid_range",
                format!("from {} is after to {}", spec.from, spec.to),
            ));
        }
        if spec.symbols.is_empty() || spec.symbols.len() > MAX_SYMBOLS {
            return Err(Failure::new(
                "invalid_request",
                format!("give 1 to {MAX_SYMBOLS} symbols"),
            ));
        }
        let cash = spec.initial_cash.unwrap_or(self.config.initial_cash);
        if !(cash.is_finite() && cash > 0.0) {
            return Err(Failure::new(
                "invalid_request",
                "initial_cash must be a positive number of dollars",
            ));
        }
        if !spec.risk_free.is_finite() || spec.risk_free <= -1.0 {
            return Err(Failure::new(
                "invalid_request",
                "risk_free is an annual rate above -1",
            ));
        }
        let data = self.data(&spec)?;
        let days = days(data.as_ref(), &spec)?;
        let subject = self
            .kernel
            .deployer
            .version(&spec.agent, spec.version)
            .await
            .map_err(|e| Failure::kernel(&e))?;
        if let Some(walk) = spec.walk_forward.as_mut()
            && walk.params.is_empty()
        {
            walk.params = walk::manifest_marks(&subject.manifest.config);
            if let Some(sources) = &self.sources {
                walk.params
                    .extend(sources.marks(&subject.agent, subject.number).await);
            }
        }
        let mut config = subject.manifest.config.clone();
        config.extend(spec.config.clone());
        let stages = self.stages(Stage {
            version: subject,
            config,
        })?;
        let costs = if spec.costs {
            self.config.costs
        } else {
            Costs {
                commission_bps: 0.0,
                slippage_bps: 0.0,
            }
        };
        let capabilities = self.kernel.capabilities.clone();
        let llm: LlmOf = Arc::new(move |version: &Version| {
            let call = CallContext {
                agent: version.agent.clone(),
                version: Some(version.number),
                manifest: version.manifest.clone(),
                as_of_ms: None,
                trigger: None,
            };
            capabilities.llm(&call).unwrap_or_else(|| {
                Arc::new(services::Unconfigured) as Arc<dyn overseer_sandbox::Llm>
            })
        });
        let setup = Setup {
            sandbox: self.kernel.sandbox.clone(),
            data,
            symbols: spec.symbols.clone(),
            initial_cash: cash,
            risk: self.risk(&spec.risk)?,
            costs,
            seed: spec.seed,
            recorder: Recorder::new(self.dir.join("llm")),
            prices: self.prices.clone(),
            llm: Some(llm),
            fresh_instance_per_call: spec.fresh_instance_per_call,
            budgets: self.kernel.config.budgets.clone(),
        };
        let total = match &spec.walk_forward {
            Some(walk) => walk.total(days.len(), spec.seed)?,
            None => days.len() as u64,
        };
        if total > MAX_TOTAL_BARS {
            return Err(Failure::new(
                "invalid_request",
                format!(
                    "the run would go through {total} bars; at most {MAX_TOTAL_BARS}: shorten the range or the search"
                ),
            ));
        }
        let bars: Vec<(&NaiveDate, &BTreeMap<String, overseer_market::Bar>)> =
            days.iter().map(|d| (&d.date, &d.bars)).collect();
        let data_hash = hash_json(&bars);
        Ok(Plan {
            spec,
            setup,
            stages,
            days,
            total,
            data_hash,
        })
    }

    /// Run `plan` to the end (waiting for the runs before it), counting bars done in
    /// `control` and stopping when it is cancelled.
    ///
    /// # Errors
    /// The [`Failure`] that ended it.
    pub async fn execute(&self, plan: &Plan, control: &Control) -> Result<Report, Failure> {
        let _turn = self.turn.acquire().await;
        let started = std::time::Instant::now();
        let (pass, walk_report) = match &plan.spec.walk_forward {
            Some(walk) => {
                let (pass, report) = walk::run(walk, plan, control).await?;
                (pass, Some(report))
            }
            None => {
                let pass = run::pass(&plan.setup, &plan.stages, &plan.days, control).await?;
                (pass, None)
            }
        };
        let mut report = report(plan, pass, walk_report);
        report.elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }

    /// Check `spec` and start it in the background; answers its id.
    ///
    /// # Errors
    /// A [`Failure`] when the spec is refused (nothing is started).
    pub async fn start(self: &Arc<Self>, spec: Spec) -> Result<String, Failure> {
        let unfinished = || {
            services::lock(&self.runs)
                .values()
                .filter(|slot| services::lock(&slot.finished).is_none())
                .count()
        };
        if unfinished() >= MAX_QUEUED {
            return Err(Failure::new(
                "busy",
                format!("{MAX_QUEUED} backtests are running or waiting; try again when one ends"),
            ));
        }
        let plan = Arc::new(self.plan(spec).await?);
        let id = format!(
            "bt-{}-{}",
            overseer_sandbox::now_ms(),
            uuid::Uuid::new_v4()
                .simple()
                .to_string()
                .get(..8)
                .unwrap_or("0")
        );
        let mut shown = plan.spec.clone();
        for csv in shown.data.values_mut() {
            *csv = format!(
                "sha256:{} ({} bytes)",
                hex::encode(Sha256::digest(csv.as_bytes())),
                csv.len()
            );
        }
        let slot = Arc::new(Slot {
            spec: shown,
            total: plan.total,
            control: Control::default(),
            finished: Mutex::new(None),
            ended: tokio::sync::watch::Sender::new(false),
        });
        services::lock(&self.runs).insert(id.clone(), slot.clone());
        let this = self.clone();
        let run_id = id.clone();
        tokio::spawn(async move {
            // A panic in the run ends it as `internal`, never leaves it running.
            let running = {
                let (this, slot) = (this.clone(), slot.clone());
                tokio::spawn(async move { this.execute(&plan, &slot.control).await })
            };
            let result = running
                .await
                .unwrap_or_else(|e| Err(Failure::new("internal", format!("the run stopped: {e}"))));
            if let Err(e) = &result {
                tracing::info!(id = run_id, code = e.code, error = %e, "backtest failed");
            }
            *services::lock(&slot.finished) = Some(result);
            slot.ended.send_replace(true);
            if let Some(status) = this.current(&run_id)
                && this.keep(&status)
            {
                // Kept on disk: served from there, not held in memory.
                services::lock(&this.runs).remove(&run_id);
            }
        });
        Ok(id)
    }

    /// Where backtest `id` stands once it has ended, waiting for it until `until`; `None`
    /// when it is still running then, or unknown.
    pub async fn ended(&self, id: &str, until: tokio::time::Instant) -> Option<serde_json::Value> {
        let slot = services::lock(&self.runs).get(id).cloned();
        if let Some(slot) = slot {
            let mut ended = slot.ended.subscribe();
            tokio::time::timeout_at(until, ended.wait_for(|e| *e))
                .await
                .ok()?
                .ok()?;
        }
        self.status(id)
    }

    /// Ask backtest `id` to stop at its next bar; false when it has already ended.
    ///
    /// # Errors
    /// `backtest_not_found`.
    pub fn cancel(&self, id: &str) -> Result<bool, Failure> {
        let slot = services::lock(&self.runs).get(id).cloned();
        match slot {
            Some(slot) => {
                let running = services::lock(&slot.finished).is_none();
                slot.control.cancel.store(true, Ordering::Relaxed);
                Ok(running)
            }
            None if self.kept(id).is_some() => Ok(false),
            None => Err(Failure::new(
                "backtest_not_found",
                format!("no backtest {id:?}"),
            )),
        }
    }

    /// The risk limits of a run: `[trading.risk]` with the spec's over them.
    fn risk(
        &self,
        given: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<RiskLimits, Failure> {
        let mut limits = serde_json::to_value(&self.config.risk)
            .map_err(|e| Failure::new("internal", e.to_string()))?;
        if let Some(limits) = limits.as_object_mut() {
            limits.extend(given.clone());
        }
        serde_json::from_value(limits)
            .map_err(|e| Failure::new("invalid_request", format!("risk: {e}")))
    }

    /// Where backtest `id` stands, as JSON: in memory, else as kept on disk.
    pub fn status(&self, id: &str) -> Option<serde_json::Value> {
        match self.current(id) {
            Some(status) => serde_json::to_value(status).ok(),
            None => self.kept(id),
        }
    }

    fn current(&self, id: &str) -> Option<Status> {
        let slot = services::lock(&self.runs).get(id).cloned();
        let slot = slot?;
        let finished = services::lock(&slot.finished).clone();
        let (state, report, error) = match finished {
            None => (State::Running, None, None),
            Some(Ok(report)) => (State::Done, Some(report), None),
            Some(Err(e)) => (State::Failed, None, Some(e)),
        };
        Some(Status {
            id: id.to_string(),
            state,
            spec: slot.spec.clone(),
            done: slot.control.done.load(Ordering::Relaxed).min(slot.total),
            total: slot.total,
            report,
            error,
        })
    }

    /// The ids of the backtests this daemon has run or kept, newest first.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = services::lock(&self.runs).keys().cloned().collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().to_string();
                if let Some(id) = name.strip_suffix(".json")
                    && valid_id(id)
                    && !ids.iter().any(|i| i == id)
                {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort_by(|a, b| b.cmp(a));
        ids
    }

    /// Write `status` under the data directory; whether it was written.
    fn keep(&self, status: &Status) -> bool {
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(&self.dir)?;
            let temporary = self.dir.join(format!(".{}.tmp", status.id));
            std::fs::write(&temporary, serde_json::to_vec(status)?)?;
            std::fs::rename(&temporary, self.dir.join(format!("{}.json", status.id)))
        };
        match write() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(id = status.id, error = %e, "a backtest's result was not kept");
                false
            }
        }
    }

    fn kept(&self, id: &str) -> Option<serde_json::Value> {
        if !valid_id(id) {
            return None;
        }
        let text = std::fs::read(self.dir.join(format!("{id}.json"))).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The data of a run: the user's CSV, else the daemon's market.
    fn data(&self, spec: &Spec) -> Result<Arc<dyn Market>, Failure> {
        let data: Arc<dyn Market> = if spec.data.is_empty() {
            self.market.clone()
        } else {
            let bytes: usize = spec.data.values().map(String::len).sum();
            if bytes > MAX_DATA_BYTES {
                return Err(Failure::new(
                    "invalid_data",
                    format!("the data is {bytes} bytes; at most {MAX_DATA_BYTES}"),
                ));
            }
            let mut replay = Replay::default();
            for (symbol, csv) in &spec.data {
                replay
                    .add_csv(symbol, csv)
                    .map_err(|e| Failure::new("invalid_data", e.to_string()))?;
            }
            Arc::new(replay)
        };
        let known = data.symbols();
        if let Some(unknown) = spec.symbols.iter().find(|s| !known.contains(s)) {
            return Err(Failure::new(
                "unknown_symbol",
                format!(
                    "no data for {unknown:?}: the symbols are {}",
                    known.join(", ")
                ),
            ));
        }
        Ok(data)
    }

    /// The pipeline around `subject`: the active agents that publish what it hears (and
    /// what they hear, in turn) before it, the active agents with `broker` that hear what
    /// it publishes after it.
    fn stages(&self, subject: Stage) -> Result<Vec<Stage>, Failure> {
        let active: Vec<Arc<Version>> = self
            .kernel
            .registry
            .slots()
            .into_iter()
            .filter_map(|slot| slot.active())
            .filter(|v| v.agent != subject.version.agent)
            .collect();
        let hears_host = |v: &Version| v.manifest.subscribes_to("market.tick");
        let mut upstream: Vec<Arc<Version>> = Vec::new();
        let mut listeners: Vec<Arc<Version>> = vec![subject.version.clone()];
        while let Some(listener) = listeners.pop() {
            for feeder in &active {
                let feeds = feeder
                    .manifest
                    .capabilities
                    .publish
                    .iter()
                    .any(|topic| listener.manifest.subscribes_to(topic));
                if feeds
                    && upstream.len() < MAX_STAGES
                    && !upstream.iter().any(|u| u.agent == feeder.agent)
                {
                    upstream.push(feeder.clone());
                    listeners.push(feeder.clone());
                }
            }
        }
        let downstream: Vec<Arc<Version>> = active
            .iter()
            .filter(|v| v.manifest.grants("broker"))
            .filter(|v| {
                subject
                    .version
                    .manifest
                    .capabilities
                    .publish
                    .iter()
                    .any(|topic| v.manifest.subscribes_to(topic))
            })
            .cloned()
            .collect();
        let fed = hears_host(&subject.version) || upstream.iter().any(|v| hears_host(v));
        if !fed {
            return Err(Failure::new(
                "no_feed",
                format!(
                    "{} hears neither market.tick nor a topic an active agent publishes from it: subscribe it to market.tick or market.snapshot",
                    subject.version.agent
                ),
            ));
        }
        let mut stages = vec![subject];
        stages.extend(upstream.into_iter().rev().map(|version| Stage {
            config: version.manifest.config.clone(),
            version,
        }));
        stages.extend(downstream.into_iter().map(|version| Stage {
            config: version.manifest.config.clone(),
            version,
        }));
        if stages.len() > MAX_STAGES {
            return Err(Failure::new(
                "invalid_request",
                format!(
                    "the pipeline around {} has {} stages; at most {MAX_STAGES}",
                    stages[0].version.agent,
                    stages.len()
                ),
            ));
        }
        Ok(stages)
    }
}

/// Whether `id` has the shape of a backtest id (so it can name a file).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The trading days of `spec`'s range: every date with a bar of one of its symbols.
fn days(data: &dyn Market, spec: &Spec) -> Result<Vec<Day>, Failure> {
    let mut days: BTreeMap<NaiveDate, BTreeMap<String, overseer_market::Bar>> = BTreeMap::new();
    for symbol in &spec.symbols {
        let bars = data
            .bars(symbol, Timeframe::Day, spec.from, spec.to, spec.to)
            .map_err(|e| Failure::new("invalid_request", e.to_string()))?;
        for bar in bars {
            days.entry(bar.date)
                .or_default()
                .insert(symbol.clone(), bar);
        }
    }
    if days.is_empty() {
        return Err(Failure::new(
            "empty_range",
            format!(
                "no bars of {} from {} to {}",
                spec.symbols.join(", "),
                spec.from,
                spec.to
            ),
        ));
    }
    Ok(days
        .into_iter()
        .map(|(date, bars)| Day::new(date, bars))
        .collect())
}

/// SHA-256, hex, of `value`'s JSON.
fn hash_json(value: &impl Serialize) -> String {
    hex::encode(Sha256::digest(
        serde_json::to_vec(value).unwrap_or_default(),
    ))
}

/// The hash of what a run depends on.
fn input_hash(plan: &Plan) -> String {
    let stages: Vec<serde_json::Value> = plan
        .stages
        .iter()
        .map(|s| {
            serde_json::json!({
                "agent": s.version.agent,
                "digest": s.version.digest,
                "config": s.config,
            })
        })
        .collect();
    hash_json(&serde_json::json!({
        "stages": stages,
        "symbols": plan.spec.symbols,
        "from": plan.spec.from,
        "to": plan.spec.to,
        "data": plan.data_hash,
        "costs": plan.setup.costs,
        "risk": plan.setup.risk,
        "initial_cash": plan.setup.initial_cash,
        "seed": plan.spec.seed,
        "risk_free": plan.spec.risk_free,
        "walk_forward": plan.spec.walk_forward,
    }))
}

/// The metrics of a pass's curve and totals.
pub(crate) fn pass_metrics(pass: &run::Pass, risk_free: f64) -> Metrics {
    let costs = performance::Costs {
        fees: pass.totals.fees,
        slippage: pass.totals.slippage,
        traded: pass.totals.traded,
        closed: pass.totals.closed.clone(),
        llm_usd: pass.llm.usd,
        decisions: pass.decisions,
    };
    performance::metrics(&pass.curve, &costs, risk_free)
}

/// Buy and hold of `symbols` in equal parts from the first of `days`, valued at each close
/// (the last close known for a day without a bar).
fn benchmark(days: &[Day], symbols: &[String], cash: f64) -> Vec<Point> {
    let mut total = vec![0.0; days.len()];
    let share = cash / symbols.len().max(1) as f64;
    for symbol in symbols {
        let mut last = None;
        let closes: Vec<Option<f64>> = days
            .iter()
            .map(|d| {
                if let Some(bar) = d.bars.get(symbol) {
                    last = Some(bar.close);
                }
                last
            })
            .collect();
        let Some(first) = closes.iter().flatten().next().copied() else {
            continue;
        };
        let filled: Vec<f64> = closes.iter().map(|c| c.unwrap_or(first)).collect();
        for (sum, point) in total
            .iter_mut()
            .zip(performance::buy_and_hold(&filled, share))
        {
            *sum += point.equity;
        }
    }
    total
        .into_iter()
        .map(|equity| Point {
            equity,
            gross_exposure: equity,
        })
        .collect()
}

fn report(plan: &Plan, pass: run::Pass, walk_forward: Option<walk::WalkReport>) -> Report {
    let metrics = pass_metrics(&pass, plan.spec.risk_free);
    // On the days the figures cover: a walk-forward's out-of-sample ones.
    let covered: Vec<Day> = plan
        .days
        .iter()
        .filter(|d| pass.days.binary_search(&d.date).is_ok())
        .cloned()
        .collect();
    let bench = benchmark(&covered, &plan.spec.symbols, plan.setup.initial_cash);
    let benchmark =
        performance::metrics(&bench, &performance::Costs::default(), plan.spec.risk_free);
    let drawdowns = performance::drawdowns(pass.curve.iter().map(|p| p.equity));
    let equity = pass
        .days
        .iter()
        .zip(&pass.curve)
        .zip(&pass.cash)
        .zip(drawdowns)
        .map(|(((day, point), cash), drawdown)| CurvePoint {
            day: *day,
            equity: point.equity,
            cash: *cash,
            gross_exposure: point.gross_exposure,
            drawdown,
        })
        .collect();
    let subject = &plan.stages[0].version;
    Report {
        agent: subject.agent.clone(),
        version: subject.number,
        stages: plan
            .stages
            .iter()
            .map(|s| StageInfo {
                agent: s.version.agent.clone(),
                version: s.version.number,
                digest: s.version.digest.clone(),
            })
            .collect(),
        symbols: plan.spec.symbols.clone(),
        from: plan.spec.from,
        to: plan.spec.to,
        costs: plan.spec.costs,
        bars: pass.days.len(),
        metrics,
        benchmark,
        equity,
        trade_log_hash: hash_json(&pass.log),
        trades: pass.log,
        llm: pass.llm,
        errors: pass.errors,
        last_error: pass.last_error,
        logs: pass.logs,
        walk_forward,
        input_hash: input_hash(plan),
        elapsed_ms: 0,
    }
}
