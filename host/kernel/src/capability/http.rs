//! `http` for agents: requests made by the host to the origins the agent's manifest allows.
//! Shadow runs send nothing: a request may have effects.

use std::sync::Arc;

use async_trait::async_trait;
use overseer_providers::Outbound;
use overseer_sandbox::{GuestError, HttpRequest, HttpResponse};

use super::{CallContext, Provider, guest_error};

/// Serves `http` from one client.
pub struct HttpProvider {
    outbound: Arc<Outbound>,
}

impl HttpProvider {
    pub fn new(outbound: Arc<Outbound>) -> Self {
        HttpProvider { outbound }
    }
}

impl Provider<dyn overseer_sandbox::Http> for HttpProvider {
    fn real(&self, call: &CallContext) -> Arc<dyn overseer_sandbox::Http> {
        Arc::new(AgentHttp {
            outbound: self.outbound.clone(),
            allow: call.manifest.capabilities.http_allow.clone(),
        })
    }

    fn shadow(&self, _call: &CallContext) -> Arc<dyn overseer_sandbox::Http> {
        Arc::new(ShadowHttp)
    }
}

struct AgentHttp {
    outbound: Arc<Outbound>,
    allow: Vec<String>,
}

#[async_trait]
impl overseer_sandbox::Http for AgentHttp {
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, GuestError> {
        let request = overseer_providers::HttpRequest {
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: request.body,
            timeout_ms: request.timeout_ms,
        };
        let response = self
            .outbound
            .fetch(&self.allow, request)
            .await
            .map_err(guest_error)?;
        Ok(HttpResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        })
    }
}

struct ShadowHttp;

#[async_trait]
impl overseer_sandbox::Http for ShadowHttp {
    async fn fetch(&self, _request: HttpRequest) -> Result<HttpResponse, GuestError> {
        Err(GuestError::Unavailable(
            "a shadow run (check, canary or health) sends no request: it may have effects"
                .to_string(),
        ))
    }
}
