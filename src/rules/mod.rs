//! The session rules, in one place: what a join, a leave, a removal, a re-assertion, an end or a
//! profile change does to a session, who leads after it, whether a plan is still current, and how
//! counts follow a change.
//!
//! Pure: no I/O, no actor, no clock (the caller passes the time). Each rule reads a [`Roster`] (the
//! session as someone holds it) and returns the [`Change`] it makes; applying a change is
//! [`SessionView::apply`]. The in-process store rules on its own state; the planner
//! (`crate::store::plan`) rules on the view an instance holds, so that the Redis scripts only
//! write what was decided. Where a Redis script still decides by itself (a change the planner
//! cannot make from its view: the reaper's, a re-assertion, an end), it follows these same rules,
//! and the shared conformance suite holds both to them.

mod counts;

pub use counts::CountsTracker;

use crate::ids::{ConnectionId, Incarnation};
use crate::model::{Change, Event, Grace, LeaveReason, Member, MemberState, SessionView};

/// A session's version, leadership epoch and leader: what every change moves, and what a plan
/// is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u64,
    pub epoch: u64,
    pub leader: Option<ConnectionId>,
}

impl Header {
    pub fn of(view: &SessionView) -> Header {
        Header {
            version: view.version,
            epoch: view.epoch,
            leader: view.leader.clone(),
        }
    }
}

/// A session as someone holds it, for the rules to read.
pub trait Roster {
    fn header(&self) -> Header;
    fn ended(&self) -> bool;
    /// The members, in election order (earliest `joined_at` first, ties by connection id).
    fn members(&self) -> impl Iterator<Item = &Member>;
    fn count(&self) -> usize;

    fn member(&self, connection: &str) -> Option<&Member> {
        self.members().find(|m| m.connection == connection)
    }

    /// The last member in election order.
    fn latest(&self) -> Option<&Member> {
        self.members().last()
    }
}

impl Roster for SessionView {
    fn header(&self) -> Header {
        Header::of(self)
    }

    fn ended(&self) -> bool {
        self.ended_at.is_some()
    }

    fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter()
    }

    fn count(&self) -> usize {
        self.members.len()
    }

    fn latest(&self) -> Option<&Member> {
        self.members.last()
    }
}

/// Why a session refuses a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Ended,
    /// At this many members.
    Full(usize),
    /// `end` from a member that does not lead, or with another epoch.
    NotLeader,
}

/// What a join does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JoinRuling {
    /// The member joins with this change (its `member_joined` carries the stamped record).
    Joins(Change),
    /// It is a member already: nothing changes.
    AlreadyMember { version: u64 },
}

/// A joiner's `joined_at`: the clock, or just after the latest member, so that join order is
/// election order even within one millisecond.
pub fn stamp(now_ms: i64, latest: Option<i64>) -> i64 {
    latest.map_or(now_ms, |latest| now_ms.max(latest.saturating_add(1)))
}

/// `member` joins at `now_ms`. A live leader stays; a session without one is led by its earliest
/// member (the joiner, when it is the first).
pub fn join(
    roster: &impl Roster,
    member: &Member,
    now_ms: i64,
    max_members: usize,
) -> Result<JoinRuling, Refusal> {
    if roster.ended() {
        return Err(Refusal::Ended);
    }
    let mut header = roster.header();
    // One pass over the members, however large the session: whether the joiner is one, whether
    // the leader is, and who is first among those present.
    let mut earliest = None;
    let mut leader_is_live = false;
    for m in roster.members() {
        if m.is_present() {
            earliest.get_or_insert(m);
        }
        if m.connection == member.connection {
            return Ok(JoinRuling::AlreadyMember {
                version: header.version,
            });
        }
        leader_is_live |= header.leader.as_ref() == Some(&m.connection);
    }
    if roster.count() >= max_members {
        return Err(Refusal::Full(max_members));
    }
    let mut stamped = member.clone();
    stamped.joined_at = stamp(now_ms, roster.latest().map(|m| m.joined_at));
    let earliest = earliest.map_or_else(|| stamped.connection.clone(), |m| m.connection.clone());
    let mut events = Vec::with_capacity(2);
    events.push(Event::MemberJoined { member: stamped });
    if !leader_is_live {
        elect(&mut header, Some(earliest), &mut events);
    }
    Ok(JoinRuling::Joins(commit(header, events)))
}

