//! One invocation's `runtime` and `kv`. Reads see the agent's kv with the call's own writes
//! on top; writes and emitted events are kept with the call. A real call that ends with a
//! value (or an error the agent chose to return) hands them to the invoker, which commits them
//! in one transaction; a call that traps, runs out of fuel or time, or is a shadow run (deploy
//! check, canary, health) changes nothing. Log lines are written as they come, whatever the
//! call's end: they are how a failure is understood.
//!
//! Every write is budgeted ([`crate::config::Budgets`]): a log line is cut past its length,
//! and dropped past the call's bytes or the agent's bytes per minute, with one line from the
//! host saying so; an emit past the call's count or bytes, or the agent's events per minute,
//! and a kv write past the agent's quota answer `denied` and the call goes on.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use overseer_sandbox::{GuestError, Level};
use overseer_store::{KvWrite, LogLine, NewEvent, Store, now_ms};

use crate::capability::{CallContext, Mode};
use crate::logs::Logs;
use crate::metrics::Metrics;
use crate::quota::{KvDelta, Quotas};

/// The sources only the host publishes as: its own (`overseer`, `schedule`, …) and those agents
/// act on (alerts, edits, the market, trades, risk, audit). An agent may not publish a topic
/// `<source>.…` of one of them: the names agents may not take ([`crate::RESERVED_NAMES`]).
pub const HOST_TOPICS: &[&str] = crate::name::RESERVED_NAMES;

/// Everything a call reaches besides its context: shared by every call.
#[derive(Clone)]
pub(crate) struct CallHost {
    pub store: Store,
    pub logs: Logs,
    pub metrics: Arc<Metrics>,
    pub quotas: Arc<Quotas>,
}

/// The runtime and kv of one invocation.
pub(crate) struct Call {
    context: CallContext,
    mode: Mode,
    host: CallHost,
    /// Keys written (`Some`) or removed (`None`) by this call, in key order.
    writes: Mutex<BTreeMap<String, Option<String>>>,
    /// Sizes (key and value) of keys this call read from the store; `None`: absent.
    stored: Mutex<HashMap<String, Option<usize>>>,
    events: Mutex<Vec<NewEvent>>,
    spent: Mutex<Spent>,
}

/// What the call has spent of its budgets.
#[derive(Default)]
struct Spent {
    log_bytes: usize,
    /// Whether the line saying the call's log budget ran out was written.
    call_cut: bool,
    /// Whether the line saying the agent's per-minute log budget ran out was written.
    rate_cut: bool,
    events: u32,
    event_bytes: usize,
    kv: KvDelta,
}

/// What a finished call leaves to commit.
pub(crate) struct Effects {
    pub writes: Vec<KvWrite>,
    pub events: Vec<NewEvent>,
    /// What the writes change in the agent's kv usage.
    pub kv: KvDelta,
}

impl Call {
    pub(crate) fn new(context: CallContext, mode: Mode, host: CallHost) -> Self {
        Call {
            context,
            mode,
            host,
            writes: Mutex::new(BTreeMap::new()),
            stored: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
            spent: Mutex::new(Spent::default()),
        }
    }

    fn agent(&self) -> &str {
        &self.context.agent
    }

    /// Who the call is for.
    pub(crate) fn context(&self) -> &CallContext {
        &self.context
    }

