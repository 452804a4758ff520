// @ts-check
/**
 * The transport: one WebSocket at a time, requests and replies, reconnects with full-jitter
 * backoff, re-joins, dead-server detection and the token. Each joined session is a `Session`
 * (`session.js`), whose view the pure functions of `view.js` keep; this module feeds it frames.
 */

import { reconnectDelay } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { RollcallError } from "./errors.js";
import { Session } from "./session.js";
import { endView, setResyncing } from "./view.js";

export { Session };

/** @typedef {import("./view.js").Member} Member */
/** @typedef {import("./view.js").Counts} Counts */
/** @typedef {import("./view.js").PresenceMode} PresenceMode */
/** @typedef {import("./view.js").View} View */
/** @typedef {import("./view.js").Effect} Effect */
/** @typedef {import("./session.js").JoinOptions} JoinOptions */
/** @typedef {import("./session.js").Message} Message */
/** @typedef {import("./session.js").SessionEvents} SessionEvents */

/** @typedef {"connecting" | "connected" | "disconnected" | "closed"} ClientState */

/**
 * A token, or a function returning one (or a Promise of one). The function is called for the first
 * connection and again, once, when the server refuses a connection (HTTP 401 or 403); the token it
 * returned is reused for the reconnects in between.
 * @typedef {string | (() => string | Promise<string>)} TokenSource
 */

/**
 * The part of the WebSocket API the client uses: the browser's, which the `ws` package also has.
 * @typedef {object} SocketLike
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {((ev: any) => void) | null} onopen
 * @property {((ev: any) => void) | null} onmessage
 * @property {((ev: any) => void) | null} onerror
 * @property {((ev: any) => void) | null} onclose
 * @property {() => void} [terminate]  `ws` only: drop the socket without a closing handshake
 */

/** @typedef {new (url: string) => SocketLike} WebSocketConstructor */

/**
 * @typedef {object} ClientOptions
 * @property {string | string[]} url  WebSocket URL, or a list tried in turn on every reconnect
 * @property {TokenSource} [token]  sent as the `token` query parameter (browsers cannot set headers)
 * @property {WebSocketConstructor | typeof WebSocket} [WebSocket]  for runtimes without a global one
 * @property {number} [minReconnectDelayMs]  default 500
 * @property {number} [maxReconnectDelayMs]  default 20000
 * @property {number} [requestTimeoutMs]  default 5000; also bounds the wait for `welcome`
 * @property {() => number} [random]  extension: the source of backoff jitter (default Math.random)
 */


/**
 * @typedef {object} ClientEvents
 * @property {(state: ClientState) => void} state
 * @property {(error: RollcallError) => void} error
 */


/**
 * @typedef {object} Pending
 * @property {(reply: any) => void} onReply
 * @property {(error: RollcallError) => void} onError
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 */

/**
 * @typedef {object} Queued
 * @property {Record<string, unknown>} frame  without its `id`
 * @property {(reply: any) => void} onReply
 * @property {(error: RollcallError) => void} onError
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 */

/**
 * @typedef {object} Attempt
 * @property {SocketLike} socket
 * @property {string} url  without the token
 * @property {string | undefined} token
 * @property {boolean} opened
 * @property {boolean} welcomed
 * @property {string | undefined} errorText
 * @property {number} heartbeatMs
 * @property {number} lastHeard
 * @property {ReturnType<typeof setTimeout> | undefined} welcomeTimer
 * @property {ReturnType<typeof setTimeout> | undefined} silenceTimer
 * @property {ReturnType<typeof setTimeout> | undefined} deadTimer
 */

const CLOSE_RESTARTING = 1012;
/** Close code the client uses when it drops a connection it judged dead (application range). */
const CLOSE_DEAD = 4000;
/** Error codes of a re-join that may succeed if tried again later. */
const TRANSIENT = new Set(["unavailable", "internal", "rate_limited", "timeout"]);

const noop = () => {};

/**
 * @param {unknown} value
 * @param {string} name
 * @param {number} fallback
 */
function delayOption(value, name, fallback) {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new TypeError(`${name} must be a non-negative number of milliseconds`);
  }
  return value;
}

/**
 * The HTTP status a failed upgrade reported, when the WebSocket implementation tells it (the `ws`
 * package: "Unexpected server response: 401"). Browsers never do.
 * @param {string | undefined} text
 */
function statusFromErrorText(text) {
  const match = /Unexpected server response: (\d{3})/.exec(text ?? "");
  return match ? Number(match[1]) : null;
}

