//! Prometheus metrics of the host and its agents, written with `prometheus-client` and served
//! in the text format at `/metrics`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use overseer_sandbox::CacheStats;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::telemetry::RecentCalls;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentLabel {
    agent: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    agent: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    agent: String,
    /// `prompt` or `completion`.
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DropLabels {
    agent: String,
    /// `call` (the call's budget), `rate` (the agent's per minute) or `queue` (the writer
    /// behind).
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AgentMetricLabels {
    agent: String,
    name: String,
}

/// Every series the host exports.
pub struct Metrics {
    registry: Registry,
    invocations: Family<OutcomeLabels, Counter>,
    latency: Family<AgentLabel, Histogram, fn() -> Histogram>,
    fuel: Family<AgentLabel, Counter>,
    swaps: Family<AgentLabel, Counter>,
    rollbacks: Family<AgentLabel, Counter>,
    rejections: Family<AgentLabel, Counter>,
    quarantines: Family<AgentLabel, Counter>,
    peak_memory: Family<AgentLabel, Gauge>,
    agent_metrics: Family<AgentMetricLabels, Gauge<f64, AtomicU64>>,
    /// The names each agent has recorded, to hold it to its budget of series.
    metric_names: Mutex<HashMap<String, HashSet<String>>>,
    agent_metrics_dropped: Family<AgentLabel, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_refused: Counter,
    cache_evicted: Counter,
    logs_dropped: Family<DropLabels, Counter>,
    pruned: Family<TableLabel, Counter>,
    llm_requests: Family<OutcomeLabels, Counter>,
    llm_tokens: Family<TokenLabels, Counter>,
    encode: Mutex<()>,
    /// Each agent's recent calls, for windows the counters cannot give (percentiles).
    recent: RecentCalls,
}

fn latency_histogram() -> Histogram {
    // 50 µs to about 26 s: fresh-instance calls to calls that hit their deadline.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("overseer");
        let invocations = Family::<OutcomeLabels, Counter>::default();
        let latency = Family::<AgentLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let fuel = Family::<AgentLabel, Counter>::default();
        let swaps = Family::<AgentLabel, Counter>::default();
        let rollbacks = Family::<AgentLabel, Counter>::default();
        let rejections = Family::<AgentLabel, Counter>::default();
        let quarantines = Family::<AgentLabel, Counter>::default();
        let peak_memory = Family::<AgentLabel, Gauge>::default();
        let agent_metrics = Family::<AgentMetricLabels, Gauge<f64, AtomicU64>>::default();
        let agent_metrics_dropped = Family::<AgentLabel, Counter>::default();
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let cache_refused = Counter::default();
        let cache_evicted = Counter::default();
        let logs_dropped = Family::<DropLabels, Counter>::default();
        let pruned = Family::<TableLabel, Counter>::default();
        let llm_requests = Family::<OutcomeLabels, Counter>::default();
        let llm_tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "llm_requests",
            "Completions agents asked of the LLM, by outcome (ok, unavailable, failed)",
            llm_requests.clone(),
        );
        registry.register(
            "llm_tokens",
            "Tokens of LLM completions, by agent and kind (prompt or completion)",
            llm_tokens.clone(),
        );
        registry.register(
            "invocations",
            "Invocations of an agent's handle, by outcome (ok or an error code)",
            invocations.clone(),
        );
        registry.register(
            "invocation_duration_seconds",
            "Wall-clock time of an invocation, instantiation included",
            latency.clone(),
        );
        registry.register("fuel_consumed", "Fuel burned by an agent", fuel.clone());
        registry.register("swaps", "Versions that went live", swaps.clone());
        registry.register(
            "rollbacks",
            "Rollbacks to an earlier version",
            rollbacks.clone(),
        );
        registry.register(
            "rejected_versions",
            "Pushed versions rejected by the deploy pipeline",
            rejections.clone(),
        );
        registry.register(
            "quarantines",
            "Remediations after repeated failures (to the last stable version or out of routing)",
            quarantines.clone(),
        );
        registry.register(
            "peak_memory_bytes",
            "Largest linear memory an invocation of the agent grew to",
            peak_memory.clone(),
        );
        registry.register(
            "agent_metric",
            "Last value an agent recorded with runtime.metric",
            agent_metrics.clone(),
        );
        registry.register(
            "agent_metrics_dropped",
            "runtime.metric calls dropped because the agent has recorded as many names as it may",
            agent_metrics_dropped.clone(),
        );
        registry.register(
            "compile_cache_refused",
            "Compile-cache files that failed their tag and were recompiled instead of loaded",
            cache_refused.clone(),
        );
        registry.register(
            "compile_cache_evicted",
            "Compile-cache files removed to keep the cache within its size",
            cache_evicted.clone(),
        );
        registry.register(
            "pruned_rows",
            "Rows removed (or build logs cleared) by retention, by table",
            pruned.clone(),
        );
        registry.register(
            "compile_cache_hits",
            "Components loaded from the compile cache instead of compiled",
            cache_hits.clone(),
        );
        registry.register(
            "compile_cache_misses",
            "Components compiled because the cache did not hold them",
            cache_misses.clone(),
        );
        registry.register(
            "logs_dropped",
            "Agent log lines dropped, by agent and budget (call, rate or queue)",
            logs_dropped.clone(),
        );
        Metrics {
            registry,
            invocations,
            latency,
            fuel,
            swaps,
            rollbacks,
            rejections,
            quarantines,
            peak_memory,
            agent_metrics,
            metric_names: Mutex::new(HashMap::new()),
            agent_metrics_dropped,
            cache_hits,
            cache_misses,
            cache_refused,
            cache_evicted,
            logs_dropped,
            pruned,
            llm_requests,
            llm_tokens,
            encode: Mutex::new(()),
            recent: RecentCalls::default(),
        }
    }
}

