// @ts-check
/**
 * The transport: one WebSocket at a time to one of the URLs, kept alive and re-made as needed. It
 * exists so that everything about the connection itself lives in one place: connecting (with the
 * token), moving on to the next URL, full-jitter backoff between attempts, the `ping` that finds a
 * dead server, what each close code means, and the one token refresh after a refused upgrade. It
 * knows nothing of requests or sessions: it hands the client (`client.js`) every frame after
 * `welcome` and tells it, through its hooks, when the connection comes, goes or is refused.
 */

import { reconnectDelay } from "./backoff.js";
import { RollcallError } from "./errors.js";

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
 * The options of `RollcallClient`; the transport reads them all.
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
 * What the transport tells its owner. Called synchronously, in this order for a connection:
 * `attempt`, then `welcome` and `connected`, then `frame` for every frame, then `lost`.
 * @typedef {object} TransportHooks
 * @property {(state: ClientState) => void} state  the state changed
 * @property {(error: RollcallError) => void} error  a failure the app should hear of (`token_error`, …)
 * @property {(url: string) => void} attempt  a socket to `url` (without token) was opened
 * @property {(welcome: any) => void} welcome  `welcome` came; the state is not `connected` yet
 * @property {() => void} connected  the state became `connected`
 * @property {(frame: any) => void} frame  a frame after `welcome` (parsed, an object)
 * @property {(code: number) => void} lost  a connection after `welcome` closed (or was judged
 *   dead); the state is not `disconnected` yet
 * @property {(reason: RollcallError) => void} refused  the server refused the connection for good
 *   (`unauthorized`), or another socket took it over (`replaced`): the owner closes (`close()`)
 * @property {() => number} nextId  an id for the `ping` frame
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
/** Another socket resumed this connection: it must not reconnect. */
const CLOSE_REPLACED = 4001;
/** The token expired: reconnect with a fresh one (from the token function, if any). */
const CLOSE_TOKEN_EXPIRED = 4003;
/** Close code the client uses when it drops a connection it judged dead (application range). */
const CLOSE_DEAD = 4000;

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
 * One connection at a time, re-made after every unplanned close until `close()`.
 */
export class Transport {
  /**
   * Checks the options (a `TypeError` for a bad one) without connecting yet: `connect()` does.
   * @param {ClientOptions} options
   * @param {TransportHooks} hooks
   */
  constructor(options, hooks) {
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
    /** @private */
    this._hooks = hooks;
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
    /** `requestTimeoutMs`: the wait for `welcome`, and for any frame after a `ping`. @readonly */
    this.timeoutMs = delayOption(options.requestTimeoutMs, "requestTimeoutMs", 5000);
    /** @private */
    this._random = options.random ?? Math.random;

    /** @private @type {ClientState} */
    this._state = "connecting";
    /** @private @type {Attempt | null} */
    this._attempt = null;
    /** @private retries since the last `welcome` */
    this._retries = 0;
    /** @private the token was refreshed after a refusal, and not yet used successfully */
    this._refreshed = false;
    /** @private the next attempt asks the token function for a new token (after 4003) */
    this._refreshNext = false;
    /** @private counts connection attempts, so that late callbacks of an old one do nothing */
    this._generation = 0;
    /** @private @type {ReturnType<typeof setTimeout> | undefined} */
    this._reconnectTimer = undefined;
  }

  /** @returns {ClientState} */
  get state() {
    return this._state;
  }

  /** Whether a connection is up and welcomed, so that `send` can write to it. */
  get welcomed() {
    return this._attempt?.welcomed === true;
  }

  /**
   * Writes a frame to the welcomed connection.
   * @param {string} data
   * @throws when there is no such connection, or its socket cannot send
   */
  send(data) {
    const attempt = this._attempt;
    if (!attempt || !attempt.welcomed) throw new Error("not connected");
    attempt.socket.send(data);
  }

