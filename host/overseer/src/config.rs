//! The daemon's configuration: an optional TOML file, overridden by flags and `OVERSEER_*`
//! environment variables, parsed once into [`Config`] and handed to each part as the typed
//! settings it owns (the kernel's, the builder's, the LLM's, the API's).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use overseer_kernel::KernelConfig;
use overseer_kernel::capability::LlmBudgetConfig;
use overseer_kernel::config::{Budgets, Retention};
use overseer_providers::{EmbeddingsConfig, LlmConfig, Secret};
use overseer_sandbox::CacheKey;
use overseer_selfedit::{BuildConfig, Isolation};
use overseer_trading::TradingConfig;
use serde::{Deserialize, Serialize};

/// Flags of `overseer serve`; each is also an environment variable. Its `Debug` hides the
/// token, the database URL and the LLM key.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// A TOML file with any of the settings below (flags and environment win over it).
    #[arg(long, env = "OVERSEER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where the database, the compile cache, the token and builds live.
    #[arg(long, env = "OVERSEER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "OVERSEER_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Bearer token for the API; without it one is generated into the data directory.
    #[arg(long, env = "OVERSEER_TOKEN", hide_env_values = true)]
    pub token: Option<Secret>,
    /// Source of the bundled agents (a cargo workspace for wasm32-wasip2).
    #[arg(long, env = "OVERSEER_AGENTS_DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Do not build and load the bundled agents at start.
    #[arg(long, env = "OVERSEER_NO_BUNDLED")]
    pub no_bundled: bool,
    /// The database: `postgres://…`, or a path to an SQLite file (default
    /// `<data-dir>/overseer.db`).
    #[arg(long, env = "OVERSEER_DATABASE_URL", hide_env_values = true)]
    pub database: Option<Secret>,
    /// Largest request body, in bytes.
    #[arg(long, env = "OVERSEER_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Base URL of an OpenAI-compatible API (e.g. `https://api.openai.com/v1`).
    #[arg(long, env = "OVERSEER_LLM_URL")]
    pub llm_url: Option<String>,
    /// Key for the LLM endpoint.
    #[arg(long, env = "OVERSEER_LLM_KEY", hide_env_values = true)]
    pub llm_key: Option<Secret>,
    /// Model to ask.
    #[arg(long, env = "OVERSEER_LLM_MODEL")]
    pub llm_model: Option<String>,
    /// Serve GETs without the token (agents' source and logs still need it).
    #[arg(long, env = "OVERSEER_PUBLIC_READ")]
    pub public_read: bool,
    /// `required` (the default): builds run in the sandbox, and are refused where the kernel
    /// cannot provide one. `off`: builds run unisolated, for trusted sources only.
    #[arg(long, env = "OVERSEER_BUILD_ISOLATION")]
    pub build_isolation: Option<Isolation>,
    /// Wall time per replayed trading day: `500ms`, `2s`, `1m`.
    #[arg(long, env = "OVERSEER_MARKET_SPEED")]
    pub market_speed: Option<String>,
    /// Run without the market clock, the paper broker and the trading interfaces.
    #[arg(long, env = "OVERSEER_NO_TRADING")]
    pub no_trading: bool,
    /// Where prices come from: `replay` (default), `polygon` or `alpaca`.
    #[arg(long, env = "OVERSEER_MARKET")]
    pub market: Option<overseer_trading::MarketKind>,
    /// Where orders go: `paper` (default) or `alpaca`.
    #[arg(long, env = "OVERSEER_BROKER")]
    pub broker: Option<overseer_trading::BrokerKind>,
    /// Polygon.io API key.
    #[arg(long, env = "OVERSEER_POLYGON_KEY", hide_env_values = true)]
    pub polygon_key: Option<Secret>,
    /// Alpaca key id (`APCA-API-KEY-ID`).
    #[arg(long, env = "OVERSEER_ALPACA_KEY_ID", hide_env_values = true)]
    pub alpaca_key_id: Option<Secret>,
    /// Alpaca secret key (`APCA-API-SECRET-KEY`).
    #[arg(long, env = "OVERSEER_ALPACA_SECRET", hide_env_values = true)]
    pub alpaca_secret: Option<Secret>,
    /// Send orders to Alpaca's LIVE endpoint: real money. Without it Alpaca orders go to the
    /// paper endpoint.
    #[arg(long)]
    pub live_trading: bool,
    /// Divide every Overseer loop interval by this (60: its hourly loops run every minute).
    #[arg(long, env = "OVERSEER_CLOCK_FACTOR")]
    pub overseer_clock: Option<f64>,
}

