// A server that stops answering (SIGSTOP: its sockets stay open, nothing comes back) is found dead
// by the client's own `ping` and left for the next URL. Two independent instances (in-process
// stores), so the re-join on the second one starts a fresh session there.
import assert from "node:assert/strict";
import { after, describe, test } from "node:test";

import { RollcallError } from "../../src/index.js";
import { RecordingWebSocket, closeAll, makeClient } from "../support/clients.js";
import { killAll, nextEvent, startRollcall, waitFor } from "../support/servers.js";

const PING_MS = 300; // the server's --client-ping-ms, which `welcome` announces as heartbeat_ms
const REQUEST_TIMEOUT_MS = 1000;

after(async () => {
  closeAll();
  await killAll();
});

describe("dead server detection", () => {
  test("silence → ping after heartbeat_ms → no frame within requestTimeoutMs → closed, reconnected elsewhere", async () => {
    const frozen = await startRollcall({ name: "frozen", args: ["--client-ping-ms", String(PING_MS)] });
    const spare = await startRollcall({ name: "spare" });
    const client = makeClient({
      url: [frozen.ws, spare.ws],
      WebSocket: RecordingWebSocket,
      requestTimeoutMs: REQUEST_TIMEOUT_MS,
      minReconnectDelayMs: 100,
      maxReconnectDelayMs: 200,
    });
    const session = await client.join("watch", { name: "Ada" });
    assert.equal(client.url, frozen.ws);
    const oldYou = session.you;

    // Idle on a live server: the client pings about every heartbeat_ms, and the pong keeps it up.
    RecordingWebSocket.sent.length = 0;
    await waitFor(() => RecordingWebSocket.sent.filter((s) => s.frame.type === "ping").length >= 2, {
      timeoutMs: PING_MS * 4 + 1000,
      message: "two pings on an idle connection",
    });
    assert.equal(client.state, "connected");

    let disconnectedAt = 0;
    client.on("state", (s) => {
      if (s === "disconnected" && !disconnectedAt) disconnectedAt = Date.now();
    });
    const rejoined = nextEvent(session, "change", {
      timeoutMs: 8000,
      message: "the session to be re-joined on the spare instance",
      predicate: (s) => s.you !== oldYou,
    });
    await frozen.stop();
    const stoppedAt = Date.now();
    RecordingWebSocket.sent.length = 0;

    await waitFor(() => disconnectedAt > 0, {
      timeoutMs: PING_MS + REQUEST_TIMEOUT_MS + 3000,
      message: "the client to judge the stopped server dead",
      describe: () => ({ state: client.state, sent: RecordingWebSocket.sent.map((s) => s.frame.type) }),
    });
    const detected = disconnectedAt - stoppedAt;
    const pings = RecordingWebSocket.sent.filter((s) => s.frame.type === "ping" && s.at <= disconnectedAt);
    assert.ok(pings.length >= 1, "the client sent a ping before giving up");
    // Nothing answered during requestTimeoutMs after the last ping.
    const lastPing = pings[pings.length - 1].at;
    assert.ok(disconnectedAt - lastPing >= REQUEST_TIMEOUT_MS - 50, `gave up ${disconnectedAt - lastPing} ms after its ping`);
    console.log(`stopped server detected ${detected} ms after SIGSTOP (heartbeat ${PING_MS} ms + request timeout ${REQUEST_TIMEOUT_MS} ms)`);
    assert.ok(detected <= PING_MS + REQUEST_TIMEOUT_MS + 1000, `detected after ${detected} ms`);

    await rejoined;
    assert.equal(client.state, "connected");
    assert.equal(client.url, spare.ws);
    assert.deepEqual(
      session.members.map((m) => m.name),
      ["Ada"],
    );
    assert.equal(session.isLeader, true);
    frozen.cont();
  });

  test("a server that accepts TCP but never says welcome does not hold the client", async () => {
    const stopped = await startRollcall({ name: "stopped-before" });
    const spare = await startRollcall({ name: "spare-2" });
    await stopped.stop();
    const client = makeClient({
      url: [stopped.ws, spare.ws],
      requestTimeoutMs: 800,
      minReconnectDelayMs: 100,
      maxReconnectDelayMs: 200,
    });
    // A request made now would wait at most requestTimeoutMs for a connection, as long as the
    // attempt on the stopped server: it rejects with `timeout`.
    const early = client.join("late", { name: "Grace" }).then(
      () => null,
      (e) => e,
    );
    const t0 = Date.now();
    await client.ready();
    const took = Date.now() - t0;
    console.log(`gave up the silent server and connected to the spare ${took} ms after starting`);
    assert.equal(client.url, spare.ws);
    // The welcome wait (800 ms), the backoff (≤ 200 ms), the connection, with 1.5 s of margin.
    assert.ok(took >= 750 && took < 800 + 200 + 1500, `connected after ${took} ms`);
    const earlyError = await early;
    assert.ok(earlyError instanceof RollcallError && earlyError.code === "timeout", String(earlyError));
    const session = await client.join("late", { name: "Grace" });
    assert.equal(session.members.length, 1);
    stopped.cont();
  });
});
