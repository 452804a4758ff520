// A rolling restart of two real rollcall instances on a private redis-server, under 200 connected
// JS clients: each instance in turn stops gracefully (SIGTERM → close 1012), its clients move to
// the other one at once and resume there as the same members (the default resume grace keeps
// their place), and it starts again on the same port. No client ever sees a member leave, join or
// a leader change; every client keeps its connection id; every session keeps its members and
// its leader.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import WebSocket from "ws";

import { closeAll, makeClient, viewOf } from "../support/clients.js";
import {
  getJson,
  instanceArgs as redisInstanceArgs,
  killAll,
  startRedis,
  startRollcall,
  waitFor,
} from "../support/servers.js";

const LEASE_MS = 2000;
const HEARTBEAT_MS = 500;
const CLIENTS = 200;
const SESSIONS = 4;
const PER_SESSION = CLIENTS / SESSIONS;
/** Bound of each wait for a state (a roll takes well under a second here). */
const ROLL_TIMEOUT_MS = 15000;

/** @type {{ url: string }} */
let redis;

// The default resume grace (10 s): members of a stopping instance stay, reconnecting, for a resume.
const instanceArgs = () => redisInstanceArgs(redis.url, { leaseMs: LEASE_MS, heartbeatMs: HEARTBEAT_MS });

before(async () => {
  redis = await startRedis();
});

after(async () => {
  closeAll();
  await killAll();
});

/**
 * What one client saw.
 * @typedef {object} Seen
 * @property {number} i
 * @property {import("../../src/index.js").RollcallClient} client
 * @property {string} sessionId
 * @property {import("../../src/index.js").Session} session
 * @property {string} you  its connection id after the first join
 * @property {string} firstUrl
 * @property {Array<{ at: number, code: number, url: string }>} closes  every socket close, with its code
 * @property {Array<{ connection: string, reason: string }>} leaves
 * @property {Array<{ leader: string | null, epoch: number }>} leaders
 * @property {string[]} joins
 * @property {Array<{ at: number, recovered: boolean, resumed: boolean }>} recovered
 * @property {number} expectedResumes  rolls that moved this client
 * @property {Array<{ at: number, message: string }>} errors
 */

/**
 * A `ws` WebSocket that records the code of its close into `rec.closes` (the client itself
 * only says `disconnected`).
 * @param {Pick<Seen, "closes">} rec
 */
function recordingSocket(rec) {
  return class extends WebSocket {
    /** @param {string} url */
    constructor(url) {
      super(url);
      const bare = String(url).split("?")[0];
      this.addEventListener("close", (ev) => rec.closes.push({ at: Date.now(), code: ev.code, url: bare }));
    }
  };
}

/** The session as `GET /api/sessions/{id}` on `server` shows it. */
async function serverSession(server, id) {
  const { status, body } = await getJson(`${server.http}/api/sessions/${id}`);
  assert.equal(status, 200, JSON.stringify(body));
  return body;
}

/** The server's body in the shape of `viewOf`. */
const comparable = (body) => ({
  members: body.members.map((m) => m.connection),
  leader: body.leader,
  version: body.version,
});

