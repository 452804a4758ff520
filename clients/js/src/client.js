// @ts-check
/**
 * `RollcallClient`, the public facade: it wires one `Transport` (the connection: reconnects,
 * backoff, dead-server detection, token; `transport.js`), one `Requests` (ids, replies, timeouts,
 * requests waiting for a connection; `request.js`) and the joined `Session`s (each one's view and
 * events; `session.js`). What happens between them lives here: after a reconnect's `welcome` the
 * client resumes its connection (`resume`), re-joins the sessions the resume did not bring back,
 * and only then sends the queued requests; a frame is a reply or goes to its session, a gap asks
 * for `members`, and `close()` (or a refused or replaced connection) rejects everything waiting.
 */

import { Emitter } from "./emitter.js";
import { RollcallError } from "./errors.js";
import { Requests } from "./request.js";
import { Session } from "./session.js";
import { Transport } from "./transport.js";
import { endView, setResyncing } from "./view.js";

export { Session };

// Every type this module declared before transport.js, request.js and session.js split from it,
// still exported from here under its name (dist/client.d.ts).
/** @typedef {import("./view.js").Member} Member */
/** @typedef {import("./view.js").Counts} Counts */
/** @typedef {import("./view.js").PresenceMode} PresenceMode */
/** @typedef {import("./view.js").View} View */
/** @typedef {import("./view.js").Effect} Effect */
/** @typedef {import("./transport.js").ClientOptions} ClientOptions */
/** @typedef {import("./transport.js").ClientState} ClientState */
/** @typedef {import("./transport.js").TokenSource} TokenSource */
/** @typedef {import("./transport.js").SocketLike} SocketLike */
/** @typedef {import("./transport.js").WebSocketConstructor} WebSocketConstructor */
/** @typedef {import("./transport.js").Attempt} Attempt */
/** @typedef {import("./session.js").JoinOptions} JoinOptions */
/** @typedef {import("./session.js").Message} Message */
/** @typedef {import("./session.js").SessionEvents} SessionEvents */
/** @typedef {import("./session.js").HistoryMessage} HistoryMessage */
/** @typedef {import("./session.js").Recovered} Recovered */
/** @typedef {import("./view.js").MemberState} MemberState */
/** @typedef {import("./request.js").Pending} Pending */
/** @typedef {import("./request.js").Queued} Queued */
/** @typedef {import("./request.js").Handlers} Handlers */

/**
 * @typedef {object} ClientEvents
 * @property {(state: ClientState) => void} state
 * @property {(error: RollcallError) => void} error
 */

/** Error codes of a re-join that may succeed if tried again later. */
const TRANSIENT = new Set(["unavailable", "internal", "rate_limited", "timeout"]);

const ignore = () => {};

/**
 * The rollcall client: one connection to one of the servers in `url`, kept alive and re-made as
 * needed, carrying every joined session.
 */
