//! The server API's operations on Redis ([`crate::store::Operator`]): a kick (`lua/kick.lua`) and
//! a backend's end (`lua/end.lua` with no leader) are session scripts like any change, so they are
//! published and logged like any; a backend's publish is `lua/publish.lua` behind a guard on the
//! session's members (`lua/server_publish.lua`); the views of many sessions are read together.
//!
//! # Reading many views
//! On one server, every session's `lua/view.lua` call goes in one pipeline: one write, one round
//! trip. On a Redis Cluster, the `redis` crate refuses a pipeline whose commands span slots, and
//! every session has a slot of its own; so the calls are all sent at once over the cluster
//! client's connections, one per master, each of which writes them back to back: one round trip
//! per master, as for [`crate::store::Sessions::counts`].

use async_trait::async_trait;
use futures_util::future::try_join_all;
use serde_json::Value as Json;

use ::redis::{Pipeline, ServerErrorKind, Value};

use super::conn::Conn;
use super::history::position_of;
use super::reply::{ScriptStatus, array, change_of, optional_change, status, unexpected, view_of};
use super::{RedisStore, RedisStoreError, Result, within};
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
        let replies = match &self.conn {
            Conn::Single(_) => self.view_pipeline(sessions).await?,
            Conn::Cluster(_) => {
                let calls: Vec<_> = sessions
                    .iter()
                    .map(|s| self.session_call("view", &self.scripts.view, s))
                    .collect();
                try_join_all(calls.iter().map(|call| self.invoke(call))).await?
            }
        };
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

impl RedisStore {
    /// Every session's `lua/view.lua` call in one pipeline (one server); loads the script and
    /// sends the pipeline once more when the server did not know it.
    async fn view_pipeline(&self, sessions: &[String]) -> Result<Vec<Value>> {
        let script = &self.scripts.view;
        let mut pipeline = Pipeline::with_capacity(sessions.len());
        pipeline.ignore_errors();
        for session in sessions {
            let keys = self.keys.session(session);
            self.record("view", &keys);
            let command = pipeline
                .cmd("EVALSHA")
                .arg(script.get_hash())
                .arg(keys.len());
            for key in &keys {
                command.arg(key);
            }
            command
                .arg(self.keys.channel(session))
                .arg(self.instance.incarnation.as_str())
                .arg(session.as_str())
                .arg(self.ttl_ms());
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = within(pipeline.query_async(&mut conn)).await??;
        let unknown = |v: &Value| matches!(v, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript));
        let replies = if replies.iter().any(unknown) {
            within(script.prepare_invoke().load_async(&mut conn)).await??;
            within(pipeline.query_async(&mut conn)).await??
        } else {
            replies
        };
        replies
            .into_iter()
            .map(|reply| match reply {
                Value::ServerError(e) => Err(RedisStoreError::Redis(e.into())),
                other => Ok(other),
            })
            .collect()
    }
}
