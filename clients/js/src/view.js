// @ts-check
/**
 * The view of one session, kept from the server's versions. Pure: no sockets, no timers, no
 * events; every function takes a view and a frame and returns the next view and the effects the
 * caller should emit, in order. `session.js` emits them; `client.js` does the talking.
 *
 * Rules (clients/js/README.md, docs/protocol.md §1.6–1.7):
 * - An event whose `version` is below the view's is ignored.
 * - The events of one atomic change share one version (a `member_left` and the `leader_changed` it
 *   causes, say), so an event at the view's own version is applied when it is a *different* part
 *   of the change last applied event by event, and ignored when it repeats one (same type and
 *   connection) or when the view came whole from the server at that version (`joined`,
 *   `members`, `snapshot` already contain every part).
 * - An event at `version` + 1 is applied.
 * - A larger version is a gap: the effect `resync` asks the caller to send `members`, whose reply
 *   replaces the view; version events are ignored until then.
 * - A replacement emits `leave` (reason `resync`) and `join` for the difference, `update` for
 *   members whose record changed and `leader` when the leadership differs, then `change`.
 * - Presence mode `counts` (docs/protocol.md §1.11): the member list holds only one's own record and the
 *   leader's, member events do not come, so versions jump by design: no gap handling, and `counts`
 *   comes from the server's `counts` events instead of being counted from the list.
 * - Continuity (clients/js/README.md, "Resume"): members carry `state` ("present" unless the server
 *   says "reconnecting"), counts carry `reconnecting` (0 unless the server says more), and only
 *   present members are counted. Messages carry `offset` and `stream`: one at or below the last one
 *   applied in the same stream, or one of one's own (from `published`), is a duplicate and dropped.
 *   A `leader_changed` whose epoch is below the view's, or that names the view's leader at its
 *   epoch (a replay after a resume that already moved the view on), changes nothing: epochs never
 *   go backwards.
 */

/**
 * @typedef {object} Member
 * @property {string} connection
 * @property {string | null} user
 * @property {string} name
 * @property {string | null} avatar
 * @property {number} joined_at  ms since the Unix epoch
 * @property {string} [instance]  the server instance holding the connection (server extension)
 * @property {MemberState} state  extension: "reconnecting" while its socket is lost and the server
 *   keeps its place for a grace period; "present" otherwise (also when the server does not say)
 */

/** @typedef {"present" | "reconnecting"} MemberState */

/**
 * @typedef {object} Counts
 * @property {number} connections
 * @property {number} users  distinct user ids plus anonymous connections
 * @property {number} reconnecting  extension: members in state "reconnecting" (not counted above)
 */

/** @typedef {"full" | "counts"} PresenceMode */

/**
 * A whole view as `joined`, `members` and `snapshot` carry it.
 * @typedef {object} ViewBody
 * @property {number} version
 * @property {string | null} leader
 * @property {number} epoch
 * @property {any[]} members
 * @property {Partial<Counts>} [counts]
 * @property {string | null} [stream]  extension: the session's message stream
 * @property {number | null} [offset]  extension: its latest message offset
 * @property {boolean} [recovered]  extension: false in the `joined` of a `join` with `since` whose
 *   missed messages could not all be sent
 */

/**
 * @typedef {object} View
 * @property {string} session
 * @property {string} you  own connection id
 * @property {PresenceMode} presence
 * @property {number} version
 * @property {string | null} leader
 * @property {number} epoch
 * @property {ReadonlyArray<Member>} members  ordered by `joined_at`, then connection id
 * @property {Counts} counts
 * @property {boolean} ended
 * @property {string | null} endedBy
 * @property {boolean} resyncing  a `members` request answering a gap is under way
 * @property {boolean} sealed  the view came whole at `version`: no part of it is missing
 * @property {ReadonlyArray<string>} applied  keys of the events applied at `version`
 * @property {string | null} stream  the message stream of `offset` (null: not known)
 * @property {number | null} offset  the last message offset applied in `stream` (null: none); one's
 *   own published messages count once every offset below them was applied
 * @property {ReadonlyArray<number>} ownOffsets  offsets of one's own published messages above
 *   `offset` (a message of another member may still be on its way below them)
 * @property {boolean} messagesLost  the server said the messages of a gap are lost: the next whole
 *   view's `offset` counts as applied
 */

