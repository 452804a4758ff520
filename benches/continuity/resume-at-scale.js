#!/usr/bin/env node
// Resume at scale (benches/continuity/README.md): 2,000 members of the JS client on one rollcall
// instance that is killed (SIGKILL) resume on the other one. Measures the time until every client
// emitted `recovered` with `resumed: true`, how many fell back to a join, what the observers on
// the survivor saw (leaves, joins, leader changes: all should be 0), and the CPU of redis-server
// and of the survivor during the 10 s after the kill.
//
//   node benches/continuity/resume-at-scale.js [--members 2000] [--sessions 20] [--window-ms 10000]
//        [--min-delay MS] [--max-delay MS] [--no-record]
//
// ROLLCALL_BIN picks the server binary (default: target/release/rollcall if built, else
// target/debug/rollcall); SERVER_ARGS adds flags to both instances. The results block is printed
// and, unless --no-record, appended to benches/continuity/RESULTS.md.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { appendFileSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
// The client and its `ws` come from clients/js (run `npm ci` there first).
const requireFromClient = createRequire(path.join(root, "clients/js/package.json"));
const WebSocket = requireFromClient("ws");
const { RollcallClient } = await import(path.join(root, "clients/js/src/index.js"));

/** Frames the members received and sent after the kill, by type (`counting` turns it on). */
const frames = { counting: false, received: /** @type {Record<string, number>} */ ({}), sent: /** @type {Record<string, number>} */ ({}) };
const typeOf = (data) => /"type"\s*:\s*"([a-z_]+)"/.exec(String(data).slice(0, 64))?.[1] ?? "?";
/** The `ws` WebSocket, counting the members' frames by type once `frames.counting` is set. */
class CountingWebSocket extends WebSocket {
  /** @param {string} url */
  constructor(url) {
    super(url);
    this.addEventListener("message", (ev) => {
      if (frames.counting) {
        let t = typeOf(ev.data);
        if (t === "error") t = `error ${/"code"\s*:\s*"([a-z_]+)"/.exec(String(ev.data))?.[1] ?? "?"}`;
        frames.received[t] = (frames.received[t] ?? 0) + 1;
      }
    });
  }
  /** @param {any} data */
  send(data) {
    if (frames.counting) {
      const t = typeOf(data);
      frames.sent[t] = (frames.sent[t] ?? 0) + 1;
    }
    super.send(data);
  }
}

// ---- options --------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const flag = (name) => argv.includes(`--${name}`);
const opt = (name, fallback) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < argv.length ? Number(argv[i + 1]) : fallback;
};
const MEMBERS = opt("members", 2000);
const SESSIONS = opt("sessions", 20);
const WINDOW_MS = opt("window-ms", 10000);
/** The JS client's own defaults unless given: 500 ms and 20 s. */
const MIN_DELAY = opt("min-delay", undefined);
const MAX_DELAY = opt("max-delay", undefined);
const TARGET_MS = 3000;
const SAMPLE_MS = 100;
const PER_SESSION = Math.ceil(MEMBERS / SESSIONS);
const RECORD = !flag("no-record");

const bin =
  process.env.ROLLCALL_BIN ??
  [path.join(root, "target/release/rollcall"), path.join(root, "target/debug/rollcall")].find((p) => existsSync(p));
if (!bin || !existsSync(bin)) {
  console.error("no rollcall binary: cargo build --release --bin rollcall (or set ROLLCALL_BIN)");
  process.exit(2);
}

// Sockets: this process holds every client's (members + observers), each server its own.
const fdLimit = Number(/Max open files\s+(\d+)/.exec(readFileSync("/proc/self/limits", "utf8"))?.[1] ?? 0);
if (fdLimit < MEMBERS + SESSIONS + 512) {
  console.error(`the open-file limit is ${fdLimit}; ${MEMBERS} clients need more: run \`ulimit -n 8192\` first`);
  process.exit(2);
}

