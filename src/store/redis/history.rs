//! Message history over Redis ([`crate::store::history`]): `lua/publish.lua` numbers, keeps and
//! publishes a message in one step, `lua/history.lua` reads the kept ones back. Both run on the
//! session's `stream` and `history` keys ([`super::keys`]), which share the session's hash tag.

use async_trait::async_trait;
use serde_json::Value as Json;

use super::reply::{array, int, reply_error, text};
use super::{RedisStore, Result, fresh_token, lock};
use crate::store::{
    History, HistoryPage, HistorySettings, StoreError, StoreResult, StoredMessage, StreamPosition,
};

impl RedisStore {
    pub(super) fn history_settings(&self) -> HistorySettings {
        *lock(&self.history)
    }

    /// One call of `lua/publish.lua` (see [`crate::store::Broker::publish`]).
    pub(super) async fn publish_message(
        &self,
        session: &str,
        from: Option<&str>,
        user: Option<&str>,
        data: &Json,
    ) -> Result<StreamPosition> {
        let keys = self.keys.history(session);
        self.record("publish", &keys);
        let call = self.publish_call(&self.scripts.publish, &keys, session, from, user, data)?;
        position_of(&array(self.invoke(&call).await?)?)
    }

    /// A call of `script` (`lua/publish.lua`, alone or after a guard) on the history `keys` of
    /// `session`, with publish.lua's arguments; a guard's own keys follow them.
    pub(super) fn publish_call<'a>(
        &self,
        script: &'a ::redis::Script,
        keys: &[String; 2],
        session: &str,
        from: Option<&str>,
        user: Option<&str>,
        data: &Json,
    ) -> Result<::redis::ScriptInvocation<'a>> {
        let settings = self.history_settings();
        let mut call = script.prepare_invoke();
        call.key(&keys[0]).key(&keys[1]);
        call.arg(self.keys.channel(session))
            .arg(json(self.instance.incarnation.as_str())?)
            .arg(json(session)?)
            .arg(json(&from)?)
            .arg(json(&user)?)
            .arg(json(data)?)
            .arg(settings.size)
            .arg(settings.ttl_ms())
            .arg(fresh_token());
        Ok(call)
    }
}

/// Decodes publish.lua's `{stream id, offset}`.
pub(super) fn position_of(items: &[::redis::Value]) -> Result<StreamPosition> {
    match items {
        [stream, offset] => Ok(StreamPosition {
            stream: text(stream).ok_or_else(|| reply_error("publish: stream id"))?,
            offset: int(offset)?,
        }),
        _ => Err(reply_error(format!("publish reply: {items:?}"))),
    }
}

/// The JSON text of a value, for the script's arguments.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| reply_error(format!("message JSON: {e}")))
}

#[async_trait]
impl History for RedisStore {
    fn keep_history(&self, settings: HistorySettings) {
        *lock(&self.history) = settings;
    }

    async fn history(
        &self,
        session: &str,
        since: Option<u64>,
        limit: usize,
    ) -> StoreResult<HistoryPage> {
        let settings = self.history_settings();
        let keys = self.keys.history(session);
        self.record("history", &keys);
        let mut call = self.scripts.history.prepare_invoke();
        call.key(&keys[0]).key(&keys[1]);
        call.arg(since.map(|s| s.to_string()).unwrap_or_default())
            .arg(limit)
            .arg(settings.size)
            .arg(settings.ttl_ms());
        let items = array(self.invoke(&call).await?)?;
        Ok(page_of(&items, since).map_err(StoreError::from)?)
    }
}

/// Decodes `{}` or `{stream id, latest offset, entries...}` (see `lua/history.lua`).
fn page_of(items: &[::redis::Value], since: Option<u64>) -> Result<HistoryPage> {
    let [stream, latest, entries @ ..] = items else {
        return Ok(HistoryPage::new(None, None, since, Vec::new()));
    };
    let stream = text(stream).ok_or_else(|| reply_error("history: stream id"))?;
    let messages = entries
        .iter()
        .map(|entry| {
            let json = text(entry).ok_or_else(|| reply_error("history entry is not text"))?;
            serde_json::from_str::<StoredMessage>(&json)
                .map_err(|e| reply_error(format!("history entry: {e}: {json}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(HistoryPage::new(
        Some(stream),
        Some(int(latest)?),
        since,
        messages,
    ))
}
