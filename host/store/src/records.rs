//! What the store keeps: records as read back, the shapes written, and the state enums, each
//! stored as the lower-case text its `as_str` gives.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// Defines a state enum stored as text: `as_str`, `FromStr`, and serde with the same names.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The text stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self, Error> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(Error::Corrupt(format!(
                        "{} {other:?} is not one of {:?}",
                        stringify!($name),
                        [$($text),+]
                    ))),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// Whether a version passed the deploy pipeline.
    VersionState {
        /// Passed every check; serving when the agent's active pointer names it.
        Ready => "ready",
        /// Failed a check; kept for the record, never served.
        Rejected => "rejected",
    }
}

text_enum! {
    /// What the watch window (or the version's replacement) concluded about a version. No
    /// verdict means the version is being watched, or was never watched.
    Verdict {
        /// Enough calls, an error rate within the policy.
        Stable => "stable",
        /// The window closed with too few calls to judge.
        Inconclusive => "inconclusive",
        /// The window judged it failing and the agent was taken away from it.
        RolledBack => "rolled-back",
        /// Replaced before its window closed, with enough calls that failed to condemn it.
        Failed => "failed",
        /// Replaced before its window closed, with too few calls to judge.
        Superseded => "superseded",
    }
}

impl Verdict {
    /// A condemned version is never chosen as a rollback target, and is re-activated only
    /// when a person forces it.
    pub fn condemns(self) -> bool {
        matches!(self, Verdict::RolledBack | Verdict::Failed)
    }
}

text_enum! {
    /// Where a version came from.
    Origin {
        /// Pushed as a component over the API or the CLI.
        Push => "push",
        /// Built by the host from an edit of the agent's source.
        Edit => "edit",
        /// Built from the bundled agents' source at start.
        Bundled => "bundled",
    }
}

text_enum! {
    /// Why a version became the active one.
    ActivationCause {
        /// A push (or an edit's build) of a new version, or of the bytes of an earlier one.
        Push => "push",
        /// A person asked for a rollback.
        Rollback => "rollback",
        /// The host took the agent off a failing version: its watch window, supervision, or
        /// failed health checks.
        Remediation => "remediation",
    }
}

text_enum! {
    /// Where an edit stands.
    EditState {
        Applying => "applying",
        Building => "building",
        Checking => "checking",
        Live => "live",
        Rejected => "rejected",
        RolledBack => "rolled-back",
    }
}

impl EditState {
    /// Whether the edit is still under way.
    pub fn running(self) -> bool {
        matches!(
            self,
            EditState::Applying | EditState::Building | EditState::Checking
        )
    }
}

/// The outcome of one step of the deploy pipeline, kept with the version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Check {
    /// `validate`, `describe`, `health`, `canary` or `dependencies` (a warning, never a
    /// refusal).
    pub step: String,
    pub ok: bool,
    pub detail: String,
    /// How long the step took, in milliseconds.
    pub ms: f64,
}

/// An agent as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AgentRecord {
    pub name: String,
    pub active_version: Option<u32>,
    pub created_ms: u64,
    pub retired_ms: Option<u64>,
    /// Set while the agent is out of routing after repeated failures.
    pub quarantined_ms: Option<u64>,
}

/// A version as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct VersionRecord {
    pub agent: String,
    pub number: u32,
    /// sha256 of the component bytes, hex.
    pub digest: String,
    pub size: u64,
    /// The manifest (`agent.toml`) as JSON.
    pub manifest: Value,
    pub origin: Origin,
    /// The edit that built it, when its origin is an edit.
    pub edit: Option<i64>,
    /// The version that was active when this one was pushed.
    pub parent: Option<u32>,
    pub state: VersionState,
    /// Where a rejected version stopped, its code and why.
    pub stage: Option<String>,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    pub created_ms: u64,
    pub verdict: Option<Verdict>,
    pub verdict_detail: Option<String>,
    /// Calls and failures counted by its last verdict.
    pub calls: u64,
    pub failures: u64,
    /// The source snapshot it was built from, when it was built from source.
    pub source_digest: Option<String>,
    /// Why a stored version cannot be served (its bytes damaged, or no longer compiling).
    pub fault: Option<String>,
}

impl VersionRecord {
    /// Passed its checks and can be loaded.
    pub fn servable(&self) -> bool {
        self.state == VersionState::Ready && self.fault.is_none()
    }

    /// Its verdict condemns it: never an automatic rollback target.
    pub fn condemned(&self) -> bool {
        self.verdict.is_some_and(Verdict::condemns)
    }
}

