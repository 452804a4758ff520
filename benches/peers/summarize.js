#!/usr/bin/env node
// Aggregates the RESULT lines of load.js (one JSON object a line, as run.sh collects them in
// results.jsonl) into markdown tables: per scenario and figure, the median of each side, the
// ratio rollcall ÷ Socket.IO and the spread (min–max) of each side; then the median Redis
// commands per unit of each side.
//
//   node benches/peers/summarize.js benches/peers/results/<time>/results.jsonl
'use strict';

const fs = require('fs');

const rows = fs.readFileSync(process.argv[2], 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (v) => (v === undefined || !isFinite(v) ? '–' : Math.abs(v) >= 100 ? Math.round(v).toLocaleString('en-US')
  : Math.abs(v) >= 10 ? v.toFixed(1) : v === 0 || Math.abs(v) >= 0.01 ? v.toFixed(3) : v.toPrecision(2));
const spread = (a) => (a.length ? `${fmt(Math.min(...a))}–${fmt(Math.max(...a))}` : '–');
const sides = ['rollcall', 'socketio'];

for (const scenario of ['churn', 'idle', 'fanout']) {
  const of = (t) => rows.filter((r) => r.scenario === scenario && r.target === t);
  const all = sides.map(of);
  if (!all[0].length && !all[1].length) continue;
  const any = all[0][0] || all[1][0];
  const load = rows.filter((r) => r.scenario === scenario).map((r) => r.loadavg);
  console.log(`\n### ${scenario} ${JSON.stringify(any.params)}, *_cpu_us = µs per ${any.unit}`);
  console.log(`runs: rollcall ${all[0].length}, Socket.IO ${all[1].length}; ${any.cores} cores shared by ` +
    `load generator, server and Redis; 1-min load average at the end of a run ${spread(load)}\n`);
  console.log('| figure | rollcall median | Socket.IO median | ratio rollcall ÷ Socket.IO | rollcall min–max | Socket.IO min–max |');
  console.log('|---|---|---|---|---|---|');
  for (const figure of Object.keys(any.figures)) {
    const [a, b] = all.map((rs) => rs.map((r) => r.figures[figure]).filter((v) => typeof v === 'number' && isFinite(v)));
    const [ma, mb] = [a, b].map((v) => (v.length ? median(v) : undefined));
    const ratio = ma !== undefined && mb > 0 && ma >= 0 ? `${fmt(ma / mb)}×` : '–';
    console.log(`| ${figure} | ${fmt(ma)} | ${fmt(mb)} | ${ratio} | ${spread(a)} | ${spread(b)} |`);
  }
  if (scenario === 'idle') continue;
  const names = [...new Set(all.flat().flatMap((r) => Object.keys(r.commandstats || {})))];
  if (!names.length) continue;
  const per = scenario === 'fanout' ? 'published message' : any.unit;
  console.log(`\nRedis commands per ${per}, median (INFO commandstats; commands inside scripts count under their own names too)\n`);
  console.log('| command | rollcall | Socket.IO |\n|---|---|---|');
  const med = (rs, n) => (rs.length ? median(rs.map((r) => (r.commandstats || {})[n] || 0)) : undefined);
  names.sort((x, y) => (med(all[0], y) || 0) + (med(all[1], y) || 0) - (med(all[0], x) || 0) - (med(all[1], x) || 0));
  const cell = (v) => (v === undefined ? '–' : v ? fmt(v) : '·');
  for (const n of names) console.log(`| ${n} | ${cell(med(all[0], n))} | ${cell(med(all[1], n))} |`);
  const total = (rs) => (rs.length ? median(rs.map((r) => Object.values(r.commandstats || {}).reduce((x, y) => x + y, 0))) : undefined);
  console.log(`| all commands | ${cell(total(all[0]))} | ${cell(total(all[1]))} |`);
}
