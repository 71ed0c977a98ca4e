//! `prompts` served from the agent's own manifest: for runs that must not read or change the
//! registry (backtests, which replay a version exactly as it was pushed). Nothing is recorded;
//! writing versions and experiments answers `denied`.

use std::sync::Arc;

use async_trait::async_trait;
use overseer_sandbox::{GuestError, ServedPrompt};

use crate::manifest::Manifest;

/// The prompts `manifest` declares, rendered for `agent`.
pub struct ManifestPrompts {
    pub agent: String,
    pub manifest: Arc<Manifest>,
}

/// The key of prompt `name` in `agent`'s manifest: `name` itself, or `name` without the
/// agent's prefix (`agent.key`). `None` for another agent's prompt.
pub fn own_key<'a>(agent: &str, name: &'a str) -> Option<&'a str> {
    match name.split_once('.') {
        None => Some(name),
        Some((owner, key)) if owner == agent => Some(key),
        Some(_) => None,
    }
}

/// Variables as the JSON object a template is rendered with.
pub fn parse_variables(variables: &str) -> Result<serde_json::Value, GuestError> {
    let text = if variables.trim().is_empty() {
        "{}"
    } else {
        variables
    };
    serde_json::from_str(text)
        .map_err(|e| GuestError::InvalidInput(format!("variables are not JSON: {e}")))
}

#[async_trait]
impl overseer_sandbox::Prompts for ManifestPrompts {
    async fn get(
        &self,
        name: &str,
        _unit: &str,
        variables: &str,
    ) -> Result<ServedPrompt, GuestError> {
        let spec = own_key(&self.agent, name)
            .and_then(|key| self.manifest.prompts.get(key))
            .ok_or_else(|| {
                GuestError::InvalidInput(format!(
                    "prompt {name:?}: not declared under [prompts] in {}'s manifest",
                    self.agent
                ))
            })?;
        let (system, text) = spec
            .render(&parse_variables(variables)?)
            .map_err(|e| GuestError::InvalidInput(format!("prompt {name:?}: {e}")))?;
        let key = own_key(&self.agent, name).unwrap_or(name);
        Ok(ServedPrompt {
            use_id: 0,
            name: format!("{}.{key}", self.agent),
            version: 0,
            variant: None,
            system,
            text,
        })
    }

    async fn report(
        &self,
        _use_id: i64,
        _score: Option<f64>,
        _success: Option<bool>,
    ) -> Result<(), GuestError> {
        Ok(())
    }

    async fn catalog(&self) -> Result<String, GuestError> {
        Err(denied())
    }

    async fn write(
        &self,
        _name: &str,
        _system: &str,
        _template: &str,
        _note: &str,
    ) -> Result<u32, GuestError> {
        Err(denied())
    }

    async fn start_experiment(&self, _spec: &str) -> Result<i64, GuestError> {
        Err(denied())
    }
}

fn denied() -> GuestError {
    GuestError::Denied("the prompt registry is not reachable in this run".to_string())
}
