//! Error codes of docs/protocol.md §1.9, and the error value every layer returns to a client.

use serde::Serialize;

/// The closed list of error codes a client may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidSession,
    InvalidProfile,
    NotMember,
    TooManySessions,
    SessionFull,
    SessionEnded,
    Forbidden,
    NotLeader,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    Internal,
    /// The `resume` could not be honoured (unknown, forged or expired token, or not the first request).
    ResumeFailed,
    /// A `refresh` token that does not verify (expired, wrongly signed, malformed).
    InvalidToken,
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidSession => "invalid_session",
            ErrorCode::InvalidProfile => "invalid_profile",
            ErrorCode::NotMember => "not_member",
            ErrorCode::TooManySessions => "too_many_sessions",
            ErrorCode::SessionFull => "session_full",
            ErrorCode::SessionEnded => "session_ended",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotLeader => "not_leader",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::ResumeFailed => "resume_failed",
            ErrorCode::InvalidToken => "invalid_token",
        }
    }
}

/// An error answer: a code from the closed list and a human-readable message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn not_member(session: &str) -> ApiError {
        ApiError::new(
            ErrorCode::NotMember,
            format!("this connection is not a member of session {session:?}"),
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> ApiError {
        use crate::store::StoreError;
        match err {
            StoreError::SessionEnded => {
                ApiError::new(ErrorCode::SessionEnded, "this session has been ended")
            }
            StoreError::SessionFull(limit) => ApiError::new(
                ErrorCode::SessionFull,
                format!("the session already has {limit} members"),
            ),
            StoreError::NotLeader => ApiError::new(
                ErrorCode::NotLeader,
                "only the current leader with the current epoch may do this",
            ),
            StoreError::Unavailable(reason) => ApiError::new(
                ErrorCode::Unavailable,
                format!("the shared store is unreachable: {reason}"),
            ),
            StoreError::Corrupt(reason) => ApiError::new(ErrorCode::Internal, reason),
        }
    }
}
