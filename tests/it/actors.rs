//! The engine's core scenarios driven directly through actor messages, without HTTP: the supervisor
//! routes `Join`, the session actor handles `Leave`, `UpdateProfile`, `Publish`, `ReadMembers` and
//! `EndSession`, and a small test actor stands in for each socket.

use std::time::Duration;

use crate::support::probe::forward;
use crate::support::server::{WAIT, test_args};
use crate::support::stand_in::Socket;
use actix::{Actor, Addr};
use rollcall::actors::session::{
    CurrentView, EndSession, Leave, Publish, ReadMembers, SessionActor, UpdateProfile,
};
use rollcall::actors::supervisor::{Join, LookupSession, ReconcileAll};
use rollcall::actors::{ReplyFrame, ToClient};
use rollcall::engine::{Engine, EngineSettings};
use rollcall::model::{Counts, LeaveReason, Member, MemberState, Presence, SessionView};
use rollcall::protocol::error::ErrorCode;
use rollcall::store::InstanceId;
use rollcall::store::memory::MemoryBackend;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// One fake connection: its id, its recipient, and what it received.
struct Probe {
    id: String,
    user: Option<String>,
    client: actix::Recipient<ToClient>,
    rx: mpsc::UnboundedReceiver<ToClient>,
    /// Every frame received, parsed.
    frames: Vec<Value>,
    /// How many frames each delivery carried, in order (a socket writes each delivery at once).
    writes: Vec<usize>,
    /// Sessions whose membership the engine ended (`MembershipEnded`).
    ended: Vec<String>,
    /// The close code, once the engine asked to close this connection.
    close: Option<u16>,
    session: Option<Addr<SessionActor>>,
}

impl Probe {
    fn new(user: Option<&str>) -> Probe {
        let (client, rx) = forward::<ToClient>();
        Probe {
            id: uuid::Uuid::new_v4().to_string(),
            user: user.map(str::to_owned),
            client,
            rx,
            frames: Vec::new(),
            writes: Vec::new(),
            ended: Vec::new(),
            close: None,
            session: None,
        }
    }

    fn member(&self, name: &str) -> Member {
        Member {
            connection: self.id.clone().into(),
            user: self.user.clone(),
            name: name.to_owned(),
            avatar: None,
            joined_at: 0,
            instance: String::new().into(),
            state: MemberState::Present,
            grace: None,
        }
    }

    async fn join(&mut self, engine: &Engine, session: &str) -> Result<SessionView, ErrorCode> {
        let join = Join {
            session: session.to_owned().into(),
            member: self.member("Guest"),
            client: self.client.clone(),
            socket: None,
            reply: ReplyFrame::Caller,
            presence: Presence::Full,
        };
        let joined = engine
            .supervisor()
            .send(join)
            .await
            .expect("the supervisor answers");
        match joined {
            Ok(joined) => {
                self.session = Some(joined.actor);
                Ok(joined.view)
            }
            Err(e) => Err(e.code),
        }
    }

    fn actor(&self) -> &Addr<SessionActor> {
        self.session.as_ref().expect("joined a session")
    }

    async fn leave(&mut self, reason: LeaveReason) -> Result<(), ErrorCode> {
        let leave = Leave {
            connection: self.id.clone().into(),
            reason,
            socket: None,
        };
        let result = self
            .actor()
            .send(leave)
            .await
            .expect("the session actor answers");
        result.map(|_version| ()).map_err(|e| e.code)
    }

    async fn read(&self) -> Result<SessionView, ErrorCode> {
        let read = ReadMembers {
            connection: self.id.clone().into(),
            reply: ReplyFrame::Caller,
        };
        let result = self
            .actor()
            .send(read)
            .await
            .expect("the session actor answers");
        result.map_err(|e| e.code)
    }

    async fn end(&self, epoch: u64) -> Result<(), ErrorCode> {
        let end = EndSession {
            connection: self.id.clone().into(),
            epoch,
        };
        let result = self
            .actor()
            .send(end)
            .await
            .expect("the session actor answers");
        result.map_err(|e| e.code)
    }

