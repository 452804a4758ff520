// Unit tests of the pure view logic (src/view.js): versions, gaps, replacements, ended sessions,
// presence mode "counts".
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { applyFrame, countMembers, createView, endView, replaceView } from "../../src/view.js";

/** @param {string} connection @param {number} joinedAt @param {Partial<import("../../src/view.js").Member>} [rest] */
function member(connection, joinedAt, rest = {}) {
  return { connection, user: null, name: connection.toUpperCase(), avatar: null, joined_at: joinedAt, state: "present", ...rest };
}

const A = member("a", 100);
const B = member("b", 200);
const C = member("c", 300);

function joinedAsB(extra = {}) {
  return {
    type: "joined",
    id: 1,
    session: "s",
    you: "b",
    version: 2,
    leader: "a",
    epoch: 1,
    members: [B, A],
    counts: { connections: 2, users: 2 },
    ...extra,
  };
}

/** Runs frames through the view, collecting effects. */
function run(view, ...frames) {
  const effects = [];
  for (const f of frames) {
    const step = applyFrame(view, f);
    view = step.view;
    effects.push(...step.effects);
  }
  return { view, effects, types: effects.map((e) => e.type) };
}

const joined = (connection, version, joinedAt = 1000) => ({
  type: "member_joined",
  session: "s",
  version,
  member: member(connection, joinedAt),
});
const left = (connection, version, reason = "left") => ({
  type: "member_left",
  session: "s",
  version,
  connection,
  reason,
});
const leader = (id, version, epoch) => ({ type: "leader_changed", session: "s", version, leader: id, epoch });

describe("createView", () => {
  test("orders members by joined_at and keeps the reply's fields", () => {
    const view = createView(joinedAsB());
    assert.deepEqual(
      view.members.map((m) => m.connection),
      ["a", "b"],
    );
    assert.equal(view.you, "b");
    assert.equal(view.version, 2);
    assert.equal(view.leader, "a");
    assert.equal(view.epoch, 1);
    assert.deepEqual(view.counts, { connections: 2, users: 2, reconnecting: 0 });
  });

  test("ties of joined_at are broken by connection id", () => {
    const view = createView(joinedAsB({ members: [member("z", 5), member("m", 5), member("x", 1)] }));
    assert.deepEqual(
      view.members.map((m) => m.connection),
      ["x", "m", "z"],
    );
  });
});

describe("events in order", () => {
  test("version + 1 is applied, emitting the event then change", () => {
    const { view, effects } = run(createView(joinedAsB()), joined("c", 3, 300));
    assert.equal(view.version, 3);
    assert.deepEqual(
      view.members.map((m) => m.connection),
      ["a", "b", "c"],
    );
    assert.deepEqual(effects, [{ type: "join", member: member("c", 300) }, { type: "change" }]);
    assert.deepEqual(view.counts, { connections: 3, users: 3, reconnecting: 0 });
  });

  test("a sequence of joins, a leave and a leader change", () => {
    const { view, types } = run(
      createView(joinedAsB()),
      joined("c", 3, 300),
      left("a", 4, "disconnected"),
      leader("b", 4, 2),
      joined("d", 5, 400),
    );
    assert.deepEqual(types, ["join", "change", "leave", "change", "leader", "change", "join", "change"]);
    assert.equal(view.version, 5);
    assert.equal(view.leader, "b");
    assert.equal(view.epoch, 2);
    assert.deepEqual(
      view.members.map((m) => m.connection),
      ["b", "c", "d"],
    );
  });

  test("the parts of one atomic change share its version and are all applied", () => {
    // docs/protocol.md §1.7: all events of one atomic change carry the same version.
    const { view, effects } = run(createView(joinedAsB()), left("a", 3, "disconnected"), leader("b", 3, 2));
    assert.deepEqual(effects, [
      { type: "leave", connection: "a", reason: "disconnected" },
      { type: "change" },
      { type: "leader", leader: "b", epoch: 2 },
      { type: "change" },
    ]);
    assert.equal(view.leader, "b");
    assert.equal(view.version, 3);
  });

  test("member_updated replaces the record", () => {
    const renamed = { ...A, name: "Ada" };
    const { view, effects } = run(createView(joinedAsB()), {
      type: "member_updated",
      session: "s",
      version: 3,
      member: renamed,
    });
    assert.equal(view.members[0].name, "Ada");
    assert.deepEqual(effects, [{ type: "update", member: renamed }, { type: "change" }]);
  });

  test("messages pass through without touching the view", () => {
    const before = createView(joinedAsB());
    const { view, effects } = run(before, { type: "message", session: "s", from: "a", user: null, data: { t: 1 } });
    assert.equal(view, before);
    assert.deepEqual(effects, [{ type: "message", from: "a", user: null, data: { t: 1 } }]);
  });

  test("counts follow users: two connections of one user count once", () => {
    assert.deepEqual(
      countMembers([member("a", 1, { user: "u1" }), member("b", 2, { user: "u1" }), member("c", 3)]),
      { connections: 3, users: 2, reconnecting: 0 },
    );
  });
});

describe("duplicates and old events", () => {
  test("an exact repeat at the view's version is ignored", () => {
    const once = run(createView(joinedAsB()), joined("c", 3, 300));
    const twice = run(once.view, joined("c", 3, 300));
    assert.equal(twice.view, once.view);
    assert.deepEqual(twice.effects, []);
  });

  test("events below the view's version are ignored", () => {
    const { view, effects } = run(createView(joinedAsB({ version: 10 })), joined("c", 9), left("a", 4), leader("b", 10, 9));
    assert.deepEqual(effects, []);
    assert.equal(view.version, 10);
    assert.equal(view.leader, "a");
  });

  test("events at the version of a whole view (joined) are ignored: it already holds them", () => {
    const { effects } = run(createView(joinedAsB()), leader("a", 2, 1), joined("b", 2, 200));
    assert.deepEqual(effects, []);
  });
});

