//! The PostgreSQL backend, for one host or several sharing a registry. Where SQLite relies on
//! its single writer, this backend takes a row lock on the agent before it numbers or activates
//! a version, a partial unique index keeps a second open alert of a kind out, and a transaction
//! that loses a race (unique violation, serialization failure, deadlock) is run again.
//!
//! Text is compared and sorted byte by byte (`COLLATE "C"`), as SQLite does; kv keys and
//! values are bytes; a NUL in free text, which PostgreSQL's `text` cannot hold, is stored as
//! U+FFFD.

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres as Db, Transaction};

use crate::error::{Error, Result};
use crate::records::*;
use crate::rows::*;
use crate::{
    AlertStore, AuditStore, Backend, EditStore, EventLog, GovernanceStore, Housekeeping, KvStore,
    LogStore, MemoryStore, OverseerStore, PromptStore, Registry, SpecStore, TradingStore,
    UsageStore, audit, now_ms,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Log lines written by one statement: five binds each, well within PostgreSQL's 65535.
const LOG_ROWS: usize = 1000;

/// Attempts of a transaction that keeps losing races before the caller is told.
const ATTEMPTS: u32 = 8;

/// How long to wait for a connection from the pool before the statement fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Postgres {
    pool: PgPool,
}

impl Postgres {
    pub(crate) async fn connect(url: &str) -> Result<Postgres> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Postgres { pool })
    }
}

fn ms() -> i64 {
    int(now_ms())
}

/// Free text as PostgreSQL can hold it.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn opt_text(s: Option<&str>) -> Option<Cow<'_, str>> {
    s.map(text)
}

/// Whether an error is a lost race worth running the transaction again for.
fn lost_race(error: &Error) -> bool {
    let Error::Database(sqlx::Error::Database(e)) = error else {
        return false;
    };
    // unique_violation, serialization_failure, deadlock_detected
    matches!(e.code().as_deref(), Some("23505" | "40001" | "40P01"))
}

/// Run `attempt` until it does not lose a race, at most [`ATTEMPTS`] times.
async fn retry<T, F, Fut>(mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    for n in 1..=ATTEMPTS {
        match attempt().await {
            Err(e) if lost_race(&e) && n < ATTEMPTS => {
                tracing::debug!(error = %e, attempt = n, "transaction lost a race; running it again");
                tokio::time::sleep(Duration::from_millis(u64::from(n) * 5)).await;
            }
            other => return other,
        }
    }
    Err(Error::Contended(ATTEMPTS))
}

