//! Members the application's backend kicked (server API): the session actor holding a kicked
//! member's socket tells the socket and lets the membership go.
//!
//! A kick is a store change like any other (`member_left`, reason `kicked`, with the kick's
//! reason text as the event's `detail`), made by whichever instance served the API call and
//! delivered to the others through the session's feed, or read from the change log by an actor
//! that missed it. So wherever the socket is, its session actor sees the change before the socket
//! could: it sends the socket `kicked`, and tells the connection that it is no longer a member
//! (the socket stays open for its other sessions). The kicked connection does not get its own
//! `member_left`; the other members do.

use super::SessionActor;
use crate::actors::ToClient;
use crate::model::{Change, Event, LeaveReason};
use crate::protocol::reply::ServerMessage;

impl SessionActor {
    /// Lets go of the local members `change` kicks, before its events are delivered.
    pub(super) fn let_kicked_go(&mut self, change: &Change) {
        let mut kicked_here = false;
        for event in &change.events {
            let Event::MemberLeft {
                connection,
                reason: LeaveReason::Kicked,
                detail,
                ..
            } = event
            else {
                continue;
            };
            if !self.local.contains_key(connection) {
                continue;
            }
            // What was held for it while it was a member still reaches it, first.
            self.write_held_for(connection);
            let Some(local) = self.local.remove(connection) else {
                continue;
            };
            tracing::info!(session = %self.session, %connection, "member kicked by the server API");
            // The connection forgets the session before it reads `kicked`, so a request it sends
            // upon reading it already gets `not_member`.
            local.client.do_send(ToClient::MembershipEnded {
                session: self.session.clone(),
            });
            let frame = ServerMessage::Kicked {
                session: self.session.clone(),
                reason: detail.clone(),
            };
            local.client.do_send(ToClient::Frame(frame.encode()));
            kicked_here = true;
        }
        if kicked_here {
            self.report_count();
        }
    }
}
