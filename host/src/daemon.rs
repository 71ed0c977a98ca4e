//! Starting the daemon: the bearer token, the host state with its active versions loaded, the
//! listener, the bundled agents, and shutdown on Ctrl-C.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use crate::config::HostConfig;
use crate::error::{Error, Result};
use crate::state::Host;
use crate::{api, bundled, deploy, edit};

/// Open the host on its data directory and load every active version.
pub async fn open(config: HostConfig) -> Result<Arc<Host>> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::Internal(format!("{}: {e}", config.data_dir.display())))?;
    let token = match &config.token {
        Some(token) => token.clone(),
        None => read_or_create_token(&config.token_path())?,
    };
    let host = Host::open(config, token).await?;
    deploy::load_active(&host).await?;
    edit::recover(&host).await?;
    Ok(host)
}

/// The token in `path`, or a new random one written there with mode 0600.
fn read_or_create_token(path: &Path) -> Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        let token = token.trim().to_string();
        if !token.is_empty() {
            return Ok(token);
        }
    }
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    file.write_all(token.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))?;
    Ok(token)
}

/// Run the daemon until Ctrl-C: serve the API, and build and load the bundled agents.
pub async fn run(config: HostConfig) -> anyhow::Result<()> {
    let listen = config.listen;
    let generated_token = config.token.is_none();
    let host = open(config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    println!("overseer listening on http://{addr}");
    if generated_token {
        println!(
            "bearer token for mutations: {}",
            host.config.token_path().display()
        );
    }
    if host.config.bundled {
        let host = host.clone();
        tokio::spawn(async move {
            match bundled::load(&host).await {
                Ok(agents) => println!("bundled agents live: {}", agents.join(", ")),
                Err(e) => eprintln!("bundled agents not loaded: {e}"),
            }
        });
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    api::serve(listener, host, shutdown).await?;
    Ok(())
}
