//! Message history over real sockets (docs/protocol.md, "Message history"): `message` and
//! `published` carry their offset and stream, views carry the latest position, a `history`
//! request pages through the kept messages, and a `join` with `since` gets what its client missed
//! in order before the live messages, or `recovered: false`. Across two instances on one Redis,
//! every member gets every offset once, in order.

use serde_json::{Value, json};

use crate::support::redis::RedisServer;
use crate::support::server::{TestServer, WAIT, test_args};
use crate::support::ws::WsClient;

async fn client(server: &TestServer) -> WsClient {
    WsClient::connect(&server.ws_url()).await
}

async fn publish(client: &mut WsClient, session: &str, data: Value) -> Value {
    client
        .request_ok(
            json!({"type": "publish", "session": session, "data": data}),
            "published",
        )
        .await
}

async fn history(client: &mut WsClient, request: Value) -> Value {
    client.request_ok(request, "history").await
}

/// Waits for the next `message` of `session`.
async fn message(client: &mut WsClient, session: &str) -> Value {
    client.expect_event("message", session).await
}

/// A round trip: every frame the server produced for `client` before it is in the log after.
async fn settle(client: &mut WsClient) {
    client.request_ok(json!({"type": "ping"}), "pong").await;
}

/// The offsets of the `message` frames of `session` in `client`'s log, in arrival order.
fn logged_offsets(client: &mut WsClient, session: &str) -> Vec<u64> {
    client.drain_ready();
    client
        .log()
        .iter()
        .filter(|f| f["type"] == "message" && f["session"] == session)
        .map(|f| f["offset"].as_u64().expect("a message carries its offset"))
        .collect()
}

fn offsets(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .expect("a list of messages")
        .iter()
        .map(|m| m["offset"].as_u64().expect("an offset"))
        .collect()
}

fn join_since(session: &str, stream: &Value, offset: Value) -> Value {
    json!({"type": "join", "session": session, "since": {"stream": stream, "offset": offset}})
}

#[actix_rt::test]
async fn messages_and_published_carry_their_offset_and_stream_and_views_the_latest() {
    let server = TestServer::start_default().await;
    let mut ada = client(&server).await;
    let mut grace = client(&server).await;
    let joined = ada.join("s").await;
    assert_eq!(
        (&joined["stream"], &joined["offset"]),
        (&Value::Null, &Value::Null),
        "no message yet: {joined}"
    );
    assert!(
        joined.get("recovered").is_none(),
        "no recovered without since"
    );
    grace.join("s").await;
    let first = publish(&mut ada, "s", json!("one")).await;
    let stream = first["stream"].clone();
    assert!(stream.as_str().is_some_and(|s| !s.is_empty()), "{first}");
    assert_eq!(first["offset"], 1);
    assert_eq!(first["session"], "s");
    let second = publish(&mut ada, "s", json!("two")).await;
    assert_eq!((&second["stream"], &second["offset"]), (&stream, &json!(2)));
    for (offset, data) in [(1, "one"), (2, "two")] {
        let m = message(&mut grace, "s").await;
        assert_eq!(
            (&m["offset"], &m["stream"], &m["data"]),
            (&json!(offset), &stream, &json!(data))
        );
        assert_eq!(m["from"], ada.connection.as_str());
    }
    let third = publish(&mut grace, "s", json!(3)).await;
    assert_eq!(third["offset"], 3);
    let m = message(&mut ada, "s").await;
    assert_eq!((&m["offset"], &m["stream"]), (&json!(3), &stream));

    let mut bob = client(&server).await;
    let joined = bob.join("s").await;
    assert_eq!((&joined["stream"], &joined["offset"]), (&stream, &json!(3)));
    let members = ada.members("s").await;
    assert_eq!(
        (&members["stream"], &members["offset"]),
        (&stream, &json!(3))
    );
}

