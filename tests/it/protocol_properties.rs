//! Property tests of the frame parser and the field validators (docs/protocol.md §1.4, §1.9).
//!
//! Every property compares the code with an oracle written from the documented rules, not from the
//! code: whatever a client sends (arbitrary text, arbitrary JSON, deep nesting, huge numbers, odd
//! Unicode), `parse` returns either exactly the request the rules describe or an error whose code is
//! the one the rules name, and never panics.

use proptest::prelude::*;
use rollcall::model::Presence;
use rollcall::protocol::error::ErrorCode;
use rollcall::protocol::request::{ParseLimits, Patch, Request, RequestId, parse, peek_id};
use rollcall::protocol::validate;
use rollcall::store::StreamPosition;
use serde_json::{Map, Number, Value, json};

/// A small publish limit, so that generated data crosses it often.
const LIMITS: ParseLimits = ParseLimits {
    max_publish_bytes: 200,
};

const CASES: u32 = 384;

// ---------------------------------------------------------------------------------------------
// The oracle: the documented rules, written independently of src/protocol.
// ---------------------------------------------------------------------------------------------

/// `^[A-Za-z0-9_-]{1,128}$`.
fn session_ok(s: &str) -> bool {
    let n = s.chars().count();
    (1..=128).contains(&n)
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// 1–64 characters, no control characters (and, as the project's validator documents, not only
/// white space).
fn name_ok(s: &str) -> bool {
    let n = s.chars().count();
    (1..=64).contains(&n)
        && !s.chars().any(char::is_control)
        && s.chars().any(|c| !c.is_whitespace())
}

/// An absolute http(s) URL with a host, at most 512 characters, no white space or control
/// characters.
fn avatar_ok(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let host: String = rest
        .chars()
        .take_while(|c| !matches!(c, '/' | '?' | '#'))
        .collect();
    s.chars().count() <= 512
        && !host.is_empty()
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
}

/// Nesting depth: 0 for a scalar, 1 + the deepest child for an array or object.
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What the rules say a frame must give.
#[derive(Debug, PartialEq)]
enum Expect {
    Request(Option<RequestId>, Request),
    Error(Option<RequestId>, ErrorCode),
}

/// A required string field; `Err(())` when absent or not a string.
fn req_str(o: &Map<String, Value>, k: &str) -> Result<String, ()> {
    match o.get(k) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(()),
    }
}

/// An optional string field: absent or null = none; any other type is an error.
fn opt_str(o: &Map<String, Value>, k: &str) -> Result<Option<String>, ()> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        _ => Err(()),
    }
}

fn expected_text(text: &str) -> Expect {
    match serde_json::from_str::<Value>(text) {
        Ok(v) => expected(&v),
        Err(_) => Expect::Error(None, ErrorCode::BadRequest),
    }
}

