//! The LLM client: OpenAI-compatible chat completions over `reqwest`, with a per-request
//! timeout and retries with exponential backoff on transport errors, 429 and 5xx. Without a
//! configured endpoint every call answers "unavailable", so agents fall back to their rules.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::Error;
use crate::secret::Secret;

/// Wall clock for one completion, retries included. Long enough for a patch of a few hundred
/// lines from a slow model, short enough that a hung endpoint frees the calling agent well
/// within the longest deadline an agent may have.
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;

/// Retries after the first attempt: rides out a rate limit or a restart of the endpoint.
pub const DEFAULT_RETRIES: u32 = 3;

/// First pause between attempts; it doubles each time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Longest pause between attempts, whatever `Retry-After` asks for.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// The model asked when the configuration names none.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";

/// Where the LLM is and how to reach it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LlmConfig {
    /// Base URL of an OpenAI-compatible API (`https://api.openai.com/v1`); requests go to
    /// `<url>/chat/completions`. No URL: no LLM.
    pub url: Option<String>,
    /// Bearer key, sent as `Authorization: Bearer <key>`.
    #[serde(skip_serializing)]
    pub key: Option<Secret>,
    pub model: String,
    /// Wall clock for one completion, retries included.
    pub timeout_secs: u64,
    pub retries: u32,
}

impl Default for LlmConfig {
    fn default() -> Self {
        LlmConfig {
            url: None,
            key: None,
            model: DEFAULT_MODEL.to_string(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
            retries: DEFAULT_RETRIES,
        }
    }
}

/// One message of a conversation, in the OpenAI chat format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// What to complete.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub messages: Vec<Message>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
}

/// The model's answer and the tokens it cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub text: String,
    pub model: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Requests it took, retries included.
    pub attempts: u32,
}

/// An OpenAI-compatible chat-completions client.
pub struct Llm {
    config: LlmConfig,
    client: reqwest::Client,
}

impl Llm {
    pub fn new(config: &LlmConfig) -> Result<Llm, Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Unavailable(format!("cannot set up the LLM client: {e}")))?;
        Ok(Llm {
            config: config.clone(),
            client,
        })
    }

    /// The model requests go to, when an endpoint is configured.
    pub fn model(&self) -> Option<&str> {
        self.config.url.as_ref().map(|_| self.config.model.as_str())
    }

    /// The endpoint's base URL without any credentials in it, when one is configured.
    pub fn url(&self) -> Option<String> {
        let url = self.config.url.as_deref()?;
        Some(match reqwest::Url::parse(url) {
            Ok(mut parsed) => {
                let _ = parsed.set_username("");
                let _ = parsed.set_password(None);
                parsed.to_string()
            }
            Err(_) => url.to_string(),
        })
    }

    /// Ask the model to continue `request.messages`, retrying what can be retried.
    pub async fn complete(&self, request: &Request) -> Result<Completion, Error> {
        let Some(base) = &self.config.url else {
            return Err(Error::Unavailable(
                "no LLM endpoint is configured (set OVERSEER_LLM_URL)".to_string(),
            ));
        };
        let url = format!("{}/chat/completions", base.trim_end_matches('/'));
        let mut body = json!({ "model": self.config.model, "messages": request.messages });
        if let Some(max) = request.max_tokens {
            body["max_tokens"] = json!(max);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        let timeout = Duration::from_secs(self.config.timeout_secs.max(1));
        let deadline = Instant::now() + timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(left, self.attempt(&url, &body)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    return Err(Error::Unavailable(format!(
                        "the LLM endpoint did not answer within {} s",
                        timeout.as_secs()
                    )));
                }
            };
            match outcome {
                Ok(mut completion) => {
                    completion.attempts = attempt;
                    return Ok(completion);
                }
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(e, retry_after)) => {
                    let pause = retry_after.unwrap_or(backoff).min(MAX_BACKOFF);
                    if attempt > self.config.retries || Instant::now() + pause >= deadline {
                        return Err(e);
                    }
                    tracing::debug!(attempt, error = %e, pause_ms = pause.as_millis() as u64, "LLM request will be retried");
                    // The pause between attempts of a rate-limited or restarting endpoint.
                    tokio::time::sleep(pause).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    async fn attempt(&self, url: &str, body: &Value) -> Result<Completion, Attempt> {
        let mut request = self.client.post(url).json(body);
        if let Some(key) = &self.config.key {
            request = request.bearer_auth(key.expose());
        }
        let started = Instant::now();
        let response = request.send().await.map_err(|e| {
            Attempt::Retry(
                Error::Unavailable(format!("the LLM endpoint cannot be reached: {e}")),
                None,
            )
        })?;
        let status = response.status();
        let retry_after = crate::rest::retry_after(response.headers());
        let text = response.text().await.map_err(|e| {
            Attempt::Retry(
                Error::Unavailable(format!("the LLM endpoint's answer broke off: {e}")),
                None,
            )
        })?;
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(Attempt::Retry(
                Error::Unavailable(format!(
                    "the LLM endpoint answered {status}: {}",
                    clip(&text)
                )),
                retry_after,
            ));
        }
        if !status.is_success() {
            return Err(Attempt::Final(Error::Failed(format!(
                "the LLM endpoint refused the request ({status}): {}",
                clip(&text)
            ))));
        }
        let answer: ChatResponse = serde_json::from_str(&text).map_err(|e| {
            Attempt::Final(Error::Failed(format!(
                "the LLM endpoint's answer is not a chat completion: {e}"
            )))
        })?;
        let text = answer
            .choices
            .into_iter()
            .next()
            .and_then(|c| c.message.content)
            .ok_or_else(|| {
                Attempt::Final(Error::Failed(
                    "the LLM endpoint answered without a message".to_string(),
                ))
            })?;
        let usage = answer.usage.unwrap_or_default();
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            "LLM completion"
        );
        Ok(Completion {
            text,
            model: answer.model.unwrap_or_else(|| self.config.model.clone()),
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            attempts: 1,
        })
    }
}

