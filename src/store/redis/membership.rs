//! Join and leave, the two scripts every connection runs: with the caller's plan
//! (`crate::store::plan`) when it has one, which the script writes as it is if the session is
//! still at the plan's header, and computes itself otherwise.

use ::redis::{ScriptInvocation, Value};

use super::reply::{
    ScriptStatus, array, change_of, int, member_json, reply_error, status, unexpected,
};
use super::{RedisStore, Result};
use crate::model::{Change, Event, LeaveReason, Member};
use crate::store::plan::{Basis, Plan};
use crate::store::{Broadcast, BroadcastBody, JoinOutcome, StoreError, StoreResult};

impl RedisStore {
    pub(super) async fn join_with(
        &self,
        session: &str,
        member: Member,
        max_members: usize,
        plan: Option<Plan>,
    ) -> StoreResult<JoinOutcome> {
        let mut call = self.session_call("join", &self.scripts.join, session);
        call.arg(member_json(&member)?).arg(max_members);
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
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::Planned => match plan {
                Some(plan) => Ok(JoinOutcome::Joined(plan.change)),
                None => Err(reply_error("join: a plan written where none was given").into()),
            },
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

/// The header a plan applies to, as the scripts compare it: `version:epoch:leader`.
fn basis(after: &Basis) -> String {
    let leader = after.leader.as_deref().unwrap_or("");
    format!("{}:{}:{leader}", after.version, after.epoch)
}

/// The scripts read an empty basis as "no plan".
fn no_plan(call: &mut ScriptInvocation<'_>) {
    call.arg("");
}
