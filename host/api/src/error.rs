//! The one mapping from errors to HTTP: a status and a JSON body
//! `{"error": {"code", "message"}}` with a stable code (and the version, when one answered).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use overseer_kernel::Error as KernelError;
use overseer_sandbox::Fault;
use overseer_selfedit::Error as EditError;

use crate::openapi::{ErrorBody, ErrorDetail};

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

    /// A body that could not be read or parsed; an oversized one is 413, one of a content
    /// type the endpoint does not take 415.
    pub fn body(status: StatusCode, message: impl Into<String>) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "payload_too_large", message),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                ApiError::new(status, "unsupported_media_type", message)
            }
            _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message),
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
        debug_assert!(
            CODES.contains(&self.code),
            "error code {:?} is not in CODES (nor the README's table)",
            self.code
        );
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
                version: self.version,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

/// Every stable code an error answer may carry, as the README's table lists them by status.
pub(crate) const CODES: &[&str] = &[
    // 400
    "invalid_name",
    "reserved_name",
    "invalid_request",
    "invalid_template",
    "invalid_manifest",
    "not_wasm",
    "not_a_component",
    "path_escape",
    "invalid_order",
    "unknown_symbol",
    "look_ahead",
    "invalid_range",
    "over_budget_cap",
    "empty_range",
    "invalid_data",
    "no_feed",
    // 401, 403, 421
    "unauthorized",
    "forbidden_origin",
    "denied",
    "provider_forbidden",
    "halted",
    "reducing",
    "symbol_not_allowed",
    "short_not_allowed",
    "max_order_notional",
    "max_position",
    "max_gross_exposure",
    "throttled",
    "misdirected_request",
    // 404
    "agent_not_found",
    "version_not_found",
    "alert_not_found",
    "edit_not_found",
    "prompt_not_found",
    "experiment_not_found",
    "spec_not_found",
    "decision_not_found",
    "backtest_not_found",
    "order_not_found",
    "no_report",
    "unknown_loop",
    "not_found",
    // 409
    "no_active_version",
    "no_previous_version",
    "version_not_servable",
    "stale_base",
    "no_source",
    "order_not_open",
    "no_price",
    "conflict",
    "not_awaiting",
    "loop_running",
    // 405, 408, 413, 414, 415
    "method_not_allowed",
    "request_timeout",
    "payload_too_large",
    "uri_too_long",
    "unsupported_media_type",
    // 422
    "patch_failed",
    "no_change",
    "build_failed",
    "invalid_decision",
    "invalid_component",
    "wrong_world",
    "unknown_import",
    "check_failed",
    "unhealthy",
    "canary_failed",
    "invalid_input",
    "unavailable",
    "failed",
    "provider_invalid",
    // 429
    "overloaded",
    "busy",
    // 500
    "internal",
    "store_error",
    // 502
    "market_data",
    "trap",
    "fuel_exhausted",
    "memory_exceeded",
    "answer_too_large",
    "provider_unauthorized",
    "provider_rate_limited",
    "provider_unavailable",
    "provider_malformed",
    // 503
    "quarantined",
    "build_isolation_unavailable",
    "trading_disabled",
    "overseer_disabled",
    "budgets_unavailable",
    "backtests_unavailable",
    // 504
    "timeout",
];
