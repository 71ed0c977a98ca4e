//! How the command line reaches a running daemon: its address, its token, and one request
//! answered as JSON or as the API's error.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// How the CLI reaches the daemon.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The daemon's address.
    #[arg(long, env = "OVERSEER_URL", default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// Bearer token; without it the token file of the data directory is read.
    #[arg(long, env = "OVERSEER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The daemon's data directory, where its generated token lives.
    #[arg(long, env = "OVERSEER_DATA_DIR", default_value = ".overseer")]
    pub data_dir: PathBuf,
}

impl ClientArgs {
    fn token(&self) -> Option<String> {
        self.token.clone().or_else(|| {
            std::fs::read_to_string(self.data_dir.join("token"))
                .ok()
                .map(|t| t.trim().to_string())
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url.trim_end_matches('/'))
    }

    /// An HTTP client that sends the token with every request.
    pub(crate) fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = self.token() {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("the token is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder()
            .default_headers(headers)
            .build()?)
    }

    pub(crate) fn post(&self, client: &reqwest::Client, path: &str) -> reqwest::RequestBuilder {
        client.post(self.url(path))
    }
}

/// Send a request; the answer as JSON, or its status, code and message as the error.
pub(crate) async fn send(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .context("cannot reach the daemon (is `overseer serve` running?)")?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let code = value["error"]["code"].as_str().unwrap_or("error");
        let message = value["error"]["message"].as_str().unwrap_or("");
        bail!("{status} {code}: {message}");
    }
    Ok(value)
}
