// Drives rollcall's own join and leave scripts (src/store/redis/lua, put together as RedisStore
// does) against one Redis, without a rollcall server: join+leave cycles of anonymous
// members, 16 in flight over 4 sessions that each have a subscriber, so every SPUBLISH is
// delivered. Operations on one session run one at a time, as its session actor runs them. Used by
// script-cost.sh, which runs Redis under callgrind and counts its instructions.
//
//   node script-cost.js --port P --cycles N [--warmup W] [--planned] [--batch K]
//
// --planned offers every join and leave the change this driver's view of the session says it
// makes (src/store/plan.rs), as a session actor does; without it, no operation has a plan.
// --batch K (K >= 2) writes K planned joins, then their K leaves, per session in one write_plans
// script each, as a session actor does with the joins and leaves queued behind a busy store
// (src/actors/session/membership.rs); each session keeps one resident member, its leader.
// Prints `ready` once W warm-up cycles are done and waits for a line on stdin (script-cost.sh
// zeroes callgrind's counters then), then runs N cycles and prints `done N, P planned`.
// The argument layout follows src/store/redis/membership.rs: change both together.
'use strict';

const fs = require('fs');
const path = require('path');
const readline = require('readline');
const { createClient } = require('redis');

const opts = { planned: false, batch: 0 };
for (let a = process.argv.slice(2); a.length; ) {
  const k = a.shift().replace(/^--/, '');
  if (k === 'planned') opts.planned = true;
  else if (k === 'outbox') opts.outbox = true;
  else opts[k] = a.shift();
}
opts.batch = Number(opts.batch || 0);
if (opts.batch) opts.planned = true;
const port = Number(opts.port), cycles = Number(opts.cycles || 3000), warmup = Number(opts.warmup || 500);
if (!port) {
  console.error('usage: node script-cost.js --port P --cycles N [--warmup W] [--planned]');
  process.exit(2);
}

const lua = path.join(__dirname, '../../src/store/redis/lua');
const read = (name) => fs.readFileSync(path.join(lua, name), 'utf8');
// As src/store/redis/scripts.rs composes them.
const script = (name) => read('session_base.lua') + read(name.replace('.lua', '_planned.lua'))
  + read('session_prelude.lua') + read(name);
const baseOnly = (name) => read('session_base.lua') + read(name);
// A join, or a batch with joins, carries a deadline in Redis time, as the engine sends it once it
// knows Redis's clock (src/store/redis/deadline.rs): the scripts then read TIME once.
const deadline = () => String(Date.now() + 60000);
const SESSIONS = ['s0', 's1', 's2', 's3'];
// With --outbox every change is also kept in the session's outbox, as with webhooks on.
const keys = (s) => ['meta', 'members', 'order', 'byinst', 'users', 'log', 'grace', ...(opts.outbox ? ['outbox'] : [])]
  .map((k) => `P:{s:${s}}:${k}`);
const channel = (s) => `P:{s:${s}}:ch`;
const INSTANCE = 'script-cost-0123456789abcdef';

// What a session actor knows of its session: header and members in election order.
const views = Object.fromEntries(SESSIONS.map((s) => [s, { version: 0, leader: null, epoch: 0, members: [] }]));
const queues = Object.fromEntries(SESSIONS.map((s) => [s, Promise.resolve()]));
const oneAtATime = (s, op) => {
  const done = queues[s].then(op);
  queues[s] = done.catch(() => {});
  return done;
};

function apply(view, change) {
  for (const e of change.events) {
    if (e.type === 'member_joined') view.members.push(e.member);
    if (e.type === 'member_left') view.members = view.members.filter((m) => m.connection !== e.connection);
  }
  Object.assign(view, { version: change.version, leader: change.leader, epoch: change.epoch });
}

// The header a plan applies to, as the scripts compare it (src/store/redis/membership.rs).
const basis = (view) => `${view.version}:${view.epoch}:${view.leader || ''}`;
const changeJson = (s, change) => JSON.stringify({ origin: INSTANCE, session: s, body: { kind: 'change', ...change } });

function joinPlan(view, member) {
  const latest = view.members[view.members.length - 1];
  if (!opts.planned || !latest || !view.leader) return null;
  const stamped = { ...member, joined_at: Math.max(Date.now(), latest.joined_at + 1) };
  return { stamped, change: { version: view.version + 1, leader: view.leader, epoch: view.epoch, events: [{ type: 'member_joined', member: stamped }] } };
}

function leavePlan(view, connection, reason) {
  if (!opts.planned || !view.leader || !view.members.some((m) => m.connection === connection)) return null;
  const events = [{ type: 'member_left', connection, user: null, reason }];
  let { leader, epoch } = view;
  if (leader === connection) {
    const next = view.members.find((m) => m.connection !== connection);
    leader = next ? next.connection : null;
    epoch += 1;
    events.push({ type: 'leader_changed', leader, epoch });
  }
  return { change: { version: view.version + 1, leader, epoch, events } };
}