impl Metrics {
    /// Each agent's recent calls.
    pub fn recent(&self) -> &RecentCalls {
        &self.recent
    }

    pub fn quarantine(&self, agent: &str) {
        self.quarantines.get_or_create(&label(agent)).inc();
    }

    pub fn peak_memory(&self, agent: &str, bytes: usize) {
        let gauge = self.peak_memory.get_or_create(&label(agent));
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        if bytes > gauge.get() {
            gauge.set(bytes);
        }
    }

    /// A counter of an agent for the agent view.
    pub fn agent_counter(&self, agent: &str, which: &str) -> u64 {
        let family = match which {
            "swaps" => &self.swaps,
            "rollbacks" => &self.rollbacks,
            "quarantines" => &self.quarantines,
            "rejected" => &self.rejections,
            "fuel" => &self.fuel,
            _ => return 0,
        };
        family.get(&label(agent)).map(|c| c.get()).unwrap_or(0)
    }

    pub fn invocation(&self, agent: &str, outcome: &str, seconds: f64, fuel: u64) {
        self.invocations
            .get_or_create(&OutcomeLabels {
                agent: agent.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        let label = AgentLabel {
            agent: agent.to_string(),
        };
        self.latency.get_or_create(&label).observe(seconds);
        self.fuel.get_or_create(&label).inc_by(fuel);
    }

    pub fn swap(&self, agent: &str) {
        self.swaps.get_or_create(&label(agent)).inc();
    }

    pub fn rollback(&self, agent: &str) {
        self.rollbacks.get_or_create(&label(agent)).inc();
    }

    pub fn rejection(&self, agent: &str) {
        self.rejections.get_or_create(&label(agent)).inc();
    }

    /// Record `value` under `name` for `agent`, unless it would be the agent's name number
    /// `max_names + 1`: then the call is dropped and counted.
    pub fn agent_metric(&self, agent: &str, name: &str, value: f64, max_names: u32) {
        {
            let mut names = self.metric_names.lock().unwrap_or_else(|p| p.into_inner());
            let names = names.entry(agent.to_string()).or_default();
            if !names.contains(name) {
                if names.len() >= max_names as usize {
                    self.agent_metrics_dropped
                        .get_or_create(&label(agent))
                        .inc();
                    return;
                }
                names.insert(name.to_string());
            }
        }
        self.agent_metrics
            .get_or_create(&AgentMetricLabels {
                agent: agent.to_string(),
                name: name.to_string(),
            })
            .set(value);
    }

    /// A completion an agent asked for, and the tokens it cost.
    pub fn llm_call(&self, agent: &str, outcome: &str, prompt: u32, completion: u32) {
        self.llm_requests
            .get_or_create(&OutcomeLabels {
                agent: agent.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
        for (kind, tokens) in [("prompt", prompt), ("completion", completion)] {
            self.llm_tokens
                .get_or_create(&TokenLabels {
                    agent: agent.to_string(),
                    kind: kind.to_string(),
                })
                .inc_by(u64::from(tokens));
        }
    }

    /// A log line of `agent` dropped by the budget named `reason`.
    pub fn log_dropped(&self, agent: &str, reason: &str) {
        self.logs_dropped
            .get_or_create(&DropLabels {
                agent: agent.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Log lines of `agent` dropped so far, by any budget.
    pub fn logs_dropped(&self, agent: &str) -> u64 {
        ["call", "rate", "queue"]
            .iter()
            .filter_map(|reason| {
                self.logs_dropped.get(&DropLabels {
                    agent: agent.to_string(),
                    reason: reason.to_string(),
                })
            })
            .map(|c| c.get())
            .sum()
    }

    /// Rows retention removed from `table`.
    pub fn pruned(&self, table: &str, rows: u64) {
        if rows > 0 {
            self.pruned
                .get_or_create(&TableLabel {
                    table: table.to_string(),
                })
                .inc_by(rows);
        }
    }

    /// Count of successful invocations of an agent, for the agent view.
    pub fn count(&self, agent: &str, outcome: &str) -> u64 {
        self.invocations
            .get(&OutcomeLabels {
                agent: agent.to_string(),
                outcome: outcome.to_string(),
            })
            .map(|c| c.get())
            .unwrap_or(0)
    }

    /// The text exposition, with the compile cache's counters brought up to date.
    pub fn render(&self, cache: CacheStats) -> String {
        let _one_at_a_time = self.encode.lock().unwrap_or_else(|p| p.into_inner());
        catch_up(&self.cache_hits, cache.hits);
        catch_up(&self.cache_misses, cache.misses);
        catch_up(&self.cache_refused, cache.refused);
        catch_up(&self.cache_evicted, cache.evicted);
        let mut text = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(error = %e, "encoding metrics");
        }
        text
    }
}

fn label(agent: &str) -> AgentLabel {
    AgentLabel {
        agent: agent.to_string(),
    }
}

fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}
