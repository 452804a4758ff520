//! The deliverer on tokio's paused clock, with an outbox and a receiver standing in for the store
//! and the backend. Paused, the clock jumps to the next timer whenever nothing can run, so an hour
//! of retries takes milliseconds and every wait is exact.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use super::*;

use crate::store::{EntryId, OutboxEntry, PendingSession, StoreResult};
use crate::webhooks::transport::TransportError;

fn paused<F: Future>(test: F) -> F::Output {
    actix_rt::System::with_tokio_rt(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime")
    })
    .block_on(test)
}

/// Wall-clock start of every test (store time of its entries).
const T0: i64 = 1_700_000_000_000;
const SECRET: &[u8] = b"test-secret";

#[derive(Default)]
struct FakeOutbox {
    state: Mutex<OutboxState>,
}

#[derive(Default)]
struct OutboxState {
    sessions: BTreeMap<String, VecDeque<OutboxEntry>>,
    /// Whether hold_delivery grants the right.
    refuse_right: bool,
    next_version: BTreeMap<String, u64>,
}

impl FakeOutbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().expect("the fake outbox's lock")
    }

    /// Appends an entry of `n` leader changes (one event each) to `session`, at `at`.
    fn append(&self, session: &str, n: u64, at: i64) {
        let mut state = self.lock();
        let next = state.next_version.entry(session.to_owned()).or_insert(1);
        let first = *next;
        *next += n;
        state
            .sessions
            .entry(session.to_owned())
            .or_default()
            .push_back(crate::webhooks::batch::tests::entry(at, first, n));
    }

    fn entries(&self) -> usize {
        self.lock().sessions.values().map(VecDeque::len).sum()
    }
}

#[async_trait]
impl Outbox for FakeOutbox {
    fn keep_outbox(&self, _on: bool) {}

    async fn pending(
        &self,
        sessions: usize,
        per_session: usize,
        _events: usize,
    ) -> StoreResult<Vec<PendingSession>> {
        Ok(self
            .lock()
            .sessions
            .iter()
            .filter(|(_, entries)| !entries.is_empty())
            .take(sessions)
            .map(|(session, entries)| PendingSession {
                session: session.clone(),
                entries: entries.iter().take(per_session).cloned().collect(),
            })
            .collect())
    }

    async fn acknowledge(
        &self,
        session: &str,
        through: EntryId,
        entries: usize,
    ) -> StoreResult<usize> {
        let mut state = self.lock();
        let queue = state.sessions.entry(session.to_owned()).or_default();
        assert!(queue.len() >= entries, "acknowledged more than was kept");
        assert_eq!(
            queue[entries - 1].id(),
            through,
            "acknowledged another entry than the one read"
        );
        queue.drain(..entries);
        Ok(entries)
    }

    async fn hold_delivery(&self, _ttl: Duration) -> StoreResult<bool> {
        Ok(!self.lock().refuse_right)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Answer(u16),
    Refuse,
    Hang,
}

/// One POST the receiver got.
struct Attempt {
    at: Instant,
    body: Vec<u8>,
    answered: Mode,
    /// Entries left in the outbox when it arrived.
    kept: usize,
}

struct FakeReceiver {
    mode: Mutex<Mode>,
    attempts: Mutex<Vec<Attempt>>,
    outbox: Arc<FakeOutbox>,
}

impl FakeReceiver {
    fn new(outbox: &Arc<FakeOutbox>) -> Arc<FakeReceiver> {
        Arc::new(FakeReceiver {
            mode: Mutex::new(Mode::Answer(200)),
            attempts: Mutex::new(Vec::new()),
            outbox: outbox.clone(),
        })
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().expect("mode") = mode;
    }

    fn attempts(&self) -> std::sync::MutexGuard<'_, Vec<Attempt>> {
        self.attempts.lock().expect("attempts")
    }

    /// The events of the acknowledged posts, in order, as (session, version).
    fn delivered(&self) -> Vec<(String, u64)> {
        self.attempts()
            .iter()
            .filter(|a| a.answered == Mode::Answer(200))
            .flat_map(|a| events_in(&a.body))
            .collect()
    }
}

