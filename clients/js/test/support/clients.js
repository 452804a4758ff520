// Clients for the Node integration tests: RollcallClient over the `ws` package, closed by
// `closeAll()` (call it from `after`).
import WebSocket from "ws";

import { RollcallClient } from "../../src/index.js";

/** @type {Set<RollcallClient>} */
const clients = new Set();

/**
 * A WebSocket that records every frame the client sends (`sent`, parsed).
 */
export class RecordingWebSocket extends WebSocket {
  /** @type {any[]} */
  static sent = [];
  /** @param {string} url */
  constructor(url) {
    super(url);
  }
  /** @param {any} data */
  send(data) {
    RecordingWebSocket.sent.push({ at: Date.now(), frame: JSON.parse(String(data)) });
    // @ts-ignore
    super.send(data);
  }
}

/**
 * A WebSocket like a browser's: it never says why an upgrade failed (no HTTP status in errors).
 */
export class BrowserLikeWebSocket extends WebSocket {
  /** @param {string} url */
  constructor(url) {
    super(url);
  }
  set onerror(listener) {
    // @ts-ignore
    super.onerror = listener ? () => listener({ type: "error" }) : null;
  }
  get onerror() {
    // @ts-ignore
    return super.onerror;
  }
}

/**
 * @param {import("../../src/client.js").ClientOptions} options
 */
export function makeClient(options) {
  const client = new RollcallClient({ WebSocket, requestTimeoutMs: 3000, minReconnectDelayMs: 100, maxReconnectDelayMs: 1000, ...options });
  clients.add(client);
  return client;
}

export function closeAll() {
  for (const c of clients) c.close();
  clients.clear();
}

/** The view of a session as comparable data: ids, leader, version. */
export function viewOf(session) {
  return {
    members: session.members.map((m) => m.connection),
    leader: session.leader,
    version: session.version,
  };
}
