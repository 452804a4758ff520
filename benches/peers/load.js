#!/usr/bin/env node
// One load generator for both sides of the peer comparison (benches/peers/README.md): the same
// scenarios drive rollcall (its WebSocket protocol, `ws`) or the Socket.IO peer
// (socketio-server.js, `socket.io-client`, websocket transport, emitWithAck).
//
//   node load.js --target rollcall --url ws://127.0.0.1:8080/ws --server-pid PID --redis-port P churn
//   node load.js --target socketio --url http://127.0.0.1:3000 --server-pid PID --redis-port P idle
//
// Scenarios and their options (defaults in brackets):
//   churn   --connections C [64] --rooms R [4] --seconds S [10] --warmup W [2]
//           every connection loops: join a random one of R rooms, then leave it.
//   idle    --connections N [5000] --rooms R [50] --hold H [5]   N connections, each in one room.
//   fanout  --members M [999] --rate r [200] --seconds S [10]     1 publisher → M members, one room.
// --server-pid may be repeated (CPU and RSS are summed); --redis-port is the private Redis both
// servers use (CPU from INFO cpu, memory from INFO memory, INFO commandstats deltas).
// Prints a markdown table and, last, one line `RESULT {json}` for summarize.js.
'use strict';

const fs = require('fs');
const os = require('os');
const { execFile, execSync } = require('child_process');
const { performance } = require('perf_hooks');

// ---- arguments ----------------------------------------------------------------------------
const opts = { 'server-pid': [] };
let scenario;
for (let a = process.argv.slice(2); a.length; ) {
  const k = a.shift();
  if (!k.startsWith('--')) scenario = k;
  else if (k === '--server-pid') opts['server-pid'].push(Number(a.shift()));
  else opts[k.slice(2)] = a.shift();
}
const num = (k, d) => (opts[k] === undefined ? d : Number(opts[k]));
const target = opts.target;
if (!['rollcall', 'socketio'].includes(target) || !opts.url || !['churn', 'idle', 'fanout'].includes(scenario)) {
  console.error('usage: load.js --target rollcall|socketio --url URL [--server-pid PID]… [--redis-port P] churn|idle|fanout [options]');
  process.exit(2);
}
const pids = opts['server-pid'];
const redisPort = opts['redis-port'];

// ---- clients: the same three calls on both systems ----------------------------------------
// connect(url) → client with request(type, fields) → reply (rejects on an error reply),
// onMessage(fn(data)) for `message` events, close(). Other events are read and dropped.
class RollcallClient {
  static connect(url) {
    const WebSocket = require('ws');
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      const c = new RollcallClient(ws);
      ws.once('error', reject);
      ws.once('close', () => reject(new Error('closed before welcome')));
      ws.once('message', () => resolve(c)); // the first frame is always `welcome`
    });
  }
  constructor(ws) {
    this.ws = ws;
    this.next = 1;
    this.pending = new Map();
    this.onmsg = null;
    ws.on('message', (buf) => {
      // Every frame is parsed, as a real client (and socket.io-client) does. Replies carry the
      // request's id; events never do.
      const f = JSON.parse(buf.toString());
      if (f.id === undefined) {
        if (f.type === 'message' && this.onmsg) this.onmsg(f.data);
        return;
      }
      const p = this.pending.get(f.id);
      if (!p) return;
      this.pending.delete(f.id);
      if (f.type === 'error') p.reject(new Error(f.code));
      else p.resolve(f);
    });
  }
  request(type, fields) {
    const id = this.next++;
    this.ws.send(JSON.stringify({ type, id, ...fields }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }
  onMessage(fn) { this.onmsg = fn; }
  close() { this.ws.terminate(); }
}

class SocketIoClient {
  static connect(url) {
    const { io } = require('socket.io-client');
    return new Promise((resolve, reject) => {
      const s = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, timeout: 30000 });
      s.once('connect', () => resolve(new SocketIoClient(s)));
      s.once('connect_error', reject);
    });
  }
  constructor(s) { this.s = s; }
  async request(type, fields) {
    const reply = await this.s.emitWithAck(type, fields);
    if (reply && reply.error) throw new Error(reply.error.code);
    return reply;
  }
  onMessage(fn) { this.s.on('message', (m) => fn(m.data)); }
  close() { this.s.disconnect(); }
}
const Client = target === 'rollcall' ? RollcallClient : SocketIoClient;