/// `connection` leaves; `None` when it is not a member.
pub fn leave(roster: &impl Roster, connection: &str, reason: LeaveReason) -> Option<Change> {
    remove(roster, |m| m.connection == connection, reason)
}

/// Every member for which `leaving` holds leaves, in one change, in election order. When the
/// leader is among them (or is no member), the earliest remaining present member leads (a
/// reconnecting one only when none is present, nobody when none remains), with the next epoch.
pub fn remove(
    roster: &impl Roster,
    leaving: impl Fn(&Member) -> bool,
    reason: LeaveReason,
) -> Option<Change> {
    remove_each(roster, |m| leaving(m).then_some(reason))
}

/// Like [`remove`], each member leaving with the reason `leaving` gives it (`None`: it stays).
fn remove_each(
    roster: &impl Roster,
    leaving: impl Fn(&Member) -> Option<LeaveReason>,
) -> Option<Change> {
    let mut header = roster.header();
    // One pass: who leaves, whether the leader stays, and who would lead after.
    let mut events = Vec::new();
    let mut leader_stays = false;
    let mut next = Successor::default();
    for m in roster.members() {
        if let Some(reason) = leaving(m) {
            events.push(Event::MemberLeft {
                connection: m.connection.clone(),
                user: m.user.clone(),
                reason,
                detail: None,
            });
        } else {
            next.consider(m);
            leader_stays |= header.leader.as_ref() == Some(&m.connection);
        }
    }
    if events.is_empty() {
        return None;
    }
    if !leader_stays {
        elect(&mut header, next.pick(), &mut events);
    }
    Some(commit(header, events))
}

/// Who leads when leadership must move: the earliest present member, or, when none is present,
/// the earliest reconnecting one. Fed the candidates in election order.
#[derive(Default)]
struct Successor<'a> {
    present: Option<&'a Member>,
    reconnecting: Option<&'a Member>,
}

impl<'a> Successor<'a> {
    fn consider(&mut self, m: &'a Member) {
        let slot = match m.is_present() {
            true => &mut self.present,
            false => &mut self.reconnecting,
        };
        slot.get_or_insert(m);
    }

    fn pick(&self) -> Option<ConnectionId> {
        self.present
            .or(self.reconnecting)
            .map(|m| m.connection.clone())
    }
}

/// The present members for which `losing` holds lost their sockets without a clean end: each is
/// `reconnecting` until `until` (store time, ms), when it leaves with `reason` unless resumed
/// first. Leadership stays where it is: a reconnecting leader keeps it during its grace.
pub fn suspend(
    roster: &impl Roster,
    losing: impl Fn(&Member) -> bool,
    reason: LeaveReason,
    until: i64,
) -> Option<Change> {
    let events: Vec<Event> = roster
        .members()
        .filter(|m| m.is_present() && losing(m))
        .map(|m| {
            let mut reconnecting = m.clone();
            reconnecting.state = MemberState::Reconnecting;
            reconnecting.grace = Some(Grace { reason, until });
            Event::MemberUpdated {
                member: reconnecting,
            }
        })
        .collect();
    if events.is_empty() {
        return None;
    }
    Some(commit(roster.header(), events))
}

/// Every reconnecting member whose grace ran out by `now_ms` leaves, with the reason it had when
/// it was lost, and leadership moves as in [`remove`].
pub fn expire(roster: &impl Roster, now_ms: i64) -> Option<Change> {
    remove_each(roster, |m| {
        m.grace
            .filter(|grace| !m.is_present() && grace.until <= now_ms)
            .map(|grace| grace.reason)
    })
}

