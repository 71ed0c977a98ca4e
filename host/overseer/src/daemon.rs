//! The daemon composed: the store, the kernel with the capabilities it serves, self-editing,
//! recovery of what a stop left unfinished, the active versions loaded, the API state; and
//! `run`, which serves until Ctrl-C with the bundled agents built and loaded beside.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use overseer_api::AppState;
use overseer_kernel::Kernel;
use overseer_kernel::capability::{BudgetProvider, HttpProvider, LlmBudgets, LlmProvider};
use overseer_providers::{Embeddings, Llm, Outbound};
use overseer_sandbox::CacheKey;
use overseer_selfedit::SelfEdit;
use overseer_store::Store;
use overseer_trading::backtest::{BacktestProvider, Backtester, SourceMarks, walk};
use overseer_trading::live::LiveMarket;
use overseer_trading::{BrokerProvider, MarketProvider, MemoryProvider, Trading};

/// How often a live market's clock looks for a session that closed.
const LIVE_POLL: std::time::Duration = std::time::Duration::from_secs(60);

use crate::config::Config;

/// A daemon opened on its data directory, its active versions loaded, not yet serving.
#[derive(Clone)]
pub struct Daemon {
    pub config: Config,
    pub kernel: Kernel,
    pub selfedit: SelfEdit,
    pub state: AppState,
    /// The live market, ticked in wall time, when one is configured.
    pub live: Option<Arc<LiveMarket>>,
}

/// Open the daemon on `config`: the database and the token, the kernel and what it serves,
/// and every active version loaded.
pub async fn open(config: Config) -> anyhow::Result<Daemon> {
    // The data directory holds the database, agents' sources and the keys: the daemon's user
    // only, whatever the umask (`DirBuilder::mode` applies to the directories it makes).
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let token = match &config.token {
        Some(token) => token.expose().to_string(),
        None => read_or_create_token(&config.token_path())?,
    };
    let cache_key = read_or_create_key(&config.cache_key_path())?;
    let url = config.database_url();
    let store = Store::open(&url)
        .await
        .with_context(|| format!("opening the database {}", overseer_store::redact(&url)))?;
    // SQLite makes its files by the umask; they hold agents' kv, logs and sources.
    for file in ["overseer.db", "overseer.db-wal", "overseer.db-shm"] {
        let path = config.data_dir.join(file);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
        }
    }
    let kernel = Kernel::new(config.kernel(cache_key), store.clone()).await?;
    let llm = Arc::new(Llm::new(&config.llm)?);
    let budgets = Arc::new(LlmBudgets::load(config.llm_budget.clone(), store.clone()).await?);
    kernel.capabilities.serve_llm(Arc::new(LlmProvider::new(
        llm.clone(),
        store,
        kernel.metrics.clone(),
        budgets.clone(),
    )));
    kernel
        .capabilities
        .serve_budget(Arc::new(BudgetProvider::new(budgets.clone())));
    kernel
        .capabilities
        .serve_http(Arc::new(HttpProvider::new(Arc::new(Outbound::new()?))));
    let embeddings =
        Embeddings::new(&config.embeddings).map_err(|e| anyhow::anyhow!("embeddings: {e}"))?;
    let memory = Arc::new(MemoryProvider::new(
        kernel.store.clone(),
        embeddings.clone(),
    ));
    kernel.capabilities.serve_memory(memory);
    let (trading, live) = if config.trading.enabled {
        let connected = overseer_trading::live::connect(&config.trading)
            .await
            .map_err(|e| anyhow::anyhow!("trading: {e}"))?;
        let trading = Trading::open(
            config.trading.clone(),
            connected.sources,
            kernel.store.clone(),
            kernel.bus.clone(),
            config.data_dir.clone(),
        )
        .await?;
        kernel
            .capabilities
            .serve_market(Arc::new(MarketProvider::new(trading.clone())));
        kernel
            .capabilities
            .serve_broker(Arc::new(BrokerProvider::new(trading.clone())));
        // Filings come from Polygon whenever it has a key, whatever market replays the prices.
        if let Some(key) = &config.trading.polygon.key {
            let polygon =
                overseer_providers::polygon::Polygon::new(&config.trading.polygon.url, key)
                    .map_err(|e| anyhow::anyhow!("the Polygon client: {e}"))?;
            kernel.capabilities.serve_fundamentals(Arc::new(
                overseer_trading::fundamentals::FundamentalsProvider::new(trading.clone(), polygon),
            ));
        }
        (Some(trading), connected.live)
    } else {
        (None, None)
    };
    let selfedit = SelfEdit::new(kernel.clone(), config.build());
    selfedit.recover().await?;
    kernel.start().await?;
    let mut state = AppState::new(
        kernel.clone(),
        selfedit.clone(),
        llm,
        &token,
        config.body_limit,
    );
    state.public_read = config.public_read;
    state.limits = overseer_api::Limits {
        header_timeout: std::time::Duration::from_millis(config.header_timeout_ms.max(1)),
        body_timeout: std::time::Duration::from_millis(config.body_timeout_ms.max(1)),
        max_connections: config.max_connections.max(1),
    };
    let market: Arc<dyn overseer_market::Market> = match &trading {
        Some(trading) => trading.market().clone(),
        None => Arc::new(overseer_market::Replay::bundled()?),
    };
    let backtests = Arc::new(
        Backtester::new(
            kernel.clone(),
            market,
            config.trading.clone(),
            config.data_dir.clone(),
            config.llm_budget.clone(),
        )
        .with_sources(Arc::new(SourceTunables(selfedit.clone()))),
    );
    kernel
        .capabilities
        .serve_backtest(Arc::new(BacktestProvider::new(backtests.clone())));
    state.backtests = Some(backtests);
    state.trading = trading;
    state.budgets = Some(budgets);
    state.embeddings = embeddings;
    state.allowed_hosts = config.allowed_hosts.clone().into();
    kernel
        .capabilities
        .serve_prompts(Arc::new(overseer_meta::prompts::PromptsProvider::new(
            state.prompts.clone(),
        )));
    state.overseer = config.overseer.enabled.then(|| {
        let reach = overseer_meta::Reach {
            prompts: Some(state.prompts.clone()),
            architect: Some(Arc::new(SpecArchitect(selfedit.clone()))),
            budgets: state.budgets.clone(),
            capital: state
                .trading
                .clone()
                .map(|trading| Arc::new(KillSwitch(trading)) as Arc<dyn overseer_meta::Capital>),
        };
        let overseer = overseer_meta::Overseer::new(kernel.clone(), config.overseer.clone(), reach);
        state.prompts.attach(&overseer);
        kernel
            .capabilities
            .serve_fleet(Arc::new(overseer_meta::fleet::FleetProvider::new(
                &overseer,
            )));
        overseer
    });
    Ok(Daemon {
        config,
        kernel,
        selfedit,
        state,
        live,
    })
}

