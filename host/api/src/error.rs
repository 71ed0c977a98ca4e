//! The one mapping from errors to HTTP: a status and a JSON body
//! `{"error": {"code", "message"}}` with a stable code (and the version, when one answered).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use overseer_kernel::Error as KernelError;
use overseer_sandbox::Fault;
use overseer_selfedit::Error as EditError;
use serde_json::json;

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

    /// A malformed request.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    fn logged(self, error: &dyn std::fmt::Display) -> Self {
        if self.status.is_server_error()
            && self.status != StatusCode::BAD_GATEWAY
            && self.status != StatusCode::GATEWAY_TIMEOUT
        {
            tracing::error!(error = %error, "request failed");
        }
        self
    }
}

fn kernel_status(error: &KernelError) -> StatusCode {
    match error {
        KernelError::InvalidName(_)
        | KernelError::ReservedName(_)
        | KernelError::InvalidRequest(_)
        | KernelError::InvalidManifest(_) => StatusCode::BAD_REQUEST,
        KernelError::AgentNotFound(_)
        | KernelError::VersionNotFound { .. }
        | KernelError::AlertNotFound(_) => StatusCode::NOT_FOUND,
        KernelError::Quarantined(_) => StatusCode::SERVICE_UNAVAILABLE,
        KernelError::NoActiveVersion(_)
        | KernelError::NoPreviousVersion(_)
        | KernelError::VersionNotServable { .. } => StatusCode::CONFLICT,
        KernelError::Rejected { code, .. } => match *code {
            "not_wasm" | "not_a_component" => StatusCode::BAD_REQUEST,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        },
        KernelError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
        KernelError::Guest { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        KernelError::Fault { fault, .. } => match fault {
            Fault::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Fault::Capacity(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        },
        KernelError::Store(_) | KernelError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<KernelError> for ApiError {
    fn from(error: KernelError) -> Self {
        ApiError {
            status: kernel_status(&error),
            code: error.code(),
            message: error.to_string(),
            version: error.version(),
        }
        .logged(&error)
    }
}

impl From<EditError> for ApiError {
    fn from(error: EditError) -> Self {
        let status = match &error {
            EditError::Kernel(e) => return ApiError::from_kernel_ref(e, &error),
            EditError::InvalidRequest(_) | EditError::PathEscape(_) => StatusCode::BAD_REQUEST,
            EditError::EditNotFound(_) | EditError::SpecNotFound(_) => StatusCode::NOT_FOUND,
            EditError::Conflict(_) => StatusCode::CONFLICT,
            EditError::StaleBase { .. } | EditError::NoSource(_) => StatusCode::CONFLICT,
            EditError::PatchFailed(_) | EditError::NoChange => StatusCode::UNPROCESSABLE_ENTITY,
            EditError::Denied(_) => StatusCode::FORBIDDEN,
            EditError::Isolation(_) => StatusCode::SERVICE_UNAVAILABLE,
            EditError::Build(_) | EditError::Store(_) | EditError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError {
            status,
            code: error.code(),
            message: error.to_string(),
            version: None,
        }
        .logged(&error)
    }
}

impl ApiError {
    fn from_kernel_ref(kernel: &KernelError, error: &EditError) -> Self {
        ApiError {
            status: kernel_status(kernel),
            code: kernel.code(),
            message: error.to_string(),
            version: kernel.version(),
        }
        .logged(error)
    }
}

impl From<overseer_store::Error> for ApiError {
    fn from(error: overseer_store::Error) -> Self {
        ApiError::from(KernelError::from(error))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        ApiError::body(e.status(), e.body_text())
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
