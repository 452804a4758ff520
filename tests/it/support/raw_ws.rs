//! A WebSocket client that can send any frame, legal or not, and watch the TCP connection under it:
//! for the tests of the close handshake and of RFC 6455's rules.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::server::{TestServer, WAIT};

/// The longest the server may keep TCP open once the close handshake is done (RFC 6455 §7.1.1:
/// the server closes first, and browsers report `close` only then). Well under the 1 s that the
/// HTTP layer lingers on a connection whose request body it has not read to the end.
pub const PROMPT_TCP_CLOSE: Duration = Duration::from_millis(500);

/// A WebSocket over a TCP stream the test can take back, to watch the TCP connection itself.
pub async fn connect_raw(server: &TestServer) -> WebSocketStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr)
        .await
        .expect("connect to the test server");
    let (mut ws, _response) =
        tokio::time::timeout(WAIT, tokio_tungstenite::client_async(server.ws_url(), tcp))
            .await
            .unwrap_or_else(|_| panic!("the WebSocket handshake did not finish within {WAIT:?}"))
            .unwrap_or_else(|e| panic!("the WebSocket handshake failed: {e}"));
    match next_message(&mut ws, "welcome").await {
        Message::Text(text) if text.contains(r#""type":"welcome""#) => ws,
        other => panic!("the first frame must be welcome, got {other:?}"),
    }
}

/// The next message other than a ping or pong.
pub async fn next_message(ws: &mut WebSocketStream<TcpStream>, what: &str) -> Message {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("no {what} within {WAIT:?}"),
            Ok(None) => panic!("the socket ended before {what}"),
            Ok(Some(Err(e))) => panic!("the socket failed before {what}: {e}"),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(Some(Ok(message))) => return message,
        }
    }
}

pub async fn expect_close(ws: &mut WebSocketStream<TcpStream>, code: CloseCode) {
    match next_message(ws, "the server's close frame").await {
        Message::Close(Some(frame)) if frame.code == code => {}
        other => panic!("expected a close frame with {code}, got {other:?}"),
    }
}

/// Reads `tcp` until the server closes it; returns how long that took. The server sends nothing
/// after its close frame, so any data, or a reset instead of a clean close, fails the test.
pub async fn time_to_tcp_eof(tcp: &mut TcpStream) -> Duration {
    let t0 = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(WAIT, tcp.read(&mut buf))
        .await
        .unwrap_or_else(|_| {
            panic!("the server kept the TCP connection open for {WAIT:?} after the close")
        });
    match read {
        Ok(0) => t0.elapsed(),
        Ok(n) => panic!(
            "the server sent {n} bytes after its close frame: {:?}",
            &buf[..n]
        ),
        Err(e) => panic!("the TCP connection failed instead of closing cleanly: {e}"),
    }
}
