//! Recent calls, kept per agent in memory for the Overseer's windows: when each ended, how
//! long it took, how it ended, the fuel it burned and the memory it reached. The newest
//! [`KEPT`] of each agent are kept; older ones are in the counters of `/metrics` only.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};

/// Calls kept per agent: an hour of one call a second.
pub const KEPT: usize = 4096;

/// One finished call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSample {
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Wall-clock time, instantiation included, in seconds.
    pub seconds: f64,
    /// `ok`, or the error code it ended with.
    pub outcome: &'static str,
    pub fuel: u64,
    /// Peak linear memory, in bytes (0 when the call faulted).
    pub peak_memory: u64,
}

/// The recent calls of every agent: a ring per agent behind its own lock, so that calls of
/// different agents never wait for each other (the map's write lock is taken once per agent).
#[derive(Default)]
pub struct RecentCalls {
    agents: RwLock<HashMap<String, Arc<Mutex<VecDeque<CallSample>>>>>,
}

impl RecentCalls {
    fn ring(&self, agent: &str) -> Arc<Mutex<VecDeque<CallSample>>> {
        let known = self
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .cloned();
        known.unwrap_or_else(|| {
            self.agents
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .entry(agent.to_string())
                .or_default()
                .clone()
        })
    }

    /// Keep `sample` of `agent`, dropping its oldest beyond [`KEPT`].
    pub fn record(&self, agent: &str, sample: CallSample) {
        let ring = self.ring(agent);
        let mut calls = ring.lock().unwrap_or_else(|p| p.into_inner());
        if calls.len() == KEPT {
            calls.pop_front();
        }
        calls.push_back(sample);
    }

    /// `agent`'s calls that ended at or after `since_ms`, oldest first.
    pub fn since(&self, agent: &str, since_ms: u64) -> Vec<CallSample> {
        let ring = self
            .agents
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(agent)
            .cloned();
        ring.map(|ring| {
            ring.lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|c| c.at_ms >= since_ms)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
    }

    /// Forget a retired agent's calls.
    pub fn forget(&self, agent: &str) {
        self.agents
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(agent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_ms: u64) -> CallSample {
        CallSample {
            at_ms,
            seconds: 0.001,
            outcome: "ok",
            fuel: 1,
            peak_memory: 0,
        }
    }

    #[test]
    fn the_newest_calls_are_kept_and_read_by_time() {
        let recent = RecentCalls::default();
        for at in 0..(KEPT as u64 + 10) {
            recent.record("a", sample(at));
        }
        let all = recent.since("a", 0);
        assert_eq!(all.len(), KEPT);
        assert_eq!(all[0].at_ms, 10);
        assert_eq!(recent.since("a", KEPT as u64 + 5).len(), 5);
        assert!(recent.since("b", 0).is_empty());
        recent.forget("a");
        assert!(recent.since("a", 0).is_empty());
    }
}