/// A re-assertion after the store lost members: the header continues from at least `floor` (what
/// clients have seen), the missing `members` come back with their own `joined_at`, and the
/// earliest member leads. Returns the header to keep whatever happens, and the change, if any
/// member was missing.
pub fn reassert(
    roster: &impl Roster,
    members: &[Member],
    floor: &Header,
) -> (Header, Option<Change>) {
    let mut header = roster.header();
    header.version = header.version.max(floor.version);
    header.epoch = header.epoch.max(floor.epoch);
    // Missing members come back; members marked reconnecting (another instance took this one
    // for dead) are present again.
    let mut events = Vec::new();
    for m in members {
        match roster.member(&m.connection) {
            None => events.push(Event::MemberJoined { member: m.clone() }),
            Some(listed) if !listed.is_present() => {
                let mut present = listed.clone();
                present.state = MemberState::Present;
                present.grace = None;
                present.instance = m.instance.clone();
                events.push(Event::MemberUpdated { member: present });
            }
            Some(_) => {}
        }
    }
    if events.is_empty() {
        return (header, None);
    }
    let back: std::collections::HashSet<&str> =
        members.iter().map(|m| m.connection.as_str()).collect();
    let present = |m: &Member| m.is_present() || back.contains(m.connection.as_str());
    let order = |m: &&Member| (!present(m), m.joined_at, m.connection.clone());
    let earliest = roster
        .members()
        .chain(members.iter())
        .min_by_key(order)
        .map(|m| m.connection.clone());
    let floored = header.clone();
    elect(&mut header, earliest, &mut events);
    (floored, Some(commit(header, events)))
}

/// The leader `by`, at `epoch`, ends the session: `session_ended`, then every member leaves
/// (reason `ended`) in election order, and nobody leads.
pub fn end(roster: &impl Roster, by: &str, epoch: u64) -> Result<Change, Refusal> {
    if roster.ended() {
        return Err(Refusal::Ended);
    }
    let header = roster.header();
    if header.leader.as_deref() != Some(by) || header.epoch != epoch {
        return Err(Refusal::NotLeader);
    }
    Ok(finish(roster, header, Some(by)))
}

/// The application's backend ends the session (the server API): as a leader's [`end`], with no
/// leader to check and `by` null. `None` when the session is not live (ended, or no member).
pub fn close(roster: &impl Roster) -> Option<Change> {
    if roster.ended() || roster.count() == 0 {
        return None;
    }
    Some(finish(roster, roster.header(), None))
}

/// `session_ended` by `by`, then every member leaves (reason `ended`) in election order, and
/// nobody leads.
fn finish(roster: &impl Roster, mut header: Header, by: Option<&str>) -> Change {
    let mut events = vec![Event::SessionEnded {
        by: by.map(ConnectionId::from),
    }];
    events.extend(roster.members().map(|m| Event::MemberLeft {
        connection: m.connection.clone(),
        user: m.user.clone(),
        reason: LeaveReason::Ended,
        detail: None,
    }));
    elect(&mut header, None, &mut events);
    commit(header, events)
}

/// Whom a kick removes: one connection, or every connection of one user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KickTarget<'a> {
    Connection(&'a str),
    User(&'a str),
}

impl KickTarget<'_> {
    /// Whether `member` is one of those it names.
    pub fn picks(&self, member: &Member) -> bool {
        match self {
            KickTarget::Connection(connection) => member.connection == *connection,
            KickTarget::User(user) => member.user.as_deref() == Some(*user),
        }
    }
}

/// The application's backend removes the members `target` names, present or reconnecting, in one
/// change: each leaves with reason `kicked` and `detail` (the kick's reason text), and leadership
/// moves as in [`remove`]. `None` when it names no member.
pub fn kick(roster: &impl Roster, target: KickTarget<'_>, detail: Option<&str>) -> Option<Change> {
    let mut change = remove(roster, |m| target.picks(m), LeaveReason::Kicked)?;
    for event in &mut change.events {
        if let Event::MemberLeft { detail: d, .. } = event {
            *d = detail.map(str::to_owned);
        }
    }
    Some(change)
}

