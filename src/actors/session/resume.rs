//! A new socket carries on a member of this session (a `resume`): the store moves the member to
//! this instance in one step, the socket that carried it here before (if any) is let go with
//! 4001, and the new socket gets what it missed since the version it last applied, in order, or a
//! `snapshot` when the change log no longer reaches back that far.

use actix::WrapFuture;
use actix::{ActorFutureExt, AsyncContext, Context, Handler, Message, Recipient, ResponseFuture};
use bytestring::ByteString;
use tokio::sync::oneshot;

use super::history::{Recovery, read_position, recover};
use super::messages::{LatestMessage, stored_frame};
use super::outbox::Audience;
use super::{LocalMember, Missed, SessionActor};
use crate::actors::{SocketId, ToClient};
use crate::ids::{ConnectionId, SessionId};
use crate::model::{Change, Counts, Event, Presence};
use crate::protocol::error::{ApiError, ErrorCode};
use crate::protocol::reply::ServerMessage;
use crate::rules::CountsTracker;
use crate::store::{ResumeRuling, StoreError, StreamPosition};

/// Carry on member `connection` on a new socket of this instance.
#[derive(Message)]
#[rtype(result = "Result<Option<Resumption>, ApiError>")]
pub struct TakeOver {
    pub connection: ConnectionId,
    /// Who the new socket is signed in as.
    pub user: Option<String>,
    pub client: Recipient<ToClient>,
    pub socket: SocketId,
    /// The last version the client applied in this session.
    pub since: Option<u64>,
    /// The last message offset the client applied in this session (in its current stream: a
    /// `resume` names no stream, and a store that lost the stream lost the resume secret too).
    pub offset: Option<u64>,
}

/// Where the session stands for a resumed member (its entry of the `resumed` reply). The
/// changes it missed follow on its socket; or a `snapshot` when `recovered` is false.
#[derive(Clone, Debug)]
pub struct Resumption {
    pub session: SessionId,
    pub version: u64,
    pub leader: Option<ConnectionId>,
    pub epoch: u64,
    pub counts: Counts,
    pub recovered: bool,
}

impl Handler<TakeOver> for SessionActor {
    type Result = ResponseFuture<Result<Option<Resumption>, ApiError>>;

    fn handle(&mut self, msg: TakeOver, ctx: &mut Context<Self>) -> Self::Result {
        if self.departing.contains_key(&msg.connection) {
            // Its socket ended it cleanly (a leave, a close, 4003) and the leave is on its way to
            // the store: there is nothing to resume.
            return Box::pin(async { Ok(None) });
        }
        let store = self.store.clone();
        let session = self.session.clone();
        let known = self.view.version;
        let since = msg.since;
        let connection = msg.connection.clone();
        let user = msg.user.clone();
        let offset = msg.offset;
        let latest_message = self.latest_message.clone();
        let (reply, done) = oneshot::channel();
        // Like a join, it holds the actor until it is done, so changes stay in version order.
        ctx.wait(
            async move {
                let ruling = store.resume(&session, &connection, user.as_deref()).await?;
                if !matches!(ruling, ResumeRuling::Resumed { .. }) {
                    return Ok((ruling, None, None, None, None));
                }
                // An actor without a view yet reads the whole view; the client's missed changes
                // may still be in the log (read first, so the view is at least as recent).
                let replay = match (known, since) {
                    (0, Some(since)) => store.changes_since(&session, since).await?,
                    _ => None,
                };
                // Read back to whichever is older, the client's version or this actor's view, so
                // that both can be brought up to date from one read. When the log no longer
                // reaches the client's version, the actor still catches up from the log (its
                // other members see no snapshot), and only the resumed client gets one.
                let from = (known > 0).then(|| since.map_or(known, |since| since.min(known)));
                let missed = match from {
                    Some(from) => match store.changes_since(&session, from).await? {
                        Some(changes) => Missed::Changes(changes),
                        None if from < known => match store.changes_since(&session, known).await? {
                            Some(changes) => Missed::Changes(changes),
                            None => Missed::View(store.view(&session).await?),
                        },
                        None => Missed::View(store.view(&session).await?),
                    },
                    None => Missed::View(store.view(&session).await?),
                };
                // The messages it missed, read up to the actor's latest (or the store's).
                let unknown = latest_message == LatestMessage::Unknown;
                let position = read_position(store.as_ref(), &session, unknown).await;
                let latest = position.clone().unwrap_or(latest_message);
                let recovery = match (offset, latest.position()) {
                    (Some(offset), Some(at)) => {
                        let since = StreamPosition {
                            stream: at.stream.clone(),
                            offset,
                        };
                        Some(recover(store.as_ref(), &session, &since, Some(at)).await)
                    }
                    // No message in the session yet: none was missed.
                    _ => None,
                };
                Ok::<_, StoreError>((ruling, Some(missed), position, recovery, replay))
            }
            .into_actor(self)
            .map(move |result, act, ctx| {
                let result = result.map(|(ruling, missed, position, recovery, replay)| {
                    act.learn_position(position);
                    (ruling, missed, recovery, replay)
                });
                let _ = reply.send(act.finish_take_over(msg, result, known > 0, ctx));
            }),
        );
        Box::pin(async move {
            done.await.unwrap_or_else(|_| {
                Err(ApiError::new(
                    ErrorCode::Unavailable,
                    "the session closed on this instance during the resume; try again",
                ))
            })
        })
    }
}

