//! Fan-out over Redis: sharded pub/sub messages (published by `lua/publish.lua`, see
//! [`super::history`]) and the subscriptions of [`super::subscriptions`].

use async_trait::async_trait;
use futures_util::future::join;
use serde_json::Value as Json;

use super::{RELEASE_WATCH, RedisStore, lock};
use crate::store::{Broker, StoreResult, StreamPosition};

#[async_trait]
impl Broker for RedisStore {
    async fn publish(
        &self,
        session: &str,
        from: &str,
        user: Option<&str>,
        data: &Json,
    ) -> StoreResult<StreamPosition> {
        // One script numbers the message, keeps it and publishes it (`super::history`).
        Ok(self
            .publish_message(session, Some(from), user, data)
            .await?)
    }

    async fn subscribe(&self, session: &str) -> StoreResult<()> {
        // Two slots, so two commands, sent at the same time (see the module doc of `redis`).
        let (subscribed, listed) = join(
            self.subscriptions.subscribe(session),
            self.list_session(&self.instance.incarnation, session),
        )
        .await;
        subscribed?;
        listed?;
        Ok(())
    }

    async fn unsubscribe(&self, session: &str) -> StoreResult<()> {
        self.subscriptions.unsubscribe(session).await?;
        // No local member is left here: the session leaves this instance's session set too, so
        // the set stays as small as the instance's live sessions.
        let key = self.keys.instance_sessions(&self.instance.incarnation);
        let mut srem = ::redis::cmd("SREM");
        srem.arg(&key).arg(session);
        self.command("srem", &srem, std::slice::from_ref(&key))
            .await?;
        if self.shards.is_some() {
            let now = std::time::Instant::now();
            let mut released = lock(&self.released);
            released.retain(|(s, at)| s != session && now.duration_since(*at) < RELEASE_WATCH);
            released.push((session.to_owned(), now));
        }
        Ok(())
    }
}
