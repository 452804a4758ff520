// Two real rollcall instances on a private redis-server: a client whose instance is killed
// (SIGKILL) fails over to the other one and re-joins; one whose instance stops gracefully
// (SIGTERM → close 1012) reconnects at once to the next URL.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { closeAll, makeClient, viewOf } from "../support/clients.js";
import { getJson, killAll, nextEvent, startRedis, startRollcall, waitFor } from "../support/servers.js";

const LEASE_MS = 2000;
const HEARTBEAT_MS = 500;
/** Members of a killed instance leave within the lease plus one reaper tick; asserted with 1.5 s of margin. */
const LOST_BOUND_MS = LEASE_MS + HEARTBEAT_MS + 1500;

/** @type {{ url: string }} */
let redis;
/** @type {import("../support/servers.js").Rollcall} */
let a;

const instanceArgs = () => ["--redis-url", redis.url, "--lease-ms", String(LEASE_MS), "--heartbeat-ms", String(HEARTBEAT_MS)];

before(async () => {
  redis = await startRedis();
  a = await startRollcall({ name: "a", args: instanceArgs() });
});

after(async () => {
  closeAll();
  await killAll();
});

/** The session as `GET /api/sessions/{id}` on `server` shows it, in the shape of `viewOf`. */
async function serverView(server, id) {
  const { status, body } = await getJson(`${server.http}/api/sessions/${id}`);
  assert.equal(status, 200, JSON.stringify(body));
  return { members: body.members.map((m) => m.connection), leader: body.leader, version: body.version };
}

