//! The host's implementation of the services an agent imports: kv in the store, emit on the
//! bus, logs through the log writer, metrics, and configuration from the manifest.

use std::sync::Arc;

use async_trait::async_trait;
use overseer_sandbox::{Event, GuestError, HostServices, Level};

use crate::registry::Version;
use crate::state::Host;
use crate::store::{LogLine, now_ms};

/// The services of one invocation of one version of an agent.
pub struct AgentServices {
    host: Arc<Host>,
    version: Arc<Version>,
}

impl AgentServices {
    pub fn new(host: Arc<Host>, version: Arc<Version>) -> Self {
        AgentServices { host, version }
    }

    fn agent(&self) -> &str {
        &self.version.agent
    }
}

fn unavailable(e: impl std::fmt::Display) -> GuestError {
    GuestError::Unavailable(format!("store: {e}"))
}

#[async_trait]
impl HostServices for AgentServices {
    fn log(&self, level: Level, message: &str) {
        self.host.log(LogLine {
            agent: self.agent().to_string(),
            version: Some(self.version.number),
            level: level.as_str(),
            message: message.to_string(),
            at_ms: now_ms(),
        });
    }

    async fn emit(&self, topic: &str, payload: &str) -> Result<(), GuestError> {
        if serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err() {
            return Err(GuestError::InvalidInput(
                "payload must be a JSON document".to_string(),
            ));
        }
        let event = Event {
            id: uuid::Uuid::new_v4().to_string(),
            topic: topic.to_string(),
            payload: payload.to_string(),
            source: self.agent().to_string(),
            at_ms: now_ms(),
        };
        self.host.publish(event).await.map_err(unavailable)
    }

    fn metric(&self, name: &str, value: f64) {
        self.host.metrics.agent_metric(self.agent(), name, value);
    }

    fn config(&self, key: &str) -> Option<String> {
        self.version.manifest.config.get(key).cloned()
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, GuestError> {
        self.host
            .store
            .kv_get(self.agent(), key)
            .await
            .map_err(unavailable)
    }

    async fn kv_set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        self.host
            .store
            .kv_set(self.agent(), key, value)
            .await
            .map_err(unavailable)
    }

    async fn kv_delete(&self, key: &str) -> Result<(), GuestError> {
        self.host
            .store
            .kv_delete(self.agent(), key)
            .await
            .map_err(unavailable)
    }

    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        self.host
            .store
            .kv_keys(self.agent(), prefix)
            .await
            .map_err(unavailable)
    }
}

/// Services for a shadow run (deploy checks, canary replays, health checks): reads see the
/// agent's real kv with the run's own writes on top; writes stay in a scratch overlay; emits
/// are discarded; log lines go to the agent's log marked as shadow.
pub struct ShadowServices {
    host: Arc<Host>,
    agent: String,
    version: Option<u32>,
    config: std::collections::BTreeMap<String, String>,
    overlay: std::sync::Mutex<std::collections::BTreeMap<String, Option<String>>>,
    emitted: std::sync::atomic::AtomicU64,
}

impl ShadowServices {
    pub fn new(
        host: Arc<Host>,
        agent: &str,
        version: Option<u32>,
        config: std::collections::BTreeMap<String, String>,
    ) -> Self {
        ShadowServices {
            host,
            agent: agent.to_string(),
            version,
            config,
            overlay: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            emitted: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn overlay(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<String, Option<String>>> {
        self.overlay.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Events the shadow run tried to emit (and that were discarded).
    pub fn emitted(&self) -> u64 {
        self.emitted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[async_trait]
impl HostServices for ShadowServices {
    fn log(&self, level: Level, message: &str) {
        self.host.log(LogLine {
            agent: self.agent.clone(),
            version: self.version,
            level: level.as_str(),
            message: format!("[shadow] {message}"),
            at_ms: now_ms(),
        });
    }

    async fn emit(&self, _topic: &str, _payload: &str) -> Result<(), GuestError> {
        self.emitted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    fn metric(&self, _name: &str, _value: f64) {}

    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, GuestError> {
        if let Some(value) = self.overlay().get(key) {
            return Ok(value.clone());
        }
        self.host
            .store
            .kv_get(&self.agent, key)
            .await
            .map_err(unavailable)
    }

    async fn kv_set(&self, key: &str, value: &str) -> Result<(), GuestError> {
        self.overlay()
            .insert(key.to_string(), Some(value.to_string()));
        Ok(())
    }

    async fn kv_delete(&self, key: &str) -> Result<(), GuestError> {
        self.overlay().insert(key.to_string(), None);
        Ok(())
    }

    async fn kv_keys(&self, prefix: &str) -> Result<Vec<String>, GuestError> {
        let stored = self
            .host
            .store
            .kv_keys(&self.agent, prefix)
            .await
            .map_err(unavailable)?;
        let mut keys: std::collections::BTreeSet<String> = stored.into_iter().collect();
        for (key, value) in self.overlay().iter() {
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