  /**
   * The delay of the n-th retry of anything, with the reconnects' backoff settings.
   * @param {number} retry  1 for the first retry
   */
  retryDelay(retry) {
    return reconnectDelay(retry, this._minDelay, this._maxDelay, this._random);
  }

  /**
   * State `closed` for good: no reconnect; the socket, if any, is closed (1000). Late events of
   * any attempt are ignored.
   */
  close() {
    if (this._isClosed()) return;
    this._generation += 1;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    if (this._attempt) this._drop(this._attempt, 1000);
    this._setState("closed");
  }

  /**
   * @private
   * @param {ClientState} state
   */
  _setState(state) {
    if (this._state === state) return;
    this._state = state;
    this._hooks.state(state);
  }

  /**
   * (A method, not a comparison in place: state changes across the awaits of one function.)
   * @private
   */
  _isClosed() {
    return this._state === "closed";
  }

  /**
   * Starts one connection attempt to the current URL.
   * @param {{ refresh?: boolean }} [options]  `refresh`: ask the token function for a new token
   */
  async connect(options = {}) {
    if (this._isClosed()) return;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = undefined;
    const generation = ++this._generation;
    this._setState("connecting");
    const refresh = options.refresh === true || this._refreshNext;
    this._refreshNext = false;
    /** @type {string | undefined} */
    let token;
    try {
      token = await this._getToken(refresh);
    } catch (err) {
      if (generation !== this._generation || this._isClosed()) return;
      this._hooks.error(new RollcallError("token_error", `the token function failed: ${String(err)}`));
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
      this._hooks.error(new RollcallError("disconnected", `could not open ${url}: ${String(err)}`));
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
    this._hooks.attempt(url);
    // A server that accepts the TCP connection but never answers (stopped, overloaded) must not
    // hold the client: no `welcome` within requestTimeoutMs fails the attempt.
    attempt.welcomeTimer = setTimeout(() => {
      if (this._attempt !== attempt) return;
      this._drop(attempt);
      this._failedBeforeWelcome(attempt, { timedOut: true });
    }, this.timeoutMs);
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
   * A fresh token from the token function, used from now on (also for reconnects); null without
   * a token function.
   * @returns {Promise<string | null>}
   */
  async refreshToken() {
    if (typeof this._tokenSource !== "function") return null;
    return /** @type {string} */ (await this._getToken(true));
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
    this._hooks.frame(frame);
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
    this._hooks.welcome(welcome);
    this._retries = 0;
    this._refreshed = false;
    this._setState("connected");
    this._armSilence(attempt, attempt.heartbeatMs);
    this._hooks.connected();
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
        attempt.socket.send(JSON.stringify({ type: "ping", id: this._hooks.nextId() }));
      } catch {
        // A socket that cannot send is dead; the timer below says so.
      }
      attempt.deadTimer = setTimeout(() => {
        if (this._attempt !== attempt) return;
        this._drop(attempt);
        this._lost(CLOSE_DEAD);
      }, this.timeoutMs);
    }, delay);
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
    if (code === CLOSE_REPLACED) {
      this._hooks.refused(
        new RollcallError("replaced", "another connection resumed this one (close code 4001); not reconnecting"),
      );
      return;
    }
    if (code === CLOSE_TOKEN_EXPIRED) this._refreshNext = true;
    this._hooks.lost(code);
    this._setState("disconnected");
    if (code === CLOSE_RESTARTING) {
      // The server is restarting: another instance can take us at once.
      this._urlIndex += 1;
      this.connect();
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
        this.connect({ refresh: true });
        return;
      }
      const why = detail ? `: ${detail}` : "";
      this._hooks.refused(
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
    const timer = setTimeout(() => controller?.abort(), this.timeoutMs);
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
    const delay = this.retryDelay(this._retries);
    this._urlIndex += 1;
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = undefined;
      this.connect();
    }, delay);
  }
}