// ---- processes ------------------------------------------------------------------------------
const dir = mkdtempSync(path.join(os.tmpdir(), "rollcall-continuity-"));
/** @type {import("node:child_process").ChildProcess[]} */
const children = [];
const cleanup = () => {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      // Gone already.
    }
  }
  rmSync(dir, { recursive: true, force: true });
};
process.on("exit", cleanup);
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => process.exit(130));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {net.AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/**
 * Polls `check` until truthy (returned) or throws after `timeoutMs` with `message`.
 * @template T
 * @param {() => T | Promise<T>} check
 */
async function waitFor(check, { timeoutMs, message, describe = () => "", intervalMs = 50 }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch {
      // Not yet.
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${message} ${describe()}`);
    await sleep(intervalMs);
  }
}

function redisPing(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    s.setTimeout(500);
    s.once("connect", () => s.write("PING\r\n"));
    s.once("data", (d) => {
      s.destroy();
      resolve(d.toString().startsWith("+PONG"));
    });
    s.once("error", () => resolve(false));
    s.once("timeout", () => {
      s.destroy();
      resolve(false);
    });
  });
}

async function startRedis() {
  const port = await freePort();
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: "ignore",
  });
  children.push(child);
  await waitFor(() => redisPing(port), { timeoutMs: 5000, message: `redis-server on ${port}` });
  return { port, url: `redis://127.0.0.1:${port}/`, child };
}

async function startRollcall(name, redisUrl) {
  const port = await freePort();
  const log = path.join(dir, `${name}.log`);
  const fd = openSync(log, "a");
  const extra = (process.env.SERVER_ARGS ?? "").split(/\s+/).filter(Boolean);
  const child = spawn(
    bin,
    [
      "serve",
      "--bind",
      `127.0.0.1:${port}`,
      "--redis-url",
      redisUrl,
      "--database-url",
      `sqlite://${dir}/${name}.sqlite`,
      "--instance-name",
      `continuity-${name}`,
      ...extra,
    ],
    { stdio: ["ignore", fd, fd], env: { ...process.env, RUST_LOG: "warn" } },
  );
  children.push(child);
  const http = `http://127.0.0.1:${port}`;
  await waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`exited: ${readFileSync(log, "utf8")}`);
      return (await fetch(`${http}/readyz`, { signal: AbortSignal.timeout(1000) })).status === 200;
    },
    { timeoutMs: 20000, message: `rollcall ${name} ready`, describe: () => readFileSync(log, "utf8").slice(-2000) },
  );
  return { name, port, ws: `ws://127.0.0.1:${port}/ws`, http, child, log };
}

async function serverSession(server, id) {
  const r = await fetch(`${server.http}/api/sessions/${id}`, { signal: AbortSignal.timeout(5000) });
  if (r.status !== 200) throw new Error(`GET /api/sessions/${id}: ${r.status}`);
  return r.json();
}

