//! Persistence: sqlx over SQLite in the data directory, with migrations. Every state change of
//! the registry is written here before it takes effect in memory.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::Result;
use crate::manifest::Manifest;

/// The outcome of one step of the deploy pipeline, kept with the version.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Check {
    pub step: String,
    pub ok: bool,
    pub detail: String,
    pub ms: f64,
}

/// A version as stored.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRecord {
    pub agent: String,
    pub number: u32,
    pub digest: String,
    pub size: u64,
    pub manifest: Manifest,
    pub origin: String,
    pub parent: Option<u32>,
    pub state: String,
    pub stage: Option<String>,
    pub code: Option<String>,
    pub reason: Option<String>,
    pub checks: Vec<Check>,
    pub created_ms: u64,
    /// The watch window's verdict: `stable`, `rolled-back` or `inconclusive`.
    pub verdict: Option<String>,
    pub verdict_detail: Option<String>,
    pub calls: u64,
    pub failures: u64,
    /// The source snapshot the version was built from, when it was built from source.
    pub source_digest: Option<String>,
}

/// An agent as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AgentRecord {
    pub name: String,
    pub active_version: Option<u32>,
    pub created_ms: u64,
    pub retired_ms: Option<u64>,
    pub quarantined_ms: Option<u64>,
}

/// One entry of the event log.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    pub seq: i64,
    pub id: String,
    pub topic: String,
    pub payload: String,
    pub source: String,
    pub at_ms: u64,
}

/// One line of an agent's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogRecord {
    pub seq: i64,
    pub agent: String,
    pub version: Option<u32>,
    pub level: String,
    pub message: String,
    pub at_ms: u64,
}