// K planned joins in a row, then their K leaves, each batch one write_plans call; the argument
// layout follows write_batch in src/store/redis/membership.rs.
async function batchCycle(c, sha, s, worker, k) {
  const common = [channel(s), INSTANCE, s, '60000'];
  const write = async (plans, added, removed) => {
    const first = plans[0], last = plans[plans.length - 1].change;
    const anon = added.length - removed.length;
    const args = [first.basis, String(last.version), String(last.epoch), last.leader || '', String(anon),
      String(added.length), String(removed.length), '0', String(plans.length),
      plans.some((p) => p.change.events.some((e) => e.type === 'member_joined')) ? deadline() : ''];
    for (const m of added) args.push(m.connection, JSON.stringify(m));
    for (const m of added) args.push(String(m.joined_at), m.connection);
    for (const m of added) args.push('0', `${INSTANCE}\0${m.connection}`);
    for (const conn of removed) args.push(conn);
    for (const conn of removed) args.push(`${INSTANCE}\0${conn}`);
    const changes = plans.map((p) => changeJson(s, p.change));
    args.push(...changes, `[${changes.join(',')}]`);
    const reply = await c.evalSha(sha, { keys: keys(s), arguments: [...common, ...args] });
    if (reply[0] !== 'planned') throw new Error(`write_plans answered ${JSON.stringify(reply)}`);
    for (const p of plans) apply(views[s], p.change);
  };
  await oneAtATime(s, async () => {
    const view = views[s];
    let { version, epoch, leader } = view;
    let latest = view.members[view.members.length - 1].joined_at;
    const plans = [], added = [];
    for (let i = 0; i < k; i++) {
      const member = { connection: `c-${worker}-${next++}`, user: null, name: `load-${worker}`, avatar: null,
        joined_at: Math.max(Date.now(), latest + 1), instance: INSTANCE };
      latest = member.joined_at;
      plans.push({ basis: `${version}:${epoch}:${leader || ''}`,
        change: { version: version + 1, leader, epoch, events: [{ type: 'member_joined', member }] } });
      version += 1;
      added.push(member);
    }
    await write(plans, added, []);
  });
  await oneAtATime(s, async () => {
    const view = views[s];
    let { version, epoch, leader } = view;
    const leaving = view.members.slice(1, 1 + k).map((m) => m.connection);
    const plans = leaving.map((connection) => {
      const plan = { basis: `${version}:${epoch}:${leader || ''}`,
        change: { version: version + 1, leader, epoch, events: [{ type: 'member_left', connection, user: null, reason: 'left' }] } };
      version += 1;
      return plan;
    });
    await write(plans, [], leaving);
  });
  return k;
}
let next = 0;

async function main() {
  const c = createClient({ url: `redis://127.0.0.1:${port}` });
  const sub = c.duplicate();
  await Promise.all([c.connect(), sub.connect()]);
  await sub.sSubscribe(SESSIONS.map(channel), () => {});
  const join = await c.scriptLoad(script('join.lua'));
  const leave = await c.scriptLoad(script('leave.lua'));
  const writePlans = await c.scriptLoad(baseOnly('write_plans.lua'));
  let planned = 0;
  const outcome = (s, reply, plan, what) => {
    if (reply[0] === 'planned') {
      planned++;
      apply(views[s], plan.change);
    } else if (reply[0] === 'ok') {
      apply(views[s], JSON.parse(reply[1]).body);
    } else {
      throw new Error(`${what} answered ${JSON.stringify(reply)}`);
    }
  };
  const cycle = async (worker) => {
    const s = SESSIONS[next % SESSIONS.length];
    const connection = `c-${worker}-${next++}`;
    const common = [channel(s), INSTANCE, s, '60000'];
    const member = { connection, user: null, name: `load-${worker}`, avatar: null, joined_at: 0, instance: INSTANCE };
    await oneAtATime(s, async () => {
      const plan = joinPlan(views[s], member);
      const args = plan
        ? [basis(views[s]), connection, JSON.stringify(plan.stamped), String(plan.stamped.joined_at), '', changeJson(s, plan.change), String(plan.change.version)]
        : [''];
      outcome(s, await c.evalSha(join, { keys: keys(s), arguments: [...common, JSON.stringify(member), '100000', deadline(), ...args] }), plan, 'join');
    });
    await oneAtATime(s, async () => {
      const plan = leavePlan(views[s], connection, 'left');
      const ch = plan && plan.change;
      const args = plan
        ? [basis(views[s]), '', String(ch.version), ch.leader || '', String(ch.epoch), changeJson(s, ch)]
        : [''];
      outcome(s, await c.evalSha(leave, { keys: keys(s), arguments: [...common, connection, 'left', ...args] }), plan, 'leave');
    });
  };
  const run = async (n) => {
    let started = 0;
    const worker = async (w) => { while (started < n) { started++; await cycle(w); } };
    await Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    return started;
  };
  // Batches: one driver per session, K cycles per pair of batches.
  const runBatches = async (n) => {
    let done = 0;
    const driver = async (s, w) => {
      while (done + opts.batch <= n) {
        done += opts.batch;
        await batchCycle(c, writePlans, s, w, opts.batch);
        planned += 2 * opts.batch;
      }
    };
    await Promise.all(SESSIONS.map((s, w) => driver(s, w)));
    return done;
  };
  if (opts.batch) {
    // The resident leader of each session, then the warm-up.
    for (const s of SESSIONS) {
      const member = { connection: `resident-${s}`, user: null, name: 'resident', avatar: null, joined_at: 0, instance: INSTANCE };
      const reply = await c.evalSha(join, { keys: keys(s), arguments: [channel(s), INSTANCE, s, '60000', JSON.stringify(member), '100000', ''] });
      if (reply[0] === 'ok') apply(views[s], JSON.parse(reply[1]).body);
    }
    await runBatches(warmup);
    console.log('ready');
    const go = readline.createInterface({ input: process.stdin });
    await new Promise((resolve) => go.once('line', resolve));
    go.close();
    planned = 0;
    const done = await runBatches(cycles);
    console.log(`done ${done}, ${planned} planned`);
    await Promise.all([c.quit(), sub.quit()]);
    return;
  }
  await run(warmup);
  console.log('ready');
  const go = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => go.once('line', resolve));
  go.close();
  planned = 0;
  const done = await run(cycles);
  console.log(`done ${done}, ${planned} planned`);
  await Promise.all([c.quit(), sub.quit()]);
}

main().catch((e) => { console.error(e); process.exit(1); });