/**
 * @typedef {{ type: "join", member: Member }
 *   | { type: "leave", connection: string, reason: string }
 *   | { type: "update", member: Member }
 *   | { type: "leader", leader: string | null, epoch: number }
 *   | { type: "counts", counts: Counts }
 *   | { type: "message", from: string | null, user: string | null, data: unknown, offset?: number, stream?: string }
 *   | { type: "ended", by: string | null }
 *   | { type: "recovered", recovered: boolean, resumed: boolean }
 *   | { type: "resync" }
 *   | { type: "change" }} Effect
 */

/**
 * @typedef {object} Step
 * @property {View} view
 * @property {Effect[]} effects
 */

/**
 * Election order: earliest `joined_at` first, ties broken by connection id (as the server sorts).
 * @param {Member} a
 * @param {Member} b
 */
function byJoinOrder(a, b) {
  if (a.joined_at !== b.joined_at) return a.joined_at - b.joined_at;
  return a.connection < b.connection ? -1 : a.connection > b.connection ? 1 : 0;
}

/**
 * The counts of a complete member list, as the server computes them.
 * @param {ReadonlyArray<Member>} members
 * @returns {Counts}
 */
export function countMembers(members) {
  const users = new Set();
  let anonymous = 0;
  let reconnecting = 0;
  for (const m of members) {
    if (m.state === "reconnecting") reconnecting += 1;
    else if (m.user == null) anonymous += 1;
    else users.add(m.user);
  }
  return { connections: members.length - reconnecting, users: users.size + anonymous, reconnecting };
}

/**
 * A member record as the server sent it, with `state` "present" when it did not say.
 * @param {any} m
 * @returns {Member}
 */
export function normalizeMember(m) {
  return m.state === "present" || m.state === "reconnecting" ? m : { ...m, state: "present" };
}

/**
 * Counts as the server sent them, with `reconnecting` 0 when it did not say.
 * @param {Partial<Counts>} counts
 * @returns {Counts}
 */
export function normalizeCounts(counts) {
  return typeof counts.reconnecting === "number"
    ? /** @type {Counts} */ (counts)
    : { connections: counts.connections ?? 0, users: counts.users ?? 0, ...counts, reconnecting: 0 };
}

/**
 * @param {ReadonlyArray<any>} members
 * @returns {Member[]}
 */
function sorted(members) {
  return members.map(normalizeMember).sort(byJoinOrder);
}

/**
 * In presence mode `counts` the list holds one's own record and the current leader's only.
 * @param {ReadonlyArray<Member>} members
 * @param {string} you
 * @param {string | null} leader
 */
function ownAndLeader(members, you, leader) {
  return members.filter((m) => m.connection === you || m.connection === leader);
}

/**
 * @param {Member} a
 * @param {Member} b
 */
function sameRecord(a, b) {
  return a.name === b.name && a.avatar === b.avatar && a.user === b.user && a.state === b.state;
}

/**
 * The view a `joined` reply describes.
 * @param {{ session: string, you: string } & ViewBody} joined
 * @param {PresenceMode} [presence]
 * @returns {View}
 */
export function createView(joined, presence = "full") {
  const members = sorted(joined.members ?? []);
  return {
    session: joined.session,
    you: joined.you,
    presence,
    version: joined.version,
    leader: joined.leader ?? null,
    epoch: joined.epoch,
    members,
    counts: joined.counts ? normalizeCounts(joined.counts) : countMembers(members),
    ended: false,
    endedBy: null,
    resyncing: false,
    sealed: true,
    applied: [],
    stream: joined.stream ?? null,
    offset: joined.offset ?? null,
    ownOffsets: [],
    messagesLost: false,
  };
}

