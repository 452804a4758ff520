//! The outbox and directory over Redis ([`crate::store::outbox`]).
//!
//! Each session keeps its own outbox list in its own slot (`P:{s:<id>}:outbox`), appended by the
//! very script that makes the change (`keep_for_delivery` in `lua/session_base.lua`), so no script
//! crosses slots and the outbox is spread over the shards exactly as the sessions are. The
//! directory (`P:{g}:directory`, `P:{g}:marks`) says where to look: an instance marks a session
//! there before a change that may give it members ([`RedisStore::mark`]), and a session leaves it
//! only when it has neither members nor entries and was not marked for [`MARK_MARGIN`]. Every
//! other change is made in a session with members, which is in the directory already.

use std::sync::atomic::Ordering;
use std::time::Duration;

use ::redis::Value;
use async_trait::async_trait;
use futures_util::future::try_join_all;

use super::hints::Pass;
use super::reply::{array, int, reply_error, text};
use super::{RedisStore, Result, lock};
use crate::model::Counts;
use crate::store::outbox::MARK_MARGIN;
use crate::store::{
    Directory, EntryId, Outbox, OutboxEntry, PendingSession, SessionPage, Sessions, StoreResult,
};

/// Directory entries read per command while looking for pending entries or live sessions.
const SCAN_CHUNK: usize = 500;
/// Sessions whose outbox heads are read first by [`Outbox::pending`]; each further round reads
/// twice as many.
const FIRST_HEADS: usize = 2;
/// Sessions an instance remembers marking before it forgets those marked long ago.
const MARKS_REMEMBERED: usize = 10_000;
/// Marks older than [`MARK_MARGIN`] checked per [`Directory::tidy_directory`].
const TIDY_CHUNK: usize = 200;

impl RedisStore {
    pub(super) fn keeps_outbox(&self) -> bool {
        self.outbox_on.load(Ordering::Relaxed)
    }

    /// Marks `session` in the directory before a change that may give it members (a join, a
    /// re-assertion): a session with members, or with outbox entries, is never taken out, so only
    /// a vacated session becoming live again needs a mark. An instance marks a session at most
    /// once per half [`MARK_MARGIN`]: the mark it made is still too young to be tidied away.
    pub(super) async fn mark(&self, session: &str) -> Result<()> {
        let now = std::time::Instant::now();
        {
            let mut marked = lock(&self.marked);
            if marked
                .get(session)
                .is_some_and(|at| now.duration_since(*at) < MARK_MARGIN / 2)
            {
                return Ok(());
            }
            if marked.len() >= MARKS_REMEMBERED {
                marked.retain(|_, at| now.duration_since(*at) < MARK_MARGIN / 2);
            }
        }
        let [directory, marks] = self.keys.directory();
        let mut pipe = ::redis::pipe();
        pipe.cmd("ZADD")
            .arg(&directory)
            .arg(0)
            .arg(session)
            .ignore();
        pipe.cmd("ZADD")
            .arg(&marks)
            .arg(self.store_clock.store_now_ms())
            .arg(session)
            .ignore();
        self.record("mark", &[directory, marks]);
        let mut conn = self.conn.clone();
        super::within(pipe.query_async::<()>(&mut conn)).await??;
        lock(&self.marked).insert(session.to_owned(), now);
        Ok(())
    }