enum Attempt {
    /// Worth another try, after the endpoint's `Retry-After` when it gave one.
    Retry(Error, Option<Duration>),
    Final(Error),
}

#[derive(Deserialize)]
struct ChatResponse {
    model: Option<String>,
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    message: ChoiceMessage,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    content: Option<String>,
}

#[derive(Deserialize, Default)]
struct Usage {
    #[serde(default)]
    prompt_tokens: u32,
    #[serde(default)]
    completion_tokens: u32,
}

fn clip(text: &str) -> &str {
    let mut end = text.len().min(500);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use axum::Json;
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    use axum::routing::post;

    use super::*;

    /// A chat-completions endpoint on loopback that fails the first `failures` requests with
    /// `status`, then answers; it counts the requests and checks the key.
    async fn endpoint(failures: u32, status: StatusCode) -> (String, Arc<AtomicU32>) {
        let seen = Arc::new(AtomicU32::new(0));
        let counter = seen.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            post(move |headers: axum::http::HeaderMap, Json(body): Json<Value>| {
                let counter = counter.clone();
                async move {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some("Bearer sk-test")
                    {
                        return (StatusCode::UNAUTHORIZED, "no key").into_response();
                    }
                    if n < failures {
                        return (status, [("retry-after", "0")], "busy").into_response();
                    }
                    let asked = body["messages"][0]["content"].as_str().unwrap_or("").to_string();
                    Json(json!({
                        "model": body["model"],
                        "choices": [{ "message": { "role": "assistant", "content": format!("echo: {asked}") } }],
                        "usage": { "prompt_tokens": 7, "completion_tokens": 3 },
                    }))
                    .into_response()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, seen)
    }

    fn client(url: Option<String>, retries: u32) -> Llm {
        Llm::new(&LlmConfig {
            url,
            key: Some(Secret::new("sk-test")),
            model: "test-model".to_string(),
            timeout_secs: 5,
            retries,
        })
        .unwrap()
    }

    fn ask(text: &str) -> Request {
        Request {
            messages: vec![Message {
                role: "user".to_string(),
                content: text.to_string(),
            }],
            ..Request::default()
        }
    }

    #[tokio::test]
    async fn answers_with_text_and_token_counts() {
        let (url, seen) = endpoint(0, StatusCode::OK).await;
        let completion = client(Some(url), 0).complete(&ask("hi")).await.unwrap();
        assert_eq!(completion.text, "echo: hi");
        assert_eq!(completion.model, "test-model");
        assert_eq!(
            (completion.prompt_tokens, completion.completion_tokens),
            (7, 3)
        );
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn retries_rate_limits_and_server_errors_then_answers() {
        let (url, seen) = endpoint(2, StatusCode::TOO_MANY_REQUESTS).await;
        let completion = client(Some(url), 3).complete(&ask("x")).await.unwrap();
        assert_eq!(completion.attempts, 3);
        assert_eq!(seen.load(Ordering::SeqCst), 3);

        let (url, seen) = endpoint(5, StatusCode::BAD_GATEWAY).await;
        let error = client(Some(url), 2).complete(&ask("x")).await.unwrap_err();
        assert!(matches!(error, Error::Unavailable(_)), "{error}");
        assert_eq!(seen.load(Ordering::SeqCst), 3, "one try and two retries");
    }

    #[tokio::test]
    async fn a_refusal_is_not_retried() {
        let (url, seen) = endpoint(0, StatusCode::OK).await;
        let mut llm = client(Some(url), 3);
        llm.config.key = Some(Secret::new("wrong"));
        llm = Llm::new(&llm.config).unwrap();
        let error = llm.complete(&ask("x")).await.unwrap_err();
        assert!(matches!(error, Error::Failed(_)), "{error}");
        assert!(error.to_string().contains("401"), "{error}");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_hung_endpoint_is_given_up_at_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        // Accepts connections and never answers.
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let mut config = client(Some(url), 5).config;
        config.timeout_secs = 1;
        let error = Llm::new(&config)
            .unwrap()
            .complete(&ask("x"))
            .await
            .unwrap_err();
        assert!(error.to_string().contains("within 1 s"), "{error}");
        held.abort();
    }

    #[test]
    fn the_url_is_shown_without_credentials() {
        let llm = client(Some("https://user:secret@llm.example/v1".to_string()), 0);
        assert_eq!(llm.url().as_deref(), Some("https://llm.example/v1"));
    }

    #[tokio::test]
    async fn without_an_endpoint_it_is_unavailable() {
        let llm = client(None, 3);
        assert_eq!(llm.model(), None);
        let error = llm.complete(&ask("x")).await.unwrap_err();
        assert!(matches!(error, Error::Unavailable(_)), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_unavailable_after_its_retries() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        drop(listener);
        let error = client(Some(url), 1).complete(&ask("x")).await.unwrap_err();
        assert!(matches!(error, Error::Unavailable(_)), "{error}");
    }
}
