//! Join and leave, the two scripts every connection runs: with the caller's plan
//! (`crate::store::plan`) when it has one, which the script writes as it is if the session is
//! still at the plan's header, and computes itself otherwise; and a batch of such plans, written
//! in one script call.

use std::collections::BTreeMap;

use ::redis::{ScriptInvocation, Value};

use super::reply::{
    ScriptStatus, array, change_of, int, member_json, reply_error, status, unexpected,
};
use super::{RedisStore, Result};
use crate::ids::ConnectionId;
use crate::model::{Change, Event, LeaveReason, Member};
use crate::rules::Header;
use crate::store::plan::Plan;
use crate::store::{Broadcast, BroadcastBody, JoinOutcome, PlansWritten, StoreError, StoreResult};

impl RedisStore {
    pub(super) async fn join_with(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
        plan: Option<Plan>,
    ) -> StoreResult<JoinOutcome> {
        let mut call = self.session_call("join", &self.scripts.join, session);
        call.arg(member_json(&member)?)
            .arg(max_members)
            .arg(self.store_clock.deadline());
        // Only a member of this instance can be written with the script's instance index entry.
        let plan = plan.filter(|_| member.instance == self.instance.incarnation);
        let stamped = plan
            .as_ref()
            .and_then(|plan| match plan.change.events.as_slice() {
                [Event::MemberJoined { member: stamped }] => Some(stamped.clone()),
                _ => None,
            });
        match (&plan, &stamped) {
            (Some(plan), Some(stamped)) => {
                call.arg(basis(&plan.after))
                    .arg(stamped.connection.as_str())
                    .arg(member_json(stamped)?)
                    .arg(stamped.joined_at)
                    .arg(stamped.user.as_deref().unwrap_or(""))
                    .arg(self.change_json(session, &plan.change)?)
                    .arg(plan.change.version);
            }
            _ => no_plan(&mut call),
        }
        // The session is in this instance's session set already: `subscribe` put it there.
        self.mark(session).await?;
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::Planned => match plan {
                Some(plan) => Ok(JoinOutcome::Joined(plan.change)),
                None => Err(reply_error("join: a plan written where none was given").into()),
            },
            ScriptStatus::Late => Err(too_late("join")),
            ScriptStatus::Ended => Err(StoreError::SessionEnded),
            ScriptStatus::Full => Err(StoreError::SessionFull(max_members)),
            ScriptStatus::Same => Ok(JoinOutcome::AlreadyMember {
                version: int(items.get(1).unwrap_or(&Value::Nil))?,
            }),
            ScriptStatus::Ok => Ok(JoinOutcome::Joined(change_of(items.get(1))?)),
            other => Err(unexpected("join", other).into()),
        }
    }

    pub(super) async fn leave_with(
        &self,
        session: &str,
        connection: &str,
        reason: LeaveReason,
        plan: Option<Plan>,
    ) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("leave", &self.scripts.leave, session);
        call.arg(connection).arg(reason.as_str());
        let user = plan
            .as_ref()
            .and_then(|plan| match plan.change.events.first() {
                Some(Event::MemberLeft {
                    connection: leaving,
                    user,
                    ..
                }) if leaving.as_str() == connection => Some(user.clone()),
                _ => None,
            });
        match (&plan, user) {
            (Some(plan), Some(user)) => {
                call.arg(basis(&plan.after))
                    .arg(user.as_deref().unwrap_or(""))
                    .arg(plan.change.version)
                    .arg(plan.change.leader.as_deref().unwrap_or(""))
                    .arg(plan.change.epoch)
                    .arg(self.change_json(session, &plan.change)?);
            }
            _ => no_plan(&mut call),
        }
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::Planned => match plan {
                Some(plan) => Ok(Some(plan.change)),
                None => Err(reply_error("leave: a plan written where none was given").into()),
            },
            ScriptStatus::None => Ok(None),
            ScriptStatus::Ok => Ok(Some(change_of(items.get(1))?)),
            other => Err(unexpected("leave", other).into()),
        }
    }

    /// Writes plans made in a row by a [`crate::store::plan::Planner`] with `write_plans.lua`:
    /// the batch's net effect on the member keys, then its changes.
    pub(super) async fn write_batch(
        &self,
        session: &str,
        plans: &[Plan],
    ) -> StoreResult<PlansWritten> {
        let (Some(first), Some(last)) = (plans.first(), plans.last()) else {
            return Ok(PlansWritten::All);
        };
        let effect = BatchEffect::of(plans)?;
        let mut call = self.session_call("write_plans", &self.scripts.write_plans, session);
        call.arg(basis(&first.after))
            .arg(last.change.version)
            .arg(last.change.epoch)
            .arg(last.change.leader.as_deref().unwrap_or(""))
            .arg(effect.anonymous)
            .arg(effect.added.len())
            .arg(effect.removed.len())
            .arg(effect.users.len())
            .arg(plans.len())
            .arg(self.deadline_of(plans));
        // Each run as its command takes it (write_plans.lua), so the script builds no tables.
        for member in &effect.added {
            call.arg(member.connection.as_str())
                .arg(member_json(member)?);
        }
        for member in &effect.added {
            call.arg(member.joined_at).arg(member.connection.as_str());
        }
        for member in &effect.added {
            call.arg(0).arg(self.byinst_entry(&member.connection));
        }
        for connection in &effect.removed {
            call.arg(connection.as_str());
        }
        for connection in &effect.removed {
            call.arg(self.byinst_entry(connection));
        }
        for (user, delta) in &effect.users {
            call.arg(*user).arg(*delta);
        }
        let changes = plans
            .iter()
            .map(|plan| self.change_json(session, &plan.change))
            .collect::<Result<Vec<_>>>()?;
        for change in &changes {
            call.arg(change);
        }
        call.arg(format!("[{}]", changes.join(",")));
        if !self.deadline_of(plans).is_empty() {
            self.mark(session).await?;
        }
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::Planned => Ok(PlansWritten::All),
            ScriptStatus::Moved => Ok(PlansWritten::Declined),
            ScriptStatus::Late => Err(too_late("write_plans")),
            other => Err(unexpected("write_plans", other).into()),
        }
    }

    /// The deadline of a batch ([`super::deadline`]): one that joins must not be written late,
    /// as its joiners were told they failed; leaves alone are welcome whenever they run.
    fn deadline_of(&self, plans: &[Plan]) -> String {
        let joins = plans.iter().any(|plan| {
            plan.change
                .events
                .iter()
                .any(|e| matches!(e, Event::MemberJoined { .. }))
        });
        match joins {
            true => self.store_clock.deadline(),
            false => String::new(),
        }
    }

    /// This instance's entry for a member in a session's `byinst` index.
    fn byinst_entry(&self, connection: &ConnectionId) -> String {
        format!("{}\0{}", self.instance.incarnation, connection.as_str())
    }

    /// A change as the scripts publish it: `origin` first, which the feed's echo check reads.
    fn change_json(&self, session: &str, change: &Change) -> Result<String> {
        let broadcast = Broadcast {
            origin: self.instance.incarnation.clone(),
            session: session.into(),
            body: BroadcastBody::Change(change.clone()),
        };
        serde_json::to_string(&broadcast).map_err(|e| reply_error(format!("change JSON: {e}")))
    }
}