describe("gaps", () => {
  test("a gap asks for members once and applies nothing until the reply", () => {
    const start = createView(joinedAsB());
    const { view, effects } = run(start, joined("c", 4), joined("d", 5), left("a", 6));
    assert.deepEqual(effects, [{ type: "resync" }]);
    assert.equal(view.resyncing, true);
    assert.equal(view.version, 2);
    assert.deepEqual(view.members, start.members);
  });

  test("the members reply replaces the view with join/leave for the difference, then change", () => {
    let { view } = run(createView(joinedAsB()), joined("c", 4));
    const reply = {
      type: "members",
      id: 7,
      session: "s",
      version: 6,
      leader: "b",
      epoch: 2,
      members: [B, C, member("d", 400)],
      counts: { connections: 3, users: 3 },
    };
    const step = applyFrame(view, reply);
    view = step.view;
    assert.deepEqual(step.effects, [
      { type: "leave", connection: "a", reason: "resync" },
      { type: "join", member: C },
      { type: "join", member: member("d", 400) },
      { type: "leader", leader: "b", epoch: 2 },
      { type: "change" },
    ]);
    assert.equal(view.resyncing, false);
    assert.equal(view.version, 6);
    // Back in order: the next version applies, a repeat of 6 does not.
    const after = run(view, joined("c", 6), joined("e", 7, 500));
    assert.deepEqual(after.types, ["join", "change"]);
    assert.equal(after.view.version, 7);
  });
});

describe("snapshot", () => {
  test("replaces the view, emitting the differences (resync), updates, then change", () => {
    const start = createView(joinedAsB({ version: 5 }));
    const renamedB = { ...B, name: "Bea" };
    const { view, effects } = run(start, {
      type: "snapshot",
      session: "s",
      version: 9,
      leader: "a",
      epoch: 1,
      members: [C, renamedB],
      counts: { connections: 2, users: 2 },
    });
    assert.deepEqual(effects, [
      { type: "leave", connection: "a", reason: "resync" },
      { type: "join", member: C },
      { type: "update", member: renamedB },
      { type: "change" },
    ]);
    assert.deepEqual(
      view.members.map((m) => m.connection),
      ["b", "c"],
    );
    assert.equal(view.version, 9);
    assert.equal(view.sealed, true);
  });

  test("a snapshot equal to the view emits only change", () => {
    const start = createView(joinedAsB());
    const { effects } = run(start, { ...joinedAsB(), type: "snapshot" });
    assert.deepEqual(effects, [{ type: "change" }]);
  });

  test("the joined reply of a re-join replaces the view and the own connection id", () => {
    const start = createView(joinedAsB());
    const rejoined = { ...joinedAsB(), you: "b2", version: 4, members: [A, member("b2", 250)] };
    const step = replaceView(start, rejoined);
    assert.equal(step.view.you, "b2");
    assert.deepEqual(
      step.effects.map((e) => e.type),
      ["leave", "join", "change"],
    );
  });
});

describe("ended sessions", () => {
  test("session_ended empties the view, emits ended then change, and nothing after", () => {
    const start = createView(joinedAsB());
    const { view, effects } = run(
      start,
      { type: "session_ended", session: "s", by: "a" },
      left("a", 3, "ended"),
      leader(null, 3, 2),
      { type: "message", session: "s", from: "a", user: null, data: 1 },
    );
    assert.deepEqual(effects, [{ type: "ended", by: "a" }, { type: "change" }]);
    assert.equal(view.ended, true);
    assert.equal(view.endedBy, "a");
    assert.deepEqual(view.members, []);
    assert.equal(view.leader, null);
  });

  test("endView twice emits once", () => {
    const once = endView(createView(joinedAsB()), "b");
    const twice = endView(once.view, "b");
    assert.equal(once.effects.length, 2);
    assert.deepEqual(twice.effects, []);
  });
});

describe("presence mode counts", () => {
  const joinedCounts = () =>
    createView(
      {
        type: "joined",
        session: "s",
        you: "b",
        version: 40,
        leader: "a",
        epoch: 3,
        members: [A, B],
        counts: { connections: 120, users: 100 },
      },
      "counts",
    );

  test("counts events update counts, ignoring older ones", () => {
    const { view, effects } = run(
      joinedCounts(),
      { type: "counts", session: "s", version: 45, counts: { connections: 125, users: 104 } },
      { type: "counts", session: "s", version: 44, counts: { connections: 1, users: 1 } },
    );
    assert.deepEqual(view.counts, { connections: 125, users: 104, reconnecting: 0 });
    assert.equal(view.version, 45);
    assert.deepEqual(effects, [{ type: "counts", counts: { connections: 125, users: 104, reconnecting: 0 } }, { type: "change" }]);
  });

  test("a leader change across a version jump is applied, not treated as a gap", () => {
    const { view, types } = run(joinedCounts(), leader("b", 57, 4));
    assert.deepEqual(types, ["leader", "change"]);
    assert.equal(view.leader, "b");
    assert.equal(view.epoch, 4);
    // Only one's own record is known now (the new leader is oneself here).
    assert.deepEqual(
      view.members.map((m) => m.connection),
      ["b"],
    );
    // Counts are the server's, not counted from the partial list.
    assert.deepEqual(view.counts, { connections: 120, users: 100, reconnecting: 0 });
  });
});
