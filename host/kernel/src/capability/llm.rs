//! `llm` for agents: the host's LLM client, with every call's worst case reserved against the
//! agent's and the host's budgets first ([`LlmBudgets`]), and its tokens recorded per agent in
//! the store and the metrics. Shadow runs see the model but never ask it.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use overseer_providers::{Llm, llm};
use overseer_sandbox::{GuestError, LlmCompletion, LlmRequest, LlmUsage};
use overseer_store::{LlmCall, Store};

use super::budget::{LlmBudgets, Reservation};
use super::{CallContext, Provider, guest_error};
use crate::metrics::Metrics;

/// Serves `llm` from one client.
pub struct LlmProvider {
    llm: Arc<Llm>,
    store: Store,
    metrics: Arc<Metrics>,
    budgets: Arc<LlmBudgets>,
}

impl LlmProvider {
    pub fn new(
        llm: Arc<Llm>,
        store: Store,
        metrics: Arc<Metrics>,
        budgets: Arc<LlmBudgets>,
    ) -> Self {
        LlmProvider {
            llm,
            store,
            metrics,
            budgets,
        }
    }
}

impl Provider<dyn overseer_sandbox::Llm> for LlmProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Llm> {
        Arc::new(AgentLlm {
            agent: call.agent.clone(),
            llm: self.llm.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            budgets: self.budgets.clone(),
        })
    }

    fn shadow(&self, _call: &CallContext) -> Arc<dyn overseer_sandbox::Llm> {
        Arc::new(ShadowLlm(self.llm.clone()))
    }
}

struct AgentLlm {
    agent: String,
    llm: Arc<Llm>,
    store: Store,
    metrics: Arc<Metrics>,
    budgets: Arc<LlmBudgets>,
}

#[async_trait]
impl overseer_sandbox::Llm for AgentLlm {
    fn model(&self) -> Option<String> {
        self.llm.model().map(str::to_string)
    }

    async fn complete(&self, request: LlmRequest) -> Result<LlmCompletion, GuestError> {
        // The completion's ceiling is always sent: it is what bounds the worst case.
        let max_tokens = request
            .max_tokens
            .unwrap_or(self.budgets.config().default_max_tokens);
        let reservation = match self.llm.model() {
            Some(model) => {
                let bytes: Vec<usize> = request.messages.iter().map(|m| m.content.len()).collect();
                let worst = self.budgets.worst_case(model, &bytes, max_tokens);
                Some(
                    self.budgets
                        .reserve(&self.agent, worst)
                        .map_err(GuestError::Unavailable)?,
                )
            }
            None => None,
        };
        let request = llm::Request {
            messages: request
                .messages
                .into_iter()
                .map(|m| llm::Message {
                    role: m.role.as_str().to_string(),
                    content: m.content,
                })
                .collect(),
            max_tokens: Some(max_tokens),
            temperature: request.temperature,
        };
        // The request runs on its own task, which records it: an invocation that hits its
        // deadline drops its side of the call, but the tokens were spent and are counted.
        let recorder = Recorder {
            agent: self.agent.clone(),
            llm: self.llm.clone(),
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            budgets: self.budgets.clone(),
        };
        let completion = tokio::spawn(async move { recorder.complete(request, reservation).await })
            .await
            .map_err(|e| GuestError::Unavailable(format!("LLM task: {e}")))?
            .map_err(guest_error)?;
        Ok(LlmCompletion {
            text: completion.text,
            model: completion.model,
            usage: LlmUsage {
                prompt_tokens: completion.prompt_tokens,
                completion_tokens: completion.completion_tokens,
            },
        })
    }
}

struct Recorder {
    agent: String,
    llm: Arc<Llm>,
    store: Store,
    metrics: Arc<Metrics>,
    budgets: Arc<LlmBudgets>,
}

impl Recorder {
    /// Ask the LLM, settle the call's reservation and record the call with its tokens, in
    /// the store and the metrics.
    async fn complete(
        &self,
        request: llm::Request,
        reservation: Option<Reservation>,
    ) -> Result<llm::Completion, overseer_providers::Error> {
        let started = Instant::now();
        let result = self.llm.complete(&request).await;
        let model = self.llm.model().unwrap_or("none").to_string();
        let (outcome, prompt, completion) = match &result {
            Ok(c) => ("ok", c.prompt_tokens, c.completion_tokens),
            Err(overseer_providers::Error::Unavailable(_)) => ("unavailable", 0, 0),
            Err(_) => ("failed", 0, 0),
        };
        if let Some(reservation) = reservation {
            match &result {
                // Priced as reserved: by the configured model, whatever name the endpoint
                // answers with.
                Ok(_) => self.budgets.settle(
                    reservation,
                    &model,
                    u64::from(prompt),
                    u64::from(completion),
                ),
                // Refused before any work: nothing was spent.
                Err(
                    overseer_providers::Error::InvalidInput(_)
                    | overseer_providers::Error::Denied(_),
                ) => self.budgets.settle(reservation, &model, 0, 0),
                // A timeout or a broken answer may still be billed: the worst case is spent.
                Err(_) => self.budgets.spend_reserved(reservation),
            }
        }
        self.metrics
            .llm_call(&self.agent, outcome, prompt, completion);
        if self.llm.model().is_some() {
            let call = LlmCall {
                agent: &self.agent,
                // The configured model: the name budgets are priced by, after a restart too.
                model: &model,
                prompt_tokens: prompt,
                completion_tokens: completion,
                outcome,
                ms: started.elapsed().as_millis() as u64,
            };
            if let Err(e) = self.store.insert_llm_call(&call).await {
                tracing::warn!(agent = self.agent, error = %e, "could not record an LLM call");
            }
        }
        result
    }
}

struct ShadowLlm(Arc<Llm>);

#[async_trait]
impl overseer_sandbox::Llm for ShadowLlm {
    fn model(&self) -> Option<String> {
        self.0.model().map(str::to_string)
    }

    async fn complete(&self, _request: LlmRequest) -> Result<LlmCompletion, GuestError> {
        Err(GuestError::Unavailable(
            "a shadow run (check, canary or health) asks no LLM".to_string(),
        ))
    }
}