/**
 * The message position after a whole view (`joined`, `snapshot`): in the same stream the view's
 * own position stays (the messages after it may be on their way: a `join` with `since` or a
 * resume sends them after the view), unless the server said the messages since are lost; in
 * another stream (the store lost the history) the body's position is taken.
 * @param {View} view
 * @param {ViewBody} body
 * @returns {Pick<View, "stream" | "offset" | "ownOffsets" | "messagesLost">}
 */
function positionAfter(view, body) {
  const keep = { stream: view.stream, offset: view.offset, ownOffsets: view.ownOffsets, messagesLost: view.messagesLost };
  if (body.stream === undefined) return keep; // a `members` reply, or a server without history
  const offset = body.offset ?? null;
  if (body.stream !== view.stream || view.stream === null) {
    return { stream: body.stream ?? null, offset, ownOffsets: [], messagesLost: false };
  }
  if (body.recovered === false || view.messagesLost) {
    const skipTo = view.offset === null ? offset : offset === null ? view.offset : Math.max(view.offset, offset);
    return settle(view.stream, skipTo, view.ownOffsets);
  }
  return keep;
}

/**
 * The position once `offset` is applied: own offsets just above it count as applied too.
 * @param {string | null} stream
 * @param {number | null} offset
 * @param {ReadonlyArray<number>} own
 * @returns {Pick<View, "stream" | "offset" | "ownOffsets" | "messagesLost">}
 */
function settle(stream, offset, own) {
  let at = offset;
  let rest = own.filter((o) => at === null || o > at);
  while (at !== null && rest.includes(at + 1)) {
    at += 1;
    const next = at;
    rest = rest.filter((o) => o !== next);
  }
  return { stream, offset: at, ownOffsets: rest, messagesLost: false };
}

/**
 * One's own message was published (the `published` reply's `offset` and `stream`): the server will
 * not send it back, and must not count as missing either (a resume's replay skips it).
 * @param {View} view
 * @param {{ offset?: number | null, stream?: string | null }} reply
 * @returns {View}
 */
export function notePublished(view, reply) {
  if (typeof reply.offset !== "number") return view;
  const stream = reply.stream ?? view.stream;
  if (stream !== view.stream) return { ...view, stream, offset: null, ownOffsets: [reply.offset] };
  if (view.offset !== null && reply.offset <= view.offset) return view;
  return { ...view, ...settle(stream, view.offset, [...view.ownOffsets, reply.offset]) };
}

/**
 * A message event: dropped when already applied (a resume's replay of one seen before), else
 * emitted with its `offset` and `stream`.
 * @param {View} view
 * @param {any} frame
 * @returns {Step}
 */
function applyMessage(view, frame) {
  /** @type {Effect & { type: "message" }} */
  const effect = { type: "message", from: frame.from, user: frame.user ?? null, data: frame.data };
  if (typeof frame.offset !== "number") return { view, effects: [effect] };
  effect.offset = frame.offset;
  const stream = typeof frame.stream === "string" ? frame.stream : view.stream;
  if (stream !== null) effect.stream = stream;
  if (stream === view.stream) {
    const seen = (view.offset !== null && frame.offset <= view.offset) || view.ownOffsets.includes(frame.offset);
    if (seen) return { view, effects: [] };
    return { view: { ...view, ...settle(stream, frame.offset, view.ownOffsets) }, effects: [effect] };
  }
  return { view: { ...view, ...settle(stream, frame.offset, []) }, effects: [effect] };
}

/**
 * A resume brought the session back on a new socket (an entry of the `resumed` reply): the view
 * stays, with the same `you` (the resumed connection); leadership and counts are the server's now.
 * The missed events and messages follow as ordinary frames (at versions and offsets after the
 * view's); when the server could not replay them (`recovered: false`), a `snapshot` follows, whose
 * message offset then counts as applied.
 * @param {View} view
 * @param {{ leader?: string | null, epoch?: number, counts?: Partial<Counts>, recovered?: boolean }} entry
 * @param {string} you
 * @returns {Step}
 */
