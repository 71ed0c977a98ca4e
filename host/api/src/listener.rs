//! The listener: HTTP/1 connections served by hyper with the limits a daemon on a shared
//! machine needs against slow or hostile clients, and a bounded graceful shutdown.
//!
//! - A connection that has not sent a request's whole head within [`Limits::header_timeout`]
//!   is closed; the same clock runs while a kept-alive connection waits for its next request,
//!   so idle connections are closed too (hyper's `header_read_timeout`).
//! - A request body must arrive whole within [`Limits::body_timeout`], or the request is
//!   answered `408 request_timeout` and the connection closed.
//! - At most [`Limits::max_connections`] connections are served at once; beyond that the
//!   daemon stops accepting and new connections wait in the kernel's backlog, so descriptors
//!   stay bounded whatever clients do.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::sync::Semaphore;

use crate::{ApiError, AppState};

/// How long, and how many, connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest wait for a request's head, and for the next request on a kept-alive connection.
    pub header_timeout: Duration,
    /// Longest wait for a request's whole body.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// 10 s for a head (a person typing into a raw socket is the slowest honest client),
    /// 60 s for a body (the body limit's 32 MiB over a slow link), 512 connections (half the
    /// usual soft descriptor limit of 1,024, leaving the rest to the store and the builds).
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            max_connections: 512,
        }
    }
}

/// Longest wait for connections still serving a request once shutdown begins: streams such
/// as `/v1/stream` never end on their own.
const DRAIN: Duration = Duration::from_secs(5);

/// Accept and serve connections on `listener` until `shutdown` resolves, then let those
/// serving a request finish for up to [`DRAIN`].
pub(crate) async fn run(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        // Take a permit before accepting: at the cap, connections wait in the backlog.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                // The semaphore is never closed; were it, there would be nothing to serve.
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of descriptors or a connection reset before accept: not the listener's
                // end. Wait a moment so a full descriptor table does not spin the loop.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = builder.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or times out ends its connection; nothing to report.
            let _ = connection.await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::info!("connections still open after {DRAIN:?} were closed at shutdown");
    }
    Ok(())
}

/// Read a request's body whole before it is served, within the body deadline and the body
/// limit: a stalled body is `408 request_timeout`, an oversized one `413 payload_too_large`.
pub(crate) async fn read_body(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, state.body_limit);
    let read = tokio::time::timeout(
        state.limits.body_timeout,
        http_body_util::BodyExt::collect(limited),
    )
    .await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {} bytes", state.body_limit),
            )
            .into_response();
        }
        Ok(Err(e)) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("the body could not be read: {e}"),
            )
            .into_response();
        }
        Err(_) => {
            let mut answer = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the body did not arrive within {} s",
                    state.limits.body_timeout.as_secs_f64()
                ),
            )
            .into_response();
            answer.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
            return answer;
        }
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
