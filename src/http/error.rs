//! HTTP errors that render themselves: each handler returns `Result<_, HttpError>`, and actix-web
//! turns the error into `{"error": {"code", "message"}}` with the status that fits it.

use actix_web::http::StatusCode;
use actix_web::http::header::WWW_AUTHENTICATE;
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
            HttpError::ApiKey(_) => "unauthorized",
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
            HttpError::Unauthorized(_) | HttpError::ApiKey(_) => StatusCode::UNAUTHORIZED,
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
            HttpError::Unauthorized(_) => {
                response.insert_header((WWW_AUTHENTICATE, "Bearer"));
            }
            HttpError::UnsupportedWebSocketVersion => {
                response.insert_header(("Sec-WebSocket-Version", "13"));
            }
            _ => {}
        }
        response.json(json!({"error": {"code": self.code(), "message": message}}))
    }
}
