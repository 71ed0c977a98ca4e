//! The agent manifest (`agent.toml`): limits, capabilities, triggers and configuration, parsed
//! and checked once, with the host's defaults filled in where it is silent.

use std::collections::BTreeMap;
use std::time::Duration;

use overseer_sandbox::{Limits, ReusePolicy};
use serde::{Deserialize, Serialize};

use crate::config::KernelConfig;
use crate::error::{Error, Result};

/// Interfaces a manifest may grant. `runtime` and `kv` are every agent's; the others only its
/// manifest's to give.
pub const INTERFACES: &[&str] = &[
    "runtime",
    "kv",
    "llm",
    "http",
    "source",
    "market",
    "broker",
    "memory",
    "budget",
    "backtest",
    "fundamentals",
    "fleet",
    "prompts",
];

/// Interfaces that reach beyond the agent itself (other agents' source and edits, capital, the
/// LLM budgets): granted only by a person's push, never taken on through an edit proposed by
/// an agent.
pub const PRIVILEGED: &[&str] = &["source", "broker", "budget", "fleet"];

/// Topics under the host's sources that a manifest may let its agent publish on
/// (`capabilities.publish`): the world monitor's snapshots, the strategy's signals, and the
/// research agents' tasks, results, page requests and pages (so no other agent can forge a
/// result or borrow the web researcher's origins). Every other topic of the host's sources
/// (`market.tick`, `trade.executed`, `risk.*`, …) is the host's alone.
pub const PUBLISHABLE: &[&str] = &[
    "market.snapshot",
    "trade.signal",
    "research.task",
    "research.result",
    "research.fetch",
    "research.page",
];

/// Shortest interval a schedule may fire at, so one agent cannot keep a core busy with ticks.
pub const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// An agent's manifest as written by its author.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The agent's name; when present it must match the name it is pushed under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One sentence on what the agent does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the agent is: its kind, specialisation, what it offers and what it needs.
    #[serde(default, skip_serializing_if = "About::is_empty")]
    pub agent: About,
    #[serde(default)]
    pub limits: LimitsSpec,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub triggers: Triggers,
    #[serde(default)]
    pub deploy: DeploySpec,
    #[serde(default)]
    pub supervision: SupervisionSpec,
    /// Values the agent reads with `runtime.config`. They are shown with the manifest.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Values the agent reads with `runtime.config` too, but never shown: the API serves a
    /// manifest's secrets as [`REDACTED`], and an `agent.toml` in served source likewise
    /// ([`redact_toml`]). A key may not be in both tables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// The prompts the agent asks the registry for, by key; each is seeded as version 1 of
    /// `AGENT.KEY` the first time the agent asks for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub prompts: BTreeMap<String, crate::prompt::PromptSpec>,
}

/// The kinds of agent an `[agent] type` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = AgentKind)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Trades, or feeds or sizes trades.
    Trading,
    /// Turns events and data into research results.
    Research,
    /// Watches, heals, edits or governs other agents.
    Meta,
    /// Serves other agents (a fetcher, a calculator).
    Tool,
}

/// `[agent]`: what an agent says it is, for registries and for people. `dependencies` name
/// agents it needs: a push without them is accepted, with a warning in its checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct About {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    /// Its field within its kind, e.g. `risk_assessment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialisation: Option<String>,
    /// What it offers others, e.g. `market_analysis`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// The agents it needs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<String>,
}

impl About {
    pub fn is_empty(&self) -> bool {
        self == &About::default()
    }
}

/// Longest `[agent]` word (a specialisation or a capability), in bytes.
const MAX_WORD: usize = 64;
/// Most capabilities or dependencies an `[agent]` table may list.
const MAX_LISTED: usize = 32;

/// Limits the manifest asks for; absent ones take the host's defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Invocations of this agent that may run at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Invocations that may wait for a slot before more are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<u32>,
    /// Keep an instance between calls: for `N` calls (`reuse = 100`) or for a time
    /// (`reuse = "30s"`). Off by default: every call gets a fresh instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse: Option<ReuseSpec>,
}

/// How long a kept instance serves: a number of calls, or an interval (`500ms`, `30s`, `5m`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ReuseSpec {
    Calls(u64),
    For(String),
}

