// Cases the real server does not produce on demand, played by a scripted WebSocket server (the
// `ws` package's server, on a real loopback socket) that speaks the protocol's frames: a version gap
// answered with `members`, and presence mode `counts` edge cases (docs/protocol.md §1.11; the real
// server's side of the mode is in presence_counts.test.js).
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";
import { WebSocketServer } from "ws";

import { closeAll, makeClient } from "../support/clients.js";
import { freePort, nextEvent, waitFor } from "../support/servers.js";

/** @type {WebSocketServer[]} */
const servers = [];

after(async () => {
  closeAll();
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
});

const member = (connection, joinedAt, name) => ({ connection, user: null, name, avatar: null, joined_at: joinedAt });

/**
 * A server that says welcome, then hands every client frame to `onFrame(frame, send)`.
 * @param {(frame: any, send: (f: object) => void) => void} onFrame
 */
async function scripted(onFrame) {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  servers.push(wss);
  await new Promise((resolve) => wss.once("listening", resolve));
  /** @type {any[]} */
  const received = [];
  /** @type {((f: object) => void) | null} */
  let push = null;
  wss.on("connection", (socket) => {
    const send = (f) => socket.send(JSON.stringify(f));
    push = send;
    send({ type: "welcome", connection: "me", user: null, instance: "scripted", protocol: 1, heartbeat_ms: 60000 });
    socket.on("message", (data) => {
      const frame = JSON.parse(String(data));
      received.push(frame);
      onFrame(frame, send);
    });
  });
  const address = /** @type {import("node:net").AddressInfo} */ (wss.address());
  return {
    url: `ws://127.0.0.1:${address.port}/ws`,
    received,
    push: (f) => {
      assert.ok(push, "no client connected");
      push(f);
    },
  };
}