#[actix_rt::test]
async fn a_history_request_pages_through_the_kept_messages() {
    let server = TestServer::start_default().await;
    let mut ada = client(&server).await;
    ada.join("s").await;
    let before = rollcall::model::now_ms();
    let mut stream = Value::Null;
    for n in 1..=5 {
        stream = publish(&mut ada, "s", json!({ "n": n })).await["stream"].clone();
    }
    let all = history(&mut ada, json!({"type": "history", "session": "s"})).await;
    assert_eq!(all["session"], "s");
    assert_eq!(all["stream"], stream);
    assert_eq!(all["complete"], true);
    assert_eq!(offsets(&all["messages"]), [1, 2, 3, 4, 5]);
    let first = &all["messages"][0];
    assert_eq!(first["from"], ada.connection.as_str());
    assert_eq!(first["user"], Value::Null);
    assert_eq!(first["data"], json!({"n": 1}));
    assert!(first["at"].as_i64().is_some_and(|at| at >= before - 5_000));

    let page = history(
        &mut ada,
        json!({"type": "history", "session": "s", "since": 2, "limit": 2}),
    )
    .await;
    assert_eq!(offsets(&page["messages"]), [3, 4]);
    assert_eq!(page["complete"], true);
    let last = history(
        &mut ada,
        json!({"type": "history", "session": "s", "since": 4}),
    )
    .await;
    assert_eq!(offsets(&last["messages"]), [5]);
    let none = history(
        &mut ada,
        json!({"type": "history", "session": "s", "since": 5}),
    )
    .await;
    assert_eq!(offsets(&none["messages"]), Vec::<u64>::new());
    assert_eq!(none["complete"], true);
}

#[actix_rt::test]
async fn a_join_with_since_gets_the_missed_messages_in_order_then_the_live_ones() {
    let server = TestServer::start_default().await;
    let mut ada = client(&server).await;
    let mut grace = client(&server).await;
    ada.join("s").await;
    grace.join("s").await;
    let stream = publish(&mut grace, "s", json!(1)).await["stream"].clone();
    publish(&mut grace, "s", json!(2)).await;
    assert_eq!(message(&mut ada, "s").await["offset"], 1);
    assert_eq!(message(&mut ada, "s").await["offset"], 2);
    // Ada's network drops; she misses three messages and comes back on a new socket.
    ada.abort();
    for n in 3..=5 {
        publish(&mut grace, "s", json!(n)).await;
    }
    let mut phone = client(&server).await;
    let joined = phone
        .request_ok(join_since("s", &stream, json!(2)), "joined")
        .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    assert_eq!((&joined["stream"], &joined["offset"]), (&stream, &json!(5)));
    publish(&mut grace, "s", json!(6)).await;
    for (offset, data) in [(3, 3), (4, 4), (5, 5), (6, 6)] {
        let m = message(&mut phone, "s").await;
        assert_eq!((&m["offset"], &m["data"]), (&json!(offset), &json!(data)));
        assert_eq!(m["stream"], stream);
        assert_eq!(m["from"], grace.connection.as_str());
    }
    let log = phone.log();
    let joined_at = log.iter().position(|f| f["type"] == "joined");
    let first_message = log.iter().position(|f| f["type"] == "message");
    assert!(joined_at < first_message, "joined comes first: {log:?}");
    settle(&mut phone).await;
    assert_eq!(logged_offsets(&mut phone, "s"), [3, 4, 5, 6], "each once");

    // Up to date: recovered, nothing to send.
    let mut tab = client(&server).await;
    let joined = tab
        .request_ok(join_since("s", &stream, json!(6)), "joined")
        .await;
    assert_eq!(joined["recovered"], true);
    settle(&mut tab).await;
    assert_eq!(logged_offsets(&mut tab, "s"), Vec::<u64>::new());
}