    /// Directory entries after `after` in session id order, at most `limit`.
    async fn directory_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let [sessions, _] = self.keys.directory();
        let from = after.map_or_else(|| "-".to_owned(), |a| format!("({a}"));
        let mut range = ::redis::cmd("ZRANGEBYLEX");
        range
            .arg(&sessions)
            .arg(from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit);
        let reply = self
            .command("directory", &range, std::slice::from_ref(&sessions))
            .await?;
        texts(reply)
    }

    /// Marks with their scores, oldest first: from `offset`, at most `limit`, none newer than
    /// `until` (store time, ms) when given.
    async fn marks(
        &self,
        offset: usize,
        limit: usize,
        until: Option<i64>,
    ) -> Result<Vec<(String, i64)>> {
        let [_, marks] = self.keys.directory();
        let mut range = ::redis::cmd("ZRANGEBYSCORE");
        range
            .arg(&marks)
            .arg("-inf")
            .arg(until.map_or_else(|| "+inf".to_owned(), |u| u.to_string()))
            .arg("WITHSCORES")
            .arg("LIMIT")
            .arg(offset)
            .arg(limit);
        let reply = self
            .command("marks", &range, std::slice::from_ref(&marks))
            .await?;
        scored(reply)
    }

    /// The oldest entries (at most `per_session`) of each session's outbox, all sent at once.
    async fn outbox_heads(
        &self,
        sessions: &[String],
        per_session: usize,
    ) -> Result<Vec<Vec<OutboxEntry>>> {
        // Two list items an entry: its header and its changes (`keep_for_delivery`).
        let reads = sessions.iter().map(|session| {
            let key = self.keys.outbox(session);
            let mut range = ::redis::cmd("LRANGE");
            range.arg(&key).arg(0).arg(2 * per_session.max(1) - 1);
            async move { self.command("outbox", &range, &[key]).await }
        });
        let replies = try_join_all(reads).await?;
        replies
            .into_iter()
            .map(|reply| {
                array(reply)?
                    .chunks(2)
                    .map(|pair| match pair {
                        [Value::BulkString(header), Value::BulkString(changes)] => {
                            OutboxEntry::from_stored(header, changes).map_err(reply_error)
                        }
                        other => Err(reply_error(format!("outbox entry {other:?}"))),
                    })
                    .collect()
            })
            .collect()
    }

    /// On one server, how many of `sessions`' outboxes hold entries: one `EXISTS` over all their
    /// keys (an empty list does not exist). `None` on a cluster, where the keys are in as many
    /// slots as sessions.
    async fn outboxes_holding(&self, sessions: &[String]) -> Result<Option<usize>> {
        if self.conn.is_cluster() || sessions.is_empty() {
            return Ok(None);
        }
        let keys: Vec<String> = sessions.iter().map(|s| self.keys.outbox(s)).collect();
        let mut exists = ::redis::cmd("EXISTS");
        exists.arg(&keys);
        // Not recorded with the calls the slot rule is checked on: it is never sent to a cluster.
        let held = int(&self.conn.query(&exists).await?)?;
        Ok(Some(usize::try_from(held).unwrap_or(usize::MAX)))
    }

    /// Reads the heads of `ids` a few sessions at a time, more each round (2, 4, 8…), until
    /// `gathered` has enough, or, when `holding` says how many of them hold entries, until it
    /// found that many: a busy session's entries are not sent only to be left unposted. Returns
    /// how many of `ids` it read.
    async fn gather(
        &self,
        ids: &[String],
        holding: Option<usize>,
        gathered: &mut Gathered,
    ) -> Result<usize> {
        let mut holding = holding.unwrap_or(ids.len());
        let mut at = 0;
        let mut group = FIRST_HEADS;
        while at < ids.len() && holding > 0 && !gathered.enough() {
            let read = &ids[at..(at + group).min(ids.len())];
            let heads = self.outbox_heads(read, gathered.per_session).await?;
            for (session, entries) in read.iter().zip(heads) {
                if !entries.is_empty() {
                    holding = holding.saturating_sub(1);
                    gathered.add(session, entries);
                }
            }
            at += read.len();
            group *= 2;
        }
        Ok(at)
    }

    /// Whether each session's outbox still holds entries.
    async fn outbox_held(&self, sessions: &[String]) -> Result<Vec<bool>> {
        let checks = sessions.iter().map(|session| {
            let key = self.keys.outbox(session);
            let mut exists = ::redis::cmd("EXISTS");
            exists.arg(&key);
            async move { self.command("outbox", &exists, &[key]).await }
        });
        let replies = try_join_all(checks).await?;
        replies.iter().map(|r| Ok(int(r)? > 0)).collect()
    }

    /// Scores the marks of `sessions` anew: live sessions move to the back of the tidy queue.
    async fn remark(&self, sessions: &[String]) -> Result<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let [_, marks] = self.keys.directory();
        let now = self.store_clock.store_now_ms();
        let mut zadd = ::redis::cmd("ZADD");
        zadd.arg(&marks).arg("XX");
        for session in sessions {
            zadd.arg(now).arg(session);
        }
        self.command("remark", &zadd, std::slice::from_ref(&marks))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Outbox for RedisStore {
    fn keep_outbox(&self, on: bool) {
        self.outbox_on.store(on, Ordering::Relaxed);
    }

    async fn pending(
        &self,
        sessions: usize,
        per_session: usize,
        events: usize,
    ) -> StoreResult<Vec<PendingSession>> {
        let now = self.store_clock.store_now_ms();
        let mut gathered = Gathered::new(sessions, per_session, events);
        match self.next_pass(now).await? {
            Pass::Hinted(ids) => {
                let reached = self.gather(&ids, None, &mut gathered).await?;
                let mut carry = gathered.holding.clone();
                carry.extend(ids[reached..].iter().cloned());
                self.pass_done(now, false, reached == ids.len(), carry)
                    .await;
            }
            Pass::Full => {
                let mut offset = 0;
                let complete = loop {
                    let chunk = self.marks(offset, SCAN_CHUNK, None).await?;
                    let ids: Vec<String> = chunk.into_iter().map(|(session, _)| session).collect();
                    // How many of the chunk's outboxes hold entries, where one command can tell
                    // (an idle pass then costs one command per chunk).
                    let holding = self.outboxes_holding(&ids).await?;
                    let reached = self.gather(&ids, holding, &mut gathered).await?;
                    if gathered.enough() {
                        let mut carry = gathered.holding.clone();
                        carry.extend(ids[reached..].iter().cloned());
                        break (false, carry);
                    }
                    if ids.len() < SCAN_CHUNK {
                        break (true, gathered.holding.clone());
                    }
                    offset += SCAN_CHUNK;
                };
                self.pass_done(now, true, complete.0, complete.1).await;
            }
        }
        Ok(gathered.pending)
    }

    async fn acknowledge(
        &self,
        session: &str,
        through: EntryId,
        entries: usize,
    ) -> StoreResult<usize> {
        if entries == 0 {
            return Ok(0);
        }
        let key = self.keys.outbox(session);
        self.record("acknowledge", std::slice::from_ref(&key));
        let mut call = self.scripts.acknowledge.prepare_invoke();
        call.key(&key)
            .arg(entries)
            .arg(through.at)
            .arg(through.first_version);
        Ok(usize::try_from(int(&self.invoke(&call).await?)?).unwrap_or(0))
    }

    async fn hold_delivery(&self, ttl: Duration) -> StoreResult<bool> {
        let key = self.keys.deliverer();
        self.record("deliverer", std::slice::from_ref(&key));
        let mut call = self.scripts.deliverer.prepare_invoke();
        call.key(&key)
            .arg(self.instance.incarnation.as_str())
            .arg(ttl.as_millis().max(1) as u64);
        Ok(int(&self.invoke(&call).await?)? == 1)
    }
}

