//! The server API's operations on Redis ([`crate::store::Operator`]): a kick (`lua/kick.lua`) and
//! a backend's end (`lua/end.lua` with no leader) are session scripts like any change, so they are
//! published and logged like any; a backend's publish is `lua/publish.lua` behind a guard on the
//! session's members (`lua/server_publish.lua`); the views of many sessions are read together.
//! The views of many sessions are one request per server ([`super::per_session`]).

use async_trait::async_trait;
use serde_json::Value as Json;

use super::history::position_of;
use super::reply::{ScriptStatus, array, change_of, optional_change, status, unexpected, view_of};
use super::{RedisStore, Result};
use crate::model::{Change, SessionView};
use crate::store::{KickTarget, Operator, StoreResult, StreamPosition};

#[async_trait]
impl Operator for RedisStore {
    async fn publish_as_server(
        &self,
        session: &str,
        data: &Json,
    ) -> StoreResult<Option<StreamPosition>> {
        let keys = self.keys.history(session);
        let members = self.keys.session(session)[1].clone();
        self.record(
            "server_publish",
            &[&keys[..], std::slice::from_ref(&members)].concat(),
        );
        let script = &self.scripts.server_publish;
        let mut call = self.publish_call(script, &keys, session, None, None, data)?;
        call.key(&members);
        let items = array(self.invoke(&call).await?)?;
        if items.len() == 1 && status(&items)? == ScriptStatus::None {
            return Ok(None);
        }
        Ok(Some(position_of(&items)?))
    }

    async fn kick(
        &self,
        session: &str,
        target: KickTarget<'_>,
        detail: Option<&str>,
    ) -> StoreResult<Option<Change>> {
        let (kind, id) = match target {
            KickTarget::Connection(connection) => ("connection", connection),
            KickTarget::User(user) => ("user", user),
        };
        let mut call = self.session_call("kick", &self.scripts.kick, session);
        call.arg(kind).arg(id).arg(detail.unwrap_or(""));
        Ok(optional_change("kick", self.invoke(&call).await?)?)
    }

    async fn end_by_server(&self, session: &str) -> StoreResult<Option<Change>> {
        let mut call = self.session_call("end", &self.scripts.end, session);
        // No connection: the backend ends it (see lua/end.lua).
        call.arg("").arg(0);
        let items = array(self.invoke(&call).await?)?;
        match status(&items)? {
            ScriptStatus::None | ScriptStatus::Ended => Ok(None),
            ScriptStatus::Ok => Ok(Some(change_of(items.get(1))?)),
            other => Err(unexpected("end", other).into()),
        }
    }

    async fn views(&self, sessions: &[String]) -> StoreResult<Vec<Option<SessionView>>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let replies = self
            .per_session("view", &self.scripts.view, sessions)
            .await?;
        let views = replies
            .into_iter()
            .map(|reply| {
                let items = array(reply)?;
                match status(&items)? {
                    ScriptStatus::None => Ok(None),
                    _ => Ok(Some(view_of(&items)?)),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(views)
    }
}
