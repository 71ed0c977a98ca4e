//! The dashboard, served on the API's own listener: its page and assets embedded in the binary
//! (open, like the page that asks for the token), the live event stream it reads
//! (`/v1/stream`, Server-Sent Events) and the per-agent windows it charts (`/v1/telemetry`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::Stream;
use overseer_kernel::manifest::topic_matches;
use overseer_meta::telemetry::Window;
use overseer_store::EventFilter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::openapi::named;

use crate::{ApiError, ApiResult, AppState};

const INDEX: &str = include_str!("../assets/dashboard/index.html");
const APP_JS: &str = include_str!("../assets/dashboard/app.js");
const APP_CSS: &str = include_str!("../assets/dashboard/app.css");
/// Chart.js 4.6.1 (MIT), the copy the daily report embeds.
const CHART_JS: &str = include_str!("../../meta/assets/chart.umd.min.js");

/// The page may load only its own scripts and styles, and talk only to its own origin; no
/// other site may frame it.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    // The page and its assets are not API: `route` leaves them out of the document.
    OpenApiRouter::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/chart.umd.min.js",
            get(|| async { asset(CHART_JS, "text/javascript; charset=utf-8") }),
        )
        .routes(named(routes!(stream)))
        .routes(named(routes!(telemetry)))
        .routes(named(routes!(series)))
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Most events one read of the log passes on.
const STREAM_BATCH: u32 = 500;

/// How often the stream looks for new events.
const STREAM_POLL: Duration = Duration::from_millis(250);

/// `?topics=&after=` of the stream.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Topics to pass, comma-separated: exact, `prefix.*`, or `*` (the default).
    topics: Option<String>,
    /// Start after this event's sequence number (default: the newest, so only what happens
    /// from now on).
    after: Option<i64>,
}

/// The `data` of one event of the stream, as JSON text.
#[derive(Debug, Serialize)]
struct StreamData<'a> {
    topic: &'a str,
    source: &'a str,
    /// When it was logged, in milliseconds since the Unix epoch.
    at_ms: u64,
    /// The event's payload: its JSON, or a string when it is not JSON.
    payload: Value,
}

/// The bus's events as they are logged, as Server-Sent Events.
///
/// `event` the topic, `id` the event's sequence number (a client reconnects with `after`),
/// `data` `{topic, source, at_ms, payload}`. A comment every 15 s keeps proxies from closing
/// it.
#[utoipa::path(get, path = "/v1/stream", tag = "dashboard", params(StreamQuery),
    responses((status = 200, content_type = "text/event-stream", body = String,
        description = "Server-Sent Events, without end: each event's `event` is its topic, \
            its `id` the event's sequence number (reconnect with `?after=` it), and its `data` \
            one line of JSON, `{\"topic\": string, \"source\": string, \"at_ms\": integer \
            (milliseconds since the Unix epoch), \"payload\": the event's JSON, or a string \
            when it is not JSON}`; a comment line every 15 s keeps proxies from closing it.")))]
async fn stream(
    State(state): State<AppState>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let patterns: Vec<String> = query
        .topics
        .as_deref()
        .unwrap_or("*")
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let store = state.kernel.store.clone();
    let after = match query.after {
        Some(after) => after,
        None => store
            .events(&EventFilter {
                limit: 1,
                newest_first: true,
                ..Default::default()
            })
            .await
            .map_err(overseer_kernel::Error::from)?
            .first()
            .map_or(0, |e| e.seq),
    };
    let events = futures_util::stream::unfold(after, move |mut after| {
        let store = store.clone();
        let patterns = patterns.clone();
        async move {
            loop {
                let read = store
                    .events(&EventFilter {
                        after,
                        limit: STREAM_BATCH,
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_default();
                let Some(last) = read.last() else {
                    tokio::time::sleep(STREAM_POLL).await;
                    continue;
                };
                after = last.seq;
                let batch: Vec<Result<Event, Infallible>> = read
                    .into_iter()
                    .filter(|e| patterns.iter().any(|p| topic_matches(p, &e.topic)))
                    .map(|e| {
                        let payload = serde_json::from_str::<Value>(&e.payload)
                            .unwrap_or(Value::String(e.payload.clone()));
                        let data = StreamData {
                            topic: &e.topic,
                            source: &e.source,
                            at_ms: e.at_ms,
                            payload,
                        };
                        let data = serde_json::to_string(&data).unwrap_or_default();
                        Ok(Event::default()
                            .event(e.topic.clone())
                            .id(e.seq.to_string())
                            .data(data))
                    })
                    .collect();
                if !batch.is_empty() {
                    return Some((futures_util::stream::iter(batch), after));
                }
            }
        }
    });
    Ok(Sse::new(futures_util::StreamExt::flatten(events))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// `?window_ms=&limit=&after=` of the fleet's telemetry.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TelemetryQuery {
    /// The window, in milliseconds (default an hour, at most a day).
    #[param(minimum = 1, maximum = 86_400_000)]
    window_ms: Option<u64>,
    /// Agents on the page: 1 to 1,000 (100 by default).
    #[param(minimum = 1)]
    limit: Option<u32>,
    /// The cursor of the page before: the `next` of its answer (an agent's name).
    after: Option<String>,
}

/// `GET /v1/telemetry`.
#[derive(Debug, Serialize, ToSchema)]
struct Telemetry {
    /// The window, in milliseconds.
    window_ms: u64,
    /// The serving agents, by name.
    agents: Vec<AgentWindow>,
    /// The cursor of the next page (an agent's name), `null` on the last.
    next: Option<String>,
}

/// One serving agent's calls over the window, and its deadline.
#[derive(Debug, Serialize, ToSchema)]
struct AgentWindow {
    #[serde(flatten)]
    window: Window,
    /// The agent's call deadline (its version's timeout), in milliseconds.
    deadline_ms: Option<f64>,
}

/// Every serving agent's calls over the window.
///
/// Calls, failures, error rate, p50/p95/p99, fuel, peak memory and calls per minute, with
/// its deadline.
#[utoipa::path(get, path = "/v1/telemetry", tag = "dashboard", params(TelemetryQuery),
    responses((status = 200, body = Telemetry)))]
async fn telemetry(
    State(state): State<AppState>,
    query: Result<Query<TelemetryQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Telemetry>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    let paging = crate::page::Paging::new(query.limit, query.after, 100)?;
    let window_ms = query.window_ms.unwrap_or(3_600_000);
    if !(1..=overseer_sandbox::MAX_FLEET_WINDOW_MS).contains(&window_ms) {
        return Err(ApiError::invalid(format!(
            "window_ms {window_ms}: 1 ms to a day"
        )));
    }
    let overseer = crate::overseer::overseer(&state)?;
    let agents: Vec<AgentWindow> = overseer
        .windows(window_ms)
        .into_iter()
        .map(|(window, deadline_ms)| AgentWindow {
            window,
            deadline_ms,
        })
        .collect();
    let (agents, next) = paging.slice(agents, |a| a.window.agent.clone())?;
    Ok(Json(Telemetry {
        window_ms,
        agents,
        next,
    }))
}

/// `{agent}`: a serving agent.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct SeriesPath {
    /// The agent's name.
    #[param(example = "echo", pattern = "^[a-z0-9][a-z0-9-]{0,62}$")]
    agent: String,
}