// Opens n clients, `parallel` at a time; setup(client, i) runs on each (e.g. a join).
async function connectMany(n, parallel, setup) {
  const clients = new Array(n);
  let next = 0;
  let failed = null;
  const worker = async () => {
    while (next < n && !failed) {
      const i = next++;
      try {
        const c = await Client.connect(opts.url);
        clients[i] = c;
        if (setup) await setup(c, i);
      } catch (e) {
        failed = e;
      }
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  if (failed) throw new Error(`connecting ${n} clients: ${failed.message}`);
  return clients;
}

// ---- measurement ------------------------------------------------------------------------------
const tick = Number(execSync('getconf CLK_TCK').toString()) || 100;
// The server's CPU time, all threads: { user, sys } in µs (utime and stime of /proc/PID/stat).
function serverCpuUs() {
  const sum = { user: 0, sys: 0 };
  for (const pid of pids) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    sum.user += (Number(f[11]) * 1e6) / tick;
    sum.sys += (Number(f[12]) * 1e6) / tick;
  }
  return sum;
}
function serverRssKib() {
  let sum = 0;
  for (const pid of pids) {
    sum += Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  }
  return sum;
}
function redisInfo() {
  if (!redisPort) return Promise.resolve(null);
  return new Promise((resolve, reject) =>
    execFile('redis-cli', ['-p', String(redisPort), 'INFO', 'cpu', 'memory', 'commandstats'], (err, out) => {
      if (err) return reject(err);
      const v = (k) => Number(new RegExp(`^${k}:([\\d.]+)`, 'm').exec(out)[1]);
      const calls = {};
      const usec = {};
      for (const m of out.matchAll(/^cmdstat_(\S+?):calls=(\d+),usec=(\d+)/gm)) {
        calls[m[1]] = Number(m[2]);
        usec[m[1]] = Number(m[3]);
      }
      resolve({ cpuUs: (v('used_cpu_sys') + v('used_cpu_user')) * 1e6, memory: v('used_memory'), calls, usec });
    }));
}
// A point of the measured window: time, server/Redis/own CPU, Redis INFO.
async function snap() {
  const t = performance.now();
  const server = pids.length ? serverCpuUs() : { user: NaN, sys: NaN };
  const self = process.cpuUsage();
  const redis = await redisInfo();
  return { t, server, self: self.user + self.system, redis };
}
// CPU µs per unit between two snaps, and Redis commands per unit (the reading INFO excluded).
function perUnit(a, b, units) {
  const r = {
    server_cpu_us: (b.server.user + b.server.sys - a.server.user - a.server.sys) / units,
    // The kernel's share (stime): on loopback it includes the receiving side's TCP work.
    server_sys_cpu_us: (b.server.sys - a.server.sys) / units,
    redis_cpu_us: a.redis ? (b.redis.cpuUs - a.redis.cpuUs) / units : NaN,
    loadgen_cpu_us: (b.self - a.self) / units,
  };
  r.total_cpu_us = r.server_cpu_us + r.redis_cpu_us;
  const cmds = {};
  const cmdUs = {};
  if (a.redis) {
    for (const [k, n] of Object.entries(b.redis.calls)) {
      const d = n - (a.redis.calls[k] || 0) - (k === 'info' ? 1 : 0);
      if (d > 0) {
        cmds[k] = +(d / units).toPrecision(4);
        cmdUs[k] = +((b.redis.usec[k] - (a.redis.usec[k] || 0)) / units).toPrecision(4);
      }
    }
  }
  return { cpu: r, cmds, cmdUs };
}

// Latency samples in ms, sorted once at the end.
class Samples {
  constructor() { this.a = new Float64Array(1 << 16); this.n = 0; }
  add(v) {
    if (this.n === this.a.length) { const b = new Float64Array(this.n * 2); b.set(this.a); this.a = b; }
    this.a[this.n++] = v;
  }
  mean() { let t = 0; for (let i = 0; i < this.n; i++) t += this.a[i]; return t / this.n; }
  q(p) {
    if (!this.sorted) { this.s = this.a.subarray(0, this.n).sort(); this.sorted = true; }
    return this.n ? this.s[Math.min(this.n - 1, Math.floor(p * this.n))] : NaN;
  }
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- scenarios --------------------------------------------------------------------------------
async function churn() {
  const C = num('connections', 64), R = num('rooms', 4), S = num('seconds', 10), W = num('warmup', 2);
  const clients = await connectMany(C, 32);
  const join = new Samples(), leave = new Samples();
  let measuring = false, stop = false, cycles = 0, errors = 0, firstError = null;
  const loop = async (c) => {
    while (!stop) {
      const session = `churn-${Math.floor(Math.random() * R)}`;
      try {
        const t0 = performance.now();
        await c.request('join', { session });
        const t1 = performance.now();
        await c.request('leave', { session });
        if (measuring) { cycles++; join.add(t1 - t0); leave.add(performance.now() - t1); }
      } catch (e) {
        errors++;
        firstError = firstError || e.message;
      }
    }
  };
  const loops = clients.map(loop);
  await sleep(W * 1000);
  const a = await snap();
  measuring = true;
  await sleep(S * 1000);
  measuring = false;
  const b = await snap();
  stop = true;
  await Promise.all(loops);
  const seconds = (b.t - a.t) / 1000;
  const u = perUnit(a, b, cycles);
  return {
    params: { connections: C, rooms: R, seconds: S, warmup: W },
    unit: 'cycle',
    figures: {
      cycles_per_s: cycles / seconds,
      join_p50_ms: join.q(0.5), join_p99_ms: join.q(0.99), join_mean_ms: join.mean(),
      leave_p50_ms: leave.q(0.5), leave_p99_ms: leave.q(0.99), leave_mean_ms: leave.mean(),
      ...u.cpu, errors,
    },
    first_error: firstError,
    commandstats: u.cmds,
    command_us: u.cmdUs,
  };
}

async function idle() {
  const N = num('connections', 5000), R = num('rooms', 50), H = num('hold', 5);
  const rss0 = serverRssKib(), redis0 = await redisInfo();
  const t0 = performance.now();
  const clients = await connectMany(N, 64, (c, i) => c.request('join', { session: `idle-${i % R}` }));
  const setup = (performance.now() - t0) / 1000;
  await sleep(H * 1000);
  const rss1 = serverRssKib(), redis1 = await redisInfo();
  const redisKib = redis0 ? (redis1.memory - redis0.memory) / 1024 / N : NaN;
  const serverKib = (rss1 - rss0) / N;
  clients.forEach((c) => c.close());
  return {
    params: { connections: N, rooms: R, hold: H },
    unit: 'connection',
    figures: {
      server_kib_per_conn: serverKib, redis_kib_per_conn: redisKib, total_kib_per_conn: serverKib + redisKib,
      server_rss_before_kib: rss0, server_rss_after_kib: rss1, setup_s: setup,
    },
  };
}

async function fanout() {
  const M = num('members', 999), rate = num('rate', 200), S = num('seconds', 10);
  const session = 'fanout';
  const expected = rate * S;
  const lat = new Samples();
  let delivered = 0, last = 0, sent = 0, acked = 0, errors = 0, firstError = null;
  const receivers = await connectMany(M, 32, (c) => c.request('join', { session }));
  for (const c of receivers) {
    c.onMessage((d) => {
      const now = performance.now();
      lat.add(now - d.t);
      delivered++;
      last = now;
    });
  }
  const [pub] = await connectMany(1, 1, (c) => c.request('join', { session }));
  await sleep(1000); // the set-up's member_joined events drain
  const a = await snap();
  const start = performance.now();
  while (sent < expected) {
    const due = Math.min(expected, Math.floor(((performance.now() - start) / 1000) * rate) + 1);
    while (sent < due) {
      sent++;
      pub.request('publish', { session, data: { t: performance.now(), seq: sent } }).then(
        () => acked++,
        (e) => { errors++; firstError = firstError || e.message; });
    }
    await sleep(1);
  }
  const sendSeconds = (performance.now() - start) / 1000;
  // Wait for every delivery, or for 2 s without any.
  for (let seen = -1, quiet = 0; delivered < expected * M && quiet < 2000; ) {
    await sleep(20);
    quiet = delivered === seen ? quiet + 20 : 0;
    seen = delivered;
  }
  const b = await snap();
  const u = perUnit(a, b, delivered);
  const window = (last - start) / 1000;
  return {
    params: { members: M, rate, seconds: S },
    unit: 'delivery',
    figures: {
      deliveries_per_s: delivered / window,
      delivery_p50_ms: lat.q(0.5), delivery_p99_ms: lat.q(0.99),
      ...u.cpu,
      delivered_fraction: delivered / (expected * M),
      offered_msg_per_s: sent / sendSeconds,
      publish_acked: acked, errors,
    },
    first_error: firstError,
    commandstats: perUnit(a, b, sent).cmds, // per published message
  };
}

// ---- report -------------------------------------------------------------------------------------
async function main() {
  setTimeout(() => { console.error('load.js: watchdog fired (run took too long)'); process.exit(3); },
    (num('seconds', 10) + num('warmup', 2) + num('hold', 5) + 240) * 1000).unref();
  const r = await { churn, idle, fanout }[scenario]();
  const result = { target, scenario, cores: os.cpus().length, loadavg: os.loadavg()[0], ...r };
  const fmt = (v) => (typeof v !== 'number' || !isFinite(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3));
  console.log(`\n${target} ${scenario} ${JSON.stringify(r.params)} (figures *_cpu_us are µs per ${r.unit})`);
  console.log('| figure | value |\n|---|---|');
  for (const [k, v] of Object.entries(r.figures)) console.log(`| ${k} | ${fmt(v)} |`);
  if (r.first_error) console.log(`first error: ${r.first_error}`);
  if (r.commandstats && Object.keys(r.commandstats).length) {
    const per = scenario === 'fanout' ? 'published message' : r.unit;
    console.log(`\nRedis commands per ${per} (INFO commandstats deltas; scripted commands counted by name too,`);
    console.log('and their time inside a script counted in the script\'s evalsha as well)');
    console.log('| command | calls | µs |\n|---|---|---|');
    const us = r.command_us || {};
    for (const [k, v] of Object.entries(r.commandstats).sort((x, y) => y[1] - x[1])) console.log(`| ${k} | ${v} | ${us[k] ?? ''} |`);
  }
  console.log(`RESULT ${JSON.stringify(result)}`);
  process.exit(0);
}
main().catch((e) => {
  console.error(`load.js: ${e.stack || e}`);
  process.exit(1);
});