fn events_in(body: &[u8]) -> Vec<(String, u64)> {
    let body: Value = serde_json::from_slice(body).expect("a JSON body");
    body["events"]
        .as_array()
        .expect("an events array")
        .iter()
        .map(|e| {
            let session = e["session"].as_str().expect("session").to_owned();
            (session, e["version"].as_u64().expect("version"))
        })
        .collect()
}

#[async_trait]
impl Transport for FakeReceiver {
    async fn post(&self, body: Vec<u8>, header: String) -> Result<u16, TransportError> {
        let t: i64 = header
            .strip_prefix("t=")
            .and_then(|rest| rest.split(',').next())
            .and_then(|t| t.parse().ok())
            .expect("t=<seconds>");
        assert_eq!(
            header,
            signature::sign(SECRET, t, &body),
            "a valid signature"
        );
        let mode = *self.mode.lock().expect("mode");
        self.attempts().push(Attempt {
            at: Instant::now(),
            body,
            answered: mode,
            kept: self.outbox.entries(),
        });
        match mode {
            Mode::Answer(status) => Ok(status),
            Mode::Refuse => Err(TransportError("connection refused".into())),
            Mode::Hang => std::future::pending().await,
        }
    }
}

struct Rig {
    outbox: Arc<FakeOutbox>,
    receiver: Arc<FakeReceiver>,
    clock: WallClock,
    counts: Arc<DeliveryCounts>,
    deliverer: Addr<Deliverer>,
}

fn rig(settings: DeliverySettings, prepare: impl FnOnce(&FakeOutbox, &FakeReceiver)) -> Rig {
    let outbox = Arc::new(FakeOutbox::default());
    let receiver = FakeReceiver::new(&outbox);
    prepare(&outbox, &receiver);
    let clock = WallClock::manual(T0);
    let deliverer = Deliverer::new(
        outbox.clone(),
        receiver.clone(),
        SECRET,
        settings,
        clock.clone(),
    );
    let counts = deliverer.counts();
    Rig {
        outbox,
        receiver,
        clock,
        counts,
        deliverer: deliverer.start(),
    }
}

/// Lets the clock run (by at most `within`) until `check` holds.
async fn until(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn backoff_starts_at_one_second_doubles_and_stops_at_a_minute() {
    let settings = DeliverySettings::default();
    let waits: Vec<u64> = (1..=9).map(|n| settings.backoff(n).as_secs()).collect();
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(settings.backoff(u32::MAX), Duration::from_secs(60));
}

#[test]
fn failed_posts_are_retried_unchanged_after_1_2_4_8_16_32_60_60_seconds() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, receiver| {
            outbox.append("s", 2, T0);
            receiver.set(Mode::Answer(500));
        });
        until(Duration::from_secs(300), "nine attempts", || {
            rig.receiver.attempts().len() >= 9
        })
        .await;
        rig.receiver.set(Mode::Answer(204));
        until(Duration::from_secs(120), "the outbox emptied", || {
            rig.outbox.entries() == 0
        })
        .await;
        let attempts = rig.receiver.attempts();
        let gaps: Vec<u64> = attempts
            .windows(2)
            .map(|w| (w[1].at - w[0].at).as_secs())
            .collect();
        assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert!(attempts.iter().all(|a| a.body == attempts[0].body));
        assert_eq!(rig.counts.retried.load(Ordering::Relaxed), 2 * 9);
        assert_eq!(rig.counts.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(
            attempts.len(),
            10,
            "nothing is sent twice once acknowledged"
        );
    });
}

#[test]
fn a_receiver_that_does_not_answer_within_10_seconds_has_failed() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, receiver| {
            outbox.append("s", 1, T0);
            receiver.set(Mode::Hang);
        });
        until(Duration::from_secs(5), "a first attempt", || {
            !rig.receiver.attempts().is_empty()
        })
        .await;
        rig.receiver.set(Mode::Answer(200));
        until(Duration::from_secs(30), "delivered", || {
            rig.outbox.entries() == 0
        })
        .await;
        let attempts = rig.receiver.attempts();
        assert_eq!(attempts.len(), 2);
        assert_eq!(
            attempts[1].at - attempts[0].at,
            Duration::from_secs(11),
            "10 s without an answer, then 1 s of backoff"
        );
    });
}

