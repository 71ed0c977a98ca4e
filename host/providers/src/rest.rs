//! A JSON REST client for the market-data and broker services: one base URL, the service's
//! auth headers, a deadline per request, and retries (backon: exponential backoff with jitter,
//! three more attempts) on transport errors, 429 and 5xx — after the service's `Retry-After`
//! when it gives one, at most [`MAX_RETRY_AFTER`]. Errors keep the service's own message
//! under a stable code.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

/// The longest `Retry-After` honoured; a longer one fails the request as rate-limited.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Largest answer read, in bytes.
const MAX_BODY: usize = 32 << 20;

/// What a call to a remote service can run into. Each variant has a stable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RestError {
    /// 401: the key is missing or wrong.
    #[error("{service}: unauthorized (401): {message}")]
    Unauthorized {
        service: &'static str,
        message: String,
    },
    /// 403: the key may not do this.
    #[error("{service}: forbidden (403): {message}")]
    Forbidden {
        service: &'static str,
        message: String,
    },
    /// 400, 404, 422: the service refused the request as it was.
    #[error("{service}: refused ({status}): {message}")]
    Invalid {
        service: &'static str,
        status: u16,
        message: String,
    },
    /// 429, still after the retries.
    #[error("{service}: rate limited (429): {message}")]
    RateLimited {
        service: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 5xx, a transport error or a timeout, still after the retries.
    #[error("{service}: unavailable: {message}")]
    Unavailable {
        service: &'static str,
        message: String,
    },
    /// An answer that is not the JSON the service documents.
    #[error("{service}: malformed answer: {message}")]
    Malformed {
        service: &'static str,
        message: String,
    },
}

impl RestError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            RestError::Unauthorized { .. } => "provider_unauthorized",
            RestError::Forbidden { .. } => "provider_forbidden",
            RestError::Invalid { .. } => "provider_invalid",
            RestError::RateLimited { .. } => "provider_rate_limited",
            RestError::Unavailable { .. } => "provider_unavailable",
            RestError::Malformed { .. } => "provider_malformed",
        }
    }

    fn retryable(&self) -> bool {
        match self {
            RestError::RateLimited { retry_after, .. } => {
                retry_after.is_none_or(|after| after <= MAX_RETRY_AFTER)
            }
            RestError::Unavailable { .. } => true,
            _ => false,
        }
    }
}

/// A client of one service.
#[derive(Clone)]
pub struct Rest {
    service: &'static str,
    base: String,
    client: reqwest::Client,
    /// Pause before the first retry; doubled each time.
    first_backoff: Duration,
}

impl Rest {
    /// A client of `service` at `base` (no trailing `/`), sending `headers` with every
    /// request and giving each attempt `timeout`.
    ///
    /// # Errors
    /// A header that is not one, or a client that cannot be built.
    pub fn new(
        service: &'static str,
        base: &str,
        headers: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Rest, String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| e.to_string())?;
            let mut value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            map.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(map)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Rest {
            service,
            base: base.trim_end_matches('/').to_string(),
            client,
            first_backoff: Duration::from_millis(200),
        })
    }

    /// Pause `first` before the first retry (tests make it short).
    pub fn with_backoff(mut self, first: Duration) -> Rest {
        self.first_backoff = first;
        self
    }

    /// `GET path?query`, as JSON.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, RestError> {
        let text = self.send(Method::GET, path, query, None).await?;
        self.parse(&text)
    }

    /// `POST path` with a JSON body, answered as JSON.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<T, RestError> {
        let text = self.send(Method::POST, path, &[], Some(body)).await?;
        self.parse(&text)
    }

    /// `DELETE path`; the answer's body is not read.
    ///
    /// # Errors
    /// [`RestError`].
    pub async fn delete(&self, path: &str) -> Result<(), RestError> {
        self.send(Method::DELETE, path, &[], None).await.map(|_| ())
    }

    fn parse<T: DeserializeOwned>(&self, text: &str) -> Result<T, RestError> {
        serde_json::from_str(text).map_err(|e| RestError::Malformed {
            service: self.service,
            message: e.to_string(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<String, RestError> {
        let attempt = || async {
            let mut request = self
                .client
                .request(method.clone(), format!("{}{path}", self.base))
                .query(query);
            if let Some(body) = body {
                request = request.json(body);
            }
            self.answer(request.send().await).await
        };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(self.first_backoff)
                    .with_max_delay(MAX_RETRY_AFTER)
                    .with_max_times(3)
                    .with_jitter(),
            )
            .when(RestError::retryable)
            // The service's Retry-After replaces the backoff's pause, never its count: `None`
            // (attempts used up) stays `None`.
            .adjust(|error, backoff| match error {
                RestError::RateLimited {
                    retry_after: Some(after),
                    ..
                } => backoff.map(|_| *after),
                _ => backoff,
            })
            .await
    }

    async fn answer(
        &self,
        response: reqwest::Result<reqwest::Response>,
    ) -> Result<String, RestError> {
        let service = self.service;
        let response = response.map_err(|e| RestError::Unavailable {
            service,
            message: e.to_string(),
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(|e| RestError::Unavailable {
            service,
            message: e.to_string(),
        })?;
        if bytes.len() > MAX_BODY {
            return Err(RestError::Malformed {
                service,
                message: format!("an answer of {} bytes, over {MAX_BODY}", bytes.len()),
            });
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if status.is_success() {
            return Ok(text);
        }
        let message = service_message(&text);
        Err(match status {
            StatusCode::UNAUTHORIZED => RestError::Unauthorized { service, message },
            StatusCode::FORBIDDEN => RestError::Forbidden { service, message },
            StatusCode::TOO_MANY_REQUESTS => RestError::RateLimited {
                service,
                message,
                retry_after,
            },
            s if s.is_server_error() => RestError::Unavailable {
                service,
                message: format!("{s}: {message}"),
            },
            s => RestError::Invalid {
                service,
                status: s.as_u16(),
                message,
            },
        })
    }
}

/// The pause a `Retry-After` header asks for, in seconds (the HTTP-date form is not used by
/// the services overseer talks to).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The message of an error answer: its JSON `message` or `error`, else its text, cut short.
fn service_message(text: &str) -> String {
    let json: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let message = json
        .as_ref()
        .and_then(|v| v.get("message").or_else(|| v.get("error")))
        .and_then(|m| m.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| text.trim().to_string());
    message.chars().take(300).collect()
}