/// Most calls one kept instance may serve before it is dropped.
pub const MAX_REUSE_CALLS: u64 = 1_000_000;

/// Interfaces granted to the agent beyond the always-granted `runtime` and `kv`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    #[serde(default)]
    pub grant: Vec<String>,
    #[serde(default)]
    pub http_allow: Vec<String>,
    /// Topics under the host's sources the agent may publish on, from [`PUBLISHABLE`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<String>,
    /// Memory collections shared with every agent that shares them; others are the agent's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_memory: Vec<String>,
}

/// What makes the agent run besides HTTP invocations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Triggers {
    /// Topics delivered to the agent; `prefix.*` matches every topic under `prefix.`, `*` all.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Run on an interval: `500ms`, `30s`, `5m`, `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
}

/// How a new version is checked before and watched after it goes live.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeploySpec {
    /// Recent events of the active version replayed through a candidate before the swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<u32>,
    /// The watch window ends after this many calls of the new version...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_calls: Option<u32>,
    /// ...or after this long (`500ms`, `30s`), whichever comes first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<String>,
    /// Fewer calls than this in the window: no verdict, the version stays.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_calls: Option<u32>,
    /// Error and trap rate above which (and above the previous version's) the version is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
}

/// When repeated failures take an agent out of service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupervisionSpec {
    /// More failed calls than this within `period` quarantine the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failures: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// How often the host calls `health` on the active version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_every: Option<String>,
    /// Consecutive failed health checks that trigger remediation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_failures: Option<u32>,
}

/// The resolved health policy of a version.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub canary: u32,
    pub watch_calls: u32,
    pub watch: Duration,
    pub min_calls: u32,
    pub max_error_rate: f64,
    pub max_failures: u32,
    pub period: Duration,
    pub health_every: Duration,
    pub health_failures: u32,
}

/// Events replayed through a candidate: enough to exercise the common paths, few enough to
/// keep a push quick.
pub const DEFAULT_CANARY: u32 = 20;
/// Calls that end a watch window early.
pub const DEFAULT_WATCH_CALLS: u32 = 50;
/// Longest watch window.
pub const DEFAULT_WATCH: Duration = Duration::from_secs(30);
/// Fewer calls than this say nothing about a version.
pub const DEFAULT_MIN_CALLS: u32 = 5;
/// Half the calls failing is a bad version, not bad luck.
pub const DEFAULT_MAX_ERROR_RATE: f64 = 0.5;
/// OTP's default restart intensity is 1 in 5 s; agents serve many calls, so allow more.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);
/// How often `health` is called.
pub const DEFAULT_HEALTH_EVERY: Duration = Duration::from_secs(60);
/// Kubernetes' default failureThreshold.
pub const DEFAULT_HEALTH_FAILURES: u32 = 3;

/// A manifest checked and resolved against the host's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub limits: Limits,
    /// Instances kept between calls, when the manifest asks for it.
    pub reuse: Option<ReusePolicy>,
    pub concurrency: u32,
    pub queue: u32,
    pub every: Option<Duration>,
    pub policy: Policy,
}

/// What a secret's value is served as.
pub const REDACTED: &str = "<redacted>";

/// A manifest as JSON (as stored with its version) with each `secrets` value replaced by
/// [`REDACTED`]: the keys stay, so a reader sees what the agent is given.
pub fn redact_json(manifest: &mut serde_json::Value) {
    if let Some(secrets) = manifest
        .get_mut("secrets")
        .and_then(serde_json::Value::as_object_mut)
    {
        for value in secrets.values_mut() {
            *value = serde_json::Value::from(REDACTED);
        }
    }
}

/// An `agent.toml`'s text with each value of its `[secrets]` table replaced by
/// [`REDACTED`], its layout and comments kept (`toml_edit`). Text that does not parse as TOML
/// is not shown at all, since where its secrets are cannot be told.
pub fn redact_toml(text: &str) -> String {
    let Ok(mut document) = text.parse::<toml_edit::DocumentMut>() else {
        return format!(
            "# not shown: this agent.toml does not parse, and may hold {REDACTED} values\n"
        );
    };
    if let Some(secrets) = document
        .get_mut("secrets")
        .and_then(toml_edit::Item::as_table_like_mut)
    {
        for (_, value) in secrets.iter_mut() {
            *value = toml_edit::value(REDACTED);
        }
    }
    document.to_string()
}