    fn writes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<String>>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn events(&self) -> std::sync::MutexGuard<'_, Vec<NewEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spent(&self) -> std::sync::MutexGuard<'_, Spent> {
        self.spent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writes and events of the call, taken once.
    pub(crate) fn effects(&self) -> Effects {
        let writes = std::mem::take(&mut *self.writes())
            .into_iter()
            .map(|(key, value)| KvWrite { key, value })
            .collect();
        Effects {
            writes,
            events: std::mem::take(&mut *self.events()),
            kv: std::mem::take(&mut self.spent().kv),
        }
    }

    /// Count a log line dropped for `reason`; on the call's `first` drop for it, write the
    /// host's `marker` line, which is never dropped.
    fn drop_line(&self, reason: &str, first: bool, marker: impl FnOnce() -> String) {
        self.host.metrics.log_dropped(self.agent(), reason);
        if first {
            self.host.logs.write_host(self.line("warn", marker()));
        }
    }

    fn line(&self, level: &'static str, message: String) -> LogLine {
        LogLine {
            agent: self.agent().to_string(),
            version: self.context.version,
            level,
            message,
            at_ms: now_ms(),
        }
    }

    /// The size of `key` and its value as the call sees it, `None` when absent.
    async fn size_of(&self, key: &str) -> Result<Option<usize>, GuestError> {
        if let Some(value) = self.writes().get(key) {
            return Ok(value.as_ref().map(|v| key.len() + v.len()));
        }
        if let Some(size) = self
            .stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
        {
            return Ok(*size);
        }
        let value = self
            .host
            .store
            .kv_get(self.agent(), key)
            .await
            .map_err(unavailable)?;
        let size = value.map(|v| key.len() + v.len());
        self.remember_size(key, size);
        Ok(size)
    }

    fn remember_size(&self, key: &str, size: Option<usize>) {
        self.stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.to_string(), size);
    }
}

fn unavailable(e: impl std::fmt::Display) -> GuestError {
    GuestError::Unavailable(format!("store: {e}"))
}

/// Check a topic an agent publishes on: `publish` lists the topics under the host's sources
/// its manifest lets it speak on (`market.snapshot`, `trade.signal`); never a pattern or a
/// name with control characters.
///
/// # Errors
/// `denied` for a host topic not listed; `invalid-input` for a malformed topic.
pub fn check_topic(topic: &str, publish: &[String]) -> Result<(), GuestError> {
    let source = topic.split('.').next().unwrap_or(topic);
    if let Some(prefix) = HOST_TOPICS.iter().find(|p| **p == source)
        && !publish.iter().any(|t| t == topic)
    {
        return Err(GuestError::Denied(format!(
            "topics {prefix}.* are the host's: an agent cannot publish {topic}"
        )));
    }
    if topic.is_empty() || topic.contains('*') {
        return Err(GuestError::InvalidInput(format!(
            "{topic:?} is not a topic to publish on: `*` only subscribes"
        )));
    }
    if topic.chars().any(char::is_control) {
        return Err(GuestError::InvalidInput(
            "a topic may not contain control characters".to_string(),
        ));
    }
    Ok(())
}

/// `message` cut to at most `max` bytes (on a character boundary), with a marker saying how
/// much was cut.
pub(crate) fn cut_line(message: &str, max: usize) -> Cow<'_, str> {
    if message.len() <= max {
        return Cow::Borrowed(message);
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!(
        "{}… [cut: {} more bytes]",
        &message[..end],
        message.len() - end
    ))
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl overseer_sandbox::Runtime for Call {
    fn log(&self, level: Level, message: &str) {
        let budgets = self.host.quotas.budgets();
        let message = cut_line(message, budgets.log_line_bytes);
        let message = match self.mode {
            Mode::Real => message.into_owned(),
            Mode::Shadow => format!("[shadow] {message}"),
        };
        let agent = self.agent();
        let mut spent = self.spent();
        if spent.log_bytes + message.len() > budgets.log_bytes_per_call {
            let first = !std::mem::replace(&mut spent.call_cut, true);
            drop(spent);
            self.drop_line("call", first, || {
                format!(
                    "[log budget: a call may write {} bytes of log; this call's further lines are dropped]",
                    budgets.log_bytes_per_call
                )
            });
            return;
        }
        if !self.host.quotas.log_line(agent, message.len()) {
            let first = !std::mem::replace(&mut spent.rate_cut, true);
            drop(spent);
            self.drop_line("rate", first, || {
                format!(
                    "[log budget: {agent} wrote more than {} bytes of log in a minute; its lines are dropped until it is under]",
                    budgets.log_bytes_per_minute
                )
            });
            return;
        }
        spent.log_bytes += message.len();
        drop(spent);
        self.host.logs.write(self.line(level.as_str(), message));
    }

    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError> {
        check_topic(topic, &self.context.manifest.capabilities.publish)?;
        if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err() {
            return Err(GuestError::InvalidInput(
                "payload must be a JSON document".to_string(),
            ));
        }
        let budgets = self.host.quotas.budgets();
        {
            let spent = self.spent();
            if spent.events >= budgets.events_per_call {
                return Err(GuestError::Denied(format!(
                    "event budget: a call may emit {} events",
                    budgets.events_per_call
                )));
            }
            if spent.event_bytes + payload.len() > budgets.event_bytes_per_call {
                return Err(GuestError::Denied(format!(
                    "event budget: a call may emit {} bytes of payload",
                    budgets.event_bytes_per_call
                )));
            }
        }
        if self.mode == Mode::Real {
            self.host.quotas.event(self.agent(), payload.len())?;
        }
        let mut spent = self.spent();
        spent.events += 1;
        spent.event_bytes += payload.len();
        drop(spent);
        if self.mode == Mode::Real {
            self.events().push(NewEvent {
                id: uuid::Uuid::new_v4().to_string(),
                topic: topic.to_string(),
                payload: payload.to_string(),
                source: self.agent().to_string(),
                at_ms: now_ms(),
                as_of_ms: self.context.as_of_ms,
            });
        }
        Ok(())
    }

    fn metric(&self, name: &str, value: f64) {
        if self.mode == Mode::Real {
            let max = self.host.quotas.budgets().metric_names;
            self.host
                .metrics
                .agent_metric(self.agent(), name, value, max);
        }
    }

    fn config(&self, key: &str) -> Option<String> {
        let manifest = &self.context.manifest;
        manifest
            .config
            .get(key)
            .or_else(|| manifest.secrets.get(key))
            .cloned()
    }
}