/**
 * @param {string} url
 * @param {string | undefined} token
 */
function withToken(url, token) {
  if (!token) return url;
  const u = new URL(url);
  u.searchParams.set("token", token);
  return u.toString();
}

/**
 * The rollcall client: one connection to one of the servers in `url`, kept alive and re-made as
 * needed, carrying every joined session.
 */
export class RollcallClient {
  /** @param {ClientOptions} options */
  constructor(options) {
    if (!options || (typeof options.url !== "string" && !Array.isArray(options.url))) {
      throw new TypeError("RollcallClient needs options.url: a WebSocket URL or a list of them");
    }
    const urls = Array.isArray(options.url) ? [...options.url] : [options.url];
    if (urls.length === 0) throw new TypeError("options.url is an empty list");
    for (const u of urls) {
      const parsed = new URL(u); // throws on a malformed URL
      if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
        throw new TypeError(`${u} is not a ws:// or wss:// URL`);
      }
    }
    const Ctor = options.WebSocket ?? /** @type {any} */ (globalThis).WebSocket;
    if (typeof Ctor !== "function") {
      throw new TypeError(
        "no WebSocket here: pass a constructor as options.WebSocket (in Node: the `ws` package)",
      );
    }
    /** @private @type {string[]} */
    this._urls = urls;
    /** @private */
    this._urlIndex = 0;
    /** @private @type {WebSocketConstructor} */
    this._WebSocket = /** @type {WebSocketConstructor} */ (Ctor);
    /** @private @type {TokenSource | undefined} */
    this._tokenSource = options.token;
    /** @private @type {string | undefined} */
    this._token = typeof options.token === "string" ? options.token : undefined;
    /** @private */
    this._minDelay = delayOption(options.minReconnectDelayMs, "minReconnectDelayMs", 500);
    /** @private */
    this._maxDelay = Math.max(
      this._minDelay,
      delayOption(options.maxReconnectDelayMs, "maxReconnectDelayMs", 20000),
    );
    /** @private */
    this._timeoutMs = delayOption(options.requestTimeoutMs, "requestTimeoutMs", 5000);
    /** @private */
    this._random = options.random ?? Math.random;

    /** @private @type {ClientState} */
    this._state = "connecting";
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
    /** @private @type {Attempt | null} */
    this._attempt = null;
    /** @private retries since the last `welcome` */
    this._retries = 0;
    /** @private the token was refreshed after a refusal, and not yet used successfully */
    this._refreshed = false;
    /** @private counts connection attempts, so that late callbacks of an old one do nothing */
    this._generation = 0;
    /** @private */
    this._nextId = 1;
    /** @private @type {Map<number, Pending>} */
    this._pending = new Map();
    /** @private @type {Queued[]} */
    this._queue = [];
    /** @private @type {Map<string, Session>} */
    this._sessions = new Map();
    /** @private @type {{ resolve: () => void, reject: (e: RollcallError) => void }[]} */
    this._readyWaiters = [];
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */
    this._reconnectTimer = undefined;
    /** @private @type {RollcallError | null} */
    this._closedBy = null;