    fn take(&mut self, msg: ToClient) {
        match msg {
            ToClient::Frame(text) => {
                self.writes.push(1);
                self.frames
                    .push(serde_json::from_str(&text).expect("frames are JSON"));
            }
            ToClient::Frames(frames) => {
                self.writes.push(frames.len());
                for text in frames.iter() {
                    self.frames
                        .push(serde_json::from_str(text).expect("frames are JSON"));
                }
            }
            ToClient::MembershipEnded { session } | ToClient::Replaced { session } => {
                self.ended.push(session.to_string())
            }
            ToClient::Close { code, .. } => self.close = Some(code),
        }
    }

    /// Takes everything delivered so far.
    fn drain(&mut self) {
        while let Ok(msg) = self.rx.try_recv() {
            self.take(msg);
        }
    }

    /// Waits for a frame matching `pred` (among those received or still to come).
    async fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut checked = 0;
        loop {
            if let Some(found) = self.frames[checked..].iter().find(|f| pred(f)) {
                return found.clone();
            }
            checked = self.frames.len();
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(msg)) => self.take(msg),
                _ => panic!(
                    "{}: no {what} within {WAIT:?}; frames: {:#?}",
                    self.id, self.frames
                ),
            }
        }
    }

    /// Waits until the engine asks to close this connection; returns the code.
    async fn expect_close(&mut self) -> u16 {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.close.is_none() {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(msg)) => self.take(msg),
                _ => panic!("{}: no Close within {WAIT:?}", self.id),
            }
        }
        self.close.expect("close code")
    }
}

fn settings() -> EngineSettings {
    EngineSettings::from_args(&test_args())
}

async fn publish(probe: &Probe, data: Value) {
    let publish = Publish {
        connection: probe.id.clone().into(),
        data,
    };
    probe
        .actor()
        .send(publish)
        .await
        .expect("the session actor answers")
        .expect("published");
}

/// The `message` frames among `frames`, as their `data`.
fn messages(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["data"].clone())
        .collect()
}

async fn engine() -> Engine {
    Engine::start_in_memory(&settings())
        .await
        .expect("the engine starts")
}

/// An engine on a backend the test keeps, to look into the store or make it lose its data.
async fn engine_on(backend: &MemoryBackend) -> Engine {
    let settings = settings();
    let (store, feed) = backend.connect(InstanceId::new(settings.instance_name.clone()));
    Engine::start(std::sync::Arc::new(store), feed, &settings)
        .await
        .expect("the engine starts")
}

fn left_event(frame: &Value, connection: &str) -> bool {
    frame["type"] == "member_left" && frame["connection"] == connection
}

async fn next_millisecond() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

#[actix_rt::test]
async fn join_leave_and_the_events_other_members_receive() {
    let engine = engine().await;
    let mut a = Probe::new(None);
    let mut b = Probe::new(Some("u-b"));
    let v1 = a.join(&engine, "s").await.expect("A joins");
    assert_eq!((v1.version, v1.epoch), (1, 1));
    assert_eq!(v1.leader.as_deref(), Some(a.id.as_str()));
    assert_eq!(
        v1.members[0].instance,
        engine.store().instance().incarnation,
        "a member is recorded under this instance's incarnation"
    );
    let v2 = b.join(&engine, "s").await.expect("B joins");
    assert_eq!(v2.version, 2);
    assert_eq!(v2.members.len(), 2);

    let joined = a
        .expect("member_joined", |f| f["type"] == "member_joined")
        .await;
    assert_eq!(joined["member"]["connection"], b.id.as_str());
    assert_eq!(joined["member"]["user"], "u-b");
    assert_eq!(joined["version"], 2);

    for (i, reason) in [
        LeaveReason::Left,
        LeaveReason::Disconnected,
        LeaveReason::Timeout,
    ]
    .into_iter()
    .enumerate()
    {
        b.leave(reason).await.expect("B leaves");
        let left = a
            .expect("member_left", |f| {
                left_event(f, &b.id) && f["reason"] == reason.as_str()
            })
            .await;
        assert_eq!(left["version"], 3 + 2 * i as u64, "{left}");
        b.join(&engine, "s").await.expect("B joins again");
    }
    assert_eq!(b.leave(LeaveReason::Left).await, Ok(()));
    assert_eq!(
        b.leave(LeaveReason::Left).await,
        Err(ErrorCode::NotMember),
        "leaving twice"
    );
    b.drain();
    assert!(
        b.frames
            .iter()
            .all(|f| f["type"] != "member_joined" || f["member"]["connection"] != b.id.as_str()),
        "a joiner gets no member_joined about itself"
    );
}

