// Two real rollcall instances on a private redis-server: a client whose instance is killed
// (SIGKILL) fails over to the other one and resumes as the same member; one whose instance stops gracefully
// (SIGTERM → close 1012) reconnects at once to the next URL.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { closeAll, makeClient, viewOf } from "../support/clients.js";
import {
  getJson,
  instanceArgs as redisInstanceArgs,
  killAll,
  nextEvent,
  startRedis,
  startRollcall,
  waitFor,
} from "../support/servers.js";

const LEASE_MS = 2000;
const HEARTBEAT_MS = 500;
/** Members of a killed instance leave within the lease plus one reaper tick; asserted with 1.5 s of margin. */
const LOST_BOUND_MS = LEASE_MS + HEARTBEAT_MS + 1500;

/** @type {{ url: string }} */
let redis;
/** @type {import("../support/servers.js").Rollcall} */
let a;

// Without a resume grace: the bound of a lost member's removal is what these tests measure.
const instanceArgs = () =>
  redisInstanceArgs(redis.url, { leaseMs: LEASE_MS, heartbeatMs: HEARTBEAT_MS, graceMs: 0 });

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
  test("SIGKILL of B, which holds the leader: its client resumes on A as the same member; peers see no leave and no leader change; B's other member leaves (instance_lost) in time", async () => {
    const b = await startRollcall({ name: "b", args: instanceArgs() });

    // On A: the leader of `doomed`.
    const stayer = makeClient({ url: a.ws });
    const stayDoomed = await stayer.join("doomed", { name: "Stay" });
    // On B: the leader of `shared`, which can fail over (url [B, A]), and one that cannot (url [B]).
    const mover = makeClient({ url: [b.ws, a.ws], minReconnectDelayMs: 100, maxReconnectDelayMs: 300 });
    const moved = await mover.join("shared", { name: "Mover", avatar: "https://example.com/m.png" });
    const movedDoomed = await mover.join("doomed", { name: "Mover" });
    assert.equal(mover.url, b.ws);
    const stay = await stayer.join("shared", { name: "Stay" });
    const stranded = makeClient({ url: [b.ws] });
    const strandedSession = await stranded.join("shared", { name: "Stranded" });
    await waitFor(() => stay.members.length === 3 && movedDoomed.members.length === 2, {
      message: "the stayer on A to see both members on B",
      describe: () => stay.members.map((m) => m.name),
    });
    assert.equal(stay.leader, moved.you, "the mover leads `shared`");
    const oldMover = moved.you;
    const oldStranded = strandedSession.you;
    const joinedAt = moved.members.find((m) => m.connection === oldMover)?.joined_at;

    /** @type {Map<string, { reason: string, at: number }>} */
    const leftAt = new Map();
    stay.on("leave", (connection, reason) => leftAt.set(connection, { reason, at: Date.now() }));
    /** @type {Array<string | null>} */
    const leaders = [];
    stay.on("leader", (leader) => leaders.push(leader));
    const doomedEnded = nextEvent(movedDoomed, "ended", { timeoutMs: 8000, message: "the mover's `doomed` session to emit ended" });
    const resumed = nextEvent(moved, "recovered", {
      timeoutMs: 8000,
      message: "the mover to resume `shared` on A",
      predicate: (r) => r.resumed === true,
    });

    const t0 = Date.now();
    b.signal("SIGKILL");
    // While the mover reconnects, the other session it was in ends.
    await stayDoomed.end();

    await resumed;
    const resumedAfter = Date.now() - t0;
    console.log(`the mover resumed on A ${resumedAfter} ms after the kill`);
    assert.ok(resumedAfter <= 1000 + LEASE_MS, `resumed after ${resumedAfter} ms`);
    assert.equal(mover.state, "connected");
    assert.equal(mover.url, a.ws, "the mover should be on A now");
    assert.equal(moved.you, oldMover, "the same member");
    const me = moved.members.find((m) => m.connection === moved.you);
    assert.ok(me, "the view holds the mover itself");
    assert.equal(me.name, "Mover");
    assert.equal(me.avatar, "https://example.com/m.png");
    assert.equal(me.joined_at, joinedAt, "same joined_at");
    assert.equal(moved.leader, oldMover, "still the leader");
    assert.deepEqual((await doomedEnded)[0], { by: null });
    assert.equal(movedDoomed.state, "ended");

    // B's stranded member goes, with reason instance_lost, within the bound; the mover does not.
    await waitFor(() => leftAt.has(oldStranded), {
      timeoutMs: LOST_BOUND_MS + 1000,
      message: "the stayer to see B's stranded member leave",
      describe: () => Object.fromEntries(leftAt),
    });
    const { reason, at } = /** @type {{ reason: string, at: number }} */ (leftAt.get(oldStranded));
    assert.equal(reason, "instance_lost");
    const elapsed = at - t0;
    console.log(`B's stranded member left A's view ${elapsed} ms after the kill (lease ${LEASE_MS} ms, tick ${HEARTBEAT_MS} ms)`);
    assert.ok(elapsed <= LOST_BOUND_MS, `left after ${elapsed} ms, bound ${LOST_BOUND_MS} ms`);
    assert.ok(!leftAt.has(oldMover), "the resumed member never left");
    assert.deepEqual(leaders, [], "no leader change in `shared`");

    // Everyone's view is the server's: same members, leader and version.
    await waitFor(async () => JSON.stringify(viewOf(moved)) === JSON.stringify(await serverView(a, "shared")), {
      timeoutMs: 5000,
      message: "the mover's view to equal GET /api/sessions/shared on A",
      describe: () => viewOf(moved),
    });
    assert.deepEqual(viewOf(stay), await serverView(a, "shared"));
    assert.deepEqual(
      moved.members.map((m) => m.name),
      ["Mover", "Stay"],
    );
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
