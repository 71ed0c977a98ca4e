//! The SQLite backend: one file in the data directory, WAL journal, readers in a small pool and
//! one writing connection. Its single writer makes numbering and dedupe race-free; a
//! transaction starts with a write so that it holds the write lock before it reads, should
//! another process write to the file too.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite as Db, Transaction};

use crate::error::Result;
use crate::records::*;
use crate::rows::*;
use crate::{
    AlertStore, AuditStore, Backend, EditStore, EventLog, GovernanceStore, Housekeeping, KvStore,
    LogStore, MemoryStore, OverseerStore, PromptStore, Registry, SpecStore, TradingStore,
    UsageStore, audit, now_ms,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Log lines written by one statement: five binds each, well within SQLite's 32766.
const LOG_ROWS: usize = 1000;

/// How often the WAL is copied back into the database, beside the writer: often enough that
/// the WAL stays small, and a passive checkpoint never waits for (or stalls) a commit.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// How long a statement waits for another connection's write lock before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Sqlite {
    /// Readers: WAL lets them run beside the writer.
    pool: SqlitePool,
    /// The one connection that writes. SQLite has one writer at a time anyway; queueing
    /// writes here, rather than on SQLite's busy handler (which sleeps between retries),
    /// keeps a rollback from waiting milliseconds behind a batch of log lines.
    writer: SqlitePool,
    /// The database file, whose size (with its WAL) the store reports.
    path: std::path::PathBuf,
    _checkpointer: Checkpointer,
}

impl Sqlite {
    pub(crate) async fn open(path: &Path) -> Result<Sqlite> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL survives a crash of the process; only a power loss can drop the
            // last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            // Checkpoints run beside the writer (below), so no commit pays for one.
            .pragma("wal_autocheckpoint", "0")
            // Once a checkpoint has emptied the log, its file is cut back to 4 MiB: a burst of
            // writes leaves no lasting high-water mark on disk.
            .pragma("journal_size_limit", "4194304");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        let checkpoints = pool.clone();
        let checkpointer = tokio::spawn(async move {
            let mut every = tokio::time::interval(CHECKPOINT_EVERY);
            loop {
                every.tick().await;
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                    .execute(&checkpoints)
                    .await
                {
                    tracing::debug!(error = %e, "WAL checkpoint");
                }
            }
        });
        Ok(Sqlite {
            pool,
            writer,
            path: path.to_path_buf(),
            _checkpointer: Checkpointer(checkpointer),
        })
    }
}

/// The task that checkpoints the WAL, stopped with the store.
struct Checkpointer(tokio::task::JoinHandle<()>);

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn ms() -> i64 {
    int(now_ms())
}