impl Manifest {
    /// Parse TOML text.
    pub fn parse(text: &str) -> Result<Manifest> {
        toml::from_str(text).map_err(|e| Error::InvalidManifest(e.message().to_string()))
    }

    /// Check the manifest for agent `agent` and fill in the host's defaults.
    pub fn resolve(&self, agent: &str, host: &KernelConfig) -> Result<Resolved> {
        if let Some(name) = &self.name
            && name != agent
        {
            return Err(Error::InvalidManifest(format!(
                "the manifest names {name:?} but it is pushed as {agent:?}"
            )));
        }
        if let Some(key) = self.secrets.keys().find(|k| self.config.contains_key(*k)) {
            return Err(Error::InvalidManifest(format!(
                "{key:?} is in both [config] and [secrets]: a value is shown or secret, not both"
            )));
        }
        let defaults = host.default_limits();
        let memory_bytes = match self.limits.memory_mb {
            Some(mb) => usize::try_from(mb)
                .ok()
                .and_then(|mb| mb.checked_mul(1 << 20))
                .ok_or_else(|| Error::InvalidManifest("memory_mb is too large".to_string()))?,
            None => defaults.memory_bytes,
        };
        if memory_bytes == 0 || memory_bytes > host.max_memory_bytes() {
            return Err(Error::InvalidManifest(format!(
                "memory_mb must be between 1 and {}",
                host.max_memory_bytes() >> 20
            )));
        }
        let fuel = self.limits.fuel.unwrap_or(defaults.fuel);
        if fuel == 0 || fuel > host.max_fuel {
            return Err(Error::InvalidManifest(format!(
                "fuel must be between 1 and {}",
                host.max_fuel
            )));
        }
        let timeout = self
            .limits
            .timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(defaults.timeout);
        if timeout.is_zero() || timeout > host.max_timeout() {
            return Err(Error::InvalidManifest(format!(
                "timeout_ms must be between 1 and {}",
                host.max_timeout().as_millis()
            )));
        }
        let concurrency = self.limits.concurrency.unwrap_or(host.concurrency);
        if concurrency == 0 || concurrency > host.max_instances {
            return Err(Error::InvalidManifest(format!(
                "concurrency must be between 1 and {}",
                host.max_instances
            )));
        }
        let queue = self.limits.queue.unwrap_or(host.queue);
        if queue > host.max_queue {
            return Err(Error::InvalidManifest(format!(
                "queue must be at most {}",
                host.max_queue
            )));
        }
        let reuse = match &self.limits.reuse {
            None => None,
            Some(ReuseSpec::Calls(calls)) => {
                if *calls == 0 || *calls > MAX_REUSE_CALLS {
                    return Err(Error::InvalidManifest(format!(
                        "limits.reuse: between 1 and {MAX_REUSE_CALLS} calls, or an interval such as \"30s\""
                    )));
                }
                Some(ReusePolicy {
                    calls: *calls as u32,
                    max_age: None,
                })
            }
            Some(ReuseSpec::For(text)) => Some(ReusePolicy {
                calls: u32::MAX,
                max_age: Some(parse_interval(text).map_err(|e| match e {
                    Error::InvalidManifest(why) => {
                        Error::InvalidManifest(format!("limits.reuse: {why}"))
                    }
                    other => other,
                })?),
            }),
        };
        let every = self
            .triggers
            .every
            .as_deref()
            .map(parse_interval)
            .transpose()?;
        if let Some(every) = every
            && every < MIN_INTERVAL
        {
            return Err(Error::InvalidManifest(format!(
                "triggers.every must be at least {} ms",
                MIN_INTERVAL.as_millis()
            )));
        }
        for (key, prompt) in &self.prompts {
            let key_ok = (1..=64).contains(&key.len())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
            if !key_ok {
                return Err(Error::InvalidManifest(format!(
                    "prompt key {key:?}: 1 to 64 of a-z 0-9 _ -"
                )));
            }
            prompt
                .check()
                .map_err(|e| Error::InvalidManifest(format!("prompts.{key}: {e}")))?;
        }
        for topic in &self.triggers.subscribe {
            if topic.is_empty()
                || (topic.contains('*')
                    && !(topic == "*" || topic.ends_with(".*") && topic.matches('*').count() == 1))
            {
                return Err(Error::InvalidManifest(format!(
                    "subscription {topic:?}: use an exact topic, `prefix.*` or `*`"
                )));
            }
        }
        let interval = |text: &Option<String>, default: Duration| {
            text.as_deref()
                .map(parse_interval)
                .transpose()
                .map(|d| d.unwrap_or(default))
        };
        let policy = Policy {
            canary: self.deploy.canary.unwrap_or(DEFAULT_CANARY).min(1000),
            watch_calls: self.deploy.watch_calls.unwrap_or(DEFAULT_WATCH_CALLS),
            watch: interval(&self.deploy.watch, DEFAULT_WATCH)?,
            min_calls: self.deploy.min_calls.unwrap_or(DEFAULT_MIN_CALLS).max(1),
            max_error_rate: self.deploy.max_error_rate.unwrap_or(DEFAULT_MAX_ERROR_RATE),
            max_failures: self
                .supervision
                .max_failures
                .unwrap_or(DEFAULT_MAX_FAILURES),
            period: interval(&self.supervision.period, DEFAULT_PERIOD)?,
            health_every: interval(&self.supervision.health_every, DEFAULT_HEALTH_EVERY)?,
            health_failures: self
                .supervision
                .health_failures
                .unwrap_or(DEFAULT_HEALTH_FAILURES)
                .max(1),
        };
        if !(0.0..=1.0).contains(&policy.max_error_rate) {
            return Err(Error::InvalidManifest(
                "deploy.max_error_rate must be between 0 and 1".to_string(),
            ));
        }
        if policy.health_every < MIN_INTERVAL {
            return Err(Error::InvalidManifest(format!(
                "supervision.health_every must be at least {} ms",
                MIN_INTERVAL.as_millis()
            )));
        }
        Ok(Resolved {
            policy,
            limits: Limits {
                fuel,
                memory_bytes,
                timeout,
            },
            reuse,
            concurrency,
            queue,
            every,
        })
    }

