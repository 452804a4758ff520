//! RFC 6455 to the letter, frame by frame (docs/protocol.md §1): messages reassembled from
//! fragments with control frames between them, the size limit on the whole message, 1007 for text
//! that is not UTF-8 (whole or fragmented, as soon as it cannot become valid), 1002 for other
//! protocol errors with TCP closed at once, close reasons without internal text, and 426 for other
//! WebSocket versions. The Autobahn|Testsuite run (`autobahn`) covers the same ground where
//! Python 2.7 is available; these cases run everywhere.

use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Control, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};

use crate::support::raw_ws::{
    PROMPT_TCP_CLOSE, connect_raw, expect_close, next_message, time_to_tcp_eof,
};
use crate::support::server::{TestServer, WAIT, test_args};

fn fragment(bytes: &[u8], opcode: OpCode, last: bool) -> Message {
    Message::Frame(Frame::message(bytes.to_vec(), opcode, last))
}

/// A close frame with any payload at all, even one no close frame may carry.
fn raw_close(payload: &[u8]) -> Message {
    let header = FrameHeader {
        opcode: OpCode::Control(Control::Close),
        ..FrameHeader::default()
    };
    Message::Frame(Frame::from_payload(header, payload.to_vec().into()))
}

fn first_text(bytes: &[u8]) -> Message {
    fragment(bytes, OpCode::Data(Data::Text), false)
}

fn continued(bytes: &[u8], last: bool) -> Message {
    fragment(bytes, OpCode::Data(Data::Continue), last)
}

async fn send_all(ws: &mut WebSocketStream<TcpStream>, messages: Vec<Message>) {
    for message in messages {
        ws.send(message).await.expect("send a frame");
    }
}

/// The next text message, as JSON.
async fn next_json(ws: &mut WebSocketStream<TcpStream>, what: &str) -> Value {
    match next_message(ws, what).await {
        Message::Text(text) => serde_json::from_str(&text).expect("JSON text"),
        other => panic!("expected {what}, got {other:?}"),
    }
}

/// The server's close frame: its code must be `code` and its reason empty.
async fn expect_bare_close(ws: &mut WebSocketStream<TcpStream>, code: CloseCode) {
    match next_message(ws, "the server's close frame").await {
        Message::Close(Some(frame)) => {
            assert_eq!(frame.code, code, "close code");
            assert_eq!(
                frame.reason.as_str(),
                "",
                "a close reason carries no internal text"
            );
        }
        other => panic!("expected a close frame with {code}, got {other:?}"),
    }
}

#[actix_rt::test]
async fn a_request_in_fragments_with_a_ping_between_them_is_one_request() {
    let server = TestServer::start(test_args()).await;
    let mut ws = connect_raw(&server).await;
    let request = json!({"type": "join", "session": "frag", "id": 7}).to_string();
    let (a, rest) = request.as_bytes().split_at(10);
    let (b, c) = rest.split_at(10);
    send_all(
        &mut ws,
        vec![
            first_text(a),
            Message::Frame(Frame::ping(b"between".to_vec())),
            continued(b, false),
            continued(c, true),
        ],
    )
    .await;
    // The pong for the ping comes first (the reply waits for the last fragment); tungstenite
    // answers pings itself but hands pongs over.
    let pong = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a pong within the wait")
        .expect("the socket is open")
        .expect("a frame");
    assert_eq!(
        pong,
        Message::Pong(b"between".to_vec().into()),
        "the ping between fragments"
    );
    let joined = next_json(&mut ws, "the reply to the reassembled join").await;
    assert_eq!(
        (joined["type"].as_str(), joined["id"].as_i64()),
        (Some("joined"), Some(7))
    );
    // Exactly one reply: the next request's reply is the next message.
    ws.send(Message::Text(
        json!({"type": "ping", "id": 8}).to_string().into(),
    ))
    .await
    .expect("send a ping request");
    let next = next_json(&mut ws, "the next reply").await;
    assert_eq!(
        next["id"], 8,
        "one reply for the fragmented request, then the next: {next}"
    );
}

#[actix_rt::test]
async fn a_multibyte_character_split_between_fragments_is_valid_text() {
    let server = TestServer::start(test_args()).await;
    let mut ws = connect_raw(&server).await;
    let request = json!({"type": "join", "session": "caf", "name": "café", "id": 1}).to_string();
    let split = request.find('é').expect("the é") + 1; // inside its two bytes
    let (a, b) = request.as_bytes().split_at(split);
    send_all(&mut ws, vec![first_text(a), continued(b, true)]).await;
    let joined = next_json(&mut ws, "joined").await;
    assert_eq!(joined["type"], "joined", "{joined}");
}

