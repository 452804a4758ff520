//! A TCP proxy that a test can cut and heal, to play a network partition between a server and a
//! dependency (Redis, PostgreSQL).
//!
//! It runs on its own thread with its own runtime, so it keeps working whatever the test's runtime
//! does. [`TcpProxy::cut`] drops every open connection and refuses new ones (accepted, then closed
//! at once); [`TcpProxy::heal`] lets connections through again. [`TcpProxy::freeze`] plays a path
//! that silently stops carrying anything (a phone that left the Wi-Fi): the open connections stay
//! open at both ends, and no byte crosses them any more.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct TcpProxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    frozen: watch::Sender<u64>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> TcpProxy {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = std_listener.local_addr().expect("proxy address");
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, generation_rx) = watch::channel(0u64);
        let (frozen, frozen_rx) = watch::channel(0u64);
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let thread_cut = cut.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("proxy runtime");
            runtime.block_on(async move {
                let listener = TcpListener::from_std(std_listener).expect("tokio listener");
                tokio::select! {
                    _ = accept_loop(listener, target, thread_cut, generation_rx, frozen_rx) => {}
                    _ = stop_rx => {}
                }
            });
        });
        TcpProxy {
            addr,
            cut,
            generation,
            frozen,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones until [`TcpProxy::heal`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    /// Stops carrying bytes on every open connection, without closing any (half-open at both
    /// ends). New connections still go through.
    pub fn freeze(&self) {
        self.frozen.send_modify(|g| *g += 1);
    }

    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Receiver<u64>,
    frozen: watch::Receiver<u64>,
) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        if cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let mut cut_signal = generation.clone();
        cut_signal.mark_unchanged();
        let mut freeze_signal = frozen.clone();
        freeze_signal.mark_unchanged();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(target).await else {
                return;
            };
            let frozen = tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
                _ = cut_signal.changed() => false,
                _ = freeze_signal.changed() => true,
            };
            if frozen {
                // Both sockets stay open and silent until the proxy is cut or dropped.
                let _ = cut_signal.changed().await;
            }
            drop((inbound, outbound));
        });
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