/// The architect, as `new_agent` decisions reach it: a person approved the decision, so a
/// privileged spec does not wait again.
struct SpecArchitect(SelfEdit);

#[async_trait::async_trait]
impl overseer_meta::governance::Architect for SpecArchitect {
    async fn submit(&self, spec: serde_json::Value, by: &str) -> Result<serde_json::Value, String> {
        let spec: overseer_selfedit::architect::AgentSpec =
            serde_json::from_value(spec).map_err(|e| format!("not a spec: {e}"))?;
        let record = self
            .0
            .submit_spec(spec, by, true)
            .await
            .map_err(|e| e.to_string())?;
        Ok(serde_json::json!({ "spec": record.id, "state": record.state }))
    }
}

/// The trading side's kill switch, as governance decisions reach it.
struct KillSwitch(overseer_trading::Trading);

#[async_trait::async_trait]
impl overseer_meta::Capital for KillSwitch {
    async fn halt(&self) -> Result<serde_json::Value, String> {
        let status = self.0.kill().await.map_err(|e| e.to_string())?;
        Ok(serde_json::json!(status))
    }

    async fn resume(&self) -> Result<serde_json::Value, String> {
        let status = self.0.resume().await.map_err(|e| e.to_string())?;
        Ok(serde_json::json!(status))
    }
}

/// The token in `path`, or a new random one written there; either way the file ends with
/// mode 0600, whatever it had.
fn read_or_create_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("restricting {}", path.display()))?;
            return Ok(token);
        }
    }
    let token = hex::encode(random_bytes()?);
    write_secret(path, token.as_bytes())?;
    Ok(token)
}

