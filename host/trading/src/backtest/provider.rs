//! `backtest` as agents reach it: a call starts a run like `POST /v1/backtests` does (the
//! same checks, queue and limits) and waits for it, up to most of the call's own deadline;
//! a run still going then answers `unavailable` with its id, to be read from the API. Shadow
//! runs (checks, canaries, health) start nothing.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use overseer_kernel::capability::{CallContext, Provider};
use overseer_sandbox::GuestError;
use serde_json::json;

use super::{Backtester, Spec};

/// The call's deadline when its manifest names none (the host's default).
const DEFAULT_TIMEOUT_MS: u64 = 5_000;

/// Serves `backtest` from the daemon's backtester.
pub struct BacktestProvider {
    backtester: Arc<Backtester>,
}

impl BacktestProvider {
    pub fn new(backtester: Arc<Backtester>) -> Self {
        BacktestProvider { backtester }
    }
}

impl Provider<dyn overseer_sandbox::Backtest> for BacktestProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Backtest> {
        let timeout_ms = call
            .manifest
            .limits
            .timeout_ms
            .unwrap_or(DEFAULT_TIMEOUT_MS);
        Arc::new(AgentBacktests {
            backtester: self.backtester.clone(),
            // Four fifths of the call's deadline: the answer still has time to be used.
            wait: Duration::from_millis(timeout_ms.saturating_mul(4) / 5),
        })
    }

    fn shadow(&self, _call: &CallContext) -> Arc<dyn overseer_sandbox::Backtest> {
        Arc::new(NoBacktests)
    }
}

struct AgentBacktests {
    backtester: Arc<Backtester>,
    wait: Duration,
}

#[async_trait]
impl overseer_sandbox::Backtest for AgentBacktests {
    async fn run(&self, spec: &str) -> Result<String, GuestError> {
        let spec: Spec = serde_json::from_str(spec)
            .map_err(|e| GuestError::InvalidInput(format!("backtest spec: {e}")))?;
        let id = self
            .backtester
            .start(spec)
            .await
            .map_err(|f| match f.code {
                "busy" => GuestError::Unavailable(f.to_string()),
                _ => GuestError::InvalidInput(format!("{}: {}", f.code, f.message)),
            })?;
        let until = tokio::time::Instant::now() + self.wait;
        let Some(status) = self.backtester.ended(&id, until).await else {
            return Err(GuestError::Unavailable(format!(
                "backtest {id} is still running: read it at GET /v1/backtests/{id}"
            )));
        };
        if status["state"] == "failed" {
            let error = &status["error"];
            return Err(GuestError::Failed(format!(
                "backtest {id} failed: {}: {}",
                error["code"].as_str().unwrap_or("error"),
                error["message"].as_str().unwrap_or_default()
            )));
        }
        let report = &status["report"];
        Ok(json!({
            "id": id,
            "state": status["state"],
            "agent": report["agent"],
            "version": report["version"],
            "bars": report["bars"],
            "metrics": report["metrics"],
            "benchmark": report["benchmark"],
            "walk_forward": report["walk_forward"],
            "input_hash": report["input_hash"],
            "trade_log_hash": report["trade_log_hash"],
        })
        .to_string())
    }
}

/// `backtest` in a shadow run, and inside a backtest: nothing is started.
pub struct NoBacktests;

#[async_trait]
impl overseer_sandbox::Backtest for NoBacktests {
    async fn run(&self, _spec: &str) -> Result<String, GuestError> {
        Err(GuestError::Unavailable(
            "no backtest is started from a check, a canary or another backtest".to_string(),
        ))
    }
}