/** The survivor's counters that say how often its sessions re-synchronised (0 when never counted). */
const COUNTERS = ["rollcall_event_gaps_total", "rollcall_resyncs_total", "rollcall_members_reaped_total"];
async function counters(server) {
  const text = await (await fetch(`${server.http}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  /** @type {Record<string, number>} */
  const out = Object.fromEntries(COUNTERS.map((c) => [c, 0]));
  for (const line of text.split("\n")) {
    const name = /^([a-z_]+)[{ ]/.exec(line)?.[1];
    if (name && name in out) out[name] += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
  }
  return out;
}

// ---- CPU sampling, in a worker thread so that the busy client loop does not delay it ---------
const SAMPLER = `
const { parentPort, workerData } = require("node:worker_threads");
const { readFileSync } = require("node:fs");
const ticks = (pid) => {
  try {
    const s = readFileSync("/proc/" + pid + "/stat", "utf8");
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
    return Number(f[11]) + Number(f[12]); // utime + stime (fields 14 and 15)
  } catch {
    return null;
  }
};
const { pids, intervalMs, durationMs } = workerData;
const start = performance.now();
let last = { at: start, t: pids.map(ticks) };
const samples = [];
const timer = setInterval(() => {
  const now = { at: performance.now(), t: pids.map(ticks) };
  samples.push({ ms: now.at - last.at, d: now.t.map((t, i) => (t === null || last.t[i] === null ? null : t - last.t[i])), atMs: now.at - start });
  last = now;
  if (now.at - start >= durationMs) {
    clearInterval(timer);
    parentPort.postMessage(samples);
  }
}, intervalMs);
`;
const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim() || 100);

/**
 * Samples the CPU of `pids` every `intervalMs` for `durationMs`; resolves with, per pid, the peak
 * and average % of one core.
 * @param {number[]} pids
 */
function sampleCpu(pids, intervalMs, durationMs) {
  return new Promise((resolve, reject) => {
    const w = new Worker(SAMPLER, { eval: true, workerData: { pids, intervalMs, durationMs } });
    w.once("error", reject);
    w.once("message", (samples) => {
      w.terminate();
      resolve(
        pids.map((_, i) => {
          const pct = samples.map((s) => (s.d[i] === null ? 0 : ((s.d[i] / CLK_TCK) * 1000 * 100) / s.ms));
          const totalTicks = samples.reduce((a, s) => a + (s.d[i] ?? 0), 0);
          const totalMs = samples.reduce((a, s) => a + s.ms, 0);
          const peakAt = samples[pct.indexOf(Math.max(...pct))]?.atMs ?? 0;
          return {
            peak: Math.max(...pct),
            peakAtMs: peakAt,
            avg: ((totalTicks / CLK_TCK) * 1000 * 100) / totalMs,
            cpuMs: (totalTicks / CLK_TCK) * 1000,
          };
        }),
      );
    });
  });
}

// ---- the run --------------------------------------------------------------------------------
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const fmt = (n) => n.toLocaleString("en-US");

const redis = await startRedis();
const doomed = await startRollcall("doomed", redis.url);
const survivor = await startRollcall("survivor", redis.url);
const sessionIds = Array.from({ length: SESSIONS }, (_, s) => `continuity-${s}`);
const clientOptions = {
  WebSocket,
  ...(MIN_DELAY !== undefined ? { minReconnectDelayMs: MIN_DELAY } : {}),
  ...(MAX_DELAY !== undefined ? { maxReconnectDelayMs: MAX_DELAY } : {}),
};

/**
 * @typedef {object} Member
 * @property {number} i
 * @property {any} client
 * @property {any} session
 * @property {string} you
 * @property {number | null} disconnectedAt
 * @property {number | null} connectedAt  welcome of the first socket after the kill
 * @property {{ at: number, resumed: boolean, recovered: boolean } | null} recovered
 * @property {string[]} errors
 */
/** @type {Member[]} */
const members = [];
const setupStart = Date.now();

// Per session: its first member (on the doomed instance, so that it leads), then the observer on
// the survivor, then the other members.
const joinMember = async (i) => {
  const client = new RollcallClient({ url: [doomed.ws, survivor.ws], ...clientOptions, WebSocket: CountingWebSocket });
  /** @type {Member} */
  const m = { i, client, session: null, you: "", disconnectedAt: null, connectedAt: null, recovered: null, errors: [] };
  client.on("error", (e) => m.errors.push(`${e.code}: ${e.message}`));
  m.session = await client.join(sessionIds[i % SESSIONS], { name: `m${i}` });
  m.you = m.session.you;
  members[i] = m;
};
await Promise.all(sessionIds.map((_, s) => joinMember(s)));
const observers = await Promise.all(
  sessionIds.map(async (id) => {
    const client = new RollcallClient({ url: [survivor.ws], ...clientOptions });
    const session = await client.join(id, { name: "observer" });
    return { id, client, session, leaves: [], joins: [], leaders: [], reconnecting: 0, present: 0 };
  }),
);
const BATCH = 200;
for (let i = SESSIONS; i < MEMBERS; i += BATCH) {
  await Promise.all(Array.from({ length: Math.min(BATCH, MEMBERS - i) }, (_, k) => joinMember(i + k)));
}
const leaders = new Map(sessionIds.map((id, s) => [id, members[s].you]));
await waitFor(
  () =>
    observers.every(
      (o) => o.session.members.length === PER_SESSION + 1 && o.session.members.every((x) => x.state === "present"),
    ),
  {
    timeoutMs: 60000,
    message: "every observer to see its session's members",
    describe: () => JSON.stringify(observers.map((o) => o.session.members.length)),
  },
);
for (const o of observers) {
  if (o.session.leader !== leaders.get(o.id)) throw new Error(`${o.id}: the first member should lead`);
}
const setupMs = Date.now() - setupStart;
console.log(`${fmt(MEMBERS)} members in ${SESSIONS} sessions on the doomed instance, ${SESSIONS} observers on the survivor (${setupMs} ms)`);

// From here on, record.
for (const o of observers) {
  o.session.on("leave", (c, reason) => o.leaves.push({ c, reason }));
  o.session.on("join", (m) => o.joins.push(m.connection));
  o.session.on("leader", (l, epoch) => o.leaders.push({ l, epoch }));
  o.session.on("update", (m) => {
    if (m.state === "reconnecting") o.reconnecting += 1;
    else o.present += 1;
  });
}
let t0 = 0;
for (const m of members) {
  m.client.on("state", (s) => {
    if (!t0) return;
    if (s === "disconnected" && m.disconnectedAt === null) m.disconnectedAt = Date.now();
    if (s === "connected" && m.connectedAt === null) m.connectedAt = Date.now();
  });
  m.session.on("recovered", ({ resumed, recovered }) => {
    if (m.recovered === null) m.recovered = { at: Date.now(), resumed, recovered };
  });
}

// A quiet second with everyone connected, as a baseline; then the kill.
const pids = [/** @type {number} */ (redis.child.pid), /** @type {number} */ (survivor.child.pid), /** @type {number} */ (doomed.child.pid)];
const idle = await sampleCpu(pids, SAMPLE_MS, 2000);
const countersBefore = await counters(survivor);
const benchCpu0 = process.cpuUsage();
const sampling = sampleCpu(pids.slice(0, 2), SAMPLE_MS, WINDOW_MS);
const doomedExited = new Promise((r) => doomed.child.once("exit", r));
const loadBefore = os.loadavg();
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
frames.counting = true;
t0 = Date.now();
doomed.child.kill("SIGKILL");
await doomedExited;

let allBackMs = null;
try {
  await waitFor(() => members.every((m) => m.recovered !== null), {
    timeoutMs: Math.max(WINDOW_MS, 30000),
    message: "every member to emit recovered",
    intervalMs: 10,
    describe: () => `${members.filter((m) => m.recovered).length}/${MEMBERS} recovered`,
  });
  allBackMs = Math.max(...members.map((m) => /** @type {any} */ (m.recovered).at)) - t0;
} catch (e) {
  console.error(String(e));
}
const cpu = await sampling;
loopDelay.disable();
frames.counting = false;
const loadAfter = os.loadavg();
const benchCpu = process.cpuUsage(benchCpu0);
const windowMs = Date.now() - t0;

const countersAfter = await counters(survivor);
const counted = COUNTERS.map((c) => `${c.replace(/^rollcall_|_total$/g, "")} ${fmt(countersAfter[c] - countersBefore[c])}`).join(", ");

// After the window (past the lease and the reap of the dead instance): every session whole.
const views = await Promise.all(sessionIds.map((id) => serverSession(survivor, id)));
/** What is wrong with each session that is not whole (its member count, members not present, its leader). */
const notWhole = views
  .map((v) => {
    const wrong = [];
    if (v.members.length !== PER_SESSION + 1) wrong.push(`${v.members.length} members`);
    const away = v.members.filter((x) => x.state !== "present").length;
    if (away) wrong.push(`${away} not present`);
    if (v.leader !== leaders.get(v.session)) wrong.push("another leader");
    return wrong.length ? `${v.session}: ${wrong.join(", ")}` : null;
  })
  .filter(Boolean);
const whole = notWhole.length === 0;
const observersAgree = observers.every((o, s) => {
  const v = views[s];
  return (
    JSON.stringify(o.session.members.map((x) => x.connection)) === JSON.stringify(v.members.map((x) => x.connection)) &&
    o.session.leader === v.leader &&
    o.session.version === v.version
  );
});

// ---- figures --------------------------------------------------------------------------------
const back = members.filter((m) => m.recovered !== null);
const resumed = back.filter((m) => m.recovered?.resumed);
const fellBack = back.filter((m) => !m.recovered?.resumed).length;
const never = MEMBERS - back.length;
const snapshots = resumed.filter((m) => !m.recovered?.recovered).length;
const sameYou = members.filter((m) => m.session.you === m.you && m.client.connectionId === m.you).length;
const times = resumed.map((m) => /** @type {any} */ (m.recovered).at - t0).sort((a, b) => a - b);
const reconnects = resumed.filter((m) => m.connectedAt !== null);
const serverPart = reconnects.map((m) => /** @type {any} */ (m.recovered).at - /** @type {number} */ (m.connectedAt)).sort((a, b) => a - b);
const lostAt = members.filter((m) => m.disconnectedAt !== null).map((m) => /** @type {number} */ (m.disconnectedAt) - t0).sort((a, b) => a - b);
const firstConnect = reconnects.map((m) => /** @type {number} */ (m.connectedAt) - t0).sort((a, b) => a - b);
const sum = (k) => observers.reduce((a, o) => a + (Array.isArray(o[k]) ? o[k].length : o[k]), 0);
const leaves = sum("leaves");
const joins = sum("joins");
const leaderChanges = sum("leaders");
const errors = members.flatMap((m) => m.errors);
const met = allBackMs !== null && allBackMs <= TARGET_MS && fellBack === 0 && never === 0;

let commit = "unknown";
try {
  commit = execFileSync("git", ["-C", root, "rev-parse", "--short", "HEAD"]).toString().trim();
} catch {
  // Not a checkout.
}
const binInfo = `${path.relative(root, bin)} (built ${statSync(bin).mtime.toISOString().slice(0, 16)}Z)`;
let dirty = "";
try {
  const changed = execFileSync("git", ["-C", root, "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"]).toString().trim();
  if (changed) dirty = ` The working tree had ${changed.split("\n").length} uncommitted change(s) under src/ at run time: the binary may hold them.`;
} catch {
  // Not a checkout.
}
const byType = (counts) => Object.entries(counts).sort((x, y) => y[1] - x[1]).map(([t, n]) => `${t} ${fmt(n)}`).join(", ");
const ms = (ns) => (ns / 1e6).toFixed(0);
const redisVersion = /v=(\S+)/.exec(spawnSync("redis-server", ["--version"]).stdout.toString())?.[1] ?? "?";
const cpuModel = /model name\s*:\s*(.*)/.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "?";
const backoff = `min ${MIN_DELAY ?? 500} ms, max ${MAX_DELAY ?? 20000} ms${MIN_DELAY === undefined && MAX_DELAY === undefined ? " (the client's defaults)" : ""}`;
const f = (n) => (n === undefined || n === null ? "-" : `${Math.round(n)}`);
const c = (x) => `peak ${x.peak.toFixed(0)} % (at +${(x.peakAtMs / 1000).toFixed(1)} s), average ${x.avg.toFixed(1)} %, ${fmt(Math.round(x.cpuMs))} ms CPU`;

const block = [
  `### ${new Date().toISOString().slice(0, 19)}Z, commit ${commit}, ${binInfo}`,
  "",
  `Machine: ${os.cpus().length} cores (${cpuModel}), Node ${process.version}, Redis ${redisVersion}; open-file limit ${fdLimit}; load average ${loadBefore.map((x) => x.toFixed(2)).join(" ")} at the kill, ${loadAfter.map((x) => x.toFixed(2)).join(" ")} after the window (other work shares the machine).${dirty}`,
  `Setup: ${fmt(MEMBERS)} JS clients (url [doomed, survivor], backoff ${backoff}) in ${SESSIONS} sessions of ${PER_SESSION}, each session led by one of them, plus 1 observer per session on the survivor; both instances on their defaults${process.env.SERVER_ARGS ? ` and ${process.env.SERVER_ARGS}` : ""} (lease 3 s, heartbeat 1 s, resume grace 10 s); one private redis-server; all on this machine. Setup took ${fmt(setupMs)} ms.`,
  "",
  "```",
  `kill -9 of the doomed instance at t=0`,
  `resumed (recovered, resumed true)  ${fmt(resumed.length)} / ${fmt(MEMBERS)}   fell back to join: ${fellBack}   never recovered: ${never}`,
  `  of which with a snapshot (recovered false): ${snapshots}`,
  `same connection id (you) kept      ${fmt(sameYou)} / ${fmt(MEMBERS)}`,
  `all resumed                        ${allBackMs === null ? "NOT within the bound" : `${fmt(allBackMs)} ms after the kill`}   (target ≤ ${fmt(TARGET_MS)} ms: ${met ? "met" : "MISSED"})`,
  `per-client resume time after kill  p50 ${f(pct(times, 50))} ms   p99 ${f(pct(times, 99))} ms   max ${f(times[times.length - 1])} ms`,
  `  its parts: socket closed (seen by the client)             p50 ${f(pct(lostAt, 50))}  p99 ${f(pct(lostAt, 99))}  max ${f(lostAt[lostAt.length - 1])} ms`,
  `             first welcome on the survivor after the kill  p50 ${f(pct(firstConnect, 50))}  p99 ${f(pct(firstConnect, 99))}  max ${f(firstConnect[firstConnect.length - 1])} ms (backoff)`,
  `             welcome → resumed                             p50 ${f(pct(serverPart, 50))}  p99 ${f(pct(serverPart, 99))}  max ${f(serverPart[serverPart.length - 1])} ms`,
  `observers: member_left ${leaves}, member_joined ${joins}, leader changes ${leaderChanges}; updates to reconnecting ${sum("reconnecting")}, back to present ${sum("present")}`,
  `after ${fmt(windowMs)} ms: every session has its ${PER_SESSION} + 1 members, all present, the original leader: ${whole ? "yes" : `NO (${notWhole.join("; ")})`}; observers' views equal the server's: ${observersAgree ? "yes" : "NO"}`,
  `frames the ${fmt(MEMBERS)} members received in the window: ${byType(frames.received)}`,
  `frames they sent: ${byType(frames.sent)}`,
  `survivor's counters over the window: ${counted}`,
  `bench event loop delay in the window: p99 ${ms(loopDelay.percentile(99))} ms, max ${ms(loopDelay.max)} ms (the clients' own lag; large values inflate the times above)`,
  `client errors: ${errors.length}${errors.length ? ` (first: ${errors[0]})` : ""}`,
  `CPU, % of one core, ${SAMPLE_MS} ms samples over the ${fmt(WINDOW_MS)} ms after the kill (${1000 / CLK_TCK} ms tick resolution):`,
  `  redis-server  ${c(cpu[0])}`,
  `  survivor      ${c(cpu[1])}`,
  `  bench (Node, ${fmt(MEMBERS + SESSIONS)} clients)  average ${(((benchCpu.user + benchCpu.system) / 1000 / windowMs) * 100).toFixed(1)} %, ${fmt(Math.round((benchCpu.user + benchCpu.system) / 1000))} ms CPU`,
  `  before the kill (2 s, everyone connected): redis-server ${idle[0].avg.toFixed(1)} %, survivor ${idle[1].avg.toFixed(1)} %, doomed ${idle[2].avg.toFixed(1)} % average`,
  "```",
  "",
].join("\n");

console.log(`\n${block}`);
if (RECORD) {
  const results = path.join(here, "RESULTS.md");
  if (!existsSync(results)) {
    appendFileSync(results, "# Resume at scale: recorded runs\n\nAppended by `resume-at-scale.js` (see README.md), newest last.\n\n");
  }
  appendFileSync(results, `${block}\n`);
  console.log(`appended to ${path.relative(process.cwd(), results)}`);
}
for (const m of members) m.client.close();
for (const o of observers) o.client.close();
// The 3 s target is a figure to read; a member lost, a leave or a leader change is a failure.
process.exit(leaves === 0 && joins === 0 && leaderChanges === 0 && whole && fellBack === 0 && never === 0 ? 0 : 1);