/// `?window_ms=&buckets=` of an agent's series.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SeriesQuery {
    /// The span, in milliseconds (default an hour, at most a day).
    #[param(minimum = 1, maximum = 86_400_000)]
    window_ms: Option<u64>,
    /// Points (default 60, at most 500): the span cut into equal buckets.
    #[param(minimum = 1, maximum = 500)]
    buckets: Option<u32>,
}

/// `GET /v1/telemetry/{agent}`.
#[derive(Debug, Serialize, ToSchema)]
struct Series {
    agent: String,
    /// The span, in milliseconds.
    window_ms: u64,
    /// Each bucket's width, in milliseconds.
    bucket_ms: u64,
    /// Oldest first.
    points: Vec<SeriesPoint>,
}

/// The agent's calls in one bucket.
#[derive(Debug, Serialize, ToSchema)]
struct SeriesPoint {
    /// The bucket's start, in milliseconds since the Unix epoch.
    start_ms: u64,
    calls: usize,
    failures: usize,
    /// Failures over calls; 0 without calls.
    error_rate: f64,
    /// Latency percentiles, in milliseconds; `null` without calls.
    p50_ms: Option<f64>,
    p95_ms: Option<f64>,
    /// Fuel burned by the bucket's calls.
    fuel: u64,
    /// The highest peak memory of a call, in bytes.
    peak_memory: u64,
}

/// Most points one series answers: enough for any chart's width.
const MAX_BUCKETS: u32 = 500;

/// One agent's calls over the span, in equal buckets, oldest first.
///
/// Each bucket with its start, calls, failures, error rate, p50/p95 latency, fuel and peak
/// memory (from the kernel's recent calls, the last 4,096 of the agent).
#[utoipa::path(get, path = "/v1/telemetry/{agent}", tag = "dashboard", params(SeriesPath, SeriesQuery),
    responses((status = 200, body = Series)))]
async fn series(
    State(state): State<AppState>,
    Path(SeriesPath { agent }): Path<SeriesPath>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Series>> {
    let Query(query) = query.map_err(|e| ApiError::invalid(e.body_text()))?;
    if state.kernel.registry.get(&agent).is_none() {
        return Err(overseer_kernel::Error::AgentNotFound(agent).into());
    }
    let window_ms = query.window_ms.unwrap_or(3_600_000);
    let buckets = query.buckets.unwrap_or(60);
    if !(1..=overseer_sandbox::MAX_FLEET_WINDOW_MS).contains(&window_ms)
        || !(1..=MAX_BUCKETS).contains(&buckets)
    {
        return Err(ApiError::invalid(format!(
            "window_ms 1 ms to a day, buckets 1 to {MAX_BUCKETS}"
        )));
    }
    let now = overseer_store::now_ms();
    let from = now.saturating_sub(window_ms);
    let width = window_ms.div_ceil(u64::from(buckets)).max(1);
    let calls = state.kernel.metrics.recent().since(&agent, from);
    let points: Vec<SeriesPoint> = (0..u64::from(buckets))
        .map(|i| {
            let start = from + i * width;
            let inside: Vec<_> = calls
                .iter()
                .filter(|c| c.at_ms >= start && c.at_ms < start + width)
                .cloned()
                .collect();
            let w = overseer_meta::telemetry::window(&agent, &inside, width);
            SeriesPoint {
                start_ms: start,
                calls: w.calls,
                failures: w.failures,
                error_rate: w.error_rate,
                p50_ms: w.p50_ms,
                p95_ms: w.p95_ms,
                fuel: w.fuel,
                peak_memory: w.peak_memory,
            }
        })
        .collect();
    Ok(Json(Series {
        agent,
        window_ms,
        bucket_ms: width,
        points,
    }))
}

#[cfg(test)]
mod tests {
    use overseer_kernel::manifest::topic_matches as takes;

    #[test]
    fn stream_patterns_take_their_topics() {
        assert!(takes("*", "alert.opened"));
        assert!(takes("alert.*", "alert.opened"));
        assert!(!takes("alert.*", "alerts.opened"));
        assert!(takes("trade.signal", "trade.signal"));
        assert!(!takes("trade.signal", "trade.signals"));
    }
}
