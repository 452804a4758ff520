// @ts-check
/**
 * The `Session` class: one joined session as the app sees it. It exists so that what a session
 * *is* (its view, followed from the server's versions by the pure functions of `view.js`, and the
 * events those steps emit) lives apart from how frames travel: the client (`client.js`) hands it
 * its `joined` replies and the frames about it, and sends its requests.
 */

import { Emitter } from "./emitter.js";
import { RollcallError } from "./errors.js";
import { applyFrame, createView, endView, notePublished, replaceView, resumeView } from "./view.js";

/** @typedef {import("./view.js").Member} Member */
/** @typedef {import("./view.js").Counts} Counts */
/** @typedef {import("./view.js").PresenceMode} PresenceMode */
/** @typedef {import("./view.js").View} View */
/** @typedef {import("./view.js").MemberState} MemberState */

/**
 * @typedef {object} JoinOptions
 * @property {string | null} [name]  display name, 1–64 characters (default: the token's, or one
 *   the server picks)
 * @property {string | null} [avatar]  http(s) URL
 * @property {PresenceMode} [presence]  "full" (default) or "counts"
 */

/**
 * @typedef {object} Message
 * @property {string | null} from  the sender's connection id (null: the application's server)
 * @property {string | null} user  the sender's user id
 * @property {unknown} data
 * @property {number} [offset]  extension: the message's place in its session's stream (servers
 *   with message history)
 * @property {string} [stream]  extension: the id of that stream
 */

/**
 * A message kept in the session's history (the `history` reply).
 * @typedef {object} HistoryMessage
 * @property {number} offset
 * @property {string | null} from  the sender's connection id (null: the application's server)
 * @property {string | null} user
 * @property {unknown} data
 * @property {number} at  ms since the Unix epoch
 */

/**
 * @typedef {object} Recovered
 * @property {boolean} recovered  true when nothing was missed: every event and message of the
 *   disconnection came after it (false: the view was replaced, and messages may be lost)
 * @property {boolean} resumed  true when the same member came back (same `you`, no leave and no
 *   join seen by the others); false when the session was joined again as a new member
 */

/**
 * @typedef {object} SessionEvents
 * @property {(session: Session) => void} change
 * @property {(member: Member) => void} join
 * @property {(connection: string, reason: string) => void} leave
 * @property {(member: Member) => void} update
 * @property {(leader: string | null, epoch: number) => void} leader
 * @property {(message: Message) => void} message
 * @property {(info: { by: string | null }) => void} ended
 * @property {(counts: Counts) => void} counts  extension: after a `counts` event (presence "counts")
 * @property {(info: Recovered) => void} recovered  after each reconnect, once the session is back
 */

/**
 * A session this client has joined. Its fields read the current view; they change as events come.
 */
export class Session {
  /**
   * Sessions come from `client.join()`; this constructor is the client's.
   * @internal
   * @param {import("./client.js").RollcallClient} client
   * @param {string} id
   * @param {JoinOptions} options
   */
  constructor(client, id, options) {
    /** @private */
    this._client = client;
    /** @readonly */
    this.id = id;
    /** @internal @type {{ name: string | null | undefined, avatar: string | null | undefined, presence: PresenceMode }} */
    this._profile = {
      name: options.name,
      avatar: options.avatar,
      presence: options.presence ?? "full",
    };
    /** @internal @type {View | null} */
    this._view = null;
    /**
     * Extension: "joining" until the first `joined`, then "joined"; "left" after `leave()` (or a
     * re-join the server refused for good), "ended" once the session ended.
     * @type {"joining" | "joined" | "left" | "ended"}
     */
    this.state = "joining";
    /** @internal @type {Emitter<SessionEvents>} */
    this._events = new Emitter();
    /** @internal @type {number} consecutive transient re-join failures */
    this._rejoinFailures = 0;
    /** @internal @type {ReturnType<typeof setTimeout> | undefined} */
    this._rejoinTimer = undefined;
    /** @internal @type {Promise<Session> | null} */
    this._joining = null;
  }

  /** @internal @returns {View} */
  get _v() {
    if (!this._view) throw new RollcallError("not_member", `session ${this.id} is not joined yet`);
    return this._view;
  }

  /** Own connection id in this session. */
  get you() {
    return this._v.you;
  }
  get version() {
    return this._v.version;
  }
  /** @returns {string | null} */
  get leader() {
    return this._v.leader;
  }
  get epoch() {
    return this._v.epoch;
  }
  /** @returns {ReadonlyArray<Member>} ordered by `joined_at` */
  get members() {
    return this._v.members;
  }
  /** @returns {Counts} */
  get counts() {
    return this._v.counts;
  }
  get isLeader() {
    return this._view != null && this._view.leader != null && this._view.leader === this._view.you;
  }
  /** Extension: the presence mode this session was joined with. */
  get presence() {
    return this._profile.presence;
  }
  /** Extension: the id of the session's message stream, when the server keeps history. */
  get stream() {
    return this._view?.stream ?? null;
  }
  /** Extension: the offset of the last message applied (or published here), null if none. */
  get offset() {
    return this._view?.offset ?? null;
  }

  /**
   * @template {keyof SessionEvents} K
   * @param {K} event
   * @param {SessionEvents[K]} listener
   * @returns {() => void} removes the listener
   */
  on(event, listener) {
    return this._events.on(event, listener);
  }

  /**
   * Sends `data` (any JSON value) to the other members.
   * @param {unknown} data
   * @returns {Promise<void>}
   */
  async publish(data) {
    this._mustBeIn();
    const reply = await this._client._request({ type: "publish", session: this.id, data });
    if (this._view) this._view = notePublished(this._view, reply);
  }