/// A member's new name and avatar; `None` when it is not a member.
pub fn update(roster: &impl Roster, profile: &Member) -> Option<Change> {
    let mut updated = roster.member(&profile.connection)?.clone();
    updated.name = profile.name.clone();
    updated.avatar = profile.avatar.clone();
    Some(commit(
        roster.header(),
        vec![Event::MemberUpdated { member: updated }],
    ))
}

/// What a resume claim does ([`resume`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeRuling {
    /// The member is now held by the claiming instance: `change` moves its record there (one
    /// `member_updated`), or is `None` when the record was there already.
    Resumed {
        change: Option<Change>,
        version: u64,
    },
    /// No such member: it left, was removed, or the session ended.
    Gone,
    /// The member belongs to another signed-in user.
    OtherUser,
}

/// A socket on `instance`, signed in as `user`, claims member `connection`: the same member
/// (same `joined_at`, leadership and epoch), held by `instance` from now on. A member of a
/// signed-in user can only be claimed by that user; an anonymous one by anyone holding its token.
pub fn resume(
    roster: &impl Roster,
    connection: &str,
    user: Option<&str>,
    instance: &Incarnation,
) -> ResumeRuling {
    let header = roster.header();
    let Some(member) = roster.member(connection) else {
        return ResumeRuling::Gone;
    };
    if member.user.is_some() && member.user.as_deref() != user {
        return ResumeRuling::OtherUser;
    }
    if &member.instance == instance && member.is_present() {
        return ResumeRuling::Resumed {
            change: None,
            version: header.version,
        };
    }
    let mut moved = member.clone();
    moved.instance = instance.clone();
    moved.state = MemberState::Present;
    moved.grace = None;
    let change = commit(header, vec![Event::MemberUpdated { member: moved }]);
    ResumeRuling::Resumed {
        version: change.version,
        change: Some(change),
    }
}

/// Whether a plan made at `basis` still applies to a session at `current`. Versions alone
/// identify a state only within one history: after the store lost a session, a re-assertion
/// starts a new one, whose version may meet a lagging view's; epoch and leader tell them apart.
pub fn still_current(current: &Header, basis: &Header) -> bool {
    current == basis
}

/// `next` leads, with a new epoch and a `leader_changed`, unless it already does.
fn elect(header: &mut Header, next: Option<ConnectionId>, events: &mut Vec<Event>) {
    if next != header.leader {
        header.leader = next;
        header.epoch += 1;
        events.push(Event::LeaderChanged {
            leader: header.leader.clone(),
            epoch: header.epoch,
        });
    }
}

/// The change that takes a session from `header`'s version to the next, led as `header` says.
fn commit(header: Header, events: Vec<Event>) -> Change {
    Change {
        version: header.version + 1,
        leader: header.leader,
        epoch: header.epoch,
        events,
    }
}

/// Members and views for the unit tests of the rules and of their users.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// Member `connection`, named after it, of one instance.
    pub(crate) fn member(connection: &str, joined_at: i64, user: Option<&str>) -> Member {
        Member {
            connection: ConnectionId::new(connection),
            user: user.map(str::to_owned),
            name: connection.to_uppercase(),
            avatar: None,
            joined_at,
            instance: Incarnation::new("i#1"),
            state: MemberState::Present,
            grace: None,
        }
    }

    /// A view at version 7, epoch 3, led by its first member.
    pub(crate) fn view(members: Vec<Member>) -> SessionView {
        SessionView {
            version: 7,
            leader: members.first().map(|m| m.connection.clone()),
            epoch: 3,
            members,
            ended_at: None,
        }
    }
}

#[cfg(test)]
mod tests;
