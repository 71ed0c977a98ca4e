//! overseer-api: the HTTP API v1 (axum), one module per resource, the guard every request
//! passes (its `Host` and `Origin`, then the bearer token), the body limit, and
//! `serve(listener, state, shutdown)` so that a test can bind `127.0.0.1:0` and drive a real
//! server.
//!
//! Every request needs the token but `GET /v1/health`; with `public_read`, GETs of what is
//! not an agent's source, build logs, diffs, logs or event payloads are open too. A request
//! whose `Host` is not the listener (an IP literal, `localhost`, or a configured name) is
//! refused with 421, and a browser's `Origin` that is not the request's own host with 403:
//! a web page in the operator's browser cannot reach the API through DNS rebinding or a
//! cross-site request.

mod agents;
mod alerts;
mod audit;
mod backtests;
mod budgets;
mod dashboard;
mod edits;
mod error;
mod listener;
mod openapi;
mod overseer;
mod page;
mod prompts;
#[cfg(test)]
mod properties;
mod research;
mod system;
mod trading;

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
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;
pub use listener::Limits;
pub use system::{DiskSpace, disk_holding};

type ApiResult<T = Response> = Result<T, ApiError>;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub kernel: Kernel,
    pub selfedit: SelfEdit,
    /// The LLM served to agents, for `/v1/llm`.
    pub llm: Arc<Llm>,
    /// The bearer token requests must present.
    pub token: Arc<str>,
    /// GETs other than source, build logs, diffs, logs and events are open.
    pub public_read: bool,
    /// Host names requests may name besides IP literals and `localhost`.
    pub allowed_hosts: Arc<[String]>,
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Connection timeouts and the connection cap.
    pub limits: Limits,
    /// The data directory, whose disk `/v1/system` reports.
    pub data_dir: PathBuf,
    /// Host resources, refreshed when asked for.
    pub system: Arc<Mutex<sysinfo::System>>,
    /// The market, the paper account and the risk gate; `None` with trading off.
    pub trading: Option<overseer_trading::Trading>,
    /// Backtests of the agents, for `/v1/backtests`.
    pub backtests: Option<Arc<overseer_trading::backtest::Backtester>>,
    /// The embeddings endpoint memory recall ranks with, when one is configured.
    pub embeddings: Option<overseer_providers::Embeddings>,
    /// The agents' LLM budgets, for `/v1/budgets`.
    pub budgets: Option<Arc<overseer_kernel::capability::LlmBudgets>>,
    /// The Overseer's loops, for `/v1/overseer`; `None` when they are off.
    pub overseer: Option<Arc<overseer_meta::Overseer>>,
    /// The prompt registry and its experiments.
    pub prompts: Arc<overseer_meta::prompts::PromptRegistry>,
}

impl AppState {
    pub fn new(
        kernel: Kernel,
        selfedit: SelfEdit,
        llm: Arc<Llm>,
        token: &str,
        body_limit: usize,
    ) -> Self {
        let prompts = overseer_meta::prompts::PromptRegistry::new(kernel.clone());
        AppState {
            data_dir: kernel.config.data_dir.clone(),
            kernel,
            selfedit,
            llm,
            token: token.into(),
            public_read: false,
            allowed_hosts: Arc::new([]),
            body_limit,
            limits: Limits::default(),
            system: Arc::new(Mutex::new(sysinfo::System::new())),
            trading: None,
            backtests: None,
            budgets: None,
            embeddings: None,
            overseer: None,
            prompts,
        }
    }
}

/// Every route of the API with its description: the router serves what the document says.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(openapi::named(utoipa_axum::routes!(openapi_json)))
        .merge(agents::routes())
        .merge(alerts::routes())
        .merge(edits::routes())
        .merge(system::routes())
        .merge(trading::routes())
        .merge(backtests::routes())
        .merge(research::routes())
        .merge(audit::routes())
        .merge(overseer::routes())
        .merge(budgets::routes())
        .merge(prompts::routes())
        .merge(dashboard::routes())
}

/// The API's OpenAPI 3.1 document, as `GET /v1/openapi.json` serves it.
pub fn openapi() -> serde_json::Value {
    openapi::document(routes().into_openapi())
}