fn expected(frame: &Value) -> Expect {
    use ErrorCode::*;
    let Value::Object(o) = frame else {
        return Expect::Error(None, BadRequest);
    };
    let id = match o.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(RequestId::Int(n.clone())),
        Some(Value::String(s)) if s.chars().count() <= 64 => Some(RequestId::Str(s.clone())),
        Some(_) => return Expect::Error(None, BadRequest),
    };
    let err = |code| Expect::Error(id.clone(), code);
    let bad = || Expect::Error(id.clone(), BadRequest);
    let Some(Value::String(kind)) = o.get("type") else {
        return bad();
    };
    // First every field must be present and well typed (bad_request) ...
    let typed = match kind.as_str() {
        "ping" => Ok(Request::Ping),
        "join" => (|| {
            Ok(Request::Join {
                session: req_str(o, "session")?.into(),
                name: opt_str(o, "name")?,
                avatar: opt_str(o, "avatar")?,
                presence: match o.get("presence") {
                    None => Presence::Full,
                    Some(Value::String(p)) if p == "full" => Presence::Full,
                    Some(Value::String(p)) if p == "counts" => Presence::Counts,
                    Some(_) => return Err(()),
                },
                since: match o.get("since") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(since)) => Some(StreamPosition {
                        stream: req_str(since, "stream")?,
                        offset: match since.get("offset") {
                            None | Some(Value::Null) => 0,
                            Some(offset) => offset.as_u64().ok_or(())?,
                        },
                    }),
                    Some(_) => return Err(()),
                },
            })
        })(),
        "leave" => req_str(o, "session").map(|session| Request::Leave {
            session: session.into(),
        }),
        "members" => req_str(o, "session").map(|session| Request::Members {
            session: session.into(),
        }),
        "profile" => (|| {
            let avatar = match o.get("avatar") {
                None => Patch::Keep,
                Some(Value::Null) => Patch::Clear,
                Some(Value::String(s)) => Patch::Set(s.clone()),
                Some(_) => return Err(()),
            };
            Ok(Request::Profile {
                name: opt_str(o, "name")?,
                avatar,
            })
        })(),
        "publish" => (|| {
            let session = req_str(o, "session")?;
            let data = o.get("data").cloned().ok_or(())?;
            Ok(Request::Publish {
                session: session.into(),
                data,
            })
        })(),
        "end" => (|| {
            let session = req_str(o, "session")?;
            let epoch = o.get("epoch").and_then(Value::as_u64).ok_or(())?;
            Ok(Request::End {
                session: session.into(),
                epoch,
            })
        })(),
        _ => Err(()),
    };
    let Ok(request) = typed else {
        return bad();
    };
    // ... then the values must follow the rules, session first.
    let session = match &request {
        Request::Join { session, .. }
        | Request::Leave { session }
        | Request::Members { session }
        | Request::Publish { session, .. }
        | Request::End { session, .. }
        | Request::History { session, .. } => Some(session),
        Request::Profile { .. }
        | Request::Ping
        | Request::Resume { .. }
        | Request::Refresh { .. } => None,
    };
    if session.is_some_and(|s| !session_ok(s)) {
        return err(InvalidSession);
    }
    let profile_bad = match &request {
        Request::Join { name, avatar, .. } => {
            name.as_deref().is_some_and(|n| !name_ok(n))
                || avatar.as_deref().is_some_and(|a| !avatar_ok(a))
        }
        Request::Profile { name, avatar } => {
            name.as_deref().is_some_and(|n| !name_ok(n))
                || matches!(avatar, Patch::Set(a) if !avatar_ok(a))
        }
        _ => false,
    };
    if profile_bad {
        return err(InvalidProfile);
    }
    if let Request::Join {
        since: Some(since), ..
    } = &request
        && !(1..=64).contains(&since.stream.chars().count())
    {
        return bad();
    }
    if let Request::Publish { data, .. } = &request {
        if depth(data) > 32 {
            return bad();
        }
        let size = serde_json::to_string(data)
            .expect("a Value serializes")
            .len();
        if size > LIMITS.max_publish_bytes {
            return err(PayloadTooLarge);
        }
    }
    Expect::Request(id, request)
}

