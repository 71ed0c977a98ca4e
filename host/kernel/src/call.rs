//! One invocation's `runtime` and `kv`. Reads see the agent's kv with the call's own writes
//! on top; writes and emitted events are kept with the call. A real call that ends with a
//! value (or an error the agent chose to return) hands them to the invoker, which commits them
//! in one transaction; a call that traps, runs out of fuel or time, or is a shadow run (deploy
//! check, canary, health) changes nothing. Log lines are written as they come, whatever the
//! call's end: they are how a failure is understood.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use overseer_sandbox::{GuestError, Level};
use overseer_store::{KvWrite, LogLine, NewEvent, Store, now_ms};

use crate::capability::{CallContext, Mode};
use crate::logs::Logs;
use crate::metrics::Metrics;

/// Topic prefixes only the host publishes on: agents act on them (alerts, edits, the market,
/// trades, risk, audit), so an agent may not forge them.
pub const HOST_TOPICS: &[&str] = &["alert.", "edit.", "market.", "trade.", "risk.", "audit."];

/// The runtime and kv of one invocation.
pub(crate) struct Call {
    context: CallContext,
    mode: Mode,
    store: Store,
    logs: Logs,
    metrics: Arc<Metrics>,
    /// Keys written (`Some`) or removed (`None`) by this call, in key order.
    writes: Mutex<BTreeMap<String, Option<String>>>,
    events: Mutex<Vec<NewEvent>>,
}

/// What a finished call leaves to commit.
pub(crate) struct Effects {
    pub writes: Vec<KvWrite>,
    pub events: Vec<NewEvent>,
}

impl Call {
    pub(crate) fn new(
        context: CallContext,
        mode: Mode,
        store: Store,
        logs: Logs,
        metrics: Arc<Metrics>,
    ) -> Self {
        Call {
            context,
            mode,
            store,
            logs,
            metrics,
            writes: Mutex::new(BTreeMap::new()),
            events: Mutex::new(Vec::new()),
        }
    }

    fn agent(&self) -> &str {
        &self.context.agent
    }

    fn writes(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<String>>> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn events(&self) -> std::sync::MutexGuard<'_, Vec<NewEvent>> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())
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
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> GuestError {
    GuestError::Unavailable(format!("store: {e}"))
}

/// Check a topic an agent publishes on.
fn check_topic(topic: &str) -> Result<(), GuestError> {
    if let Some(prefix) = HOST_TOPICS.iter().find(|p| topic.starts_with(**p)) {
        return Err(GuestError::Denied(format!(
            "topics {prefix}* are the host's: an agent cannot publish {topic}"
        )));
    }
    if topic.chars().any(char::is_control) {
        return Err(GuestError::InvalidInput(
            "a topic may not contain control characters".to_string(),
        ));
    }
    Ok(())
}

#[async_trait]
impl overseer_sandbox::Runtime for Call {
    fn log(&self, level: Level, message: &str) {
        let message = match self.mode {
            Mode::Real => message.to_string(),
            Mode::Shadow => format!("[shadow] {message}"),
        };
        self.logs.write(LogLine {
            agent: self.agent().to_string(),
            version: self.context.version,
            level: level.as_str(),
            message,
            at_ms: now_ms(),
        });
    }

    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError> {
        check_topic(topic)?;
        if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err() {
            return Err(GuestError::InvalidInput(
                "payload must be a JSON document".to_string(),
            ));
        }
        if self.mode == Mode::Real {
            self.events().push(NewEvent {
                id: uuid::Uuid::new_v4().to_string(),
                topic: topic.to_string(),
                payload: payload.to_string(),
                source: self.agent().to_string(),
                at_ms: now_ms(),
            });
        }
        Ok(())
    }

    fn metric(&self, name: &str, value: f64) {
        if self.mode == Mode::Real {
            self.metrics.agent_metric(self.agent(), name, value);
        }
    }

    fn config(&self, key: &str) -> Option<String> {
        self.context.manifest.config.get(key).cloned()
    }
}

#[async_trait]
impl overseer_sandbox::Kv for Call {
    async fn get(&self, key: &str) -> Result<Option<String>, GuestError> {
        if let Some(value) = self.writes().get(key) {
            return Ok(value.clone());
        }
        self.store
            .kv_get(self.agent(), key)
            .await
            .map_err(unavailable)
    }

    async fn set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        self.writes()
            .insert(key.to_string(), Some(value.to_string()));
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), GuestError> {
        self.writes().insert(key.to_string(), None);
        Ok(())
    }

    async fn keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        let stored = self
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
        assert!(check_topic("counter.incremented").is_ok());
        for topic in ["alert.quarantine", "edit.live", "trade.executed"] {
            assert!(matches!(check_topic(topic), Err(GuestError::Denied(_))));
        }
        assert!(matches!(
            check_topic("a\0b"),
            Err(GuestError::InvalidInput(_))
        ));
    }
}