/// This API's OpenAPI 3.1 document (no token needed).
#[utoipa::path(get, path = "/v1/openapi.json", tag = "system",
    responses((status = 200, description = "this document", body = serde_json::Value)))]
async fn openapi_json() -> Response {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(|| openapi().to_string()).clone();
    ([(header::CONTENT_TYPE, "application/json")], document).into_response()
}

/// The router of the whole API.
pub fn app(state: AppState) -> Router {
    let body_limit = state.body_limit;
    Router::from(routes())
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            listener::read_body,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// Largest error body the router or an extractor makes that is rewritten as JSON.
const PLAIN_ERROR_BYTES: usize = 64 << 10;

/// Every error the daemon answers in one shape, `{"error": {"code", "message"}}`: those the
/// router and the extractors make themselves (a wrong method, a path or query value that does
/// not parse, a body too large or of the wrong type) come as plain text or empty, and are
/// rewritten here with a stable code for their status.
async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::UNAUTHORIZED => "unauthorized",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let allow = response.headers().get(header::ALLOW).cloned();
    let text = axum::body::to_bytes(response.into_body(), PLAIN_ERROR_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    // An extractor's 422 (a body that parses but does not fit) is a bad request like the rest.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let mut answer = ApiError::new(status, code, message).into_response();
    // A wrong method keeps saying which are right.
    if let Some(allow) = allow {
        answer.headers_mut().insert(header::ALLOW, allow);
    }
    answer
}

/// Serve the API on `listener` within the state's [`Limits`] until `shutdown` resolves; then
/// stop the schedules.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let kernel = state.kernel.clone();
    let limits = state.limits;
    let result = listener::run(listener, app(state), limits, shutdown).await;
    kernel.stop();
    result
}

/// What a request needs to be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Liveness: open to all.
    Open,
    /// A read that `public_read` opens.
    Read,
    /// Agents' source, build logs, diffs, logs and event payloads: always the token.
    Private,
    /// A change: always the token.
    Mutation,
}

fn access(method: &Method, path: &str) -> Access {
    if !matches!(*method, Method::GET | Method::HEAD) {
        return Access::Mutation;
    }
    // The API's description, and the dashboard's page and assets: the page asks for the
    // token itself.
    if path == "/v1/health" || path == "/v1/openapi.json" || path == "/" || path.starts_with("/ui/")
    {
        return Access::Open;
    }
    // Event payloads and agents' memories say what agents saw and did; research results and
    // tasks are event payloads too, and the audit trail says who changed what and why.
    if path == "/v1/events"
        || path == "/v1/stream"
        || path == "/v1/memory"
        || path.starts_with("/v1/research/")
        || path == "/v1/audit"
        || path.starts_with("/v1/audit/")
        // A spec's attempts quote compiler errors, which quote its source.
        || path == "/v1/architect"
        || path.starts_with("/v1/architect/")
    {
        return Access::Private;
    }
    // /v1/agents/{name}/{what}/…: agent names have no '/'.
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match segments.as_slice() {
        ["", "v1", "agents", _, what, rest @ ..] => match *what {
            "logs" | "source" | "analysis" | "edits" => Access::Private,
            "versions" if rest.get(1) == Some(&"diff") => Access::Private,
            _ => Access::Read,
        },
        _ => Access::Read,
    }
}

/// Every request: its `Host` must name this listener and a browser's `Origin` must be its own
/// host; then the token, unless the request is open.
async fn authorize(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if let Some(host) = host
        && !allowed_host(host, &state.allowed_hosts)
    {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected_request",
            format!(
                "this daemon does not answer to host {host:?}: use its address, localhost, or a name in allowed_hosts"
            ),
        )
        .into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let own = |scheme: &str| host.map(|h| format!("{scheme}://{h}"));
        let origin = origin.to_str().unwrap_or("");
        // The daemon speaks http; `https` is its origin only behind a proxy, under one of the
        // configured names.
        let proxied = host.is_some_and(|h| {
            let name = h.rsplit_once(':').map_or(h, |(name, _)| name);
            state.allowed_hosts.iter().any(|a| {
                a.trim_end_matches('.')
                    .eq_ignore_ascii_case(name.trim_end_matches('.'))
            })
        });
        if Some(origin.to_string()) != own("http")
            && !(proxied && Some(origin.to_string()) == own("https"))
        {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!("requests from origin {origin:?} are refused: the API answers its own origin only"),
            )
            .into_response();
        }
    }
    let needs_token = match access(request.method(), request.uri().path()) {
        Access::Open => false,
        Access::Read => !state.public_read,
        Access::Private | Access::Mutation => true,
    };
    if needs_token && !has_token(headers, &state.token) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

