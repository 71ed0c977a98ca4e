//! Rows as both backends return them (integers as `i64`, JSON and states as text), and their
//! conversion into records. Both backends select the same column names, so one set of row
//! types serves both.

use std::str::FromStr;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::records::*;

/// A stored integer that must fit a `u32` (version numbers).
pub(crate) fn number(n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Corrupt(format!("version number {n}")))
}

fn opt_number(n: Option<i64>) -> Result<Option<u32>> {
    n.map(number).transpose()
}

/// A stored count or time, never negative.
pub(crate) fn unsigned(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn parse<T: FromStr<Err = Error>>(text: &str) -> Result<T> {
    text.parse()
}

fn json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

/// A value written as JSON text.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_string())
}

/// A version number or count as the databases store it.
pub(crate) fn int(n: impl Into<u64>) -> i64 {
    i64::try_from(n.into()).unwrap_or(i64::MAX)
}

pub(crate) const AGENT_COLUMNS: &str =
    "SELECT name, active_version, created_ms, retired_ms, quarantined_ms FROM agents";

#[derive(sqlx::FromRow)]
pub(crate) struct AgentRow {
    name: String,
    active_version: Option<i64>,
    created_ms: i64,
    retired_ms: Option<i64>,
    quarantined_ms: Option<i64>,
}

impl TryFrom<AgentRow> for AgentRecord {
    type Error = Error;

    fn try_from(row: AgentRow) -> Result<Self> {
        Ok(AgentRecord {
            name: row.name,
            active_version: opt_number(row.active_version)?,
            created_ms: unsigned(row.created_ms),
            retired_ms: row.retired_ms.map(unsigned),
            quarantined_ms: row.quarantined_ms.map(unsigned),
        })
    }
}

pub(crate) const VERSION_COLUMNS: &str = "SELECT agent, number, digest, size, manifest, origin, edit_id, parent, state, stage, code, reason, checks, created_ms, verdict, verdict_detail, calls, failures, source_digest, fault FROM versions";

#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    agent: String,
    number: i64,
    digest: String,
    size: i64,
    manifest: String,
    origin: String,
    edit_id: Option<i64>,
    parent: Option<i64>,
    state: String,
    stage: Option<String>,
    code: Option<String>,
    reason: Option<String>,
    checks: String,
    created_ms: i64,
    verdict: Option<String>,
    verdict_detail: Option<String>,
    calls: i64,
    failures: i64,
    source_digest: Option<String>,
    fault: Option<String>,
}

impl TryFrom<VersionRow> for VersionRecord {
    type Error = Error;