#[test]
fn a_receiver_down_for_five_minutes_then_back_gets_everything_in_order() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, receiver| {
            outbox.append("a", 3, T0);
            outbox.append("b", 1, T0);
            receiver.set(Mode::Refuse);
        });
        // Changes keep coming while the receiver is down (every 7 s, in both sessions).
        for round in 0..43 {
            tokio::time::sleep(Duration::from_secs(7)).await;
            let at = T0 + (round + 1) * 7_000;
            rig.clock.set(at);
            rig.outbox.append("a", 2, at);
            rig.outbox
                .append(if round % 2 == 0 { "b" } else { "c" }, 1, at);
        }
        assert!(rig.receiver.delivered().is_empty());
        rig.receiver.set(Mode::Answer(200));
        until(Duration::from_secs(61), "everything delivered", || {
            rig.outbox.entries() == 0
        })
        .await;
        let delivered = rig.receiver.delivered();
        for (session, last) in [("a", 3 + 43 * 2), ("b", 1 + 22), ("c", 21)] {
            let versions: Vec<u64> = delivered
                .iter()
                .filter(|(s, _)| s == session)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(
                versions,
                (1..=last).collect::<Vec<_>>(),
                "session {session}"
            );
        }
        assert_eq!(rig.counts.dropped.load(Ordering::Relaxed), 0);
        // The receiver was down longer than the largest backoff: it is retried every minute.
        let gaps: Vec<u64> = rig
            .receiver
            .attempts()
            .windows(2)
            .take(8)
            .map(|w| (w[1].at - w[0].at).as_secs())
            .collect();
        assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 60, 60]);
    });
}

#[test]
fn the_failed_batch_is_posted_again_before_anything_newer() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, receiver| {
            outbox.append("s", 1, T0);
            receiver.set(Mode::Answer(503));
        });
        until(Duration::from_secs(5), "a first attempt", || {
            !rig.receiver.attempts().is_empty()
        })
        .await;
        rig.outbox.append("s", 1, T0 + 10);
        rig.outbox.append("t", 1, T0 + 10);
        until(Duration::from_secs(5), "a retry", || {
            rig.receiver.attempts().len() == 2
        })
        .await;
        rig.receiver.set(Mode::Answer(200));
        until(Duration::from_secs(10), "everything delivered", || {
            rig.outbox.entries() == 0
        })
        .await;
        let attempts = rig.receiver.attempts();
        let bodies: Vec<Vec<(String, u64)>> = attempts.iter().map(|a| events_in(&a.body)).collect();
        assert_eq!(bodies[0], [("s".into(), 1)]);
        assert_eq!(
            bodies[1], bodies[0],
            "the retry carries the failed batch alone"
        );
        assert_eq!(bodies[2], bodies[0], "and so does the one that succeeds");
        assert_eq!(bodies[3], [("s".into(), 2), ("t".into(), 1)]);
        assert_eq!(attempts.len(), 4);
    });
}

#[test]
fn entries_past_the_retention_are_dropped_and_counted_not_sent() {
    paused(async {
        let settings = DeliverySettings {
            retention: Duration::from_secs(30),
            ..DeliverySettings::default()
        };
        let rig = rig(settings, |outbox, receiver| {
            // Already too old when the deliverer starts.
            outbox.append("old", 4, T0 - 31_000);
            outbox.append("s", 2, T0);
            receiver.set(Mode::Answer(500));
        });
        until(Duration::from_secs(5), "a first attempt", || {
            !rig.receiver.attempts().is_empty()
        })
        .await;
        assert_eq!(rig.counts.dropped.load(Ordering::Relaxed), 4);
        assert_eq!(
            events_in(&rig.receiver.attempts()[0].body),
            [("s".into(), 1), ("s".into(), 2)]
        );
        // The receiver stays down past the retention of what is left: dropped too.
        rig.clock.set(T0 + 30_001);
        until(Duration::from_secs(60), "the outbox emptied", || {
            rig.outbox.entries() == 0
        })
        .await;
        let posts = rig.receiver.attempts().len();
        assert_eq!(rig.counts.dropped.load(Ordering::Relaxed), 6);
        assert_eq!(rig.counts.delivered.load(Ordering::Relaxed), 0);
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(rig.receiver.attempts().len(), posts, "nothing left to send");
    });
}