export class RollcallClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    /** This connection's id from `welcome` (null until connected). @type {string | null} */
    this.connectionId = null;
    /** The user id from `welcome`, or null (anonymous). @type {string | null} */
    this.user = null;
    /** Extension: the server instance of this connection, from `welcome`. @type {string | null} */
    this.instance = null;
    /** Extension: the URL (without token) of the current or last connection. @type {string | null} */
    this.url = null;

    /** @private @type {Emitter<ClientEvents>} */
    this._events = new Emitter();
    /** @private @type {Transport} */
    this._transport = new Transport(options, {
      state: (state) => this._events.emit("state", state),
      error: (err) => this._emitError(err),
      attempt: (url) => {
        this.url = url;
      },
      welcome: (welcome) => {
        this.user = welcome.user ?? null;
        this.instance = welcome.instance ?? null;
        const fresh = {
          connection: welcome.connection ?? null,
          token: typeof welcome.resume_token === "string" ? welcome.resume_token : null,
        };
        // A reconnect resumes the last connection: its id stays unless the resume fails.
        if (this._resumeToken !== null) this._fresh = fresh;
        else {
          this.connectionId = fresh.connection;
          this._resumeToken = fresh.token;
        }
      },
      connected: () => this._onConnected(),
      frame: (frame) => this._dispatch(frame),
      lost: (code) => this._requests.disconnected(code),
      refused: (reason) => this._shutdown(reason),
      nextId: () => this._requests.nextId(),
    });
    /** @private @type {Requests} */
    this._requests = new Requests(this._transport.timeoutMs);

    /** @private @type {Map<string, Session>} */
    this._sessions = new Map();
    /** @private @type {{ resolve: () => void, reject: (e: RollcallError) => void }[]} */
    this._readyWaiters = [];
    /** @private @type {RollcallError | null} */
    this._closedBy = null;
    /** @private the token that resumes this connection (last `welcome` or `resumed`) @type {string | null} */
    this._resumeToken = null;
    /** @private a reconnect's own connection, taken if the resume fails @type {{ connection: string | null, token: string | null } | null} */
    this._fresh = null;
    /** @private a `resume` is under way: requests wait until it is answered */
    this._resuming = false;

    this._transport.connect();
  }

  /** @returns {ClientState} */
  get state() {
    return this._transport.state;
  }

  /**
   * @template {keyof ClientEvents} K
   * @param {K} event
   * @param {ClientEvents[K]} listener
   * @returns {() => void} removes the listener
   */
  on(event, listener) {
    return this._events.on(event, listener);
  }

  /**
   * Resolves once connected (at once if connected now); rejects if the client is or gets closed.
   * @returns {Promise<void>}
   */
  ready() {
    if (this.state === "connected") return Promise.resolve();
    if (this._isClosed()) return Promise.reject(this._closedError());
    return new Promise((resolve, reject) => this._readyWaiters.push({ resolve, reject }));
  }

  /**
   * Joins a session (or returns the one already joined under that id).
   * @param {string} sessionId
   * @param {JoinOptions} [options]
   * @returns {Promise<Session>}
   */
  join(sessionId, options = {}) {
    if (this._isClosed()) return Promise.reject(this._closedError());
    const existing = this._sessions.get(sessionId);
    if (existing && existing._joining) return existing._joining;
    const session = new Session(this, sessionId, options);
    this._sessions.set(sessionId, session);
    /** @type {Promise<Session>} */
    const joining = new Promise((resolve, reject) => {
      this._enqueue(session._joinFrame(), {
        onReply: (reply) => {
          session._onJoined(reply);
          resolve(session);
        },
        onError: (err) => {
          this._forget(session);
          session.state = "left";
          reject(err);
        },
      });
    });
    session._joining = joining;
    return joining;
  }

  /**
   * Changes the display name and/or avatar in every joined session (`avatar: null` clears it).
   * Re-joins after a reconnect use the new profile.
   * @param {{ name?: string, avatar?: string | null }} profile
   * @returns {Promise<void>}
   */
  async setProfile(profile) {
    /** @type {Record<string, unknown>} */
    const frame = { type: "profile" };
    if (profile.name !== undefined) frame.name = profile.name;
    if (profile.avatar !== undefined) frame.avatar = profile.avatar;
    await this._request(frame);
    for (const session of this._sessions.values()) {
      if (profile.name !== undefined) session._profile.name = profile.name;
      if (profile.avatar !== undefined) session._profile.avatar = profile.avatar;
    }
  }

  /** Closes the connection for good: state `closed`, no reconnect, pending requests reject. */
  close() {
    this._shutdown(null);
  }

  // ---- requests ------------------------------------------------------------------------------

  /**
   * @internal
   * Sends a request and resolves with its reply (rejects with the `error` reply as RollcallError).
   * While not connected, the request waits for the next connection, at most `requestTimeoutMs`
   * (`queue: false` rejects with `disconnected` instead); once sent, the reply has
   * `requestTimeoutMs` to come.
   * @param {Record<string, unknown>} frame
   * @param {{ queue?: boolean }} [options]
   * @returns {Promise<any>}
   */
  _request(frame, options = {}) {
    if (this._isClosed()) return Promise.reject(this._closedError());
    if (options.queue === false && this.state !== "connected") {
      return Promise.reject(new RollcallError("disconnected", "not connected"));
    }
    return new Promise((resolve, reject) => {
      this._enqueue(frame, { onReply: resolve, onError: reject });
    });
  }

  /**
   * Sends the request now if connected, else queues it for the next connection.
   * @private
   * @param {Record<string, unknown>} frame
   * @param {Handlers} handlers
   */
  _enqueue(frame, handlers) {
    if (this.state === "connected" && !this._resuming) this._send(frame, handlers);
    else this._requests.queue(frame, handlers);
  }

  /**
   * Sends a frame with a fresh id on the current connection and waits for its reply.
   * @private
   * @param {Record<string, unknown>} frame
   * @param {Handlers} handlers
   */
  _send(frame, handlers) {
    if (!this._transport.welcomed) {
      handlers.onError(new RollcallError("disconnected", "not connected"));
      return;
    }
    this._requests.send((data) => this._transport.send(data), frame, handlers);
  }

  /**
   * A frame after `welcome`: the reply to a request, an error without a request, or a frame about
   * one session.
   * @private
   * @param {any} frame
   */
  _dispatch(frame) {
    if (this._requests.settle(frame)) return;
    if (frame.type === "error") {
      this._emitError(new RollcallError(String(frame.code), String(frame.message ?? "")));
      return;
    }
    if (frame.type === "token_expiring") {
      this._refreshToken();
      return;
    }
    if (typeof frame.session === "string") {
      this._sessions.get(frame.session)?._onFrame(frame);
    }
  }

  /**
   * The connection is up (state `connected`): resume (after a reconnect) or re-join, send what
   * waited, resolve `ready()`.
   * @private
   */
  _onConnected() {
    const joined = [...this._sessions.values()].filter((s) => s._view && s.state === "joined");
    const fresh = this._fresh;
    this._fresh = null;
    if (fresh && this._resumeToken !== null) this._resume(joined, fresh);
    else this._restore(joined);
  }

  /**
   * Sends `resume` (the first request on the new socket) and waits for its answer before anything
   * else: `resumed` brings the member back in the sessions it lists (the missed events and
   * messages follow it); any error (`resume_failed`, `forbidden`, …) falls back to re-joining.
   * @private
   * @param {Session[]} joined
   * @param {{ connection: string | null, token: string | null }} fresh  the new socket's own identity
   */
  _resume(joined, fresh) {
    this._resuming = true;
    const sessions = joined.map((s) => s._resumeEntry());
    this._send(
      { type: "resume", token: this._resumeToken, sessions },
      {
        onReply: (reply) => {
          this.connectionId = typeof reply.connection === "string" ? reply.connection : this.connectionId;
          if (typeof reply.resume_token === "string") this._resumeToken = reply.resume_token;
          const you = /** @type {string} */ (this.connectionId);
          /** @type {Set<Session>} */
          const back = new Set();
          for (const entry of Array.isArray(reply.sessions) ? reply.sessions : []) {
            const session = this._sessions.get(entry?.session);
            if (session && joined.includes(session)) {
              back.add(session);
              session._onResumed(entry, you);
            } else if (!session && typeof entry?.session === "string") {
              // Left while disconnected (`leave()` only forgot it): leave it now.
              this._send({ type: "leave", session: entry.session }, { onReply: ignore, onError: ignore });
            }
          }
          this._restore(joined.filter((s) => !back.has(s)));
        },
        onError: (err) => {
          if (err.code === "disconnected" || this._isClosed()) {
            this._resuming = false; // the next `welcome` resumes again, with the same token
            return;
          }
          this.connectionId = fresh.connection;
          this._resumeToken = fresh.token;
          this._restore(joined);
        },
      },
    );
  }

  /**
   * Re-joins `sessions`, then sends what waited and resolves `ready()`. Re-joins first: requests
   * on one connection are answered in order, so the queued requests (a publish, say) reach the
   * server after their session is joined again.
   * @private
   * @param {Session[]} sessions
   */
  _restore(sessions) {
    for (const session of sessions) {
      if (this._sessions.get(session.id) === session && session._view && session.state === "joined") {
        this._rejoin(session);
      }
    }
    this._resuming = false;
    for (const queued of this._requests.takeQueued()) this._send(queued.frame, queued);
    for (const waiter of this._readyWaiters.splice(0)) waiter.resolve();
  }

  /**
   * `token_expiring`: with a token function, fetch a fresh token and hand it over (`refresh`);
   * without one the server closes with 4003 when the token expires.
   * @private
   */
  async _refreshToken() {
    /** @type {string | null} */
    let token;
    try {
      token = await this._transport.refreshToken();
    } catch (err) {
      this._emitError(new RollcallError("token_error", `the token function failed: ${String(err)}`));
      return;
    }
    if (token === null || this.state !== "connected") return;
    try {
      await this._request({ type: "refresh", token }, { queue: false });
    } catch (err) {
      const code = err instanceof RollcallError ? err.code : "internal";
      if (code === "disconnected" || code === "closed") return;
      this._emitError(new RollcallError(code, `refreshing the token failed: ${String(err)}`));
    }
  }

  // ---- sessions -----------------------------------------------------------------------------

  /**
   * @internal
   * @param {Session} session
   */
  _forget(session) {
    if (this._sessions.get(session.id) === session) this._sessions.delete(session.id);
    clearTimeout(session._rejoinTimer);
  }

  /**
   * @internal
   * A gap in a session's versions: ask for the whole list; its reply replaces the view.
   * @param {Session} session
   */
  _resync(session) {
    if (this.state !== "connected") {
      // The re-join after the reconnect replaces the view anyway.
      if (session._view) session._view = setResyncing(session._view, false);
      return;
    }
    this._send(
      { type: "members", session: session.id },
      {
        onReply: (reply) => session._onFrame(reply),
        onError: () => {
          if (session._view) session._view = setResyncing(session._view, false);
        },
      },
    );
  }

  /**
   * Re-joins one session on the current connection, with the same profile and presence mode.
   * @private
   * @param {Session} session
   */
  _rejoin(session) {
    clearTimeout(session._rejoinTimer);
    const frame = session._joinFrame();
    this._send(frame, {
      onReply: (reply) => session._onJoined(reply, frame),
      onError: (err) => {
        if (this._sessions.get(session.id) !== session) return;
        if (err.code === "disconnected") return; // the next `welcome` re-joins it
        if (err.code === "session_ended") {
          if (session._view) session._run(endView(session._view, null));
          return;
        }
        if (TRANSIENT.has(err.code)) {
          session._rejoinFailures += 1;
          const delay = this._transport.retryDelay(session._rejoinFailures);
          session._rejoinTimer = setTimeout(() => {
            if (this.state === "connected" && this._sessions.get(session.id) === session) {
              this._rejoin(session);
            }
          }, delay);
          this._emitError(
            new RollcallError(err.code, `re-joining ${session.id} failed (${err.message}); retrying`, {
              session: session.id,
            }),
          );
          return;
        }
        // Refused for good (forbidden, session_full, too_many_sessions, …).
        this._forget(session);
        session.state = "left";
        this._emitError(
          new RollcallError(err.code, `could not re-join ${session.id}: ${err.message}`, {
            session: session.id,
          }),
        );
      },
    });
  }

  // ---- the client's life --------------------------------------------------------------------

  /**
   * @private
   * @param {RollcallError} err
   */
  _emitError(err) {
    this._events.emit("error", err);
  }

  /**
   * (A method, not a comparison in place: state changes across the awaits of one function.)
   * @private
   */
  _isClosed() {
    return this.state === "closed";
  }

  /** @private */
  _closedError() {
    return this._closedBy ?? new RollcallError("closed", "the client is closed");
  }

  /**
   * State `closed`: nothing reconnects; everything waiting rejects with `reason` (or `closed`).
   * @private
   * @param {RollcallError | null} reason
   */
  _shutdown(reason) {
    if (this._isClosed()) return;
    this._closedBy = reason;
    const error = this._closedError();
    for (const session of this._sessions.values()) {
      clearTimeout(session._rejoinTimer);
      session.state = "left";
    }
    this._sessions.clear();
    this._transport.close();
    this._requests.rejectAll(error);
    for (const waiter of this._readyWaiters.splice(0)) waiter.reject(error);
    if (reason) this._emitError(reason);
  }
}
