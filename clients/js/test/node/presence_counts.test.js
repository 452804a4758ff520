// Presence mode `counts` against the real rollcall binary: the counts member's view holds itself
// and the leader, it hears `counts` instead of member events, and leadership reaches it.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { closeAll, makeClient } from "../support/clients.js";
import { killAll, nextEvent, startRollcall, waitFor } from "../support/servers.js";

/** @type {import("../support/servers.js").Rollcall} */
let server;

before(async () => {
  server = await startRollcall({ name: "counts", args: ["--counts-interval-ms", "100"] });
});

after(async () => {
  closeAll();
  await killAll();
});

describe("presence counts on the real server", () => {
  test("a counts member sees itself and the leader, gets counts, and can become leader", async () => {
    const lead = makeClient({ url: server.ws });
    const sl = await lead.join("arena", { name: "Lead" });
    const watcher = makeClient({ url: server.ws });
    const sw = await watcher.join("arena", { name: "Watch", presence: "counts" });
    assert.deepEqual(
      sw.members.map((m) => m.name).sort(),
      ["Lead", "Watch"],
      "its own record and the leader's",
    );
    let joins = 0;
    sw.on("join", () => joins++);
    const guests = [];
    for (let i = 0; i < 3; i++) {
      const g = makeClient({ url: server.ws });
      guests.push(g);
      await g.join("arena", { name: `Guest ${i}` });
    }
    await waitFor(() => sw.counts.connections === 5, {
      message: "the counts member's counts reach 5 connections",
    });
    assert.equal(joins, 0, "no join events in presence counts");
    assert.equal(sl.members.length, 5, "a full member lists everyone");

    const handed = nextEvent(sw, "leader", { message: "the counts member hears the hand-over" });
    await sl.leave();
    const [leader] = await handed;
    assert.equal(leader, sw.you, "the earliest member leads, counts mode or not");
    assert.equal(sw.isLeader, true);
    for (const g of guests) g.close();
    lead.close();
    watcher.close();
  });
});
