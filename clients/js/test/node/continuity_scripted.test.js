// Continuity (resume, reconnecting members, message offsets and history, close code 4001) against
// a scripted WebSocket server (the `ws` package's server on a real loopback socket) that speaks the
// protocol's frames, as scripted_server.test.js does: every socket gets a `welcome` with its own
// `resume_token`, and each test answers the client's frames itself. The same server also serves the
// page (page/ and src/ as the rollcall binary serves them), so the last test drives the page in
// headless Chromium (skipped when there is none).
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, describe, test } from "node:test";
import { WebSocketServer } from "ws";

import { CHROMIUM } from "../support/browser.js";
import { closeAll, makeClient } from "../support/clients.js";
import { JS_DIR, nextEvent } from "../support/servers.js";

/** @type {http.Server[]} */
const servers = [];

after(async () => {
  closeAll();
  for (const s of servers) s.closeAllConnections();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

/**
 * The page's files as the rollcall binary serves them: `/` and `/assets/<file>` from page/ or src/.
 * @param {http.IncomingMessage} request
 * @param {http.ServerResponse} response
 */
function servePage(request, response) {
  const name = new URL(request.url ?? "/", "http://x").pathname.replace(/^\/assets\//, "");
  const file =
    name === "/"
      ? path.join(JS_DIR, "page/index.html")
      : [path.join(JS_DIR, "page", name), path.join(JS_DIR, "src", name)].find(
          (f) => /^[a-z]+\.(js|css)$/.test(name) && existsSync(f),
        );
  if (!file) {
    response.writeHead(404).end();
    return;
  }
  const type = file.endsWith(".css") ? "text/css" : file.endsWith(".js") ? "text/javascript" : "text/html";
  response.writeHead(200, { "content-type": `${type}; charset=utf-8` }).end(readFileSync(file));
}

const WAIT = 5000;

/**
 * @param {string} connection
 * @param {number} joinedAt
 * @param {Record<string, unknown>} [rest]
 */
const member = (connection, joinedAt, rest = {}) => ({
  connection,
  user: null,
  name: connection.toUpperCase(),
  avatar: null,
  joined_at: joinedAt,
  ...rest,
});

/**
 * @typedef {object} Conn
 * @property {number} index  0 for the first socket
 * @property {import("ws").WebSocket} socket
 * @property {string} query  the upgrade request's query string
 * @property {any[]} received  the client's frames, parsed
 * @property {(frame: object) => void} send
 */

/**
 * A scripted server. Socket n gets `welcome` with connection `tmp-n` and resume token `token-n`;
 * every client frame goes to `onFrame(frame, conn)`.
 * @param {(frame: any, conn: Conn) => void} onFrame
 */
async function scripted(onFrame) {
  const server = http.createServer(servePage);
  servers.push(server);
  const wss = new WebSocketServer({ server, path: "/ws" });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(null)));
  const events = new EventEmitter();
  /** @type {Conn[]} */
  const conns = [];
  wss.on("connection", (socket, request) => {
    /** @type {Conn} */
    const conn = {
      index: conns.length,
      socket,
      query: new URL(request.url ?? "/", "http://x").search,
      received: [],
      send: (f) => socket.send(JSON.stringify(f)),
    };
    conns.push(conn);
    conn.send({
      type: "welcome",
      connection: `tmp-${conn.index}`,
      user: null,
      instance: "scripted",
      protocol: 1,
      heartbeat_ms: 60000,
      resume_token: `token-${conn.index}`,
    });
    socket.on("message", (data) => {
      const frame = JSON.parse(String(data));
      conn.received.push(frame);
      onFrame(frame, conn);
      events.emit("frame", frame, conn);
    });
    events.emit("connection", conn);
  });
  const address = /** @type {import("node:net").AddressInfo} */ (server.address());

  /**
   * The next client frame (on any socket) that `predicate` accepts.
   * @param {(frame: any, conn: Conn) => boolean} predicate
   * @param {string} what
   * @returns {Promise<{ frame: any, conn: Conn }>}
   */
  function nextFrame(predicate, what) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        events.off("frame", listener);
        const seen = conns.map((c) => c.received.map((f) => f.type));
        reject(new Error(`timed out after ${WAIT} ms waiting for ${what}; frames per socket: ${JSON.stringify(seen)}`));
      }, WAIT);
      /** @param {any} frame @param {Conn} conn */
      const listener = (frame, conn) => {
        if (!predicate(frame, conn)) return;
        clearTimeout(timer);
        events.off("frame", listener);
        resolve({ frame, conn });
      };
      events.on("frame", listener);
    });
  }

  /**
   * Resolves with the next socket, or with null when none came within `timeoutMs`.
   * @param {number} timeoutMs
   * @returns {Promise<Conn | null>}
   */
  function nextConnection(timeoutMs) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        events.off("connection", listener);
        resolve(null);
      }, timeoutMs);
      /** @param {Conn} conn */
      const listener = (conn) => {
        clearTimeout(timer);
        events.off("connection", listener);
        resolve(conn);
      };
      events.on("connection", listener);
    });
  }

  return { url: `ws://127.0.0.1:${address.port}/ws`, http: `http://127.0.0.1:${address.port}`, conns, nextFrame, nextConnection };
}

