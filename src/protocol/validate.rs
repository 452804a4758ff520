//! Field validators of docs/protocol.md §1.4. Invalid input is refused here, before any store access.

use super::error::{ApiError, ErrorCode};
use crate::ids::SessionId;

pub const MAX_SESSION_ID: usize = 128;
pub const MAX_NAME: usize = 64;
pub const MAX_AVATAR: usize = 512;
pub const MAX_STRING_ID: usize = 64;
/// Deepest nesting of arrays and objects accepted in `publish.data`. (The frame parser itself
/// refuses anything deeper than 128 levels.)
pub const MAX_DATA_DEPTH: usize = 32;

/// Nesting depth of a JSON value: 0 for a scalar, 1 for a flat array or object.
pub fn json_depth(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(depth + 1);
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    deepest
}

/// `publish` data (a member's, or the server API's): at most [`MAX_DATA_DEPTH`] levels deep and
/// `max_bytes` serialized.
pub fn publish_data(data: &serde_json::Value, max_bytes: usize) -> Result<(), ApiError> {
    if json_depth(data) > MAX_DATA_DEPTH {
        return Err(ApiError::bad_request(format!(
            "publish data nests deeper than {MAX_DATA_DEPTH} levels"
        )));
    }
    let size = serde_json::to_vec(data).map_or(usize::MAX, |v| v.len());
    if size > max_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("publish data is {size} bytes serialized; the limit is {max_bytes}"),
        ));
    }
    Ok(())
}

/// Session ids: 1–128 chars of `[A-Za-z0-9_-]`.
/// `raw` as a [`SessionId`], if it is a valid one.
pub fn session(raw: String) -> Result<SessionId, ApiError> {
    session_id(&raw)?;
    Ok(SessionId::new(raw))
}

pub fn session_id(id: &str) -> Result<(), ApiError> {
    let valid = !id.is_empty()
        && id.len() <= MAX_SESSION_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorCode::InvalidSession,
            "session ids are 1-128 characters of A-Z, a-z, 0-9, '_' and '-'",
        ))
    }
}

/// Display names: 1–64 characters, no control characters, not only white space.
pub fn display_name(name: &str) -> Result<(), ApiError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME {
        return Err(ApiError::new(
            ErrorCode::InvalidProfile,
            "name must be 1-64 characters",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::new(
            ErrorCode::InvalidProfile,
            "name must not contain control characters",
        ));
    }
    if name.trim().is_empty() {
        return Err(ApiError::new(
            ErrorCode::InvalidProfile,
            "name must not be only white space",
        ));
    }
    Ok(())
}

/// Avatars: an absolute http(s) URL of at most 512 characters, no white space or control characters.
pub fn avatar_url(url: &str) -> Result<(), ApiError> {
    let err = |msg: &str| Err(ApiError::new(ErrorCode::InvalidProfile, msg));
    // Characters, as docs/protocol.md §1.4 counts them (a byte count refused valid non-ASCII URLs).
    if url.chars().count() > MAX_AVATAR {
        return err("avatar must be at most 512 characters");
    }
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else {
        return err("avatar must be an http or https URL");
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return err("avatar URL has no host");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return err("avatar URL must not contain white space or control characters");
    }
    Ok(())
}

/// User ids from tokens: 1–128 characters, no control characters.
pub fn user_id(user: &str) -> bool {
    let chars = user.chars().count();
    (1..=128).contains(&chars) && !user.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_nesting() {
        use serde_json::json;
        assert_eq!(json_depth(&json!(1)), 0);
        assert_eq!(json_depth(&json!([1, 2])), 1);
        assert_eq!(json_depth(&json!({"a": [{"b": []}]})), 4);
    }

    #[test]
    fn session_ids_follow_the_charset_and_length() {
        assert!(session_id("board-7_A").is_ok());
        assert!(session_id(&"a".repeat(128)).is_ok());
        for bad in ["", "a b", "a:b", "{s}", "a*", "é", &"a".repeat(129)] {
            assert_eq!(
                session_id(bad).unwrap_err().code,
                ErrorCode::InvalidSession,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_refuse_control_characters_and_overlength() {
        assert!(display_name("Ada Lovelace").is_ok());
        assert!(display_name(&"é".repeat(64)).is_ok());
        for bad in ["", "   ", "a\nb", "\u{7}", &"x".repeat(65)] {
            assert_eq!(
                display_name(bad).unwrap_err().code,
                ErrorCode::InvalidProfile,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn avatars_must_be_http_urls() {
        assert!(avatar_url("https://example.com/a.png").is_ok());
        assert!(avatar_url("http://cdn.example/x").is_ok());
        let too_long = format!("https://e.com/{}", "a".repeat(600));
        for bad in [
            "javascript:alert(1)",
            "https://",
            "ftp://x/y",
            "https://a b",
            too_long.as_str(),
        ] {
            assert_eq!(
                avatar_url(bad).unwrap_err().code,
                ErrorCode::InvalidProfile,
                "{bad:?}"
            );
        }
    }
}