/// Whether a `Host` header names this listener: an IP literal (no DNS, so no rebinding),
/// `localhost`, or a configured name; the port is not compared.
fn allowed_host(host: &str, allowed: &[String]) -> bool {
    // One authority, `name[:port]` with a numeric port: nothing a browser would not send.
    let port_ok = |port: &str| port.parse::<u16>().is_ok();
    let name = match host.strip_prefix('[') {
        // [v6]:port
        Some(rest) => {
            return match rest.split_once(']') {
                Some((v6, "")) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
                Some((v6, port)) => {
                    v6.parse::<std::net::Ipv6Addr>().is_ok()
                        && port.strip_prefix(':').is_some_and(port_ok)
                }
                None => false,
            };
        }
        None => match host.rsplit_once(':') {
            Some((name, port)) if port_ok(port) => name,
            Some(_) => return false,
            None => host,
        },
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return false;
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<std::net::Ipv4Addr>().is_ok()
        || name == "localhost"
        || allowed
            .iter()
            .any(|a| a.trim_end_matches('.').eq_ignore_ascii_case(&name))
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

use openapi::PageQuery;

impl PageQuery {
    fn paging(self, default: u32) -> ApiResult<page::Paging> {
        page::Paging::new(self.limit, self.after, default)
    }
}

type PageQueryResult =
    Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>;

/// The page a list's plain `?limit&after` query asks for; a query that does not parse (an
/// unknown parameter, a limit that is not a number) is `invalid_request`.
fn paging(query: PageQueryResult, default: u32) -> ApiResult<page::Paging> {
    let axum::extract::Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    query.paging(default)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_logs_edits_and_events_are_private() {
        let get = Method::GET;
        assert_eq!(access(&get, "/v1/health"), Access::Open);
        assert_eq!(access(&get, "/v1/agents"), Access::Read);
        assert_eq!(access(&get, "/v1/agents/echo"), Access::Read);
        assert_eq!(access(&get, "/v1/agents/echo/versions"), Access::Read);
        assert_eq!(access(&get, "/metrics"), Access::Read);
        for private in [
            "/v1/events",
            "/v1/audit",
            "/v1/audit/verify",
            "/v1/agents/echo/logs",
            "/v1/agents/echo/source",
            "/v1/agents/echo/source/",
            "/v1/agents/echo/analysis",
            "/v1/agents/echo/edits",
            "/v1/agents/echo/edits/3",
            "/v1/agents/echo/versions/1/diff/2",
        ] {
            assert_eq!(access(&get, private), Access::Private, "{private}");
        }
        assert_eq!(access(&Method::POST, "/v1/health"), Access::Mutation);
        assert_eq!(access(&Method::OPTIONS, "/v1/agents"), Access::Mutation);
    }

    #[test]
    fn hosts_are_ip_literals_localhost_or_configured_names() {
        let allowed = ["overseer.internal".to_string()];
        for ok in [
            "127.0.0.1:7700",
            "127.0.0.1",
            "10.0.0.5:80",
            "[::1]:7700",
            "localhost:7700",
            "LOCALHOST",
            "overseer.internal:443",
            "overseer.internal.",
        ] {
            assert!(allowed_host(ok, &allowed), "{ok}");
        }
        for refused in [
            "evil.example:7700",
            "127.0.0.1.evil.example",
            "[::1",
            "localhost.evil",
            "localhost:7811, evil.example",
            "localhost:abc",
            "[::1]x",
            "",
        ] {
            assert!(!allowed_host(refused, &allowed), "{refused}");
        }
    }
}
