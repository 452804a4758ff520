//! Several instances sharing one private Redis: engines in this process driven by actor messages,
//! and real `rollcall` processes driven by WebSocket clients.

use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler};
use rollcall::actors::session::{CurrentView, EndSession, Leave, SessionActor};
use rollcall::actors::supervisor::{Join, LookupSession};
use rollcall::actors::{ReplyFrame, ToClient};
use rollcall::config::ServeArgs;
use rollcall::engine::{Engine, EngineSettings};
use rollcall::model::{LeaveReason, Member, MemberState, Presence};
use rollcall::store::InstanceId;
use rollcall::store::redis::{DEFAULT_SESSION_TTL, RedisStore};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::support::redis::RedisServer;

/// A cross-instance event must arrive within this (the bound is 100 ms; margin for a loaded host).
const EVENT_BOUND: Duration = Duration::from_secs(1);

/// Stands in for a socket: forwards every frame (as JSON) to the test.
struct Probe {
    tx: mpsc::UnboundedSender<Value>,
}

impl Actor for Probe {
    type Context = Context<Self>;
}

impl Handler<ToClient> for Probe {
    type Result = ();

    fn handle(&mut self, msg: ToClient, _ctx: &mut Context<Self>) {
        let frame = match msg {
            ToClient::Frame(text) => serde_json::from_str(&text).unwrap_or(Value::Null),
            ToClient::Frames(frames) => {
                for text in frames.iter() {
                    let _ = self
                        .tx
                        .send(serde_json::from_str(text).unwrap_or(Value::Null));
                }
                return;
            }
            ToClient::MembershipEnded { session } => {
                json!({"type": "test:membership_ended", "session": session})
            }
            ToClient::Replaced { session } => json!({"type": "test:replaced", "session": session}),
            ToClient::Close { code, .. } => json!({"type": "test:close", "code": code}),
        };
        let _ = self.tx.send(frame);
    }
}

/// One test connection on one engine.
struct Client {
    connection: String,
    rx: mpsc::UnboundedReceiver<Value>,
    probe: Addr<Probe>,
    actor: Option<Addr<SessionActor>>,
}

impl Client {
    fn new(connection: &str) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        Client {
            connection: connection.into(),
            rx,
            probe: Probe { tx }.start(),
            actor: None,
        }
    }

    async fn join(&mut self, engine: &Engine, session: &str) -> rollcall::model::SessionView {
        let member = Member {
            connection: self.connection.clone().into(),
            user: Some(format!("user-{}", self.connection)),
            name: self.connection.clone(),
            avatar: None,
            joined_at: 0,
            instance: engine.store().instance().incarnation.clone(),
            state: MemberState::Present,
            grace: None,
        };
        let joined = engine
            .supervisor()
            .send(Join {
                session: session.to_owned().into(),
                member,
                client: self.probe.clone().recipient(),
                socket: None,
                reply: ReplyFrame::Caller,
                presence: Presence::Full,
            })
            .await
            .expect("supervisor alive")
            .unwrap_or_else(|e| panic!("{} could not join {session}: {e:?}", self.connection));
        self.actor = Some(joined.actor);
        joined.view
    }

    fn actor(&self) -> &Addr<SessionActor> {
        self.actor.as_ref().expect("joined")
    }

    async fn leave(&mut self) {
        self.actor()
            .send(Leave {
                connection: self.connection.clone().into(),
                reason: LeaveReason::Left,
                socket: None,
            })
            .await
            .expect("session actor alive")
            .expect("leave");
    }

    /// The first frame matching `pred` within `within`; frames before it are skipped.
    async fn expect(
        &mut self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(frame)) if pred(&frame) => return frame,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{}: probe closed while waiting for {what}", self.connection),
                Err(_) => panic!("{}: no {what} within {within:?}", self.connection),
            }
        }
    }
}

fn settings(name: &str) -> EngineSettings {
    let mut settings = EngineSettings::from_args(&ServeArgs::defaults());
    settings.instance_name = name.to_owned();
    settings.lease = Duration::from_millis(1500);
    settings.supervisor.heartbeat = Duration::from_millis(250);
    settings
}

async fn engine(redis: &RedisServer, name: &str) -> Engine {
    let settings = settings(name);
    let (store, feed) = RedisStore::connect(
        &redis.url(),
        "mi",
        InstanceId::new(name),
        settings.lease,
        DEFAULT_SESSION_TTL,
    )
    .await
    .expect("connect");
    Engine::start(Arc::new(store), feed, &settings)
        .await
        .expect("engine start")
}

