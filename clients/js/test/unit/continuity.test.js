// Unit tests of the continuity parts of the pure view logic (src/view.js): member states and the
// `reconnecting` count, message offsets (duplicates, own messages, a new stream), the message
// position across whole views, a resume's view, and leadership replays that are not newer.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  applyFrame,
  countMembers,
  createView,
  normalizeCounts,
  normalizeMember,
  notePublished,
  replaceView,
  resumeView,
} from "../../src/view.js";

/** @param {string} connection @param {number} joinedAt @param {Record<string, unknown>} [rest] */
function member(connection, joinedAt, rest = {}) {
  return { connection, user: null, name: connection.toUpperCase(), avatar: null, joined_at: joinedAt, ...rest };
}

function joined(extra = {}) {
  return createView({
    type: "joined",
    session: "s",
    you: "b",
    version: 2,
    leader: "a",
    epoch: 1,
    members: [member("a", 100), member("b", 200)],
    counts: { connections: 2, users: 2 },
    stream: "st",
    offset: 4,
    ...extra,
  });
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

const message = (offset, stream = "st", from = "a") => ({ type: "message", session: "s", from, user: null, data: offset, offset, stream });
const delivered = (effects) => effects.filter((e) => e.type === "message").map((e) => `${e.stream}:${e.offset}`);

describe("member states and counts", () => {
  test("a member without state is present; counts without reconnecting have 0", () => {
    assert.equal(normalizeMember(member("a", 1)).state, "present");
    const reconnecting = member("a", 1, { state: "reconnecting" });
    assert.equal(normalizeMember(reconnecting), reconnecting, "a record with a state is kept as it is");
    assert.deepEqual(normalizeCounts({ connections: 3, users: 2 }), { connections: 3, users: 2, reconnecting: 0 });
    assert.deepEqual(normalizeCounts({ connections: 3, users: 2, reconnecting: 1 }), { connections: 3, users: 2, reconnecting: 1 });
    const view = joined();
    assert.deepEqual(
      view.members.map((m) => m.state),
      ["present", "present"],
    );
    assert.deepEqual(view.counts, { connections: 2, users: 2, reconnecting: 0 });
  });

  test("only present members count as connections and users", () => {
    const members = [
      member("a", 1, { user: "u1", state: "reconnecting" }),
      member("b", 2, { user: "u1" }),
      member("c", 3, { state: "reconnecting" }),
      member("d", 4),
    ];
    assert.deepEqual(countMembers(members.map(normalizeMember)), { connections: 2, users: 2, reconnecting: 2 });
  });

  test("member_updated to reconnecting and back emits update and recounts", () => {
    const away = member("a", 100, { state: "reconnecting" });
    const { view, effects } = run(joined(), { type: "member_updated", session: "s", version: 3, member: away });
    assert.deepEqual(effects, [{ type: "update", member: away }, { type: "change" }]);
    assert.equal(view.members[0].state, "reconnecting");
    assert.deepEqual(view.counts, { connections: 1, users: 1, reconnecting: 1 });
    assert.equal(view.leader, "a", "a reconnecting leader stays leader");
    const back = run(view, { type: "member_updated", session: "s", version: 4, member: member("a", 100) });
    assert.equal(back.view.members[0].state, "present");
    assert.deepEqual(back.view.counts, { connections: 2, users: 2, reconnecting: 0 });
  });

  test("a whole view in which a member's state changed emits update for it", () => {
    const step = replaceView(joined(), {
      version: 5,
      leader: "a",
      epoch: 1,
      members: [member("a", 100, { state: "reconnecting" }), member("b", 200)],
      counts: { connections: 1, users: 1, reconnecting: 1 },
    });
    assert.deepEqual(
      step.effects.map((e) => e.type),
      ["update", "change"],
    );
    assert.deepEqual(step.view.counts, { connections: 1, users: 1, reconnecting: 1 });
  });
});

describe("message offsets", () => {
  test("messages carry offset and stream; repeats and older ones in the same stream are dropped", () => {
    const { view, effects } = run(joined(), message(5), message(5), message(3), message(6), message(4));
    assert.deepEqual(delivered(effects), ["st:5", "st:6"]);
    assert.deepEqual(effects[0], { type: "message", from: "a", user: null, data: 5, offset: 5, stream: "st" });
    assert.equal(view.offset, 6);
  });

  test("a message without offset (a server without history) passes as before", () => {
    const before = joined({ stream: undefined, offset: undefined });
    const { view, effects } = run(before, { type: "message", session: "s", from: "a", user: null, data: 1 });
    assert.equal(view, before);
    assert.deepEqual(effects, [{ type: "message", from: "a", user: null, data: 1 }]);
  });

  test("another stream (the history was lost) starts over", () => {
    const { view, effects } = run(joined(), message(5), message(1, "st2"), message(1, "st2"), message(2, "st2"));
    assert.deepEqual(delivered(effects), ["st:5", "st2:1", "st2:2"]);
    assert.equal(view.stream, "st2");
    assert.equal(view.offset, 2);
  });

  test("one's own published offset counts as applied only once the offsets before it were", () => {
    // 5 is another member's message still on its way when the reply for one's own 6 comes.
    let view = notePublished(joined(), { offset: 6, stream: "st" });
    assert.equal(view.offset, 4);
    assert.deepEqual(view.ownOffsets, [6]);
    const { view: after, effects } = run(view, message(5), message(6), message(7));
    assert.deepEqual(delivered(effects), ["st:5", "st:7"], "5 arrives, the own 6 is not delivered back");
    assert.equal(after.offset, 7);
    assert.deepEqual(after.ownOffsets, []);
    // In order: the published offset is applied at once.
    view = notePublished(after, { offset: 8, stream: "st" });
    assert.equal(view.offset, 8);
    assert.deepEqual(view.ownOffsets, []);
    assert.equal(notePublished(view, {}), view, "a reply without offset changes nothing");
  });
});

describe("message position across whole views", () => {
  test("a re-join's joined in the same stream keeps the position: the messages after it follow", () => {
    const view = run(joined(), message(5)).view;
    const step = replaceView(view, { you: "b2", version: 6, leader: "a", epoch: 1, members: [member("a", 100), member("b2", 300)], stream: "st", offset: 9 });
    assert.equal(step.view.offset, 5);
    const { effects } = run(step.view, message(6), message(7), message(8), message(9), message(10));
    assert.deepEqual(delivered(effects), ["st:6", "st:7", "st:8", "st:9", "st:10"]);
  });

  test("recovered:false in joined means the gap is lost: its offset counts as applied", () => {
    const view = run(joined(), message(5)).view;
    const step = replaceView(view, { version: 6, leader: "a", epoch: 1, members: [], stream: "st", offset: 9, recovered: false });
    assert.equal(step.view.offset, 9);
    assert.deepEqual(delivered(run(step.view, message(9), message(10)).effects), ["st:10"]);
  });

  test("a whole view in another stream takes its position; one without stream (members) keeps the view's", () => {
    const other = replaceView(joined(), { version: 6, leader: "a", epoch: 1, members: [], stream: "st9", offset: 2 });
    assert.equal(other.view.stream, "st9");
    assert.equal(other.view.offset, 2);
    const members = replaceView(joined(), { version: 6, leader: "a", epoch: 1, members: [] });
    assert.equal(members.view.stream, "st");
    assert.equal(members.view.offset, 4);
  });
});

describe("resume", () => {
  test("the view stays with the resumed you; leadership and counts are the server's; recovered", () => {
    const start = joined();
    const step = resumeView(start, { leader: "b", epoch: 2, counts: { connections: 2, users: 2 }, recovered: true }, "b");
    assert.deepEqual(step.effects, [
      { type: "leader", leader: "b", epoch: 2 },
      { type: "change" },
      { type: "recovered", recovered: true, resumed: true },
    ]);
    assert.equal(step.view.version, start.version, "the missed events follow at their own versions");
    assert.equal(step.view.members, start.members);
    assert.deepEqual(step.view.counts, { connections: 2, users: 2, reconnecting: 0 });
    // The replayed change: a leave, then the leader change already known, which emits nothing more.
    const replay = run(
      step.view,
      { type: "member_left", session: "s", version: 3, connection: "a", reason: "disconnected" },
      { type: "leader_changed", session: "s", version: 3, leader: "b", epoch: 2 },
    );
    assert.deepEqual(replay.types, ["leave", "change"]);
    assert.equal(replay.view.version, 3);
    assert.equal(replay.view.leader, "b");
  });

  test("a replayed leader change older than the view's epoch changes nothing", () => {
    const resumed = resumeView(joined(), { leader: "c", epoch: 3, recovered: true }, "b").view;
    const { view, effects } = run(
      resumed,
      { type: "leader_changed", session: "s", version: 3, leader: "b", epoch: 2 },
      { type: "leader_changed", session: "s", version: 4, leader: "c", epoch: 3 },
    );
    assert.deepEqual(effects, []);
    assert.equal(view.leader, "c");
    assert.equal(view.epoch, 3);
    assert.equal(view.version, 4);
  });

  test("recovered:false: the snapshot that follows sets the message position", () => {
    const step = resumeView(joined(), { leader: "a", epoch: 1, recovered: false }, "b");
    assert.deepEqual(step.effects.at(-1), { type: "recovered", recovered: false, resumed: true });
    const { view, effects } = run(
      step.view,
      { type: "snapshot", session: "s", version: 8, leader: "a", epoch: 1, members: [member("a", 100), member("b", 200)], stream: "st", offset: 12 },
      message(12),
      message(13),
    );
    assert.deepEqual(delivered(effects), ["st:13"]);
    assert.equal(view.messagesLost, false);
  });
});
