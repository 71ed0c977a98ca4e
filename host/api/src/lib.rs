//! overseer-api: the HTTP API v1 (axum), one module per resource, bearer-token auth on
//! mutations, the body limit, and `serve(listener, state, shutdown)` so that a test can bind
//! `127.0.0.1:0` and drive a real server.

mod agents;
mod alerts;
mod edits;
mod error;
mod system;

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use overseer_kernel::{Error, Kernel, check_name};
use overseer_providers::Llm;
use overseer_selfedit::SelfEdit;
use overseer_store::{AgentRecord, AlertRecord};

pub use error::ApiError;

type ApiResult<T = Response> = Result<T, ApiError>;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub kernel: Kernel,
    pub selfedit: SelfEdit,
    /// The LLM served to agents, for `/v1/llm`.
    pub llm: Arc<Llm>,
    /// The bearer token that mutations must present.
    pub token: Arc<str>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// The data directory, whose disk `/v1/system` reports.
    pub data_dir: PathBuf,
    /// Host resources, refreshed when asked for.
    pub system: Arc<Mutex<sysinfo::System>>,
}

impl AppState {
    pub fn new(
        kernel: Kernel,
        selfedit: SelfEdit,
        llm: Arc<Llm>,
        token: &str,
        body_limit: usize,
    ) -> Self {
        AppState {
            data_dir: kernel.config.data_dir.clone(),
            kernel,
            selfedit,
            llm,
            token: token.into(),
            body_limit,
            system: Arc::new(Mutex::new(sysinfo::System::new())),
        }
    }
}

/// The router of the whole API.
pub fn app(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::new()
        .merge(agents::routes())
        .merge(alerts::routes())
        .merge(edits::routes())
        .merge(system::routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serve the API on `listener` until `shutdown` resolves; then stop the schedules.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let kernel = state.kernel.clone();
    let result = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await;
    kernel.stop();
    result
}

/// Every request that changes something must carry the bearer token.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mutation = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if mutation && !has_token(request.headers(), &state.token) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    let Some(presented) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    // Compare in constant time so the token cannot be guessed byte by byte.
    presented.len() == token.len()
        && presented
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn agent_name(name: &str) -> ApiResult<()> {
    check_name(name).map_err(ApiError::from)
}

/// The stored record of an agent, or `invalid_name` / `agent_not_found`.
async fn known_agent(state: &AppState, name: &str) -> ApiResult<AgentRecord> {
    agent_name(name)?;
    state
        .kernel
        .store
        .agent(name)
        .await?
        .ok_or_else(|| Error::AgentNotFound(name.to_string()).into())
}

/// An alert, or `alert_not_found`.
async fn known_alert(state: &AppState, id: i64) -> ApiResult<AlertRecord> {
    state
        .kernel
        .store
        .alert(id)
        .await?
        .ok_or_else(|| Error::AlertNotFound(id).into())
}