describe("rolling restart of two instances", () => {
  test(`${CLIENTS} clients, ${SESSIONS} sessions: SIGTERM A, restart it, SIGTERM B, restart it; zero leave, zero join, zero leader change anywhere`, async () => {
    const started = Date.now();
    let a = await startRollcall({ name: "a", args: instanceArgs() });
    let b = await startRollcall({ name: "b", args: instanceArgs() });
    const sessionIds = Array.from({ length: SESSIONS }, (_, s) => `roll-${s}`);

    // Client i joins session i % 4; within a session, every other group of four starts on A
    // (url [A, B]) or on B (url [B, A]): 25 + 25 per session. The first joiner of each session
    // (client s, on A) is its leader.
    /** @type {Seen[]} */
    const recs = [];
    const connect = async (i) => {
      const urls = Math.floor(i / SESSIONS) % 2 === 0 ? [a.ws, b.ws] : [b.ws, a.ws];
      /** @type {Partial<Seen>} */
      const partial = {
        i,
        sessionId: sessionIds[i % SESSIONS],
        firstUrl: urls[0],
        closes: [],
        leaves: [],
        leaders: [],
        joins: [],
        recovered: [],
        expectedResumes: 0,
        errors: [],
      };
      const rec = /** @type {Seen} */ (partial);
      rec.client = makeClient({
        url: urls,
        WebSocket: recordingSocket(rec),
        minReconnectDelayMs: 50,
        maxReconnectDelayMs: 500,
        requestTimeoutMs: 5000,
      });
      rec.client.on("error", (err) => rec.errors.push({ at: Date.now(), message: `${err.code}: ${err.message}` }));
      rec.session = await rec.client.join(rec.sessionId, { name: `c${i}` });
      rec.you = rec.session.you;
      recs[i] = rec;
    };
    for (let s = 0; s < SESSIONS; s++) await connect(s);
    await Promise.all(Array.from({ length: CLIENTS - SESSIONS }, (_, k) => connect(SESSIONS + k)));
    const leaderOf = new Map(sessionIds.map((id, s) => [id, recs[s].you]));
    const youOf = new Map(recs.map((r) => [r.i, r.you]));
    assert.equal(new Set(youOf.values()).size, CLIENTS, "200 distinct connections");

    /**
     * Whether every client is connected to one of `servers` (its url), and its view equals the
     * server's (GET on `server`): 50 members, all present, the original leader.
     * @param {import("../support/servers.js").Rollcall} server
     * @param {(r: Seen) => boolean} [placed]
     */
    const settled = async (server, placed = () => true) => {
      if (!recs.every((r) => r.client.state === "connected" && placed(r))) return false;
      for (const id of sessionIds) {
        const body = await serverSession(server, id);
        if (body.members.length !== PER_SESSION) return false;
        if (!body.members.every((m) => m.state === "present")) return false;
        if ((body.counts?.reconnecting ?? 0) !== 0) return false;
        const want = JSON.stringify(comparable(body));
        for (const r of recs) {
          if (r.sessionId !== id) continue;
          if (JSON.stringify(viewOf(r.session)) !== want) return false;
          if (!r.session.members.every((m) => m.state === "present")) return false;
        }
      }
      return true;
    };
    const describeState = (server) => () => ({
      states: count(recs.map((r) => r.client.state)),
      urls: count(recs.map((r) => r.client.url)),
      resumed: count(recs.map((r) => `${r.recovered.filter((x) => x.resumed).length}/${r.expectedResumes}`)),
      notResumed: recs.filter((r) => r.recovered.some((x) => !x.resumed)).map((r) => r.i),
      views: sessionIds.map((id) => {
        const r = /** @type {Seen} */ (recs.find((x) => x.sessionId === id));
        return { id, members: r.session.members.length, reconnecting: r.session.counts.reconnecting, leader: r.session.leader, version: r.session.version };
      }),
      server: server.name,
      errors: recs.flatMap((r) => r.errors.map((e) => `${r.i}: ${e.message}`)).slice(0, 10),
    });

    await waitFor(() => settled(a), {
      timeoutMs: ROLL_TIMEOUT_MS,
      message: "every client's view to equal the server's after the joins",
      describe: describeState(a),
      intervalMs: 50,
    });
    for (const [id, leader] of leaderOf) {
      assert.equal((await serverSession(b, id)).leader, leader, `${id} is led by its first joiner`);
    }

    // From here on, every client records what it sees.
    for (const r of recs) {
      r.session.on("leave", (connection, reason) => r.leaves.push({ connection, reason }));
      r.session.on("join", (member) => r.joins.push(member.connection));
      r.session.on("leader", (leader, epoch) => r.leaders.push({ leader, epoch }));
      r.session.on("recovered", ({ recovered, resumed }) => r.recovered.push({ at: Date.now(), recovered, resumed }));
    }
    const setupMs = Date.now() - started;

    /**
     * Stops `stopping` gracefully and waits until its clients resumed on `survivor` and every view
     * equals the survivor's; then restarts it on the same port. Returns the restarted instance.
     * @param {import("../support/servers.js").Rollcall} stopping
     * @param {import("../support/servers.js").Rollcall} survivor
     */
    const roll = async (stopping, survivor) => {
      const moving = recs.filter((r) => r.client.url === stopping.ws);
      for (const r of moving) r.expectedResumes += 1;
      const t0 = Date.now();
      stopping.signal("SIGTERM");
      await waitFor(() => settled(survivor, (r) => r.client.url === survivor.ws && r.recovered.filter((x) => x.resumed).length === r.expectedResumes), {
        timeoutMs: ROLL_TIMEOUT_MS,
        message: `every client of ${stopping.name} to resume on ${survivor.name}, and every view to equal ${survivor.name}'s`,
        describe: describeState(survivor),
        intervalMs: 50,
      });
      const settledMs = Date.now() - t0;
      const closes = moving.flatMap((r) => r.closes.filter((c) => c.at >= t0));
      const codes = count(closes.map((c) => c.code));
      assert.deepEqual(codes, { 1012: moving.length }, `each moving client's socket closed once, with 1012`);
      const first1012 = Math.min(...closes.map((c) => c.at));
      const lastResumed = Math.max(...moving.map((r) => r.recovered[r.recovered.length - 1].at));
      // `recovered: false` (a snapshot instead of the missed events) is allowed by the contract and
      // only counted here: the client stays the same member either way. Seen in the second roll:
      // the first client to resume in each session on the just-restarted instance gets one.
      const snapshotted = moving.filter((r) => !r.recovered[r.recovered.length - 1].recovered);
      const snapshots = snapshotted.length;
      if (snapshots > 0) {
        const who = snapshotted.map((r) => `client ${r.i} (${r.sessionId}, ${r.recovered[r.recovered.length - 1].at - t0} ms)`);
        console.log(`roll of ${stopping.name}: resumed with recovered false: ${who.join(", ")}`);
      }
      console.log(
        `roll of ${stopping.name}: ${moving.length} clients moved to ${survivor.name}; first 1012 ${first1012 - t0} ms after SIGTERM, ` +
          `all resumed ${lastResumed - first1012} ms after the first 1012 (${snapshots} with recovered false: a snapshot); ` +
          `views equal the server's ${settledMs} ms after SIGTERM`,
      );
      assert.equal(await stopping.exited(10000), 0, `${stopping.name} exits cleanly after SIGTERM`);
      const again = await startRollcall({ name: stopping.name, args: instanceArgs(), port: stopping.port });
      assert.equal(again.ws, stopping.ws, "restarted on the same port");
      return again;
    };

    assert.equal(recs.filter((r) => r.client.url === a.ws).length, CLIENTS / 2);
    a = await roll(a, b);
    assert.equal(recs.filter((r) => r.client.url === b.ws).length, CLIENTS, "everyone is on B");
    b = await roll(b, a);
    assert.equal(recs.filter((r) => r.client.url === a.ws).length, CLIENTS, "everyone is on A");

    // Both instances (B just restarted) agree with every client.
    await waitFor(async () => (await settled(a)) && (await settled(b)), {
      timeoutMs: ROLL_TIMEOUT_MS,
      message: "every view to equal the server's on both instances after the restarts",
      describe: describeState(b),
      intervalMs: 50,
    });

    for (const r of recs) {
      assert.deepEqual(r.leaves, [], `client ${r.i} saw no member leave`);
      assert.deepEqual(r.joins, [], `client ${r.i} saw no member join`);
      assert.deepEqual(r.leaders, [], `client ${r.i} saw no leader change`);
      assert.equal(r.session.you, youOf.get(r.i), `client ${r.i} kept its connection id`);
      assert.equal(r.client.connectionId, youOf.get(r.i), `client ${r.i}'s connection is the same`);
      assert.equal(r.recovered.length, r.expectedResumes, `client ${r.i} recovered once per roll that moved it`);
      assert.ok(r.recovered.every((x) => x.resumed), `client ${r.i} resumed each time (never joined again): ${JSON.stringify(r.recovered)}`);
      assert.equal(r.session.leader, leaderOf.get(r.sessionId), `client ${r.i} sees the original leader`);
      assert.deepEqual(r.errors, [], `client ${r.i} reported no error`);
    }
    assert.equal(recs.filter((r) => r.expectedResumes === 2).length, CLIENTS / 2, "A's clients moved twice");
    assert.equal(recs.filter((r) => r.expectedResumes === 1).length, CLIENTS / 2, "B's clients moved once");
    for (const id of sessionIds) {
      const body = await serverSession(a, id);
      assert.equal(body.members.length, PER_SESSION, `${id} has its ${PER_SESSION} members`);
      assert.equal(body.leader, leaderOf.get(id), `${id} keeps its original leader`);
      assert.deepEqual(
        body.members.filter((m) => m.state !== "present").map((m) => m.connection),
        [],
        `${id}: no member reconnecting`,
      );
      assert.deepEqual(
        new Set(body.members.map((m) => m.connection)),
        new Set(recs.filter((r) => r.sessionId === id).map((r) => r.you)),
        `${id}'s members are the original connections`,
      );
    }
    console.log(`rolling restart under ${CLIENTS} clients: setup ${setupMs} ms, whole test ${Date.now() - started} ms`);
  });
});

/**
 * @param {Array<string | number | null>} values
 * @returns {Record<string, number>}
 */
function count(values) {
  /** @type {Record<string, number>} */
  const out = {};
  for (const v of values) out[String(v)] = (out[String(v)] ?? 0) + 1;
  return out;
}