#[async_trait]
impl Backend for Sqlite {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    #[cfg(any(test, feature = "testing"))]
    async fn execute_raw(&self, sql: &str) -> Result<u64> {
        Ok(sqlx::raw_sql(sql)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }
}

/// Make `version` active inside `tx`; the caller's transaction has taken the write lock.
async fn apply_activation(
    tx: &mut Transaction<'_, Db>,
    agent: &str,
    version: u32,
    activation: &Activation,
    built_by: Option<i64>,
    fresh: bool,
) -> Result<()> {
    let now = ms();
    let previous: Option<i64> = sqlx::query_scalar(
        "INSERT INTO activations (agent, version, previous, cause, at_ms) \
         SELECT ?, ?, active_version, ?, ? FROM agents WHERE name = ? RETURNING previous",
    )
    .bind(agent)
    .bind(int(version))
    .bind(activation.cause.as_str())
    .bind(now)
    .bind(agent)
    .fetch_one(&mut **tx)
    .await?;
    if let Some(judged) = &activation.judged {
        write_judgement(tx, agent, judged).await?;
    }
    sqlx::query(
        "UPDATE agents SET active_version = ?, retired_ms = NULL, quarantined_ms = NULL WHERE name = ?",
    )
    .bind(int(version))
    .bind(agent)
    .execute(&mut **tx)
    .await?;
    // A version recorded in this transaction has no verdict to clear.
    if activation.watch && !fresh {
        sqlx::query(
            "UPDATE versions SET verdict = NULL, verdict_detail = NULL WHERE agent = ? AND number = ?",
        )
        .bind(agent)
        .bind(int(version))
        .execute(&mut **tx)
        .await?;
    }
    if let Some(edit) = built_by {
        sqlx::query(
            "UPDATE edits SET state = 'live', version = ?, message = ?, updated_ms = ? \
             WHERE id = ? AND state IN ('applying', 'building', 'checking')",
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
            "UPDATE edits SET state = 'rolled-back', updated_ms = ? \
             WHERE agent = ? AND version = ? AND state = 'live'",
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
        "UPDATE versions SET verdict = ?, verdict_detail = ?, calls = ?, failures = ? \
         WHERE agent = ? AND number = ?",
    )
    .bind(judged.verdict.as_str())
    .bind(&judged.detail)
    .bind(int(judged.calls))
    .bind(int(judged.failures))
    .bind(agent)
    .bind(int(judged.version))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl Registry for Sqlite {
    async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows: Vec<AgentRow> = sqlx::query_as(&format!("{AGENT_COLUMNS} ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        all(rows)
    }

    async fn agent(&self, name: &str) -> Result<Option<AgentRecord>> {
        let row: Option<AgentRow> = sqlx::query_as(&format!("{AGENT_COLUMNS} WHERE name = ?"))
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(AgentRecord::try_from).transpose()
    }

    async fn versions(&self, agent: &str) -> Result<Vec<VersionRecord>> {
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "{VERSION_COLUMNS} WHERE agent = ? ORDER BY number"
        ))
        .bind(agent)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn servable_versions(&self, agent: &str) -> Result<Vec<VersionRecord>> {
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "{VERSION_COLUMNS} INDEXED BY versions_by_state WHERE agent = ? AND state = 'ready' ORDER BY number"
        ))
        .bind(agent)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn versions_by_digest(&self, agent: &str, digest: &str) -> Result<Vec<VersionRecord>> {
        let rows: Vec<VersionRow> = sqlx::query_as(&format!(
            "{VERSION_COLUMNS} INDEXED BY versions_by_digest WHERE agent = ? AND digest = ? ORDER BY number"
        ))
        .bind(agent)
        .bind(digest)
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn version(&self, agent: &str, number: u32) -> Result<Option<VersionRecord>> {
        let row: Option<VersionRow> =
            sqlx::query_as(&format!("{VERSION_COLUMNS} WHERE agent = ? AND number = ?"))
                .bind(agent)
                .bind(int(number))
                .fetch_optional(&self.pool)
                .await?;
        row.map(VersionRecord::try_from).transpose()
    }

    async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM components WHERE digest = ?")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn source(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT bytes FROM sources WHERE digest = ?")
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
        let mut tx = self.writer.begin().await?;
        // A write first: the transaction holds the write lock before it reads the numbers.
        sqlx::query(
            "INSERT INTO agents (name, active_version, created_ms) VALUES (?, NULL, ?) \
             ON CONFLICT (name) DO UPDATE SET name = excluded.name",
        )
        .bind(record.agent)
        .bind(ms())
        .execute(&mut *tx)
        .await?;
        let next: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM versions WHERE agent = ?")
                .bind(record.agent)
                .fetch_one(&mut *tx)
                .await?;
        let number = crate::rows::number(next)?;
        if let Some(bytes) = bytes {
            sqlx::query(
                "INSERT INTO components (digest, size, bytes) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(record.digest)
            .bind(int(bytes.len() as u64))
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((digest, bytes)) = record.source {
            sqlx::query(
                "INSERT INTO sources (digest, size, bytes) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest)
            .bind(int(bytes.len() as u64))
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO versions (agent, number, digest, size, manifest, origin, edit_id, parent, state, stage, code, reason, checks, created_ms, source_digest) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.agent)
        .bind(next)
        .bind(record.digest)
        .bind(int(record.size))
        .bind(to_json(record.manifest))
        .bind(record.origin.as_str())
        .bind(record.edit)
        .bind(record.parent.map(int))
        .bind(if record.rejected.is_some() {
            VersionState::Rejected
        } else {
            VersionState::Ready
        }
        .as_str())
        .bind(record.rejected.map(|r| r.stage))
        .bind(record.rejected.map(|r| r.code))
        .bind(record.rejected.map(|r| r.reason))
        .bind(to_json(&record.checks))
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

    async fn activate(&self, agent: &str, version: u32, activation: &Activation) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        apply_activation(&mut tx, agent, version, activation, activation.edit, false).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn judge(&self, agent: &str, judgement: &Judgement) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        write_judgement(&mut tx, agent, judgement).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn quarantine(&self, agent: &str, judged: Option<&Judgement>) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE agents SET quarantined_ms = COALESCE(quarantined_ms, ?) WHERE name = ?",
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
    }

    async fn release(&self, agent: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE agents SET quarantined_ms = NULL WHERE name = ? AND quarantined_ms IS NOT NULL",
        )
        .bind(agent)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn retire(&self, agent: &str) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET active_version = NULL, retired_ms = ?, quarantined_ms = NULL WHERE name = ?",
        )
        .bind(ms())
        .bind(agent)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn set_fault(&self, agent: &str, version: u32, fault: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE versions SET fault = ? WHERE agent = ? AND number = ?")
            .bind(fault)
            .bind(agent)
            .bind(int(version))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn replace_component(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        sqlx::query("UPDATE components SET size = ?, bytes = ? WHERE digest = ?")
            .bind(int(bytes.len() as u64))
            .bind(bytes)
            .bind(digest)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn activations(&self, agent: &str, limit: u32) -> Result<Vec<ActivationRecord>> {
        let rows: Vec<ActivationRow> = sqlx::query_as(
            "SELECT seq, agent, version, previous, cause, at_ms FROM activations \
             WHERE agent = ? ORDER BY seq DESC LIMIT ?",
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

#[async_trait]
impl KvStore for Sqlite {
    async fn kv_get(&self, agent: &str, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM kv WHERE agent = ? AND key = ?")
                .bind(agent)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn kv_keys(&self, agent: &str, prefix: &str) -> Result<Vec<String>> {
        // Compare by prefix rather than LIKE so `%` and `_` in a prefix mean themselves.
        Ok(sqlx::query_scalar(
            "SELECT key FROM kv WHERE agent = ? AND substr(key, 1, length(?)) = ? ORDER BY key",
        )
        .bind(agent)
        .bind(prefix)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn kv_commit(&self, agent: &str, writes: &[KvWrite], events: &[NewEvent]) -> Result<()> {
        if writes.is_empty() && events.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for write in writes {
            match &write.value {
                Some(value) => {
                    sqlx::query(
                        "INSERT INTO kv (agent, key, value) VALUES (?, ?, ?) \
                         ON CONFLICT (agent, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(agent)
                    .bind(&write.key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM kv WHERE agent = ? AND key = ?")
                        .bind(agent)
                        .bind(&write.key)
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
    }

    async fn kv_usage(&self, agent: &str) -> Result<KvUsage> {
        let (keys, bytes): (i64, i64) = sqlx::query_as(
            "SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB))), 0) \
             FROM kv WHERE agent = ?",
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
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&event.id)
    .bind(&event.topic)
    .bind(&event.payload)
    .bind(&event.source)
    .bind(int(event.at_ms))
    .bind(int(event.payload.len() as u64))
    .bind(event.as_of_ms.map(int))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl EventLog for Sqlite {
    async fn insert_event(&self, event: &NewEvent) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        insert_event(&mut tx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn events(&self, filter: &EventFilter<'_>) -> Result<Vec<EventRecord>> {
        let (exact, prefix) = topic_filter(filter.topic);
        let order = if filter.newest_first { "DESC" } else { "ASC" };
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT seq, id, topic, payload, source, at_ms, as_of_ms FROM events \
             WHERE seq > ? AND at_ms >= ? AND (? IS NULL OR topic = ?) \
             AND (? IS NULL OR substr(topic, 1, length(?)) = ?) ORDER BY seq {order} LIMIT ?"
        ))
        .bind(filter.after)
        .bind(int(filter.since_ms))
        .bind(&exact)
        .bind(&exact)
        .bind(&prefix)
        .bind(&prefix)
        .bind(&prefix)
        .bind(int(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(EventRecord::from).collect())
    }
}

#[async_trait]
impl LogStore for Sqlite {
    async fn insert_logs(&self, lines: &[LogLine]) -> Result<()> {
        // One statement per batch: the writer is free again sooner.
        for batch in lines.chunks(LOG_ROWS) {
            sqlx::QueryBuilder::<Db>::new(
                "INSERT INTO logs (agent, version, level, message, at_ms, size) ",
            )
            .push_values(batch, |mut row, line| {
                row.push_bind(&line.agent)
                    .push_bind(line.version.map(int))
                    .push_bind(line.level)
                    .push_bind(&line.message)
                    .push_bind(int(line.at_ms))
                    .push_bind(int(line.message.len() as u64));
            })
            .build()
            .execute(&self.writer)
            .await?;
        }
        Ok(())
    }

    async fn logs(&self, agent: &str, page: Page) -> Result<Vec<LogRecord>> {
        let rows: Vec<LogRow> = sqlx::query_as(
            "SELECT seq, agent, version, level, message, at_ms FROM \
             (SELECT * FROM logs WHERE agent = ? AND (? IS NULL OR seq < ?) \
              ORDER BY seq DESC LIMIT ?) ORDER BY seq",
        )
        .bind(agent)
        .bind(page.before)
        .bind(page.before)
        .bind(int(page.limit))
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }
}

#[async_trait]
impl AlertStore for Sqlite {
    async fn open_alert(&self, alert: &NewAlert<'_>) -> Result<(AlertRecord, bool)> {
        // The partial unique index keeps a second open alert of the same agent and kind out;
        // the transaction keeps the one it collided with open until it is read.
        let mut tx = self.writer.begin().await?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alerts (agent, kind, priority, message, evidence, opened_ms) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (agent, kind) WHERE resolved_ms IS NULL DO NOTHING RETURNING id",
        )
        .bind(alert.agent)
        .bind(alert.kind)
        .bind(alert.priority)
        .bind(alert.message)
        .bind(alert.evidence.to_string())
        .bind(ms())
        .fetch_optional(&mut *tx)
        .await?;
        let row: AlertRow = match inserted {
            Some(id) => {
                sqlx::query_as(&format!("{ALERT_COLUMNS} WHERE id = ?"))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "{ALERT_COLUMNS} WHERE agent = ? AND kind = ? AND resolved_ms IS NULL"
                ))
                .bind(alert.agent)
                .bind(alert.kind)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        tx.commit().await?;
        Ok((row.into(), inserted.is_some()))
    }

    async fn alert(&self, id: i64) -> Result<Option<AlertRecord>> {
        let row: Option<AlertRow> = sqlx::query_as(&format!("{ALERT_COLUMNS} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(AlertRecord::from))
    }

    async fn alerts(&self, filter: &AlertFilter<'_>) -> Result<Vec<AlertRecord>> {
        let rows: Vec<AlertRow> = sqlx::query_as(&format!(
            "{ALERT_COLUMNS} WHERE (? IS NULL OR (resolved_ms IS NULL) = ?) \
             AND (? IS NULL OR agent = ?) AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(filter.open)
        .bind(filter.open)
        .bind(filter.agent)
        .bind(filter.agent)
        .bind(filter.before)
        .bind(filter.before)
        .bind(int(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(AlertRecord::from).collect())
    }

    async fn resolve_alert(&self, id: i64, resolution: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET resolved_ms = ?, resolution = ? WHERE id = ? AND resolved_ms IS NULL",
        )
        .bind(ms())
        .bind(resolution)
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn resolve_alerts_of(
        &self,
        agent: &str,
        kinds: &[&str],
        resolution: &str,
    ) -> Result<Vec<i64>> {
        let mut ids = Vec::new();
        for kind in kinds {
            let resolved: Vec<i64> = sqlx::query_scalar(
                "UPDATE alerts SET resolved_ms = ?, resolution = ? \
                 WHERE agent = ? AND kind = ? AND resolved_ms IS NULL RETURNING id",
            )
            .bind(ms())
            .bind(resolution)
            .bind(agent)
            .bind(*kind)
            .fetch_all(&self.writer)
            .await?;
            ids.extend(resolved);
        }
        Ok(ids)
    }
}

#[async_trait]
impl EditStore for Sqlite {
    async fn insert_edit(&self, edit: &NewEdit<'_>) -> Result<i64> {
        let now = ms();
        Ok(sqlx::query_scalar(
            "INSERT INTO edits (agent, base_version, proposer, by_agent, reason, diff, state, rebased_onto, created_ms, updated_ms) \
             VALUES (?, ?, ?, ?, ?, ?, 'applying', ?, ?, ?) RETURNING id",
        )
        .bind(edit.agent)
        .bind(edit.base_version.map(int))
        .bind(edit.proposer)
        .bind(edit.by_agent)
        .bind(edit.reason)
        .bind(edit.diff)
        .bind(edit.rebased_onto.map(int))
        .bind(now)
        .bind(now)
        .fetch_one(&self.writer)
        .await?)
    }

    async fn update_edit(&self, id: i64, update: &EditUpdate<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE edits SET state = ?, stage = COALESCE(?, stage), code = COALESCE(?, code), \
             message = COALESCE(?, message), build_log = COALESCE(?, build_log), \
             version = COALESCE(?, version), updated_ms = ? WHERE id = ?",
        )
        .bind(update.state.as_str())
        .bind(update.stage)
        .bind(update.code)
        .bind(update.message.as_deref())
        .bind(update.build_log)
        .bind(update.version.map(int))
        .bind(ms())
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn edit(&self, agent: &str, id: i64) -> Result<Option<EditRecord>> {
        let row: Option<EditRow> =
            sqlx::query_as(&format!("{EDIT_COLUMNS} WHERE agent = ? AND id = ?"))
                .bind(agent)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(EditRecord::try_from).transpose()
    }

    async fn edits(&self, agent: &str, page: Page) -> Result<Vec<EditRecord>> {
        let rows: Vec<EditRow> = sqlx::query_as(&format!(
            "{EDIT_COLUMNS} WHERE agent = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(agent)
        .bind(page.before)
        .bind(page.before)
        .bind(int(page.limit))
        .fetch_all(&self.pool)
        .await?;
        all(rows)
    }

    async fn interrupt_edits(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE edits SET state = 'rejected', stage = COALESCE(stage, state), code = 'interrupted', \
             message = 'the daemon stopped before the edit finished', updated_ms = ? \
             WHERE state IN ('applying', 'building', 'checking')",
        )
        .bind(ms())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl UsageStore for Sqlite {
    async fn insert_llm_call(&self, call: &LlmCall<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO llm_calls (agent, model, prompt_tokens, completion_tokens, outcome, ms, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(call.agent)
        .bind(call.model)
        .bind(i64::from(call.prompt_tokens))
        .bind(i64::from(call.completion_tokens))
        .bind(call.outcome)
        .bind(int(call.ms))
        .bind(ms())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn llm_spend_since(&self, since_ms: u64) -> Result<Vec<LlmSpend>> {
        let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
            "SELECT agent, model, coalesce(SUM(prompt_tokens), 0), coalesce(SUM(completion_tokens), 0) \
             FROM llm_calls WHERE at_ms >= ? GROUP BY agent, model ORDER BY agent, model",
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
            "INSERT INTO llm_budgets (agent, tokens_per_day, usd_per_day) VALUES (?, ?, ?) \
             ON CONFLICT (agent) DO UPDATE SET tokens_per_day = excluded.tokens_per_day, \
             usd_per_day = excluded.usd_per_day",
        )
        .bind(&budget.agent)
        .bind(int(budget.tokens_per_day))
        .bind(budget.usd_per_day)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn llm_usage(&self) -> Result<Vec<LlmUsage>> {
        let rows: Vec<UsageRow> = sqlx::query_as(
            "SELECT agent, COUNT(*) AS calls, SUM(CASE WHEN outcome <> 'ok' THEN 1 ELSE 0 END) AS failed, \
             SUM(prompt_tokens) AS prompt, SUM(completion_tokens) AS completion, MAX(at_ms) AS last \
             FROM llm_calls GROUP BY agent ORDER BY SUM(prompt_tokens + completion_tokens) DESC, agent",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(LlmUsage::from).collect())
    }
}

#[async_trait]
impl TradingStore for Sqlite {
    async fn insert_order(&self, order: &OrderRecord) -> Result<(OrderRecord, bool)> {
        let mut tx = self.writer.begin().await?;
        let existing: Option<OrderRow> = sqlx::query_as(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE client_order_id = ?"
        ))
        .bind(&order.client_order_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(existing) = existing {
            return Ok((existing.into(), false));
        }
        sqlx::query(&format!(
            "INSERT INTO orders ({ORDER_COLUMNS}) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&order.id)
        .bind(&order.client_order_id)
        .bind(&order.agent)
        .bind(&order.symbol)
        .bind(&order.side)
        .bind(&order.order_type)
        .bind(&order.time_in_force)
        .bind(order.quantity)
        .bind(order.notional)
        .bind(order.limit_price)
        .bind(&order.status)
        .bind(order.filled_quantity)
        .bind(order.fill_price)
        .bind(order.commission)
        .bind(&order.submitted)
        .bind(&order.filled)
        .bind(&order.reason)
        .bind(int(order.at_ms))
        .bind(order.agent_version.map(i64::from))
        .bind(&order.trigger)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((order.clone(), true))
    }

    async fn order(&self, id: &str) -> Result<Option<OrderRecord>> {
        let row: Option<OrderRow> =
            sqlx::query_as(&format!("SELECT {ORDER_COLUMNS} FROM orders WHERE id = ?"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(OrderRecord::from))
    }

    async fn orders(&self, filter: &OrderFilter<'_>) -> Result<Vec<OrderRecord>> {
        let rows: Vec<OrderRow> = sqlx::query_as(&format!(
            "SELECT {ORDER_COLUMNS} FROM orders WHERE (? = 0 OR status = 'new') \
             AND (? IS NULL OR symbol = ?) ORDER BY at_ms DESC, rowid DESC LIMIT ?"
        ))
        .bind(filter.open_only)
        .bind(filter.symbol)
        .bind(filter.symbol)
        .bind(int(filter.limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(OrderRecord::from).collect())
    }

    async fn update_order(&self, order: &OrderRecord, fill: Option<&FillRecord>) -> Result<()> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "UPDATE orders SET quantity = ?, status = ?, filled_quantity = ?, fill_price = ?, \
             commission = ?, filled = ?, reason = ? WHERE id = ?",
        )
        .bind(order.quantity)
        .bind(&order.status)
        .bind(order.filled_quantity)
        .bind(order.fill_price)
        .bind(order.commission)
        .bind(&order.filled)
        .bind(&order.reason)
        .bind(&order.id)
        .execute(&mut *tx)
        .await?;
        if let Some(fill) = fill {
            sqlx::query(
                "INSERT INTO fills (order_id, symbol, side, quantity, price, commission, \
                 slippage, date, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&fill.order_id)
            .bind(&fill.symbol)
            .bind(&fill.side)
            .bind(fill.quantity)
            .bind(fill.price)
            .bind(fill.commission)
            .bind(fill.slippage)
            .bind(&fill.date)
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
             detail, as_of, at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        )
        .bind(&refusal.agent)
        .bind(&refusal.client_order_id)
        .bind(&refusal.symbol)
        .bind(&refusal.side)
        .bind(&refusal.code)
        .bind(&refusal.message)
        .bind(&refusal.detail)
        .bind(&refusal.as_of)
        .bind(int(refusal.at_ms))
        .fetch_one(&self.writer)
        .await?;
        Ok(seq)
    }

    async fn refusals(&self, limit: u32) -> Result<Vec<RefusalRecord>> {
        let rows: Vec<RefusalRow> = sqlx::query_as(
            "SELECT seq, agent, client_order_id, symbol, side, code, message, detail, as_of, \
             at_ms FROM refusals ORDER BY seq DESC LIMIT ?",
        )
        .bind(int(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(RefusalRecord::from).collect())
    }

    async fn trading_state(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM trading_state WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn record_equity(&self, point: &EquityPoint) -> Result<()> {
        sqlx::query(
            "INSERT INTO equity_curve (day, equity, cash, gross_exposure, realized_pnl, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE SET equity = excluded.equity, \
             cash = excluded.cash, gross_exposure = excluded.gross_exposure, \
             realized_pnl = excluded.realized_pnl, at_ms = excluded.at_ms",
        )
        .bind(&point.day)
        .bind(point.equity)
        .bind(point.cash)
        .bind(point.gross_exposure)
        .bind(point.realized_pnl)
        .bind(point.at_ms)
        .execute(&self.writer)
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
            "INSERT INTO trading_state (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl MemoryStore for Sqlite {
    async fn remember(&self, memory: &NewMemory<'_>) -> Result<i64> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO memories (collection, text, metadata, embedding, at_ms, as_of_ms) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(memory.collection)
        .bind(memory.text)
        .bind(memory.metadata)
        .bind(memory.embedding)
        .bind(int(memory.at_ms))
        .bind(memory.as_of_ms.map(int))
        .fetch_one(&self.writer)
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
                "SELECT id, collection, text, metadata, embedding, at_ms, 0.0 AS rank \
                 FROM memories WHERE collection = ?1 \
                 AND (?2 IS NULL OR as_of_ms IS NULL OR as_of_ms <= ?2) ORDER BY id DESC LIMIT ?3",
            )
            .bind(collection)
            .bind(as_of)
            .bind(int(limit))
            .fetch_all(&self.pool)
            .await?
        } else {
            // Each word quoted: FTS5 sees terms, never its query syntax. bm25() is lower
            // for better matches.
            let expression = words
                .iter()
                .map(|w| format!("\"{w}\""))
                .collect::<Vec<_>>()
                .join(" OR ");
            sqlx::query_as(
                "SELECT m.id, m.collection, m.text, m.metadata, m.embedding, m.at_ms, \
                 -bm25(memories_fts) AS rank FROM memories_fts JOIN memories m \
                 ON m.id = memories_fts.rowid WHERE memories_fts MATCH ?1 AND m.collection = ?2 \
                 AND (?3 IS NULL OR m.as_of_ms IS NULL OR m.as_of_ms <= ?3) \
                 ORDER BY bm25(memories_fts) LIMIT ?4",
            )
            .bind(expression)
            .bind(collection)
            .bind(as_of)
            .bind(int(limit))
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
            "SELECT id, collection, text, metadata, embedding, at_ms, 0.0 AS rank FROM memories \
             WHERE collection = ?1 AND embedding IS NOT NULL \
             AND (?2 IS NULL OR as_of_ms IS NULL OR as_of_ms <= ?2) ORDER BY id DESC LIMIT ?3",
        )
        .bind(collection)
        .bind(as_of_ms.map(int))
        .bind(int(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(MemoryRecord::from).collect())
    }

    async fn forget(&self, collection: &str, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM memories WHERE collection = ? AND id = ?")
            .bind(collection)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }
}

#[async_trait]
impl AuditStore for Sqlite {
    async fn append_audit(&self, entry: &audit::NewAudit<'_>) -> Result<audit::AuditRecord> {
        // The one writer connection: no other append runs between the read and the insert.
        let mut tx = self.writer.begin().await?;
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
             WHERE seq > ? ORDER BY seq LIMIT ?"
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
             WHERE at_ms >= ? AND at_ms < ? ORDER BY seq"
        ))
        .bind(i64::try_from(from_ms).unwrap_or(i64::MAX))
        .bind(i64::try_from(to_ms).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}

#[async_trait]
impl OverseerStore for Sqlite {
    async fn insert_loop_run(&self, run: &NewLoopRun<'_>) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO loop_runs (loop, started_ms, ended_ms, looked_at, did, error) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(run.name)
        .bind(i64::try_from(run.started_ms).unwrap_or(i64::MAX))
        .bind(i64::try_from(run.ended_ms).unwrap_or(i64::MAX))
        .bind(run.looked_at.to_string())
        .bind(run.did.to_string())
        .bind(run.error)
        .fetch_one(&self.writer)
        .await?)
    }

    async fn loop_runs(&self, name: Option<&str>, page: Page) -> Result<Vec<LoopRunRecord>> {
        let rows: Vec<LoopRunRow> = sqlx::query_as(
            "SELECT id, loop AS name, started_ms, ended_ms, looked_at, did, error FROM loop_runs \
             WHERE (? IS NULL OR loop = ?) AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(name)
        .bind(name)
        .bind(page.before)
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
            "INSERT INTO reports (date, generated_ms, body) VALUES (?, ?, ?) \
             ON CONFLICT (date) DO UPDATE SET generated_ms = excluded.generated_ms, body = excluded.body",
        )
        .bind(date)
        .bind(i64::try_from(generated_ms).unwrap_or(i64::MAX))
        .bind(body.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn report(&self, date: &str) -> Result<Option<serde_json::Value>> {
        let body: Option<String> = sqlx::query_scalar("SELECT body FROM reports WHERE date = ?")
            .bind(date)
            .fetch_optional(&self.pool)
            .await?;
        Ok(body.and_then(|b| serde_json::from_str(&b).ok()))
    }

    async fn reports(&self, limit: u32) -> Result<Vec<ReportSummary>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT date, generated_ms FROM reports ORDER BY date DESC LIMIT ?")
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
impl GovernanceStore for Sqlite {
    async fn insert_decision(&self, decision: &NewDecision<'_>) -> Result<DecisionRecord> {
        let row: DecisionRow = sqlx::query_as(&format!(
            "INSERT INTO decisions (meeting, proposer, made_ms, body, policy, state, due_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING {DECISION_COLUMNS}"
        ))
        .bind(decision.meeting)
        .bind(decision.proposer)
        .bind(ms())
        .bind(decision.body.to_string())
        .bind(decision.policy)
        .bind(decision.state)
        .bind(i64::try_from(decision.due_ms).unwrap_or(i64::MAX))
        .fetch_one(&self.writer)
        .await?;
        Ok(row.into())
    }

    async fn decision(&self, id: i64) -> Result<Option<DecisionRecord>> {
        let row: Option<DecisionRow> = sqlx::query_as(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn decisions(&self, state: Option<&str>, page: Page) -> Result<Vec<DecisionRecord>> {
        let rows: Vec<DecisionRow> = sqlx::query_as(&format!(
            "SELECT {DECISION_COLUMNS} FROM decisions WHERE (? IS NULL OR state = ?) \
             AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(state)
        .bind(state)
        .bind(page.before)
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
            "UPDATE decisions SET state = ?, decided_by = ?, decided_ms = ?, reason = ? \
             WHERE id = ? AND state = ? RETURNING {DECISION_COLUMNS}"
        ))
        .bind(to)
        .bind(by)
        .bind(ms())
        .bind(reason)
        .bind(id)
        .bind(from)
        .fetch_optional(&self.writer)
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
        sqlx::query("UPDATE decisions SET state = ?, applied = ?, due_ms = ? WHERE id = ?")
            .bind(state)
            .bind(applied.to_string())
            .bind(i64::try_from(due_ms).unwrap_or(i64::MAX))
            .bind(id)
            .execute(&self.writer)
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
            "UPDATE decisions SET outcome = ?, measured = ?, evaluated_ms = ? WHERE id = ?",
        )
        .bind(outcome)
        .bind(measured.to_string())
        .bind(ms())
        .bind(id)
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}

#[async_trait]
impl PromptStore for Sqlite {
    async fn insert_prompt_version(
        &self,
        version: &NewPromptVersion<'_>,
    ) -> Result<PromptVersionRecord> {
        // One statement: the number is taken and used under the one writer.
        let row: PromptVersionRow = sqlx::query_as(&format!(
            "INSERT INTO prompt_versions (name, version, owner, author, body, created_ms) \
             SELECT ?, COALESCE(MAX(version), 0) + 1, ?, ?, ?, ? FROM prompt_versions WHERE name = ? \
             RETURNING {PROMPT_VERSION_COLUMNS}"
        ))
        .bind(version.name)
        .bind(version.owner)
        .bind(version.author)
        .bind(version.body.to_string())
        .bind(ms())
        .bind(version.name)
        .fetch_one(&self.writer)
        .await?;
        Ok(row.into())
    }

    async fn prompt_versions(&self, name: &str) -> Result<Vec<PromptVersionRecord>> {
        let rows: Vec<PromptVersionRow> = sqlx::query_as(&format!(
            "SELECT {PROMPT_VERSION_COLUMNS} FROM prompt_versions WHERE name = ? ORDER BY version"
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
             VALUES (?, ?, ?, ?, ?, ?) RETURNING {PROMPT_LABEL_COLUMNS}"
        ))
        .bind(name)
        .bind(label)
        .bind(i64::from(version))
        .bind(set_by)
        .bind(reason)
        .bind(ms())
        .fetch_one(&self.writer)
        .await?;
        Ok(row.into())
    }

    async fn prompt_labels(&self, name: &str) -> Result<Vec<PromptLabelRecord>> {
        let rows: Vec<PromptLabelRow> = sqlx::query_as(&format!(
            "SELECT {PROMPT_LABEL_COLUMNS} FROM prompt_labels WHERE name = ? ORDER BY id"
        ))
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn insert_prompt_use(&self, used: &NewPromptUse<'_>) -> Result<i64> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO prompt_uses (name, version, agent, unit, experiment, variant, used_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(used.name)
        .bind(i64::from(used.version))
        .bind(used.agent)
        .bind(used.unit)
        .bind(used.experiment)
        .bind(used.variant.map(i64::from))
        .bind(ms())
        .fetch_one(&self.writer)
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
            "UPDATE prompt_uses SET score = ?, success = ?, scored_ms = ? \
             WHERE id = ? AND agent = ? AND scored_ms IS NULL RETURNING {PROMPT_USE_COLUMNS}"
        ))
        .bind(score)
        .bind(success)
        .bind(ms())
        .bind(id)
        .bind(agent)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn prompt_uses(&self, name: &str, limit: u32) -> Result<Vec<PromptUseRecord>> {
        let rows: Vec<PromptUseRow> = sqlx::query_as(&format!(
            "SELECT {PROMPT_USE_COLUMNS} FROM prompt_uses WHERE name = ? ORDER BY id DESC LIMIT ?"
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
             WHERE experiment = ? AND scored_ms IS NOT NULL ORDER BY id"
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
             VALUES (?, ?, 'running', ?) RETURNING {EXPERIMENT_COLUMNS}"
        ))
        .bind(prompt)
        .bind(body.to_string())
        .bind(ms())
        .fetch_one(&self.writer)
        .await?;
        Ok(row.into())
    }

    async fn experiment(&self, id: i64) -> Result<Option<ExperimentRecord>> {
        let row: Option<ExperimentRow> = sqlx::query_as(&format!(
            "SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?"
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
             WHERE (? IS NULL OR prompt = ?) AND (? IS NULL OR state = ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(prompt)
        .bind(prompt)
        .bind(state)
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
            "UPDATE experiments SET state = ?, result = ?, ended_ms = ? \
             WHERE id = ? AND state = ? RETURNING {EXPERIMENT_COLUMNS}"
        ))
        .bind(to)
        .bind(result.to_string())
        .bind(ended)
        .bind(id)
        .bind(from)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(Into::into))
    }
}

#[async_trait]
impl SpecStore for Sqlite {
    async fn insert_spec(
        &self,
        name: &str,
        body: &serde_json::Value,
        state: &str,
    ) -> Result<SpecRecord> {
        let now = ms();
        let row: SpecRow = sqlx::query_as(&format!(
            "INSERT INTO agent_specs (name, body, state, created_ms, updated_ms, detail) \
             VALUES (?, ?, ?, ?, ?, '{{}}') RETURNING {SPEC_COLUMNS}"
        ))
        .bind(name)
        .bind(body.to_string())
        .bind(state)
        .bind(now)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(row.into())
    }

    async fn spec(&self, id: i64) -> Result<Option<SpecRecord>> {
        let row: Option<SpecRow> = sqlx::query_as(&format!(
            "SELECT {SPEC_COLUMNS} FROM agent_specs WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn specs(&self, page: Page) -> Result<Vec<SpecRecord>> {
        let rows: Vec<SpecRow> = sqlx::query_as(&format!(
            "SELECT {SPEC_COLUMNS} FROM agent_specs WHERE (? IS NULL OR id < ?) \
             ORDER BY id DESC LIMIT ?"
        ))
        .bind(page.before)
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
            "UPDATE agent_specs SET state = ?, detail = ?, updated_ms = ? \
             WHERE id = ? AND state = ? RETURNING {SPEC_COLUMNS}"
        ))
        .bind(to)
        .bind(detail.to_string())
        .bind(ms())
        .bind(id)
        .bind(from)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.map(Into::into))
    }
}

#[async_trait]
impl Housekeeping for Sqlite {
    async fn prune(&self, policy: &PrunePolicy) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        // Each table in a transaction of its own: the writer is free between them.
        let w = &self.writer;
        pruned.events = sqlx::query("DELETE FROM events WHERE at_ms < ?")
            .bind(int(policy.events_before_ms))
            .execute(w)
            .await?
            .rows_affected();
        pruned.events += sqlx::query(
            "DELETE FROM events WHERE seq <= (SELECT seq FROM \
             (SELECT seq, sum(size) OVER (ORDER BY seq DESC) AS kept FROM events) \
             WHERE kept > ? ORDER BY seq DESC LIMIT 1)",
        )
        .bind(int(policy.events_bytes))
        .execute(w)
        .await?
        .rows_affected();
        pruned.logs = sqlx::query("DELETE FROM logs WHERE at_ms < ?")
            .bind(int(policy.logs_before_ms))
            .execute(w)
            .await?
            .rows_affected();
        let agents: Vec<String> = sqlx::query_scalar("SELECT DISTINCT agent FROM logs")
            .fetch_all(&self.pool)
            .await?;
        for agent in agents {
            pruned.logs += sqlx::query(
                "DELETE FROM logs WHERE agent = ?1 AND seq <= (SELECT seq FROM \
                 (SELECT seq, sum(size) OVER (ORDER BY seq DESC) AS kept FROM logs WHERE agent = ?1) \
                 WHERE kept > ?2 ORDER BY seq DESC LIMIT 1)",
            )
            .bind(&agent)
            .bind(int(policy.logs_bytes_per_agent))
            .execute(w)
            .await?
            .rows_affected();
        }
        pruned.llm_calls = sqlx::query(
            "DELETE FROM llm_calls WHERE at_ms < ? OR id <= \
             (SELECT id FROM llm_calls ORDER BY id DESC LIMIT 1 OFFSET ?)",
        )
        .bind(int(policy.llm_calls_before_ms))
        .bind(int(policy.llm_calls))
        .execute(w)
        .await?
        .rows_affected();
        pruned.refusals = sqlx::query(
            "DELETE FROM refusals WHERE at_ms < ? OR seq <= \
             (SELECT seq FROM refusals ORDER BY seq DESC LIMIT 1 OFFSET ?)",
        )
        .bind(int(policy.refusals_before_ms))
        .bind(int(policy.refusals))
        .execute(w)
        .await?
        .rows_affected();
        let collections: Vec<String> =
            sqlx::query_scalar("SELECT DISTINCT collection FROM memories")
                .fetch_all(w)
                .await?;
        for collection in collections {
            pruned.memories += sqlx::query(
                "DELETE FROM memories WHERE collection = ?1 AND id <= (SELECT id FROM memories \
                 WHERE collection = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
            )
            .bind(&collection)
            .bind(int(policy.memories_per_collection))
            .execute(w)
            .await?
            .rows_affected();
        }
        pruned.alerts = sqlx::query(
            "DELETE FROM alerts WHERE resolved_ms IS NOT NULL AND (resolved_ms < ? OR id <= \
             (SELECT id FROM alerts WHERE resolved_ms IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET ?))",
        )
        .bind(int(policy.alerts_before_ms))
        .bind(int(policy.alerts))
        .execute(w)
        .await?
        .rows_affected();
        pruned.build_logs = sqlx::query(
            "UPDATE edits SET build_log = NULL WHERE build_log IS NOT NULL \
             AND state IN ('live', 'rejected', 'rolled-back') AND (updated_ms < ? OR id <= \
             (SELECT id FROM edits WHERE build_log IS NOT NULL ORDER BY id DESC LIMIT 1 OFFSET ?))",
        )
        .bind(int(policy.build_logs_before_ms))
        .bind(int(policy.build_logs))
        .execute(w)
        .await?
        .rows_affected();
        let mut tx = self.writer.begin().await?;
        pruned.rejected = sqlx::query(
            "DELETE FROM versions AS v WHERE state = 'rejected' \
             AND number < (SELECT max(number) FROM versions WHERE agent = v.agent) \
             AND (created_ms < ? OR number <= (SELECT number FROM versions \
                  WHERE agent = v.agent AND state = 'rejected' ORDER BY number DESC LIMIT 1 OFFSET ?))",
        )
        .bind(int(policy.rejected_before_ms))
        .bind(int(policy.rejected_per_agent))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if pruned.rejected > 0 {
            pruned.components = sqlx::query(
                "DELETE FROM components WHERE NOT EXISTS \
                 (SELECT 1 FROM versions WHERE versions.digest = components.digest)",
            )
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(pruned)
    }

    async fn size_on_disk(&self) -> Result<u64> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        Ok([self.path.as_os_str(), wal.as_os_str()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum())
    }
}
