//! The one catalogue of API error codes. Every error response is
//! `{"error": {"code", "message"}}` with a code from [`ErrorCode`]; 5xx bodies are generic and
//! the details go to the log; 429 and 503 carry `Retry-After`.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tenantry_ingest::IngestErrorCode;

use crate::api::dto::{ErrorBody, ErrorResponse};
use crate::auth::AuthError;
use crate::error::{EngineError, InternalError, UserError};

/// What a client waits before retrying when the storage cluster did not answer (a node
/// restart or a leader election takes seconds).
const STORAGE_RETRY_AFTER_SECS: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidJson,
    /// A title or metadata value past its cap.
    FieldTooLarge,
    Unauthorized,
    /// A JWT that is malformed, badly signed, for another audience or issuer, or uses an
    /// algorithm its key does not allow.
    InvalidToken,
    TokenExpired,
    TokenNotYetValid,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    UnprocessableEntity,
    /// A document's job failed because of the document itself.
    Document(IngestErrorCode),
    Superseded,
    TenantQueueFull,
    /// A document or chunk quota (409).
    QuotaExceeded,
    /// The stored-bytes quota (413).
    QuotaExceededBytes,
    RateLimited,
    GeneratorNotConfigured,
    ModelNotAllowed,
    /// The tenant's LLM endpoint failed (after retries of transient errors).
    UpstreamError,
    UpstreamTimeout,
    Unavailable,
    InternalError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidJson => "invalid_json",
            Self::FieldTooLarge => "field_too_large",
            Self::Unauthorized => "unauthorized",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::TokenNotYetValid => "token_not_yet_valid",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::UnprocessableEntity => "unprocessable_entity",
            Self::Document(c) => c.as_str(),
            Self::Superseded => "superseded",
            Self::TenantQueueFull => "tenant_queue_full",
            Self::QuotaExceeded | Self::QuotaExceededBytes => "quota_exceeded",
            Self::RateLimited => "rate_limited",
            Self::GeneratorNotConfigured => "generator_not_configured",
            Self::ModelNotAllowed => "model_not_allowed",
            Self::UpstreamError => "upstream_error",
            Self::UpstreamTimeout => "upstream_timeout",
            Self::Unavailable => "unavailable",
            Self::InternalError => "internal_error",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest | Self::InvalidJson | Self::FieldTooLarge => {
                StatusCode::BAD_REQUEST
            }
            Self::Unauthorized
            | Self::InvalidToken
            | Self::TokenExpired
            | Self::TokenNotYetValid => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::ModelNotAllowed => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict
            | Self::Superseded
            | Self::GeneratorNotConfigured
            | Self::QuotaExceeded => StatusCode::CONFLICT,
            Self::UpstreamError => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::PayloadTooLarge | Self::QuotaExceededBytes => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType | Self::Document(IngestErrorCode::UnsupportedMediaType) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            Self::UnprocessableEntity => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Document(IngestErrorCode::EmbeddingFailed) | Self::InternalError => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            Self::Document(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TenantQueueFull | Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// 5xx codes whose message is replaced by a generic one (details go to the log).
    pub fn is_generic(self) -> bool {
        !matches!(
            self,
            Self::Unavailable | Self::UpstreamError | Self::UpstreamTimeout
        )
    }

    /// Job error codes as stored in the catalog, back to the catalogue.
    pub fn from_job_code(code: &str) -> Self {
        if let Some(c) = IngestErrorCode::ALL
            .into_iter()
            .find(|c| c.is_user_fault() && c.as_str() == code)
        {
            return Self::Document(c);
        }
        match code {
            "superseded" => Self::Superseded,
            "quota_exceeded" => Self::QuotaExceeded,
            "queue_full" => Self::Unavailable,
            _ => Self::InternalError,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "missing or invalid API key (Authorization: Bearer <key>)",
        )
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::User(u) => {
                let message = u.to_string();
                match u {
                    UserError::Invalid(_) => Self::new(ErrorCode::InvalidRequest, message),
                    UserError::NotFound(_) => Self::new(ErrorCode::NotFound, message),
                    UserError::FieldTooLarge { .. } => Self::new(ErrorCode::FieldTooLarge, message),
                    UserError::Conflict(_) => Self::new(ErrorCode::Conflict, message),
                    UserError::Forbidden(_) => Self::new(ErrorCode::Forbidden, message),
                    UserError::UnsupportedMediaType(_) => {
                        Self::new(ErrorCode::UnsupportedMediaType, message)
                    }
                    UserError::Document { code, .. } => {
                        Self::new(ErrorCode::Document(code), message)
                    }
                    UserError::GeneratorNotConfigured => {
                        Self::new(ErrorCode::GeneratorNotConfigured, message)
                    }
                    UserError::ModelNotAllowed(_) => Self::new(ErrorCode::ModelNotAllowed, message),
                    UserError::QuotaExceeded { what: "bytes", .. } => {
                        Self::new(ErrorCode::QuotaExceededBytes, message)
                    }
                    UserError::QuotaExceeded { .. } => Self::new(ErrorCode::QuotaExceeded, message),
                    UserError::RateLimited { retry_after_secs } => Self {
                        retry_after: Some(retry_after_secs),
                        ..Self::new(ErrorCode::RateLimited, message)
                    },
                    UserError::TenantQueueFull { retry_after_secs } => Self {
                        retry_after: Some(retry_after_secs),
                        ..Self::new(ErrorCode::TenantQueueFull, message)
                    },
                }
            }
            EngineError::Unavailable {
                reason,
                retry_after_secs,
            } => Self {
                retry_after: Some(retry_after_secs),
                ..Self::new(
                    ErrorCode::Unavailable,
                    format!("temporarily unavailable: {reason}"),
                )
            },
            EngineError::Internal(InternalError::StorageUnavailable(detail)) => {
                tracing::warn!(error = %detail, "storage backend unavailable");
                Self {
                    retry_after: Some(STORAGE_RETRY_AFTER_SECS),
                    ..Self::new(
                        ErrorCode::Unavailable,
                        "temporarily unavailable: storage is not answering",
                    )
                }
            }
            EngineError::Internal(i) => {
                tracing::error!(error = %i, "internal error");
                Self::new(ErrorCode::InternalError, "internal error")
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let code = match e {
            AuthError::Missing | AuthError::InvalidKey => ErrorCode::Unauthorized,
            AuthError::InvalidToken(_) => ErrorCode::InvalidToken,
            AuthError::Expired => ErrorCode::TokenExpired,
            AuthError::NotYetValid => ErrorCode::TokenNotYetValid,
        };
        Self::new(code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        // Never echo internals in a 5xx, whatever the message says.
        let message = if status.is_server_error() && self.code.is_generic() {
            "internal error".to_string()
        } else {
            self.message
        };
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code.as_str().to_string(),
                message,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        // For the request observer: errors are counted by code, never by message.
        resp.extensions_mut().insert(self.code);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
