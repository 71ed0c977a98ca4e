//! overseer-store: everything overseer persists, behind one trait per aggregate — the registry
//! of agents and versions, kv, the event log, agent logs, alerts, edits and LLM usage — with
//! records and state enums, and two backends, SQLite (the default, in the data directory) and
//! PostgreSQL, each with its own SQL and migrations. One conformance suite runs the same cases
//! against both (`conformance`, with the `testing` feature).
//!
//! Writes that span rows are one transaction: a version with its component, its source and its
//! activation (and the edit that built it); a verdict with the rollback it causes; a call's kv
//! writes with the events it emitted. Numbers and uniqueness that SQLite gets from its single
//! writer come from unique keys, row locks and retries on PostgreSQL. Later aggregates (leases,
//! audit, trading, prompts, governance) are new traits beside these.

pub mod audit;
mod error;
mod postgres;
mod records;
mod rows;
mod sqlite;

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;

pub use error::{Error, Result};
pub use records::*;

/// Agents, their versions, components and source snapshots, the active pointer, verdicts,
/// quarantine and the history of activations.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Every agent, by name.
    async fn agents(&self) -> Result<Vec<AgentRecord>>;
    async fn agent(&self, name: &str) -> Result<Option<AgentRecord>>;
    /// An agent's versions, oldest first.
    async fn versions(&self, agent: &str) -> Result<Vec<VersionRecord>>;
    /// An agent's versions that passed their checks (every state but `rejected`), oldest
    /// first: what deploys and rollbacks choose from, however many pushes were rejected.
    async fn servable_versions(&self, agent: &str) -> Result<Vec<VersionRecord>>;
    /// An agent's versions of one component digest, in any state, oldest first.
    async fn versions_by_digest(&self, agent: &str, digest: &str) -> Result<Vec<VersionRecord>>;
    async fn version(&self, agent: &str, number: u32) -> Result<Option<VersionRecord>>;
    /// The bytes of a stored component.
    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>>;
    /// A compressed source snapshot.
    async fn source(&self, digest: &str) -> Result<Option<Vec<u8>>>;
    /// Record a new version, numbered next for its agent (the agent is created if new), with
    /// its component when `bytes` is given and its source snapshot, and activate it when
    /// `activation` is given — the edit that built it going `live` with it — in one
    /// transaction. Returns its number.
    async fn insert_version(
        &self,
        version: &NewVersion<'_>,
        bytes: Option<&[u8]>,
        activation: Option<&Activation>,
    ) -> Result<u32>;
    /// Make an existing version the active one, in one transaction: the activation record,
    /// the verdict it carries, quarantine lifted, retirement undone, the edit it names `live`,
    /// and, on a rollback or a remediation, the live edits of the version left `rolled-back`.
    async fn activate(&self, agent: &str, version: u32, activation: &Activation) -> Result<()>;
    /// Record a verdict on a version.
    async fn judge(&self, agent: &str, judgement: &Judgement) -> Result<()>;
    /// Take the agent out of routing, with the verdict that caused it, in one transaction.
    async fn quarantine(&self, agent: &str, judged: Option<&Judgement>) -> Result<()>;
    /// Put the agent back into routing; false when it was not quarantined.
    async fn release(&self, agent: &str) -> Result<bool>;
    /// Take the agent out of service; its history stays.
    async fn retire(&self, agent: &str) -> Result<()>;
    /// Mark a stored version not servable with its cause, or servable again (`None`).
    async fn set_fault(&self, agent: &str, version: u32, fault: Option<&str>) -> Result<()>;
    /// Replace the stored bytes of a component (damaged on disk) with good ones of the same
    /// digest.
    async fn replace_component(&self, digest: &str, bytes: &[u8]) -> Result<()>;
    /// An agent's activations, newest first.
    async fn activations(&self, agent: &str, limit: u32) -> Result<Vec<ActivationRecord>>;
    /// Versions marked ready whose component is missing: must always be empty.
    async fn dangling_versions(&self) -> Result<Vec<(String, u32)>>;
}