    /// Check `[capabilities]` of a manifest being pushed: known interfaces, origins to allow.
    /// Kept out of [`Manifest::resolve`], which also loads stored versions: a version stored
    /// before a check existed still loads, and what the check would refuse never matches.
    pub fn check_capabilities(&self) -> Result<()> {
        for grant in &self.capabilities.grant {
            if !INTERFACES.contains(&grant.as_str()) {
                return Err(Error::InvalidManifest(format!(
                    "capabilities.grant: unknown interface {grant:?} (known: {})",
                    INTERFACES.join(", ")
                )));
            }
        }
        for topic in &self.capabilities.publish {
            if !PUBLISHABLE.contains(&topic.as_str()) {
                return Err(Error::InvalidManifest(format!(
                    "capabilities.publish: {topic:?} is not a topic an agent may publish on (allowed: {})",
                    PUBLISHABLE.join(", ")
                )));
            }
        }
        for entry in &self.capabilities.http_allow {
            overseer_providers::http::check_allow_entry(entry)
                .map_err(|e| Error::InvalidManifest(format!("capabilities.http_allow: {e}")))?;
        }
        self.check_about()
    }

    /// Check `[agent]`: words of letters, digits, `_` and `-`; dependencies are agent names.
    fn check_about(&self) -> Result<()> {
        let about = &self.agent;
        let word = |what: &str, w: &str| {
            let ok = !w.is_empty()
                && w.len() <= MAX_WORD
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if ok {
                Ok(())
            } else {
                Err(Error::InvalidManifest(format!(
                    "agent.{what}: {w:?} is not a word of up to {MAX_WORD} letters, digits, '_' or '-'"
                )))
            }
        };
        if let Some(specialisation) = &about.specialisation {
            word("specialisation", specialisation)?;
        }
        if about.capabilities.len() > MAX_LISTED || about.dependencies.len() > MAX_LISTED {
            return Err(Error::InvalidManifest(format!(
                "agent: at most {MAX_LISTED} capabilities and {MAX_LISTED} dependencies"
            )));
        }
        for capability in &about.capabilities {
            word("capabilities", capability)?;
        }
        for dependency in &about.dependencies {
            crate::name::check_name(dependency)
                .map_err(|e| Error::InvalidManifest(format!("agent.dependencies: {e}")))?;
        }
        Ok(())
    }

