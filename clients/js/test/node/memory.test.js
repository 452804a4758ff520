// The client against one real rollcall process with the in-process store: joins, events,
// leadership, messages, profiles, ending, errors, and requests made while not connected.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { RollcallError } from "../../src/index.js";
import { closeAll, makeClient, viewOf } from "../support/clients.js";
import { freePort, getJson, killAll, nextEvent, startRollcall, waitFor } from "../support/servers.js";

/** @type {import("../support/servers.js").Rollcall} */
let server;

before(async () => {
  server = await startRollcall({ name: "memory" });
});

after(async () => {
  closeAll();
  await killAll();
});

describe("one instance, in-process store", () => {
  test("two clients see each other, messages, profiles, leadership hand-over, end", async () => {
    const a = makeClient({ url: server.ws });
    const states = [];
    a.on("state", (s) => states.push(s));
    assert.equal(a.state, "connecting");
    assert.equal(a.connectionId, null);
    await a.ready();
    assert.equal(a.state, "connected");
    assert.deepEqual(states, ["connected"]);
    assert.match(a.connectionId ?? "", /^[0-9a-f-]{36}$/);
    assert.equal(a.user, null);

    const sa = await a.join("room-1", { name: "Ada" });
    assert.equal(sa.id, "room-1");
    assert.equal(sa.you, a.connectionId);
    assert.equal(sa.leader, sa.you);
    assert.equal(sa.isLeader, true);
    assert.deepEqual(
      sa.members.map((m) => m.name),
      ["Ada"],
    );
    assert.deepEqual(sa.counts, { connections: 1, users: 1, reconnecting: 0 });

    const joinSeen = nextEvent(sa, "join", { message: "Ada sees Grace join" });
    const b = makeClient({ url: server.ws });
    const sb = await b.join("room-1", { name: "Grace" });
    const [grace] = await joinSeen;
    assert.equal(grace.name, "Grace");
    assert.equal(grace.connection, sb.you);
    assert.deepEqual(
      sa.members.map((m) => m.name),
      ["Ada", "Grace"],
    );
    assert.deepEqual(
      sb.members.map((m) => m.name),
      ["Ada", "Grace"],
    );
    assert.equal(sb.leader, sa.you);
    assert.equal(sb.isLeader, false);
    assert.deepEqual(sa.counts, { connections: 2, users: 2, reconnecting: 0 });
    assert.equal(sa.version, sb.version);

    // A message reaches the other member, with its sender.
    const got = nextEvent(sa, "message", { message: "Ada gets Grace's message" });
    await sb.publish({ text: "hello" });
    const [message] = await got;
    const { offset, stream, ...rest } = message;
    assert.deepEqual(rest, { from: sb.you, user: null, data: { text: "hello" } });
    assert.equal(offset, 1, "the session's first message");
    assert.equal(typeof stream, "string", "numbered in the session's stream");

    // A profile change shows in every view, and is confirmed to the changer too.
    const updated = nextEvent(sa, "update", { message: "Ada sees Grace's new name" });
    const ownUpdate = nextEvent(sb, "update", { message: "Grace sees her own new name" });
    await b.setProfile({ name: "Grace H" });
    assert.equal((await updated)[0].name, "Grace H");
    await ownUpdate;
    assert.deepEqual(
      sb.members.map((m) => m.name),
      ["Ada", "Grace H"],
    );

    // The leader goes: the other one leads, in the same change.
    const leaves = nextEvent(sb, "leave", { message: "Grace sees Ada leave" });
    const leads = nextEvent(sb, "leader", { message: "Grace becomes leader" });
    a.close();
    assert.equal(a.state, "closed");
    const [gone, reason] = await leaves;
    assert.equal(gone, sa.you);
    assert.equal(reason, "disconnected");
    const [leader] = await leads;
    assert.equal(leader, sb.you);
    assert.equal(sb.isLeader, true);

    // The client's view is the server's.
    const { body } = await getJson(`${server.http}/api/sessions/room-1`);
    assert.deepEqual(viewOf(sb), {
      members: body.members.map((m) => m.connection),
      leader: body.leader,
      version: body.version,
    });

    // Grace ends the session; a third member is told who ended it.
    const c = makeClient({ url: server.ws });
    const sc = await c.join("room-1", { name: "Linus" });
    const ended = nextEvent(sc, "ended", { message: "Linus sees the session end" });
    const ownEnded = nextEvent(sb, "ended", { message: "Grace's session emits ended" });
    await sb.end();
    assert.deepEqual((await ended)[0], { by: sb.you });
    assert.deepEqual((await ownEnded)[0], { by: sb.you });
    assert.equal(sb.state, "ended");
    assert.equal(sc.state, "ended");
    await assert.rejects(c.join("room-1"), (e) => e instanceof RollcallError && e.code === "session_ended");
  });

  test("errors are RollcallError with the protocol's code; on() returns an unsubscribe", async () => {
    const a = makeClient({ url: server.ws });
    await assert.rejects(a.join("not a valid id!"), (e) => {
      assert.ok(e instanceof RollcallError, String(e));
      assert.equal(e.code, "invalid_session");
      assert.ok(e.message.length > 0);
      return true;
    });
    const sa = await a.join("room-2", { name: "Ada" });
    const b = makeClient({ url: server.ws });
    const sb = await b.join("room-2", { name: "Grace" });
    await assert.rejects(sb.end(), (e) => e instanceof RollcallError && e.code === "not_leader");
    await assert.rejects(sa.publish("x".repeat(20000)), (e) => e instanceof RollcallError && e.code === "payload_too_large");

    let calls = 0;
    const off = sa.on("join", () => calls++);
    off();
    const c = makeClient({ url: server.ws });
    const seen = nextEvent(sa, "join", { message: "Ada sees Linus" });
    await c.join("room-2", { name: "Linus" });
    await seen;
    assert.equal(calls, 0, "an unsubscribed listener was called");

    // Leaving: the others see reason `left`; the session is not re-joined later.
    const leftSeen = nextEvent(sa, "leave", { message: "Ada sees Grace leave" });
    await sb.leave();
    assert.deepEqual((await leftSeen).slice(1), ["left"]);
    assert.equal(sb.state, "left");
    await assert.rejects(sb.publish(1), (e) => e instanceof RollcallError && e.code === "not_member");
  });

  test("requests made before the connection exists wait for it; a join rides the queue", async () => {
    const deadPort = await freePort(); // nothing listens there
    const client = makeClient({ url: [`ws://127.0.0.1:${deadPort}/ws`, server.ws] });
    const states = [];
    client.on("state", (s) => states.push(s));
    // Sent while the first URL is being refused; answered once the second one connects.
    const session = await client.join("room-3", { name: "Patient" });
    assert.equal(session.members.length, 1);
    assert.equal(client.state, "connected");
    assert.equal(client.url, server.ws);
    assert.deepEqual(states, ["disconnected", "connecting", "connected"]);
  });

  test("a request that finds no connection within requestTimeoutMs rejects with timeout", async () => {
    const deadPort = await freePort();
    const client = makeClient({ url: `ws://127.0.0.1:${deadPort}/ws`, requestTimeoutMs: 400 });
    const t0 = Date.now();
    await assert.rejects(client.join("room-4"), (e) => e instanceof RollcallError && e.code === "timeout");
    const waited = Date.now() - t0;
    assert.ok(waited >= 350 && waited < 2000, `rejected after ${waited} ms, bound 400 ms`);
    client.close();
    await assert.rejects(client.ready(), (e) => e instanceof RollcallError && e.code === "closed");
  });

  test("no reply → timeout; a request cut off by the connection's end → disconnected", async () => {
    const own = await startRollcall({ name: "stoppable" });
    const client = makeClient({ url: own.ws, requestTimeoutMs: 600, minReconnectDelayMs: 5000 });
    const session = await client.join("room-5", { name: "Ada" });
    await own.stop();
    const t0 = Date.now();
    await assert.rejects(session.publish("lost"), (e) => e instanceof RollcallError && e.code === "timeout");
    const waited = Date.now() - t0;
    assert.ok(waited >= 550 && waited < 2500, `timeout after ${waited} ms, bound 600 ms`);
    const cut = session.publish("cut off");
    const disconnected = waitFor(() => client.state === "disconnected", {
      message: "the client to see the killed server's socket close",
      describe: () => client.state,
    });
    own.signal("SIGKILL");
    await assert.rejects(cut, (e) => e instanceof RollcallError && e.code === "disconnected");
    await disconnected;
  });
});