/// Runs the parser and checks it against the oracle and against the closed list of codes.
fn check(text: &str) -> Result<(), TestCaseError> {
    let got = match parse(text, LIMITS) {
        Ok((id, request)) => Expect::Request(id, request),
        Err(rejected) => {
            prop_assert!(
                !rejected.error.message.is_empty(),
                "an error reply needs a message: {text:?}"
            );
            Expect::Error(rejected.id, rejected.error.code)
        }
    };
    if let Expect::Error(_, code) = &got {
        // The parser only ever answers with these documented codes.
        prop_assert!(
            matches!(
                code,
                ErrorCode::BadRequest
                    | ErrorCode::InvalidSession
                    | ErrorCode::InvalidProfile
                    | ErrorCode::PayloadTooLarge
            ),
            "the parser answered {code:?} for {text:?}"
        );
    }
    let want = expected_text(text);
    prop_assert_eq!(&got, &want, "frame {:?}", text);
    // peek_id (used on rate-limited frames) never panics and finds the id the parser echoes.
    let peeked = peek_id(text);
    if let Expect::Request(id, _) = &got {
        prop_assert_eq!(&peeked, id, "peek_id of {:?}", text);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------------------------

/// Strings near every rule's edges: valid ids, ids with forbidden characters, odd Unicode, control
/// characters, lengths around the limits, URL-like strings.
fn tricky_string() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[A-Za-z0-9_-]{1,130}",
        2 => any::<String>(),
        2 => "[a-z0-9*{}: \t\n\r\u{0}\u{1b}\u{7f}\u{85}\u{a0}\u{200b}\u{2028}\u{feff}é日🦀_-]{0,70}",
        1 => (0usize..140, prop::sample::select(vec!['a', 'é', ' ', '🦀', '-']))
            .prop_map(|(n, c)| c.to_string().repeat(n)),
        2 => ("(https?|ftp|HTTPS|javascript)://", "[a-z0-9é./?#: \t\u{0}-]{0,24}")
            .prop_map(|(scheme, rest)| format!("{scheme}{rest}")),
        1 => (prop::sample::select(vec!["https://h/", "http://h/"]), 490usize..530, prop::sample::select(vec!['a', 'é', '日']))
            .prop_map(|(prefix, n, c)| format!("{prefix}{}", c.to_string().repeat(n))),
        2 => ("[A-Za-z0-9_-]{0,20}", prop::sample::select(vec!['*', '{', '}', ':', ' ', '.', '/', '+', 'é', '日', '🦀', '\0', '\n', '\u{7f}']), "[A-Za-z0-9_-]{0,20}")
            .prop_map(|(a, c, b)| format!("{a}{c}{b}")),
        1 => Just(String::new()),
    ]
    .boxed()
}

/// Numbers of every kind a client can write, including ones no integer type holds.
fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u64..10).prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(1.0)),
        Just(json!(-0.0)),
        Just(json!(1e300)),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        tricky_string().prop_map(Value::String),
    ]
    .boxed()
}