#[actix_rt::test]
async fn text_that_is_not_utf8_fails_with_1007_whole_or_fragmented() {
    let server = TestServer::start(test_args()).await;

    let mut whole = connect_raw(&server).await;
    send_all(
        &mut whole,
        vec![fragment(
            b"{\"x\":\"\xff\"}",
            OpCode::Data(Data::Text),
            true,
        )],
    )
    .await;
    expect_bare_close(&mut whole, CloseCode::Invalid).await;

    // The second fragment can never become valid: the server fails the connection before the
    // message ends (the last fragment is never sent).
    let mut fragmented = connect_raw(&server).await;
    send_all(
        &mut fragmented,
        vec![first_text(b"{\"x\":\""), continued(b"\xed\xa0\x80", false)],
    )
    .await;
    expect_bare_close(&mut fragmented, CloseCode::Invalid).await;
}

#[actix_rt::test]
async fn the_size_limit_applies_to_the_whole_reassembled_message() {
    let mut args = test_args();
    args.max_message_bytes = 2048;
    let server = TestServer::start(args).await;
    let mut ws = connect_raw(&server).await;
    let part = vec![b' '; 1000];
    send_all(
        &mut ws,
        vec![
            first_text(&part),
            continued(&part, false),
            continued(&part, true),
        ],
    )
    .await;
    expect_close(&mut ws, CloseCode::Size).await;
}

#[actix_rt::test]
async fn fragments_out_of_order_fail_with_1002() {
    let server = TestServer::start(test_args()).await;

    let mut orphan = connect_raw(&server).await;
    send_all(&mut orphan, vec![continued(b"{}", true)]).await;
    expect_bare_close(&mut orphan, CloseCode::Protocol).await;

    let mut interleaved = connect_raw(&server).await;
    send_all(
        &mut interleaved,
        vec![first_text(b"{\"ty"), Message::Text("{}".into())],
    )
    .await;
    expect_bare_close(&mut interleaved, CloseCode::Protocol).await;
}

#[actix_rt::test]
async fn a_malformed_close_frame_gets_1002_and_tcp_closes_at_once() {
    let server = TestServer::start(test_args()).await;
    let mut ws = connect_raw(&server).await;
    // A close payload of one byte: a status code needs two (RFC 6455 §5.5.1).
    send_all(&mut ws, vec![raw_close(&[0x03])]).await;
    expect_bare_close(&mut ws, CloseCode::Protocol).await;
    let eof = time_to_tcp_eof(ws.get_mut()).await;
    assert!(
        eof < PROMPT_TCP_CLOSE,
        "the server kept TCP open {eof:?} after failing the connection (bound {PROMPT_TCP_CLOSE:?})"
    );
}

#[actix_rt::test]
async fn a_clients_close_code_is_echoed_without_a_reason() {
    let server = TestServer::start(test_args()).await;
    let mut ws = connect_raw(&server).await;
    let mut payload = 4000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"going");
    send_all(&mut ws, vec![raw_close(&payload)]).await;
    expect_bare_close(&mut ws, CloseCode::from(4000)).await;
}

#[actix_rt::test]
async fn a_handshake_for_another_websocket_version_gets_426_naming_13() {
    let server = TestServer::start(test_args()).await;
    for version in ["8", "7"] {
        let mut tcp = TcpStream::connect(server.addr).await.expect("connect");
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\
             Connection: close\r\n\r\n",
            server.addr
        );
        tcp.write_all(request.as_bytes())
            .await
            .expect("send the handshake");
        let mut response = Vec::new();
        let started = Instant::now();
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut response))
            .await
            .unwrap_or_else(|_| panic!("no full answer within {WAIT:?}"))
            .expect("read the answer");
        let response = String::from_utf8_lossy(&response).to_lowercase();
        assert!(
            response.starts_with("http/1.1 426"),
            "version {version}: {response} (after {:?})",
            started.elapsed()
        );
        assert!(
            response.contains("sec-websocket-version: 13"),
            "the answer names the version spoken: {response}"
        );
        assert!(
            response.contains("\"error\""),
            "a JSON error body: {response}"
        );
    }
}