#[actix_rt::test]
async fn a_join_with_since_that_cannot_be_served_says_recovered_false_and_sends_none() {
    let mut args = test_args();
    args.history_size = 3;
    let server = TestServer::start(args).await;
    let mut grace = client(&server).await;
    grace.join("s").await;
    let mut stream = Value::Null;
    for n in 1..=6 {
        stream = publish(&mut grace, "s", json!(n)).await["stream"].clone();
    }
    // Another stream (the store lost the history since the client saw it).
    let mut other = client(&server).await;
    let joined = other
        .request_ok(
            join_since("s", &json!("another-stream"), json!(4)),
            "joined",
        )
        .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!((&joined["stream"], &joined["offset"]), (&stream, &json!(6)));
    // The same stream, but messages 2 and 3 are no longer kept (only the latest 3 are).
    let mut late = client(&server).await;
    let joined = late
        .request_ok(join_since("s", &stream, json!(1)), "joined")
        .await;
    assert_eq!(joined["recovered"], false, "{joined}");
    for c in [&mut other, &mut late] {
        settle(c).await;
        assert_eq!(logged_offsets(c, "s"), Vec::<u64>::new(), "none sent");
    }
    let page = history(
        &mut late,
        json!({"type": "history", "session": "s", "since": 1}),
    )
    .await;
    assert_eq!(offsets(&page["messages"]), [4, 5, 6]);
    assert_eq!(page["complete"], false, "2 and 3 were dropped");
    // Within what is kept, a since is served.
    let mut kept = client(&server).await;
    let joined = kept
        .request_ok(join_since("s", &stream, json!(3)), "joined")
        .await;
    assert_eq!(joined["recovered"], true);
    settle(&mut kept).await;
    assert_eq!(logged_offsets(&mut kept, "s"), [4, 5, 6]);
}

#[actix_rt::test]
async fn history_needs_membership_and_well_formed_fields() {
    let server = TestServer::start_default().await;
    let mut ada = client(&server).await;
    ada.request_err(json!({"type": "history", "session": "s"}), "not_member")
        .await;
    ada.join("s").await;
    for bad in [
        json!({"type": "history", "session": "s", "limit": 0}),
        json!({"type": "history", "session": "s", "limit": 101}),
        json!({"type": "history", "session": "s", "limit": "10"}),
        json!({"type": "history", "session": "s", "since": -1}),
        json!({"type": "history", "session": "s", "since": "3"}),
        json!({"type": "history", "session": "s", "since": 1.5}),
        json!({"type": "history"}),
        json!({"type": "join", "session": "t", "since": {"offset": 3}}),
        json!({"type": "join", "session": "t", "since": {"stream": "x", "offset": -3}}),
        json!({"type": "join", "session": "t", "since": "x"}),
    ] {
        ada.request_err(bad, "bad_request").await;
    }
    ada.request_err(
        json!({"type": "history", "session": "a b"}),
        "invalid_session",
    )
    .await;
    let full = history(
        &mut ada,
        json!({"type": "history", "session": "s", "limit": 100}),
    )
    .await;
    assert_eq!(full["messages"], json!([]));
    assert_eq!(full["stream"], Value::Null, "no message yet");
    ada.leave("s").await;
    ada.request_err(json!({"type": "history", "session": "s"}), "not_member")
        .await;
}

#[actix_rt::test]
async fn with_history_size_zero_messages_are_numbered_but_none_kept() {
    let mut args = test_args();
    args.history_size = 0;
    let server = TestServer::start(args).await;
    let mut ada = client(&server).await;
    let mut grace = client(&server).await;
    ada.join("s").await;
    grace.join("s").await;
    let first = publish(&mut ada, "s", json!(1)).await;
    let second = publish(&mut ada, "s", json!(2)).await;
    assert_eq!(
        (&first["offset"], &second["offset"]),
        (&json!(1), &json!(2))
    );
    assert_eq!(first["stream"], second["stream"]);
    assert_eq!(message(&mut grace, "s").await["offset"], 1);
    assert_eq!(message(&mut grace, "s").await["offset"], 2);
    let page = history(&mut ada, json!({"type": "history", "session": "s"})).await;
    assert_eq!(page["messages"], json!([]));
    assert_eq!(page["complete"], false);
    assert_eq!(page["stream"], first["stream"]);
    let mut late = client(&server).await;
    let joined = late
        .request_ok(join_since("s", &first["stream"], json!(0)), "joined")
        .await;
    assert_eq!(joined["recovered"], false);
    let mut current = client(&server).await;
    let joined = current
        .request_ok(join_since("s", &first["stream"], json!(2)), "joined")
        .await;
    assert_eq!(joined["recovered"], true, "nothing was missed");
}

