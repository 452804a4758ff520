//! Client → server frames: parsing and validation into [`Request`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::{history, validate};
use crate::ids::SessionId;
use crate::model::Presence;
use crate::store::StreamPosition;

/// The `id` a client may put on a request; echoed on the direct reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum RequestId {
    Int(serde_json::Number),
    Str(String),
}

/// A profile field that may be absent (keep), null (clear) or set.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

/// One validated request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Join {
        session: SessionId,
        name: Option<String>,
        avatar: Option<String>,
        presence: Presence,
        /// The last message the client applied (`since`; a null offset is 0): the messages after
        /// it follow the `joined` reply, or it says `recovered: false`.
        since: Option<StreamPosition>,
    },
    Leave {
        session: SessionId,
    },
    Profile {
        name: Option<String>,
        avatar: Patch<String>,
    },
    Publish {
        session: SessionId,
        data: Value,
    },
    Members {
        session: SessionId,
    },
    End {
        session: SessionId,
        epoch: u64,
    },
    Ping,
    /// Read the session's kept messages after offset `since` (all kept ones without it), at most
    /// `limit` (1 to 100, default 100; [`history::page_limit`]).
    History {
        session: SessionId,
        since: Option<u64>,
        limit: usize,
    },
    /// Carry on an earlier connection on this socket (continuity); only as the first request.
    Resume {
        token: String,
        sessions: Vec<ResumeSession>,
    },
    /// Carry on under a new sign-in token (answers `token_expiring`).
    Refresh {
        token: String,
    },
}

/// A session a `resume` carries on, with what the client last applied there.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ResumeSession {
    pub session: SessionId,
    /// The last version the client applied.
    #[serde(default)]
    pub version: Option<u64>,
    /// The last message offset the client applied.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// Most sessions one `resume` may name (a connection is in at most `--max-sessions-per-connection`;
/// the rest are ignored by the server, but the frame itself stays small).
pub const MAX_RESUME_SESSIONS: usize = 64;

/// Longest sign-in token a `refresh` may carry, in bytes.
pub const MAX_SIGN_IN_TOKEN_BYTES: usize = 16 * 1024;

/// A frame that failed, with the id to echo if the frame had a usable one.
#[derive(Debug)]
pub struct Rejected {
    pub id: Option<RequestId>,
    pub error: ApiError,
}

/// Limits the parser enforces on its own.
#[derive(Clone, Copy, Debug)]
pub struct ParseLimits {
    /// Serialized size limit of `publish.data`, in bytes.
    pub max_publish_bytes: usize,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum RawRequest {
    Join {
        session: String,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        avatar: Option<String>,
        #[serde(default)]
        presence: Presence,
        #[serde(default)]
        since: Option<history::RawSince>,
    },
    Leave {
        session: String,
    },
    Profile {
        #[serde(default)]
        name: Option<String>,
        #[serde(default, deserialize_with = "patch")]
        avatar: Patch<String>,
    },
    Publish {
        session: String,
        data: Value,
    },
    Members {
        session: String,
    },
    End {
        session: String,
        epoch: u64,
    },
    Ping,
    History {
        session: String,
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        limit: Option<u64>,
    },
    Resume {
        token: String,
        #[serde(default)]
        sessions: Vec<RawResumeSession>,
    },
    Refresh {
        token: String,
    },
}

#[derive(Deserialize)]
struct RawResumeSession {
    session: String,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    offset: Option<u64>,
}

fn patch<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Patch<String>, D::Error> {
    Ok(match Option::<String>::deserialize(de)? {
        None => Patch::Clear,
        Some(value) => Patch::Set(value),
    })
}

/// Parses and validates one text frame.
pub fn parse(text: &str, limits: ParseLimits) -> Result<(Option<RequestId>, Request), Rejected> {
    let value: Value = serde_json::from_str(text).map_err(|e| Rejected {
        id: None,
        error: ApiError::bad_request(format!("frame is not valid JSON: {e}")),
    })?;
    let Value::Object(mut object) = value else {
        return Err(Rejected {
            id: None,
            error: ApiError::bad_request("a frame must be a JSON object"),
        });
    };
    let id = match object.remove("id") {
        None | Some(Value::Null) => None,
        Some(raw) => Some(request_id(raw).map_err(|error| Rejected { id: None, error })?),
    };
    let reject = |error: ApiError| Rejected {
        id: id.clone(),
        error,
    };
    let raw: RawRequest = serde_json::from_value(Value::Object(object))
        .map_err(|e| reject(ApiError::bad_request(format!("invalid request: {e}"))))?;
    let request = validate_request(raw, limits).map_err(reject)?;
    Ok((id, request))
}

/// The `id` of a frame that will not be parsed further (for example, a rate-limited one), if it has
/// a valid one. Cheap: only the top level of the frame is read.
pub fn peek_id(text: &str) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct OnlyId {
        id: Option<Value>,
    }
    let only: OnlyId = serde_json::from_str(text).ok()?;
    request_id(only.id?).ok()
}