describe("scripted server", () => {
  test("a version gap is answered by one `members` request whose reply replaces the view", async () => {
    /** @type {(() => void) | null} */
    let releaseMembers = null;
    const server = await scripted((frame, send) => {
      if (frame.type === "join") {
        send({
          type: "joined",
          id: frame.id,
          session: "g",
          you: "me",
          version: 2,
          leader: "a",
          epoch: 1,
          members: [member("a", 1, "Ada"), member("me", 2, "Me")],
          counts: { connections: 2, users: 2 },
        });
      } else if (frame.type === "members") {
        // Held until the test has pushed more gapped events.
        releaseMembers = () =>
          send({
            type: "members",
            id: frame.id,
            session: "g",
            version: 7,
            leader: "me",
            epoch: 2,
            members: [member("me", 2, "Me"), member("c", 3, "Cy"), member("d", 4, "Dee")],
            counts: { connections: 3, users: 3 },
          });
      }
    });
    const client = makeClient({ url: server.url });
    const session = await client.join("g", { name: "Me" });
    const events = [];
    for (const name of /** @type {const} */ (["join", "leave", "leader", "change"])) {
      session.on(name, (...args) =>
        events.push(name === "change" ? [name] : [name, ...args.map((a) => a?.connection ?? a)]),
      );
    }
    server.push({ type: "member_joined", session: "g", version: 3, member: member("c", 3, "Cy") });
    server.push({ type: "member_joined", session: "g", version: 5, member: member("x", 9, "Gap") });
    server.push({ type: "member_left", session: "g", version: 6, connection: "a", reason: "left" });
    await waitFor(() => releaseMembers, { message: "the client to send `members` after the gap", describe: () => server.received });
    assert.equal(server.received.filter((f) => f.type === "members").length, 1, "one members request for the gap");
    assert.equal(session.version, 3, "nothing past the gap was applied");
    const replaced = nextEvent(session, "change", { predicate: (s) => s.version === 7, message: "the members reply to replace the view" });
    /** @type {() => void} */ (releaseMembers)();
    await replaced;
    assert.deepEqual(
      session.members.map((m) => m.name),
      ["Me", "Cy", "Dee"],
    );
    assert.equal(session.isLeader, true);
    assert.deepEqual(events, [
      ["join", "c"],
      ["change"],
      ["leave", "a", "resync"],
      ["join", "d"],
      ["leader", "me", 2],
      ["change"],
    ]);
    // Back in order.
    server.push({ type: "member_left", session: "g", version: 8, connection: "d", reason: "disconnected" });
    await waitFor(() => session.version === 8, { message: "version 8 to apply" });
    assert.deepEqual(
      session.members.map((m) => m.name),
      ["Me", "Cy"],
    );
  });

  test("presence counts: join asks for it, counts events update session.counts, no gap requests", async () => {
    const server = await scripted((frame, send) => {
      if (frame.type === "join") {
        send({
          type: "joined",
          id: frame.id,
          session: "party",
          you: "me",
          version: 40,
          leader: "host",
          epoch: 3,
          members: [member("host", 1, "Host"), member("me", 50, "Me")],
          counts: { connections: 9000, users: 8000 },
        });
      }
    });
    const client = makeClient({ url: server.url });
    const session = await client.join("party", { name: "Me", presence: "counts" });
    assert.equal(server.received[0].presence, "counts");
    assert.equal(session.presence, "counts");
    assert.deepEqual(session.counts, { connections: 9000, users: 8000, reconnecting: 0 });
    const counted = nextEvent(session, "change", { message: "a change after the counts event" });
    server.push({ type: "counts", session: "party", version: 55, counts: { connections: 9100, users: 8050 } });
    await counted;
    assert.deepEqual(session.counts, { connections: 9100, users: 8050, reconnecting: 0 });
    const led = nextEvent(session, "leader", { message: "the leader change across a version jump" });
    server.push({ type: "leader_changed", session: "party", version: 61, leader: "me", epoch: 4 });
    assert.deepEqual(await led, ["me", 4]);
    assert.equal(session.isLeader, true);
    assert.equal(server.received.filter((f) => f.type === "members").length, 0);
  });

  test("reconnect delays grow as min·2ⁿ (here with the jitter pinned near its top) and a welcome resets them", async () => {
    const port = await freePort(); // nothing listens yet: every attempt is refused
    const client = makeClient({
      url: `ws://127.0.0.1:${port}/ws`,
      minReconnectDelayMs: 100,
      maxReconnectDelayMs: 1000,
      random: () => 0.999,
    });
    /** @type {{ state: string, at: number }[]} */
    const log = [];
    client.on("state", (state) => log.push({ state, at: Date.now() }));
    /** The waits between each `disconnected` and the `connecting` that follows it. */
    const waits = () => {
      const out = [];
      for (let i = 0; i + 1 < log.length; i++) {
        if (log[i].state === "disconnected" && log[i + 1].state === "connecting") out.push(log[i + 1].at - log[i].at);
      }
      return out;
    };
    await waitFor(() => waits().length >= 4, { timeoutMs: 6000, message: "four refused attempts", describe: () => log });
    // Retry n waits floor(0.999 · min(1000, 100·2ⁿ)): 199, 399, 799, 999 ms.
    const expected = [199, 399, 799, 999];
    waits()
      .slice(0, 4)
      .forEach((w, i) => assert.ok(w >= expected[i] - 5 && w <= expected[i] + 400, `retry ${i + 1} waited ${w} ms, expected ${expected[i]}`));

    // A server appears on that port: the next attempt connects, and its welcome resets the count.
    const wss = new WebSocketServer({ host: "127.0.0.1", port });
    servers.push(wss);
    wss.on("connection", (socket) => {
      socket.send(JSON.stringify({ type: "welcome", connection: "c", user: null, instance: "s", protocol: 1, heartbeat_ms: 60000 }));
    });
    await client.ready();
    const before = waits().length;
    for (const socket of wss.clients) socket.terminate(); // an unplanned close (1006)
    await waitFor(() => waits().length > before, { timeoutMs: 3000, message: "the reconnect after the drop", describe: () => log });
    const afterReset = waits()[before];
    assert.ok(afterReset >= 194 && afterReset <= 199 + 400, `first retry after a welcome waited ${afterReset} ms, expected 199`);
    await client.ready();
  });
});