#[actix_rt::test]
async fn counts_tell_connections_from_distinct_users() {
    let engine = engine().await;
    let mut probes = vec![
        Probe::new(Some("ada")),
        Probe::new(Some("ada")),
        Probe::new(Some("bob")),
        Probe::new(None),
        Probe::new(None),
    ];
    let mut last = SessionView::default();
    for p in &mut probes {
        last = p.join(&engine, "counts").await.expect("join");
    }
    let expected = Counts {
        connections: 5,
        users: 4, // ada (two tabs) + bob + two anonymous connections
        reconnecting: 0,
    };
    assert_eq!(last.counts(), expected);
    let view = probes[0].read().await.expect("read");
    assert_eq!(view.counts(), expected);
    probes[1].leave(LeaveReason::Left).await.expect("leave");
    let view = probes[0].read().await.expect("read");
    assert_eq!(
        view.counts(),
        Counts {
            connections: 4,
            users: 4,
            reconnecting: 0,
        }
    );
    let counts = engine
        .store()
        .counts(&["counts".to_owned(), "nothing".to_owned()])
        .await
        .expect("counts");
    assert_eq!(
        counts,
        vec![
            Counts {
                connections: 4,
                users: 4,
                reconnecting: 0,
            },
            Counts::default()
        ]
    );
}

#[actix_rt::test]
async fn leadership_goes_to_the_earliest_joined_member_and_newcomers_never_displace() {
    let engine = engine().await;
    let mut p: Vec<Probe> = (0..4).map(|_| Probe::new(None)).collect();
    for probe in &mut p {
        probe.join(&engine, "lead").await.expect("join");
        next_millisecond().await;
    }
    let view = p[3].read().await.expect("read");
    assert_eq!(view.leader.as_deref(), Some(p[0].id.as_str()));
    let order: Vec<&str> = view.members.iter().map(|m| m.connection.as_str()).collect();
    assert_eq!(
        order,
        p.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
        "election order = join order"
    );

    p[0].leave(LeaveReason::Left).await.expect("leave");
    let changed = p[3]
        .expect("leader_changed", |f| f["type"] == "leader_changed")
        .await;
    assert_eq!(changed["leader"], p[1].id.as_str());
    assert_eq!(changed["epoch"], 2);

    p[2].leave(LeaveReason::Disconnected).await.expect("leave");
    p[1].leave(LeaveReason::Timeout).await.expect("leave");
    let changed = p[3]
        .expect("second leader_changed", |f| {
            f["type"] == "leader_changed" && f["epoch"] == 3
        })
        .await;
    assert_eq!(changed["leader"], p[3].id.as_str());
    let view = p[3].read().await.expect("read");
    assert_eq!(
        (view.leader.as_deref(), view.epoch),
        (Some(p[3].id.as_str()), 3)
    );

    let mut newcomer = Probe::new(None);
    let joined = newcomer.join(&engine, "lead").await.expect("join");
    assert_eq!(joined.leader.as_deref(), Some(p[3].id.as_str()));
    assert_eq!(joined.epoch, 3);
    p[3].drain();
    let leader_changes = p[3]
        .frames
        .iter()
        .filter(|f| f["type"] == "leader_changed")
        .count();
    assert_eq!(
        leader_changes, 2,
        "exactly the two hand-offs: {:#?}",
        p[3].frames
    );
}

#[actix_rt::test]
async fn an_idempotent_join_changes_nothing_and_sends_nothing() {
    let engine = engine().await;
    let mut a = Probe::new(None);
    let mut b = Probe::new(None);
    a.join(&engine, "same").await.expect("join");
    let before = b.join(&engine, "same").await.expect("join");
    let again = a.join(&engine, "same").await.expect("join again");
    assert_eq!(again, before, "the same view, the same version");
    let mut c = Probe::new(None);
    let with_c = c.join(&engine, "same").await.expect("join");
    assert_eq!(with_c.version, before.version + 1);
    let fence = b
        .expect("member_joined of C", |f| f["type"] == "member_joined")
        .await;
    assert_eq!(fence["member"]["connection"], c.id.as_str());
    assert_eq!(
        b.frames.len(),
        1,
        "B got nothing before C's join: {:#?}",
        b.frames
    );
}