/// Two instances on one Redis, two publishers on each, all publishing at once: every member gets
/// every other member's message exactly once, in offset order, wherever it was published. A
/// member coming back on the other instance gets what it missed.
#[actix_rt::test]
async fn across_instances_every_member_gets_every_offset_once_in_order() {
    let redis = RedisServer::start();
    let mut args = test_args();
    args.redis_url = Some(redis.url());
    let one = TestServer::start(args.clone()).await;
    args.instance_name = Some(format!(
        "{}-two",
        args.instance_name.clone().unwrap_or_default()
    ));
    let two = TestServer::start(args).await;
    let mut clients = [
        client(&one).await,
        client(&two).await,
        client(&one).await,
        client(&two).await,
    ];
    for c in clients.iter_mut() {
        c.join("s").await;
    }
    const EACH: u64 = 12;
    for n in 0..EACH {
        for (i, c) in clients.iter().enumerate() {
            c.send_json(&json!({"type": "publish", "session": "s", "data": [i, n]}));
        }
    }
    let total = EACH * clients.len() as u64;
    let is_message = |f: &Value| f["type"] == "message" && f["session"] == "s";
    for (i, c) in clients.iter_mut().enumerate() {
        let mut seen: Vec<Value> = Vec::new();
        while seen.len() < (total - EACH) as usize {
            match c.try_expect(&is_message, WAIT).await {
                Some(m) => seen.push(m),
                None => panic!("client {i} got only {seen:?}"),
            }
        }
        let got: Vec<u64> = seen.iter().filter_map(|m| m["offset"].as_u64()).collect();
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "client {i}: offsets out of order: {got:?}"
        );
        assert!(
            seen.iter().all(|m| m["data"][0] != json!(i)),
            "client {i} got its own message"
        );
        let mut all = got;
        for _ in 0..EACH {
            let published = c
                .expect("its published", |f| f["type"] == "published")
                .await;
            all.extend(published["offset"].as_u64());
        }
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=total).collect::<Vec<_>>(),
            "client {i}: each offset once"
        );
    }

    // The first client drops; the second publishes; it comes back on the other instance.
    let stream = clients[1].members("s").await["stream"].clone();
    clients[0].abort();
    let missed = [
        publish(&mut clients[1], "s", json!("a")).await,
        publish(&mut clients[1], "s", json!("b")).await,
    ];
    let mut back = client(&two).await;
    let joined = back
        .request_ok(join_since("s", &stream, json!(total)), "joined")
        .await;
    assert_eq!(joined["recovered"], true, "{joined}");
    for reply in &missed {
        assert_eq!(message(&mut back, "s").await["offset"], reply["offset"]);
    }
}

/// Redis: the stream and history keys expire with the history (no key outlives twice the TTL),
/// the history is trimmed lazily but a read never returns more than the size, most messages cost
/// no `PEXPIRE`, and with a size of 0 no history key exists.
#[tokio::test]
async fn redis_history_keys_expire_and_are_trimmed_lazily() {
    use rollcall::store::redis::DEFAULT_SESSION_TTL;
    use rollcall::store::{Broker, History, HistorySettings};

    let redis = RedisServer::start();
    let (a, _feed) = redis.store("a", DEFAULT_SESSION_TTL).await;
    let ttl = std::time::Duration::from_secs(60);
    a.keep_history(HistorySettings { size: 10, ttl });
    redis.reset_stats();
    for n in 0..30 {
        a.publish("s", "c1", None, &json!(n))
            .await
            .expect("publish");
    }
    for key in ["rc:{s:s}:stream", "rc:{s:s}:history"] {
        let ms: i64 = redis.query(&["PTTL", key]).expect("PTTL");
        assert!(
            ms > 0 && ms <= 2 * ttl.as_millis() as i64,
            "{key} expires within twice the TTL (PTTL {ms})"
        );
    }
    assert_eq!(
        redis.calls("pexpireat"),
        2,
        "the expiry of both keys is set once, not per message"
    );
    let kept: i64 = redis.query(&["LLEN", "rc:{s:s}:history"]).expect("LLEN");
    assert!((10..=26).contains(&kept), "trimmed with slack: {kept}");
    let page = a.history("s", None, 100).await.expect("history");
    let offsets: Vec<u64> = page.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, (21..=30).collect::<Vec<_>>());

    a.keep_history(HistorySettings { size: 0, ttl });
    a.publish("t", "c1", None, &json!(1))
        .await
        .expect("publish");
    let exists: i64 = redis
        .query(&["EXISTS", "rc:{s:t}:history"])
        .expect("EXISTS");
    assert_eq!(exists, 0, "nothing kept with a size of 0");
}