/// Every setting of the daemon, with its default. Secrets are [`Secret`]s: never printed,
/// never written out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The database URL (`postgres://…`) or SQLite path; `<data-dir>/overseer.db` by default.
    #[serde(skip_serializing)]
    pub database: Option<Secret>,
    pub listen: SocketAddr,
    #[serde(skip_serializing)]
    pub token: Option<Secret>,
    /// Serve GETs without the token, except agents' source, build logs and logs.
    pub public_read: bool,
    /// Host names requests may name besides the listener's address, `localhost` and
    /// loopback (e.g. the name of a proxy in front); compared without the port.
    pub allowed_hosts: Vec<String>,
    /// Largest request body: large enough for an 18 MB Python component with room to spare.
    pub body_limit: usize,
    /// Longest wait for a request's head and for the next request on an idle connection, in
    /// milliseconds.
    pub header_timeout_ms: u64,
    /// Longest wait for a request's whole body, in milliseconds.
    pub body_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    pub agents_dir: Option<PathBuf>,
    pub bundled: bool,
    /// Where builds of agent source put their output, one target directory per agent.
    pub build_dir: Option<PathBuf>,
    /// Where the componentizers for Python agents are installed on first use.
    pub tools_dir: Option<PathBuf>,
    /// Instances alive at once across all agents (the size of the instance pool).
    pub max_instances: u32,
    /// Guest calls running at once across all agents; more wait within their deadline.
    pub max_concurrent_calls: u32,
    /// The largest memory limit a manifest may ask for, in MiB.
    pub max_memory_mb: u64,
    /// The longest deadline a manifest may ask for, in milliseconds.
    pub max_timeout_ms: u64,
    /// The most fuel a manifest may ask for per call.
    pub max_fuel: u64,
    /// The longest queue a manifest may ask for.
    pub max_queue: u32,
    /// Threads of a runtime of their own for guest code; 0 shares the API's runtime.
    pub guest_threads: usize,
    /// Largest size of the compile cache on disk, in MiB.
    pub cache_max_mb: u64,
    /// Defaults for agents whose manifest is silent.
    pub fuel: u64,
    pub memory_mb: u64,
    pub timeout_ms: u64,
    /// Invocations of one agent that run at once, by default.
    pub concurrency: u32,
    /// Invocations of one agent that may wait for a slot, by default.
    pub queue: u32,
    /// Versions per agent kept compiled in memory for instant rollback.
    pub keep_compiled: usize,
    /// How long a build of agent source may take.
    pub build_timeout_secs: u64,
    /// Whether builds must run in the sandbox (`"required"`) or may run without (`"off"`).
    pub build_isolation: Isolation,
    /// The LLM endpoint served to agents granted `llm` (`[llm]` in the file).
    pub llm: LlmConfig,
    /// What one agent may write through the host (`[budgets]` in the file).
    pub budgets: Budgets,
    /// How long what agents wrote is kept (`[retention]` in the file).
    pub retention: Retention,
    /// The market, the paper broker, costs and risk limits (`[trading]` in the file).
    pub trading: TradingConfig,
    /// LLM budgets per agent and in all, prices per model (`[llm_budget]` in the file).
    pub llm_budget: LlmBudgetConfig,
    /// An OpenAI-compatible embeddings endpoint for memory's cosine ranking
    /// (`[embeddings]` in the file); none by default.
    pub embeddings: EmbeddingsConfig,
    /// The Overseer's loops: intervals, clock factor, thresholds (`[overseer]` in the file).
    pub overseer: overseer_meta::OverseerConfig,
}