#[actix_rt::test]
async fn profile_updates_and_publish_reach_the_right_members() {
    let engine = engine().await;
    let mut a = Probe::new(None);
    let mut b = Probe::new(None);
    a.join(&engine, "p").await.expect("join");
    b.join(&engine, "p").await.expect("join");

    let update = UpdateProfile {
        connection: a.id.clone().into(),
        name: "Ada".into(),
        avatar: Some("https://e.com/a.png".into()),
    };
    a.actor()
        .send(update)
        .await
        .expect("answer")
        .expect("updated");
    for probe in [&mut a, &mut b] {
        let ev = probe
            .expect("member_updated", |f| f["type"] == "member_updated")
            .await;
        assert_eq!(ev["member"]["name"], "Ada");
        assert_eq!(ev["member"]["avatar"], "https://e.com/a.png");
        assert_eq!(ev["version"], 3);
    }
    let view = b.read().await.expect("read");
    assert_eq!(view.member(&a.id).map(|m| m.name.as_str()), Some("Ada"));

    let publish = Publish {
        connection: a.id.clone().into(),
        data: json!({"hello": [1, 2]}),
    };
    a.actor()
        .send(publish)
        .await
        .expect("answer")
        .expect("published");
    let msg = b.expect("message", |f| f["type"] == "message").await;
    assert_eq!(msg["from"], a.id.as_str());
    assert_eq!(msg["data"], json!({"hello": [1, 2]}));
    // Fence: B's publish reaches A after anything A's own publish sent to A.
    let publish = Publish {
        connection: b.id.clone().into(),
        data: json!(2),
    };
    b.actor()
        .send(publish)
        .await
        .expect("answer")
        .expect("published");
    a.expect("B's message", |f| f["type"] == "message").await;
    assert!(
        a.frames
            .iter()
            .all(|f| f["type"] != "message" || f["from"] != a.id.as_str())
    );

    let stranger = Probe::new(None);
    let publish = Publish {
        connection: stranger.id.clone().into(),
        data: json!(1),
    };
    let err = a.actor().send(publish).await.expect("answer").unwrap_err();
    assert_eq!(err.code, ErrorCode::NotMember);
    let read = ReadMembers {
        connection: stranger.id.clone().into(),
        reply: ReplyFrame::Caller,
    };
    let err = a.actor().send(read).await.expect("answer").unwrap_err();
    assert_eq!(err.code, ErrorCode::NotMember);
}

#[actix_rt::test]
async fn end_needs_the_leader_and_its_epoch_and_removes_everyone() {
    let engine = engine().await;
    let mut a = Probe::new(None);
    let mut b = Probe::new(None);
    let mut c = Probe::new(None);
    let view = a.join(&engine, "end").await.expect("join");
    b.join(&engine, "end").await.expect("join");
    c.join(&engine, "end").await.expect("join");

    assert_eq!(b.end(view.epoch).await, Err(ErrorCode::NotLeader));
    assert_eq!(
        a.end(view.epoch + 1).await,
        Err(ErrorCode::NotLeader),
        "wrong epoch"
    );
    assert_eq!(a.end(view.epoch).await, Ok(()));

    let ids = [a.id.clone(), b.id.clone(), c.id.clone()];
    for probe in [&mut b, &mut c] {
        let ended = probe
            .expect("session_ended", |f| f["type"] == "session_ended")
            .await;
        assert_eq!(ended["by"], ids[0].as_str());
        for id in &ids {
            let left = probe.expect("member_left", |f| left_event(f, id)).await;
            assert_eq!(left["reason"], "ended");
        }
        probe.drain();
        assert_eq!(probe.ended, vec!["end".to_owned()], "the membership ended");
    }
    a.drain();
    assert_eq!(a.ended, vec!["end".to_owned()]);
    assert!(
        a.frames.iter().all(|f| f["type"] != "session_ended"),
        "the ender's reply is `ended`"
    );

    let stored = engine
        .store()
        .view("end")
        .await
        .expect("view")
        .expect("a record");
    assert!(stored.members.is_empty() && stored.ended_at.is_some() && stored.leader.is_none());
    let mut late = Probe::new(None);
    assert_eq!(
        late.join(&engine, "end").await,
        Err(ErrorCode::SessionEnded)
    );
    assert_eq!(a.join(&engine, "end").await, Err(ErrorCode::SessionEnded));
}