#[async_trait]
impl Directory for RedisStore {
    async fn live_sessions(&self, cursor: Option<&str>, limit: usize) -> StoreResult<SessionPage> {
        let mut page = SessionPage::default();
        let mut after = cursor.map(str::to_owned);
        loop {
            let ids = self
                .directory_after(after.as_deref(), limit - page.sessions.len())
                .await?;
            let Some(last) = ids.last().cloned() else {
                return Ok(page);
            };
            let counts = self.counts(&ids).await?;
            page.sessions.extend(
                ids.into_iter()
                    .zip(counts)
                    .filter(|(_, counts)| is_live(counts)),
            );
            if page.sessions.len() >= limit {
                // More may follow; an empty last page is the price of not reading ahead.
                page.cursor = Some(last);
                return Ok(page);
            }
            after = Some(last);
        }
    }

    async fn tidy_directory(&self) -> StoreResult<usize> {
        let margin = MARK_MARGIN.as_millis() as i64;
        let old = self
            .marks(
                0,
                TIDY_CHUNK,
                Some(self.store_clock.store_now_ms() - margin),
            )
            .await?;
        if old.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = old.iter().map(|(session, _)| session.clone()).collect();
        let counts = self.counts(&ids).await?;
        let held = self.outbox_held(&ids).await?;
        let mut keep = Vec::new();
        let mut untrack = Vec::new();
        for (((session, mark), counts), held) in old.into_iter().zip(counts).zip(held) {
            match is_live(&counts) || held {
                true => keep.push(session),
                false => untrack.push((session, mark)),
            }
        }
        self.remark(&keep).await?;
        if untrack.is_empty() {
            return Ok(0);
        }
        let keys = self.keys.directory();
        self.record("untrack", &keys);
        let mut call = self.scripts.untrack.prepare_invoke();
        call.key(&keys[0]).key(&keys[1]);
        for (session, mark) in &untrack {
            call.arg(session).arg(mark);
        }
        Ok(int(&self.invoke(&call).await?)? as usize)
    }
}

/// What a deliverer's pass has read so far.
struct Gathered {
    pending: Vec<PendingSession>,
    /// Every session found with entries, in the pass's order (also those past `sessions`).
    holding: Vec<String>,
    events: usize,
    sessions: usize,
    per_session: usize,
    wanted: usize,
}

impl Gathered {
    fn new(sessions: usize, per_session: usize, wanted: usize) -> Gathered {
        Gathered {
            pending: Vec::new(),
            holding: Vec::new(),
            events: 0,
            sessions,
            per_session,
            wanted,
        }
    }

    fn add(&mut self, session: &str, entries: Vec<OutboxEntry>) {
        self.holding.push(session.to_owned());
        if self.pending.len() < self.sessions {
            self.events += entries.iter().map(OutboxEntry::events).sum::<usize>();
            self.pending.push(PendingSession {
                session: session.to_owned(),
                entries,
            });
        }
    }

    fn enough(&self) -> bool {
        self.events >= self.wanted || self.pending.len() >= self.sessions
    }
}

fn is_live(counts: &Counts) -> bool {
    counts.connections + counts.reconnecting > 0
}

/// A `WITHSCORES` reply: flat pairs (RESP2) or an array of pairs (RESP3).
fn scored(reply: Value) -> Result<Vec<(String, i64)>> {
    let mut flat = Vec::new();
    for item in array(reply)? {
        match item {
            Value::Array(pair) => flat.extend(pair),
            other => flat.push(other),
        }
    }
    flat.chunks(2)
        .map(|pair| match pair {
            [session, score] => {
                let session = text(session).ok_or_else(|| reply_error("mark member"))?;
                let score = match score {
                    Value::Double(d) => *d,
                    other => text(other)
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(|| reply_error(format!("mark score {other:?}")))?,
                };
                Ok((session, score as i64))
            }
            _ => Err(reply_error("marks reply")),
        })
        .collect()
}

fn texts(reply: Value) -> Result<Vec<String>> {
    array(reply)?
        .iter()
        .map(|item| text(item).ok_or_else(|| reply_error("not a string")))
        .collect()
}