  /**
   * The messages the server still keeps for this session, oldest first: those after offset
   * `since` (exclusive; all kept ones without it), at most `limit` (the server's default and
   * maximum is 100).
   * @param {{ since?: number | null, limit?: number }} [options]
   * @returns {Promise<HistoryMessage[]>}
   */
  async history(options = {}) {
    this._mustBeIn();
    /** @type {Record<string, unknown>} */
    const frame = { type: "history", session: this.id };
    if (options.since != null) frame.since = options.since;
    if (options.limit != null) frame.limit = options.limit;
    const reply = await this._client._request(frame);
    return Array.isArray(reply.messages) ? reply.messages : [];
  }

  /**
   * Leaves the session. Nothing more is emitted for it, and it is not re-joined.
   * @returns {Promise<void>}
   */
  async leave() {
    if (this.state === "left" || this.state === "ended") return;
    this.state = "left";
    this._client._forget(this);
    if (this._client.state !== "connected") return; // the connection that held it is gone
    try {
      await this._client._request({ type: "leave", session: this.id }, { queue: false });
    } catch (err) {
      if (err instanceof RollcallError && (err.code === "not_member" || err.code === "disconnected")) return;
      throw err;
    }
  }

  /**
   * Ends the session for everyone (leader only), fenced with the current epoch.
   * @returns {Promise<void>}
   */
  async end() {
    this._mustBeIn();
    const epoch = this._v.epoch;
    await this._client._request({ type: "end", session: this.id, epoch });
    if (this._view) this._run(endView(this._view, this._view.you));
  }

  /** @internal */
  _mustBeIn() {
    if (this.state === "left" || this.state === "ended") {
      throw new RollcallError("not_member", `session ${this.id} was ${this.state}`);
    }
  }

  /**
   * @internal
   * The `join` frame that (re-)joins this session with the same profile and presence mode; a
   * re-join asks for the messages after the last one applied (`since`), when the stream is known.
   */
  _joinFrame() {
    /** @type {Record<string, unknown>} */
    const frame = { type: "join", session: this.id };
    if (this._profile.name != null) frame.name = this._profile.name;
    if (this._profile.avatar != null) frame.avatar = this._profile.avatar;
    if (this._profile.presence !== "full") frame.presence = this._profile.presence;
    if (this._view?.stream != null) frame.since = { stream: this._view.stream, offset: this._position() };
    return frame;
  }

  /**
   * @internal
   * The `resume` request's entry for this session: the last version and message offset applied.
   */
  _resumeEntry() {
    return { session: this.id, version: this._v.version, offset: this._position() };
  }

  /**
   * The last message offset applied, for a request that asks for what follows it: its answer says
   * afresh whether messages were lost.
   * @private
   */
  _position() {
    const view = this._v;
    this._view = { ...view, messagesLost: false };
    return view.offset;
  }

  /**
   * @internal
   * A `joined` reply: the first one creates the view, a re-join's replaces it and says whether the
   * messages meanwhile came (`recovered`; only a re-join that sent `since` can say so).
   * @param {any} joined
   * @param {Record<string, unknown>} [frame]  the re-join's `join` frame (none for the first join)
   */
  _onJoined(joined, frame) {
    if (this.state === "left" || this.state === "ended") return;
    this._rejoinFailures = 0;
    if (!this._view) {
      this._view = createView(joined, this._profile.presence);
      this.state = "joined";
      return;
    }
    this.state = "joined";
    this._run(replaceView(this._view, joined));
    if (frame && this.state === "joined") {
      const recovered = frame.since !== undefined && joined.recovered !== false;
      this._events.emit("recovered", { recovered, resumed: false });
    }
  }

  /**
   * @internal
   * This session's entry of a `resumed` reply: the same member is back on a new socket.
   * @param {any} entry
   * @param {string} you  the resumed connection
   */
  _onResumed(entry, you) {
    if (!this._view || this.state !== "joined") return;
    this._rejoinFailures = 0;
    this._run(resumeView(this._view, entry, you));
  }

  /**
   * @internal
   * A frame about this session (an event, or the `members` reply to a gap).
   * @param {any} frame
   */
  _onFrame(frame) {
    if (!this._view || this.state !== "joined") return;
    this._run(applyFrame(this._view, frame));
  }

  /**
   * @internal
   * Takes a step of the view: stores the new view, then emits its effects in order.
   * @param {import("./view.js").Step} step
   */
  _run(step) {
    this._view = step.view;
    for (const effect of step.effects) {
      switch (effect.type) {
        case "join":
          this._events.emit("join", effect.member);
          break;
        case "leave":
          this._events.emit("leave", effect.connection, effect.reason);
          break;
        case "update":
          this._events.emit("update", effect.member);
          break;
        case "leader":
          this._events.emit("leader", effect.leader, effect.epoch);
          break;
        case "counts":
          this._events.emit("counts", effect.counts);
          break;
        case "message": {
          /** @type {Message} */
          const message = { from: effect.from, user: effect.user, data: effect.data };
          if (effect.offset !== undefined) message.offset = effect.offset;
          if (effect.stream !== undefined) message.stream = effect.stream;
          this._events.emit("message", message);
          break;
        }
        case "recovered":
          this._events.emit("recovered", { recovered: effect.recovered, resumed: effect.resumed });
          break;
        case "ended":
          this.state = "ended";
          this._client._forget(this);
          this._events.emit("ended", { by: effect.by });
          break;
        case "resync":
          this._client._resync(this);
          break;
        case "change":
          this._events.emit("change", this);
          break;
      }
    }
  }
}
