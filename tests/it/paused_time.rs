//! The timers, on tokio's paused clock: the reaper and the in-process store's leases, the outbox's
//! batch window, `counts` pacing, the client timeout, the rate limiter, the persistence retry
//! backoff and the resume grace (with a manual store clock). Each test moves the clock with `tokio::time::advance` to just before a boundary, checks
//! that nothing happened, then to the boundary, and checks that it did. Nothing sleeps.
//!
//! With time paused, tokio moves the clock by itself whenever the runtime has nothing to run (to
//! the next timer). So these tests never wait on time: "nothing happened yet" is checked after
//! letting every task that can run do so ([`settle`]), and "it happened" by yielding until it has
//! ([`until`]); a runtime that has tasks to run never moves a paused clock.
//!
//! The actix tests run on [`PausedSystem`], whose clock is paused from the start, rather than
//! calling `tokio::time::pause()` inside `#[actix_rt::test]`: tokio's timer wheel counts whole
//! milliseconds from the moment the runtime was built, rounding deadlines up, so a clock paused a
//! fraction of a millisecond later fires every timer one millisecond late at whole-millisecond
//! steps, and exact boundaries could not be asserted.
//!
//! `tokio::time::advance` fires every timer that falls due within the step, but all of them at the
//! end of the step (the clock already reads its end). Steps therefore stop at every instant a timer
//! the test depends on falls due.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix::{Addr, Recipient};
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web_actors::ws;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::support::members::member;
use crate::support::probe::forward;
use crate::support::server::test_args;
use rollcall::actors::connection::{ConnectionActor, Identity};
use rollcall::actors::rate::{RateSettings, RequestLimiter, Verdict};
use rollcall::actors::session::{Leave, Publish, SessionActor};
use rollcall::actors::supervisor::Join;
use rollcall::actors::{RecordChange, ReplyFrame, ToClient};
use rollcall::engine::{Engine, EngineSettings};
use rollcall::model::{Change, Event, LeaveReason, Presence};
use rollcall::persistence::{Database, DatabaseHealth, Persistence, PersistenceSettings};
use rollcall::store::memory::MemoryBackend;
use rollcall::store::{Feed, InstanceId};

/// An actix system on a current-thread runtime whose clock is paused from the start, for
/// `#[actix_rt::test(system = "PausedSystem")]` (see the module doc for why not `pause()`).
struct PausedSystem;

impl PausedSystem {
    #[allow(clippy::new_ret_no_self)] // the test macro calls `<system>::new().block_on(..)`
    fn new() -> actix_rt::SystemRunner {
        actix_rt::System::with_tokio_rt(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .expect("a current-thread runtime")
        })
    }
}

/// Yields this many times in [`settle`]: far more than the hops of any chain of messages here.
const SETTLE_YIELDS: usize = 300;

/// Lets every task that can run do so, without the clock moving: a task that yields keeps the
/// runtime busy, and only an idle runtime advances a paused clock.
async fn settle() {
    for _ in 0..SETTLE_YIELDS {
        tokio::task::yield_now().await;
    }
}

/// Yields until `check` holds, the clock standing still meanwhile. Gives up after 5 s of real
/// time (work on the blocking pool, such as a database write, takes real time).
async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 5 s of real time with the clock at a standstill"
        );
        tokio::task::yield_now().await;
    }
}