/// Arbitrary JSON values, nested up to 6 levels.
fn any_json() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(tricky_string(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
        .boxed()
}

/// A value wrapped in `levels` arrays or objects: around the 32-level data limit.
fn deep_json() -> BoxedStrategy<Value> {
    (0usize..40, any::<bool>(), leaf())
        .prop_map(|(levels, objects, leaf)| {
            (0..levels).fold(leaf, |inner, _| {
                if objects {
                    json!({ "k": inner })
                } else {
                    json!([inner])
                }
            })
        })
        .boxed()
}

/// A field value: usually a string near the rules' edges, sometimes anything at all.
fn field_value() -> BoxedStrategy<Value> {
    prop_oneof![
        5 => tricky_string().prop_map(Value::String),
        1 => leaf(),
        1 => any_json(),
    ]
    .boxed()
}

/// Objects shaped like requests: a known or unknown type, and each field present or absent, with
/// a well-typed or ill-typed value.
fn request_like() -> BoxedStrategy<Value> {
    let kind = prop_oneof![
        8 => prop::sample::select(vec!["join", "leave", "profile", "publish", "members", "end", "ping"])
            .prop_map(Value::from),
        1 => field_value(),
    ];
    let id = prop_oneof![number(), "[a-z0-9é]{0,70}".prop_map(Value::String), leaf(),];
    let data = prop_oneof![
        any_json(),
        deep_json(),
        "x{150,220}".prop_map(Value::String)
    ];
    let epoch = prop_oneof![3 => (0u64..5).prop_map(Value::from), 1 => number(), 1 => leaf()];
    (
        prop::option::weighted(0.95, kind),
        prop::option::weighted(0.85, field_value()),
        prop::option::weighted(0.4, field_value()),
        prop::option::weighted(0.4, field_value()),
        prop::option::weighted(0.5, data),
        prop::option::weighted(0.5, epoch),
        prop::option::weighted(0.6, id),
        prop::option::weighted(0.1, (tricky_string(), field_value())),
    )
        .prop_map(|(kind, session, name, avatar, data, epoch, id, extra)| {
            let mut o = Map::new();
            let mut put = |k: &str, v: Option<Value>| {
                if let Some(v) = v {
                    o.insert(k.to_owned(), v);
                }
            };
            put("type", kind);
            put("session", session);
            put("name", name);
            put("avatar", avatar);
            put("data", data);
            put("epoch", epoch);
            put("id", id);
            if let Some((k, v)) = extra {
                o.insert(k, v);
            }
            Value::Object(o)
        })
        .boxed()
}

/// Text a JSON serializer would not write: huge or odd number literals, truncation, deep nesting,
/// duplicate keys, stray bytes.
fn raw_text() -> BoxedStrategy<String> {
    let literal = "-?[0-9]{1,40}(\\.[0-9]{0,5})?([eE][+-]?[0-9]{1,4})?";
    prop_oneof![
        2 => any::<String>(),
        2 => (literal, literal, literal).prop_map(|(epoch, id, data)| format!(
            r#"{{"type":"end","session":"s","epoch":{epoch},"id":{id},"data":{data}}}"#
        )),
        2 => (request_like(), any::<prop::sample::Index>()).prop_map(|(frame, cut)| {
            let text = frame.to_string();
            let cut = cut.index(text.len() + 1);
            let cut = (0..=cut).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            text[..cut].to_owned()
        }),
        2 => (0usize..300, any::<bool>()).prop_map(|(n, close)| {
            let closing = if close { "]".repeat(n) } else { String::new() };
            format!(r#"{{"type":"publish","session":"s","data":{}1{closing}}}"#, "[".repeat(n))
        }),
        1 => (tricky_string(), tricky_string()).prop_map(|(a, b)| format!(
            r#"{{"type":"join","session":{},"session":{}}}"#, json!(a), json!(b)
        )),
        1 => "[\\[\\]{}\":,0-9a-z\\\\ ]{0,60}",
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Properties.
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    #[test]
    fn request_shaped_objects_parse_exactly_as_the_rules_say(frame in request_like()) {
        check(&frame.to_string())?;
    }

    #[test]
    fn arbitrary_json_values_never_panic_and_get_a_documented_answer(value in any_json()) {
        check(&value.to_string())?;
    }

    #[test]
    fn arbitrary_and_malformed_text_never_panics_and_gets_a_documented_answer(text in raw_text()) {
        check(&text)?;
    }

    #[test]
    fn session_ids_follow_the_documented_pattern(s in tricky_string()) {
        let got = validate::session_id(&s);
        prop_assert_eq!(got.is_ok(), session_ok(&s), "session id {:?}", s);
        if let Err(e) = got {
            prop_assert_eq!(e.code, ErrorCode::InvalidSession);
        }
    }

    #[test]
    fn every_id_of_the_allowed_charset_and_length_is_valid(s in "[A-Za-z0-9_-]{1,128}") {
        prop_assert!(validate::session_id(&s).is_ok(), "{:?}", s);
    }

    #[test]
    fn display_names_follow_the_documented_rules(s in tricky_string()) {
        let got = validate::display_name(&s);
        prop_assert_eq!(got.is_ok(), name_ok(&s), "name {:?}", s);
        if let Err(e) = got {
            prop_assert_eq!(e.code, ErrorCode::InvalidProfile);
        }
    }

    #[test]
    fn avatars_follow_the_documented_rules(s in tricky_string()) {
        let got = validate::avatar_url(&s);
        prop_assert_eq!(got.is_ok(), avatar_ok(&s), "avatar {:?}", s);
        if let Err(e) = got {
            prop_assert_eq!(e.code, ErrorCode::InvalidProfile);
        }
    }

    #[test]
    fn json_depth_counts_levels(v in prop_oneof![any_json(), deep_json()]) {
        prop_assert_eq!(validate::json_depth(&v), depth(&v), "{}", v);
    }
}

// ---------------------------------------------------------------------------------------------
// Edges named by the rules, checked once each (the generators reach them only by chance).
// ---------------------------------------------------------------------------------------------

#[test]
fn edges_of_every_limit() {
    let code = |text: &str| parse(text, LIMITS).err().map(|r| r.error.code);
    let join = |field: &str, value: &str| {
        json!({"type": "join", "session": "s", field: value}).to_string()
    };
    // Session ids: 128 characters pass, 129 do not; non-ASCII letters are not in the set.
    let ok = json!({"type": "leave", "session": "a".repeat(128)}).to_string();
    assert_eq!(code(&ok), None);
    for bad in [
        "a".repeat(129),
        "é".into(),
        "a*".into(),
        "{s}".into(),
        "a:b".into(),
        "a b".into(),
        String::new(),
    ] {
        let frame = json!({"type": "leave", "session": bad}).to_string();
        assert_eq!(code(&frame), Some(ErrorCode::InvalidSession), "{frame}");
    }
    // Names: 64 characters pass (multi-byte too), 65 do not.
    assert_eq!(code(&join("name", &"日".repeat(64))), None);
    assert_eq!(
        code(&join("name", &"日".repeat(65))),
        Some(ErrorCode::InvalidProfile)
    );
    assert_eq!(
        code(&join("name", "a\u{85}b")),
        Some(ErrorCode::InvalidProfile)
    );
    // Avatars: 512 characters pass, whatever their byte length; 513 do not.
    let avatar = |n: usize, c: &str| format!("https://h/{}", c.repeat(n - 10));
    assert_eq!(code(&join("avatar", &avatar(512, "a"))), None);
    assert_eq!(
        code(&join("avatar", &avatar(512, "é"))),
        None,
        "512 characters, 1014 bytes"
    );
    assert_eq!(
        code(&join("avatar", &avatar(513, "a"))),
        Some(ErrorCode::InvalidProfile)
    );
    assert_eq!(
        code(&join("avatar", &avatar(513, "é"))),
        Some(ErrorCode::InvalidProfile)
    );
    // Publish data: 32 levels pass, 33 are a bad request; the parser refuses 128+ levels of text.
    let nested = |n: usize| {
        format!(
            r#"{{"type":"publish","session":"s","data":{}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        )
    };
    assert_eq!(code(&nested(32)), None);
    assert_eq!(code(&nested(33)), Some(ErrorCode::BadRequest));
    assert_eq!(code(&nested(100_000)), Some(ErrorCode::BadRequest));
    // Serialized size: exactly the limit passes, one byte more does not.
    let sized = |n: usize| {
        json!({"type": "publish", "session": "s", "data": "x".repeat(n - 2)}).to_string()
    };
    assert_eq!(code(&sized(LIMITS.max_publish_bytes)), None);
    assert_eq!(
        code(&sized(LIMITS.max_publish_bytes + 1)),
        Some(ErrorCode::PayloadTooLarge)
    );
    // Numbers no integer type holds.
    for text in [
        r#"{"type":"end","session":"s","epoch":18446744073709551616}"#,
        r#"{"type":"end","session":"s","epoch":1e400}"#,
        r#"{"type":"ping","id":123456789012345678901234567890}"#,
        r#"{"type":"ping","id":-1e-400}"#,
    ] {
        assert_eq!(code(text), Some(ErrorCode::BadRequest), "{text}");
    }
    assert_eq!(
        parse(
            r#"{"type":"end","session":"s","epoch":18446744073709551615}"#,
            LIMITS
        )
        .expect("u64::MAX is a valid epoch")
        .1,
        Request::End {
            session: "s".into(),
            epoch: u64::MAX
        }
    );
}