/// The database.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl Store {
    /// Open (creating if needed) the database at `path` and run the migrations.
    pub async fn open(path: &Path) -> Result<Store> {
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL with NORMAL survives a crash of the process; only a power loss can drop the
            // last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| crate::error::Error::Internal(format!("migrations: {e}")))?;
        Ok(Store { pool })
    }

    pub async fn agents(&self) -> Result<Vec<AgentRecord>> {
        let rows = sqlx::query(
            "SELECT name, active_version, created_ms, retired_ms, quarantined_ms FROM agents ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(agent_record).collect())
    }

    pub async fn agent(&self, name: &str) -> Result<Option<AgentRecord>> {
        let row = sqlx::query(
            "SELECT name, active_version, created_ms, retired_ms, quarantined_ms FROM agents WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(agent_record))
    }

    pub async fn versions(&self, agent: &str) -> Result<Vec<VersionRecord>> {
        let rows = sqlx::query(&format!(
            "{VERSION_COLUMNS} WHERE agent = ? ORDER BY number"
        ))
        .bind(agent)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(version_record).collect()
    }

    pub async fn version(&self, agent: &str, number: u32) -> Result<Option<VersionRecord>> {
        let row = sqlx::query(&format!("{VERSION_COLUMNS} WHERE agent = ? AND number = ?"))
            .bind(agent)
            .bind(number)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(version_record).transpose()
    }

    /// The bytes of a stored component.
    pub async fn component(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes FROM components WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// A compressed source snapshot.
    pub async fn source(&self, digest: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT bytes FROM sources WHERE digest = ?")
            .bind(digest)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>(0)))
    }

    /// Record a new version, storing its component when `bytes` is given, and make it the
    /// active one when `activate` is set — all in one transaction. Returns its number.
    pub async fn insert_version(
        &self,
        record: &NewVersion<'_>,
        bytes: Option<&[u8]>,
        activate: bool,
    ) -> Result<u32> {
        let mut tx = self.pool.begin().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO agents (name, active_version, created_ms) VALUES (?, NULL, ?) \
             ON CONFLICT (name) DO UPDATE SET retired_ms = CASE WHEN ? THEN NULL ELSE agents.retired_ms END",
        )
        .bind(record.agent)
        .bind(now as i64)
        .bind(activate)
        .execute(&mut *tx)
        .await?;
        let number: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(number), 0) + 1 FROM versions WHERE agent = ?")
                .bind(record.agent)
                .fetch_one(&mut *tx)
                .await?;
        if let Some(bytes) = bytes {
            sqlx::query(
                "INSERT INTO components (digest, size, bytes) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(record.digest)
            .bind(bytes.len() as i64)
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        if let Some((digest, bytes)) = record.source {
            sqlx::query(
                "INSERT INTO sources (digest, size, bytes) VALUES (?, ?, ?) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest)
            .bind(bytes.len() as i64)
            .bind(bytes)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO versions (agent, number, digest, size, manifest, origin, parent, state, stage, code, reason, checks, created_ms, source_digest) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(record.agent)
        .bind(number)
        .bind(record.digest)
        .bind(record.size as i64)
        .bind(serde_json::to_string(record.manifest).unwrap_or_default())
        .bind(record.origin)
        .bind(record.parent)
        .bind(if record.rejected.is_some() { "rejected" } else { "ready" })
        .bind(record.rejected.map(|r| r.stage))
        .bind(record.rejected.map(|r| r.code))
        .bind(record.rejected.map(|r| r.reason))
        .bind(serde_json::to_string(record.checks).unwrap_or_default())
        .bind(now as i64)
        .bind(record.source.map(|(digest, _)| digest))
        .execute(&mut *tx)
        .await?;
        if activate {
            sqlx::query("UPDATE agents SET active_version = ? WHERE name = ?")
                .bind(number)
                .bind(record.agent)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(number as u32)
    }

    /// Point the agent at an existing version.
    pub async fn set_active(&self, agent: &str, number: Option<u32>) -> Result<()> {
        sqlx::query("UPDATE agents SET active_version = ?, retired_ms = CASE WHEN ? IS NULL THEN ? ELSE NULL END WHERE name = ?")
            .bind(number)
            .bind(number)
            .bind(now_ms() as i64)
            .bind(agent)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn kv_get(&self, agent: &str, key: &str) -> Result<Option<String>> {
        let value = sqlx::query_scalar("SELECT value FROM kv WHERE agent = ? AND key = ?")
            .bind(agent)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    pub async fn kv_set(&self, agent: &str, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO kv (agent, key, value) VALUES (?, ?, ?) \
             ON CONFLICT (agent, key) DO UPDATE SET value = excluded.value",
        )
        .bind(agent)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn kv_delete(&self, agent: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM kv WHERE agent = ? AND key = ?")
            .bind(agent)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn kv_keys(&self, agent: &str, prefix: &str) -> Result<Vec<String>> {
        // Compare by range rather than LIKE so `%` and `_` in a prefix mean themselves.
        let keys = sqlx::query_scalar(
            "SELECT key FROM kv WHERE agent = ? AND substr(key, 1, length(?)) = ? ORDER BY key",
        )
        .bind(agent)
        .bind(prefix)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        Ok(keys)
    }

    pub async fn insert_event(&self, event: &overseer_sandbox::Event) -> Result<()> {
        sqlx::query(
            "INSERT INTO events (id, topic, payload, source, at_ms) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&event.id)
        .bind(&event.topic)
        .bind(&event.payload)
        .bind(&event.source)
        .bind(event.at_ms as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Events in order, optionally of one topic (or `prefix.*`), after a sequence number.
    pub async fn events(
        &self,
        topic: Option<&str>,
        after: i64,
        since_ms: u64,
        limit: u32,
    ) -> Result<Vec<EventRecord>> {
        let (exact, prefix) = match topic {
            Some(t) => match t.strip_suffix('*') {
                Some(prefix) => (None, Some(prefix.to_string())),
                None => (Some(t.to_string()), None),
            },
            None => (None, None),
        };
        let rows = sqlx::query(
            "SELECT seq, id, topic, payload, source, at_ms FROM events \
             WHERE seq > ? AND at_ms >= ? AND (? IS NULL OR topic = ?) \
             AND (? IS NULL OR substr(topic, 1, length(?)) = ?) ORDER BY seq LIMIT ?",
        )
        .bind(after)
        .bind(since_ms as i64)
        .bind(&exact)
        .bind(&exact)
        .bind(&prefix)
        .bind(&prefix)
        .bind(&prefix)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| EventRecord {
                seq: r.get("seq"),
                id: r.get("id"),
                topic: r.get("topic"),
                payload: r.get("payload"),
                source: r.get("source"),
                at_ms: r.get::<i64, _>("at_ms") as u64,
            })
            .collect())
    }

    /// Append log lines in one transaction.
    pub async fn insert_logs(&self, lines: &[LogLine]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for line in lines {
            sqlx::query(
                "INSERT INTO logs (agent, version, level, message, at_ms) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&line.agent)
            .bind(line.version)
            .bind(line.level)
            .bind(&line.message)
            .bind(line.at_ms as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The last `limit` log lines of an agent, oldest first.
    pub async fn logs(&self, agent: &str, limit: u32) -> Result<Vec<LogRecord>> {
        let rows = sqlx::query(
            "SELECT seq, agent, version, level, message, at_ms FROM \
             (SELECT * FROM logs WHERE agent = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq",
        )
        .bind(agent)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| LogRecord {
                seq: r.get("seq"),
                agent: r.get("agent"),
                version: r.get::<Option<i64>, _>("version").map(|v| v as u32),
                level: r.get("level"),
                message: r.get("message"),
                at_ms: r.get::<i64, _>("at_ms") as u64,
            })
            .collect())
    }
}

/// A version about to be recorded.
pub struct NewVersion<'a> {
    pub agent: &'a str,
    pub digest: &'a str,
    pub size: u64,
    pub manifest: &'a Manifest,
    pub origin: &'a str,
    pub parent: Option<u32>,
    pub checks: &'a [Check],
    /// Why the version was rejected, when it was.
    pub rejected: Option<RejectedAt<'a>>,
    /// The compressed source snapshot it was built from: digest and bytes.
    pub source: Option<(&'a str, &'a [u8])>,
}

/// The step at which a version was rejected, the stable code and the reason.
#[derive(Debug, Clone, Copy)]
pub struct RejectedAt<'a> {
    pub stage: &'a str,
    pub code: &'a str,
    pub reason: &'a str,
}

/// A log line waiting to be written.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub agent: String,
    pub version: Option<u32>,
    pub level: &'static str,
    pub message: String,
    pub at_ms: u64,
}

const VERSION_COLUMNS: &str = "SELECT agent, number, digest, size, manifest, origin, parent, state, stage, code, reason, checks, created_ms, verdict, verdict_detail, calls, failures, source_digest FROM versions";

fn agent_record(row: &sqlx::sqlite::SqliteRow) -> AgentRecord {
    AgentRecord {
        name: row.get("name"),
        active_version: row
            .get::<Option<i64>, _>("active_version")
            .map(|v| v as u32),
        created_ms: row.get::<i64, _>("created_ms") as u64,
        retired_ms: row.get::<Option<i64>, _>("retired_ms").map(|v| v as u64),
        quarantined_ms: row
            .get::<Option<i64>, _>("quarantined_ms")
            .map(|v| v as u64),
    }
}

fn version_record(row: &sqlx::sqlite::SqliteRow) -> Result<VersionRecord> {
    let manifest: String = row.get("manifest");
    let checks: String = row.get("checks");
    Ok(VersionRecord {
        agent: row.get("agent"),
        number: row.get::<i64, _>("number") as u32,
        digest: row.get("digest"),
        size: row.get::<i64, _>("size") as u64,
        manifest: serde_json::from_str(&manifest)
            .map_err(|e| crate::error::Error::Internal(format!("stored manifest: {e}")))?,
        origin: row.get("origin"),
        parent: row.get::<Option<i64>, _>("parent").map(|v| v as u32),
        state: row.get("state"),
        stage: row.get("stage"),
        code: row.get("code"),
        reason: row.get("reason"),
        checks: serde_json::from_str(&checks)
            .map_err(|e| crate::error::Error::Internal(format!("stored checks: {e}")))?,
        created_ms: row.get::<i64, _>("created_ms") as u64,
        verdict: row.get("verdict"),
        verdict_detail: row.get("verdict_detail"),
        calls: row.get::<i64, _>("calls") as u64,
        failures: row.get::<i64, _>("failures") as u64,
        source_digest: row.get("source_digest"),
    })
}

pub fn now_ms() -> u64 {
    overseer_sandbox::now_ms()
}

/// An alert as stored.
#[derive(Debug, Clone, Serialize)]
pub struct AlertRecord {
    pub id: i64,
    pub agent: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub priority: String,
    pub message: String,
    pub evidence: serde_json::Value,
    pub opened_ms: u64,
    pub resolved_ms: Option<u64>,
    pub resolution: Option<String>,
}

const ALERT_COLUMNS: &str = "SELECT id, agent, kind, priority, message, evidence, opened_ms, resolved_ms, resolution FROM alerts";

fn alert_record(row: &sqlx::sqlite::SqliteRow) -> AlertRecord {
    let evidence: String = row.get("evidence");
    AlertRecord {
        id: row.get("id"),
        agent: row.get("agent"),
        kind: row.get("kind"),
        priority: row.get("priority"),
        message: row.get("message"),
        evidence: serde_json::from_str(&evidence).unwrap_or(serde_json::Value::Null),
        opened_ms: row.get::<i64, _>("opened_ms") as u64,
        resolved_ms: row.get::<Option<i64>, _>("resolved_ms").map(|v| v as u64),
        resolution: row.get("resolution"),
    }
}

impl Store {
    /// Open an alert, unless one of the same agent and kind is already open. Returns the
    /// alert and whether it is new.
    pub async fn open_alert(
        &self,
        agent: &str,
        kind: &str,
        priority: &str,
        message: &str,
        evidence: &serde_json::Value,
    ) -> Result<(AlertRecord, bool)> {
        // One statement, so SQLite's busy timeout applies; a read-then-write transaction
        // could fail at once with `database is locked` under concurrent writers.
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alerts (agent, kind, priority, message, evidence, opened_ms) \
             SELECT ?, ?, ?, ?, ?, ? WHERE NOT EXISTS \
             (SELECT 1 FROM alerts WHERE agent = ? AND kind = ? AND resolved_ms IS NULL) RETURNING id",
        )
        .bind(agent)
        .bind(kind)
        .bind(priority)
        .bind(message)
        .bind(evidence.to_string())
        .bind(now_ms() as i64)
        .bind(agent)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        let Some(id) = inserted else {
            let row = sqlx::query(&format!(
                "{ALERT_COLUMNS} WHERE agent = ? AND kind = ? AND resolved_ms IS NULL ORDER BY id DESC LIMIT 1"
            ))
            .bind(agent)
            .bind(kind)
            .fetch_one(&self.pool)
            .await?;
            return Ok((alert_record(&row), false));
        };
        let alert = self
            .alert(id)
            .await?
            .ok_or_else(|| crate::error::Error::Internal("alert vanished".to_string()))?;
        Ok((alert, true))
    }

    pub async fn alert(&self, id: i64) -> Result<Option<AlertRecord>> {
        let row = sqlx::query(&format!("{ALERT_COLUMNS} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(alert_record))
    }

    /// Alerts, newest first: open ones, resolved ones, or all.
    pub async fn alerts(
        &self,
        open: Option<bool>,
        agent: Option<&str>,
        limit: u32,
    ) -> Result<Vec<AlertRecord>> {
        let rows = sqlx::query(&format!(
            "{ALERT_COLUMNS} WHERE (? IS NULL OR (resolved_ms IS NULL) = ?) AND (? IS NULL OR agent = ?) ORDER BY id DESC LIMIT ?"
        ))
        .bind(open)
        .bind(open)
        .bind(agent)
        .bind(agent)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(alert_record).collect())
    }

    /// Resolve one alert; false when it was not open.
    pub async fn resolve_alert(&self, id: i64, resolution: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE alerts SET resolved_ms = ?, resolution = ? WHERE id = ? AND resolved_ms IS NULL")
            .bind(now_ms() as i64)
            .bind(resolution)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Resolve the open alerts of an agent of the given kinds; returns their ids.
    pub async fn resolve_alerts_of(
        &self,
        agent: &str,
        kinds: &[&str],
        resolution: &str,
    ) -> Result<Vec<i64>> {
        let mut ids = Vec::new();
        for alert in self.alerts(Some(true), Some(agent), 1000).await? {
            if kinds.contains(&alert.kind.as_str())
                && self.resolve_alert(alert.id, resolution).await?
            {
                ids.push(alert.id);
            }
        }
        Ok(ids)
    }

    /// Record the watch window's verdict on a version.
    pub async fn set_verdict(
        &self,
        agent: &str,
        number: u32,
        verdict: &str,
        detail: &str,
        calls: u64,
        failures: u64,
    ) -> Result<()> {
        sqlx::query("UPDATE versions SET verdict = ?, verdict_detail = ?, calls = ?, failures = ? WHERE agent = ? AND number = ?")
            .bind(verdict)
            .bind(detail)
            .bind(calls as i64)
            .bind(failures as i64)
            .bind(agent)
            .bind(number)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Mark an agent quarantined (taken out of routing) or not.
    pub async fn set_quarantined(&self, agent: &str, quarantined: bool) -> Result<()> {
        sqlx::query(
            "UPDATE agents SET quarantined_ms = CASE WHEN ? THEN ? ELSE NULL END WHERE name = ?",
        )
        .bind(quarantined)
        .bind(now_ms() as i64)
        .bind(agent)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Versions marked ready whose component is missing: must always be empty.
    pub async fn dangling_versions(&self) -> Result<Vec<(String, u32)>> {
        let rows = sqlx::query(
            "SELECT agent, number FROM versions v WHERE state = 'ready' \
             AND NOT EXISTS (SELECT 1 FROM components c WHERE c.digest = v.digest)",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("agent"), r.get::<i64, _>("number") as u32))
            .collect())
    }
}

/// An edit of an agent's source and what became of it.
#[derive(Debug, Clone, Serialize)]
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
    /// `applying`, `building`, `checking`, `live`, `rejected` or `rolled-back`.
    pub state: String,
    /// Where a rejected edit stopped: `build`, `manifest`, or a deploy stage.
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

/// A proposed edit, as first recorded.
#[derive(Debug, Clone)]
pub struct NewEdit<'a> {
    pub agent: &'a str,
    pub base_version: Option<u32>,
    pub proposer: &'a str,
    pub by_agent: bool,
    pub reason: &'a str,
    pub diff: &'a str,
    pub rebased_onto: Option<u32>,
}

/// The outcome of one step of an edit.
#[derive(Debug, Clone, Default)]
pub struct EditUpdate<'a> {
    pub state: &'a str,
    pub stage: Option<&'a str>,
    pub code: Option<&'a str>,
    pub message: Option<String>,
    pub build_log: Option<&'a str>,
    pub version: Option<u32>,
}

const EDIT_COLUMNS: &str = "SELECT id, agent, base_version, proposer, by_agent, reason, diff, state, stage, code, message, build_log, version, rebased_onto, created_ms, updated_ms FROM edits";

fn edit_record(row: &sqlx::sqlite::SqliteRow) -> EditRecord {
    EditRecord {
        id: row.get("id"),
        agent: row.get("agent"),
        base_version: row.get::<Option<i64>, _>("base_version").map(|v| v as u32),
        proposer: row.get("proposer"),
        by_agent: row.get::<i64, _>("by_agent") != 0,
        reason: row.get("reason"),
        diff: row.get("diff"),
        state: row.get("state"),
        stage: row.get("stage"),
        code: row.get("code"),
        message: row.get("message"),
        build_log: row.get("build_log"),
        version: row.get::<Option<i64>, _>("version").map(|v| v as u32),
        rebased_onto: row.get::<Option<i64>, _>("rebased_onto").map(|v| v as u32),
        created_ms: row.get::<i64, _>("created_ms") as u64,
        updated_ms: row.get::<i64, _>("updated_ms") as u64,
    }
}

impl Store {
    /// Record a proposed edit in state `applying`. Returns its id.
    pub async fn insert_edit(&self, edit: &NewEdit<'_>) -> Result<i64> {
        let now = now_ms() as i64;
        let id = sqlx::query(
            "INSERT INTO edits (agent, base_version, proposer, by_agent, reason, diff, state, rebased_onto, created_ms, updated_ms) \
             VALUES (?, ?, ?, ?, ?, ?, 'applying', ?, ?, ?)",
        )
        .bind(edit.agent)
        .bind(edit.base_version)
        .bind(edit.proposer)
        .bind(edit.by_agent)
        .bind(edit.reason)
        .bind(edit.diff)
        .bind(edit.rebased_onto)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?
        .last_insert_rowid();
        Ok(id)
    }

    /// Move an edit on: its state and whatever the step learned.
    pub async fn update_edit(&self, id: i64, update: &EditUpdate<'_>) -> Result<()> {
        sqlx::query(
            "UPDATE edits SET state = ?, stage = COALESCE(?, stage), code = COALESCE(?, code), \
             message = COALESCE(?, message), build_log = COALESCE(?, build_log), \
             version = COALESCE(?, version), updated_ms = ? WHERE id = ?",
        )
        .bind(update.state)
        .bind(update.stage)
        .bind(update.code)
        .bind(update.message.as_deref())
        .bind(update.build_log)
        .bind(update.version)
        .bind(now_ms() as i64)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn edit(&self, agent: &str, id: i64) -> Result<Option<EditRecord>> {
        let row = sqlx::query(&format!("{EDIT_COLUMNS} WHERE agent = ? AND id = ?"))
            .bind(agent)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(edit_record))
    }

    /// An agent's edits, newest first.
    pub async fn edits(&self, agent: &str, limit: u32) -> Result<Vec<EditRecord>> {
        let rows = sqlx::query(&format!(
            "{EDIT_COLUMNS} WHERE agent = ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(agent)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(edit_record).collect())
    }

    /// The live edit that produced `version` is now `rolled-back`. Returns its id, if any.
    pub async fn edit_rolled_back(&self, agent: &str, version: u32) -> Result<Option<i64>> {
        let row = sqlx::query(
            "UPDATE edits SET state = 'rolled-back', updated_ms = ? \
             WHERE agent = ? AND version = ? AND state = 'live' RETURNING id",
        )
        .bind(now_ms() as i64)
        .bind(agent)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get::<i64, _>(0)))
    }

    /// Edits a stopped daemon left unfinished are rejected as `interrupted`.
    pub async fn interrupt_edits(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE edits SET state = 'rejected', stage = COALESCE(stage, state), code = 'interrupted', \
             message = 'the daemon stopped before the edit finished', updated_ms = ? \
             WHERE state IN ('applying', 'building', 'checking')",
        )
        .bind(now_ms() as i64)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

/// One completion an agent asked for.
#[derive(Debug, Clone)]
pub struct LlmCall<'a> {
    pub agent: &'a str,
    pub model: &'a str,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// `ok`, `unavailable` or `failed`.
    pub outcome: &'a str,
    pub ms: u64,
}

/// What one agent has asked of the LLM so far.
#[derive(Debug, Clone, Serialize)]
pub struct LlmUsage {
    pub agent: String,
    pub calls: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub last_ms: u64,
}

impl Store {
    /// Record a completion and the tokens it cost.
    pub async fn insert_llm_call(&self, call: &LlmCall<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO llm_calls (agent, model, prompt_tokens, completion_tokens, outcome, ms, at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(call.agent)
        .bind(call.model)
        .bind(call.prompt_tokens)
        .bind(call.completion_tokens)
        .bind(call.outcome)
        .bind(call.ms as i64)
        .bind(now_ms() as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Token counts per agent, most tokens first.
    pub async fn llm_usage(&self) -> Result<Vec<LlmUsage>> {
        let rows = sqlx::query(
            "SELECT agent, COUNT(*) AS calls, SUM(outcome != 'ok') AS failed, \
             SUM(prompt_tokens) AS prompt, SUM(completion_tokens) AS completion, MAX(at_ms) AS last \
             FROM llm_calls GROUP BY agent ORDER BY SUM(prompt_tokens + completion_tokens) DESC, agent",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|row| LlmUsage {
                agent: row.get("agent"),
                calls: row.get::<i64, _>("calls") as u64,
                failed: row.get::<i64, _>("failed") as u64,
                prompt_tokens: row.get::<i64, _>("prompt") as u64,
                completion_tokens: row.get::<i64, _>("completion") as u64,
                last_ms: row.get::<i64, _>("last") as u64,
            })
            .collect())
    }
}
