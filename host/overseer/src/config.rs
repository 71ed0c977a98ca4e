//! The daemon's configuration: an optional TOML file, overridden by flags and `OVERSEER_*`
//! environment variables, parsed once into [`Config`] and handed to each part as the typed
//! settings it owns (the kernel's, the builder's, the LLM's, the API's).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use overseer_kernel::KernelConfig;
use overseer_providers::LlmConfig;
use overseer_selfedit::BuildConfig;
use serde::{Deserialize, Serialize};

/// Flags of `overseer serve`; each is also an environment variable.
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
    /// Bearer token for mutations; without it one is generated into the data directory.
    #[arg(long, env = "OVERSEER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Source of the bundled agents (a cargo workspace for wasm32-wasip2).
    #[arg(long, env = "OVERSEER_AGENTS_DIR")]
    pub agents_dir: Option<PathBuf>,
    /// Do not build and load the bundled agents at start.
    #[arg(long, env = "OVERSEER_NO_BUNDLED")]
    pub no_bundled: bool,
    /// The database: `postgres://…`, or a path to an SQLite file (default
    /// `<data-dir>/overseer.db`).
    #[arg(long, env = "OVERSEER_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// Largest request body, in bytes.
    #[arg(long, env = "OVERSEER_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Base URL of an OpenAI-compatible API (e.g. `https://api.openai.com/v1`).
    #[arg(long, env = "OVERSEER_LLM_URL")]
    pub llm_url: Option<String>,
    /// Key for the LLM endpoint.
    #[arg(long, env = "OVERSEER_LLM_KEY", hide_env_values = true)]
    pub llm_key: Option<String>,
    /// Model to ask.
    #[arg(long, env = "OVERSEER_LLM_MODEL")]
    pub llm_model: Option<String>,
}

/// Every setting of the daemon, with its default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The database URL (`postgres://…`) or SQLite path; `<data-dir>/overseer.db` by default.
    #[serde(skip_serializing)]
    pub database: Option<String>,
    pub listen: SocketAddr,
    #[serde(skip_serializing)]
    pub token: Option<String>,
    /// Largest request body: large enough for an 18 MB Python component with room to spare.
    pub body_limit: usize,
    pub agents_dir: Option<PathBuf>,
    pub bundled: bool,
    /// Target directory shared by every build of agent source.
    pub build_dir: Option<PathBuf>,
    /// Where the componentizers for Python agents are installed on first use.
    pub tools_dir: Option<PathBuf>,
    /// Instances alive at once across all agents (the size of the instance pool).
    pub max_instances: u32,
    /// The largest memory limit a manifest may ask for, in MiB.
    pub max_memory_mb: u64,
    /// The longest deadline a manifest may ask for, in milliseconds.
    pub max_timeout_ms: u64,
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
    /// The LLM endpoint served to agents granted `llm` (`[llm]` in the file).
    pub llm: LlmConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(".overseer"),
            database: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            token: None,
            body_limit: 32 << 20,
            agents_dir: None,
            bundled: true,
            build_dir: None,
            tools_dir: None,
            max_instances: 256,
            max_memory_mb: 1024,
            max_timeout_ms: 300_000,
            fuel: overseer_sandbox::DEFAULT_FUEL,
            memory_mb: (overseer_sandbox::DEFAULT_MEMORY_BYTES >> 20) as u64,
            timeout_ms: overseer_sandbox::DEFAULT_TIMEOUT.as_millis() as u64,
            concurrency: 16,
            queue: 64,
            keep_compiled: 5,
            build_timeout_secs: 600,
            llm: LlmConfig::default(),
        }
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
            config.database = Some(database.clone()).filter(|d| !d.is_empty());
        }
        if let Some(limit) = args.body_limit {
            config.body_limit = limit;
        }
        if let Some(url) = &args.llm_url {
            config.llm.url = Some(url.clone()).filter(|u| !u.is_empty());
        }
        if let Some(key) = &args.llm_key {
            config.llm.key = Some(key.clone()).filter(|k| !k.is_empty());
        }
        if let Some(model) = &args.llm_model {
            config.llm.model = model.clone();
        }
        Ok(config)
    }

    /// The kernel's settings.
    pub fn kernel(&self) -> KernelConfig {
        KernelConfig {
            data_dir: self.data_dir.clone(),
            max_instances: self.max_instances,
            max_memory_mb: self.max_memory_mb,
            max_timeout_ms: self.max_timeout_ms,
            fuel: self.fuel,
            memory_mb: self.memory_mb,
            timeout_ms: self.timeout_ms,
            concurrency: self.concurrency,
            queue: self.queue,
            keep_compiled: self.keep_compiled,
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
        self.database.clone().unwrap_or_else(|| {
            self.data_dir
                .join("overseer.db")
                .to_string_lossy()
                .into_owned()
        })
    }

    pub fn token_path(&self) -> PathBuf {
        self.data_dir.join("token")
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
            llm_key: Some("secret".to_string()),
            ..ServeArgs::default()
        };
        let config = Config::load(&args).unwrap();
        assert_eq!(config.llm.url.as_deref(), Some("http://127.0.0.1:1/v1"));
        assert_eq!(config.llm.model, "m2");
        assert_eq!(config.llm.retries, 1);
        assert_eq!(config.llm.key.as_deref(), Some("secret"));
        // The key is never written out with the configuration.
        assert!(!toml::to_string(&config).unwrap().contains("secret"));
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