fn request_id(raw: Value) -> Result<RequestId, ApiError> {
    match raw {
        Value::Number(n) if n.is_i64() || n.is_u64() => Ok(RequestId::Int(n)),
        Value::String(s) if s.chars().count() <= validate::MAX_STRING_ID => Ok(RequestId::Str(s)),
        _ => Err(ApiError::bad_request(
            "id must be an integer or a string of at most 64 characters",
        )),
    }
}

fn validate_request(raw: RawRequest, limits: ParseLimits) -> Result<Request, ApiError> {
    Ok(match raw {
        RawRequest::Join {
            session,
            name,
            avatar,
            presence,
            since,
        } => {
            let session = validate::session(session)?;
            if let Some(name) = &name {
                validate::display_name(name)?;
            }
            if let Some(avatar) = &avatar {
                validate::avatar_url(avatar)?;
            }
            let since = since.map(history::join_since).transpose()?;
            Request::Join {
                session,
                name,
                avatar,
                presence,
                since,
            }
        }
        RawRequest::Leave { session } => {
            let session = validate::session(session)?;
            Request::Leave { session }
        }
        RawRequest::Profile { name, avatar } => {
            if let Some(name) = &name {
                validate::display_name(name)?;
            }
            if let Patch::Set(avatar) = &avatar {
                validate::avatar_url(avatar)?;
            }
            Request::Profile { name, avatar }
        }
        RawRequest::Publish { session, data } => {
            let session = validate::session(session)?;
            validate::publish_data(&data, limits.max_publish_bytes)?;
            Request::Publish { session, data }
        }
        RawRequest::Members { session } => {
            let session = validate::session(session)?;
            Request::Members { session }
        }
        RawRequest::End { session, epoch } => {
            let session = validate::session(session)?;
            Request::End { session, epoch }
        }
        RawRequest::Ping => Request::Ping,
        RawRequest::History {
            session,
            since,
            limit,
        } => {
            let session = validate::session(session)?;
            Request::History {
                session,
                since,
                limit: history::page_limit(limit)?,
            }
        }
        RawRequest::Refresh { token } => {
            if token.is_empty() || token.len() > MAX_SIGN_IN_TOKEN_BYTES {
                return Err(ApiError::bad_request(format!(
                    "token must be 1 to {MAX_SIGN_IN_TOKEN_BYTES} bytes"
                )));
            }
            Request::Refresh { token }
        }
        RawRequest::Resume { token, sessions } => {
            if token.is_empty() || token.len() > crate::resume::MAX_TOKEN_CHARS {
                return Err(ApiError::bad_request(format!(
                    "token must be 1 to {} characters",
                    crate::resume::MAX_TOKEN_CHARS
                )));
            }
            if sessions.len() > MAX_RESUME_SESSIONS {
                return Err(ApiError::bad_request(format!(
                    "a resume may name at most {MAX_RESUME_SESSIONS} sessions"
                )));
            }
            let mut resumed: Vec<ResumeSession> = Vec::with_capacity(sessions.len());
            for raw in sessions {
                let session = validate::session(raw.session)?;
                if resumed.iter().any(|r| r.session == session) {
                    continue;
                }
                resumed.push(ResumeSession {
                    session,
                    version: raw.version,
                    offset: raw.offset,
                });
            }
            Request::Resume {
                token,
                sessions: resumed,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::ErrorCode;

    const LIMITS: ParseLimits = ParseLimits {
        max_publish_bytes: 16 * 1024,
    };

    fn code(text: &str) -> ErrorCode {
        parse(text, LIMITS).unwrap_err().error.code
    }

    #[test]
    fn parses_every_request_type() {
        let (id, req) = parse(
            r#"{"type":"join","session":"s1","id":7,"name":"Ada"}"#,
            LIMITS,
        )
        .unwrap();
        assert_eq!(id, Some(RequestId::Int(7.into())));
        assert_eq!(
            req,
            Request::Join {
                session: "s1".into(),
                name: Some("Ada".into()),
                avatar: None,
                presence: Presence::Full,
                since: None,
            }
        );
        let (_, counts) = parse(
            r#"{"type":"join","session":"s1","presence":"counts"}"#,
            LIMITS,
        )
        .unwrap();
        assert!(matches!(
            counts,
            Request::Join {
                presence: Presence::Counts,
                ..
            }
        ));
        assert!(
            parse(
                r#"{"type":"join","session":"s1","presence":"some"}"#,
                LIMITS
            )
            .is_err()
        );
        assert!(matches!(
            parse(r#"{"type":"leave","session":"s"}"#, LIMITS)
                .unwrap()
                .1,
            Request::Leave { .. }
        ));
        assert!(matches!(
            parse(r#"{"type":"members","session":"s"}"#, LIMITS)
                .unwrap()
                .1,
            Request::Members { .. }
        ));
        assert!(matches!(
            parse(r#"{"type":"end","session":"s","epoch":3}"#, LIMITS)
                .unwrap()
                .1,
            Request::End { epoch: 3, .. }
        ));
        assert!(matches!(
            parse(r#"{"type":"publish","session":"s","data":[1]}"#, LIMITS)
                .unwrap()
                .1,
            Request::Publish { .. }
        ));
        assert_eq!(
            parse(r#"{"type":"ping","id":"a"}"#, LIMITS).unwrap().1,
            Request::Ping
        );
    }

    #[test]
    fn resume_names_its_sessions_once_each_and_validates_them() {
        let (_, req) = parse(
            r#"{"type":"resume","token":"c.t","id":1,"sessions":[{"session":"s","version":4,"offset":null},{"session":"s"},{"session":"t"}]}"#,
            LIMITS,
        )
        .unwrap();
        let Request::Resume { token, sessions } = req else {
            panic!("a resume: {req:?}");
        };
        assert_eq!(token, "c.t");
        assert_eq!(
            sessions,
            vec![
                ResumeSession {
                    session: "s".into(),
                    version: Some(4),
                    offset: None
                },
                ResumeSession {
                    session: "t".into(),
                    version: None,
                    offset: None
                },
            ]
        );
        assert_eq!(
            code(r#"{"type":"resume","token":"c.t","sessions":[{"session":"a b"}]}"#),
            ErrorCode::InvalidSession
        );
        assert_eq!(
            code(r#"{"type":"resume","token":""}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(code(r#"{"type":"resume"}"#), ErrorCode::BadRequest);
        let long = format!(r#"{{"type":"resume","token":"{}"}}"#, "x".repeat(257));
        assert_eq!(code(&long), ErrorCode::BadRequest);
    }

    #[test]
    fn profile_avatar_distinguishes_absent_null_and_set() {
        let get = |t: &str| match parse(t, LIMITS).unwrap().1 {
            Request::Profile { avatar, .. } => avatar,
            other => panic!("{other:?}"),
        };
        assert_eq!(get(r#"{"type":"profile","name":"x"}"#), Patch::Keep);
        assert_eq!(get(r#"{"type":"profile","avatar":null}"#), Patch::Clear);
        assert_eq!(
            get(r#"{"type":"profile","avatar":"https://a.b/c"}"#),
            Patch::Set("https://a.b/c".into())
        );
    }

    #[test]
    fn rejects_with_the_documented_codes() {
        assert_eq!(code("not json"), ErrorCode::BadRequest);
        assert_eq!(code("[1]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"fly"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"join"}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"type":"join","session":5}"#),
            ErrorCode::BadRequest
        );
        assert_eq!(
            code(r#"{"type":"join","session":"a:b"}"#),
            ErrorCode::InvalidSession
        );
        assert_eq!(
            code(r#"{"type":"join","session":"a","name":""}"#),
            ErrorCode::InvalidProfile
        );
        assert_eq!(code(r#"{"type":"ping","id":1.5}"#), ErrorCode::BadRequest);
        assert_eq!(
            code(r#"{"type":"end","session":"a","epoch":-1}"#),
            ErrorCode::BadRequest
        );
        let big = format!(
            r#"{{"type":"publish","session":"a","data":"{}"}}"#,
            "x".repeat(17000)
        );
        assert_eq!(code(&big), ErrorCode::PayloadTooLarge);
    }

    #[test]
    fn a_rejected_frame_keeps_its_id() {
        let rejected = parse(r#"{"type":"join","session":"a b","id":"r1"}"#, LIMITS).unwrap_err();
        assert_eq!(rejected.id, Some(RequestId::Str("r1".into())));
    }
}