impl Default for Config {
    fn default() -> Self {
        let kernel = KernelConfig::default();
        let listener = overseer_api::Limits::default();
        Config {
            data_dir: PathBuf::from(".overseer"),
            database: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            token: None,
            public_read: false,
            allowed_hosts: Vec::new(),
            body_limit: 32 << 20,
            header_timeout_ms: listener.header_timeout.as_millis() as u64,
            body_timeout_ms: listener.body_timeout.as_millis() as u64,
            max_connections: listener.max_connections,
            agents_dir: None,
            bundled: true,
            build_dir: None,
            tools_dir: None,
            max_instances: kernel.max_instances,
            max_concurrent_calls: kernel.max_concurrent_calls,
            max_memory_mb: kernel.max_memory_mb,
            max_timeout_ms: kernel.max_timeout_ms,
            max_fuel: kernel.max_fuel,
            max_queue: kernel.max_queue,
            guest_threads: kernel.guest_threads,
            cache_max_mb: kernel.cache_max_mb,
            fuel: kernel.fuel,
            memory_mb: kernel.memory_mb,
            timeout_ms: kernel.timeout_ms,
            concurrency: kernel.concurrency,
            queue: kernel.queue,
            keep_compiled: kernel.keep_compiled,
            build_timeout_secs: 600,
            build_isolation: Isolation::Required,
            llm: LlmConfig::default(),
            budgets: kernel.budgets,
            retention: kernel.retention,
            trading: TradingConfig::default(),
            llm_budget: LlmBudgetConfig::default(),
            embeddings: EmbeddingsConfig::default(),
            overseer: overseer_meta::OverseerConfig::default(),
        }
    }
}

/// The build isolation named by `OVERSEER_BUILD_ISOLATION`, for the commands that build
/// without a daemon (`overseer build`, `drill`, `bench`); `required` when unset.
pub fn isolation_from_env() -> anyhow::Result<Isolation> {
    match std::env::var("OVERSEER_BUILD_ISOLATION") {
        Ok(value) => value.parse().map_err(anyhow::Error::msg),
        Err(_) => Ok(Isolation::Required),
    }
}

