//! URL edits the tests and benches need (another database on the same server, the same database
//! through a proxy), done with the `url` crate rather than by string surgery.
#![allow(dead_code)]

use std::net::{SocketAddr, ToSocketAddrs};

use url::Url;

fn parse(url: &str) -> Url {
    Url::parse(url).unwrap_or_else(|e| panic!("{url:?} is not a URL: {e}"))
}

/// `url` with its database name (the path) replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let mut url = parse(url);
    url.set_path(&format!("/{name}"));
    url.into()
}

/// `url` with its host and port replaced by `addr` (to go through a test proxy).
pub fn with_host(url: &str, addr: SocketAddr) -> String {
    let mut url = parse(url);
    url.set_ip_host(addr.ip())
        .unwrap_or_else(|()| panic!("{url} cannot take a host"));
    url.set_port(Some(addr.port()))
        .unwrap_or_else(|()| panic!("{url} cannot take a port"));
    url.into()
}

/// The socket address a URL names (`default_port` when it names none).
pub fn socket_addr(url: &str, default_port: u16) -> SocketAddr {
    let url = parse(url);
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(default_port);
    (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4))
        .unwrap_or_else(|| panic!("{url} names no reachable host"))
}
