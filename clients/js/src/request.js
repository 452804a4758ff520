// @ts-check
/**
 * The requests: ids, the replies they wait for (each with its `requestTimeoutMs`), and the
 * requests made while not connected, which wait for the next connection. It exists so that the
 * bookkeeping of what is owed an answer lives apart from the socket (`transport.js`), which knows
 * nothing of requests, and from the facade (`client.js`), which decides when to send: a reply
 * settles its request, an `error` reply rejects it as a `RollcallError`, a lost connection or a
 * closed client rejects what is left.
 */

import { RollcallError } from "./errors.js";

/**
 * What a request does with its answer.
 * @typedef {object} Handlers
 * @property {(reply: any) => void} onReply
 * @property {(error: RollcallError) => void} onError
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
 * The requests of one client: sent ones waiting for their reply, and queued ones waiting for a
 * connection. Ids count up over the client's life (never reused across connections).
 */
export class Requests {
  /** @param {number} timeoutMs  the wait for a reply, and for a connection */
  constructor(timeoutMs) {
    /** @private */
    this._timeoutMs = timeoutMs;
    /** @private */
    this._nextId = 1;
    /** @private @type {Map<number, Pending>} */
    this._pending = new Map();
    /** @private @type {Queued[]} */
    this._queue = [];
  }

  /**
   * A fresh id (the transport's `ping` takes one too, so that no reply is taken for another's).
   * @returns {number}
   */
  nextId() {
    return this._nextId++;
  }

  /**
   * Sends a frame with a fresh id and waits for its reply, at most `requestTimeoutMs`.
   * @param {(data: string) => void} send  writes to the current connection; throws if it cannot
   * @param {Record<string, unknown>} frame  without its `id`
   * @param {Handlers} handlers
   */
  send(send, frame, handlers) {
    const id = this.nextId();
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
      send(JSON.stringify({ ...frame, id }));
    } catch (err) {
      this._pending.delete(id);
      clearTimeout(pending.timer);
      handlers.onError(new RollcallError("disconnected", `could not send: ${String(err)}`));
    }
  }

  /**
   * Keeps a request made while not connected until the next connection takes it (`takeQueued`),
   * at most `requestTimeoutMs` (`timeout` otherwise).
   * @param {Record<string, unknown>} frame  without its `id`
   * @param {Handlers} handlers
   */
  queue(frame, handlers) {
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
   * Every queued request, in order, taken out of the queue (their wait for a connection is over).
   * @returns {Queued[]}
   */
  takeQueued() {
    const queue = this._queue.splice(0);
    for (const queued of queue) clearTimeout(queued.timer);
    return queue;
  }

  /**
   * A frame from the server: when it answers a sent request, settles that request (an `error`
   * frame rejects it) and returns true.
   * @param {any} frame
   * @returns {boolean}
   */
  settle(frame) {
    if (frame.id === undefined || frame.id === null) return false;
    const pending = this._pending.get(frame.id);
    if (!pending) return false;
    this._pending.delete(frame.id);
    clearTimeout(pending.timer);
    if (frame.type === "error") {
      pending.onError(new RollcallError(String(frame.code), String(frame.message ?? "")));
    } else {
      pending.onReply(frame);
    }
    return true;
  }

  /**
   * The connection closed: every sent request rejects with `disconnected` (queued ones keep
   * waiting for the next connection).
   * @param {number} code  the close code
   */
  disconnected(code) {
    for (const [id, pending] of this._pending) {
      this._pending.delete(id);
      clearTimeout(pending.timer);
      pending.onError(new RollcallError("disconnected", `the connection closed (${code}) before the reply`));
    }
  }

  /**
   * The client closed: every request, sent or queued, rejects with `error`.
   * @param {RollcallError} error
   */
  rejectAll(error) {
    for (const [id, pending] of this._pending) {
      this._pending.delete(id);
      clearTimeout(pending.timer);
      pending.onError(error);
    }
    for (const queued of this.takeQueued()) queued.onError(error);
  }
}