/// The step at which a version was rejected, the stable code and the reason.
#[derive(Debug, Clone, Copy)]
pub struct RejectedAt<'a> {
    pub stage: &'a str,
    pub code: &'a str,
    pub reason: &'a str,
}

/// A version about to be recorded.
#[derive(Debug, Clone, Copy)]
pub struct NewVersion<'a> {
    pub agent: &'a str,
    pub digest: &'a str,
    pub size: u64,
    pub manifest: &'a Value,
    pub origin: Origin,
    /// The edit that built it: written `live` in the same transaction when the version is
    /// activated.
    pub edit: Option<i64>,
    pub parent: Option<u32>,
    pub checks: &'a [Check],
    /// Why the version was rejected, when it was.
    pub rejected: Option<RejectedAt<'a>>,
    /// The compressed source snapshot it was built from: digest and bytes.
    pub source: Option<(&'a str, &'a [u8])>,
}

/// A verdict on a version, written in the same transaction as what it causes.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub version: u32,
    pub verdict: Verdict,
    pub detail: String,
    pub calls: u64,
    pub failures: u64,
}

/// Making a version the active one: all of it is one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub cause: ActivationCause,
    /// The version opens a watch window: its verdict is cleared until the window closes.
    pub watch: bool,
    /// A verdict on the version being replaced (or on another), written with the activation.
    pub judged: Option<Judgement>,
    /// The edit whose build this activation puts live (its bytes matched a version that
    /// already existed): it goes `live` with the activation.
    pub edit: Option<i64>,
}

/// One activation, as recorded: which version, the one it replaced, why and when.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ActivationRecord {
    pub seq: i64,
    pub agent: String,
    /// `None` when the agent was retired.
    pub version: Option<u32>,
    pub previous: Option<u32>,
    pub cause: ActivationCause,
    pub at_ms: u64,
}

/// An event about to be written to the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: String,
    pub topic: String,
    /// A JSON document.
    pub payload: String,
    pub source: String,
    pub at_ms: u64,
    /// The market time the event belongs to, in milliseconds since the Unix epoch: a
    /// `market.tick`'s, inherited by every event emitted while handling it.
    pub as_of_ms: Option<u64>,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EventRecord {
    pub seq: i64,
    pub id: String,
    pub topic: String,
    pub payload: String,
    pub source: String,
    pub at_ms: u64,
    pub as_of_ms: Option<u64>,
}

/// Which events to read.
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    /// An exact topic, or `prefix.*`.
    pub topic: Option<&'a str>,
    /// Only events after this sequence number.
    pub after: i64,
    pub since_ms: u64,
    pub limit: u32,
    /// The newest `limit` events, newest first (else the oldest after `after`, oldest first).
    pub newest_first: bool,
}

/// A change to an agent's kv, written with the call's events when the call succeeds.
#[derive(Debug, Clone, PartialEq)]
pub struct KvWrite {
    pub key: String,
    /// `None` removes the key.
    pub value: Option<String>,
}

/// A log line waiting to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub agent: String,
    pub version: Option<u32>,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    pub message: String,
    pub at_ms: u64,
}

/// One line of an agent's log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LogRecord {
    pub seq: i64,
    pub agent: String,
    pub version: Option<u32>,
    pub level: String,
    pub message: String,
    pub at_ms: u64,
}

/// An alert about to be opened.
#[derive(Debug, Clone, Copy)]
pub struct NewAlert<'a> {
    pub agent: &'a str,
    pub kind: &'a str,
    pub priority: &'a str,
    pub message: &'a str,
    pub evidence: &'a Value,
}

/// An alert as stored.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertRecord {
    pub id: i64,
    pub agent: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub priority: String,
    pub message: String,
    pub evidence: Value,
    pub opened_ms: u64,
    pub resolved_ms: Option<u64>,
    pub resolution: Option<String>,
}

/// One page of a list read newest first: at most `limit` records whose id (a log line's
/// sequence number) is below `before`, or the newest when `before` is `None`. The last
/// record's id is the `before` of the next page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub before: Option<i64>,
    pub limit: u32,
}

impl Page {
    /// The newest `limit` records.
    pub fn latest(limit: u32) -> Page {
        Page {
            before: None,
            limit,
        }
    }
}

/// Which alerts to read, newest first.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter<'a> {
    /// Open ones (`Some(true)`), resolved ones (`Some(false)`), or all.
    pub open: Option<bool>,
    pub agent: Option<&'a str>,
    /// Only alerts whose id is below this one: the next page after it.
    pub before: Option<i64>,
    pub limit: u32,
}

