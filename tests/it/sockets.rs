//! Options the server sets on its own sockets, read back from this process's descriptors (the
//! test server runs in-process): `TCP_NODELAY` on every WebSocket and every Redis connection, so
//! a small frame or command never waits for the peer's acknowledgement of the one before it.

use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};

use socket2::SockRef;

use crate::support::redis::RedisServer;
use crate::support::server::{TestServer, test_args};
use crate::support::ws::WsClient;

/// Connected TCP sockets of this process whose local or peer port is `port`, with their
/// `TCP_NODELAY` setting.
fn connected_sockets(port: u16, peer_side: bool) -> Vec<(SocketAddr, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: only socket options are read, while the descriptor is open; one that another
        // test closes meanwhile makes these calls fail (EBADF), and it is skipped.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&fd);
        let (Ok(local), Ok(peer)) = (socket.local_addr(), socket.peer_addr()) else {
            continue;
        };
        let (Some(local), Some(peer)) = (local.as_socket(), peer.as_socket()) else {
            continue;
        };
        let side = if peer_side { peer } else { local };
        if side.port() == port
            && let Ok(nodelay) = socket.tcp_nodelay()
        {
            found.push((peer, nodelay));
        }
    }
    found
}

#[actix_rt::test]
async fn websocket_and_redis_sockets_have_nagle_off() {
    let redis = RedisServer::start();
    let mut args = test_args();
    args.redis_url = Some(redis.url());
    let server = TestServer::start(args).await;
    let _client = WsClient::connect(&server.ws_url()).await;

    let accepted = connected_sockets(server.addr.port(), false);
    assert!(!accepted.is_empty(), "the WebSocket's server side is found");
    for (peer, nodelay) in &accepted {
        assert!(
            nodelay,
            "the WebSocket from {peer} has Nagle's algorithm on"
        );
    }
    let to_redis = connected_sockets(redis.port(), true);
    assert!(
        to_redis.len() >= 2,
        "the command and subscription connections are found: {to_redis:?}"
    );
    for (peer, nodelay) in &to_redis {
        assert!(
            nodelay,
            "a connection to Redis at {peer} has Nagle's algorithm on"
        );
    }
}
