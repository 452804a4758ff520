//! Fan-out between the engines connected to one in-process backend: each subscriber's feed.

use async_trait::async_trait;

use super::*;
use crate::store::StreamPosition;

#[async_trait]
impl Broker for MemoryStore {
    async fn publish(
        &self,
        session: &str,
        from: &str,
        user: Option<&str>,
        data: &Value,
    ) -> StoreResult<StreamPosition> {
        Ok(self.publish_message(session, Some(from), user, data))
    }

    async fn subscribe(&self, session: &str) -> StoreResult<()> {
        let mut state = self.backend.lock();
        state
            .subscribers
            .entry(session.to_owned())
            .or_default()
            .insert(self.instance.incarnation.to_string(), self.feed_tx.clone());
        Ok(())
    }

    async fn unsubscribe(&self, session: &str) -> StoreResult<()> {
        let mut state = self.backend.lock();
        if let Some(subs) = state.subscribers.get_mut(session) {
            subs.remove(self.instance.incarnation.as_str());
            if subs.is_empty() {
                state.subscribers.remove(session);
            }
        }
        Ok(())
    }
}
