//! Request bodies of the server API: JSON read up to a size limit, into a type that refuses
//! unknown fields, with every failure a JSON error answer (never actix's plain-text ones).

use actix_web::web;
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::http::error::HttpError;
use crate::protocol::error::ErrorCode;

/// Largest body of a route other than `publish`, in bytes (a presence read of 100 sessions of
/// 128 characters is about 13 KB).
pub const MAX_BODY: usize = 64 * 1024;

/// Reads the body (at most `limit` bytes) and parses it as a `T`.
pub async fn json<T: DeserializeOwned>(
    mut payload: web::Payload,
    limit: usize,
) -> Result<T, HttpError> {
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            HttpError::api(
                ErrorCode::BadRequest,
                format!("could not read the body: {e}"),
            )
        })?;
        if body.len() + chunk.len() > limit {
            return Err(HttpError::api(
                ErrorCode::PayloadTooLarge,
                format!("the body is larger than {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| {
        HttpError::api(
            ErrorCode::BadRequest,
            format!("the body is not the JSON object this route takes: {e}"),
        )
    })
}

/// For a field that must be present even when it may be `null` (serde would read a missing
/// `serde_json::Value` field as `null`).
pub fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<serde_json::Value, D::Error> {
    serde::Deserialize::deserialize(d)
}