/// The error of a write the store reached after its deadline: it did nothing.
fn too_late(script: &str) -> StoreError {
    StoreError::unavailable_because(&format!(
        "the store ran the {script} after its deadline and did nothing"
    ))
}

/// The header a plan applies to, as the scripts compare it: `version:epoch:leader`.
fn basis(after: &Header) -> String {
    let leader = after.leader.as_deref().unwrap_or("");
    format!("{}:{}:{leader}", after.version, after.epoch)
}

/// The scripts read an empty basis as "no plan".
fn no_plan(call: &mut ScriptInvocation<'_>) {
    call.arg("");
}

/// What a batch of plans does to the member keys, all told.
struct BatchEffect<'a> {
    /// Members joined and still there at the end.
    added: Vec<&'a Member>,
    /// Members there before the batch and gone at the end.
    removed: Vec<&'a ConnectionId>,
    /// The change in the number of anonymous members.
    anonymous: i64,
    /// The change in each signed-in user's number of connections (none of them zero).
    users: BTreeMap<&'a str, i64>,
}

impl<'a> BatchEffect<'a> {
    fn of(plans: &'a [Plan]) -> Result<BatchEffect<'a>> {
        let mut effect = BatchEffect {
            added: Vec::new(),
            removed: Vec::new(),
            anonymous: 0,
            users: BTreeMap::new(),
        };
        for plan in plans {
            for event in &plan.change.events {
                match event {
                    Event::MemberJoined { member } => {
                        effect.added.push(member);
                        effect.count(member.user.as_deref(), 1);
                    }
                    Event::MemberLeft {
                        connection, user, ..
                    } => {
                        match effect
                            .added
                            .iter()
                            .position(|m| &m.connection == connection)
                        {
                            Some(i) => {
                                effect.added.remove(i);
                            }
                            None => effect.removed.push(connection),
                        }
                        effect.count(user.as_deref(), -1);
                    }
                    Event::LeaderChanged { .. } => {}
                    Event::MemberUpdated { .. } | Event::SessionEnded { .. } => {
                        return Err(reply_error(
                            "write_plans: only joins and leaves are planned",
                        ));
                    }
                }
            }
        }
        effect.users.retain(|_, delta| *delta != 0);
        Ok(effect)
    }

    fn count(&mut self, user: Option<&'a str>, delta: i64) {
        match user {
            None => self.anonymous += delta,
            Some(user) => *self.users.entry(user).or_default() += delta,
        }
    }
}