#[async_trait]
impl Backend for Postgres {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    #[cfg(any(test, feature = "testing"))]
    async fn execute_raw(&self, sql: &str) -> Result<u64> {
        Ok(sqlx::raw_sql(sql)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }
}

/// Lock the agent's row for the rest of `tx`; answers its active version. An agent that is
/// not there is `RowNotFound`, as SQLite's activation answers.
async fn lock_agent(tx: &mut Transaction<'_, Db>, agent: &str) -> Result<Option<i64>> {
    let active: Option<i64> =
        sqlx::query_scalar("SELECT active_version FROM agents WHERE name = $1 FOR UPDATE")
            .bind(agent)
            .fetch_one(&mut **tx)
            .await?;
    Ok(active)
}

async fn apply_activation(
    tx: &mut Transaction<'_, Db>,
    agent: &str,
    version: u32,
    activation: &Activation,
    built_by: Option<i64>,
    fresh: bool,
) -> Result<()> {
    let now = ms();
    let previous = lock_agent(tx, agent).await?;
    sqlx::query(
        "INSERT INTO activations (agent, version, previous, cause, at_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(agent)
    .bind(int(version))
    .bind(previous)
    .bind(activation.cause.as_str())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    if let Some(judged) = &activation.judged {
        write_judgement(tx, agent, judged).await?;
    }
    sqlx::query(
        "UPDATE agents SET active_version = $1, retired_ms = NULL, quarantined_ms = NULL WHERE name = $2",
    )
    .bind(int(version))
    .bind(agent)
    .execute(&mut **tx)
    .await?;
    // A version recorded in this transaction has no verdict to clear.
    if activation.watch && !fresh {
        sqlx::query(
            "UPDATE versions SET verdict = NULL, verdict_detail = NULL WHERE agent = $1 AND number = $2",
        )
        .bind(agent)
        .bind(int(version))
        .execute(&mut **tx)
        .await?;
    }
    if let Some(edit) = built_by {
        sqlx::query(
            "UPDATE edits SET state = 'live', version = $1, message = $2, updated_ms = $3 \
             WHERE id = $4 AND state IN ('applying', 'building', 'checking')",
        )
        .bind(int(version))
        .bind(format!("version {version} is live"))
        .bind(now)
        .bind(edit)
        .execute(&mut **tx)
        .await?;
    }
    if activation.cause != ActivationCause::Push
        && let Some(previous) = previous.filter(|p| *p != int(version))
    {
        sqlx::query(
            "UPDATE edits SET state = 'rolled-back', updated_ms = $1 \
             WHERE agent = $2 AND version = $3 AND state = 'live'",
        )
        .bind(now)
        .bind(agent)
        .bind(previous)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn write_judgement(
    tx: &mut Transaction<'_, Db>,
    agent: &str,
    judged: &Judgement,
) -> Result<()> {
    sqlx::query(
        "UPDATE versions SET verdict = $1, verdict_detail = $2, calls = $3, failures = $4 \
         WHERE agent = $5 AND number = $6",
    )
    .bind(judged.verdict.as_str())
    .bind(text(&judged.detail))
    .bind(int(judged.calls))
    .bind(int(judged.failures))
    .bind(agent)
    .bind(int(judged.version))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Postgres {
    async fn try_insert_version(
        &self,
        record: &NewVersion<'_>,
        bytes: Option<&[u8]>,
        activation: Option<&Activation>,
    ) -> Result<u32> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO agents (name, active_version, created_ms) VALUES ($1, NULL, $2) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(record.agent)
        .bind(ms())
        .execute(&mut *tx)
        .await?;
        // The agent's row lock orders concurrent inserts; the primary key (agent, number)
        // catches anything that slips past it, and the whole transaction runs again.
        lock_agent(&mut tx, record.agent).await?;
        let next: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(number), 0) + 1 FROM versions WHERE agent = $1",
        )
        .bind(record.agent)
        .fetch_one(&mut *tx)
        .await?;
        let number = crate::rows::number(next)?;
        if let Some(bytes) = bytes {
            sqlx::query(
                "INSERT INTO components (digest, size, bytes) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(record.digest)
            .bind(int(bytes.len() as u64))
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((digest, bytes)) = record.source {
            sqlx::query(
                "INSERT INTO sources (digest, size, bytes) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest)
            .bind(int(bytes.len() as u64))
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO versions (agent, number, digest, size, manifest, origin, edit_id, parent, state, stage, code, reason, checks, created_ms, source_digest) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(record.agent)
        .bind(next)
        .bind(record.digest)
        .bind(int(record.size))
        .bind(text(&to_json(record.manifest)).into_owned())
        .bind(record.origin.as_str())
        .bind(record.edit)
        .bind(record.parent.map(int))
        .bind(if record.rejected.is_some() {
            VersionState::Rejected
        } else {
            VersionState::Ready
        }
        .as_str())
        .bind(record.rejected.map(|r| text(r.stage).into_owned()))
        .bind(record.rejected.map(|r| text(r.code).into_owned()))
        .bind(record.rejected.map(|r| text(r.reason).into_owned()))
        .bind(text(&to_json(&record.checks)).into_owned())
        .bind(ms())
        .bind(record.source.map(|(digest, _)| digest))
        .execute(&mut *tx)
        .await?;
        if let Some(activation) = activation {
            apply_activation(&mut tx, record.agent, number, activation, record.edit, true).await?;
        }
        tx.commit().await?;
        Ok(number)
    }

    async fn try_open_alert(&self, alert: &NewAlert<'_>) -> Result<Option<(AlertRecord, bool)>> {
        let inserted: Option<AlertRow> = sqlx::query_as(
            "INSERT INTO alerts (agent, kind, priority, message, evidence, opened_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (agent, kind) WHERE resolved_ms IS NULL DO NOTHING \
             RETURNING id, agent, kind, priority, message, evidence, opened_ms, resolved_ms, resolution",
        )
        .bind(alert.agent)
        .bind(text(alert.kind))
        .bind(text(alert.priority))
        .bind(text(alert.message))
        .bind(text(&alert.evidence.to_string()).into_owned())
        .bind(ms())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok(Some((row.into(), true)));
        }
        let open: Option<AlertRow> = sqlx::query_as(&format!(
            "{ALERT_COLUMNS} WHERE agent = $1 AND kind = $2 AND resolved_ms IS NULL"
        ))
        .bind(alert.agent)
        .bind(text(alert.kind))
        .fetch_optional(&self.pool)
        .await?;
        // None: the open one was resolved between the two statements; the caller tries again.
        Ok(open.map(|row| (row.into(), false)))
    }
}

#[async_trait]
impl Registry for Postgres {
    async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows: Vec<AgentRow> =
            sqlx::query_as(&format!("{AGENT_COLUMNS} ORDER BY name COLLATE \"C\""))
                .fetch_all(&self.pool)
                .await?;
        all(rows)
    }

    async fn agent(&self, name: &str) -> Result<Option<AgentRecord>> {
        let row: Option<AgentRow> = sqlx::query_as(&format!("{AGENT_COLUMNS} WHERE name = $1"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(AgentRecord::try_from).transpose()
    }

    async fn versions(&self, agent: &str) -> Result<Vec<VersionRecord>> {
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "{VERSION_COLUMNS} WHERE agent = $1 ORDER BY number"
        ))
        .bind(agent)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn servable_versions(&self, agent: &str) -> Result<Vec<VersionRecord>> {
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "{VERSION_COLUMNS} WHERE agent = $1 AND state = 'ready' ORDER BY number"
        ))
        .bind(agent)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn versions_by_digest(&self, agent: &str, digest: &str) -> Result<Vec<VersionRecord>> {
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "{VERSION_COLUMNS} WHERE agent = $1 AND digest = $2 ORDER BY number"
        ))
        .bind(agent)
        .bind(digest)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn version(&self, agent: &str, number: u32) -> Result<Option<VersionRecord>> {
        let row: Option<VersionRow> = sqlx::query_as(&format!(
            "{VERSION_COLUMNS} WHERE agent = $1 AND number = $2"
        ))
        .bind(agent)
        .bind(int(number))
        .fetch_optional(&self.pool)
        .await?;
        row.map(VersionRecord::try_from).transpose()
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM components WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn source(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM sources WHERE digest = $1")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn insert_version(
        &self,
        record: &NewVersion<'_>,
        bytes: Option<&[u8]>,
        activation: Option<&Activation>,
    ) -> Result<u32> {
        retry(|| self.try_insert_version(record, bytes, activation)).await
    }

    async fn activate(&self, agent: &str, version: u32, activation: &Activation) -> Result<()> {
        retry(|| async move {
            let mut tx = self.pool.begin().await?;
            apply_activation(&mut tx, agent, version, activation, activation.edit, false).await?;
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn judge(&self, agent: &str, judgement: &Judgement) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        write_judgement(&mut tx, agent, judgement).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn quarantine(&self, agent: &str, judged: Option<&Judgement>) -> Result<()> {
        retry(|| async move {
            let mut tx = self.pool.begin().await?;
            lock_agent(&mut tx, agent).await?;
            sqlx::query(
                "UPDATE agents SET quarantined_ms = COALESCE(quarantined_ms, $1) WHERE name = $2",
            )
            .bind(ms())
            .bind(agent)
            .execute(&mut *tx)
            .await?;
            if let Some(judged) = judged {
                write_judgement(&mut tx, agent, judged).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn release(&self, agent: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE agents SET quarantined_ms = NULL WHERE name = $1 AND quarantined_ms IS NOT NULL",
        )
        .bind(agent)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn retire(&self, agent: &str) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET active_version = NULL, retired_ms = $1, quarantined_ms = NULL WHERE name = $2",
        )
        .bind(ms())
        .bind(agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_fault(&self, agent: &str, version: u32, fault: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE versions SET fault = $1 WHERE agent = $2 AND number = $3")
            .bind(opt_text(fault))
            .bind(agent)
            .bind(int(version))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn replace_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query("UPDATE components SET size = $1, bytes = $2 WHERE digest = $3")
            .bind(int(bytes.len() as u64))
            .bind(bytes)
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn activations(&self, agent: &str, limit: u32) -> Result<Vec<ActivationRecord>> {
        let rows: Vec<ActivationRow> = sqlx::query_as(
            "SELECT seq, agent, version, previous, cause, at_ms FROM activations \
             WHERE agent = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(agent)
        .bind(int(limit))
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn dangling_versions(&self) -> Result<Vec<(String, u32)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT agent, number FROM versions v WHERE state = 'ready' \
             AND NOT EXISTS (SELECT 1 FROM components c WHERE c.digest = v.digest)",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(agent, n)| Ok((agent, crate::rows::number(n)?)))
            .collect()
    }
}

/// Bytes stored by an agent, read back as the text it stored.
fn utf8(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| Error::Corrupt(format!("a kv entry is not UTF-8: {e}")))
}

#[async_trait]
impl KvStore for Postgres {
    async fn kv_get(&self, agent: &str, key: &str) -> Result<Option<String>> {
        let value: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT value FROM kv WHERE agent = $1 AND key = $2")
                .bind(agent)
                .bind(key.as_bytes())
                .fetch_optional(&self.pool)
                .await?;
        value.map(utf8).transpose()
    }

    async fn kv_keys(&self, agent: &str, prefix: &str) -> Result<Vec<String>> {
        let keys: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT key FROM kv WHERE agent = $1 AND substring(key FROM 1 FOR length($2)) = $2 ORDER BY key",
        )
        .bind(agent)
        .bind(prefix.as_bytes())
        .fetch_all(&self.pool)
        .await?;
        keys.into_iter().map(utf8).collect()
    }

    async fn kv_commit(&self, agent: &str, writes: &[KvWrite], events: &[NewEvent]) -> Result<()> {
        if writes.is_empty() && events.is_empty() {
            return Ok(());
        }
        retry(|| async move {
            let mut tx = self.pool.begin().await?;
            for write in writes {
                match &write.value {
                    Some(value) => {
                        sqlx::query(
                            "INSERT INTO kv (agent, key, value) VALUES ($1, $2, $3) \
                             ON CONFLICT (agent, key) DO UPDATE SET value = excluded.value",
                        )
                        .bind(agent)
                        .bind(write.key.as_bytes())
                        .bind(value.as_bytes())
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM kv WHERE agent = $1 AND key = $2")
                            .bind(agent)
                            .bind(write.key.as_bytes())
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
            for event in events {
                insert_event(&mut tx, event).await?;
            }
            tx.commit().await?;
            Ok(())
        })
        .await
    }

    async fn kv_usage(&self, agent: &str) -> Result<KvUsage> {
        let (keys, bytes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(octet_length(key) + octet_length(value)), 0)::bigint \
             FROM kv WHERE agent = $1",
        )
        .bind(agent)
        .fetch_one(&self.pool)
        .await?;
        Ok(KvUsage {
            keys: unsigned(keys),
            bytes: unsigned(bytes),
        })
    }
}

async fn insert_event(tx: &mut Transaction<'_, Db>, event: &NewEvent) -> Result<()> {
    sqlx::query(
        "INSERT INTO events (id, topic, payload, source, at_ms, size, as_of_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(text(&event.id))
    .bind(text(&event.topic))
    .bind(text(&event.payload))
    .bind(text(&event.source))
    .bind(int(event.at_ms))
    .bind(int(event.payload.len() as u64))
    .bind(event.as_of_ms.map(int))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl EventLog for Postgres {
    async fn insert_event(&self, event: &NewEvent) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events(&self, filter: &EventFilter<'_>) -> Result<Vec<EventRecord>> {
        let (exact, prefix) = topic_filter(filter.topic);
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT seq, id, topic, payload, source, at_ms, as_of_ms FROM events \
             WHERE seq > $1 AND at_ms >= $2 AND ($3::text IS NULL OR topic = $3) \
             AND ($4::text IS NULL OR substr(topic, 1, length($4)) = $4) ORDER BY seq {order} LIMIT $5"
        ))
        .bind(filter.after)
        .bind(int(filter.since_ms))
        .bind(exact.as_deref().map(text))
        .bind(prefix.as_deref().map(text))
        .bind(int(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(EventRecord::from).collect())
    }
}

#[async_trait]
impl LogStore for Postgres {
    async fn insert_logs(&self, lines: &[LogLine]) -> Result<()> {
        // One statement per batch, rather than a round trip per line.
        for batch in lines.chunks(LOG_ROWS) {
            sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO logs (agent, version, level, message, at_ms, size) ",
            )
            .push_values(batch, |mut row, line| {
                row.push_bind(&line.agent)
                    .push_bind(line.version.map(int))
                    .push_bind(line.level)
                    .push_bind(text(&line.message).into_owned())
                    .push_bind(int(line.at_ms))
                    .push_bind(int(line.message.len() as u64));
            })
            .build()
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    async fn logs(&self, agent: &str, page: Page) -> Result<Vec<LogRecord>> {
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT seq, agent, version, level, message, at_ms FROM \
             (SELECT * FROM logs WHERE agent = $1 AND ($2::bigint IS NULL OR seq < $2) \
              ORDER BY seq DESC LIMIT $3) AS recent ORDER BY seq",
        )
        .bind(agent)
        .bind(page.before)
        .bind(int(page.limit))
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }
}

#[async_trait]
impl AlertStore for Postgres {
    async fn open_alert(&self, alert: &NewAlert<'_>) -> Result<(AlertRecord, bool)> {
        for _ in 0..ATTEMPTS {
            if let Some(opened) = retry(|| self.try_open_alert(alert)).await? {
                return Ok(opened);
            }
        }
        Err(Error::Contended(ATTEMPTS))
    }

    async fn alert(&self, id: i64) -> Result<Option<AlertRecord>> {
        let row: Option<AlertRow> = sqlx::query_as(&format!("{ALERT_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(AlertRecord::from))
    }

    async fn alerts(&self, filter: &AlertFilter<'_>) -> Result<Vec<AlertRecord>> {
        let rows: Vec<AlertRow> = sqlx::query_as(&format!(
            "{ALERT_COLUMNS} WHERE ($1::boolean IS NULL OR (resolved_ms IS NULL) = $1) \
             AND ($2::text IS NULL OR agent = $2) AND ($3::bigint IS NULL OR id < $3) \
             ORDER BY id DESC LIMIT $4"
        ))
        .bind(filter.open)
        .bind(filter.agent)
        .bind(filter.before)
        .bind(int(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AlertRecord::from).collect())
    }

    async fn resolve_alert(&self, id: i64, resolution: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET resolved_ms = $1, resolution = $2 WHERE id = $3 AND resolved_ms IS NULL",
        )
        .bind(ms())
        .bind(text(resolution))
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn resolve_alerts_of(
        &self,
        agent: &str,
        kinds: &[&str],
        resolution: &str,
    ) -> Result<Vec<i64>> {
        let kinds: Vec<String> = kinds.iter().map(|k| text(k).into_owned()).collect();
        Ok(sqlx::query_scalar(
            "UPDATE alerts SET resolved_ms = $1, resolution = $2 \
             WHERE agent = $3 AND kind = ANY($4) AND resolved_ms IS NULL RETURNING id",
        )
        .bind(ms())
        .bind(text(resolution))
        .bind(agent)
        .bind(&kinds)
        .fetch_all(&self.pool)
        .await?)
    }
}

#[async_trait]
impl EditStore for Postgres {
    async fn insert_edit(&self, edit: &NewEdit<'_>) -> Result<i64> {
        let now = ms();
        Ok(sqlx::query_scalar(
            "INSERT INTO edits (agent, base_version, proposer, by_agent, reason, diff, state, rebased_onto, created_ms, updated_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 'applying', $7, $8, $8) RETURNING id",
        )
        .bind(edit.agent)
        .bind(edit.base_version.map(int))
        .bind(text(edit.proposer))
        .bind(edit.by_agent)
        .bind(text(edit.reason))
        .bind(text(edit.diff))
        .bind(edit.rebased_onto.map(int))
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn update_edit(&self, id: i64, update: &EditUpdate<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE edits SET state = $1, stage = COALESCE($2, stage), code = COALESCE($3, code), \
             message = COALESCE($4, message), build_log = COALESCE($5, build_log), \
             version = COALESCE($6, version), updated_ms = $7 WHERE id = $8",
        )
        .bind(update.state.as_str())
        .bind(opt_text(update.stage))
        .bind(opt_text(update.code))
        .bind(opt_text(update.message.as_deref()))
        .bind(opt_text(update.build_log))
        .bind(update.version.map(int))
        .bind(ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn edit(&self, agent: &str, id: i64) -> Result<Option<EditRecord>> {
        let row: Option<EditRow> =
            sqlx::query_as(&format!("{EDIT_COLUMNS} WHERE agent = $1 AND id = $2"))
                .bind(agent)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(EditRecord::try_from).transpose()
    }

    async fn edits(&self, agent: &str, page: Page) -> Result<Vec<EditRecord>> {
        let rows: Vec<EditRow> = sqlx::query_as(&format!(
            "{EDIT_COLUMNS} WHERE agent = $1 AND ($2::bigint IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3"
        ))
        .bind(agent)
        .bind(page.before)
        .bind(int(page.limit))
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn interrupt_edits(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE edits SET state = 'rejected', stage = COALESCE(stage, state), code = 'interrupted', \
             message = 'the daemon stopped before the edit finished', updated_ms = $1 \
             WHERE state IN ('applying', 'building', 'checking')",
        )
        .bind(ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl UsageStore for Postgres {
    async fn insert_llm_call(&self, call: &LlmCall<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO llm_calls (agent, model, prompt_tokens, completion_tokens, outcome, ms, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(call.agent)
        .bind(text(call.model))
        .bind(i64::from(call.prompt_tokens))
        .bind(i64::from(call.completion_tokens))
        .bind(call.outcome)
        .bind(int(call.ms))
        .bind(ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn llm_spend_since(&self, since_ms: u64) -> Result<Vec<LlmSpend>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT agent, model, coalesce(SUM(prompt_tokens), 0)::BIGINT, \
             coalesce(SUM(completion_tokens), 0)::BIGINT FROM llm_calls WHERE at_ms >= $1 \
             GROUP BY agent, model ORDER BY agent, model",
        )
        .bind(int(since_ms))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(agent, model, prompt, completion)| LlmSpend {
                agent,
                model,
                prompt_tokens: unsigned(prompt),
                completion_tokens: unsigned(completion),
            })
            .collect())
    }

    async fn llm_budgets(&self) -> Result<Vec<BudgetRecord>> {
        let rows: Vec<(String, i64, f64)> = sqlx::query_as(
            "SELECT agent, tokens_per_day, usd_per_day FROM llm_budgets ORDER BY agent",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(agent, tokens, usd)| BudgetRecord {
                agent,
                tokens_per_day: unsigned(tokens),
                usd_per_day: usd,
            })
            .collect())
    }

    async fn set_llm_budget(&self, budget: &BudgetRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO llm_budgets (agent, tokens_per_day, usd_per_day) VALUES ($1, $2, $3) \
             ON CONFLICT (agent) DO UPDATE SET tokens_per_day = excluded.tokens_per_day, \
             usd_per_day = excluded.usd_per_day",
        )
        .bind(text(&budget.agent))
        .bind(int(budget.tokens_per_day))
        .bind(budget.usd_per_day)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn llm_usage(&self) -> Result<Vec<LlmUsage>> {
        let rows: Vec<UsageRow> = sqlx::query_as(
            "SELECT agent, COUNT(*) AS calls, \
             CAST(SUM(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END) AS BIGINT) AS failed, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion, MAX(at_ms) AS last \
             FROM llm_calls GROUP BY agent \
             ORDER BY SUM(prompt_tokens + completion_tokens) DESC, agent COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(LlmUsage::from).collect())
    }
}

#[async_trait]
impl TradingStore for Postgres {
    async fn insert_order(&self, order: &OrderRecord) -> Result<(OrderRecord, bool)> {
        let inserted = sqlx::query(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
             ON CONFLICT (client_order_id) DO NOTHING"
        ))
        .bind(text(&order.id))
        .bind(text(&order.client_order_id))
        .bind(text(&order.agent))
        .bind(text(&order.symbol))
        .bind(text(&order.side))
        .bind(text(&order.order_type))
        .bind(text(&order.time_in_force))
        .bind(order.quantity)
        .bind(order.notional)
        .bind(order.limit_price)
        .bind(text(&order.status))
        .bind(order.filled_quantity)
        .bind(order.fill_price)
        .bind(order.commission)
        .bind(text(&order.submitted))
        .bind(opt_text(order.filled.as_deref()))
        .bind(opt_text(order.reason.as_deref()))
        .bind(int(order.at_ms))
        .bind(order.agent_version.map(i64::from))
        .bind(opt_text(order.trigger.as_deref()))
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok((order.clone(), true));
        }
        let existing: OrderRow = sqlx::query_as(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE client_order_id = $1"
        ))
        .bind(text(&order.client_order_id))
        .fetch_one(&self.pool)
        .await?;
        Ok((existing.into(), false))
    }

    async fn order(&self, id: &str) -> Result<Option<OrderRecord>> {
        let row: Option<OrderRow> =
            sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = $1"))
                .bind(text(id))
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(OrderRecord::from))
    }

    async fn orders(&self, filter: &OrderFilter<'_>) -> Result<Vec<OrderRecord>> {
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE (NOT $1 OR status = 'new') \
             AND ($2::TEXT IS NULL OR symbol = $2) ORDER BY at_ms DESC, id DESC LIMIT $3"
        ))
        .bind(filter.open_only)
        .bind(opt_text(filter.symbol))
        .bind(int(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(OrderRecord::from).collect())
    }

    async fn update_order(&self, order: &OrderRecord, fill: Option<&FillRecord>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE orders SET quantity = $1, status = $2, filled_quantity = $3, \
             fill_price = $4, commission = $5, filled = $6, reason = $7 WHERE id = $8",
        )
        .bind(order.quantity)
        .bind(text(&order.status))
        .bind(order.filled_quantity)
        .bind(order.fill_price)
        .bind(order.commission)
        .bind(opt_text(order.filled.as_deref()))
        .bind(opt_text(order.reason.as_deref()))
        .bind(text(&order.id))
        .execute(&mut *tx)
        .await?;
        if let Some(fill) = fill {
            sqlx::query(
                "INSERT INTO fills (order_id, symbol, side, quantity, price, commission, \
                 slippage, date, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(text(&fill.order_id))
            .bind(text(&fill.symbol))
            .bind(text(&fill.side))
            .bind(fill.quantity)
            .bind(fill.price)
            .bind(fill.commission)
            .bind(fill.slippage)
            .bind(text(&fill.date))
            .bind(int(fill.at_ms))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn fills(&self) -> Result<Vec<FillRecord>> {
        let rows: Vec<FillRow> = sqlx::query_as(
            "SELECT seq, order_id, symbol, side, quantity, price, commission, slippage, date, \
             at_ms FROM fills ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(FillRecord::from).collect())
    }

    async fn insert_refusal(&self, refusal: &RefusalRecord) -> Result<i64> {
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO refusals (agent, client_order_id, symbol, side, code, message, \
             detail, as_of, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
        )
        .bind(text(&refusal.agent))
        .bind(text(&refusal.client_order_id))
        .bind(text(&refusal.symbol))
        .bind(text(&refusal.side))
        .bind(text(&refusal.code))
        .bind(text(&refusal.message))
        .bind(text(&refusal.detail))
        .bind(text(&refusal.as_of))
        .bind(int(refusal.at_ms))
        .fetch_one(&self.pool)
        .await?;
        Ok(seq)
    }

    async fn refusals(&self, limit: u32) -> Result<Vec<RefusalRecord>> {
        let rows: Vec<RefusalRow> = sqlx::query_as(
            "SELECT seq, agent, client_order_id, symbol, side, code, message, detail, as_of, \
             at_ms FROM refusals ORDER BY seq DESC LIMIT $1",
        )
        .bind(int(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(RefusalRecord::from).collect())
    }

    async fn trading_state(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM trading_state WHERE key = $1")
                .bind(text(key))
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn record_equity(&self, point: &EquityPoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO equity_curve (day, equity, cash, gross_exposure, realized_pnl, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (day) DO UPDATE SET \
             equity = excluded.equity, cash = excluded.cash, \
             gross_exposure = excluded.gross_exposure, realized_pnl = excluded.realized_pnl, \
             at_ms = excluded.at_ms",
        )
        .bind(text(&point.day))
        .bind(point.equity)
        .bind(point.cash)
        .bind(point.gross_exposure)
        .bind(point.realized_pnl)
        .bind(point.at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn equity_curve(&self) -> Result<Vec<EquityPoint>> {
        Ok(sqlx::query_as(
            "SELECT day, equity, cash, gross_exposure, realized_pnl, at_ms FROM equity_curve \
             ORDER BY day",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn set_trading_state(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO trading_state (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(text(key))
        .bind(text(value))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl MemoryStore for Postgres {
    async fn remember(&self, memory: &NewMemory<'_>) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO memories (collection, text, metadata, embedding, at_ms, as_of_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(text(memory.collection))
        .bind(text(memory.text))
        .bind(text(memory.metadata))
        .bind(memory.embedding)
        .bind(int(memory.at_ms))
        .bind(memory.as_of_ms.map(int))
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn recall(
        &self,
        collection: &str,
        query: &str,
        limit: u32,
        as_of_ms: Option<u64>,
    ) -> Result<Vec<MemoryRecord>> {
        let words = query_words(query);
        let as_of = as_of_ms.map(int);
        let rows: Vec<MemoryRow> = if words.is_empty() {
            sqlx::query_as(
                "SELECT id, collection, text, metadata, embedding, at_ms, 0.0::FLOAT8 AS rank \
                 FROM memories WHERE collection = $1 \
                 AND ($3::BIGINT IS NULL OR as_of_ms IS NULL OR as_of_ms <= $3) \
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(text(collection))
            .bind(int(limit))
            .bind(as_of)
            .fetch_all(&self.pool)
            .await?
        } else {
            // Letters and digits only reach to_tsquery: its operators never do.
            let expression = words.join(" | ");
            sqlx::query_as(
                "SELECT id, collection, text, metadata, embedding, at_ms, \
                 ts_rank_cd(words, query)::FLOAT8 AS rank \
                 FROM memories, to_tsquery('english', $1) AS query \
                 WHERE collection = $2 AND words @@ query \
                 AND ($4::BIGINT IS NULL OR as_of_ms IS NULL OR as_of_ms <= $4) \
                 ORDER BY rank DESC, id DESC LIMIT $3",
            )
            .bind(expression)
            .bind(text(collection))
            .bind(int(limit))
            .bind(as_of)
            .fetch_all(&self.pool)
            .await?
        };
        Ok(rows.into_iter().map(MemoryRecord::from).collect())
    }

    async fn embedded(
        &self,
        collection: &str,
        limit: u32,
        as_of_ms: Option<u64>,
    ) -> Result<Vec<MemoryRecord>> {
        let rows: Vec<MemoryRow> = sqlx::query_as(
            "SELECT id, collection, text, metadata, embedding, at_ms, 0.0::FLOAT8 AS rank \
             FROM memories WHERE collection = $1 AND embedding IS NOT NULL \
             AND ($3::BIGINT IS NULL OR as_of_ms IS NULL OR as_of_ms <= $3) \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(text(collection))
        .bind(int(limit))
        .bind(as_of_ms.map(int))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(MemoryRecord::from).collect())
    }

    async fn forget(&self, collection: &str, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM memories WHERE collection = $1 AND id = $2")
            .bind(text(collection))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl AuditStore for Postgres {
    async fn append_audit(&self, entry: &audit::NewAudit<'_>) -> Result<audit::AuditRecord> {
        let mut tx = self.pool.begin().await?;
        // One append at a time: the lock is held to the end of the transaction, so no other
        // append reads the same last entry.
        sqlx::query("LOCK TABLE audit IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        let last: Option<(i64, String)> =
            sqlx::query_as("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await?;
        let (seq, prev_hash) = match last {
            Some((seq, hash)) => (seq + 1, hash),
            None => (1, audit::GENESIS.to_string()),
        };
        let at_ms = ms();
        let hash = audit::hash(seq, u64::try_from(at_ms).unwrap_or(0), entry, &prev_hash);
        sqlx::query(
            "INSERT INTO audit (seq, at_ms, actor, action, subject, detail, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(seq)
        .bind(at_ms)
        .bind(entry.actor)
        .bind(entry.action)
        .bind(entry.subject)
        .bind(entry.detail)
        .bind(&prev_hash)
        .bind(&hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(audit::AuditRecord {
            seq,
            at_ms: u64::try_from(at_ms).unwrap_or(0),
            actor: entry.actor.to_string(),
            action: entry.action.to_string(),
            subject: entry.subject.to_string(),
            detail: entry.detail.to_string(),
            prev_hash,
            hash,
        })
    }

    async fn audit(&self, after: i64, limit: u32) -> Result<Vec<audit::AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit \
             WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn audit_between(&self, from_ms: u64, to_ms: u64) -> Result<Vec<audit::AuditRecord>> {
        let rows: Vec<AuditRow> = sqlx::query_as(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit \
             WHERE at_ms >= $1 AND at_ms < $2 ORDER BY seq"
        ))
        .bind(i64::try_from(from_ms).unwrap_or(i64::MAX))
        .bind(i64::try_from(to_ms).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[async_trait]
impl OverseerStore for Postgres {
    async fn insert_loop_run(&self, run: &NewLoopRun<'_>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO loop_runs (loop, started_ms, ended_ms, looked_at, did, error) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(run.name)
        .bind(i64::try_from(run.started_ms).unwrap_or(i64::MAX))
        .bind(i64::try_from(run.ended_ms).unwrap_or(i64::MAX))
        .bind(run.looked_at.to_string())
        .bind(run.did.to_string())
        .bind(run.error.map(|e| text(e).into_owned()))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn loop_runs(&self, name: Option<&str>, page: Page) -> Result<Vec<LoopRunRecord>> {
        let rows: Vec<LoopRunRow> = sqlx::query_as(
            "SELECT id, loop AS name, started_ms, ended_ms, looked_at, did, error FROM loop_runs \
             WHERE ($1::TEXT IS NULL OR loop = $1) AND ($2::bigint IS NULL OR id < $2) \
             ORDER BY id DESC LIMIT $3",
        )
        .bind(name)
        .bind(page.before)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn put_report(
        &self,
        date: &str,
        generated_ms: u64,
        body: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO reports (date, generated_ms, body) VALUES ($1, $2, $3) \
             ON CONFLICT (date) DO UPDATE SET generated_ms = excluded.generated_ms, body = excluded.body",
        )
        .bind(date)
        .bind(i64::try_from(generated_ms).unwrap_or(i64::MAX))
        .bind(body.to_string())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn report(&self, date: &str) -> Result<Option<serde_json::Value>> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM reports WHERE date = $1")
            .bind(date)
            .fetch_optional(&self.pool)
            .await?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    async fn reports(&self, limit: u32) -> Result<Vec<ReportSummary>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT date, generated_ms FROM reports ORDER BY date DESC LIMIT $1")
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(date, generated_ms)| ReportSummary {
                date,
                generated_ms: u64::try_from(generated_ms).unwrap_or(0),
            })
            .collect())
    }
}

#[async_trait]
impl GovernanceStore for Postgres {
    async fn insert_decision(&self, decision: &NewDecision<'_>) -> Result<DecisionRecord> {
        let row: DecisionRow = sqlx::query_as(&format!(
            "INSERT INTO decisions (meeting, proposer, made_ms, body, policy, state, due_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {DECISION_COLUMNS}"
        ))
        .bind(decision.meeting)
        .bind(decision.proposer)
        .bind(ms())
        .bind(decision.body.to_string())
        .bind(decision.policy)
        .bind(decision.state)
        .bind(i64::try_from(decision.due_ms).unwrap_or(i64::MAX))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn decision(&self, id: i64) -> Result<Option<DecisionRecord>> {
        let row: Option<DecisionRow> = sqlx::query_as(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn decisions(&self, state: Option<&str>, page: Page) -> Result<Vec<DecisionRecord>> {
        let rows: Vec<DecisionRow> = sqlx::query_as(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE ($1::TEXT IS NULL OR state = $1) \
             AND ($2::bigint IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(state)
        .bind(page.before)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn transition_decision(
        &self,
        id: i64,
        from: &str,
        to: &str,
        by: &str,
        reason: &str,
    ) -> Result<Option<DecisionRecord>> {
        let row: Option<DecisionRow> = sqlx::query_as(&format!(
            "UPDATE decisions SET state = $1, decided_by = $2, decided_ms = $3, reason = $4 \
             WHERE id = $5 AND state = $6 RETURNING {DECISION_COLUMNS}"
        ))
        .bind(to)
        .bind(by)
        .bind(ms())
        .bind(text(reason).into_owned())
        .bind(id)
        .bind(from)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn record_applied(
        &self,
        id: i64,
        state: &str,
        applied: &serde_json::Value,
        due_ms: u64,
    ) -> Result<()> {
        sqlx::query("UPDATE decisions SET state = $1, applied = $2, due_ms = $3 WHERE id = $4")
            .bind(state)
            .bind(applied.to_string())
            .bind(i64::try_from(due_ms).unwrap_or(i64::MAX))
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn record_outcome(
        &self,
        id: i64,
        outcome: &str,
        measured: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE decisions SET outcome = $1, measured = $2, evaluated_ms = $3 WHERE id = $4",
        )
        .bind(outcome)
        .bind(measured.to_string())
        .bind(ms())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl PromptStore for Postgres {
    async fn insert_prompt_version(
        &self,
        version: &NewPromptVersion<'_>,
    ) -> Result<PromptVersionRecord> {
        // One statement; two writers of one prompt at once: one fails on the primary key.
        let row: PromptVersionRow = sqlx::query_as(&format!(
            "INSERT INTO prompt_versions (name, version, owner, author, body, created_ms) \
             SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5 FROM prompt_versions WHERE name = $6 \
             RETURNING {PROMPT_VERSION_COLUMNS}"
        ))
        .bind(version.name)
        .bind(version.owner)
        .bind(version.author)
        .bind(version.body.to_string())
        .bind(ms())
        .bind(version.name)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn prompt_versions(&self, name: &str) -> Result<Vec<PromptVersionRecord>> {
        let rows: Vec<PromptVersionRow> = sqlx::query_as(&format!(
            "SELECT {PROMPT_VERSION_COLUMNS} FROM prompt_versions WHERE name = $1 ORDER BY version"
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn prompts(&self) -> Result<Vec<PromptVersionRecord>> {
        let rows: Vec<PromptVersionRow> = sqlx::query_as(&format!(
            "SELECT {PROMPT_VERSION_COLUMNS} FROM prompt_versions WHERE version = 1 ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn set_prompt_label(
        &self,
        name: &str,
        label: &str,
        version: u32,
        set_by: &str,
        reason: &str,
    ) -> Result<PromptLabelRecord> {
        let row: PromptLabelRow = sqlx::query_as(&format!(
            "INSERT INTO prompt_labels (name, label, version, set_by, reason, set_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {PROMPT_LABEL_COLUMNS}"
        ))
        .bind(name)
        .bind(label)
        .bind(i64::from(version))
        .bind(set_by)
        .bind(reason)
        .bind(ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn prompt_labels(&self, name: &str) -> Result<Vec<PromptLabelRecord>> {
        let rows: Vec<PromptLabelRow> = sqlx::query_as(&format!(
            "SELECT {PROMPT_LABEL_COLUMNS} FROM prompt_labels WHERE name = $1 ORDER BY id"
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn insert_prompt_use(&self, used: &NewPromptUse<'_>) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO prompt_uses (name, version, agent, unit, experiment, variant, used_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(used.name)
        .bind(i64::from(used.version))
        .bind(used.agent)
        .bind(used.unit)
        .bind(used.experiment)
        .bind(used.variant.map(i64::from))
        .bind(ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn score_prompt_use(
        &self,
        id: i64,
        agent: &str,
        score: Option<f64>,
        success: Option<bool>,
    ) -> Result<Option<PromptUseRecord>> {
        let row: Option<PromptUseRow> = sqlx::query_as(&format!(
            "UPDATE prompt_uses SET score = $1, success = $2, scored_ms = $3 \
             WHERE id = $4 AND agent = $5 AND scored_ms IS NULL RETURNING {PROMPT_USE_COLUMNS}"
        ))
        .bind(score)
        .bind(success)
        .bind(ms())
        .bind(id)
        .bind(agent)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn prompt_uses(&self, name: &str, limit: u32) -> Result<Vec<PromptUseRecord>> {
        let rows: Vec<PromptUseRow> = sqlx::query_as(&format!(
            "SELECT {PROMPT_USE_COLUMNS} FROM prompt_uses WHERE name = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(name)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn experiment_outcomes(&self, id: i64) -> Result<Vec<PromptUseRecord>> {
        let rows: Vec<PromptUseRow> = sqlx::query_as(&format!(
            "SELECT {PROMPT_USE_COLUMNS} FROM prompt_uses \
             WHERE experiment = $1 AND scored_ms IS NOT NULL ORDER BY id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn insert_experiment(
        &self,
        prompt: &str,
        body: &serde_json::Value,
    ) -> Result<ExperimentRecord> {
        let row: ExperimentRow = sqlx::query_as(&format!(
            "INSERT INTO experiments (prompt, body, state, created_ms) \
             VALUES ($1, $2, 'running', $3) RETURNING {EXPERIMENT_COLUMNS}"
        ))
        .bind(prompt)
        .bind(body.to_string())
        .bind(ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn experiment(&self, id: i64) -> Result<Option<ExperimentRecord>> {
        let row: Option<ExperimentRow> = sqlx::query_as(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn experiments(
        &self,
        prompt: Option<&str>,
        state: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ExperimentRecord>> {
        let rows: Vec<ExperimentRow> = sqlx::query_as(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments \
             WHERE ($1::TEXT IS NULL OR prompt = $1) AND ($2::TEXT IS NULL OR state = $2) ORDER BY id DESC LIMIT $3"
        ))
        .bind(prompt)
        .bind(state)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn transition_experiment(
        &self,
        id: i64,
        from: &str,
        to: &str,
        result: &serde_json::Value,
    ) -> Result<Option<ExperimentRecord>> {
        let ended = (to != "running").then(ms);
        let row: Option<ExperimentRow> = sqlx::query_as(&format!(
            "UPDATE experiments SET state = $1, result = $2, ended_ms = $3 \
             WHERE id = $4 AND state = $5 RETURNING {EXPERIMENT_COLUMNS}"
        ))
        .bind(to)
        .bind(result.to_string())
        .bind(ended)
        .bind(id)
        .bind(from)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }
}

#[async_trait]
impl SpecStore for Postgres {
    async fn insert_spec(
        &self,
        name: &str,
        body: &serde_json::Value,
        state: &str,
    ) -> Result<SpecRecord> {
        let now = ms();
        let row: SpecRow = sqlx::query_as(&format!(
            "INSERT INTO agent_specs (name, body, state, created_ms, updated_ms, detail) \
             VALUES ($1, $2, $3, $4, $5, '{{}}') RETURNING {SPEC_COLUMNS}"
        ))
        .bind(name)
        .bind(body.to_string())
        .bind(state)
        .bind(now)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn spec(&self, id: i64) -> Result<Option<SpecRecord>> {
        let row: Option<SpecRow> = sqlx::query_as(&format!(
            "SELECT {SPEC_COLUMNS} FROM agent_specs WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn specs(&self, page: Page) -> Result<Vec<SpecRecord>> {
        let rows: Vec<SpecRow> = sqlx::query_as(&format!(
            "SELECT {SPEC_COLUMNS} FROM agent_specs WHERE ($1::bigint IS NULL OR id < $1) \
             ORDER BY id DESC LIMIT $2"
        ))
        .bind(page.before)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn transition_spec(
        &self,
        id: i64,
        from: &str,
        to: &str,
        detail: &serde_json::Value,
    ) -> Result<Option<SpecRecord>> {
        let row: Option<SpecRow> = sqlx::query_as(&format!(
            "UPDATE agent_specs SET state = $1, detail = $2, updated_ms = $3 \
             WHERE id = $4 AND state = $5 RETURNING {SPEC_COLUMNS}"
        ))
        .bind(to)
        .bind(detail.to_string())
        .bind(ms())
        .bind(id)
        .bind(from)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }
}

#[async_trait]
impl Housekeeping for Postgres {
    async fn prune(&self, policy: &PrunePolicy) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let p = &self.pool;
        pruned.events = sqlx::query("DELETE FROM events WHERE at_ms < $1")
            .bind(int(policy.events_before_ms))
            .execute(p)
            .await?
            .rows_affected();
        pruned.events += sqlx::query(
            "DELETE FROM events WHERE seq <= (SELECT seq FROM \
             (SELECT seq, sum(size) OVER (ORDER BY seq DESC) AS kept FROM events) AS running \
             WHERE kept > $1 ORDER BY seq DESC LIMIT 1)",
        )
        .bind(int(policy.events_bytes))
        .execute(p)
        .await?
        .rows_affected();
        pruned.logs = sqlx::query("DELETE FROM logs WHERE at_ms < $1")
            .bind(int(policy.logs_before_ms))
            .execute(p)
            .await?
            .rows_affected();
        let agents: Vec<String> = sqlx::query_scalar("SELECT DISTINCT agent FROM logs")
            .fetch_all(p)
            .await?;
        for agent in agents {
            pruned.logs += sqlx::query(
                "DELETE FROM logs WHERE agent = $1 AND seq <= (SELECT seq FROM \
                 (SELECT seq, sum(size) OVER (ORDER BY seq DESC) AS kept FROM logs WHERE agent = $1) AS running \
                 WHERE kept > $2 ORDER BY seq DESC LIMIT 1)",
            )
            .bind(&agent)
            .bind(int(policy.logs_bytes_per_agent))
            .execute(p)
            .await?
            .rows_affected();
        }
        pruned.llm_calls = sqlx::query(
            "DELETE FROM llm_calls WHERE at_ms < $1 OR id <= \
             (SELECT id FROM llm_calls ORDER BY id DESC LIMIT 1 OFFSET $2)",
        )
        .bind(int(policy.llm_calls_before_ms))
        .bind(int(policy.llm_calls))
        .execute(p)
        .await?
        .rows_affected();
        pruned.refusals = sqlx::query(
            "DELETE FROM refusals WHERE at_ms < $1 OR seq <= \
             (SELECT seq FROM refusals ORDER BY seq DESC LIMIT 1 OFFSET $2)",
        )
        .bind(int(policy.refusals_before_ms))
        .bind(int(policy.refusals))
        .execute(p)
        .await?
        .rows_affected();
        let collections: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT collection FROM memories")
                .fetch_all(p)
                .await?;
        for collection in collections {
            pruned.memories += sqlx::query(
                "DELETE FROM memories WHERE collection = $1 AND id <= (SELECT id FROM memories \
                 WHERE collection = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            )
            .bind(&collection)
            .bind(int(policy.memories_per_collection))
            .execute(p)
            .await?
            .rows_affected();
        }
        pruned.alerts = sqlx::query(
            "DELETE FROM alerts WHERE resolved_ms IS NOT NULL AND (resolved_ms < $1 OR id <= \
             (SELECT id FROM alerts WHERE resolved_ms IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET $2))",
        )
        .bind(int(policy.alerts_before_ms))
        .bind(int(policy.alerts))
        .execute(p)
        .await?
        .rows_affected();
        pruned.build_logs = sqlx::query(
            "UPDATE edits SET build_log = NULL WHERE build_log IS NOT NULL \
             AND state IN ('live', 'rejected', 'rolled-back') AND (updated_ms < $1 OR id <= \
             (SELECT id FROM edits WHERE build_log IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET $2))",
        )
        .bind(int(policy.build_logs_before_ms))
        .bind(int(policy.build_logs))
        .execute(p)
        .await?
        .rows_affected();
        let (rejected, components) = retry(|| async move {
            let mut tx = self.pool.begin().await?;
            let rejected = sqlx::query(
                "DELETE FROM versions AS v WHERE state = 'rejected' \
                 AND number < (SELECT max(number) FROM versions WHERE agent = v.agent) \
                 AND (created_ms < $1 OR number <= (SELECT number FROM versions \
                      WHERE agent = v.agent AND state = 'rejected' ORDER BY number DESC LIMIT 1 OFFSET $2))",
            )
            .bind(int(policy.rejected_before_ms))
            .bind(int(policy.rejected_per_agent))
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let components = if rejected > 0 {
                sqlx::query(
                    "DELETE FROM components WHERE NOT EXISTS \
                     (SELECT 1 FROM versions WHERE versions.digest = components.digest)",
                )
                .execute(&mut *tx)
                .await?
                .rows_affected()
            } else {
                0
            };
            tx.commit().await?;
            Ok((rejected, components))
        })
        .await?;
        pruned.rejected = rejected;
        pruned.components = components;
        Ok(pruned)
    }

    async fn size_on_disk(&self) -> Result<u64> {
        let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&self.pool)
            .await?;
        Ok(unsigned(size))
    }
}