fn is(kind: &'static str, key: &'static str, value: String) -> impl Fn(&Value) -> bool {
    move |f| f["type"] == kind && f[key] == json!(value)
}

#[actix_rt::test]
async fn members_and_events_cross_instances() {
    let redis = RedisServer::start();
    let a = engine(&redis, "a").await;
    let b = engine(&redis, "b").await;
    let mut c1 = Client::new("c1");
    let mut c2 = Client::new("c2");
    c1.join(&a, "room").await;
    let view = c2.join(&b, "room").await;
    let seen: Vec<&str> = view.members.iter().map(|m| m.connection.as_str()).collect();
    assert_eq!(seen, ["c1", "c2"], "B's join sees A's member");
    assert_eq!(view.leader.as_deref(), Some("c1"));
    let joined = c1
        .expect("member_joined of c2", EVENT_BOUND, |f| {
            f["type"] == "member_joined" && f["member"]["connection"] == "c2"
        })
        .await;
    assert_eq!(joined["version"], 2);

    c2.leave().await;
    let left = c1
        .expect(
            "member_left of c2",
            EVENT_BOUND,
            is("member_left", "connection", "c2".into()),
        )
        .await;
    assert_eq!(left["reason"], "left");
    let store_view = a.store().view("room").await.unwrap().unwrap();
    assert_eq!(store_view.members.len(), 1);
    a.shutdown().await;
    b.shutdown().await;
}

