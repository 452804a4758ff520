#!/usr/bin/env node
// The Socket.IO peer of rollcall for the comparison in benches/peers (README.md there): a room
// server with the same requests as rollcall's WebSocket protocol, on Socket.IO 4.8.1 and the
// Redis adapter (@socket.io/redis-adapter 8.3.0, `redis` client v4). Prints nothing per event.
//
//   PORT=3000 REDIS_URL=redis://127.0.0.1:6390 node socketio-server.js
//   node socketio-server.js --port 3000 --redis-url redis://127.0.0.1:6390
//
// Events (every one answered through its ack):
//   join {session}          → joins the room; the others get member_joined {session, member};
//                             ack {session, you, leader, members, counts}
//   leave {session}         → leaves; the others get member_left {session, connection, reason}
//   publish {session, data} → the others get message {session, from, user, data}; ack {session}
//
// The member list in the join ack is the room as THIS process knows it
// (`io.of('/').adapter.rooms`, a local Map of Sets): cheap, and exact with one node.
// `io.in(room).fetchSockets()` would ask every node through Redis and wait for a timeout-bounded
// answer on each join; no usual Socket.IO app does that per join, so neither does this one. With
// several nodes the list would therefore miss remote members; rollcall's list is the global one.
// The "leader" is the local room's earliest member still present (a Set keeps insertion order);
// it is not fenced or agreed between nodes as rollcall's is.
'use strict';

const { createServer } = require('http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const { createClient } = require('redis');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
}
const port = Number(arg('port', process.env.PORT || 3000));
const redisUrl = arg('redis-url', process.env.REDIS_URL || 'redis://127.0.0.1:6379');
const SESSION = /^[A-Za-z0-9_-]{1,128}$/;

async function main() {
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  for (const c of [pub, sub]) c.on('error', (e) => console.error('redis:', e.message));
  await Promise.all([pub.connect(), sub.connect()]);

  const io = new Server({ transports: ['websocket'], serveClient: false, adapter: createAdapter(pub, sub) });
  const nsp = io.of('/');

  const member = (s, session) => ({
    connection: s.id, user: null, name: 'Guest', avatar: null, joined_at: s.data.joined.get(session),
  });

  io.on('connection', (socket) => {
    socket.data.joined = new Map(); // session → joined_at (ms)
    const ok = (ack, v) => typeof ack === 'function' && ack(v);
    const bad = (ack, code) => ok(ack, { error: { code } });

    socket.on('join', (req, ack) => {
      const session = req && req.session;
      if (typeof session !== 'string' || !SESSION.test(session)) return bad(ack, 'invalid_session');
      if (!socket.data.joined.has(session)) {
        socket.data.joined.set(session, Date.now());
        socket.join(session);
        socket.to(session).emit('member_joined', { session, member: member(socket, session) });
      }
      const ids = nsp.adapter.rooms.get(session) || new Set();
      const members = [];
      for (const id of ids) {
        const s = nsp.sockets.get(id);
        if (s) members.push(member(s, session));
      }
      ok(ack, {
        session, you: socket.id, leader: members.length ? members[0].connection : null,
        members, counts: { connections: members.length, users: members.length },
      });
    });

    socket.on('leave', (req, ack) => {
      const session = req && req.session;
      if (!socket.data.joined.has(session)) return bad(ack, 'not_member');
      socket.data.joined.delete(session);
      socket.leave(session);
      socket.to(session).emit('member_left', { session, connection: socket.id, reason: 'left' });
      ok(ack, { session });
    });

    socket.on('publish', (req, ack) => {
      const session = req && req.session;
      if (!socket.data.joined.has(session)) return bad(ack, 'not_member');
      socket.to(session).emit('message', { session, from: socket.id, user: null, data: req.data });
      ok(ack, { session });
    });

    socket.on('disconnecting', () => {
      for (const session of socket.data.joined.keys()) {
        socket.to(session).emit('member_left', { session, connection: socket.id, reason: 'disconnected' });
      }
    });
  });

  const http = createServer();
  io.attach(http);
  http.listen(port, '127.0.0.1', () => console.error(`socketio-server on 127.0.0.1:${port}, redis ${redisUrl}`));
  const stop = () => io.close(() => Promise.allSettled([pub.quit(), sub.quit()]).then(() => process.exit(0)));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
