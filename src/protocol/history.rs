//! The fields of the message history requests (docs/protocol.md, "Message history"): a `join`'s
//! `since` and a `history` request's `limit`, checked before anything touches shared state.

use serde::Deserialize;

use super::error::ApiError;
use crate::store::StreamPosition;
use crate::store::history::MAX_PAGE;

/// The longest stream id a `join`'s `since` may name (the server's are 32 characters).
pub const MAX_STREAM_ID: usize = 64;

/// A `join`'s `since` as sent.
#[derive(Deserialize)]
pub(super) struct RawSince {
    stream: String,
    #[serde(default)]
    offset: Option<u64>,
}

/// A `join`'s `since`: a stream id of the server's kind and an offset (null: none yet).
pub(super) fn join_since(raw: RawSince) -> Result<StreamPosition, ApiError> {
    if raw.stream.is_empty() || raw.stream.chars().count() > MAX_STREAM_ID {
        return Err(ApiError::bad_request(format!(
            "since.stream must be 1 to {MAX_STREAM_ID} characters"
        )));
    }
    Ok(StreamPosition {
        stream: raw.stream,
        offset: raw.offset.unwrap_or(0),
    })
}

/// A `history` request's `limit`: 1 to [`MAX_PAGE`], [`MAX_PAGE`] when absent.
pub(super) fn page_limit(limit: Option<u64>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(MAX_PAGE),
        Some(limit) if (1..=MAX_PAGE as u64).contains(&limit) => Ok(limit as usize),
        Some(_) => Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorCode;
    use crate::protocol::request::{ParseLimits, Request, parse};

    const LIMITS: ParseLimits = ParseLimits {
        max_publish_bytes: 16 * 1024,
    };

    fn code(text: &str) -> ErrorCode {
        parse(text, LIMITS).unwrap_err().error.code
    }

    #[test]
    fn history_takes_an_optional_since_and_a_limit_of_1_to_100() {
        let parsed = |t: &str| parse(t, LIMITS).map(|(_, r)| r).ok();
        assert_eq!(
            parsed(r#"{"type":"history","session":"s"}"#),
            Some(Request::History {
                session: "s".into(),
                since: None,
                limit: MAX_PAGE,
            })
        );
        assert_eq!(
            parsed(r#"{"type":"history","session":"s","since":4,"limit":1,"id":2}"#),
            Some(Request::History {
                session: "s".into(),
                since: Some(4),
                limit: 1,
            })
        );
        for bad in [
            r#"{"type":"history","session":"s","limit":0}"#,
            r#"{"type":"history","session":"s","limit":101}"#,
            r#"{"type":"history","session":"s","limit":"5"}"#,
            r#"{"type":"history","session":"s","since":-1}"#,
            r#"{"type":"history","session":"s","since":1.5}"#,
            r#"{"type":"history"}"#,
        ] {
            assert_eq!(code(bad), ErrorCode::BadRequest, "{bad}");
        }
        assert_eq!(
            code(r#"{"type":"history","session":"a b"}"#),
            ErrorCode::InvalidSession
        );
    }

    #[test]
    fn join_since_names_a_stream_and_an_offset_or_null() {
        let since = |t: &str| match parse(t, LIMITS).map(|(_, r)| r) {
            Ok(Request::Join { since, .. }) => Ok(since),
            Ok(other) => panic!("{other:?}"),
            Err(rejected) => Err(rejected.error.code),
        };
        let at = |stream: &str, offset| {
            Ok(Some(StreamPosition {
                stream: stream.into(),
                offset,
            }))
        };
        assert_eq!(
            since(r#"{"type":"join","session":"s","since":{"stream":"x","offset":7}}"#),
            at("x", 7)
        );
        assert_eq!(
            since(r#"{"type":"join","session":"s","since":{"stream":"x","offset":null}}"#),
            at("x", 0)
        );
        assert_eq!(
            since(r#"{"type":"join","session":"s","since":null}"#),
            Ok(None)
        );
        let long = format!(
            r#"{{"type":"join","session":"s","since":{{"stream":"{}"}}}}"#,
            "x".repeat(65)
        );
        for bad in [
            r#"{"type":"join","session":"s","since":{"offset":1}}"#,
            r#"{"type":"join","session":"s","since":{"stream":"","offset":1}}"#,
            r#"{"type":"join","session":"s","since":{"stream":"x","offset":-1}}"#,
            r#"{"type":"join","session":"s","since":5}"#,
            &long,
        ] {
            assert_eq!(since(bad), Err(ErrorCode::BadRequest), "{bad}");
        }
    }
}
