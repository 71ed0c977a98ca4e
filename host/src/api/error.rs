//! The one mapping from host errors to HTTP: a status and a JSON body
//! `{"error": {"code", "message"}}` with a stable code (and the version, when one answered).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::Error;

/// An error as the API returns it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub version: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            version: None,
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this request needs `Authorization: Bearer <token>`",
        )
    }

    /// A body that could not be read or parsed; an oversized one is 413.
    pub fn body(status: StatusCode, message: impl Into<String>) -> Self {
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "payload_too_large", message)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        let status = match &error {
            Error::InvalidName(_)
            | Error::InvalidRequest(_)
            | Error::InvalidManifest(_)
            | Error::PathEscape(_) => StatusCode::BAD_REQUEST,
            Error::AgentNotFound(_)
            | Error::VersionNotFound { .. }
            | Error::AlertNotFound(_)
            | Error::EditNotFound(_) => StatusCode::NOT_FOUND,
            Error::StaleBase { .. } | Error::NoSource(_) => StatusCode::CONFLICT,
            Error::PatchFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Denied(_) => StatusCode::FORBIDDEN,
            Error::LlmUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Quarantined(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::NoActiveVersion(_)
            | Error::NoPreviousVersion(_)
            | Error::VersionNotServable { .. } => StatusCode::CONFLICT,
            Error::Rejected { code, .. } => match *code {
                "not_wasm" | "not_a_component" => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            Error::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Guest { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Fault { fault, .. } => match fault {
                overseer_sandbox::Fault::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                overseer_sandbox::Fault::Capacity(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_GATEWAY,
            },
            Error::Store(_) | Error::Build(_) | Error::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        if status.is_server_error()
            && status != StatusCode::BAD_GATEWAY
            && status != StatusCode::GATEWAY_TIMEOUT
        {
            tracing::error!(error = %error, "request failed");
        }
        ApiError {
            status,
            code: error.code(),
            message: error.to_string(),
            version: error.version(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(version) = self.version {
            error["version"] = json!(version);
        }
        (self.status, Json(json!({ "error": error }))).into_response()
    }
}