impl Config {
    /// Read the file named by `--config` (if any) and apply the flags over it.
    pub fn load(args: &ServeArgs) -> anyhow::Result<Config> {
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?
            }
            None => Config::default(),
        };
        if let Some(dir) = &args.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(listen) = args.listen {
            config.listen = listen;
        }
        if let Some(token) = &args.token {
            config.token = Some(token.clone());
        }
        if let Some(dir) = &args.agents_dir {
            config.agents_dir = Some(dir.clone());
        }
        if args.no_bundled {
            config.bundled = false;
        }
        if let Some(database) = &args.database {
            config.database = Some(database.clone()).filter(|d| !d.expose().is_empty());
        }
        if args.public_read {
            config.public_read = true;
        }
        if let Some(isolation) = args.build_isolation {
            config.build_isolation = isolation;
        }
        if let Some(limit) = args.body_limit {
            config.body_limit = limit;
        }
        if let Some(url) = &args.llm_url {
            config.llm.url = Some(url.clone()).filter(|u| !u.is_empty());
        }
        if let Some(key) = &args.llm_key {
            config.llm.key = Some(key.clone()).filter(|k| !k.expose().is_empty());
        }
        if let Some(model) = &args.llm_model {
            config.llm.model = model.clone();
        }
        if let Some(speed) = &args.market_speed {
            let every = overseer_kernel::manifest::parse_interval(speed)
                .map_err(|e| anyhow::anyhow!("--market-speed: {e}"))?;
            config.trading.market_speed_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
        }
        if args.no_trading {
            config.trading.enabled = false;
        }
        if let Some(market) = args.market {
            config.trading.market = market;
        }
        if let Some(broker) = args.broker {
            config.trading.broker = broker;
        }
        if let Some(key) = &args.polygon_key {
            config.trading.polygon.key = Some(key.clone()).filter(|k| !k.expose().is_empty());
        }
        if let Some(key) = &args.alpaca_key_id {
            config.trading.alpaca.key_id = Some(key.clone()).filter(|k| !k.expose().is_empty());
        }
        if let Some(secret) = &args.alpaca_secret {
            config.trading.alpaca.secret = Some(secret.clone()).filter(|k| !k.expose().is_empty());
        }
        config.trading.live_trading = args.live_trading;
        if let Some(factor) = args.overseer_clock {
            if !(factor.is_finite() && factor > 0.0) {
                anyhow::bail!("--overseer-clock {factor}: a positive number");
            }
            config.overseer.clock_factor = factor;
        }
        Ok(config)
    }

    /// The kernel's settings, its compile cache signed with `cache_key`.
    pub fn kernel(&self, cache_key: CacheKey) -> KernelConfig {
        KernelConfig {
            data_dir: self.data_dir.clone(),
            max_instances: self.max_instances,
            max_concurrent_calls: self.max_concurrent_calls,
            max_memory_mb: self.max_memory_mb,
            max_timeout_ms: self.max_timeout_ms,
            max_fuel: self.max_fuel,
            max_queue: self.max_queue,
            fuel: self.fuel,
            memory_mb: self.memory_mb,
            timeout_ms: self.timeout_ms,
            concurrency: self.concurrency,
            queue: self.queue,
            keep_compiled: self.keep_compiled,
            guest_threads: self.guest_threads,
            cache_key,
            cache_max_mb: self.cache_max_mb,
            budgets: self.budgets.clone(),
            retention: self.retention.clone(),
        }
    }

    /// The builder's settings.
    pub fn build(&self) -> BuildConfig {
        BuildConfig {
            data_dir: self.data_dir.clone(),
            agents_dir: self.agents_dir(),
            build_dir: self.build_dir(),
            tools_dir: self.tools_dir(),
            build_timeout: Duration::from_secs(self.build_timeout_secs),
            isolation: self.build_isolation,
        }
    }

    /// Where the bundled agents' source is: configured, or the `agents/` directory of the
    /// source tree this binary was built from.
    pub fn agents_dir(&self) -> Option<PathBuf> {
        self.agents_dir.clone().or_else(|| {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../agents");
            dir.join("Cargo.toml").exists().then_some(dir)
        })
    }

    pub fn build_dir(&self) -> PathBuf {
        self.build_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("build"))
    }

    pub fn tools_dir(&self) -> PathBuf {
        self.tools_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tools"))
    }

    /// The database to open: the configured URL, or the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        self.database
            .as_ref()
            .map(|d| d.expose().to_string())
            .unwrap_or_else(|| {
                self.data_dir
                    .join("overseer.db")
                    .to_string_lossy()
                    .into_owned()
            })
    }

    pub fn token_path(&self) -> PathBuf {
        self.data_dir.join("token")
    }

    /// Where the secret that signs the compile cache is kept (mode 0600, never in a build's
    /// reach).
    pub fn cache_key_path(&self) -> PathBuf {
        self.data_dir.join("cache.key")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("overseer.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nqueue = 3\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            listen: Some("127.0.0.1:9100".parse().unwrap()),
            ..ServeArgs::default()
        };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.listen.port(), 9100);
        assert_eq!(config.queue, 3);
    }

    #[test]
    fn the_llm_is_configured_from_the_file_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("overseer.toml");
        std::fs::write(
            &file,
            "[llm]\nurl = \"http://127.0.0.1:1/v1\"\nmodel = \"m1\"\nretries = 1\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(file),
            llm_model: Some("m2".to_string()),
            llm_key: Some(Secret::new("llm-k3y")),
            token: Some(Secret::new("tok3n")),
            database: Some(Secret::new("postgres://u:pw@db/o")),
            polygon_key: Some(Secret::new("p0ly")),
            alpaca_key_id: Some(Secret::new("alp-1d")),
            alpaca_secret: Some(Secret::new("alp-s3c")),
            ..ServeArgs::default()
        };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.llm.url.as_deref(), Some("http://127.0.0.1:1/v1"));
        assert_eq!(config.llm.model, "m2");
        assert_eq!(config.llm.retries, 1);
        assert_eq!(config.llm.key.as_ref().map(Secret::expose), Some("llm-k3y"));
        // Secrets are never written out with the configuration, nor printed.
        let written = toml::to_string(&config).unwrap();
        assert!(
            !written.contains("llm-k3y") && !written.contains("alp-s3c"),
            "{written}"
        );
        assert_eq!(
            config.trading.alpaca.secret.as_ref().map(Secret::expose),
            Some("alp-s3c")
        );
        for printed in [format!("{config:?}"), format!("{args:?}")] {
            for secret in ["llm-k3y", "tok3n", "pw@db", "p0ly", "alp-1d", "alp-s3c"] {
                assert!(!printed.contains(secret), "{secret} printed: {printed}");
            }
        }
    }

    #[test]
    fn unknown_setting_in_the_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("overseer.toml");
        std::fs::write(&file, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        assert!(Config::load(&args).is_err());
    }
}
