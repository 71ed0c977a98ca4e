//! Retention: every `every_secs` of [`Retention`], what has been kept long enough goes —
//! events, log lines, LLM calls, resolved alerts, finished edits' build logs and rejected
//! versions, by age and by size or count (see [`overseer_store::PrunePolicy`]). Each pass also
//! reads agents' kv usage from the store again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use overseer_store::{PrunePolicy, Pruned, Store, now_ms};

use crate::config::Retention;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::quota::Quotas;

const DAY_MS: u64 = 86_400_000;

/// Prunes the store on a timer.
pub struct Retainer {
    config: Retention,
    store: Store,
    metrics: Arc<Metrics>,
    quotas: Arc<Quotas>,
}

impl Retainer {
    /// Start pruning every `config.every_secs` on the current runtime, until the retainer is
    /// dropped.
    pub(crate) fn start(
        config: Retention,
        store: Store,
        metrics: Arc<Metrics>,
        quotas: Arc<Quotas>,
    ) -> Arc<Retainer> {
        let every = Duration::from_secs(config.every_secs.max(1));
        let retainer = Arc::new(Retainer {
            config,
            store,
            metrics,
            quotas,
        });
        let weak = Arc::downgrade(&retainer);
        tokio::spawn(run(weak, every));
        retainer
    }

    /// What the configuration keeps, as of now.
    pub fn policy(&self) -> PrunePolicy {
        let c = &self.config;
        let before = |days: u32| now_ms().saturating_sub(u64::from(days) * DAY_MS);
        PrunePolicy {
            events_before_ms: before(c.events_days),
            events_bytes: c.events_mb.saturating_mul(1 << 20),
            logs_before_ms: before(c.logs_days),
            logs_bytes_per_agent: c.logs_mb_per_agent.saturating_mul(1 << 20),
            llm_calls_before_ms: before(c.llm_calls_days),
            llm_calls: c.llm_calls,
            alerts_before_ms: before(c.alerts_days),
            alerts: c.alerts,
            build_logs_before_ms: before(c.build_logs_days),
            build_logs: c.build_logs,
            rejected_before_ms: before(c.rejected_days),
            rejected_per_agent: c.rejected_per_agent,
            refusals_before_ms: before(c.refusals_days),
            refusals: c.refusals,
            memories_per_collection: c.memories_per_collection,
        }
    }

    /// Prune now.
    pub async fn prune(&self) -> Result<Pruned> {
        let pruned = self.store.prune(&self.policy()).await?;
        self.quotas.refresh();
        for (table, rows) in [
            ("events", pruned.events),
            ("logs", pruned.logs),
            ("llm_calls", pruned.llm_calls),
            ("alerts", pruned.alerts),
            ("refusals", pruned.refusals),
            ("memories", pruned.memories),
            ("build_logs", pruned.build_logs),
            ("versions", pruned.rejected),
            ("components", pruned.components),
        ] {
            self.metrics.pruned(table, rows);
        }
        if pruned.total() > 0 {
            tracing::info!(?pruned, "retention pruned the store");
        }
        Ok(pruned)
    }
}

async fn run(retainer: Weak<Retainer>, every: Duration) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let Some(retainer) = retainer.upgrade() else {
            return;
        };
        if let Err(e) = retainer.prune().await {
            tracing::warn!(error = %e, "retention could not prune the store");
        }
    }
}