    fn try_from(row: VersionRow) -> Result<Self> {
        Ok(VersionRecord {
            number: number(row.number)?,
            digest: row.digest,
            size: unsigned(row.size),
            manifest: json("stored manifest", &row.manifest)?,
            origin: parse(&row.origin)?,
            edit: row.edit_id,
            parent: opt_number(row.parent)?,
            state: parse(&row.state)?,
            stage: row.stage,
            code: row.code,
            reason: row.reason,
            checks: json("stored checks", &row.checks)?,
            created_ms: unsigned(row.created_ms),
            verdict: row.verdict.as_deref().map(parse).transpose()?,
            verdict_detail: row.verdict_detail,
            calls: unsigned(row.calls),
            failures: unsigned(row.failures),
            source_digest: row.source_digest,
            fault: row.fault,
            agent: row.agent,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ActivationRow {
    seq: i64,
    agent: String,
    version: Option<i64>,
    previous: Option<i64>,
    cause: String,
    at_ms: i64,
}

impl TryFrom<ActivationRow> for ActivationRecord {
    type Error = Error;

    fn try_from(row: ActivationRow) -> Result<Self> {
        Ok(ActivationRecord {
            seq: row.seq,
            agent: row.agent,
            version: opt_number(row.version)?,
            previous: opt_number(row.previous)?,
            cause: parse(&row.cause)?,
            at_ms: unsigned(row.at_ms),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    seq: i64,
    id: String,
    topic: String,
    payload: String,
    source: String,
    at_ms: i64,
    as_of_ms: Option<i64>,
}

impl From<EventRow> for EventRecord {
    fn from(row: EventRow) -> Self {
        EventRecord {
            seq: row.seq,
            id: row.id,
            topic: row.topic,
            payload: row.payload,
            source: row.source,
            at_ms: unsigned(row.at_ms),
            as_of_ms: row.as_of_ms.map(unsigned),
        }
    }
}

/// An event filter's topic as (exact topic, prefix): `a.b` is exact, `a.*` the prefix `a.`.
pub(crate) fn topic_filter(topic: Option<&str>) -> (Option<String>, Option<String>) {
    match topic {
        Some(t) => match t.strip_suffix('*') {
            Some(prefix) => (None, Some(prefix.to_string())),
            None => (Some(t.to_string()), None),
        },
        None => (None, None),
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct LogRow {
    seq: i64,
    agent: String,
    version: Option<i64>,
    level: String,
    message: String,
    at_ms: i64,
}

impl TryFrom<LogRow> for LogRecord {
    type Error = Error;

    fn try_from(row: LogRow) -> Result<Self> {
        Ok(LogRecord {
            seq: row.seq,
            agent: row.agent,
            version: opt_number(row.version)?,
            level: row.level,
            message: row.message,
            at_ms: unsigned(row.at_ms),
        })
    }
}

pub(crate) const ALERT_COLUMNS: &str = "SELECT id, agent, kind, priority, message, evidence, opened_ms, resolved_ms, resolution FROM alerts";

#[derive(sqlx::FromRow)]
pub(crate) struct AlertRow {
    id: i64,
    agent: String,
    kind: String,
    priority: String,
    message: String,
    evidence: String,
    opened_ms: i64,
    resolved_ms: Option<i64>,
    resolution: Option<String>,
}

impl From<AlertRow> for AlertRecord {
    fn from(row: AlertRow) -> Self {
        AlertRecord {
            id: row.id,
            agent: row.agent,
            kind: row.kind,
            priority: row.priority,
            message: row.message,
            evidence: serde_json::from_str(&row.evidence).unwrap_or(serde_json::Value::Null),
            opened_ms: unsigned(row.opened_ms),
            resolved_ms: row.resolved_ms.map(unsigned),
            resolution: row.resolution,
        }
    }
}

pub(crate) const EDIT_COLUMNS: &str = "SELECT id, agent, base_version, proposer, by_agent, reason, diff, state, stage, code, message, build_log, version, rebased_onto, created_ms, updated_ms FROM edits";

#[derive(sqlx::FromRow)]
pub(crate) struct EditRow {
    id: i64,
    agent: String,
    base_version: Option<i64>,
    proposer: String,
    by_agent: bool,
    reason: String,
    diff: String,
    state: String,
    stage: Option<String>,
    code: Option<String>,
    message: Option<String>,
    build_log: Option<String>,
    version: Option<i64>,
    rebased_onto: Option<i64>,
    created_ms: i64,
    updated_ms: i64,
}

impl TryFrom<EditRow> for EditRecord {
    type Error = Error;

    fn try_from(row: EditRow) -> Result<Self> {
        Ok(EditRecord {
            id: row.id,
            agent: row.agent,
            base_version: opt_number(row.base_version)?,
            proposer: row.proposer,
            by_agent: row.by_agent,
            reason: row.reason,
            diff: row.diff,
            state: parse(&row.state)?,
            stage: row.stage,
            code: row.code,
            message: row.message,
            build_log: row.build_log,
            version: opt_number(row.version)?,
            rebased_onto: opt_number(row.rebased_onto)?,
            created_ms: unsigned(row.created_ms),
            updated_ms: unsigned(row.updated_ms),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UsageRow {
    agent: String,
    calls: i64,
    failed: i64,
    prompt: i64,
    completion: i64,
    last: i64,
}

impl From<UsageRow> for LlmUsage {
    fn from(row: UsageRow) -> Self {
        LlmUsage {
            agent: row.agent,
            calls: unsigned(row.calls),
            failed: unsigned(row.failed),
            prompt_tokens: unsigned(row.prompt),
            completion_tokens: unsigned(row.completion),
            last_ms: unsigned(row.last),
        }
    }
}

/// Convert every row, stopping at the first that does not read back.
pub(crate) fn all<R, T: TryFrom<R, Error = Error>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct OrderRow {
    id: String,
    client_order_id: String,
    agent: String,
    symbol: String,
    side: String,
    order_type: String,
    time_in_force: String,
    quantity: f64,
    notional: Option<f64>,
    limit_price: Option<f64>,
    status: String,
    filled_quantity: f64,
    fill_price: Option<f64>,
    commission: f64,
    submitted: String,
    filled: Option<String>,
    reason: Option<String>,
    at_ms: i64,
    agent_version: Option<i64>,
    trigger: Option<String>,
}

/// The columns of `orders`, in [`OrderRow`]'s order.
pub(crate) const ORDER_COLUMNS: &str = "id, client_order_id, agent, symbol, side, order_type, \
     time_in_force, quantity, notional, limit_price, status, filled_quantity, fill_price, \
     commission, submitted, filled, reason, at_ms, agent_version, trigger";

impl From<OrderRow> for OrderRecord {
    fn from(row: OrderRow) -> Self {
        OrderRecord {
            id: row.id,
            client_order_id: row.client_order_id,
            agent: row.agent,
            symbol: row.symbol,
            side: row.side,
            order_type: row.order_type,
            time_in_force: row.time_in_force,
            quantity: row.quantity,
            notional: row.notional,
            limit_price: row.limit_price,
            status: row.status,
            filled_quantity: row.filled_quantity,
            fill_price: row.fill_price,
            commission: row.commission,
            submitted: row.submitted,
            filled: row.filled,
            reason: row.reason,
            at_ms: unsigned(row.at_ms),
            agent_version: row.agent_version.and_then(|v| u32::try_from(v).ok()),
            trigger: row.trigger,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct FillRow {
    seq: i64,
    order_id: String,
    symbol: String,
    side: String,
    quantity: f64,
    price: f64,
    commission: f64,
    slippage: f64,
    date: String,
    at_ms: i64,
}

impl From<FillRow> for FillRecord {
    fn from(row: FillRow) -> Self {
        FillRecord {
            seq: row.seq,
            order_id: row.order_id,
            symbol: row.symbol,
            side: row.side,
            quantity: row.quantity,
            price: row.price,
            commission: row.commission,
            slippage: row.slippage,
            date: row.date,
            at_ms: unsigned(row.at_ms),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RefusalRow {
    seq: i64,
    agent: String,
    client_order_id: String,
    symbol: String,
    side: String,
    code: String,
    message: String,
    detail: String,
    as_of: String,
    at_ms: i64,
}

impl From<RefusalRow> for RefusalRecord {
    fn from(row: RefusalRow) -> Self {
        RefusalRecord {
            seq: row.seq,
            agent: row.agent,
            client_order_id: row.client_order_id,
            symbol: row.symbol,
            side: row.side,
            code: row.code,
            message: row.message,
            detail: row.detail,
            as_of: row.as_of,
            at_ms: unsigned(row.at_ms),
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MemoryRow {
    id: i64,
    collection: String,
    text: String,
    metadata: String,
    embedding: Option<Vec<u8>>,
    at_ms: i64,
    rank: f64,
}

impl From<MemoryRow> for MemoryRecord {
    fn from(row: MemoryRow) -> Self {
        MemoryRecord {
            id: row.id,
            collection: row.collection,
            text: row.text,
            metadata: row.metadata,
            embedding: row.embedding,
            at_ms: unsigned(row.at_ms),
            rank: row.rank,
        }
    }
}

/// The words of a recall query a full-text index can match: runs of letters and digits,
/// lower-cased, at most 32 of them, so no query syntax reaches the index.
pub(crate) fn query_words(query: &str) -> Vec<String> {
    let mut words: Vec<String> = query
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.dedup();
    words.truncate(32);
    words
}

/// The columns an [`AuditRow`] is read from, in order.
pub(crate) const AUDIT_COLUMNS: &str =
    "seq, at_ms, actor, action, subject, detail, prev_hash, hash";

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    seq: i64,
    at_ms: i64,
    actor: String,
    action: String,
    subject: String,
    detail: String,
    prev_hash: String,
    hash: String,
}

impl From<AuditRow> for crate::audit::AuditRecord {
    fn from(row: AuditRow) -> Self {
        crate::audit::AuditRecord {
            seq: row.seq,
            at_ms: u64::try_from(row.at_ms).unwrap_or(0),
            actor: row.actor,
            action: row.action,
            subject: row.subject,
            detail: row.detail,
            prev_hash: row.prev_hash,
            hash: row.hash,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct LoopRunRow {
    id: i64,
    name: String,
    started_ms: i64,
    ended_ms: i64,
    looked_at: String,
    did: String,
    error: Option<String>,
}

impl From<LoopRunRow> for LoopRunRecord {
    fn from(row: LoopRunRow) -> Self {
        LoopRunRecord {
            id: row.id,
            name: row.name,
            started_ms: u64::try_from(row.started_ms).unwrap_or(0),
            ended_ms: u64::try_from(row.ended_ms).unwrap_or(0),
            looked_at: serde_json::from_str(&row.looked_at).unwrap_or(Value::Null),
            did: serde_json::from_str(&row.did).unwrap_or(Value::Null),
            error: row.error,
        }
    }
}

/// The columns a [`DecisionRow`] is read from, in order.
pub(crate) const DECISION_COLUMNS: &str = "id, meeting, proposer, made_ms, body, policy, state, decided_by, decided_ms, reason, applied, due_ms, outcome, measured, evaluated_ms";

#[derive(sqlx::FromRow)]
pub(crate) struct DecisionRow {
    id: i64,
    meeting: String,
    proposer: String,
    made_ms: i64,
    body: String,
    policy: String,
    state: String,
    decided_by: Option<String>,
    decided_ms: Option<i64>,
    reason: Option<String>,
    applied: Option<String>,
    due_ms: i64,
    outcome: Option<String>,
    measured: Option<String>,
    evaluated_ms: Option<i64>,
}

impl From<DecisionRow> for DecisionRecord {
    fn from(row: DecisionRow) -> Self {
        let json = |text: Option<String>| text.and_then(|t| serde_json::from_str(&t).ok());
        let ms = |v: i64| u64::try_from(v).unwrap_or(0);
        DecisionRecord {
            id: row.id,
            meeting: row.meeting,
            proposer: row.proposer,
            made_ms: ms(row.made_ms),
            body: serde_json::from_str(&row.body).unwrap_or(Value::Null),
            policy: row.policy,
            state: row.state,
            decided_by: row.decided_by,
            decided_ms: row.decided_ms.map(ms),
            reason: row.reason,
            applied: json(row.applied),
            due_ms: ms(row.due_ms),
            outcome: row.outcome,
            measured: json(row.measured),
            evaluated_ms: row.evaluated_ms.map(ms),
        }
    }
}

fn small(v: i64) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// Stored JSON text as a value; `null` when it does not parse.
fn value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The columns a [`PromptVersionRow`] is read from, in order.
pub(crate) const PROMPT_VERSION_COLUMNS: &str = "name, version, owner, author, body, created_ms";

#[derive(sqlx::FromRow)]
pub(crate) struct PromptVersionRow {
    name: String,
    version: i64,
    owner: String,
    author: String,
    body: String,
    created_ms: i64,
}

impl From<PromptVersionRow> for PromptVersionRecord {
    fn from(row: PromptVersionRow) -> Self {
        PromptVersionRecord {
            name: row.name,
            version: small(row.version),
            owner: row.owner,
            author: row.author,
            body: value(&row.body),
            created_ms: unsigned(row.created_ms),
        }
    }
}

/// The columns a [`PromptLabelRow`] is read from, in order.
pub(crate) const PROMPT_LABEL_COLUMNS: &str = "id, name, label, version, set_by, reason, set_ms";

#[derive(sqlx::FromRow)]
pub(crate) struct PromptLabelRow {
    id: i64,
    name: String,
    label: String,
    version: i64,
    set_by: String,
    reason: String,
    set_ms: i64,
}

impl From<PromptLabelRow> for PromptLabelRecord {
    fn from(row: PromptLabelRow) -> Self {
        PromptLabelRecord {
            id: row.id,
            name: row.name,
            label: row.label,
            version: small(row.version),
            set_by: row.set_by,
            reason: row.reason,
            set_ms: unsigned(row.set_ms),
        }
    }
}

/// The columns a [`PromptUseRow`] is read from, in order.
pub(crate) const PROMPT_USE_COLUMNS: &str =
    "id, name, version, agent, unit, experiment, variant, used_ms, score, success, scored_ms";

#[derive(sqlx::FromRow)]
pub(crate) struct PromptUseRow {
    id: i64,
    name: String,
    version: i64,
    agent: String,
    unit: String,
    experiment: Option<i64>,
    variant: Option<i64>,
    used_ms: i64,
    score: Option<f64>,
    success: Option<bool>,
    scored_ms: Option<i64>,
}

impl From<PromptUseRow> for PromptUseRecord {
    fn from(row: PromptUseRow) -> Self {
        PromptUseRecord {
            id: row.id,
            name: row.name,
            version: small(row.version),
            agent: row.agent,
            unit: row.unit,
            experiment: row.experiment,
            variant: row.variant.map(small),
            used_ms: unsigned(row.used_ms),
            score: row.score,
            success: row.success,
            scored_ms: row.scored_ms.map(unsigned),
        }
    }
}

/// The columns an [`ExperimentRow`] is read from, in order.
pub(crate) const EXPERIMENT_COLUMNS: &str = "id, prompt, body, state, created_ms, ended_ms, result";

#[derive(sqlx::FromRow)]
pub(crate) struct ExperimentRow {
    id: i64,
    prompt: String,
    body: String,
    state: String,
    created_ms: i64,
    ended_ms: Option<i64>,
    result: Option<String>,
}

impl From<ExperimentRow> for ExperimentRecord {
    fn from(row: ExperimentRow) -> Self {
        ExperimentRecord {
            id: row.id,
            prompt: row.prompt,
            body: value(&row.body),
            state: row.state,
            created_ms: unsigned(row.created_ms),
            ended_ms: row.ended_ms.map(unsigned),
            result: row.result.as_deref().map(value),
        }
    }
}

/// The columns a [`SpecRow`] is read from, in order.
pub(crate) const SPEC_COLUMNS: &str = "id, name, body, state, created_ms, updated_ms, detail";

#[derive(sqlx::FromRow)]
pub(crate) struct SpecRow {
    id: i64,
    name: String,
    body: String,
    state: String,
    created_ms: i64,
    updated_ms: i64,
    detail: String,
}

impl From<SpecRow> for SpecRecord {
    fn from(row: SpecRow) -> Self {
        SpecRecord {
            id: row.id,
            name: row.name,
            body: value(&row.body),
            state: row.state,
            created_ms: unsigned(row.created_ms),
            updated_ms: unsigned(row.updated_ms),
            detail: value(&row.detail),
        }
    }
}