/** The `joined` reply of session `g` for connection `you`. */
function joinedReply(frame, you, extra = {}) {
  return {
    type: "joined",
    id: frame.id,
    session: "g",
    you,
    version: 2,
    leader: "a",
    epoch: 1,
    members: [member("a", 1), member(you, 2)],
    counts: { connections: 2, users: 2 },
    stream: "st",
    offset: 4,
    ...extra,
  };
}

/** Fast reconnects, so that the tests do not wait for the default backoff. */
const fast = { minReconnectDelayMs: 20, maxReconnectDelayMs: 100 };

/**
 * Records a session's messages by offset.
 * @param {import("../../src/index.js").Session} session
 */
function recordMessages(session) {
  /** @type {any[]} */
  const messages = [];
  session.on("message", (m) => messages.push(m));
  return messages;
}

describe("continuity against a scripted server", () => {
  test("(a) after a drop the client resumes first, keeps the Session and its listeners, and applies what it missed", async () => {
    const server = await scripted((frame, conn) => {
      if (frame.type === "join") conn.send(joinedReply(frame, "me"));
      if (frame.type === "publish") conn.send({ type: "published", id: frame.id, session: "g", offset: 6, stream: "st" });
      if (frame.type === "resume") {
        conn.send({
          type: "resumed",
          id: frame.id,
          connection: "me",
          resume_token: "token-r",
          sessions: [
            {
              session: "g",
              version: 4,
              leader: "me",
              epoch: 2,
              counts: { connections: 2, users: 2, reconnecting: 0 },
              recovered: true,
            },
          ],
        });
        // What happened while the client was away, in order.
        conn.send({ type: "member_joined", session: "g", version: 3, member: member("c", 3) });
        conn.send({ type: "member_left", session: "g", version: 4, connection: "a", reason: "disconnected" });
        conn.send({ type: "leader_changed", session: "g", version: 4, leader: "me", epoch: 2 });
        conn.send({ type: "message", session: "g", from: "c", user: null, data: "missed", offset: 7, stream: "st" });
      }
    });
    const client = makeClient({ url: server.url, ...fast });
    const session = await client.join("g", { name: "Me" });
    assert.equal(client.connectionId, "tmp-0");
    assert.equal(session.stream, "st");
    assert.equal(session.offset, 4);
    const messages = recordMessages(session);
    /** @type {any[]} */
    const log = [];
    session.on("join", (m) => log.push(["join", m.connection]));
    session.on("leave", (c, reason) => log.push(["leave", c, reason]));
    session.on("leader", (l, e) => log.push(["leader", l, e]));
    session.on("recovered", (info) => log.push(["recovered", info]));

    const first = server.conns[0];
    const live = nextEvent(session, "message", { message: "the live message at offset 5" });
    first.send({ type: "message", session: "g", from: "a", user: null, data: "live", offset: 5, stream: "st" });
    await live;
    await session.publish("mine");
    assert.equal(session.offset, 6, "the published offset counts as applied (5 came before it)");

    const recovered = nextEvent(session, "recovered", { message: "recovered after the resume" });
    const missed = nextEvent(session, "message", { predicate: (m) => m.offset === 7, message: "the missed message" });
    const resumeSent = server.nextFrame((f) => f.type === "resume", "the resume request");
    first.socket.terminate(); // an unplanned drop (1006)
    const { frame: resume, conn: second } = await resumeSent;
    assert.equal(second.index, 1);
    assert.equal(second.received[0], resume, "resume is the first request on the new socket");
    assert.equal(resume.token, "token-0");
    assert.deepEqual(resume.sessions, [{ session: "g", version: 2, offset: 6 }]);
    assert.equal(typeof resume.id, "number");
    assert.deepEqual((await recovered)[0], { recovered: true, resumed: true });
    await missed;

    assert.equal(client.connectionId, "me", "the resumed connection, not the socket's own tmp-1");
    assert.equal(session.you, "me");
    assert.equal(session.version, 4);
    assert.equal(session.leader, "me");
    assert.equal(session.epoch, 2);
    assert.equal(session.isLeader, true);
    assert.deepEqual(
      session.members.map((m) => m.connection),
      ["me", "c"],
    );
    assert.deepEqual(session.counts, { connections: 2, users: 2, reconnecting: 0 });
    assert.deepEqual(
      messages.map((m) => [m.from, m.data, m.offset, m.stream]),
      [
        ["a", "live", 5, "st"],
        ["c", "missed", 7, "st"],
      ],
    );
    assert.deepEqual(log, [
      ["leader", "me", 2],
      ["recovered", { recovered: true, resumed: true }],
      ["join", "c"],
      ["leave", "a", "disconnected"],
    ]);
    assert.equal(
      second.received.filter((f) => f.type === "join").length,
      0,
      "a resumed session is not joined again",
    );
    assert.equal(client.state, "connected");

    // The next reconnect resumes with the token of `resumed`.
    const again = server.nextFrame((f, c) => f.type === "resume" && c.index === 2, "the second resume");
    second.socket.terminate();
    const { frame: resume2 } = await again;
    assert.equal(resume2.token, "token-r");
    assert.deepEqual(resume2.sessions, [{ session: "g", version: 4, offset: 7 }]);
  });

  test("(b) resume_failed falls back to join with `since`, before queued requests; recovered:false is emitted", async () => {
    let joins = 0;
    const server = await scripted((frame, conn) => {
      if (frame.type === "join") {
        joins += 1;
        if (joins === 1) conn.send(joinedReply(frame, "me", { offset: 10 }));
        else
          conn.send(
            joinedReply(frame, "me2", {
              version: 5,
              members: [member("a", 1), member("me2", 9)],
              offset: 12,
              recovered: false,
            }),
          );
      }
      if (frame.type === "resume") {
        conn.send({ type: "error", id: frame.id, code: "resume_failed", message: "no such connection" });
      }
      if (frame.type === "publish") conn.send({ type: "published", id: frame.id, session: "g", offset: 13, stream: "st" });
    });
    const client = makeClient({ url: server.url, ...fast });
    const session = await client.join("g", { name: "Me" });
    const messages = recordMessages(session);
    const live = nextEvent(session, "message", { message: "the message at offset 11" });
    server.conns[0].send({ type: "message", session: "g", from: "a", user: null, data: "x", offset: 11, stream: "st" });
    await live;

    const down = nextEvent(client, "state", { predicate: (s) => s === "disconnected", message: "the drop" });
    const recovered = nextEvent(session, "recovered", { message: "recovered after the re-join" });
    const published = server.nextFrame((f) => f.type === "publish", "the queued publish");
    server.conns[0].socket.terminate();
    await down;
    const publishing = session.publish("queued while away"); // waits for the next connection
    const { conn: second } = await published;
    assert.deepEqual(
      second.received.map((f) => f.type),
      ["resume", "join", "publish"],
      "resume first, then the re-join, then what waited",
    );
    assert.equal(second.received[0].token, "token-0");
    assert.deepEqual(second.received[1].since, { stream: "st", offset: 11 });
    assert.equal(second.received[1].name, "Me");
    assert.deepEqual((await recovered)[0], { recovered: false, resumed: false });
    await publishing;
    assert.equal(client.connectionId, "tmp-1", "the resume failed: the socket's own connection");
    assert.equal(session.you, "me2");
    assert.equal(session.version, 5);
    // The messages before the re-join's offset are lost (recovered false): 12 counts as applied.
    assert.equal(session.offset, 13);
    const sentinel = nextEvent(session, "message", { predicate: (m) => m.offset === 14, message: "message 14" });
    second.send({ type: "message", session: "g", from: "a", user: null, data: "late dup", offset: 12, stream: "st" });
    second.send({ type: "message", session: "g", from: "a", user: null, data: "y", offset: 14, stream: "st" });
    await sentinel;
    assert.deepEqual(
      messages.map((m) => m.offset),
      [11, 14],
    );

    // The next reconnect resumes the connection that the re-join made (token of its welcome).
    const again = server.nextFrame((f, c) => f.type === "resume" && c.index === 2, "the next resume");
    second.socket.terminate();
    const { frame: resume2 } = await again;
    assert.equal(resume2.token, "token-1");
    assert.deepEqual(resume2.sessions, [{ session: "g", version: 5, offset: 14 }]);
  });

  test("(c) close code 4001 closes the client for good: state closed, error `replaced`, no reconnect", async () => {
    const server = await scripted((frame, conn) => {
      if (frame.type === "join") conn.send(joinedReply(frame, "me"));
      // publish: never answered
    });
    const client = makeClient({ url: server.url, minReconnectDelayMs: 20, maxReconnectDelayMs: 20 });
    const session = await client.join("g", { name: "Me" });
    /** @type {string[]} */
    const states = [];
    client.on("state", (s) => states.push(s));
    const error = nextEvent(client, "error", { message: "the replaced error" });
    const closed = nextEvent(client, "state", { predicate: (s) => s === "closed", message: "state closed" });
    const publishSent = server.nextFrame((f) => f.type === "publish", "the publish");
    const pending = session.publish("never answered");
    await publishSent;
    // A reconnect would come 20 ms after the close; wait for it 50 times as long.
    const reconnect = server.nextConnection(1000);
    server.conns[0].socket.close(4001, "replaced");
    const [err] = await error;
    assert.equal(err.code, "replaced");
    await closed;
    await assert.rejects(pending, (e) => e.code === "replaced");
    assert.equal(client.state, "closed");
    assert.deepEqual(states, ["closed"], "no disconnected or connecting state");
    assert.equal(await reconnect, null, "no new connection");
    assert.equal(server.conns.length, 1);
    await assert.rejects(client.ready(), (e) => e.code === "replaced");
  });

  test("(d) member_updated with state reconnecting: member.state, counts.reconnecting, an update event", async () => {
    const server = await scripted((frame, conn) => {
      if (frame.type === "join") {
        // No `state` in the members nor `reconnecting` in counts: an older server's frames.
        conn.send(joinedReply(frame, "me", { members: [member("a", 1, { user: "ua" }), member("me", 2)] }));
      }
    });
    const client = makeClient({ url: server.url, ...fast });
    const session = await client.join("g", { name: "Me" });
    assert.deepEqual(
      session.members.map((m) => m.state),
      ["present", "present"],
    );
    assert.equal(session.counts.reconnecting, 0);

    const away = nextEvent(session, "update", { message: "the update of a" });
    server.conns[0].send({
      type: "member_updated",
      session: "g",
      version: 3,
      member: member("a", 1, { user: "ua", state: "reconnecting" }),
    });
    const [updated] = await away;
    assert.equal(updated.connection, "a");
    assert.equal(updated.state, "reconnecting");
    assert.equal(session.members[0].state, "reconnecting");
    assert.deepEqual(session.counts, { connections: 1, users: 1, reconnecting: 1 });
    assert.equal(session.leader, "a", "a reconnecting leader keeps its leadership");

    const back = nextEvent(session, "update", { message: "a back" });
    server.conns[0].send({
      type: "member_updated",
      session: "g",
      version: 4,
      member: member("a", 1, { user: "ua", state: "present" }),
    });
    assert.equal((await back)[0].state, "present");
    assert.deepEqual(session.counts, { connections: 2, users: 2, reconnecting: 0 });
  });

  test("(e) messages replayed after a resume at offsets already seen are delivered once, in order", async () => {
    const server = await scripted((frame, conn) => {
      if (frame.type === "join") conn.send(joinedReply(frame, "me", { offset: 0 }));
      if (frame.type === "resume") {
        conn.send({
          type: "resumed",
          id: frame.id,
          connection: "me",
          resume_token: "token-r",
          sessions: [{ session: "g", version: 2, leader: "a", epoch: 1, counts: { connections: 2, users: 2, reconnecting: 0 }, recovered: true }],
        });
        // A replay that starts too early, then a live copy of the last one.
        for (const offset of [2, 3, 4, 5, 5]) {
          conn.send({ type: "message", session: "g", from: "a", user: null, data: `m${offset}`, offset, stream: "st" });
        }
        // The store lost the history: a new stream starts again at 1.
        conn.send({ type: "message", session: "g", from: "a", user: null, data: "n1", offset: 1, stream: "st2" });
        conn.send({ type: "message", session: "g", from: "a", user: null, data: "n1", offset: 1, stream: "st2" });
        conn.send({ type: "message", session: "g", from: "a", user: null, data: "n2", offset: 2, stream: "st2" });
      }
    });
    const client = makeClient({ url: server.url, ...fast });
    const session = await client.join("g", { name: "Me" });
    const messages = recordMessages(session);
    const three = nextEvent(session, "message", { predicate: (m) => m.offset === 3, message: "message 3" });
    for (const offset of [1, 2, 3]) {
      server.conns[0].send({ type: "message", session: "g", from: "a", user: null, data: `m${offset}`, offset, stream: "st" });
    }
    await three;
    const resumeSent = server.nextFrame((f) => f.type === "resume", "the resume");
    const last = nextEvent(session, "message", { predicate: (m) => m.stream === "st2" && m.offset === 2, message: "n2" });
    server.conns[0].socket.terminate();
    const { frame: resume } = await resumeSent;
    assert.deepEqual(resume.sessions, [{ session: "g", version: 2, offset: 3 }]);
    await last;
    assert.deepEqual(
      messages.map((m) => `${m.stream}:${m.offset}:${m.data}`),
      ["st:1:m1", "st:2:m2", "st:3:m3", "st:4:m4", "st:5:m5", "st2:1:n1", "st2:2:n2"],
    );
    assert.equal(session.stream, "st2");
    assert.equal(session.offset, 2);
  });

  test("(f) session.history() sends `history` and resolves to its messages", async () => {
    const kept = [
      { offset: 4, from: "a", user: null, data: "four", at: 1000 },
      { offset: 5, from: null, user: null, data: "from the app's server", at: 2000 },
    ];
    const server = await scripted((frame, conn) => {
      if (frame.type === "join") conn.send(joinedReply(frame, "me"));
      if (frame.type === "history") {
        if (frame.limit === 0) {
          conn.send({ type: "error", id: frame.id, code: "bad_request", message: "limit" });
          return;
        }
        conn.send({ type: "history", id: frame.id, session: "g", stream: "st", messages: kept, complete: true });
      }
    });
    const client = makeClient({ url: server.url, ...fast });
    const session = await client.join("g", { name: "Me" });
    assert.deepEqual(await session.history({ since: 3, limit: 2 }), kept);
    const sent = server.conns[0].received.find((f) => f.type === "history");
    assert.deepEqual(Object.keys(sent).sort(), ["id", "limit", "session", "since", "type"]);
    assert.deepEqual({ ...sent, id: 0 }, { type: "history", session: "g", since: 3, limit: 2, id: 0 });

    await session.history();
    const bare = server.conns[0].received.filter((f) => f.type === "history")[1];
    assert.deepEqual(Object.keys(bare).sort(), ["id", "session", "type"], "no since nor limit unless given");

    await assert.rejects(session.history({ limit: 0 }), (e) => e.code === "bad_request");
  });

  test("token_expiring is answered with `refresh`; close 4003 reconnects with a fresh token and resumes", async () => {
    let n = 0;
    const server = await scripted((frame, conn) => {
      if (frame.type === "join") conn.send(joinedReply(frame, "me"));
      if (frame.type === "refresh") conn.send({ type: "refreshed", id: frame.id });
      if (frame.type === "resume") {
        conn.send({ type: "error", id: frame.id, code: "resume_failed", message: "ended at expiry" });
      }
    });
    const client = makeClient({ url: server.url, ...fast, token: () => `tok${++n}` });
    await client.join("g", { name: "Me" });
    assert.equal(server.conns[0].query, "?token=tok1");
    const refreshed = server.nextFrame((f) => f.type === "refresh", "the refresh request");
    server.conns[0].send({ type: "token_expiring", expires_at: Date.now() + 30000 });
    const { frame: refresh } = await refreshed;
    assert.equal(refresh.token, "tok2");

    const rejoined = server.nextFrame((f, c) => f.type === "join" && c.index === 1, "the re-join after 4003");
    server.conns[0].socket.close(4003, "token_expired");
    const { conn: second } = await rejoined;
    assert.equal(second.query, "?token=tok3", "a fresh token after 4003");
    assert.deepEqual(
      second.received.map((f) => f.type),
      ["resume", "join"],
    );
  });

  test("the page greys out a reconnecting member and shows the messages of a resume once, in order", { skip: !existsSync(CHROMIUM) && `no Chromium at ${CHROMIUM}` }, async () => {
    const { launchChromium } = await import("../support/browser.js");
    const text = (offset) => ({ type: "message", session: "g", from: "a", user: null, data: { text: `m${offset}` }, offset, stream: "st" });
    const server = await scripted((frame, conn) => {
      if (frame.type === "join") conn.send(joinedReply(frame, "me", { offset: 0, members: [member("a", 1, { name: "Ada" }), member("me", 2, { name: "Me" })] }));
      if (frame.type === "resume") {
        conn.send({
          type: "resumed",
          id: frame.id,
          connection: "me",
          resume_token: "token-r",
          sessions: [{ session: "g", version: 3, leader: "a", epoch: 1, counts: { connections: 1, users: 1, reconnecting: 1 }, recovered: true }],
        });
        for (const offset of [1, 2, 3, 4]) conn.send(text(offset)); // 1 and 2 were seen already
      }
    });
    const chromium = await launchChromium();
    try {
      const page = await chromium.browser.newPage();
      /** @type {string[]} */
      const errors = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`${server.http}/?session=g&name=Me`);
      const wait = async (fn, arg, what) => {
        try {
          await page.waitForFunction(fn, arg, { timeout: WAIT, polling: 10 });
        } catch {
          const html = await page.$eval("main", (m) => m.innerHTML);
          throw new Error(`the page never showed ${what}; errors: ${errors.join(" | ")}; main: ${html}`);
        }
      };
      await wait(() => document.querySelectorAll("[data-testid=members] li").length === 2, null, "two members");
      assert.equal(await page.getAttribute("[data-connection=a]", "data-state"), "present");

      server.conns[0].send({ type: "member_updated", session: "g", version: 3, member: member("a", 1, { name: "Ada", state: "reconnecting" }) });
      await wait(() => document.querySelector("[data-connection=a]")?.getAttribute("data-state") === "reconnecting", null, "a reconnecting");
      const opacity = await page.$eval("[data-connection=a]", (li) => Number(getComputedStyle(li).opacity));
      assert.ok(opacity < 1, `a reconnecting member is greyed out (opacity ${opacity})`);
      assert.equal(await page.getAttribute("[data-connection=me]", "data-state"), "present");
      assert.match((await page.textContent("[data-testid=counts]")) ?? "", /1 reconnecting/);

      server.conns[0].send(text(1));
      server.conns[0].send(text(2));
      await wait(() => document.querySelectorAll("[data-testid=messages] li").length === 2, null, "two messages");
      server.conns[0].socket.terminate();
      await wait(() => document.querySelectorAll("[data-testid=messages] li").length >= 4, null, "the missed messages");
      // A duplicate would take one of the first four places.
      const shown = await page.$$eval("[data-testid=messages] li", (lis) =>
        lis.map((li) => `${li.getAttribute("data-offset")}:${li.querySelector(".text")?.textContent}`),
      );
      assert.deepEqual(shown, ["1:m1", "2:m2", "3:m3", "4:m4"]);
      assert.equal(server.conns[1].received[0].type, "resume");
      assert.equal(await page.textContent("[data-testid=state]"), "connected");
      assert.deepEqual(errors, []);
    } finally {
      await chromium.close();
    }
  });
});