/// What the store said to a claim: the ruling, and, when the member was resumed, what the actor
/// and the client missed (changes or the view, the messages, the client's own replay when the
/// actor had to read the whole view).
type Claimed = (
    ResumeRuling,
    Option<Missed>,
    Option<Recovery>,
    Option<Vec<Change>>,
);

impl SessionActor {
    fn finish_take_over(
        &mut self,
        msg: TakeOver,
        result: Result<Claimed, StoreError>,
        had_view: bool,
        ctx: &mut Context<Self>,
    ) -> Result<Option<Resumption>, ApiError> {
        let (ruling, missed, recovery, replay) = result?;
        let moved = match ruling {
            ResumeRuling::Gone => return Ok(None),
            ResumeRuling::OtherUser => {
                return Err(ApiError::new(
                    ErrorCode::Forbidden,
                    "that connection belongs to another user",
                ));
            }
            ResumeRuling::Resumed { change, .. } => change,
        };
        if let Some(change) = &moved {
            self.record(change);
        }
        // Bring the view up to date; the other local members get what they had not seen yet.
        let replayed = match missed {
            Some(Missed::Changes(changes)) => {
                self.apply_all(&changes, ctx);
                Some(changes)
            }
            Some(Missed::View(Some(view))) if !had_view => {
                self.view = view;
                self.counts = CountsTracker::of(&self.view.members);
                replay
            }
            Some(missed) => {
                self.take_missed(missed, ctx);
                None
            }
            None => None,
        };
        let connection = msg.connection;
        let Some(member) = self.view.member(&connection).cloned() else {
            // Gone again before this actor caught up (an end, a removal): nothing to carry on.
            return Ok(None);
        };
        // The socket that carried it here until now gets what is held for it, then lets go.
        self.write_held_for(&connection);
        let presence = match self.local.remove(&connection) {
            Some(old) => {
                old.client.do_send(ToClient::Replaced {
                    session: self.session.clone(),
                });
                old.presence
            }
            None => Presence::Full,
        };
        let socket_gone = !msg.client.connected();
        self.local.insert(
            connection.clone(),
            LocalMember {
                member,
                client: msg.client,
                socket: Some(msg.socket),
                presence,
                first_frame: self.outbox.next_frame(),
            },
        );
        self.report_count();
        let frames = self.missed_frames(msg.since, replayed.as_deref(), presence);
        let mut recovered = frames.is_some();
        let frames = frames.unwrap_or_else(|| {
            let view = self.view_body(presence, &connection);
            vec![
                ServerMessage::Snapshot {
                    session: self.session.clone(),
                    view,
                }
                .encode(),
            ]
        });
        for frame in frames {
            self.deliver(frame, Audience::Only(connection.clone()), ctx);
        }
        // Then the messages, in order; when they cannot all be sent, none are.
        match (recovery, self.latest_message.position().cloned()) {
            (Some(Recovery::Messages(missed)), Some(latest)) => {
                for message in missed
                    .into_iter()
                    .filter(|m| m.from.as_ref() != Some(&connection))
                {
                    let frame = stored_frame(&self.session, &latest.stream, message);
                    self.deliver(frame, Audience::Only(connection.clone()), ctx);
                }
            }
            (Some(Recovery::Lost), _) => recovered = false,
            _ => {}
        }
        if socket_gone {
            self.lose_orphan(connection.clone(), Some(msg.socket), ctx);
        }
        Ok(Some(Resumption {
            session: self.session.clone(),
            version: self.view.version,
            leader: self.view.leader.clone(),
            epoch: self.view.epoch,
            counts: self.counts.counts(),
            recovered,
        }))
    }

    /// The events a client that applied up to `since` missed, from `replayed` (changes read from
    /// the store's log); `None` when they do not reach back to `since` or the client is ahead of
    /// the view (the store lost the session): it gets a `snapshot` instead.
    fn missed_frames(
        &self,
        since: Option<u64>,
        replayed: Option<&[Change]>,
        presence: Presence,
    ) -> Option<Vec<ByteString>> {
        let since = since?;
        if since == self.view.version {
            return Some(Vec::new());
        }
        if since > self.view.version {
            return None;
        }
        let replayed = replayed?;
        let missed: Vec<&Change> = replayed
            .iter()
            .filter(|c| c.version > since && c.version <= self.view.version)
            .collect();
        let complete = missed.len() as u64 == self.view.version - since
            && missed.first().is_some_and(|c| c.version == since + 1);
        if !complete {
            return None;
        }
        let frames = missed
            .into_iter()
            .flat_map(|change| {
                change
                    .events
                    .iter()
                    .zip(ServerMessage::from_change(&self.session, change))
                    .filter(|(event, _)| reaches(event, presence))
                    .map(|(_, frame)| frame.encode())
                    .collect::<Vec<_>>()
            })
            .collect();
        Some(frames)
    }
}

/// Whether a member in `presence` mode gets `event` (as the live deliveries decide).
fn reaches(event: &Event, presence: Presence) -> bool {
    match event {
        Event::MemberJoined { .. } | Event::MemberLeft { .. } | Event::MemberUpdated { .. } => {
            presence == Presence::Full
        }
        Event::LeaderChanged { .. } | Event::SessionEnded { .. } => true,
    }
}
