//! The Overseer's five loops, each on its own interval (scaled by the clock factor), each run
//! kept with what it looked at and what it did:
//!
//! | loop | every | looks at | does |
//! | --- | --- | --- | --- |
//! | `health` | 60 s | each active agent's calls over the window, and its dependencies | opens a `performance_degradation` alert when its p95 latency reaches `slow_share` of its deadline and resolves it, with the figures, once back under `recovered_share` (or without calls); a `dependency_missing` alert while an agent its manifest depends on is not serving, resolved once all serve |
//! | `healing` | 5 min | the open alerts and the decisions | resolves a `rollback` alert once the agent has served calls without a failure; escalates an alert open past `escalate_after` (`alert.escalated`, once); expires decisions nobody approved in time; measures decisions whose date has come |
//! | `performance` | hourly | every agent's calls and LLM tokens over the hour | the review: per-agent figures, the slowest, the busiest, the hungriest for fuel |
//! | `optimisation` | hourly | the same figures | recommendations for slow, failing and fuel-hungry agents, published as `overseer.recommendation` |
//! | `governance` | daily | the day's report and the history of decisions | builds and keeps the daily report; the meeting takes decisions on it (see [`crate::governance`]) |

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use overseer_kernel::Kernel;
use overseer_kernel::alerts::{DEPENDENCY_MISSING, PERFORMANCE_DEGRADATION, ROLLBACK};
use overseer_kernel::bus::host_event;
use overseer_store::{AlertFilter, LoopRunRecord, NewLoopRun, now_ms};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::config::OverseerConfig;
use crate::governance::{self, Capital, Reach};
use crate::report;
use crate::telemetry::{self, Window};

/// The loops, in the order they are listed.
pub const LOOPS: [&str; 5] = [
    "health",
    "healing",
    "performance",
    "optimisation",
    "governance",
];

/// What went wrong in a run.
pub type Failure = String;

/// Why a run was not kept.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A run of the loop is under way (its interval's, or another request's).
    #[error("the {0} loop is running")]
    Running(&'static str),
    /// The run happened but could not be kept.
    #[error("the run was not kept: {0}")]
    NotKept(String),
}

/// Holds a loop's place while it runs.
struct Running<'a> {
    overseer: &'a Overseer,
    name: &'static str,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.overseer.state().running.remove(self.name);
    }
}

/// The Overseer of one daemon.
pub struct Overseer {
    kernel: Kernel,
    config: OverseerConfig,
    reach: Reach,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When each loop's next run is due, in milliseconds since the epoch.
    next_ms: HashMap<&'static str, u64>,
    /// The loops running now: one run of a loop at a time.
    running: HashSet<&'static str>,
    /// Alerts escalated already.
    escalated: HashSet<i64>,
}

impl Overseer {
    /// The Overseer of `kernel`; `reach` is what decisions may act on beyond the kernel.
    pub fn new(kernel: Kernel, config: OverseerConfig, reach: Reach) -> Arc<Overseer> {
        Arc::new(Overseer {
            kernel,
            config,
            reach,
            state: Mutex::new(State::default()),
        })
    }

    pub fn config(&self) -> &OverseerConfig {
        &self.config
    }

    pub(crate) fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    pub(crate) fn budgets(&self) -> Option<&Arc<overseer_kernel::capability::LlmBudgets>> {
        self.reach.budgets.as_ref()
    }

    pub(crate) fn capital(&self) -> Option<&Arc<dyn Capital>> {
        self.reach.capital.as_ref()
    }

