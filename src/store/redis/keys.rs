//! Names of every Redis key and channel rollcall uses, in one place.
//!
//! Every script call touches keys of ONE Redis Cluster slot only, passed in `KEYS`; scripts never
//! build key names. `P` is the key prefix (`--key-prefix`):
//!
//! | key | type | content |
//! |---|---|---|
//! | `P:{s:<id>}:meta` | hash | `version`, `epoch`, `leader`, `ended_at`, `anonymous` |
//! | `P:{s:<id>}:members` | hash | connection → member record (JSON of [`crate::model::Member`]) |
//! | `P:{s:<id>}:order` | zset | connection scored by `joined_at` (election order, ties by id) |
//! | `P:{s:<id>}:byinst` | zset | `<incarnation>\0<connection>`, score 0: the per-instance member sets (a lex range is one instance's members, so removing them costs O(their number)) |
//! | `P:{s:<id>}:users` | hash | user id → live connections of that user (for `counts`) |
//! | `P:{s:<id>}:grace` | zset | reconnecting member → when its grace runs out (Redis time, ms) |
//! | `P:{s:<id>}:log` | list | the last 64 published changes, newest first, consecutive versions (gap repair without reading every member) |
//! | `P:{s:<id>}:stream` | hash | the session's message stream ([`crate::store::history`]): `id` (random, new whenever the stream starts afresh), `offset` (the latest message's), `until` (when it and the history expire, Redis ms); expires between `--history-ttl-ms` and twice that after the last message |
//! | `P:{s:<id>}:history` | list | the latest `--history-size` messages (and up to 16 more before a trim), newest first, consecutive offsets ending at the stream's `offset`: JSON of [`crate::store::StoredMessage`]; same expiry as the stream |
//! | `P:{s:<id>}:outbox` | list | while webhooks are on: each step kept for the backend, oldest first, until delivered, as two items: `<at> <members>` and its change broadcast (or array of them) ([`crate::store::outbox`]) |
//! | `P:{i:<incarnation>}:sessions` | set | sessions in which the instance has (or had) members |
//! | `P:{i:<incarnation>}:claim` | string | who reaps this (dead) instance, with a short TTL |
//! | `P:{g}:leases` | zset | incarnation scored by lease expiry (Redis time, ms) |
//! | `P:{g}:names` | hash | instance name → current incarnation |
//! | `P:{g}:generation` | string | random token set once; a change means Redis lost its data |
//! | `P:{g}:grace` | zset | `<session>\0<tag>` scored by a grace deadline in that session: where to look for reconnecting members whose grace ran out (written before the session's own deadline, so never missing one) |
//! | `P:{g}:directory` | zset | every session that has members or undelivered outbox entries, score 0 (lex order: the server API's pages) |
//! | `P:{g}:marks` | zset | the same sessions, scored by when a change was last about to be made in them (Redis time, ms): written before the change, so a session is never missing while it changes |
//! | `P:{g}:deliverer` | string | the incarnation that delivers webhooks now, with a short TTL |
//! | `P:{g}:hints` | zset | on a cluster: session -> store time its outbox got an entry lately ([`super::hints`]) |
//! | `P:{g}:resume-secret` | string | random secret set once, that every instance signs resume tokens with ([`crate::resume`]) |
//! | `P:{<tag>}:shard` | string | on a cluster, one per master (`<tag>` hashes to a slot it owns): random token set once; a change means that shard lost its data ([`super::shards`]) |
//!
//! The sharded pub/sub channel of a session is `P:{s:<id>}:events` (same slot as its keys),
//! carrying JSON [`crate::store::Broadcast`]s.

/// Key and channel names. Public so tests can check the slot rule and inspect keys.
#[derive(Clone, Debug)]
pub struct KeyLayout {
    prefix: String,
}

impl KeyLayout {
    pub fn new(prefix: &str) -> KeyLayout {
        KeyLayout {
            prefix: prefix.to_owned(),
        }
    }

    /// The seven keys of a session, in the order the session scripts take them.
    pub fn session(&self, session: &str) -> [String; 7] {
        let p = &self.prefix;
        [
            "meta", "members", "order", "byinst", "users", "log", "grace",
        ]
        .map(|k| format!("{p}:{{s:{session}}}:{k}"))
    }

    /// The message stream and history of a session, in the order the history scripts take them
    /// (`lua/publish.lua`, `lua/history.lua`).
    pub fn history(&self, session: &str) -> [String; 2] {
        let p = &self.prefix;
        ["stream", "history"].map(|k| format!("{p}:{{s:{session}}}:{k}"))
    }

    /// The per-instance member index of a session (the fourth of [`KeyLayout::session`]).
    pub fn session_by_instance(&self, session: &str) -> String {
        format!("{}:{{s:{session}}}:byinst", self.prefix)
    }

    pub fn channel(&self, session: &str) -> String {
        format!("{}:{{s:{session}}}:events", self.prefix)
    }

    /// The channel's session id, if `channel` is a session channel of this prefix.
    pub fn session_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{s:")?
            .strip_suffix("}:events")
    }

    pub fn instance_sessions(&self, incarnation: &str) -> String {
        format!("{}:{{i:{incarnation}}}:sessions", self.prefix)
    }

    pub fn instance_claim(&self, incarnation: &str) -> String {
        format!("{}:{{i:{incarnation}}}:claim", self.prefix)
    }

    /// The generation token of the cluster shard whose master owns the slot of `tag`.
    pub fn shard_token(&self, tag: &str) -> String {
        format!("{}:{{{tag}}}:shard", self.prefix)
    }

    /// A session's outbox ([`crate::store::outbox`]): the eighth session key, passed while the
    /// outbox is on.
    pub fn outbox(&self, session: &str) -> String {
        format!("{}:{{s:{session}}}:outbox", self.prefix)
    }

    /// The directory of sessions: lex-ordered and mark-scored (one slot).
    pub fn directory(&self) -> [String; 2] {
        let p = &self.prefix;
        ["directory", "marks"].map(|k| format!("{p}:{{g}}:{k}"))
    }

    /// Sessions whose outboxes got entries lately, on a cluster ([`super::hints`]).
    pub fn hints(&self) -> String {
        format!("{}:{{g}}:hints", self.prefix)
    }

    /// Who delivers webhooks.
    pub fn deliverer(&self) -> String {
        format!("{}:{{g}}:deliverer", self.prefix)
    }

    /// The index of sessions with grace deadlines.
    pub fn graces(&self) -> String {
        format!("{}:{{g}}:grace", self.prefix)
    }

    /// The secret resume tokens are signed with.
    pub fn resume_secret(&self) -> String {
        format!("{}:{{g}}:resume-secret", self.prefix)
    }

    /// Leases zset, names hash, generation token: the keys of the lease scripts.
    pub fn global(&self) -> [String; 3] {
        let p = &self.prefix;
        ["leases", "names", "generation"].map(|k| format!("{p}:{{g}}:{k}"))
    }
}