/// An edit of an agent's source and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct EditRecord {
    pub id: i64,
    pub agent: String,
    pub base_version: Option<u32>,
    /// Who or what proposed it: `api`, `cli`, an agent's name.
    pub proposer: String,
    /// Proposed by an agent through the `source` interface (the proposer is its name).
    pub by_agent: bool,
    pub reason: String,
    /// The change as a unified diff against the base.
    pub diff: String,
    pub state: EditState,
    /// Where a rejected edit stopped: `apply`, `build`, `manifest`, or a deploy stage.
    pub stage: Option<String>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub build_log: Option<String>,
    /// The version the edit produced.
    pub version: Option<u32>,
    /// The active version the change was re-applied to, when the base was stale.
    pub rebased_onto: Option<u32>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// A proposed edit, as first recorded (state `applying`).
#[derive(Debug, Clone, Copy)]
pub struct NewEdit<'a> {
    pub agent: &'a str,
    pub base_version: Option<u32>,
    pub proposer: &'a str,
    pub by_agent: bool,
    pub reason: &'a str,
    pub diff: &'a str,
    pub rebased_onto: Option<u32>,
}

/// The outcome of one step of an edit; absent fields keep what is stored.
#[derive(Debug, Clone)]
pub struct EditUpdate<'a> {
    pub state: EditState,
    pub stage: Option<&'a str>,
    pub code: Option<&'a str>,
    pub message: Option<String>,
    pub build_log: Option<&'a str>,
    pub version: Option<u32>,
}

impl EditUpdate<'_> {
    /// Only a new state.
    pub fn state(state: EditState) -> Self {
        EditUpdate {
            state,
            stage: None,
            code: None,
            message: None,
            build_log: None,
            version: None,
        }
    }
}

/// One completion an agent asked for.
#[derive(Debug, Clone, Copy)]
pub struct LlmCall<'a> {
    pub agent: &'a str,
    pub model: &'a str,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `ok`, `unavailable` or `failed`.
    pub outcome: &'a str,
    pub ms: u64,
}

/// Tokens one agent spent on one model since some time.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LlmSpend {
    pub agent: String,
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// An agent's LLM budget per day (UTC).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BudgetRecord {
    pub agent: String,
    pub tokens_per_day: u64,
    /// US dollars.
    pub usd_per_day: f64,
}

/// What one agent has asked of the LLM so far.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LlmUsage {
    pub agent: String,
    pub calls: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub last_ms: u64,
}

/// What an agent holds in kv.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvUsage {
    pub keys: u64,
    /// Bytes of keys and values, UTF-8.
    pub bytes: u64,
}

/// What a prune keeps: rows older than a cutoff go, and past a size or a count the oldest go.
/// Times are milliseconds since the Unix epoch; a cutoff of 0 keeps everything by age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePolicy {
    pub events_before_ms: u64,
    /// Payload bytes of events kept in all.
    pub events_bytes: u64,
    pub logs_before_ms: u64,
    /// Message bytes of log lines kept per agent.
    pub logs_bytes_per_agent: u64,
    pub llm_calls_before_ms: u64,
    pub llm_calls: u64,
    /// Resolved alerts only; open ones are never pruned.
    pub alerts_before_ms: u64,
    pub alerts: u64,
    /// Build logs of finished edits (`live`, `rejected`, `rolled-back`) are cleared; the
    /// edit's record stays.
    pub build_logs_before_ms: u64,
    pub build_logs: u64,
    /// Rejected versions, with their component unless another version holds it. An agent's
    /// newest version always stays, so its numbers are never reused.
    pub rejected_before_ms: u64,
    pub rejected_per_agent: u64,
    /// The risk gate's refusals.
    pub refusals_before_ms: u64,
    pub refusals: u64,
    /// Memory texts kept per collection, the newest.
    pub memories_per_collection: u64,
}

/// How many rows one prune removed (build logs: cleared).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Pruned {
    pub events: u64,
    pub logs: u64,
    pub llm_calls: u64,
    pub alerts: u64,
    pub build_logs: u64,
    pub rejected: u64,
    pub components: u64,
    pub refusals: u64,
    pub memories: u64,
}

impl Pruned {
    /// Rows removed or cleared in all.
    pub fn total(&self) -> u64 {
        self.events
            + self.logs
            + self.llm_calls
            + self.alerts
            + self.build_logs
            + self.rejected
            + self.components
            + self.refusals
            + self.memories
    }
}