#[actix_rt::test]
async fn a_session_actor_retires_with_its_last_member_and_a_new_one_continues_the_versions() {
    let engine = engine().await;
    let mut a = Probe::new(None);
    a.join(&engine, "retire").await.expect("join");
    let first = a.actor().clone();
    a.leave(LeaveReason::Left).await.expect("leave");
    // The session actor reported its count before answering, so the supervisor knows.
    let lookup = engine
        .supervisor()
        .send(LookupSession("retire".into()))
        .await
        .expect("answer");
    assert!(
        lookup.is_none(),
        "the empty session actor is dropped from the registry"
    );
    assert!(
        first.send(CurrentView).await.is_err(),
        "the retired session actor has stopped"
    );

    let mut b = Probe::new(None);
    let view = b.join(&engine, "retire").await.expect("join");
    assert_eq!(
        view.version, 3,
        "versions continue from the store, never back"
    );
    assert_eq!(view.epoch, 3, "epochs too: A led at 1, nobody at 2, B at 3");
    assert_eq!(view.leader.as_deref(), Some(b.id.as_str()));
}

#[actix_rt::test]
async fn graceful_shutdown_removes_members_with_reason_shutdown_and_closes_with_1012() {
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let engine = engine_on(&backend).await;
    let mut a = Probe::new(None);
    let mut b = Probe::new(None);
    a.join(&engine, "bye").await.expect("join");
    b.join(&engine, "bye").await.expect("join");
    // Clients the supervisor should close are registered on connect.
    for p in [&a, &b] {
        engine
            .supervisor()
            .send(rollcall::actors::supervisor::Connect {
                socket: rollcall::actors::SocketId::next(),
                client: p.client.clone(),
            })
            .await
            .expect("the supervisor registers the client");
    }

    tokio::time::timeout(WAIT, engine.shutdown())
        .await
        .expect("the shutdown finishes");
    let (a_id, b_id) = (a.id.clone(), b.id.clone());
    for (me, other) in [(&mut a, b_id), (&mut b, a_id)] {
        let left = me.expect("member_left", |f| left_event(f, &other)).await;
        assert_eq!(left["reason"], "shutdown");
        assert_eq!(me.expect_close().await, 1012);
        assert_eq!(me.ended, vec!["bye".to_owned()]);
    }
    assert_eq!(
        backend.live_member_count(),
        0,
        "no ghost after a graceful stop"
    );
    let mut late = Probe::new(None);
    assert_eq!(
        late.join(&engine, "bye").await,
        Err(ErrorCode::Unavailable),
        "a stopping instance takes no joins"
    );
}

#[actix_rt::test]
async fn reconcile_after_the_store_lost_its_data_reasserts_members_and_sends_a_snapshot() {
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let engine = engine_on(&backend).await;
    let mut a = Probe::new(None);
    let mut b = Probe::new(None);
    a.join(&engine, "heal").await.expect("join");
    next_millisecond().await;
    let before = b.join(&engine, "heal").await.expect("join");

    backend.reset();
    assert_eq!(backend.live_member_count(), 0);
    engine
        .supervisor()
        .send(ReconcileAll { reassert: true })
        .await
        .expect("answer");
    let leader = a.id.clone();
    for probe in [&mut a, &mut b] {
        let snap = probe.expect("snapshot", |f| f["type"] == "snapshot").await;
        assert!(snap["version"].as_u64() > Some(before.version), "{snap}");
        assert!(snap["epoch"].as_u64() >= Some(before.epoch), "{snap}");
        assert_eq!(snap["leader"], leader.as_str());
        assert_eq!(snap["members"].as_array().map(Vec::len), Some(2));
    }
    assert_eq!(backend.live_member_count(), 2, "both members re-asserted");
}

#[actix_rt::test]
async fn joins_racing_the_retirement_of_an_emptied_session_actor_are_never_lost() {
    let engine = engine().await;
    async fn churn(engine: &Engine, probe: &mut Probe, rounds: usize) {
        for round in 0..rounds {
            let view = probe
                .join(engine, "race")
                .await
                .unwrap_or_else(|e| panic!("join {round} failed with {e:?}"));
            assert!(view.member(&probe.id).is_some(), "joined but not listed");
            let read = probe.read().await.expect("members while joined");
            assert!(read.member(&probe.id).is_some());
            assert!(read.leader.is_some());
            probe.leave(LeaveReason::Left).await.expect("leave");
            if round % 3 == 0 {
                tokio::task::yield_now().await;
            }
        }
    }
    let mut a = Probe::new(None);
    let mut b = Probe::new(None);
    futures_util::future::join(churn(&engine, &mut a, 100), churn(&engine, &mut b, 100)).await;
    let stored = engine
        .store()
        .view("race")
        .await
        .expect("view")
        .expect("record");
    assert!(stored.members.is_empty(), "everyone left: {stored:?}");
    assert_eq!(
        stored.version, 400,
        "every join and leave took exactly one version"
    );
    let lookup = engine
        .supervisor()
        .send(LookupSession("race".into()))
        .await
        .expect("answer");
    assert!(lookup.is_none(), "the emptied session actor retired");
}

