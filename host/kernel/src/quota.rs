//! What each agent may write through the host over time, shared by every call of every agent:
//! log bytes and events per minute as token buckets (GCRA, from the `governor` crate), and
//! what the agent holds in kv against its quota. The per-call budgets live with the call.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use overseer_sandbox::GuestError;
use overseer_store::{KvUsage, Store};

use crate::config::Budgets;

/// The least a log line counts against the per-minute budget: a flood of empty lines costs
/// rows, not bytes.
pub const MIN_LINE_COST: u32 = 64;

/// The shared budgets of all agents.
pub struct Quotas {
    budgets: Budgets,
    log_bytes: DefaultKeyedRateLimiter<String>,
    events: DefaultKeyedRateLimiter<String>,
    event_bytes: DefaultKeyedRateLimiter<String>,
    /// What each agent held in kv when last read from the store, plus what calls committed
    /// since; read again from the store at every retention pass.
    kv: Mutex<HashMap<String, KvUsage>>,
    store: Store,
}

/// A change in what an agent holds in kv: keys and bytes added (negative: removed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KvDelta {
    pub keys: i64,
    pub bytes: i64,
}

impl KvDelta {
    pub fn add(&mut self, other: KvDelta) {
        self.keys += other.keys;
        self.bytes += other.bytes;
    }
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN))
}

fn apply(usage: KvUsage, delta: KvDelta) -> (i128, i128) {
    (
        i128::from(usage.keys) + i128::from(delta.keys),
        i128::from(usage.bytes) + i128::from(delta.bytes),
    )
}

impl Quotas {
    pub fn new(budgets: Budgets, store: Store) -> Self {
        Quotas {
            log_bytes: RateLimiter::keyed(per_minute(budgets.log_bytes_per_minute)),
            events: RateLimiter::keyed(per_minute(budgets.events_per_minute)),
            event_bytes: RateLimiter::keyed(per_minute(budgets.event_bytes_per_minute)),
            budgets,
            kv: Mutex::new(HashMap::new()),
            store,
        }
    }

    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Whether `agent` may write a log line of `bytes` now; the line's cost is taken when it
    /// may.
    pub fn log_line(&self, agent: &str, bytes: usize) -> bool {
        let cost = u32::try_from(bytes).unwrap_or(u32::MAX).max(MIN_LINE_COST);
        let Some(cost) = NonZeroU32::new(cost) else {
            return true;
        };
        // A line larger than the whole bucket never fits: cut lines are far smaller.
        matches!(
            self.log_bytes.check_key_n(&agent.to_string(), cost),
            Ok(Ok(()))
        )
    }

    /// Whether `agent` may emit one more event, of `bytes` of payload, now.
    pub fn event(&self, agent: &str, bytes: usize) -> Result<(), GuestError> {
        let key = agent.to_string();
        let cost = u32::try_from(bytes).unwrap_or(u32::MAX).max(MIN_LINE_COST);
        if let Some(cost) = NonZeroU32::new(cost)
            && !matches!(self.event_bytes.check_key_n(&key, cost), Ok(Ok(())))
        {
            return Err(GuestError::Denied(format!(
                "event budget: an agent may emit {} bytes of payload per minute; try again later",
                self.budgets.event_bytes_per_minute
            )));
        }
        self.events.check_key(&key).map_err(|_| {
            GuestError::Denied(format!(
                "event budget: an agent may emit {} events per minute; try again later",
                self.budgets.events_per_minute
            ))
        })
    }

    /// Whether `agent` may hold what it holds plus `pending` (the call's writes so far) plus
    /// `delta` (this write). Growth past the quota is refused; shrinking never is.
    pub async fn kv_allows(
        &self,
        agent: &str,
        pending: KvDelta,
        delta: KvDelta,
    ) -> Result<(), GuestError> {
        let usage = self.kv_usage(agent).await?;
        let mut after = pending;
        after.add(delta);
        let (keys, bytes) = apply(usage, after);
        if delta.keys > 0 && keys > i128::from(self.budgets.kv_keys) {
            return Err(GuestError::Denied(format!(
                "kv quota: an agent may hold {} keys; delete some first",
                self.budgets.kv_keys
            )));
        }
        if delta.bytes > 0 && bytes > i128::from(self.budgets.kv_bytes) {
            return Err(GuestError::Denied(format!(
                "kv quota: an agent may hold {} bytes of keys and values; delete some first",
                self.budgets.kv_bytes
            )));
        }
        Ok(())
    }

    /// A call of `agent` committed `delta`.
    pub fn kv_committed(&self, agent: &str, delta: KvDelta) {
        let mut kv = self.kv.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(usage) = kv.get_mut(agent) {
            let (keys, bytes) = apply(*usage, delta);
            usage.keys = u64::try_from(keys.max(0)).unwrap_or(u64::MAX);
            usage.bytes = u64::try_from(bytes.max(0)).unwrap_or(u64::MAX);
        }
    }

    async fn kv_usage(&self, agent: &str) -> Result<KvUsage, GuestError> {
        if let Some(usage) = self.kv.lock().unwrap_or_else(|p| p.into_inner()).get(agent) {
            return Ok(*usage);
        }
        let usage = self
            .store
            .kv_usage(agent)
            .await
            .map_err(|e| GuestError::Unavailable(format!("store: {e}")))?;
        self.kv
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(agent.to_string())
            .or_insert(usage);
        Ok(usage)
    }

    /// Read kv usage from the store again on next use (concurrent calls writing one key each
    /// count it as new), and forget idle agents' buckets.
    pub fn refresh(&self) {
        self.kv.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.log_bytes.retain_recent();
        self.events.retain_recent();
    }
}