/// Each agent's private key-value store.
#[async_trait]
pub trait KvStore: Send + Sync {
    async fn kv_get(&self, agent: &str, key: &str) -> Result<Option<String>>;
    /// The keys that start with `prefix` (`%` and `_` mean themselves), sorted.
    async fn kv_keys(&self, agent: &str, prefix: &str) -> Result<Vec<String>>;
    /// Apply a finished call's kv writes and append the events it emitted, in one transaction.
    async fn kv_commit(&self, agent: &str, writes: &[KvWrite], events: &[NewEvent]) -> Result<()>;
    /// How many keys and bytes an agent holds.
    async fn kv_usage(&self, agent: &str) -> Result<KvUsage>;
}

/// The event log of the bus.
#[async_trait]
pub trait EventLog: Send + Sync {
    async fn insert_event(&self, event: &NewEvent) -> Result<()>;
    /// Events in order.
    async fn events(&self, filter: &EventFilter<'_>) -> Result<Vec<EventRecord>>;
}

/// Agents' log lines.
#[async_trait]
pub trait LogStore: Send + Sync {
    /// Append lines in one transaction.
    async fn insert_logs(&self, lines: &[LogLine]) -> Result<()>;
    /// The last `limit` lines of an agent, oldest first.
    async fn logs(&self, agent: &str, page: Page) -> Result<Vec<LogRecord>>;
}

/// Alerts: at most one open per agent and kind.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Open an alert unless one of the same agent and kind is open. Returns the open alert
    /// and whether it is new.
    async fn open_alert(&self, alert: &NewAlert<'_>) -> Result<(AlertRecord, bool)>;
    async fn alert(&self, id: i64) -> Result<Option<AlertRecord>>;
    async fn alerts(&self, filter: &AlertFilter<'_>) -> Result<Vec<AlertRecord>>;
    /// Resolve one alert; false when it was not open.
    async fn resolve_alert(&self, id: i64, resolution: &str) -> Result<bool>;
    /// Resolve the open alerts of an agent of these kinds; returns their ids.
    async fn resolve_alerts_of(
        &self,
        agent: &str,
        kinds: &[&str],
        resolution: &str,
    ) -> Result<Vec<i64>>;
}

/// Edits of agents' source.
#[async_trait]
pub trait EditStore: Send + Sync {
    /// Record a proposed edit in state `applying`; returns its id.
    async fn insert_edit(&self, edit: &NewEdit<'_>) -> Result<i64>;
    async fn update_edit(&self, id: i64, update: &EditUpdate<'_>) -> Result<()>;
    async fn edit(&self, agent: &str, id: i64) -> Result<Option<EditRecord>>;
    /// An agent's edits, newest first.
    async fn edits(&self, agent: &str, page: Page) -> Result<Vec<EditRecord>>;
    /// Edits a stopped daemon left under way are rejected as `interrupted`; returns how many.
    async fn interrupt_edits(&self) -> Result<u64>;
}

/// What agents have asked of the LLM.
#[async_trait]
pub trait UsageStore: Send + Sync {
    async fn insert_llm_call(&self, call: &LlmCall<'_>) -> Result<()>;
    /// Token counts per agent, most tokens first.
    async fn llm_usage(&self) -> Result<Vec<LlmUsage>>;
    /// Tokens spent per agent and model since `since_ms`.
    async fn llm_spend_since(&self, since_ms: u64) -> Result<Vec<LlmSpend>>;
    /// The budgets set, by agent.
    async fn llm_budgets(&self) -> Result<Vec<BudgetRecord>>;
    /// Set one agent's budget.
    async fn set_llm_budget(&self, budget: &BudgetRecord) -> Result<()>;
}

/// The broker's orders and fills, the risk gate's refusals and the trading side's settings.
#[async_trait]
pub trait TradingStore: Send + Sync {
    /// Record a new order, unless one with its client order id exists: answers the stored
    /// order and whether it is new.
    async fn insert_order(&self, order: &OrderRecord) -> Result<(OrderRecord, bool)>;
    async fn order(&self, id: &str) -> Result<Option<OrderRecord>>;
    /// Orders, newest first.
    async fn orders(&self, filter: &OrderFilter<'_>) -> Result<Vec<OrderRecord>>;
    /// Write an order's new state and, when it filled, its fill, in one transaction.
    async fn update_order(&self, order: &OrderRecord, fill: Option<&FillRecord>) -> Result<()>;
    /// Every fill, oldest first: the ledger is computed from them.
    async fn fills(&self) -> Result<Vec<FillRecord>>;
    async fn insert_refusal(&self, refusal: &RefusalRecord) -> Result<i64>;
    /// Refusals, newest first.
    async fn refusals(&self, limit: u32) -> Result<Vec<RefusalRecord>>;
    async fn trading_state(&self, key: &str) -> Result<Option<String>>;
    async fn set_trading_state(&self, key: &str, value: &str) -> Result<()>;
    /// Record the account at a day's close, replacing what that day had.
    async fn record_equity(&self, point: &EquityPoint) -> Result<()>;
    /// The equity curve, oldest day first.
    async fn equity_curve(&self) -> Result<Vec<EquityPoint>>;
}

/// Long-term memory: texts of collections, recalled by relevance.
#[async_trait]
pub trait MemoryStore: Send + Sync {
    /// Store a text; answers its id.
    async fn remember(&self, memory: &NewMemory<'_>) -> Result<i64>;
    /// Texts of `collection` matching any word of `query`, most relevant first, at most
    /// `limit`; with no word in `query`, the newest. With `as_of_ms`, none written as of a
    /// later market time.
    async fn recall(
        &self,
        collection: &str,
        query: &str,
        limit: u32,
        as_of_ms: Option<u64>,
    ) -> Result<Vec<MemoryRecord>>;
    /// The newest texts of `collection` that have an embedding (bounded by `as_of_ms` like
    /// `recall`).
    async fn embedded(
        &self,
        collection: &str,
        limit: u32,
        as_of_ms: Option<u64>,
    ) -> Result<Vec<MemoryRecord>>;
    /// Forget one text; false when it was not there.
    async fn forget(&self, collection: &str, id: i64) -> Result<bool>;
}

/// The audit trail (see [`audit`]): appended to, never changed, never pruned.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Append `entry` after the last one, numbered next and chained to its hash, in one
    /// transaction that no other append interleaves with. Answers it as stored.
    async fn append_audit(&self, entry: &audit::NewAudit<'_>) -> Result<audit::AuditRecord>;
    /// Up to `limit` entries numbered after `after`, oldest first.
    async fn audit(&self, after: i64, limit: u32) -> Result<Vec<audit::AuditRecord>>;
    /// The entries written from `from_ms` (inclusive) to `to_ms` (exclusive), oldest first.
    async fn audit_between(&self, from_ms: u64, to_ms: u64) -> Result<Vec<audit::AuditRecord>>;
}

/// What the Overseer keeps: the runs of its loops and its daily reports.
#[async_trait]
pub trait OverseerStore: Send + Sync {
    /// Keep a finished loop run; answers its id.
    async fn insert_loop_run(&self, run: &NewLoopRun<'_>) -> Result<i64>;
    /// Loop runs newest first, of one loop when `name` is given.
    async fn loop_runs(&self, name: Option<&str>, page: Page) -> Result<Vec<LoopRunRecord>>;
    /// Keep the report of `date`, replacing the one kept before it.
    async fn put_report(
        &self,
        date: &str,
        generated_ms: u64,
        body: &serde_json::Value,
    ) -> Result<()>;
    async fn report(&self, date: &str) -> Result<Option<serde_json::Value>>;
    /// The reports kept, newest date first.
    async fn reports(&self, limit: u32) -> Result<Vec<ReportSummary>>;
}

/// Governance: decisions, their approval and what became of them.
#[async_trait]
pub trait GovernanceStore: Send + Sync {
    async fn insert_decision(&self, decision: &NewDecision<'_>) -> Result<DecisionRecord>;
    async fn decision(&self, id: i64) -> Result<Option<DecisionRecord>>;
    /// Decisions newest first, in one state when `state` is given.
    async fn decisions(&self, state: Option<&str>, page: Page) -> Result<Vec<DecisionRecord>>;
    /// Move a decision from state `from` to `to`, saying who and why, only if it is in
    /// `from`: of two deciders (an approval and the timeout) one wins. Answers the decision as
    /// it now is, or `None` when it was not in `from`.
    async fn transition_decision(
        &self,
        id: i64,
        from: &str,
        to: &str,
        by: &str,
        reason: &str,
    ) -> Result<Option<DecisionRecord>>;
    /// Record what applying it did, in state `applied` or `failed`, and when its metric is
    /// due (counted from its application).
    async fn record_applied(
        &self,
        id: i64,
        state: &str,
        applied: &serde_json::Value,
        due_ms: u64,
    ) -> Result<()>;
    /// Record the outcome measured on its date.
    async fn record_outcome(
        &self,
        id: i64,
        outcome: &str,
        measured: &serde_json::Value,
    ) -> Result<()>;
}

/// The prompt registry: versions, labels, uses and their outcomes, and A/B experiments.
#[async_trait]
pub trait PromptStore: Send + Sync {
    /// Keep a new version of a prompt, numbered one after its last (1 for a new prompt).
    async fn insert_prompt_version(
        &self,
        version: &NewPromptVersion<'_>,
    ) -> Result<PromptVersionRecord>;
    /// The versions of `name`, oldest first.
    async fn prompt_versions(&self, name: &str) -> Result<Vec<PromptVersionRecord>>;
    /// The first version of every prompt, by name (its owner and variables).
    async fn prompts(&self) -> Result<Vec<PromptVersionRecord>>;
    /// Point `label` of `name` at `version` from now on.
    async fn set_prompt_label(
        &self,
        name: &str,
        label: &str,
        version: u32,
        set_by: &str,
        reason: &str,
    ) -> Result<PromptLabelRecord>;
    /// Every setting of the labels of `name`, oldest first.
    async fn prompt_labels(&self, name: &str) -> Result<Vec<PromptLabelRecord>>;
    /// Keep a use; answers its id.
    async fn insert_prompt_use(&self, used: &NewPromptUse<'_>) -> Result<i64>;
    /// Record the outcome of use `id`, only when `agent` made it and it has none yet.
    /// Answers the use as it now is, or `None` when no such unscored use of `agent` exists.
    async fn score_prompt_use(
        &self,
        id: i64,
        agent: &str,
        score: Option<f64>,
        success: Option<bool>,
    ) -> Result<Option<PromptUseRecord>>;
    /// The newest `limit` uses of `name`, newest first.
    async fn prompt_uses(&self, name: &str, limit: u32) -> Result<Vec<PromptUseRecord>>;
    /// Every use in experiment `id` with an outcome, oldest first.
    async fn experiment_outcomes(&self, id: i64) -> Result<Vec<PromptUseRecord>>;
    /// Keep a new experiment on `prompt`, `running`.
    async fn insert_experiment(
        &self,
        prompt: &str,
        body: &serde_json::Value,
    ) -> Result<ExperimentRecord>;
    async fn experiment(&self, id: i64) -> Result<Option<ExperimentRecord>>;
    /// Experiments newest first, of one prompt and in one state when given.
    async fn experiments(
        &self,
        prompt: Option<&str>,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ExperimentRecord>>;
    /// Move experiment `id` from `from` to `to` with `result`, only if it is in `from`
    /// (it ends when `to` is not `running`). Answers it as it now is, or `None`.
    async fn transition_experiment(
        &self,
        id: i64,
        from: &str,
        to: &str,
        result: &serde_json::Value,
    ) -> Result<Option<ExperimentRecord>>;
}

/// The specs of new agents the architect builds.
#[async_trait]
pub trait SpecStore: Send + Sync {
    async fn insert_spec(
        &self,
        name: &str,
        body: &serde_json::Value,
        state: &str,
    ) -> Result<SpecRecord>;
    async fn spec(&self, id: i64) -> Result<Option<SpecRecord>>;
    /// Specs newest first.
    async fn specs(&self, page: Page) -> Result<Vec<SpecRecord>>;
    /// Move spec `id` from `from` to `to` with `detail`, only if it is in `from`.
    async fn transition_spec(
        &self,
        id: i64,
        from: &str,
        to: &str,
        detail: &serde_json::Value,
    ) -> Result<Option<SpecRecord>>;
}

/// Retention: what has been kept long enough goes.
#[async_trait]
pub trait Housekeeping: Send + Sync {
    /// Remove what `policy` no longer keeps, oldest first.
    async fn prune(&self, policy: &PrunePolicy) -> Result<Pruned>;
    /// Bytes the database takes on disk (for SQLite, the file and its WAL).
    async fn size_on_disk(&self) -> Result<u64>;
}

/// A database that holds every aggregate.
#[async_trait]
pub trait Backend:
    Registry
    + KvStore
    + EventLog
    + LogStore
    + AlertStore
    + EditStore
    + UsageStore
    + TradingStore
    + MemoryStore
    + AuditStore
    + OverseerStore
    + GovernanceStore
    + PromptStore
    + SpecStore
    + Housekeeping
{
    /// `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// Run `sql` as it is, past every rule of the store: for tests that play an intruder
    /// with access to the database. Answers the rows it changed.
    #[cfg(any(test, feature = "testing"))]
    async fn execute_raw(&self, sql: &str) -> Result<u64>;
}

/// The database of a daemon: cheap to clone, and every aggregate's trait through `Deref`.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
}

impl std::ops::Deref for Store {
    type Target = dyn Backend;

    fn deref(&self) -> &Self::Target {
        self.backend.as_ref()
    }
}

impl Store {
    /// Open the database `url` names: `postgres://…` (or `postgresql://…`), `sqlite://PATH`,
    /// or a plain path to an SQLite file. Migrations run before it is returned.
    pub async fn open(url: &str) -> Result<Store> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Store::postgres(url).await;
        }
        match sqlite_path(url) {
            Some(path) => Store::sqlite(path).await,
            None => Err(Error::Url(url.to_string())),
        }
    }

    /// Open (creating it if needed) the SQLite database at `path`.
    pub async fn sqlite(path: &Path) -> Result<Store> {
        Ok(Store {
            backend: Arc::new(sqlite::Sqlite::open(path).await?),
        })
    }

    /// Connect to PostgreSQL at `url`.
    pub async fn postgres(url: &str) -> Result<Store> {
        Ok(Store {
            backend: Arc::new(postgres::Postgres::connect(url).await?),
        })
    }
}

/// The SQLite file a database URL names: `sqlite://PATH` or a plain path; `None` for
/// PostgreSQL's URLs and anything else [`Store::open`] refuses.
pub fn sqlite_path(url: &str) -> Option<&Path> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        return Some(Path::new(path));
    }
    (!url.contains("://") && !url.is_empty()).then(|| Path::new(url))
}

/// Milliseconds since the Unix epoch, as the store timestamps rows.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A database URL with its password hidden, for logs and status pages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://me:secret@db:5432/o"),
            "postgres://me:***@db:5432/o"
        );
        assert_eq!(redact("postgres://db/o"), "postgres://db/o");
        assert_eq!(redact("/var/lib/o.db"), "/var/lib/o.db");
    }

    #[test]
    fn state_enums_read_back_what_they_store() {
        for verdict in Verdict::ALL {
            assert_eq!(verdict.as_str().parse::<Verdict>().ok(), Some(*verdict));
        }
        assert_eq!(
            serde_json::to_string(&Verdict::RolledBack).ok().as_deref(),
            Some("\"rolled-back\"")
        );
        assert!("sideways".parse::<EditState>().is_err());
    }
}