    this._connect();
  }

  /** @returns {ClientState} */
  get state() {
    return this._state;
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
    if (this._state === "connected") return Promise.resolve();
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
    if (options.queue === false && this._state !== "connected") {
      return Promise.reject(new RollcallError("disconnected", "not connected"));
    }
    return new Promise((resolve, reject) => {
      this._enqueue(frame, { onReply: resolve, onError: reject });
    });
  }

  /**
   * @private
   * @param {Record<string, unknown>} frame
   * @param {{ onReply: (reply: any) => void, onError: (e: RollcallError) => void }} handlers
   */
  _enqueue(frame, handlers) {
    if (this._state === "connected") {
      this._send(frame, handlers);
      return;
    }
    /** @type {Queued} */
    const queued = { frame, ...handlers, timer: undefined };
    queued.timer = setTimeout(() => {
      const i = this._queue.indexOf(queued);
      if (i >= 0) this._queue.splice(i, 1);
      queued.onError(
        new RollcallError(
          "timeout",
          `no connection within ${this._timeoutMs} ms for the ${String(frame.type)} request`,
        ),
      );
    }, this._timeoutMs);
    this._queue.push(queued);
  }

  /**
   * Sends a frame with a fresh id on the current connection and waits for its reply.
   * @private
   * @param {Record<string, unknown>} frame
   * @param {{ onReply: (reply: any) => void, onError: (e: RollcallError) => void }} handlers
   */
  _send(frame, handlers) {
    const attempt = this._attempt;
    if (!attempt || !attempt.welcomed) {
      handlers.onError(new RollcallError("disconnected", "not connected"));
      return;
    }
    const id = this._nextId++;
    /** @type {Pending} */
    const pending = { ...handlers, timer: undefined };
    pending.timer = setTimeout(() => {
      if (this._pending.get(id) !== pending) return;
      this._pending.delete(id);
      pending.onError(
        new RollcallError("timeout", `no reply to ${String(frame.type)} within ${this._timeoutMs} ms`),
      );
    }, this._timeoutMs);
    this._pending.set(id, pending);
    try {
      attempt.socket.send(JSON.stringify({ ...frame, id }));
    } catch (err) {
      this._pending.delete(id);
      clearTimeout(pending.timer);
      handlers.onError(new RollcallError("disconnected", `could not send: ${String(err)}`));
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
    if (this._state !== "connected") {
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
    this._send(session._joinFrame(), {
      onReply: (reply) => session._onJoined(reply),
      onError: (err) => {
        if (this._sessions.get(session.id) !== session) return;
        if (err.code === "disconnected") return; // the next `welcome` re-joins it
        if (err.code === "session_ended") {
          if (session._view) session._run(endView(session._view, null));
          return;
        }
        if (TRANSIENT.has(err.code)) {
          session._rejoinFailures += 1;
          const delay = reconnectDelay(session._rejoinFailures, this._minDelay, this._maxDelay, this._random);
          session._rejoinTimer = setTimeout(() => {
            if (this._state === "connected" && this._sessions.get(session.id) === session) {
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

  // ---- the connection -----------------------------------------------------------------------

  /**
   * @private
   * @param {ClientState} state
   */
  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._events.emit("state", state);
  }

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
    return this._state === "closed";
  }

  /** @private */
  _closedError() {
    return this._closedBy ?? new RollcallError("closed", "the client is closed");
  }

  /**
   * Starts one connection attempt to the current URL.
   * @private
   * @param {{ refresh?: boolean }} [options]
   */
  async _connect(options = {}) {
    if (this._isClosed()) return;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    const generation = ++this._generation;
    this._setState("connecting");
    /** @type {string | undefined} */
    let token;
    try {
      token = await this._getToken(options.refresh === true);
    } catch (err) {
      if (generation !== this._generation || this._isClosed()) return;
      this._emitError(new RollcallError("token_error", `the token function failed: ${String(err)}`));
      this._setState("disconnected");
      this._scheduleReconnect();
      return;
    }
    if (generation !== this._generation || this._isClosed()) return;
    const url = this._urls[this._urlIndex % this._urls.length];
    /** @type {SocketLike} */
    let socket;
    try {
      socket = new this._WebSocket(withToken(url, token));
    } catch (err) {
      this._emitError(new RollcallError("disconnected", `could not open ${url}: ${String(err)}`));
      this._setState("disconnected");
      this._scheduleReconnect();
      return;
    }
    /** @type {Attempt} */
    const attempt = {
      socket,
      url,
      token,
      opened: false,
      welcomed: false,
      errorText: undefined,
      heartbeatMs: 0,
      lastHeard: Date.now(),
      welcomeTimer: undefined,
      silenceTimer: undefined,
      deadTimer: undefined,
    };
    this._attempt = attempt;
    this.url = url;
    // A server that accepts the TCP connection but never answers (stopped, overloaded) must not
    // hold the client: no `welcome` within requestTimeoutMs fails the attempt.
    attempt.welcomeTimer = setTimeout(() => {
      if (this._attempt !== attempt) return;
      this._drop(attempt);
      this._failedBeforeWelcome(attempt, { timedOut: true });
    }, this._timeoutMs);
    socket.onopen = () => {
      attempt.opened = true;
    };
    socket.onerror = (ev) => {
      attempt.errorText = ev?.message ?? ev?.error?.message;
    };
    socket.onmessage = (ev) => this._onMessage(attempt, ev.data);
    socket.onclose = (ev) => this._onClose(attempt, ev?.code ?? 1006);
  }

  /**
   * @private
   * @param {boolean} refresh
   * @returns {Promise<string | undefined>}
   */
  async _getToken(refresh) {
    const source = this._tokenSource;
    if (typeof source !== "function") return source;
    if (this._token !== undefined && !refresh) return this._token;
    const token = await source();
    if (typeof token !== "string" || token === "") {
      throw new TypeError("the token function returned no token");
    }
    this._token = token;
    return token;
  }

  /**
   * @private
   * @param {Attempt} attempt
   * @param {unknown} data
   */
  _onMessage(attempt, data) {
    if (this._attempt !== attempt) return;
    attempt.lastHeard = Date.now();
    if (attempt.deadTimer !== undefined) {
      clearTimeout(attempt.deadTimer);
      attempt.deadTimer = undefined;
      this._armSilence(attempt, attempt.heartbeatMs);
    }
    if (typeof data !== "string") return;
    /** @type {any} */
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (!frame || typeof frame !== "object") return;
    if (!attempt.welcomed) {
      if (frame.type === "welcome") this._onWelcome(attempt, frame);
      return;
    }
    this._dispatch(frame);
  }

  /**
   * @private
   * @param {Attempt} attempt
   * @param {any} welcome
   */
  _onWelcome(attempt, welcome) {
    clearTimeout(attempt.welcomeTimer);
    attempt.welcomed = true;
    attempt.heartbeatMs =
      typeof welcome.heartbeat_ms === "number" && welcome.heartbeat_ms > 0 ? welcome.heartbeat_ms : 5000;
    this.connectionId = welcome.connection ?? null;
    this.user = welcome.user ?? null;
    this.instance = welcome.instance ?? null;
    this._retries = 0;
    this._refreshed = false;
    this._setState("connected");
    this._armSilence(attempt, attempt.heartbeatMs);
    // Re-joins first: requests on one connection are answered in order, so the queued requests
    // below (a publish, say) reach the server after their session is joined again.
    for (const session of [...this._sessions.values()]) {
      if (session._view && session.state === "joined") this._rejoin(session);
    }
    const queue = this._queue.splice(0);
    for (const queued of queue) {
      clearTimeout(queued.timer);
      this._send(queued.frame, queued);
    }
    for (const waiter of this._readyWaiters.splice(0)) waiter.resolve();
  }

  /**
   * Browsers cannot see WebSocket pings: after `heartbeat_ms` without any frame the client sends
   * `ping`, and a connection that stays silent for `requestTimeoutMs` more is dead.
   * @private
   * @param {Attempt} attempt
   * @param {number} delay
   */
  _armSilence(attempt, delay) {
    clearTimeout(attempt.silenceTimer);
    attempt.silenceTimer = setTimeout(() => {
      if (this._attempt !== attempt) return;
      const quiet = Date.now() - attempt.lastHeard;
      if (quiet < attempt.heartbeatMs) {
        this._armSilence(attempt, attempt.heartbeatMs - quiet);
        return;
      }
      try {
        attempt.socket.send(JSON.stringify({ type: "ping", id: this._nextId++ }));
      } catch {
        // A socket that cannot send is dead; the timer below says so.
      }
      attempt.deadTimer = setTimeout(() => {
        if (this._attempt !== attempt) return;
        this._drop(attempt);
        this._lost(CLOSE_DEAD);
      }, this._timeoutMs);
    }, delay);
  }

  /**
   * @private
   * @param {any} frame
   */
  _dispatch(frame) {
    if (frame.id !== undefined && frame.id !== null) {
      const pending = this._pending.get(frame.id);
      if (pending) {
        this._pending.delete(frame.id);
        clearTimeout(pending.timer);
        if (frame.type === "error") {
          pending.onError(new RollcallError(String(frame.code), String(frame.message ?? "")));
        } else {
          pending.onReply(frame);
        }
        return;
      }
    }
    if (frame.type === "error") {
      this._emitError(new RollcallError(String(frame.code), String(frame.message ?? "")));
      return;
    }
    if (typeof frame.session === "string") {
      this._sessions.get(frame.session)?._onFrame(frame);
    }
  }

  /**
   * @private
   * @param {Attempt} attempt
   * @param {number} code
   */
  _onClose(attempt, code) {
    if (this._attempt !== attempt) return;
    this._drop(attempt);
    if (attempt.welcomed) this._lost(code);
    else this._failedBeforeWelcome(attempt, { timedOut: false });
  }

  /**
   * Detaches and closes a socket; its late events are ignored.
   * @private
   * @param {Attempt} attempt
   * @param {number} [code]
   */
  _drop(attempt, code) {
    clearTimeout(attempt.welcomeTimer);
    clearTimeout(attempt.silenceTimer);
    clearTimeout(attempt.deadTimer);
    if (this._attempt === attempt) this._attempt = null;
    const socket = attempt.socket;
    socket.onopen = noop;
    socket.onmessage = noop;
    socket.onclose = noop;
    // Kept as a listener: `ws` throws on an 'error' event nobody listens to.
    socket.onerror = noop;
    try {
      if (code === 1000) socket.close(1000);
      else if (typeof socket.terminate === "function") socket.terminate();
      else socket.close();
    } catch {
      // Already closed.
    }
  }

  /**
   * An established connection was lost (closed by the server or the network, or judged dead).
   * @private
   * @param {number} code
   */
  _lost(code) {
    if (this._isClosed()) return;
    for (const [id, pending] of this._pending) {
      this._pending.delete(id);
      clearTimeout(pending.timer);
      pending.onError(new RollcallError("disconnected", `the connection closed (${code}) before the reply`));
    }
    this._setState("disconnected");
    if (code === CLOSE_RESTARTING) {
      // The server is restarting: another instance can take us at once.
      this._urlIndex += 1;
      this._connect();
      return;
    }
    this._scheduleReconnect();
  }

  /**
   * An attempt ended before `welcome`: refused (HTTP 401/403), or the server could not be reached.
   * @private
   * @param {Attempt} attempt
   * @param {{ timedOut: boolean }} how
   */
  async _failedBeforeWelcome(attempt, how) {
    if (this._isClosed()) return;
    const generation = this._generation;
    this._setState("disconnected");
    let refusal = statusFromErrorText(attempt.errorText);
    /** @type {string} */
    let detail = "";
    // Only when the WebSocket said nothing at all (browsers): `ws` names the status of a refused
    // upgrade in its error, so any other error of it is not a refusal.
    if (refusal === null && !how.timedOut && !attempt.opened && !attempt.errorText) {
      const probe = await this._probe(attempt);
      if (generation !== this._generation || this._isClosed()) return;
      if (probe) {
        refusal = probe.status;
        detail = probe.detail;
      }
    }
    if (refusal === 401 || refusal === 403) {
      if (typeof this._tokenSource === "function" && !this._refreshed) {
        this._refreshed = true;
        this._connect({ refresh: true });
        return;
      }
      const why = detail ? `: ${detail}` : "";
      this._shutdown(
        new RollcallError("unauthorized", `the server refused the connection (HTTP ${refusal})${why}`),
      );
      return;
    }
    this._scheduleReconnect();
  }

  /**
   * Browsers do not tell why an upgrade failed. When an attempt closed before it even opened, the
   * client asks the same URL over plain HTTP: the server checks the token before the upgrade, so a
   * refused token answers 401 (403 for a refused origin) there too, while a good one gets 400 (not
   * an upgrade). Needs `fetch` and, across origins, CORS; without them the failure counts as an
   * unreachable server.
   * @private
   * @param {Attempt} attempt
   * @returns {Promise<{ status: number, detail: string } | null>}
   */
  async _probe(attempt) {
    const fetchFn = /** @type {any} */ (globalThis).fetch;
    if (typeof fetchFn !== "function") return null;
    const httpUrl = withToken(attempt.url, attempt.token).replace(/^ws/, "http");
    const controller = typeof AbortController === "function" ? new AbortController() : null;
    const timer = setTimeout(() => controller?.abort(), this._timeoutMs);
    try {
      const response = await fetchFn(httpUrl, {
        cache: "no-store",
        credentials: "omit",
        signal: controller?.signal,
      });
      if (response.status !== 401 && response.status !== 403) return null;
      let detail = "";
      try {
        const body = await response.json();
        if (body?.error?.code) detail = `${body.error.code}: ${body.error.message ?? ""}`.trim();
      } catch {
        // Not JSON.
      }
      return { status: response.status, detail };
    } catch {
      return null;
    } finally {
      clearTimeout(timer);
    }
  }

  /** @private */
  _scheduleReconnect() {
    if (this._isClosed()) return;
    this._retries += 1;
    const delay = reconnectDelay(this._retries, this._minDelay, this._maxDelay, this._random);
    this._urlIndex += 1;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = undefined;
      this._connect();
    }, delay);
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
    this._generation += 1;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    if (this._attempt) this._drop(this._attempt, 1000);
    for (const session of this._sessions.values()) {
      clearTimeout(session._rejoinTimer);
      session.state = "left";
    }
    this._sessions.clear();
    this._setState("closed");
    for (const [id, pending] of this._pending) {
      this._pending.delete(id);
      clearTimeout(pending.timer);
      pending.onError(error);
    }
    for (const queued of this._queue.splice(0)) {
      clearTimeout(queued.timer);
      queued.onError(error);
    }
    for (const waiter of this._readyWaiters.splice(0)) waiter.reject(error);
    if (reason) this._emitError(reason);
  }
}