export function resumeView(view, entry, you) {
  /** @type {Effect[]} */
  const effects = [];
  let { leader, epoch } = view;
  if (typeof entry.epoch === "number" && entry.epoch >= view.epoch) {
    const next = entry.leader === undefined ? leader : entry.leader;
    if (next !== leader || entry.epoch !== epoch) effects.push({ type: "leader", leader: next, epoch: entry.epoch });
    leader = next;
    epoch = entry.epoch;
  }
  const counts = entry.counts ? normalizeCounts(entry.counts) : view.counts;
  const recovered = entry.recovered !== false;
  effects.push({ type: "change" }, { type: "recovered", recovered, resumed: true });
  return {
    view: { ...view, you, leader, epoch, counts, messagesLost: view.messagesLost || !recovered },
    effects,
  };
}

/**
 * Replaces the view with a whole one (`snapshot`, the `members` reply, or the `joined` reply of a
 * re-join, which also brings a new `you`).
 * @param {View} view
 * @param {ViewBody & { you?: string }} body
 * @returns {Step}
 */
export function replaceView(view, body) {
  const you = body.you ?? view.you;
  const members = sorted(body.members ?? []);
  /** @type {Effect[]} */
  const effects = [];
  const before = new Map(view.members.map((m) => [m.connection, m]));
  const after = new Map(members.map((m) => [m.connection, m]));
  for (const m of view.members) {
    if (!after.has(m.connection)) {
      effects.push({ type: "leave", connection: m.connection, reason: "resync" });
    }
  }
  for (const m of members) {
    const old = before.get(m.connection);
    if (!old) effects.push({ type: "join", member: m });
  }
  for (const m of members) {
    const old = before.get(m.connection);
    if (old && !sameRecord(old, m)) effects.push({ type: "update", member: m });
  }
  const leader = body.leader ?? null;
  if (leader !== view.leader || body.epoch !== view.epoch) {
    effects.push({ type: "leader", leader, epoch: body.epoch });
  }
  const counts = body.counts
    ? normalizeCounts(body.counts)
    : view.presence === "full"
      ? countMembers(members)
      : view.counts;
  effects.push({ type: "change" });
  return {
    view: {
      ...view,
      ...positionAfter(view, body),
      you,
      version: body.version,
      leader,
      epoch: body.epoch,
      members,
      counts,
      ended: false,
      endedBy: null,
      resyncing: false,
      sealed: true,
      applied: [],
    },
    effects,
  };
}

/**
 * The view marks that a `members` request for a gap is under way (or no longer is, when it
 * failed: the next gap asks again).
 * @param {View} view
 * @param {boolean} resyncing
 * @returns {View}
 */
export function setResyncing(view, resyncing) {
  return { ...view, resyncing };
}

/**
 * The session ended (a `session_ended` event, or the `ended` reply to one's own `end`).
 * @param {View} view
 * @param {string | null} by
 * @returns {Step}
 */
export function endView(view, by) {
  if (view.ended) return { view, effects: [] };
  return {
    view: {
      ...view,
      ended: true,
      endedBy: by,
      leader: null,
      members: [],
      counts: { connections: 0, users: 0, reconnecting: 0 },
    },
    effects: [{ type: "ended", by }, { type: "change" }],
  };
}

/** Event types that carry a `version`. */
const VERSIONED = new Set(["member_joined", "member_left", "member_updated", "leader_changed"]);

/**
 * The key of an event within its atomic change, to tell a repeat from another part.
 * @param {any} frame
 */
function partKey(frame) {
  const connection = frame.member?.connection ?? frame.connection ?? "";
  return `${frame.type}:${connection}`;
}

/**
 * Applies one frame the server sent about this session.
 * @param {View} view
 * @param {any} frame  a parsed server frame whose `session` is this view's
 * @returns {Step}
 */