describe("two instances on one Redis", () => {
  test("SIGKILL of B: its client reconnects to A and re-joins; A's clients see B's members leave (instance_lost) in time", async () => {
    const b = await startRollcall({ name: "b", args: instanceArgs() });

    // On A: the leader of both sessions.
    const stayer = makeClient({ url: a.ws });
    const stay = await stayer.join("shared", { name: "Stay" });
    const stayDoomed = await stayer.join("doomed", { name: "Stay" });

    // On B: a client that can fail over (url [B, A]) and one that cannot (url [B]).
    const mover = makeClient({ url: [b.ws, a.ws], minReconnectDelayMs: 800, maxReconnectDelayMs: 1600 });
    const moved = await mover.join("shared", { name: "Mover", avatar: "https://example.com/m.png" });
    const movedDoomed = await mover.join("doomed", { name: "Mover" });
    const stranded = makeClient({ url: [b.ws] });
    const strandedSession = await stranded.join("shared", { name: "Stranded" });
    assert.equal(mover.url, b.ws);

    await waitFor(() => stay.members.length === 3, {
      message: "the stayer on A to see both members on B",
      describe: () => stay.members.map((m) => m.name),
    });
    const oldMover = moved.you;
    const oldStranded = strandedSession.you;

    /** @type {Map<string, { reason: string, at: number }>} */
    const leftAt = new Map();
    stay.on("leave", (connection, reason) => leftAt.set(connection, { reason, at: Date.now() }));
    const moverStates = [];
    mover.on("state", (s) => moverStates.push(s));
    const doomedEnded = nextEvent(movedDoomed, "ended", { timeoutMs: 8000, message: "the mover's `doomed` session to emit ended after its re-join" });
    const rejoined = nextEvent(moved, "change", {
      timeoutMs: 8000,
      message: "the mover's re-join on A to replace its view",
      predicate: (s) => s.you !== oldMover,
    });

    const t0 = Date.now();
    b.signal("SIGKILL");
    // While the mover waits to reconnect, the session it was also in ends.
    await stayDoomed.end();

    await rejoined;
    assert.equal(mover.state, "connected");
    assert.equal(mover.url, a.ws, "the mover should be on A now");
    assert.deepEqual(moverStates.slice(0, 3), ["disconnected", "connecting", "connected"]);
    const me = moved.members.find((m) => m.connection === moved.you);
    assert.ok(me, "the re-joined view holds the mover itself");
    assert.equal(me.name, "Mover", "re-joined with the same name");
    assert.equal(me.avatar, "https://example.com/m.png", "re-joined with the same avatar");
    assert.deepEqual((await doomedEnded)[0], { by: null });
    assert.equal(movedDoomed.state, "ended");

    // A's clients see B's members go, with reason instance_lost, within the bound.
    await waitFor(() => leftAt.has(oldMover) && leftAt.has(oldStranded), {
      timeoutMs: LOST_BOUND_MS + 1000,
      message: "the stayer to see both of B's members leave",
      describe: () => Object.fromEntries(leftAt),
    });
    for (const id of [oldMover, oldStranded]) {
      const { reason, at } = /** @type {{ reason: string, at: number }} */ (leftAt.get(id));
      assert.equal(reason, "instance_lost");
      const elapsed = at - t0;
      console.log(`B's member ${id.slice(0, 8)} left A's view ${elapsed} ms after the kill (lease ${LEASE_MS} ms, tick ${HEARTBEAT_MS} ms)`);
      assert.ok(elapsed <= LOST_BOUND_MS, `left after ${elapsed} ms, bound ${LOST_BOUND_MS} ms`);
    }

    // The mover's view is the server's: same members, leader and version.
    await waitFor(async () => JSON.stringify(viewOf(moved)) === JSON.stringify(await serverView(a, "shared")), {
      timeoutMs: 5000,
      message: "the mover's view to equal GET /api/sessions/shared on A",
      describe: () => viewOf(moved),
    });
    assert.deepEqual(viewOf(moved), await serverView(a, "shared"));
    assert.deepEqual(viewOf(stay), await serverView(a, "shared"));
    assert.deepEqual(
      moved.members.map((m) => m.name),
      ["Stay", "Mover"],
    );
    assert.equal(moved.leader, stay.you);
  });

  test("SIGTERM of B (close 1012): its client reconnects at once to the next URL, without backoff", async () => {
    const b = await startRollcall({ name: "b2", args: instanceArgs() });
    const stayer = makeClient({ url: a.ws });
    const stay = await stayer.join("graceful", { name: "Stay" });
    // A backoff would wait at least 10 s: a reconnect within 2 s is the immediate one.
    const mover = makeClient({ url: [b.ws, a.ws], minReconnectDelayMs: 10000, maxReconnectDelayMs: 20000 });
    const moved = await mover.join("graceful", { name: "Mover" });
    const oldMover = moved.you;
    await waitFor(() => stay.members.length === 2, { message: "the stayer to see the mover" });

    let disconnectedAt = 0;
    let connectedAt = 0;
    mover.on("state", (s) => {
      if (s === "disconnected" && !disconnectedAt) disconnectedAt = Date.now();
      if (s === "connected" && disconnectedAt && !connectedAt) connectedAt = Date.now();
    });
    const oldLeft = nextEvent(stay, "leave", {
      message: "the stayer to see the mover's old connection leave",
      predicate: (connection) => connection === oldMover,
    });
    const rejoined = nextEvent(moved, "change", {
      timeoutMs: 5000,
      message: "the mover to re-join on A",
      predicate: (s) => s.you !== oldMover,
    });
    b.signal("SIGTERM");
    const [, reason] = await oldLeft;
    assert.equal(reason, "shutdown");
    await rejoined;
    const gap = connectedAt - disconnectedAt;
    console.log(`reconnected to the next URL ${gap} ms after the 1012 close`);
    assert.ok(connectedAt > 0 && gap < 2000, `reconnected ${gap} ms after the close (a backoff waits ≥ 10 s)`);
    assert.equal(mover.url, a.ws);
    assert.equal(await b.exited(10000), 0, "B should exit cleanly after SIGTERM");
    await waitFor(async () => JSON.stringify(viewOf(moved)) === JSON.stringify(await serverView(a, "graceful")), {
      message: "the mover's view to equal the server's after the graceful hand-over",
      describe: () => viewOf(moved),
    });
  });
});
