//! HTTP errors that render themselves: each handler returns `Result<_, HttpError>`, and actix-web
//! turns the error into `{"error": {"code", "message"}}` with the status that fits it.

use actix_web::http::StatusCode;
use actix_web::http::header::{ALLOW, WWW_AUTHENTICATE};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::auth::AuthError;
use crate::protocol::error::{ApiError, ErrorCode};

/// Why an HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// One of the protocol's error codes; the status follows from the code.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A missing, expired or invalid token: 401 with a `WWW-Authenticate` challenge.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// No such resource (a code no WebSocket reply uses).
    #[error("{0}")]
    NotFound(String),
    /// A WebSocket handshake for a version other than 13: 426 naming the one spoken here.
    #[error("this server speaks WebSocket version 13 only")]
    UnsupportedWebSocketVersion,
    /// The server API's key is missing or wrong: 401 (no bearer challenge: a token never helps).
    #[error("{0}")]
    ApiKey(String),
    /// A known path asked with a method it does not answer: 405 with `Allow` listing those it does.
    #[error("this path answers {allow} only")]
    MethodNotAllowed { allow: &'static str },
    /// `/metrics` without the bearer token of `--metrics-token`: 401 with a bearer challenge.
    #[error("/metrics needs the metrics token as a bearer token")]
    MetricsToken,
    /// A CORS preflight from an origin, or for a method or header, that `/api/*` does not allow.
    #[error("this origin, method or header may not make cross-origin requests here")]
    CorsRefused,
}

impl HttpError {
    pub fn api(code: ErrorCode, message: impl Into<String>) -> HttpError {
        HttpError::Api(ApiError::new(code, message))
    }

    fn code(&self) -> &'static str {
        match self {
            HttpError::Api(e) => e.code.as_str(),
            HttpError::Unauthorized(e) => e.code(),
            HttpError::NotFound(_) => "not_found",
            HttpError::UnsupportedWebSocketVersion => "bad_request",
            HttpError::ApiKey(_) | HttpError::MetricsToken => "unauthorized",
            HttpError::MethodNotAllowed { .. } => "method_not_allowed",
            HttpError::CorsRefused => "forbidden",
        }
    }
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::Api(e) => match e.code {
                ErrorCode::BadRequest | ErrorCode::InvalidSession | ErrorCode::InvalidProfile => {
                    StatusCode::BAD_REQUEST
                }
                ErrorCode::Forbidden => StatusCode::FORBIDDEN,
                ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            HttpError::Unauthorized(_) | HttpError::ApiKey(_) | HttpError::MetricsToken => {
                StatusCode::UNAUTHORIZED
            }
            HttpError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::CorsRefused => StatusCode::FORBIDDEN,
            HttpError::NotFound(_) => StatusCode::NOT_FOUND,
            HttpError::UnsupportedWebSocketVersion => StatusCode::UPGRADE_REQUIRED,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            HttpError::Api(e) => e.message.clone(),
            other => other.to_string(),
        };
        let mut response = HttpResponse::build(self.status_code());
        match self {
            HttpError::Unauthorized(_) | HttpError::MetricsToken => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            HttpError::MethodNotAllowed { allow } => {
                response.insert_header((ALLOW, *allow));
            }
            HttpError::UnsupportedWebSocketVersion => {
                response.insert_header(("Sec-WebSocket-Version", "13"));
            }
            _ => {}
        }
        response.json(json!({"error": {"code": self.code(), "message": message}}))
    }
}