/// The batch window of the two outbox tests: long enough that "held" and "sent at once" differ
/// by far more than a loaded machine's delays.
const WINDOW: Duration = Duration::from_millis(600);

async fn engine_with_batch_window(window: Duration) -> Engine {
    let mut args = test_args();
    args.message_batch_ms = window.as_millis() as u64;
    Engine::start_in_memory(&EngineSettings::from_args(&args))
        .await
        .expect("the engine starts")
}

#[actix_rt::test]
async fn batched_frames_share_one_write_keep_their_order_and_reach_only_members_present() {
    let engine = engine_with_batch_window(WINDOW).await;
    let (mut a, mut b, mut c) = (Probe::new(None), Probe::new(None), Probe::new(None));
    a.join(&engine, "batch").await.expect("join");
    b.join(&engine, "batch").await.expect("join");
    a.expect("B's join", |f| f["type"] == "member_joined").await;
    a.drain();
    b.drain();
    let (writes_a, writes_b) = (a.writes.len(), b.writes.len());

    // The first frame after a quiet window goes out at once; the window is what is tested.
    tokio::time::sleep(WINDOW).await;
    let sent = tokio::time::Instant::now();
    publish(&a, json!(1)).await;
    b.expect("message 1", |f| f["type"] == "message" && f["data"] == 1)
        .await;
    assert!(
        sent.elapsed() < WINDOW / 2,
        "message 1 waited {:?}, as if held for the window",
        sent.elapsed()
    );
    // Frames right behind it wait for the window, together: messages and presence events alike.
    publish(&a, json!(2)).await;
    publish(&a, json!(3)).await;
    publish(&b, json!(4)).await;
    // A member joining does not cut the window short: what is held, and C's join, go out when
    // the window ends, to the members of the moment each frame was queued (not C).
    c.join(&engine, "batch").await.expect("join");
    let joined = b.expect("C's join", |f| f["type"] == "member_joined").await;
    assert_eq!(joined["member"]["connection"], c.id.as_str());
    assert!(
        sent.elapsed() >= WINDOW,
        "the held frames went out {:?} after message 1, before the window ended",
        sent.elapsed()
    );
    a.expect("C's join", |f| {
        f["type"] == "member_joined" && f["member"]["connection"] == c.id.as_str()
    })
    .await;
    assert_eq!(
        messages(&b.frames),
        [json!(1), json!(2), json!(3)],
        "a publisher never gets its own message"
    );
    assert_eq!(messages(&a.frames), [json!(4)]);
    assert_eq!(
        b.writes[writes_b..],
        [1, 3],
        "B: message 1 alone, then one write for 2, 3 and C's join"
    );
    assert_eq!(
        a.writes[writes_a..],
        [2],
        "A: message 4 and C's join in one write"
    );
    let before_join = b
        .frames
        .iter()
        .position(|f| f["type"] == "member_joined" && f["member"]["connection"] == c.id.as_str());
    let last_message = b.frames.iter().rposition(|f| f["type"] == "message");
    assert!(
        last_message < before_join,
        "messages precede the later join"
    );

    // With nothing else happening, the window's timer delivers the batch, to C as well.
    publish(&a, json!(5)).await;
    publish(&a, json!(6)).await;
    for probe in [&mut b, &mut c] {
        probe
            .expect("message 6", |f| f["type"] == "message" && f["data"] == 6)
            .await;
    }
    assert_eq!(
        messages(&c.frames),
        [json!(5), json!(6)],
        "C got only what came after it joined"
    );
    assert_eq!(c.writes.last(), Some(&2));

    // A member that leaves first gets what was published while it was there.
    publish(&a, json!(7)).await;
    b.leave(LeaveReason::Left).await.expect("leave");
    b.expect("message 7", |f| f["type"] == "message" && f["data"] == 7)
        .await;
    c.expect("message 7", |f| f["type"] == "message" && f["data"] == 7)
        .await;
}