export function applyFrame(view, frame) {
  /** @type {Step} */
  const unchanged = { view, effects: [] };
  if (view.ended) return unchanged;
  switch (frame.type) {
    case "message":
      return applyMessage(view, frame);
    case "session_ended":
      return endView(view, frame.by ?? null);
    case "snapshot":
    case "members":
      return replaceView(view, frame);
    case "counts":
      return applyCounts(view, frame);
    default:
      if (VERSIONED.has(frame.type) && typeof frame.version === "number") {
        return applyVersioned(view, frame);
      }
      return unchanged;
  }
}

/**
 * @param {View} view
 * @param {any} frame
 * @returns {Step}
 */
function applyCounts(view, frame) {
  if (typeof frame.version === "number" && frame.version < view.version) return { view, effects: [] };
  if (!frame.counts) return { view, effects: [] };
  const counts = normalizeCounts(frame.counts);
  const version = typeof frame.version === "number" ? Math.max(view.version, frame.version) : view.version;
  // A counts event at a later version says nothing about which parts of that version were seen.
  const moved = version !== view.version;
  return {
    view: {
      ...view,
      counts,
      version,
      sealed: moved ? false : view.sealed,
      applied: moved ? [] : view.applied,
    },
    effects: [{ type: "counts", counts }, { type: "change" }],
  };
}

/**
 * @param {View} view
 * @param {any} frame
 * @returns {Step}
 */
function applyVersioned(view, frame) {
  const v = frame.version;
  const key = partKey(frame);
  /** @type {Step} */
  const ignored = { view, effects: [] };
  if (v < view.version) return ignored;
  if (v === view.version) {
    if (view.sealed || view.applied.includes(key)) return ignored;
    return applyEvent({ ...view, applied: [...view.applied, key] }, frame);
  }
  if (v === view.version + 1 || view.presence === "counts") {
    return applyEvent({ ...view, version: v, sealed: false, applied: [key] }, frame);
  }
  // A gap: ask for the whole list once, ignore version events until it comes.
  if (view.resyncing) return ignored;
  return { view: { ...view, resyncing: true }, effects: [{ type: "resync" }] };
}

/**
 * The change one versioned event makes (its version already checked and recorded in `view`).
 * @param {View} view
 * @param {any} frame
 * @returns {Step}
 */
function applyEvent(view, frame) {
  /** @type {Effect[]} */
  const effects = [];
  let members = view.members;
  let { leader, epoch } = view;
  switch (frame.type) {
    case "member_joined": {
      const member = normalizeMember(frame.member);
      const existed = members.some((m) => m.connection === member.connection);
      members = sorted([...members.filter((m) => m.connection !== member.connection), member]);
      effects.push(existed ? { type: "update", member } : { type: "join", member });
      break;
    }
    case "member_left": {
      const connection = /** @type {string} */ (frame.connection);
      if (members.some((m) => m.connection === connection)) {
        members = members.filter((m) => m.connection !== connection);
        effects.push({ type: "leave", connection, reason: frame.reason ?? "left" });
      }
      break;
    }
    case "member_updated": {
      const member = normalizeMember(frame.member);
      if (members.some((m) => m.connection === member.connection)) {
        members = members.map((m) => (m.connection === member.connection ? member : m));
        effects.push({ type: "update", member });
      }
      break;
    }
    case "leader_changed": {
      // Not newer than the view's leadership (replayed after a resume that moved the view on).
      const stale = frame.epoch < view.epoch || (frame.epoch === view.epoch && (frame.leader ?? null) === leader);
      if (typeof frame.epoch === "number" && stale) return { view, effects: [] };
      leader = frame.leader ?? null;
      epoch = typeof frame.epoch === "number" ? frame.epoch : epoch;
      if (view.presence === "counts") members = ownAndLeader(members, view.you, leader);
      effects.push({ type: "leader", leader, epoch });
      break;
    }
    default:
      break;
  }
  const counts = view.presence === "full" ? countMembers(members) : view.counts;
  effects.push({ type: "change" });
  return { view: { ...view, members, leader, epoch, counts }, effects };
}
