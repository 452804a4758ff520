//! One read-only session script called for many sessions at once, in as few requests as the
//! store's servers allow: the server API's presence of up to 100 sessions, and the counts of a
//! page of live sessions.
//!
//! On one server, every call goes in one pipeline: one write, one round trip. On a Redis Cluster
//! every session has a slot of its own and the `redis` crate refuses a pipeline that spans slots
//! when it routes it itself; so the calls are grouped by the master that serves their slot (as the
//! last shard check saw the topology, [`super::shards`]) and each group is sent as one pipeline to
//! that master: one round trip per master, all masters at once. A call the master no longer
//! serves (a slot moved since the check) comes back as an error in its place and is sent again on
//! its own, where the cluster client follows the redirect; a master that does not know the script
//! yet gets it loaded and the group sent once more.

use std::collections::BTreeMap;

use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use ::redis::{Pipeline, Script, ServerErrorKind, Value};
use futures_util::future::{join_all, try_join_all};

use super::conn::Conn;
use super::slots::slot;
use super::{RedisStore, RedisStoreError, Result, within};

impl RedisStore {
    /// `script` (a read-only session script without arguments of its own) for each of
    /// `sessions`; the replies in the same order.
    pub(super) async fn per_session(
        &self,
        name: &'static str,
        script: &Script,
        sessions: &[String],
    ) -> Result<Vec<Value>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        match &self.conn {
            Conn::Single(_) => self.one_pipeline(name, script, sessions).await,
            Conn::Cluster(cluster) => self.by_master(cluster, name, script, sessions).await,
        }
    }

    /// The calls grouped by master, one pipeline each, all at once; calls the grouping missed go
    /// one by one.
    async fn by_master(
        &self,
        cluster: &ClusterConnection,
        name: &'static str,
        script: &Script,
        sessions: &[String],
    ) -> Result<Vec<Value>> {
        let slots: Vec<u16> = sessions
            .iter()
            .map(|s| slot(&self.keys.channel(s)))
            .collect();
        let masters = self
            .shards
            .as_ref()
            .map(|watch| watch.masters_of(&slots))
            .unwrap_or_else(|| vec![None; sessions.len()]);
        // Sessions of an unknown master each go alone, keyed by their slot.
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, master) in masters.into_iter().enumerate() {
            let group = master.unwrap_or_else(|| format!("slot {}", slots[i]));
            groups.entry(group).or_default().push(i);
        }
        let sent = groups.into_values().map(|members| {
            let mut cluster = cluster.clone();
            let pipeline = self.calls(name, script, members.iter().map(|&i| &sessions[i]));
            let route = Route::new(slots[members[0]], SlotAddr::Master);
            async move {
                let count = members.len();
                let replies = match routed(&mut cluster, &pipeline, count, route).await {
                    Ok(replies) if replies.iter().any(unknown_script) => {
                        // The master has not run this script yet: load it (the cluster client
                        // loads it on every node) and send again.
                        match within(script.prepare_invoke().load_async(&mut cluster)).await {
                            Ok(Ok(_)) => routed(&mut cluster, &pipeline, count, route).await,
                            Ok(Err(e)) => Err(e.into()),
                            Err(e) => Err(e),
                        }
                    }
                    other => other,
                };
                // A slot that moved since the topology was read fails the whole pipeline
                // (MOVED): its calls then go one by one, and follow the redirect.
                (members, replies.ok())
            }
        });
        let mut replies = vec![Value::Nil; sessions.len()];
        let mut again = Vec::new();
        for (members, group_replies) in join_all(sent).await {
            let Some(group_replies) = group_replies else {
                again.extend(members);
                continue;
            };
            for (i, reply) in members.into_iter().zip(group_replies) {
                match reply {
                    Value::ServerError(_) => again.push(i),
                    reply => replies[i] = reply,
                }
            }
        }
        let retried = again.iter().map(|&i| {
            let call = self.session_call(name, script, &sessions[i]);
            async move { self.invoke(&call).await.map(|reply| (i, reply)) }
        });
        for (i, reply) in try_join_all(retried).await? {
            replies[i] = reply;
        }
        Ok(replies)
    }

    /// Every call in one pipeline to the one server; loads the script and sends the pipeline once
    /// more when the server did not know it.
    async fn one_pipeline(
        &self,
        name: &'static str,
        script: &Script,
        sessions: &[String],
    ) -> Result<Vec<Value>> {
        let pipeline = self.calls(name, script, sessions.iter());
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = within(pipeline.query_async(&mut conn)).await??;
        let replies = if replies.iter().any(unknown_script) {
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

    /// A pipeline of `script`'s calls for `sessions`, laid out as [`RedisStore::session_call`]
    /// lays out one, errors left in place of their replies.
    fn calls<'s>(
        &self,
        name: &'static str,
        script: &Script,
        sessions: impl ExactSizeIterator<Item = &'s String>,
    ) -> Pipeline {
        let mut pipeline = Pipeline::with_capacity(sessions.len());
        pipeline.ignore_errors();
        for session in sessions {
            let keys = self.keys.session(session);
            self.record(name, &keys);
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
        pipeline
    }
}

fn unknown_script(reply: &Value) -> bool {
    matches!(reply, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}

/// `pipeline` (of `count` calls) to the master of `route`'s slot.
async fn routed(
    cluster: &mut ClusterConnection,
    pipeline: &Pipeline,
    count: usize,
    route: Route,
) -> Result<Vec<Value>> {
    let to = SingleNodeRoutingInfo::SpecificNode(route);
    Ok(within(cluster.route_pipeline(pipeline.clone(), 0, count, to)).await??)
}
