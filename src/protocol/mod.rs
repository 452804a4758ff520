//! The WebSocket wire contract of docs/protocol.md §1: what clients send, what the server answers.
//!
//! Parsing never panics and never trusts a field: [`request::parse`] turns a text frame into a
//! validated [`request::Request`] or an [`error::ApiError`] that becomes an `error` reply.
//! [`reply::ServerMessage`] is every frame the server sends.

pub mod error;
pub mod history;
pub mod reply;
pub mod request;
pub mod validate;

/// The protocol version announced in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;