/// An order as the broker holds it. Prices and money in the account's currency; quantities in
/// shares; dates are exchange-local ISO days.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OrderRecord {
    pub id: String,
    /// The caller's id: unique, so a retried submit finds the first order.
    pub client_order_id: String,
    /// The agent (or `api`) that placed it.
    pub agent: String,
    pub symbol: String,
    /// `buy` or `sell`.
    pub side: String,
    /// `market` or `limit`.
    pub order_type: String,
    /// `day` or `gtc`.
    pub time_in_force: String,
    /// Shares asked for; for a notional order, fixed when it fills.
    pub quantity: f64,
    pub notional: Option<f64>,
    pub limit_price: Option<f64>,
    /// `new`, `filled`, `canceled`, `expired` or `rejected`.
    pub status: String,
    pub filled_quantity: f64,
    /// Average price of the fills, slippage included.
    pub fill_price: Option<f64>,
    pub commission: f64,
    /// The as-of day the order was placed.
    pub submitted: String,
    /// The trading day it filled.
    pub filled: Option<String>,
    /// Why it was cancelled, expired or rejected.
    pub reason: Option<String>,
    pub at_ms: u64,
    /// The version of the agent that placed it.
    pub agent_version: Option<u32>,
    /// The event the agent was handling when it placed it, as JSON
    /// `{event, topic, source, source_version}`: for the trade executor, the signal.
    pub trigger: Option<String>,
}

/// One execution of an order.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct FillRecord {
    /// Assigned by the store; 0 for a fill not yet stored.
    pub seq: i64,
    pub order_id: String,
    pub symbol: String,
    pub side: String,
    pub quantity: f64,
    /// The price paid or received per share, slippage included.
    pub price: f64,
    pub commission: f64,
    /// What slippage cost, in money: |price − the bar's price| × quantity.
    pub slippage: f64,
    /// The trading day of the bar it filled on.
    pub date: String,
    pub at_ms: u64,
}

/// Which orders to read.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter<'a> {
    /// Only orders still `new`.
    pub open_only: bool,
    pub symbol: Option<&'a str>,
    pub limit: u32,
}

/// An order the risk gate refused.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RefusalRecord {
    /// Assigned by the store; 0 for one not yet stored.
    pub seq: i64,
    pub agent: String,
    pub client_order_id: String,
    pub symbol: String,
    pub side: String,
    /// The gate's stable reason code (`max_position`, `halted`, …).
    pub code: String,
    pub message: String,
    /// The numbers that triggered it, as a JSON object.
    pub detail: String,
    pub as_of: String,
    pub at_ms: u64,
}

/// The account at one trading day's close.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EquityPoint {
    /// The trading day (ISO date).
    pub day: String,
    pub equity: f64,
    pub cash: f64,
    pub gross_exposure: f64,
    pub realized_pnl: f64,
    pub at_ms: i64,
}

/// A text to remember.
#[derive(Debug, Clone, PartialEq)]
pub struct NewMemory<'a> {
    pub collection: &'a str,
    pub text: &'a str,
    /// A JSON object.
    pub metadata: &'a str,
    /// Little-endian f32 values, when an embeddings endpoint gave a vector.
    pub embedding: Option<&'a [u8]>,
    pub at_ms: u64,
    /// The market time of the call that wrote it, when it had one.
    pub as_of_ms: Option<u64>,
}

/// A remembered text.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct MemoryRecord {
    pub id: i64,
    pub collection: String,
    pub text: String,
    pub metadata: String,
    #[serde(skip)]
    pub embedding: Option<Vec<u8>>,
    pub at_ms: u64,
    /// Lexical relevance to the query (BM25 on SQLite, `ts_rank_cd` on PostgreSQL), higher is
    /// better; 0 when read without a query.
    pub rank: f64,
}

/// One run of one of the Overseer's loops, about to be kept.
#[derive(Debug, Clone, Copy)]
pub struct NewLoopRun<'a> {
    /// `health`, `healing`, `performance`, `optimisation` or `governance`.
    pub name: &'a str,
    pub started_ms: u64,
    pub ended_ms: u64,
    /// What it read, as JSON.
    pub looked_at: &'a Value,
    /// What it did, as JSON.
    pub did: &'a Value,
    /// Why it stopped short, when it did.
    pub error: Option<&'a str>,
}

/// A kept loop run.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LoopRunRecord {
    pub id: i64,
    #[serde(rename = "loop")]
    pub name: String,
    pub started_ms: u64,
    pub ended_ms: u64,
    pub looked_at: Value,
    pub did: Value,
    pub error: Option<String>,
}