    pub(crate) fn reach(&self) -> &Reach {
        &self.reach
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A loop's interval, scaled.
    pub fn interval(&self, name: &str) -> Option<Duration> {
        let c = &self.config;
        let secs = match name {
            "health" => c.health_secs,
            "healing" => c.healing_secs,
            "performance" => c.performance_secs,
            "optimisation" => c.optimisation_secs,
            "governance" => c.governance_secs,
            _ => return None,
        };
        Some(c.scaled(secs))
    }

    /// When a loop runs next, in milliseconds since the epoch (while its loop runs).
    pub fn next_run_ms(&self, name: &str) -> Option<u64> {
        self.state().next_ms.get(name).copied()
    }

    /// Run every loop on its interval until the Overseer is dropped. The first run of each
    /// comes one interval after the start.
    pub fn start(self: &Arc<Self>) -> Vec<JoinHandle<()>> {
        LOOPS
            .iter()
            .map(|name| {
                let weak = Arc::downgrade(self);
                tokio::spawn(run_loop(weak, name))
            })
            .collect()
    }

    /// Run loop `name` now and keep the run. `None` for an unknown loop; one run of a loop at
    /// a time (a decision is never taken twice by two meetings at once).
    pub async fn run(&self, name: &str) -> Option<Result<LoopRunRecord, RunError>> {
        let name = *LOOPS.iter().find(|l| **l == name)?;
        if !self.state().running.insert(name) {
            return Some(Err(RunError::Running(name)));
        }
        let _running = Running {
            overseer: self,
            name,
        };
        let started_ms = now_ms();
        let outcome = match name {
            "health" => self.health().await,
            "healing" => self.healing().await,
            "performance" => self.performance().await,
            "optimisation" => self.optimisation().await,
            _ => self.governance().await,
        };
        let (looked_at, did, error) = match outcome {
            Ok((looked_at, did)) => (looked_at, did, None),
            Err(e) => (Value::Null, Value::Null, Some(e)),
        };
        let ended_ms = now_ms();
        let run = NewLoopRun {
            name,
            started_ms,
            ended_ms,
            looked_at: &looked_at,
            did: &did,
            error: error.as_deref(),
        };
        let kept = self
            .kernel
            .store
            .insert_loop_run(&run)
            .await
            .map_err(|e| RunError::NotKept(e.to_string()));
        Some(kept.map(|id| LoopRunRecord {
            id,
            name: name.to_string(),
            started_ms,
            ended_ms,
            looked_at,
            did,
            error,
        }))
    }

    /// Every active agent's window of `window_ms` to now, with its deadline in milliseconds.
    pub fn windows(&self, window_ms: u64) -> Vec<(Window, Option<f64>)> {
        let since = now_ms().saturating_sub(window_ms);
        self.kernel
            .registry
            .slots()
            .into_iter()
            .filter_map(|slot| {
                let active = slot.active()?;
                let calls = self.kernel.metrics.recent().since(&slot.name, since);
                let deadline_ms = active.resolved.limits.timeout.as_secs_f64() * 1000.0;
                Some((
                    telemetry::window(&slot.name, &calls, window_ms),
                    Some(deadline_ms),
                ))
            })
            .collect()
    }

    /// Resolve `alert` with `resolution`, and list it among what a run `resolved`.
    async fn resolve(
        &self,
        alert: &overseer_store::AlertRecord,
        resolution: String,
        resolved: &mut Vec<Value>,
    ) -> Result<(), Failure> {
        self.kernel
            .alerts
            .resolve_one(alert.id, &resolution)
            .await
            .map_err(|e| e.to_string())?;
        resolved.push(json!({ "alert": alert.id, "agent": alert.agent, "resolution": resolution }));
        Ok(())
    }

    /// Every open alert.
    async fn open_alerts(&self) -> Result<Vec<overseer_store::AlertRecord>, Failure> {
        self.kernel
            .store
            .alerts(&AlertFilter {
                open: Some(true),
                agent: None,
                before: None,
                limit: 10_000,
            })
            .await
            .map_err(|e| e.to_string())
    }

    async fn health(&self) -> Result<(Value, Value), Failure> {
        let window_ms = self.config.scaled_ms(self.config.window_secs);
        let open = self.open_alerts().await?;
        let (mut looked, mut opened, mut resolved) = (Vec::new(), Vec::new(), Vec::new());
        for (w, deadline_ms) in self.windows(window_ms) {
            let deadline_ms = deadline_ms.unwrap_or(f64::INFINITY);
            let share = w.p95_ms.map(|p95| p95 / deadline_ms);
            looked.push(json!({ "agent": w.agent, "calls": w.calls, "error_rate": w.error_rate, "p95_ms": w.p95_ms, "deadline_ms": deadline_ms }));
            let judged = w.calls >= self.config.min_calls;
            let slow = open
                .iter()
                .find(|a| a.agent == w.agent && a.kind == PERFORMANCE_DEGRADATION);
            let evidence = json!({ "window_ms": window_ms, "calls": w.calls, "p50_ms": w.p50_ms, "p95_ms": w.p95_ms, "deadline_ms": deadline_ms, "share": share });
            match (slow, share) {
                (None, Some(share)) if judged && share >= self.config.slow_share => {
                    let message = format!(
                        "{}: p95 latency {:.0} ms over {} calls is {:.0}% of its {:.0} ms deadline",
                        w.agent,
                        w.p95_ms.unwrap_or(0.0),
                        w.calls,
                        share * 100.0,
                        deadline_ms
                    );
                    let alert = self
                        .kernel
                        .alerts
                        .raise(
                            &w.agent,
                            PERFORMANCE_DEGRADATION,
                            "medium",
                            &message,
                            evidence,
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    opened.push(json!({ "alert": alert.id, "agent": w.agent, "message": message }));
                }
                (Some(alert), share)
                    if w.calls == 0
                        || (judged && share.is_some_and(|s| s < self.config.recovered_share)) =>
                {
                    let resolution = match w.p95_ms {
                        Some(p95) => format!(
                            "p95 latency back to {p95:.0} ms over {} calls, under {:.0}% of its deadline: {evidence}",
                            w.calls,
                            self.config.recovered_share * 100.0
                        ),
                        None => format!("no calls in the last {window_ms} ms: nothing slow to see"),
                    };
                    self.resolve(alert, resolution, &mut resolved).await?;
                }
                _ => {}
            }
        }
        self.dependencies(&open, &mut opened, &mut resolved).await?;
        Ok((
            json!({ "agents": looked, "open_alerts": open.len(), "window_ms": window_ms }),
            json!({ "opened": opened, "resolved": resolved }),
        ))
    }

    /// Each serving agent's dependencies (`[agent] dependencies`): a `dependency_missing`
    /// alert while one is not serving, resolved once all serve again.
    async fn dependencies(
        &self,
        open: &[overseer_store::AlertRecord],
        opened: &mut Vec<Value>,
        resolved: &mut Vec<Value>,
    ) -> Result<(), Failure> {
        let serving = |name: &str| {
            self.kernel
                .registry
                .get(name)
                .is_some_and(|s| s.active().is_some() && !s.quarantined())
        };
        for slot in self.kernel.registry.slots() {
            let Some(active) = slot.active() else {
                continue;
            };
            let missing: Vec<&String> = active
                .manifest
                .agent
                .dependencies
                .iter()
                .filter(|d| !serving(d))
                .collect();
            let alert = open
                .iter()
                .find(|a| a.agent == slot.name && a.kind == DEPENDENCY_MISSING);
            match (alert, missing.is_empty()) {
                (None, false) => {
                    let message = format!(
                        "{} needs {}, not serving",
                        slot.name,
                        missing
                            .iter()
                            .map(|m| m.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    let alert = self
                        .kernel
                        .alerts
                        .raise(
                            &slot.name,
                            DEPENDENCY_MISSING,
                            "high",
                            &message,
                            json!({ "missing": missing }),
                        )
                        .await
                        .map_err(|e| e.to_string())?;
                    opened
                        .push(json!({ "alert": alert.id, "agent": slot.name, "message": message }));
                }
                (Some(alert), true) => {
                    let resolution = format!(
                        "its dependencies serve again: {}",
                        active.manifest.agent.dependencies.join(", ")
                    );
                    self.resolve(alert, resolution, resolved).await?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn healing(&self) -> Result<(Value, Value), Failure> {
        let now = now_ms();
        let open = self.open_alerts().await?;
        let window_ms = self.config.scaled_ms(self.config.window_secs);
        let escalate_ms = self.config.scaled_ms(self.config.escalate_after_secs);
        let (mut resolved, mut escalated) = (Vec::new(), Vec::new());
        for alert in &open {
            let slot = self.kernel.registry.get(&alert.agent);
            let serving = slot
                .as_ref()
                .filter(|s| !s.quarantined())
                .and_then(|s| s.active());
            if alert.kind == ROLLBACK
                && let Some(active) = &serving
            {
                let calls = self.kernel.metrics.recent().since(
                    &alert.agent,
                    alert.opened_ms.max(now.saturating_sub(window_ms)),
                );
                let w = telemetry::window(&alert.agent, &calls, window_ms);
                if w.calls > 0 && w.failures == 0 {
                    let resolution = format!(
                        "serving version {} again: {} calls without a failure since the rollback",
                        active.number, w.calls
                    );
                    self.resolve(alert, resolution, &mut resolved).await?;
                    continue;
                }
            }
            let due = alert.opened_ms.saturating_add(escalate_ms) <= now;
            if due && self.state().escalated.insert(alert.id) {
                let payload =
                    json!({ "alert": alert, "open_ms": now.saturating_sub(alert.opened_ms) });
                let event = host_event(
                    "alert.escalated".to_string(),
                    payload.to_string(),
                    "overseer",
                );
                self.kernel
                    .bus
                    .publish(event)
                    .await
                    .map_err(|e| e.to_string())?;
                escalated.push(json!({ "alert": alert.id, "agent": alert.agent, "type": alert.kind, "priority": alert.priority }));
            }
        }
        let expired = self.expire_overdue().await.map_err(|e| e.to_string())?;
        let evaluated = self.evaluate_due().await.map_err(|e| e.to_string())?;
        Ok((
            json!({ "open_alerts": open.len() }),
            json!({ "resolved": resolved, "escalated": escalated, "decisions_expired": expired, "decisions_evaluated": evaluated }),
        ))
    }

    async fn performance(&self) -> Result<(Value, Value), Failure> {
        let window_ms = self.config.scaled_ms(self.config.performance_secs);
        let windows: Vec<Window> = self
            .windows(window_ms)
            .into_iter()
            .map(|(w, _)| w)
            .collect();
        let tokens = self
            .kernel
            .store
            .llm_spend_since(now_ms().saturating_sub(window_ms))
            .await
            .map_err(|e| e.to_string())?;
        let top = |key: fn(&Window) -> f64| {
            windows
                .iter()
                .filter(|w| w.calls > 0)
                .max_by(|a, b| key(a).total_cmp(&key(b)))
                .map(|w| w.agent.clone())
        };
        Ok((
            json!({ "agents": windows.len(), "window_ms": window_ms }),
            json!({
                "windows": windows,
                "llm_tokens": tokens,
                "slowest": top(|w| w.p95_ms.unwrap_or(0.0)),
                "busiest": top(|w| w.calls as f64),
                "fuel_hungriest": top(|w| w.fuel as f64 / w.calls.max(1) as f64),
            }),
        ))
    }

    async fn optimisation(&self) -> Result<(Value, Value), Failure> {
        let window_ms = self.config.scaled_ms(self.config.optimisation_secs);
        let windows = self.windows(window_ms);
        let recommendations = report::recommendations(&windows, &self.config);
        for r in &recommendations {
            let event = host_event(
                "overseer.recommendation".to_string(),
                r.to_string(),
                "overseer",
            );
            self.kernel
                .bus
                .publish(event)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok((
            json!({ "agents": windows.len(), "window_ms": window_ms }),
            json!({ "recommendations": recommendations }),
        ))
    }

    async fn governance(&self) -> Result<(Value, Value), Failure> {
        let to_ms = now_ms();
        let window_ms = self.config.scaled_ms(self.config.governance_secs);
        let from_ms = to_ms.saturating_sub(window_ms);
        let windows = self.windows(window_ms);
        let mut body = report::build(&self.kernel, &self.config, &windows, from_ms, to_ms).await?;
        let date = body["date"].as_str().unwrap_or_default().to_string();
        // The meeting: it sees the history of earlier decisions, and decides on the report.
        body["decisions"] = json!({
            "history": governance::history(self).await.map_err(|e| e.to_string())?,
        });
        let (made, source) = self.meeting(&body).await.map_err(|e| e.to_string())?;
        body["decisions"]["made"] = json!(made);
        body["decisions"]["source"] = source;
        self.kernel
            .store
            .put_report(&date, to_ms, &body)
            .await
            .map_err(|e| e.to_string())?;
        Ok((
            json!({ "from_ms": from_ms, "to_ms": to_ms, "agents": windows.len() }),
            json!({ "report": date, "recommendations": body["recommendations"].as_array().map_or(0, Vec::len), "decisions": made }),
        ))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One loop: wait its interval, run, again, while the Overseer lives.
async fn run_loop(overseer: Weak<Overseer>, name: &'static str) {
    loop {
        let Some(every) = overseer.upgrade().and_then(|o| {
            let every = o.interval(name)?;
            o.state()
                .next_ms
                .insert(name, now_ms().saturating_add(millis(every)));
            Some(every)
        }) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(overseer) = overseer.upgrade() else {
            return;
        };
        match overseer.run(name).await {
            Some(Ok(run)) if run.error.is_some() => {
                tracing::warn!(name, error = ?run.error, "an Overseer loop stopped short");
            }
            Some(Err(e)) => tracing::warn!(name, error = %e, "an Overseer loop run was not made"),
            _ => {}
        }
    }
}