#[async_trait]
impl overseer_sandbox::Kv for Call {
    async fn get(&self, key: &str) -> Result<Option<String>, GuestError> {
        if let Some(value) = self.writes().get(key) {
            return Ok(value.clone());
        }
        let value = self
            .host
            .store
            .kv_get(self.agent(), key)
            .await
            .map_err(unavailable)?;
        self.remember_size(key, value.as_ref().map(|v| key.len() + v.len()));
        Ok(value)
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        let before = self.size_of(key).await?;
        let delta = KvDelta {
            keys: i64::from(before.is_none()),
            bytes: as_i64(key.len() + value.len()) - as_i64(before.unwrap_or(0)),
        };
        let pending = self.spent().kv;
        self.host
            .quotas
            .kv_allows(self.agent(), pending, delta)
            .await?;
        self.writes()
            .insert(key.to_string(), Some(value.to_string()));
        self.spent().kv.add(delta);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), GuestError> {
        let before = self.size_of(key).await?;
        self.writes().insert(key.to_string(), None);
        if let Some(size) = before {
            self.spent().kv.add(KvDelta {
                keys: -1,
                bytes: -as_i64(size),
            });
        }
        Ok(())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        let stored = self
            .host
            .store
            .kv_keys(self.agent(), prefix)
            .await
            .map_err(unavailable)?;
        let mut keys: BTreeSet<String> = stored.into_iter().collect();
        for (key, value) in self.writes().iter() {
            if key.starts_with(prefix) {
                match value {
                    Some(_) => keys.insert(key.clone()),
                    None => keys.remove(key),
                };
            }
        }
        Ok(keys.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_topics_and_control_characters_are_refused() {
        assert!(check_topic("counter.incremented", &[]).is_ok());
        for topic in [
            "alert.quarantine",
            "edit.live",
            "trade.executed",
            "trade.signal",
        ] {
            assert!(matches!(
                check_topic(topic, &[]),
                Err(GuestError::Denied(_))
            ));
        }
        let publish = ["trade.signal".to_string()];
        assert!(check_topic("trade.signal", &publish).is_ok());
        assert!(check_topic("trade.executed", &publish).is_err());
        assert!(matches!(
            check_topic("a\0b", &[]),
            Err(GuestError::InvalidInput(_))
        ));
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_with_a_marker() {
        assert_eq!(cut_line("short", 10), "short");
        let cut = cut_line("ééééé", 5);
        assert_eq!(cut, "éé… [cut: 6 more bytes]");
    }
}