#[actix_rt::test]
async fn a_member_joining_while_frames_are_held_gets_its_joined_at_once_and_none_of_them() {
    let engine = engine_with_batch_window(WINDOW).await;
    let (mut a, mut b) = (Probe::new(None), Probe::new(None));
    a.join(&engine, "busy").await.expect("join");
    b.join(&engine, "busy").await.expect("join");
    a.expect("B's join", |f| f["type"] == "member_joined").await;
    // A quiet window, so that message 1 goes at once and message 2 is held behind it.
    tokio::time::sleep(WINDOW).await;
    publish(&a, json!(1)).await;
    publish(&a, json!(2)).await;

    let joining = tokio::time::Instant::now();
    let mut c = Socket::new("c");
    c.join(&engine, "busy", Presence::Full).await;
    let joined = c.expect("its joined", |f| f["type"] == "joined").await;
    assert!(
        joining.elapsed() < WINDOW / 2,
        "C's joined waited {:?}, as if held with the others' frames",
        joining.elapsed()
    );
    assert_eq!(joined["members"].as_array().map(Vec::len), Some(3));
    b.drain();
    assert_eq!(messages(&b.frames), [json!(1)], "message 2 is still held");

    b.expect("message 2", |f| f["type"] == "message" && f["data"] == 2)
        .await;
    b.expect("C's join", |f| {
        f["type"] == "member_joined" && f["member"]["connection"] == "c"
    })
    .await;
    c.drain();
    assert!(
        c.frames.iter().all(|f| f["type"] != "message"),
        "C joined after message 2 was queued: {:?}",
        c.frames
    );
}

#[actix_rt::test]
async fn a_session_actor_runs_alone_and_reports_its_local_count_to_its_owner() {
    use rollcall::actors::session::{DeliverySettings, JoinLocal, LocalCount, SessionOwner};
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let (store, _feed) = backend.connect(InstanceId::new("alone"));
    let (local_count, mut counts) = forward::<LocalCount>();
    let (orphaned, _orphans) = forward();
    let actor = SessionActor::new(
        "solo".to_owned().into(),
        std::sync::Arc::new(store),
        SessionOwner {
            local_count,
            orphaned,
        },
        10,
        DeliverySettings {
            batch: Duration::ZERO,
            counts_interval: Duration::from_millis(100),
        },
        None,
    )
    .start();
    let probe = Probe::new(Some("ada"));
    let view = actor
        .send(JoinLocal {
            member: probe.member("Ada"),
            client: probe.client.clone(),
            socket: None,
            reply: ReplyFrame::Caller,
            presence: Presence::Full,
        })
        .await
        .expect("the session actor answers")
        .expect("joined");
    assert_eq!(view.leader.as_deref(), Some(probe.id.as_str()));
    let reported = tokio::time::timeout(WAIT, counts.recv()).await;
    let reported = reported
        .expect("a count within the wait")
        .expect("owner alive");
    assert_eq!((reported.session.as_str(), reported.count), ("solo", 1));

    actor
        .send(Leave {
            connection: probe.id.clone().into(),
            reason: LeaveReason::Left,
            socket: None,
        })
        .await
        .expect("the session actor answers")
        .expect("left");
    let reported = tokio::time::timeout(WAIT, counts.recv()).await;
    let reported = reported
        .expect("a count within the wait")
        .expect("owner alive");
    assert_eq!(reported.count, 0, "the owner learns the session is empty");
    assert_eq!(backend.live_member_count(), 0);
}

#[actix_rt::test]
async fn a_client_that_connects_during_a_graceful_stop_is_closed_with_1012() {
    use rollcall::actors::supervisor::Connect;
    let backend = MemoryBackend::new(Duration::from_secs(3));
    let engine = engine_on(&backend).await;
    tokio::time::timeout(WAIT, engine.shutdown())
        .await
        .expect("the shutdown finishes");
    assert!(
        engine.admission().try_admit().is_err(),
        "a stopping instance admits no new connection"
    );
    // One admitted just before the stop reaches the supervisor after it: it is told to go too.
    let mut late = Probe::new(None);
    engine
        .supervisor()
        .send(Connect {
            socket: rollcall::actors::SocketId::next(),
            client: late.client.clone(),
        })
        .await
        .expect("the supervisor registers the client");
    assert_eq!(late.expect_close().await, 1012);
}