#[actix_rt::test]
async fn concurrent_joins_spread_over_instances_elect_exactly_one_leader() {
    let redis = RedisServer::start();
    let engines = [
        engine(&redis, "a").await,
        engine(&redis, "b").await,
        engine(&redis, "c").await,
    ];
    for round in 0..50 {
        let session = format!("race-{round}");
        let mut clients: Vec<(usize, Client)> = (0..6)
            .map(|i| (i % 3, Client::new(&format!("r{round}-c{i}"))))
            .collect();
        let joins = clients
            .iter_mut()
            .map(|(e, client)| {
                let engine = engines[*e].clone();
                let session = session.clone();
                async move { client.join(&engine, &session).await }
            })
            .collect::<Vec<_>>();
        futures_util::future::join_all(joins).await;
        let view = engines[0].store().view(&session).await.unwrap().unwrap();
        assert_eq!(view.members.len(), 6, "round {round}: every join counted");
        // The first join to land leads (a same-millisecond newcomer with a smaller id sorts
        // before it but never displaces it).
        let leader = view
            .leader
            .as_deref()
            .and_then(|l| view.member(l))
            .unwrap_or_else(|| panic!("round {round}: the leader is a live member"));
        assert_eq!(
            leader.joined_at, view.members[0].joined_at,
            "round {round}: the earliest member leads"
        );
        assert_eq!(
            view.epoch, 1,
            "round {round}: leadership was given exactly once"
        );
        // Every instance converges on the same single leader.
        for engine in &engines {
            let actor = engine
                .supervisor()
                .send(LookupSession(session.clone().into()))
                .await
                .unwrap()
                .expect("a session actor on every instance");
            let deadline = tokio::time::Instant::now() + EVENT_BOUND;
            loop {
                let local = actor.send(CurrentView).await.unwrap();
                if local.version == view.version {
                    assert_eq!(local.leader, view.leader, "round {round}");
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "round {round}: an instance did not converge (v{} vs v{})",
                    local.version,
                    view.version
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    for engine in &engines {
        engine.shutdown().await;
    }
}

#[actix_rt::test]
async fn leader_leaving_hands_over_to_the_earliest_member_on_another_instance() {
    let redis = RedisServer::start();
    let a = engine(&redis, "a").await;
    let b = engine(&redis, "b").await;
    let mut c1 = Client::new("c1");
    let mut c2 = Client::new("c2");
    let mut c3 = Client::new("c3");
    c1.join(&a, "room").await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    c2.join(&b, "room").await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    c3.join(&a, "room").await;
    c1.leave().await;
    for client in [&mut c2, &mut c3] {
        let changed = client
            .expect(
                "leader_changed to c2",
                EVENT_BOUND,
                is("leader_changed", "leader", "c2".into()),
            )
            .await;
        assert_eq!(changed["epoch"], 2);
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[actix_rt::test]
async fn end_by_the_leader_removes_members_on_every_instance() {
    let redis = RedisServer::start();
    let a = engine(&redis, "a").await;
    let b = engine(&redis, "b").await;
    let mut c1 = Client::new("c1");
    let mut c2 = Client::new("c2");
    let mut c3 = Client::new("c3");
    let view = c1.join(&a, "room").await;
    c2.join(&b, "room").await;
    c3.join(&b, "room").await;
    c1.actor()
        .send(EndSession {
            connection: "c1".into(),
            epoch: view.epoch,
        })
        .await
        .unwrap()
        .expect("the leader may end");
    for client in [&mut c2, &mut c3] {
        // The connection forgets the session first, so whatever it asks once it reads
        // `session_ended` is already answered `not_member`.
        client
            .expect("membership ended", EVENT_BOUND, |f| {
                f["type"] == "test:membership_ended"
            })
            .await;
        client
            .expect("session_ended", EVENT_BOUND, |f| {
                f["type"] == "session_ended"
            })
            .await;
    }
    let view = b.store().view("room").await.unwrap().unwrap();
    assert!(view.members.is_empty() && view.ended_at.is_some());
    // B's session actor has no local member left and retires.
    let deadline = tokio::time::Instant::now() + EVENT_BOUND;
    while b
        .supervisor()
        .send(LookupSession("room".into()))
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B kept a session actor for an ended session"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Real processes.

mod processes {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::EVENT_BOUND;
    use crate::support::process::{FAST_LIVENESS, RollcallProcess};
    use crate::support::redis::RedisServer;
    use crate::support::ws::WsClient;

    async fn start(redis: &RedisServer, name: &str) -> RollcallProcess {
        let flags = [&FAST_LIVENESS[..], &["--key-prefix", "proc"]].concat();
        RollcallProcess::start(&redis.url(), name, &flags).await
    }

    #[tokio::test]
    async fn two_processes_share_members_leaders_and_end() {
        let redis = RedisServer::start();
        let a = start(&redis, "pa").await;
        let b = start(&redis, "pb").await;
        let mut x = WsClient::connect(&a.ws_url()).await;
        let mut y = WsClient::connect(&b.ws_url()).await;
        let mut z = WsClient::connect(&a.ws_url()).await;
        let joined = x.join("room").await;
        assert_eq!(joined["leader"], json!(x.connection));
        let joined = y.join("room").await;
        assert_eq!(joined["members"].as_array().map(Vec::len), Some(2));
        x.expect_within(
            "member_joined of y",
            |f| f["type"] == "member_joined" && f["member"]["connection"] == json!(y.connection),
            EVENT_BOUND,
        )
        .await;
        z.join("room").await;

        // A clean leave on B reaches A's clients within the bound.
        let leaving = Instant::now();
        y.leave("room").await;
        x.expect_within(
            "member_left of y",
            |f| f["type"] == "member_left" && f["connection"] == json!(y.connection),
            EVENT_BOUND,
        )
        .await;
        println!(
            "figure: clean leave on B seen on A after {:?}",
            leaving.elapsed()
        );

        // A socket closed on B reaches A's clients within the bound too.
        let mut w = WsClient::connect(&b.ws_url()).await;
        w.join("room").await;
        x.expect_within(
            "member_joined of w",
            |f| f["type"] == "member_joined" && f["member"]["connection"] == json!(w.connection),
            EVENT_BOUND,
        )
        .await;
        let closing = Instant::now();
        w.close();
        x.expect_within(
            "member_left of w",
            |f| {
                f["type"] == "member_left"
                    && f["connection"] == json!(w.connection)
                    && f["reason"] == "disconnected"
            },
            EVENT_BOUND,
        )
        .await;
        let took = closing.elapsed();
        println!("figure: socket closed on B seen on A after {took:?}");
        assert!(
            took < Duration::from_millis(500),
            "close took {took:?} to reach A"
        );

        // The leader leaves on A; y joins again on B; leadership goes to the earliest (z).
        y.join("room").await;
        x.leave("room").await;
        let changed = y
            .expect_within(
                "leader_changed",
                |f| f["type"] == "leader_changed",
                EVENT_BOUND,
            )
            .await;
        assert_eq!(changed["leader"], json!(z.connection));

        // The new leader ends the session: y on B is removed too.
        let epoch = changed["epoch"].clone();
        z.request_ok(
            json!({"type": "end", "session": "room", "epoch": epoch}),
            "ended",
        )
        .await;
        y.expect_within(
            "session_ended",
            |f| f["type"] == "session_ended",
            EVENT_BOUND,
        )
        .await;
        y.request_err(json!({"type": "members", "session": "room"}), "not_member")
            .await;
    }
}

mod cluster;
