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
 */

/**
 * @typedef {object} Member
 * @property {string} connection
 * @property {string | null} user
 * @property {string} name
 * @property {string | null} avatar
 * @property {number} joined_at  ms since the Unix epoch
 * @property {string} [instance]  the server instance holding the connection (server extension)
 */

/**
 * @typedef {object} Counts
 * @property {number} connections
 * @property {number} users  distinct user ids plus anonymous connections
 */

/** @typedef {"full" | "counts"} PresenceMode */

/**
 * A whole view as `joined`, `members` and `snapshot` carry it.
 * @typedef {object} ViewBody
 * @property {number} version
 * @property {string | null} leader
 * @property {number} epoch
 * @property {Member[]} members
 * @property {Counts} [counts]
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
 */

/**
 * @typedef {{ type: "join", member: Member }
 *   | { type: "leave", connection: string, reason: string }
 *   | { type: "update", member: Member }
 *   | { type: "leader", leader: string | null, epoch: number }
 *   | { type: "counts", counts: Counts }
 *   | { type: "message", from: string, user: string | null, data: unknown }
 *   | { type: "ended", by: string | null }
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
  for (const m of members) {
    if (m.user == null) anonymous += 1;
    else users.add(m.user);
  }
  return { connections: members.length, users: users.size + anonymous };
}

/**
 * @param {ReadonlyArray<Member>} members
 * @returns {Member[]}
 */
function sorted(members) {
  return [...members].sort(byJoinOrder);
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
  return a.name === b.name && a.avatar === b.avatar && a.user === b.user;
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
    counts: joined.counts ?? countMembers(members),
    ended: false,
    endedBy: null,
    resyncing: false,
    sealed: true,
    applied: [],
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
  const counts = body.counts ?? (view.presence === "full" ? countMembers(members) : view.counts);
  effects.push({ type: "change" });
  return {
    view: {
      ...view,
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
      counts: { connections: 0, users: 0 },
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
      return {
        view,
        effects: [{ type: "message", from: frame.from, user: frame.user ?? null, data: frame.data }],
      };
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
  const counts = frame.counts;
  if (!counts) return { view, effects: [] };
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
      const member = /** @type {Member} */ (frame.member);
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
      const member = /** @type {Member} */ (frame.member);
      if (members.some((m) => m.connection === member.connection)) {
        members = members.map((m) => (m.connection === member.connection ? member : m));
        effects.push({ type: "update", member });
      }
      break;
    }
    case "leader_changed": {
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