/// A daily report as kept: its date and when it was made (the body is read on its own).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReportSummary {
    pub date: String,
    pub generated_ms: u64,
}

/// A decision about to be kept.
#[derive(Debug, Clone, Copy)]
pub struct NewDecision<'a> {
    /// The meeting (a report's date) or request that made it.
    pub meeting: &'a str,
    /// `governance`, an agent's name, or `person`.
    pub proposer: &'a str,
    /// The decision itself, as JSON (kind, title, actions, metric, …).
    pub body: &'a Value,
    /// `auto` (applied at once) or `person` (waits for approval).
    pub policy: &'a str,
    /// `awaiting_approval` or `approved` (about to be applied).
    pub state: &'a str,
    /// When its metric is measured, in milliseconds since the epoch.
    pub due_ms: u64,
}

/// A kept decision and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DecisionRecord {
    pub id: i64,
    pub meeting: String,
    pub proposer: String,
    pub made_ms: u64,
    pub body: Value,
    pub policy: String,
    /// `awaiting_approval`, `approved`, `applied`, `failed`, `rejected` or `expired`.
    pub state: String,
    pub decided_by: Option<String>,
    pub decided_ms: Option<u64>,
    pub reason: Option<String>,
    /// What applying it did, or why it could not be applied.
    pub applied: Option<Value>,
    pub due_ms: u64,
    /// `met`, `missed` or `inconclusive`, once measured.
    pub outcome: Option<String>,
    pub measured: Option<Value>,
    pub evaluated_ms: Option<u64>,
}

/// A version of a prompt about to be kept; numbered next after the prompt's last.
#[derive(Debug, Clone, Copy)]
pub struct NewPromptVersion<'a> {
    pub name: &'a str,
    /// The agent the prompt belongs to (the first version's owner is every version's).
    pub owner: &'a str,
    /// Who wrote it: an agent's name, `manifest` (seeded from an agent's manifest) or `person`.
    pub author: &'a str,
    /// The version itself, as JSON (`system`, `template`, `variables`, `note`).
    pub body: &'a Value,
}

/// A kept version of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PromptVersionRecord {
    pub name: String,
    pub version: u32,
    pub owner: String,
    pub author: String,
    pub body: Value,
    pub created_ms: u64,
}

/// One setting of a prompt's label: the label points at `version` from `set_ms` on.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PromptLabelRecord {
    pub id: i64,
    pub name: String,
    /// `production` or `candidate`.
    pub label: String,
    pub version: u32,
    pub set_by: String,
    pub reason: String,
    pub set_ms: u64,
}

/// One use of a prompt's version by an agent, about to be kept.
#[derive(Debug, Clone, Copy)]
pub struct NewPromptUse<'a> {
    pub name: &'a str,
    pub version: u32,
    pub agent: &'a str,
    /// The experiment unit the variant was chosen for (a symbol, a task, an agent).
    pub unit: &'a str,
    pub experiment: Option<i64>,
    /// The index of the experiment's variant served.
    pub variant: Option<u32>,
}

/// A kept use, and the outcome its agent reported for it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PromptUseRecord {
    pub id: i64,
    pub name: String,
    pub version: u32,
    pub agent: String,
    pub unit: String,
    pub experiment: Option<i64>,
    pub variant: Option<u32>,
    pub used_ms: u64,
    /// A continuous outcome (higher is better).
    pub score: Option<f64>,
    /// A binary outcome.
    pub success: Option<bool>,
    /// When the outcome was reported; `None` until it is.
    pub scored_ms: Option<u64>,
}

/// A kept A/B experiment between versions of a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ExperimentRecord {
    pub id: i64,
    pub prompt: String,
    /// Its design, as JSON (variants, split, metric, minimum sample, alpha, looks, seed).
    pub body: Value,
    /// `running`, `promoted`, `kept`, `no_difference` or `stopped`.
    pub state: String,
    pub created_ms: u64,
    pub ended_ms: Option<u64>,
    /// The looks taken and what the last one found.
    pub result: Option<Value>,
}

/// A kept spec of a new agent and how far the architect has taken it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SpecRecord {
    pub id: i64,
    /// The agent's name.
    pub name: String,
    /// The spec as submitted, as JSON.
    pub body: Value,
    /// `awaiting_approval`, `designing`, `building`, `live`, `failed` or `rejected`.
    pub state: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The attempts made, the edits they became and the resulting version, as JSON.
    pub detail: Value,
}