/// Moves the paused clock to `at` (not in the past), then lets what fell due run.
async fn advance_to(at: Instant) {
    let now = Instant::now();
    assert!(at >= now, "advance_to: {at:?} is before now ({now:?})");
    tokio::time::advance(at - now).await;
    settle().await;
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Test settings: the in-process store; `tune` sets what a test is about.
fn settings(name: &str, tune: impl FnOnce(&mut EngineSettings)) -> EngineSettings {
    let mut settings = EngineSettings::from_args(&test_args());
    settings.instance_name = format!("{name}-{}", settings.instance_name);
    // No timer of the supervisor within the tests' windows, unless a test sets one.
    settings.lease = Duration::from_secs(7_200);
    settings.supervisor.heartbeat = Duration::from_secs(3_600);
    settings.supervisor.delivery.batch = Duration::ZERO;
    tune(&mut settings);
    settings
}

async fn engine_on(backend: &MemoryBackend, settings: &EngineSettings) -> Engine {
    let (store, feed) = backend.connect(InstanceId::new(settings.instance_name.clone()));
    Engine::start(Arc::new(store), feed, settings)
        .await
        .expect("the engine starts")
}

/// A stand-in socket that keeps every write the engine made to it, frame by frame.
struct Client {
    connection: String,
    recipient: Recipient<ToClient>,
    rx: mpsc::UnboundedReceiver<ToClient>,
    /// The writes not looked at yet, each as its frames.
    writes: Vec<Vec<Value>>,
    session: Option<Addr<SessionActor>>,
}

impl Client {
    fn new(connection: &str) -> Client {
        let (recipient, rx) = forward::<ToClient>();
        Client {
            connection: connection.to_owned(),
            recipient,
            rx,
            writes: Vec::new(),
            session: None,
        }
    }

    async fn join(&mut self, engine: &Engine, session: &str, presence: Presence) {
        let join = Join {
            session: session.into(),
            member: member(&self.connection, &engine.store().instance().incarnation),
            client: self.recipient.clone(),
            socket: None,
            reply: ReplyFrame::Caller,
            presence,
        };
        let joined = engine.supervisor().send(join).await;
        let joined = joined
            .expect("the supervisor answers")
            .unwrap_or_else(|e| panic!("{} could not join: {e:?}", self.connection));
        self.session = Some(joined.actor);
    }

    async fn leave(&self) {
        let leave = Leave {
            connection: self.connection.clone().into(),
            reason: LeaveReason::Left,
            socket: None,
        };
        self.actor()
            .send(leave)
            .await
            .expect("the session actor answers")
            .expect("left");
    }

    async fn publish(&self, data: Value) {
        let publish = Publish {
            connection: self.connection.clone().into(),
            data,
        };
        self.actor()
            .send(publish)
            .await
            .expect("the session actor answers")
            .expect("published");
    }

    fn actor(&self) -> &Addr<SessionActor> {
        self.session.as_ref().expect("joined")
    }

    /// Collects what was delivered so far into `writes`.
    fn drain(&mut self) {
        let parse = |text: &str| serde_json::from_str(text).expect("frames are JSON");
        while let Ok(msg) = self.rx.try_recv() {
            match msg {
                ToClient::Frame(text) => self.writes.push(vec![parse(&text)]),
                ToClient::Frames(frames) => {
                    self.writes.push(frames.iter().map(|t| parse(t)).collect())
                }
                ToClient::MembershipEnded { .. }
                | ToClient::Replaced { .. }
                | ToClient::Close { .. } => {}
            }
        }
    }

    /// The writes delivered since the last call.
    fn take(&mut self) -> Vec<Vec<Value>> {
        self.drain();
        std::mem::take(&mut self.writes)
    }

    /// The frames of type `kind` delivered since the last call (the others are dropped).
    fn take_of_type(&mut self, kind: &str) -> Vec<Value> {
        let frames = self.take().into_iter().flatten();
        frames.filter(|f| f["type"] == kind).collect()
    }

    /// Yields until a write arrived (the clock standing still), then takes every write.
    async fn next_writes(&mut self, what: &str) -> Vec<Vec<Value>> {
        until(what, || {
            self.drain();
            !self.writes.is_empty()
        })
        .await;
        self.take()
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Reaper pass and lease expiry.

/// `feed`, until `cut`: from then on nothing the other instances broadcast reaches the instance.
fn cuttable(mut feed: Feed, cut: Arc<AtomicBool>) -> Feed {
    let (tx, rx) = mpsc::unbounded_channel();
    actix_rt::spawn(async move {
        while let Some(event) = feed.recv().await {
            if !cut.load(Ordering::SeqCst) {
                let _ = tx.send(event);
            }
        }
    });
    rx
}

/// Lease 3 s, heartbeat 1 s: an instance that died right after registering (its lease runs to
/// +3 s) is still listed at the survivor's tick at +3 s (the lease has not run out: expiry is
/// strictly after it) and until just before +4 s; the tick at +4 s (lease + one heartbeat) removes
/// its members with `instance_lost`, and the survivor's client sees `member_left` and the leader
/// handed over.
#[actix_rt::test(system = "PausedSystem")]
async fn a_dead_instance_is_reaped_at_the_first_heartbeat_after_its_lease_ran_out() {
    const LEASE: Duration = Duration::from_secs(3);
    const HEARTBEAT: Duration = Duration::from_secs(1);
    let t0 = Instant::now();
    let backend = MemoryBackend::new(LEASE);
    let tune = |s: &mut EngineSettings| {
        s.lease = LEASE;
        s.supervisor.heartbeat = HEARTBEAT;
    };

    // The instance that dies right after it started. An engine in this process cannot be killed:
    // with every handle dropped its actors run on (the supervisor's heartbeat timer keeps it
    // alive), renew its lease, and re-assert its members when they are reaped. So it dies as far
    // as the store and the other instances can tell: its first heartbeat would come after the
    // test (it never renews the lease it registered at t0), and its feed is cut when it "dies",
    // so that nothing makes it act again.
    let cut = Arc::new(AtomicBool::new(false));
    let doomed_settings = settings("doomed", |s| s.lease = LEASE);
    let (store, feed) = backend.connect(InstanceId::new(doomed_settings.instance_name.clone()));
    let feed = cuttable(feed, cut.clone());
    let doomed = Engine::start(Arc::new(store), feed, &doomed_settings)
        .await
        .expect("the engine starts");
    let survivor = engine_on(&backend, &settings("survivor", tune)).await;

    let mut lost = Client::new("on-the-doomed-instance");
    lost.join(&doomed, "s", Presence::Full).await;
    let mut kept = Client::new("on-the-survivor");
    kept.join(&survivor, "s", Presence::Full).await;
    settle().await;
    let dead = doomed.store().instance().incarnation.to_string();
    assert_eq!(backend.live_member_count(), 2);
    kept.take();

    // Dead right after registering: its lease runs until t0 + 3 s.
    cut.store(true, Ordering::SeqCst);
    drop(doomed);
    assert_eq!(Instant::now(), t0, "the set-up took no time on the clock");

    for tick in 1..=3 {
        advance_to(t0 + HEARTBEAT * tick).await;
        assert_eq!(
            backend.live_member_count(),
            2,
            "after the survivor's tick at +{tick} s the lease (to +3 s) has not run out"
        );
    }
    advance_to(t0 + LEASE + HEARTBEAT - ms(1)).await;
    assert_eq!(backend.live_member_count(), 2, "at +3.999 s");
    assert!(backend.registered_instances().contains(&dead));
    assert_eq!(kept.take(), Vec::<Vec<Value>>::new(), "nothing left yet");

    advance_to(t0 + LEASE + HEARTBEAT).await;
    assert_eq!(backend.live_member_count(), 1, "at +4 s");
    assert!(
        !backend.registered_instances().contains(&dead),
        "the dead instance is forgotten"
    );
    let mut frames: Vec<Value> = Vec::new();
    until("the survivor's client hears of the reaping", || {
        frames.extend(kept.take().into_iter().flatten());
        frames.iter().any(|f| f["type"] == "leader_changed")
    })
    .await;
    let left: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "member_left")
        .collect();
    assert_eq!(left.len(), 1, "{frames:#?}");
    assert_eq!(left[0]["connection"], lost.connection.as_str());
    assert_eq!(left[0]["reason"], "instance_lost");
    let handed: Vec<&Value> = frames
        .iter()
        .filter(|f| f["type"] == "leader_changed")
        .collect();
    assert_eq!(handed.len(), 1, "{frames:#?}");
    assert_eq!(handed[0]["leader"], kept.connection.as_str());
    assert_eq!(Instant::now(), t0 + LEASE + HEARTBEAT);
}

// ---------------------------------------------------------------------------------------------
// 2. The outbox's batch window.

/// `--message-batch-ms 10`: a frame 10 ms after the last write goes at once; frames that follow
/// within the window (at +4 and +6 ms) are held, nothing arrives at +9 ms, and both arrive in one
/// write at +10 ms, when the window since the last write ends.
#[actix_rt::test(system = "PausedSystem")]
async fn frames_within_the_batch_window_are_held_and_written_together_when_it_ends() {
    const WINDOW: Duration = Duration::from_millis(10);
    let t0 = Instant::now();
    let backend = MemoryBackend::new(Duration::from_secs(7_200));
    let engine = engine_on(
        &backend,
        &settings("batch", |s| s.supervisor.delivery.batch = WINDOW),
    )
    .await;
    let (mut a, mut b) = (Client::new("a"), Client::new("b"));
    a.join(&engine, "batched", Presence::Full).await;
    b.join(&engine, "batched", Presence::Full).await;
    // B's join reaches A at t0 or, held, at the end of the window: the last write is at +10 ms
    // at the latest.
    advance_to(t0 + WINDOW).await;
    let joined: Vec<Value> = a.take().into_iter().flatten().collect();
    assert_eq!(joined.len(), 1, "B's join: {joined:?}");
    assert_eq!(joined[0]["type"], "member_joined");

    // Quiet for a whole window since that write: the next frame goes at once.
    let t1 = t0 + WINDOW * 2;
    advance_to(t1).await;
    a.publish(json!(1)).await;
    let first = b.next_writes("message 1").await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].len(), 1);
    assert_eq!(first[0][0]["data"], 1);
    assert_eq!(Instant::now(), t1, "message 1 went at once");

    advance_to(t1 + ms(4)).await;
    a.publish(json!(2)).await;
    advance_to(t1 + ms(6)).await;
    a.publish(json!(3)).await;
    advance_to(t1 + WINDOW - ms(1)).await;
    assert_eq!(b.take(), Vec::<Vec<Value>>::new(), "held at +9 ms");

    advance_to(t1 + WINDOW).await;
    let held = b.next_writes("messages 2 and 3").await;
    assert_eq!(held.len(), 1, "one write: {held:?}");
    let data: Vec<&Value> = held[0].iter().map(|f| &f["data"]).collect();
    assert_eq!(data, [&json!(2), &json!(3)]);
    assert_eq!(Instant::now(), t1 + WINDOW);
    assert_eq!(
        a.take(),
        Vec::<Vec<Value>>::new(),
        "a publisher never gets its own"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. `counts` pacing.

/// `--counts-interval-ms 1000`: a counts member gets `counts` at once when it joins; a change at
/// +100 ms is sent when the interval since the last one ends (nothing at +999 ms, sent at
/// +1000 ms); a join and a leave within the next interval leave the counts as they were, so
/// nothing is sent when it ends; a change after a quiet interval is sent at once.
#[actix_rt::test(system = "PausedSystem")]
async fn a_counts_member_gets_at_most_one_counts_event_per_interval_and_only_on_a_change() {
    const INTERVAL: Duration = Duration::from_millis(1_000);
    let t0 = Instant::now();
    let backend = MemoryBackend::new(Duration::from_secs(7_200));
    let tune = |s: &mut EngineSettings| s.supervisor.delivery.counts_interval = INTERVAL;
    let engine = engine_on(&backend, &settings("counts", tune)).await;
    let connections = |frames: &[Value]| -> Vec<u64> {
        frames
            .iter()
            .map(|f| f["counts"]["connections"].as_u64().expect("counts"))
            .collect()
    };

    let mut f1 = Client::new("f1");
    f1.join(&engine, "paced", Presence::Full).await;
    let mut c = Client::new("c");
    c.join(&engine, "paced", Presence::Counts).await;
    let mut counts = Vec::new();
    until("the counts of C's join", || {
        counts.extend(c.take_of_type("counts"));
        !counts.is_empty()
    })
    .await;
    assert_eq!(connections(&counts), [2]);
    assert_eq!(Instant::now(), t0, "sent at once");

    advance_to(t0 + ms(100)).await;
    let mut f2 = Client::new("f2");
    f2.join(&engine, "paced", Presence::Full).await;
    settle().await;
    assert_eq!(c.take_of_type("counts"), Vec::<Value>::new(), "at +100 ms");
    advance_to(t0 + INTERVAL - ms(1)).await;
    assert_eq!(c.take_of_type("counts"), Vec::<Value>::new(), "at +999 ms");
    advance_to(t0 + INTERVAL).await;
    let mut counts = Vec::new();
    until("the counts of F2's join", || {
        counts.extend(c.take_of_type("counts"));
        !counts.is_empty()
    })
    .await;
    assert_eq!(connections(&counts), [3], "at +1000 ms");

    // A join and a leave within the interval: the counts end as they were sent.
    advance_to(t0 + ms(1_200)).await;
    let mut f3 = Client::new("f3");
    f3.join(&engine, "paced", Presence::Full).await;
    advance_to(t0 + ms(1_300)).await;
    f3.leave().await;
    advance_to(t0 + INTERVAL * 2 - ms(1)).await;
    assert_eq!(c.take_of_type("counts"), Vec::<Value>::new(), "at +1999 ms");
    advance_to(t0 + INTERVAL * 2).await;
    assert_eq!(
        c.take_of_type("counts"),
        Vec::<Value>::new(),
        "at +2000 ms: the counts did not change"
    );

    // The last one went at +1000 ms: a change at +2500 ms goes at once.
    advance_to(t0 + ms(2_500)).await;
    f2.leave().await;
    let mut counts = Vec::new();
    until("the counts of F2's leave", || {
        counts.extend(c.take_of_type("counts"));
        !counts.is_empty()
    })
    .await;
    assert_eq!(connections(&counts), [2]);
    assert_eq!(Instant::now(), t0 + ms(2_500), "sent at once");
}

// ---------------------------------------------------------------------------------------------
// 4. The client timeout.

/// A client frame as a browser sends it: masked (RFC 6455 §5.2), here with a zero key, so the
/// payload goes as it is. Final, payload under 126 bytes.
fn client_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let len = u8::try_from(payload.len())
        .ok()
        .filter(|&len| len < 126)
        .expect("a short payload");
    let mut frame = vec![0x80 | opcode, 0x80 | len, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    Bytes::from(frame)
}

const TEXT: u8 = 0x1;
const PONG: u8 = 0xA;

/// A real connection actor whose WebSocket context is fed and read in process: no socket, so
/// nothing but the paused clock times it.
struct Connection {
    /// What the client sends.
    client: mpsc::UnboundedSender<Result<Bytes, PayloadError>>,
    /// The connection's outgoing stream has ended: the server dropped it.
    closed: Arc<AtomicBool>,
}

impl Connection {
    fn open(engine: &Engine) -> Connection {
        let permit = engine.admission().try_admit().expect("a connection slot");
        let actor = ConnectionActor::new(
            Identity::default(),
            engine.connection_settings().clone(),
            engine.supervisor().clone(),
            permit,
        );
        let (client, mut incoming) = mpsc::unbounded_channel();
        let incoming = futures_util::stream::poll_fn(move |cx| incoming.poll_recv(cx));
        let mut outgoing = Box::pin(ws::WebsocketContext::create(actor, incoming));
        let closed = Arc::new(AtomicBool::new(false));
        let ended = closed.clone();
        actix_rt::spawn(async move {
            while let Some(written) = outgoing.next().await {
                written.expect("the connection writes its frames");
            }
            ended.store(true, Ordering::SeqCst);
        });
        Connection { client, closed }
    }

    fn send(&self, opcode: u8, payload: &[u8]) {
        let frame = client_frame(opcode, payload);
        self.client.send(Ok(frame)).expect("the connection reads");
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// `--client-timeout-ms 10000`, pings every 5 s: two connections join at t0; one stays silent,
/// the other answers a ping at +4 s and then falls silent. The first is a member until +9.999 s
/// and is closed, its membership ending with reason `timeout`, at +10 s; the other, checked again
/// then, is a member until +13.999 s and closed the same way at +14 s, the timeout after its last
/// frame.
#[actix_rt::test(system = "PausedSystem")]
async fn a_silent_connection_is_closed_with_reason_timeout_exactly_at_the_client_timeout() {
    const TIMEOUT: Duration = Duration::from_secs(10);
    const ANSWERS: Duration = Duration::from_secs(4);
    let t0 = Instant::now();
    let backend = MemoryBackend::new(Duration::from_secs(7_200));
    let tune = |s: &mut EngineSettings| {
        s.connection.client_timeout = TIMEOUT;
        s.connection.ping_interval = Duration::from_secs(5);
    };
    let engine = engine_on(&backend, &settings("timeout", tune)).await;
    let mut watcher = Client::new("watcher");
    watcher.join(&engine, "quiet", Presence::Full).await;

    let join = br#"{"type":"join","session":"quiet"}"#;
    let mut joined = Vec::new();
    let mut connect = async || {
        let connection = Connection::open(&engine);
        connection.send(TEXT, join);
        until("a connection's join", || {
            joined.extend(watcher.take_of_type("member_joined"));
            !joined.is_empty()
        })
        .await;
        let id = joined.remove(0)["member"]["connection"].clone();
        (connection, id)
    };
    let (silent, silent_id) = connect().await;
    let (answering, answering_id) = connect().await;
    assert_eq!(Instant::now(), t0);
    assert_eq!(backend.live_member_count(), 3);

    advance_to(t0 + ANSWERS).await;
    answering.send(PONG, b"");
    settle().await;
    advance_to(t0 + Duration::from_secs(5)).await;
    advance_to(t0 + TIMEOUT - ms(1)).await;
    assert_eq!(backend.live_member_count(), 3, "at +9.999 s");
    assert_eq!(watcher.take_of_type("member_left"), Vec::<Value>::new());
    assert!(!silent.is_closed(), "open at +9.999 s");

    advance_to(t0 + TIMEOUT).await;
    let mut left = Vec::new();
    until("the silent connection's member_left", || {
        left.extend(watcher.take_of_type("member_left"));
        !left.is_empty()
    })
    .await;
    assert_eq!(
        (&left[0]["connection"], &left[0]["reason"]),
        (&silent_id, &json!("timeout"))
    );
    until("the silent connection's stream ends", || silent.is_closed()).await;
    assert_eq!(backend.live_member_count(), 2, "at +10 s");
    assert!(!answering.is_closed(), "open at +10 s");
    assert_eq!(Instant::now(), t0 + TIMEOUT);

    advance_to(t0 + ANSWERS + TIMEOUT - ms(1)).await;
    assert_eq!(backend.live_member_count(), 2, "at +13.999 s");
    assert_eq!(watcher.take_of_type("member_left"), Vec::<Value>::new());
    assert!(!answering.is_closed(), "open at +13.999 s");

    advance_to(t0 + ANSWERS + TIMEOUT).await;
    let mut left = Vec::new();
    until("the answering connection's member_left", || {
        left.extend(watcher.take_of_type("member_left"));
        !left.is_empty()
    })
    .await;
    assert_eq!(
        (&left[0]["connection"], &left[0]["reason"]),
        (&answering_id, &json!("timeout"))
    );
    until("the answering connection's stream ends", || {
        answering.is_closed()
    })
    .await;
    assert_eq!(backend.live_member_count(), 1, "the watcher");
    assert_eq!(Instant::now(), t0 + ANSWERS + TIMEOUT);
}

// ---------------------------------------------------------------------------------------------
// 5. The rate limiter.

/// 2 requests per second with bursts of 3, closed after 4 refusals: the burst passes at once, the
/// next request is refused; one more passes exactly 500 ms (1/rate) later and not 1 ms before;
/// the fifth refusal within the 10 s window closes; the bucket still refills on time.
#[tokio::test(start_paused = true)]
async fn the_rate_limiter_refills_one_request_per_period_and_closes_after_repeated_refusals() {
    let limiter = RequestLimiter::new(RateSettings {
        per_second: 2,
        burst: 3,
        close_after: 4,
    });
    let burst: Vec<Verdict> = (0..3).map(|_| limiter.check()).collect();
    assert_eq!(burst, [Verdict::Allow; 3]);
    assert_eq!(limiter.check(), Verdict::Refuse, "refusal 1, at t0");

    tokio::time::advance(ms(499)).await;
    assert_eq!(limiter.check(), Verdict::Refuse, "refusal 2, at +499 ms");
    tokio::time::advance(ms(1)).await;
    assert_eq!(limiter.check(), Verdict::Allow, "at +500 ms");
    assert_eq!(limiter.check(), Verdict::Refuse, "refusal 3, at +500 ms");

    tokio::time::advance(ms(499)).await;
    assert_eq!(limiter.check(), Verdict::Refuse, "refusal 4, at +999 ms");
    assert_eq!(limiter.check(), Verdict::Close, "a fifth within 10 s");
    tokio::time::advance(ms(1)).await;
    assert_eq!(limiter.check(), Verdict::Allow, "at +1000 ms");
}

// ---------------------------------------------------------------------------------------------
// 6. The persistence retry backoff.

/// How the test makes the SQLite database fail a write: each way gives its own error, so the test
/// can tell when the writer tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Broken {
    Not,
    /// `session_participants` renamed away: "no such table: session_participants".
    Participants,
    /// `sessions` renamed away: "no such table: sessions".
    Sessions,
}

impl Broken {
    fn error(self) -> &'static str {
        match self {
            Broken::Not => "",
            Broken::Participants => "no such table: session_participants",
            Broken::Sessions => "no such table: sessions",
        }
    }

    fn other(self) -> Broken {
        match self {
            Broken::Participants => Broken::Sessions,
            _ => Broken::Participants,
        }
    }
}

/// Changes how `db` (an in-memory SQLite database: one connection) fails, from `from` to `to`.
/// Runs while no write is in flight, so the connection is free.
fn breaking(db: &Database, from: Broken, to: Broken) {
    use diesel::connection::SimpleConnection;
    let Database::Sqlite(pool) = db else {
        panic!("an SQLite database")
    };
    let mut conn = pool.get().expect("the connection is free between writes");
    let sql = |broken: Broken, away: bool| match (broken, away) {
        (Broken::Not, _) => "",
        (Broken::Participants, true) => "ALTER TABLE session_participants RENAME TO away_p;",
        (Broken::Participants, false) => "ALTER TABLE away_p RENAME TO session_participants;",
        (Broken::Sessions, true) => "ALTER TABLE sessions RENAME TO away_s;",
        (Broken::Sessions, false) => "ALTER TABLE away_s RENAME TO sessions;",
    };
    let script = format!("{}{}", sql(from, false), sql(to, true));
    conn.batch_execute(&script).expect("alter the schema");
}

/// The writer's state once no write is in flight and `done` holds of it. The writes run on the
/// blocking pool, in real time: gives up after 5 s of it.
async fn health_once(
    persistence: &Persistence,
    what: &str,
    done: impl Fn(&DatabaseHealth) -> bool,
) -> DatabaseHealth {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let health = persistence.health().await;
        if health.in_flight == 0 && done(&health) {
            return health;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 5 s of real time; {health:?}"
        );
        tokio::task::yield_now().await;
    }
}

fn failed_with(health: &DatabaseHealth, error: &str) -> bool {
    health
        .last_error
        .as_deref()
        .is_some_and(|last| last.contains(error))
}

/// Backoff 100 ms doubling up to 500 ms: a flush that fails at t0 is retried at +100, +300 (100 +
/// 200), +700 (+ 400), +1200 and +1700 ms (+ 500, the cap, twice); never 1 ms before; the retry
/// after the database is back writes the record.
///
/// Each attempt runs on the blocking pool, in real time, but a paused clock does not move while a
/// blocking task runs. The periodic ping, which would retry early once the database answers, is
/// kept out of the window (every hour).
#[actix_rt::test(system = "PausedSystem")]
async fn a_failed_flush_is_retried_after_backoff_min_doubling_up_to_backoff_max() {
    let (db, _) = Database::open("sqlite://:memory:").expect("an in-memory database");
    let persistence = Persistence::start(
        db.clone(),
        PersistenceSettings {
            backoff_min: ms(100),
            backoff_max: ms(500),
            health_interval: Duration::from_secs(3_600),
        },
    );
    let t0 = Instant::now();
    let mut broken = Broken::Participants;
    breaking(&db, Broken::Not, broken);

    let mut ada = member("ada", &"elsewhere".into());
    ada.joined_at = 1_700_000_000_000;
    persistence.recorder().do_send(RecordChange {
        session: "kept".into(),
        change: Change {
            version: 1,
            leader: Some(ada.connection.clone()),
            epoch: 1,
            events: vec![Event::MemberJoined { member: ada }],
        },
    });
    let health = health_once(&persistence, "the first flush fails", |h| {
        failed_with(h, broken.error())
    })
    .await;
    assert!(!health.up && health.written == 0, "{health:?}");
    assert_eq!(Instant::now(), t0, "the first flush failed at t0");

    // Each retry: its gap since the one before, and whether the database is back for it.
    let mut at = t0;
    for (gap, heals) in [
        (100, false),
        (200, false),
        (400, false),
        (500, false),
        (500, true),
    ] {
        // The last attempt failed with `broken`'s error; the next one is to fail with another.
        let last = broken;
        broken = if heals { Broken::Not } else { last.other() };
        breaking(&db, last, broken);
        at += ms(gap);
        let elapsed = (at - t0).as_millis();

        advance_to(at - ms(1)).await;
        let before = health_once(&persistence, "the writer", |_| true).await;
        assert!(
            before.written == 0 && failed_with(&before, last.error()),
            "no retry 1 ms before +{elapsed} ms: {before:?}"
        );

        advance_to(at).await;
        let what = format!("the retry at +{elapsed} ms");
        health_once(&persistence, &what, |h| match broken {
            Broken::Not => h.written == 1,
            _ => failed_with(h, broken.error()),
        })
        .await;
        assert_eq!(Instant::now(), at, "{what}");
    }
    let health = persistence.health().await;
    assert!(
        health.up && health.flushes == 1 && health.pending == 0,
        "{health:?}"
    );
    let rows = db.participants("kept").expect("read the rows");
    assert_eq!(rows.len(), 1, "written once: {rows:?}");
}

// ---------------------------------------------------------------------------------------------
// 7. The resume grace.

/// Grace 2 s, heartbeat 1 s: a member whose socket was lost at +0 is `reconnecting` until its
/// deadline (+2 s on the store's clock); the heartbeat at +2 s, one millisecond of store time
/// before it, leaves it alone, and the heartbeat after the deadline removes it with its reason
/// (`disconnected`) and hands the lead over in the same change.
#[actix_rt::test(system = "PausedSystem")]
async fn a_lost_member_leaves_at_the_first_heartbeat_after_its_grace_ran_out() {
    const START_MS: i64 = 1_000_000;
    let wall = rollcall::clock::WallClock::manual(START_MS);
    let backend = MemoryBackend::with_clock(Duration::from_secs(7_200), wall.clone());
    let engine = engine_on(
        &backend,
        &settings("grace", |s| {
            s.supervisor.heartbeat = ms(1_000);
            s.supervisor.resume_grace = ms(2_000);
        }),
    )
    .await;
    let t0 = Instant::now();
    let mut lost = Client::new("lost");
    let mut stays = Client::new("stays");
    lost.join(&engine, "s", Presence::Full).await;
    stays.join(&engine, "s", Presence::Full).await;
    stays.take();
    let socket_lost = rollcall::actors::session::Lost(Leave {
        connection: lost.connection.clone().into(),
        reason: LeaveReason::Disconnected,
        socket: None,
    });
    lost.actor()
        .send(socket_lost)
        .await
        .expect("the session actor answers")
        .expect("the loss is written");
    let writes = stays.next_writes("the member reconnecting").await;
    let updated = &writes[0][0];
    assert_eq!(updated["type"], "member_updated", "{updated}");
    assert_eq!(updated["member"]["state"], "reconnecting");
    assert_eq!(updated["member"]["grace"]["until"], START_MS + 2_000);

    // The heartbeat at +2 s, with the store's clock 1 ms short of the deadline.
    wall.set(START_MS + 1_999);
    advance_to(t0 + ms(2_000)).await;
    assert_eq!(
        stays.take(),
        Vec::<Vec<Value>>::new(),
        "not yet: the grace runs"
    );
    // The next heartbeat, the deadline passed.
    wall.set(START_MS + 2_000);
    advance_to(t0 + ms(3_000)).await;
    let writes = stays.next_writes("the grace's end").await;
    let frames: Vec<&Value> = writes.iter().flatten().collect();
    assert_eq!(frames[0]["type"], "member_left", "{frames:?}");
    assert_eq!(frames[0]["connection"], lost.connection.as_str());
    assert_eq!(frames[0]["reason"], "disconnected");
    assert_eq!(frames[1]["type"], "leader_changed");
    assert_eq!(frames[1]["leader"], stays.connection.as_str());
    assert_eq!(frames[0]["version"], frames[1]["version"], "one change");
}