#[test]
fn without_the_delivery_right_nothing_is_sent_or_acknowledged() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, _| {
            outbox.append("s", 3, T0);
            outbox.lock().refuse_right = true;
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(rig.receiver.attempts().is_empty());
        assert_eq!(rig.outbox.entries(), 1);
        // The holder died: the right comes to this instance, which delivers.
        rig.outbox.lock().refuse_right = false;
        until(Duration::from_secs(5), "delivered", || {
            rig.outbox.entries() == 0
        })
        .await;
        assert_eq!(rig.receiver.delivered().len(), 3);
    });
}

#[test]
fn losing_the_right_during_the_backoff_stops_the_retries() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, receiver| {
            outbox.append("s", 1, T0);
            receiver.set(Mode::Answer(500));
        });
        until(Duration::from_secs(20), "four attempts", || {
            rig.receiver.attempts().len() == 4
        })
        .await;
        rig.outbox.lock().refuse_right = true;
        tokio::time::sleep(Duration::from_secs(300)).await;
        assert_eq!(rig.receiver.attempts().len(), 4);
        assert_eq!(rig.outbox.entries(), 1, "kept for the next holder");
    });
}

#[test]
fn an_entry_of_250_events_goes_in_three_posts_and_is_acknowledged_with_the_last() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, _| {
            outbox.append("big", 250, T0);
            outbox.append("big", 1, T0);
        });
        until(Duration::from_secs(5), "delivered", || {
            rig.outbox.entries() == 0
        })
        .await;
        let (sizes, kept): (Vec<usize>, Vec<usize>) = rig
            .receiver
            .attempts()
            .iter()
            .map(|a| (events_in(&a.body).len(), a.kept))
            .unzip();
        assert_eq!(sizes, [100, 100, 51]);
        assert_eq!(
            kept,
            [2, 2, 2],
            "no entry acknowledged before its last event"
        );
        let versions: Vec<u64> = rig.receiver.delivered().iter().map(|(_, v)| *v).collect();
        assert_eq!(versions, (1..=251).collect::<Vec<_>>());
    });
}

#[test]
fn idle_reads_are_a_few_hundred_milliseconds_apart_and_new_work_goes_out_promptly() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |_, _| {});
        tokio::time::sleep(Duration::from_secs(10)).await;
        let appended = Instant::now();
        rig.outbox.append("s", 1, T0);
        until(Duration::from_secs(1), "delivered", || {
            !rig.receiver.attempts().is_empty()
        })
        .await;
        let waited = rig.receiver.attempts()[0].at - appended;
        assert!(waited <= Duration::from_millis(500), "{waited:?}");
        rig.deliverer.do_send(Stop);
    });
}

#[test]
fn drain_answers_once_nothing_is_left() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, _| {
            outbox.append("s", 5, T0);
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        rig.outbox.append("t", 5, T0);
        rig.deliverer.send(Drain).await.expect("the deliverer runs");
        assert_eq!(rig.outbox.entries(), 0);
    });
}

#[test]
fn drain_does_not_wait_for_a_failing_receiver() {
    paused(async {
        let rig = rig(DeliverySettings::default(), |outbox, receiver| {
            outbox.append("s", 1, T0);
            receiver.set(Mode::Answer(500));
        });
        until(Duration::from_secs(5), "three attempts", || {
            rig.receiver.attempts().len() == 3
        })
        .await;
        let asked = Instant::now();
        rig.deliverer.send(Drain).await.expect("the deliverer runs");
        assert_eq!(
            asked.elapsed(),
            Duration::ZERO,
            "answered during the backoff"
        );
        assert_eq!(rig.outbox.entries(), 1, "kept in the store");
    });
}