    /// Whether the manifest grants `interface`; `runtime` and `kv` always are.
    pub fn grants(&self, interface: &str) -> bool {
        matches!(interface, "runtime" | "kv")
            || self.capabilities.grant.iter().any(|g| g == interface)
    }

    /// Whether the manifest grants an interface that reaches beyond the agent.
    pub fn privileged(&self) -> bool {
        PRIVILEGED.iter().any(|p| self.grants(p))
    }

    /// Whether the agent subscribes to `topic`.
    pub fn subscribes_to(&self, topic: &str) -> bool {
        self.triggers
            .subscribe
            .iter()
            .any(|pattern| topic_matches(pattern, topic))
    }
}

/// Whether `topic` matches a subscription pattern: exact, `prefix.*` or `*`.
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => topic.starts_with(prefix) && topic.len() > prefix.len(),
        None => pattern == topic,
    }
}

/// Longest interval a manifest may write: a year, far past any watch window or schedule.
pub const MAX_INTERVAL: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parse `500ms`, `30s`, `5m`, `1h` or `1d`, up to [`MAX_INTERVAL`].
pub fn parse_interval(text: &str) -> Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        Error::InvalidManifest(format!(
            "interval {text:?}: expected a number and a unit like 30s"
        ))
    })?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => {
            return Err(Error::InvalidManifest(format!(
                "interval {text:?}: unknown unit {other:?}; use ms, s, m, h or d"
            )));
        }
    };
    n.checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .filter(|d| *d <= MAX_INTERVAL)
        .ok_or_else(|| {
            Error::InvalidManifest(format!(
                "interval {text:?} is longer than {} days",
                MAX_INTERVAL.as_secs() / 86_400
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_units() {
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_interval("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_interval("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_interval("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_interval("5").is_err());
        assert!(parse_interval("fast").is_err());
        // Overflow and absurd lengths are refused, not wrapped or panicked on.
        assert!(parse_interval("18446744073709551615h").is_err());
        assert!(parse_interval("99999999999999999999s").is_err());
        assert!(parse_interval("400d").is_err());
    }

    #[test]
    fn topics_match_exactly_or_by_prefix() {
        assert!(topic_matches("a.b", "a.b"));
        assert!(!topic_matches("a.b", "a.bc"));
        assert!(topic_matches("a.*", "a.b"));
        assert!(!topic_matches("a.*", "a."));
        assert!(!topic_matches("a.*", "b.a"));
        assert!(topic_matches("*", "anything"));
    }

    #[test]
    fn manifest_with_unknown_field_is_refused() {
        let err = Manifest::parse("nmae = \"x\"").unwrap_err();
        assert_eq!(err.code(), "invalid_manifest");
    }

    #[test]
    fn defaults_fill_what_the_manifest_leaves_out() {
        let host = KernelConfig::default();
        let manifest = Manifest::parse("[limits]\ntimeout_ms = 200\n").unwrap();
        let resolved = manifest.resolve("echo", &host).unwrap();
        assert_eq!(resolved.limits.timeout, Duration::from_millis(200));
        assert_eq!(resolved.limits.fuel, host.default_limits().fuel);
        assert!(
            Manifest::parse("name = \"other\"")
                .unwrap()
                .resolve("echo", &host)
                .is_err()
        );
    }

    #[test]
    fn the_agent_table_says_what_an_agent_is_and_refuses_nonsense() {
        let manifest = Manifest::parse(
            "[agent]\ntype = \"research\"\nspecialisation = \"risk_assessment\"\ncapabilities = [\"risk_report\"]\ndependencies = [\"world-monitor\"]\n",
        )
        .unwrap();
        assert_eq!(manifest.agent.kind, Some(Kind::Research));
        assert!(manifest.check_capabilities().is_ok());
        assert!(Manifest::parse("[agent]\ntype = \"oracle\"\n").is_err());
        assert!(Manifest::parse("[agent]\nkind = \"tool\"\n").is_err());
        for bad in [
            "[agent]\nspecialisation = \"two words\"\n",
            "[agent]\ndependencies = [\"../etc\"]\n",
            "[agent]\ncapabilities = [\"\"]\n",
        ] {
            let manifest = Manifest::parse(bad).unwrap();
            assert!(manifest.check_capabilities().is_err(), "{bad}");
        }
    }

    #[test]
    fn grants_name_known_interfaces_only() {
        let host = KernelConfig::default();
        let manifest = Manifest::parse("[capabilities]\ngrant = [\"llm\", \"source\"]\n").unwrap();
        assert!(manifest.resolve("x", &host).is_ok() && manifest.check_capabilities().is_ok());
        assert!(manifest.grants("llm") && manifest.grants("kv") && manifest.privileged());
        assert!(!Manifest::default().grants("llm"));
        assert!(!Manifest::default().privileged());
        let typo = Manifest::parse("[capabilities]\ngrant = [\"llms\"]\n").unwrap();
        assert!(
            typo.resolve("x", &host).is_ok(),
            "a stored version still loads"
        );
        let err = typo.check_capabilities().unwrap_err();
        assert_eq!(err.code(), "invalid_manifest");
        assert!(err.to_string().contains("llms"), "{err}");
    }
}

/// Bounded property runs of the manifest parser (the fuzz target `manifest` runs it
/// unbounded): any text and any numbers are either a manifest within the host's ceilings or
/// `invalid_manifest`, never a panic, a wrap or a silent default.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn resolved(text: &str) -> Option<Resolved> {
        let host = KernelConfig::default();
        // As a push reads it: parse, check the grants, resolve against the host.
        let resolved = Manifest::parse(text)
            .and_then(|m| {
                m.check_capabilities()
                    .and_then(|()| m.resolve("agent", &host))
            })
            .inspect_err(|e| assert!(matches!(e, Error::InvalidManifest(_)), "{e:?}"))
            .ok()?;
        assert!(resolved.limits.fuel >= 1 && resolved.limits.fuel <= host.max_fuel);
        assert!(resolved.limits.memory_bytes <= host.max_memory_bytes());
        assert!(resolved.limits.timeout <= host.max_timeout());
        if let Some(every) = resolved.every {
            assert!(every >= MIN_INTERVAL, "{every:?}");
        }
        Some(resolved)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_text_is_a_manifest_or_refused(text in "\\PC{0,300}") {
            resolved(&text);
        }

        #[test]
        fn any_limits_and_intervals_resolve_within_the_ceilings_or_are_refused(
            fuel in any::<u64>(),
            memory_mb in any::<u64>(),
            timeout_ms in any::<u64>(),
            every in "[0-9]{1,22}(ms|s|m|h|d|x)?",
            health in "[0-9]{1,22}(ms|s|m|h|d)",
        ) {
            // TOML integers are signed 64-bit.
            let (fuel, memory_mb, timeout_ms) = (
                fuel.min(i64::MAX as u64),
                memory_mb.min(i64::MAX as u64),
                timeout_ms.min(i64::MAX as u64),
            );
            let text = format!(
                "[limits]\nfuel = {fuel}\nmemory_mb = {memory_mb}\ntimeout_ms = {timeout_ms}\n\n[triggers]\nevery = {every:?}\n\n[supervision]\nhealth_every = {health:?}\n",
            );
            if let Some(resolved) = resolved(&text) {
                prop_assert_eq!(resolved.limits.fuel, fuel);
                prop_assert_eq!(resolved.limits.timeout, Duration::from_millis(timeout_ms));
            }
        }

        #[test]
        fn any_http_allow_entry_is_one_concrete_origin_or_refused(entry in "\\PC{0,40}") {
            let text = format!("[capabilities]\ngrant = [\"http\"]\nhttp_allow = [{entry:?}]\n");
            if resolved(&text).is_some() {
                prop_assert!(!entry.contains('*'), "{}", entry);
            }
        }
    }
}