/// The compile cache's key in `path` (64 hex digits), or a new random one written there with
/// mode 0600.
pub(crate) fn read_or_create_key(path: &Path) -> anyhow::Result<CacheKey> {
    if let Ok(text) = std::fs::read_to_string(path)
        && let Ok(bytes) = hex::decode(text.trim())
        && let Ok(key) = <[u8; 32]>::try_from(bytes)
    {
        return Ok(CacheKey(key));
    }
    let key = random_bytes()?;
    write_secret(path, hex::encode(key).as_bytes())?;
    Ok(CacheKey(key))
}

fn random_bytes() -> anyhow::Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness from the OS: {e}"))?;
    Ok(bytes)
}

/// Write a secret to `path`, readable by this user only.
fn write_secret(path: &Path, secret: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    // The mode above applies only to a new file: one that was there keeps its own until now,
    // before the secret is in it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("restricting {}", path.display()))?;
    file.write_all(secret)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// Run the daemon until Ctrl-C: serve the API, and build and load the bundled agents.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let generated_token = config.token.is_none();
    let daemon = open(config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    println!("overseer listening on http://{addr}");
    if generated_token {
        println!(
            "bearer token for the API: {}",
            daemon.config.token_path().display()
        );
    }
    if daemon.config.public_read {
        println!(
            "reads are public (--public-read): source, logs, edits and events still need the token"
        );
    }
    match daemon.config.build_isolation {
        overseer_selfedit::Isolation::Required => {
            println!("{}", overseer_selfedit::isolation::support().describe())
        }
        overseer_selfedit::Isolation::Off => {
            println!("builds NOT isolated (build_isolation = \"off\"): trust every source")
        }
    }
    // The market clock starts once the bundled agents are live: no tick goes unheard.
    let trading = daemon.state.trading.clone();
    let live = daemon.live.clone();
    let start_clock = move || match (trading, live) {
        (Some(trading), Some(live)) => {
            overseer_trading::live::spawn_live_clock(&trading, live, LIVE_POLL);
            println!(
                "live market clock running from {}: a tick after each session's close",
                trading.as_of()
            );
        }
        (Some(trading), None) => {
            trading.spawn_clock();
            println!(
                "market clock running from {}: one trading day every {} ms",
                trading.as_of(),
                trading.config().market_speed_ms
            );
        }
        _ => {}
    };
    if daemon.config.bundled {
        let selfedit = daemon.selfedit.clone();
        tokio::spawn(async move {
            match selfedit.load_bundled().await {
                Ok(agents) => println!("bundled agents live: {}", agents.join(", ")),
                Err(e) => eprintln!("bundled agents not loaded: {e}"),
            }
            start_clock();
        });
    } else {
        start_clock();
    }
    if let Some(overseer) = &daemon.state.overseer {
        overseer.start();
        println!(
            "the Overseer's loops are running (health every {:?})",
            overseer.interval("health").unwrap_or_default()
        );
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        // Builds run on blocking threads the runtime would wait for: kill them now.
        overseer_selfedit::isolation::stop_all();
    };
    overseer_api::serve(listener, daemon.state, shutdown).await?;
    Ok(())
}

/// The tunables a version's stored source marks, for walk-forward backtests.
struct SourceTunables(SelfEdit);

#[async_trait::async_trait]
impl SourceMarks for SourceTunables {
    async fn marks(&self, agent: &str, version: u32) -> BTreeMap<String, walk::Range> {
        // A version without source (pushed as a component) marks nothing.
        let source = self.0.version_source(agent, version).await.ok().flatten();
        source
            .map(|snapshot| {
                snapshot
                    .files
                    .values()
                    .flat_map(|text| walk::scan_source(text))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_token_file_ends_readable_by_its_owner_only_whatever_was_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        // An empty file anyone could read: the new token is written into it, and it is closed.
        std::fs::write(&path, "").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let token = read_or_create_token(&path).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(mode(&path), 0o600);
        // A token kept in an open file: kept, and the file closed.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_or_create_token(&path).unwrap(), token);
        assert_eq!(mode(&path), 0o600);
    }
}
